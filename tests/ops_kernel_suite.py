"""Test declarations shared by the CPU emulation (test_ops_emulated.py) and the GPU run
(test_ops_cuda.py). Each of those files imports them and supplies its own ``k`` fixture (the
kernels under test); pytest collects the imported functions in the importing module, so that
module's fixture and markers (``gpu``) apply.
"""

from __future__ import annotations

import pytest
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
