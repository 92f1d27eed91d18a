"""Low-level ops the networks are built on: ``bias_act``, ``upfirdn2d``, ``conv2d_resample`` and
StyleGAN3's ``filtered_lrelu``.

Each op has a pure-PyTorch reference implementation (the ground truth and the fallback) and, where
built, a fused CUDA implementation. ``impl='auto'|'ref'|'cuda'`` picks one; :mod:`ops.impl` is the
one place that decides, and the environment variable ``STYLEGAN_OPS`` overrides what ``'auto'``
means.
"""

from ops.bias_act import ACTIVATIONS, bias_act
from ops.conv2d_resample import conv2d_resample
from ops.filtered_lrelu import filtered_lrelu
from ops.impl import resolve_impl
from ops.upfirdn2d import downsample2d, filter2d, setup_filter, upfirdn2d, upsample2d

__all__ = [
    "ACTIVATIONS",
    "bias_act",
    "conv2d_resample",
    "downsample2d",
    "filter2d",
    "filtered_lrelu",
    "resolve_impl",
    "setup_filter",
    "upfirdn2d",
    "upsample2d",
]
