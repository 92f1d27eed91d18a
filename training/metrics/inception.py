"""The Inception-v3 feature network of the TensorFlow FID reference, through torch-fidelity.

Why torch-fidelity (Obukhov et al., Apache-2.0): it is maintained, it ships the TF "2015-12-05"
Inception graph ported to PyTorch with the two details that make numbers match the TensorFlow
reference implementations (FID of Heusel et al., IS of Salimans et al., and StyleGAN2-ADA's
metrics): TF1's bilinear resize to 299x299 reimplemented bit-for-bit
(``interpolate_bilinear_2d_like_tensorflow1x``) and TF's average pooling that ignores padding.
Its authors report agreement with the reference to many digits. pytorch-fid uses the same weights
but PyTorch's resize; clean-fid's default changes the resize on purpose. So the numbers we report
are the ones papers report.

It is an optional dependency (``pip install 'stylegan-train[metrics]'``): it needs torchvision,
and it downloads its weights from GitHub at first use. Here nothing downloads: the weights file
is looked up, in order, at

1. the ``inception_weights`` argument (``--inception-weights``),
2. the ``STYLEGAN_INCEPTION_WEIGHTS`` environment variable,
3. ``<cache dir>/weights-inception-2015-12-05-6726825d.pth`` (torch-fidelity's name) or
   ``<cache dir>/pt_inception-2015-12-05-6726825d.pth`` (pytorch-fid's name for the same file),
   the cache dir being ``STYLEGAN_CACHE_DIR`` or ``~/.cache/stylegan-train``,
4. torch hub's checkpoint folder, where torch-fidelity itself downloads it.

When the package or the file is missing, :class:`MetricUnavailable` says exactly what to install
and where to put the file. The file is first opened with ``torch.load(weights_only=True)``, which
refuses anything but tensors, before torch-fidelity (which unpickles freely) reads it; a file whose
SHA-256 does not start with ``6726825d`` is used with a warning that its numbers are not comparable.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import warnings
from pathlib import Path
from typing import Iterator

import torch

from training.metrics.features import check_images, to_rgb
from training.metrics.locations import cache_root

WEIGHTS_URL = "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/weights-inception-2015-12-05-6726825d.pth"
WEIGHTS_NAMES = ("weights-inception-2015-12-05-6726825d.pth", "pt_inception-2015-12-05-6726825d.pth")
WEIGHTS_SHA256_PREFIX = "6726825d"
ENV_WEIGHTS = "STYLEGAN_INCEPTION_WEIGHTS"
PACKAGE_HINT = "pip install 'stylegan-train[metrics]'  (or: pip install 'torch-fidelity>=0.4')"


class MetricUnavailable(RuntimeError):
    """A metric cannot run in this environment (an optional package or weights file is missing).

    The training loop turns this into a warning and goes on without the metric; CLIs print it.
    """


def weights_candidates(cache_dir: str | Path | None = None) -> list[Path]:
    """Where the weights file is looked for when no path is given (in order)."""
    roots = [cache_root(cache_dir)]
    with contextlib.suppress(Exception):  # torch.hub.get_dir only reads environment variables
        roots.append(Path(torch.hub.get_dir()) / "checkpoints")
    return [root / name for root in roots for name in WEIGHTS_NAMES]


def find_inception_weights(path: str | Path | None = None, cache_dir: str | Path | None = None) -> Path:
    """The weights file to use, or :class:`MetricUnavailable` naming where to put it."""
    if path is None and os.environ.get(ENV_WEIGHTS):
        path, source = os.environ[ENV_WEIGHTS], f"the {ENV_WEIGHTS} environment variable"
    else:
        source = "inception_weights (--inception-weights)"
    if path is not None:
        p = Path(path).expanduser()
        if not p.is_file():
            raise MetricUnavailable(
                f"Inception weights: {str(p)!r} given by {source} does not exist or is not a file. "
                f"Download {WEIGHTS_URL} and give its path."
            )
        return p
    candidates = weights_candidates(cache_dir)
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise MetricUnavailable(
        f"Inception weights for FID/KID/PR/IS not found. Download {WEIGHTS_URL} (91 MB) and put it at "
        f"{candidates[0]}, or pass its path with --inception-weights or the {ENV_WEIGHTS} environment variable "
        f"(looked in: {', '.join(str(c) for c in candidates)})."
    )


@functools.lru_cache(maxsize=8)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_sha256(path: Path) -> str:
    """SHA-256 of a file, memoised on (path, size, mtime) so a snapshot loop hashes it once."""
    st = path.stat()
    return _sha256(str(path.resolve()), st.st_size, st.st_mtime_ns)


@contextlib.contextmanager
def exact_float32(device: torch.device) -> Iterator[None]:
    """Run CUDA convolutions and matmuls in true float32 (no TF32), restoring the flags after.

    TF32 would move Inception features by ~1e-3 and FID with them; the reference is float32.
    Uses the ``fp32_precision`` flags where torch has them (mixing them with the legacy
    ``allow_tf32`` flags is an error in recent torch), else the legacy flags.
    """
    if device.type != "cuda":
        yield
        return
    conv, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    if hasattr(getattr(conv, "conv", None), "fp32_precision") and hasattr(matmul, "fp32_precision"):
        saved = (conv.conv.fp32_precision, matmul.fp32_precision)
        try:
            conv.conv.fp32_precision, matmul.fp32_precision = "ieee", "ieee"
            yield
        finally:
            conv.conv.fp32_precision, matmul.fp32_precision = saved
    else:
        saved = (conv.allow_tf32, matmul.allow_tf32)
        try:
            conv.allow_tf32, matmul.allow_tf32 = False, False
            yield
        finally:
            conv.allow_tf32, matmul.allow_tf32 = saved


class InceptionFeatures:
    """torch-fidelity's ``FeatureExtractorInceptionV3``: pool3 features (2048) and 1008 logits.

    ``features`` feed FID, KID and precision / recall; ``logits`` are the unbiased logits
    (without the final bias) that the reference Inception Score uses.
    """

    feature_dim = 2048
    num_classes = 1008

    def __init__(self, net: torch.nn.Module, weights_sha256: str, device: torch.device) -> None:
        self.net, self.device = net, device
        self.name = f"inception-v3-tf-2015-12-05-sha256:{weights_sha256[:16]}-tf1-bilinear-299"

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        check_images(images)
        x = to_rgb(images.to(self.device)).contiguous()
        with exact_float32(self.device):
            features, logits = self.net(x)
        return {"features": features.float(), "logits": logits.float()}


def _import_fidelity() -> tuple[type | None, str]:
    """torch-fidelity's Inception class and ``''``, or ``None`` and why it cannot be imported.

    torch-fidelity imports torchvision; a torchvision built for another torch fails with a
    RuntimeError or OSError rather than an ImportError, and that too means "not available".
    """
    try:
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
    except (ImportError, RuntimeError, OSError) as exc:
        return None, f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}"
    return FeatureExtractorInceptionV3, ""


def load_inception(
    inception_weights: str | Path | None = None,
    *,
    cache_dir: str | Path | None = None,
    device: torch.device | str = "cpu",
) -> InceptionFeatures:
    """Build the Inception extractor on ``device``; :class:`MetricUnavailable` when it cannot be had."""
    device = torch.device(device)
    problems = []
    try:
        path = find_inception_weights(inception_weights, cache_dir)
    except MetricUnavailable as exc:
        path, problems = None, [str(exc)]
    cls, why = _import_fidelity()
    if cls is None:
        problems.append(
            f"The Inception feature network needs the optional package torch-fidelity (and torchvision), which "
            f"cannot be imported ({why}): {PACKAGE_HINT}; torchvision must be the build made for your torch."
        )
    if problems:
        raise MetricUnavailable(" ".join(problems) if len(problems) == 1 else
                                " ".join(f"({i + 1}) {p}" for i, p in enumerate(problems)))
    return _load_cached(str(path.resolve()), path.stat().st_mtime_ns, str(device))


@functools.lru_cache(maxsize=4)
def _load_cached(path: str, mtime_ns: int, device: str) -> InceptionFeatures:
    """One network per (file, device) per process: a snapshot loop loads it once."""
    p = Path(path)
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure means the file is not a plain state dict
        raise MetricUnavailable(
            f"Inception weights {path!r} cannot be read as a plain tensor file ({type(exc).__name__}: "
            f"{' '.join(str(exc).split())[:200]}). Download {WEIGHTS_URL} again."
        ) from exc
    if not isinstance(state, dict):
        raise MetricUnavailable(
            f"Inception weights {path!r} hold a {type(state).__name__}, not a state dict. Download {WEIGHTS_URL}."
        )
    del state
    sha = file_sha256(p)
    if not sha.startswith(WEIGHTS_SHA256_PREFIX):
        warnings.warn(
            f"Inception weights {path!r} have SHA-256 {sha[:16]}..., not the reference file's {WEIGHTS_SHA256_PREFIX}...; "
            "metrics computed with them are not comparable with published numbers",
            stacklevel=2,
        )
    cls, _ = _import_fidelity()
    try:
        net = cls("inception-v3-compat", ["2048", "logits_unbiased"], feature_extractor_weights_path=path)
    except RuntimeError as exc:  # load_state_dict: missing / unexpected keys, wrong shapes
        raise MetricUnavailable(
            f"Inception weights {path!r} do not fit torch-fidelity's Inception-v3 "
            f"({' '.join(str(exc).split())[:300]}). Download {WEIGHTS_URL}."
        ) from exc
    return InceptionFeatures(net.to(torch.device(device)).eval(), sha, torch.device(device))
