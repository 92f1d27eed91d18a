"""Test declarations shared by the CPU emulation (test_ops_emulated.py) and the GPU run
(test_ops_cuda.py). Each of those files imports them and supplies its own ``k`` fixture (the
kernels under test); pytest collects the imported functions in the importing module, so that
module's fixture and markers (``gpu``) apply.
"""

from __future__ import annotations

import pytest
import test_ops_filtered_lrelu as fl_ref
import torch
from test_ops_upfirdn2d import FILTERS, GRAD_GRID, GRID

import ops_kernel_cases as cases
from ops import ACTIVATIONS, setup_filter


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("fname, up, down, pad, flip", GRID)
def test_upfirdn2d_grid(k, fname, up, down, pad, flip, layout) -> None:
    cases.upfirdn2d_matches_reference(k, FILTERS[fname](), up, down, pad, flip, layout)


@pytest.mark.parametrize("fname", ["2d4", "sep4", "1tap"])
def test_upfirdn2d_strided_input(k, fname) -> None:
    cases.upfirdn2d_matches_reference(k, FILTERS[fname](), (2, 2), (1, 1), (2, 1, 2, 1), False, "strided")


@pytest.mark.parametrize("fname, up, down, pad", GRAD_GRID)
@pytest.mark.parametrize("flip", [False, True])
def test_upfirdn2d_gradients(k, fname, up, down, pad, flip) -> None:
    cases.upfirdn2d_gradients(k, FILTERS[fname](), up, down, pad, flip)


@pytest.mark.parametrize("up, down", [(1, 1), (2, 1), (1, 2)])
def test_upfirdn2d_tiled_gradients(k, up, down) -> None:
    # 4x4 filters with these factors take the tiled kernels, forward and backward.
    cases.upfirdn2d_gradients(k, setup_filter([1, 3, 3, 1]), up, down, (2, 1, 2, 1), False)


@pytest.mark.parametrize("separable", [False, True])
def test_upfirdn2d_filter_gradient(k, separable) -> None:
    cases.upfirdn2d_filter_gradient(k, separable)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("up, down, pad", [(2, 1, (2, 1, 2, 1)), (1, 2, (1, 1, 1, 1)), (1, 1, (2, 1, 2, 1))])
def test_upfirdn2d_dtypes(k, dtype, up, down, pad) -> None:
    cases.upfirdn2d_dtype(k, dtype, setup_filter([1, 3, 3, 1]), up, down, pad)


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("up, down", [(1, 1), (2, 1), (1, 2)])
def test_upfirdn2d_large_tiles(k, up, down, layout) -> None:
    cases.upfirdn2d_large_tiles(k, up, down, layout)


@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "strided"])
@pytest.mark.parametrize("dim", [0, 1, 3])
@pytest.mark.parametrize("clamp", [None, 0.7])
@pytest.mark.parametrize("act", sorted(ACTIVATIONS))
def test_bias_act_matches_reference(k, act, clamp, dim, layout) -> None:
    cases.bias_act_matches_reference(k, act, clamp, dim, layout)


@pytest.mark.parametrize("act", sorted(ACTIVATIONS))
@pytest.mark.parametrize("clamp", [None, 0.7])
def test_bias_act_gradients(k, act, clamp) -> None:
    cases.bias_act_gradients(k, act, clamp)


def test_backward_keeps_one_tensor(k) -> None:
    cases.backward_keeps_one_tensor(k)


# --- filtered_lrelu ------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("fname, updown, offsets, clamp_flip", fl_ref.GRID)
def test_filtered_lrelu_grid(k, fname, updown, offsets, clamp_flip, layout) -> None:
    clamp, flip = clamp_flip
    filters = fl_ref.FILTERS[fname]()
    pad = fl_ref.grid_padding(*filters, offsets)
    cases.filtered_lrelu_matches_reference(k, filters, *updown, pad, clamp, flip, layout)


@pytest.mark.parametrize("name", fl_ref.GRAD_CASES)
def test_filtered_lrelu_gradients(k, name) -> None:
    kind, up, down, padding, clamp, flip = fl_ref.GRAD_CASES[name]
    cases.filtered_lrelu_gradients(k, fl_ref._filters(kind), up, down, padding, clamp, flip)


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("fname, up, down", [("sep12", 2, 2), ("2d", 2, 1), ("sep4_sep6", 1, 2), ("none", 1, 1)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_filtered_lrelu_dtypes(k, dtype, fname, up, down, layout) -> None:
    filters = fl_ref.FILTERS[fname]()
    cases.filtered_lrelu_dtype(k, dtype, filters, up, down, fl_ref.grid_padding(*filters, (0, 0, 0, 0)), layout)


@pytest.mark.parametrize("fname, up, down", [("sep12", 2, 2), ("2d", 4, 2), ("none", 1, 2), ("sep4_sep6", 3, 1)])
@pytest.mark.parametrize("clamp", [None, 0.5])
def test_filtered_lrelu_mask_codes(k, fname, up, down, clamp) -> None:
    filters = fl_ref.FILTERS[fname]()
    cases.filtered_lrelu_mask(k, filters, up, down, fl_ref.grid_padding(*filters, (1, 2, -1, 0)), clamp)


def test_filtered_lrelu_mask_codes_across_tiles(k) -> None:
    filters = fl_ref.FILTERS["sep12"]()
    cases.filtered_lrelu_mask(k, filters, 2, 2, fl_ref.grid_padding(*filters, (0, 0, 0, 0)), 0.5, size=(37, 45))


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize(
    "fname, up, down", [("sep12", 2, 2), ("sep12", 2, 1), ("2d", 1, 2), ("none", 1, 2), ("2d_up_sep_down", 4, 2)]
)
def test_filtered_lrelu_large_tiles(k, fname, up, down, layout) -> None:
    cases.filtered_lrelu_large_tiles(k, fl_ref.FILTERS[fname](), up, down, layout)


@pytest.mark.parametrize("name", fl_ref.VECTOR_CASES)
def test_filtered_lrelu_nvidia_vectors(k, name) -> None:
    got, want = fl_ref.run_vector_case(name, k.filtered_lrelu, k.device)
    for key in want:
        cases.assert_close(got[key], want[key], torch.float64)


def test_filtered_lrelu_keeps_the_mask(k) -> None:
    cases.filtered_lrelu_keeps_the_mask(k)
