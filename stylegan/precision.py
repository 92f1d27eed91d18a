"""Which dtype each block of G and D runs in: the one rule both networks share.

StyleGAN2-ADA (Karras et al. 2020, appendix D, "mixed-precision training") runs only the
``num_fp16_res`` highest-resolution blocks of the synthesis network and of the discriminator in
float16, and clamps their convolution outputs to ``+-conv_clamp`` so that the activations cannot
overflow. Everything else stays in the parameters' dtype (float32): the mapping network, every
affine (style) layer, the lower-resolution blocks, D's 4x4 epilogue (minibatch std, conv, fc, out)
and D's label mapping. Those layers are small, run on few pixels, and the last layers of D and the
first of G are where the precision of a logit or a style matters most. Which blocks are low precision
is fixed by the config (``block.use_fp16 = resolution >= config.fp16_resolution``); the ``precision``
argument of ``G``, ``G.synthesis`` and ``D`` picks the dtype those blocks use:

* ``'auto'``: float16 on CUDA, the parameters' dtype elsewhere (the default for inference, as
  NVIDIA's code: float16 on a CPU is slow);
* ``'fp32'``: no block leaves the parameters' dtype;
* ``'fp16'``: float16 on any device (CPU too, to test the numerics);
* ``'bf16'``: bfloat16 on any device, in the same blocks. bfloat16 has float32's exponent range, so
  it needs neither a loss scaler nor the overflow guard of the modulated conv; it has 8 bits of
  mantissa instead of float16's 11, which is why it keeps the same, conservative layout.

Weights stay in their own dtype and are cast to the block's dtype inside each layer (as EDM2 does).
"""

from __future__ import annotations

import torch

PRECISIONS = ("auto", "fp32", "fp16", "bf16")
LOW_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


def check_precision(precision: str) -> None:
    """Raise ``ValueError`` unless ``precision`` is one of :data:`PRECISIONS`."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision={precision!r}: expected one of {', '.join(map(repr, PRECISIONS))}")


def block_dtype(use_fp16: bool, precision: str, device: torch.device, default: torch.dtype) -> torch.dtype:
    """The dtype a block runs in: ``default`` (the parameters' dtype) unless the block is one of the
    config's low-precision blocks (``use_fp16``) and ``precision`` asks for a low dtype on ``device``."""
    if not use_fp16 or precision == "fp32" or (precision == "auto" and device.type != "cuda"):
        return default
    return LOW_DTYPES.get(precision, torch.float16)  # 'auto' on CUDA is float16
