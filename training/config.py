"""The training configuration: one frozen dataclass that flows from the CLI to ``config.json``.

Every field is one ``train.py`` option (``batch_gpu`` is ``--batch-gpu``). Fields left ``None`` were
not given; :func:`training.resolve.resolve_run` fills them once, at start-up, from the preset's
recipe, the dataset and the number of processes, so that ``config.json`` records the values that
actually ran and where each came from. Checks raise ``ValueError`` with a message
that names the option, the bad value and what is allowed; the CLI turns them into
``click.BadParameter``.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from dataclasses import dataclass, fields
from typing import Any

from stylegan.config import SPECTRAL_NORM_MODES, suggest
from stylegan.info_codes import parse_info_codes
from stylegan.presets import PRESETS
from training.loss import LOSSES, OPTIMIZERS
from training.metrics.features import EXTRACTORS
from training.metrics.specs import parse_metrics
from training.speedups import MEMORY_FORMATS

GROWTH_MODES = ("none", "progressive")
AUG_MODES = ("none", "ada", "fixed", "diffaug")  # training.augmentation
# StyleGAN2-ADA's named augmentation pipelines (training.augment.PIPELINES has their contents).
AUG_PIPES = ("blit", "geom", "color", "filter", "noise", "cutout", "bg", "bgc", "bgcf", "bgcfn", "bgcfnc")
PRECISIONS = ("fp32", "fp16", "bf16")
MAX_BLUR_SIGMA = 1000.0  # --blur-sigma's bound: its filter has 2 * floor(3 sigma) + 1 taps
# Accelerate's names (``accelerate config`` / ``ACCELERATE_MIXED_PRECISION``) for our precisions.
ACCELERATE_PRECISIONS = {"no": "fp32", "fp16": "fp16", "bf16": "bf16"}


class ConfigError(ValueError):
    """A bad option value; ``option`` is the CLI flag (``--batch``) the message is about."""

    def __init__(self, option: str, message: str) -> None:
        super().__init__(f"{option}: {message}")
        self.option = option
        self.detail = message


def option_name(field_name: str) -> str:
    """The CLI flag of a config field: ``batch_gpu`` -> ``--batch-gpu``."""
    return "--" + field_name.replace("_", "-")


@dataclass(frozen=True)
class TrainConfig:
    """Every option of a training run. ``None`` means "not given": :func:`training.resolve.resolve_run`
    fills it from the preset's recipe or derives it, and records where each value came from."""

    data: str = "data"
    outdir: str = "runs"
    preset: str | None = None  # default: 'auto' with --data, 'tiny' for the demo
    cond: bool | None = None
    kimg: float | None = None
    batch: int | None = None
    batch_gpu: int | None = None
    gamma: float | None = None
    loss: str | None = None  # the adversarial loss (training.loss.LOSSES); default: the preset's (ns)
    gp_weight: float = 10.0  # --loss wgan-gp: weight of the gradient penalty (Gulrajani et al. 2017)
    drift: float = 0.001  # --loss wgan-gp: ProGAN's drift term on D(real)^2
    clip: float = 0.01  # --loss wgan: D's weights are clipped to [-clip, clip] (Arjovsky et al. 2017)
    n_critic: int | None = None  # D steps per G step (WGAN's n_critic); default 5 for wgan, else the preset's 1
    optimizer: str | None = None  # adam | rmsprop; default rmsprop for wgan (its paper), else the preset's adam
    beta1: float | None = None  # Adam's beta1 (StyleGAN2 and ProGAN 0, DCGAN 0.5); default: the preset's
    beta2: float | None = None  # Adam's beta2 (0.99; DCGAN 0.999); default: the preset's
    r1_interval: int = 16
    pl_weight: float | None = None
    pl_interval: int | None = None  # G_reg every this many steps; 0: none (StyleGAN3); default: the preset's (4)
    pl_batch_shrink: int = 2
    pl_decay: float = 0.01
    mixing: float | None = None
    ema_kimg: float | None = None
    ema_rampup: float | None = None
    # Gaussian blur of every image D sees (StyleGAN3-R: sigma 10 px), faded linearly to 0 over blur_fade_kimg.
    blur_sigma: float | None = None
    blur_fade_kimg: float | None = None
    glr: float | None = None
    dlr: float | None = None
    cbase: int | None = None  # network width: channel_base (ADA: fmaps x 32768)
    cmax: int | None = None  # at most this many feature maps per layer
    map: int | None = None  # mapping network depth
    mbstd_group: int | None = None  # minibatch-stddev group size
    mirror: bool = False
    growth: str | None = None  # none | progressive; default: the preset's (progressive for progan)
    spectral_norm: str = "none"  # none | d | gd: spectral normalisation of D's (and G's) weights
    attention: str = ""  # comma-separated resolutions with self-attention blocks in G and D (SAGAN)
    info_codes: str = ""  # InfoGAN's latent codes, e.g. 'cat:10,cont:2' (stylegan/info_codes.py)
    info_weight: float = 1.0  # InfoGAN's lambda on -L_I (eq. 6; the paper's 1 for categorical codes)
    info_cont_weight: float = 1.0  # extra factor on the continuous codes' terms (the paper: smaller, e.g. 0.1)
    growth_start: int | None = None
    fade_kimg: float = 800.0
    stable_kimg: float = 800.0
    growth_batch: str | None = None  # e.g. '256:14,512:6'; default: the preset's ('' for most)
    precision: str | None = None
    memory_format: str | None = None  # contiguous | channels-last (training.speedups); default: by device
    compile: bool = False  # torch.compile of G's and D's forward passes (training.speedups)
    aug: str | None = None  # augmentation of what D sees (AUG_MODES); default: the preset's
    augpipe: str = "bgc"  # ADA's pipeline (--aug ada|fixed)
    target: float = 0.6  # ADA's target for r_t = E[sign(D(real))]
    ada_kimg: float = 500.0  # ADA: kimg for p to go from 0 to 1 at most
    p: float | None = None  # --aug fixed: the probability; --aug ada: where p starts (0, or --init's file)
    diffaug: str = "color,translation,cutout"  # DiffAugment's policies (--aug diffaug)
    tick: float = 4.0
    snap: int | None = None
    # Minutes between state/ writes besides the snapshots' (0: only those). 30: a kill or a lost node
    # costs at most half an hour, for a pause of seconds (well under 1% of the time) per write.
    state_every: float = 30.0
    seed: int = 0
    workers: int = 2
    max_skipped: int = 20
    metrics: str = ""  # comma-separated metric names computed at each snapshot (training.metrics)
    metrics_features: str = "inception"
    inception_weights: str | None = None
    init: str | None = None  # network file a new run takes its weights from (training.init_from)

    # ------------------------------------------------------------------ (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        """Build from a dict (``config.json``); unknown keys are rejected with the closest valid one."""
        names = [f.name for f in fields(cls)]
        for key in d:
            if key not in names:
                close = difflib.get_close_matches(key, names, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else f"; valid keys: {', '.join(names)}"
                raise ValueError(f"TrainConfig: unknown key {key!r}{hint}")
        return cls(**d)

    def replace(self, **changes: Any) -> "TrainConfig":
        return dataclasses.replace(self, **changes)

    def unresolved(self) -> list[str]:
        """The fields still ``None`` that a run needs (empty once resolved)."""
        optional = {"growth_start", "inception_weights", "init", "p"}
        return [f.name for f in fields(self) if getattr(self, f.name) is None and f.name not in optional]

    # ------------------------------------------------------------------ checks
    def validate(self) -> None:
        """Check each given value on its own (no dataset or process count needed)."""
        if self.preset is not None and self.preset not in PRESETS:
            raise ConfigError("--preset", f"{self.preset!r}: expected one of {', '.join(PRESETS)}{suggest(self.preset, PRESETS)}")
        if self.kimg is not None:
            _positive(self.kimg, "kimg")
        if self.batch is not None:
            _int_at_least(self.batch, "batch", 1)
        if self.batch_gpu is not None:
            _int_at_least(self.batch_gpu, "batch_gpu", 1)
            if self.batch is not None and self.batch_gpu > self.batch:
                raise ConfigError("--batch-gpu", f"{self.batch_gpu} is larger than --batch={self.batch}")
        for name in ("gamma", "pl_weight", "ema_kimg", "ema_rampup", "blur_sigma", "blur_fade_kimg"):
            if getattr(self, name) is not None:
                _non_negative(getattr(self, name), name)
        if self.blur_sigma is not None and self.blur_sigma > MAX_BLUR_SIGMA:
            raise ConfigError("--blur-sigma", f"{self.blur_sigma!r}: expected at most {MAX_BLUR_SIGMA} (pixels)")
        for name in ("glr", "dlr"):
            if getattr(self, name) is not None:
                _positive(getattr(self, name), name)
        for name, minimum in (("cbase", 4), ("cmax", 1), ("map", 1), ("mbstd_group", 1), ("snap", 1)):
            if getattr(self, name) is not None:
                _int_at_least(getattr(self, name), name, minimum)
        _int_at_least(self.r1_interval, "r1_interval", 1)
        if self.pl_interval is not None:
            _int_at_least(self.pl_interval, "pl_interval", 0)
        _int_at_least(self.pl_batch_shrink, "pl_batch_shrink", 1)
        if not 0 < self.pl_decay <= 1:
            raise ConfigError("--pl-decay", f"{self.pl_decay!r}: expected a number in (0, 1]")
        if self.mixing is not None and not 0 <= self.mixing <= 1:
            raise ConfigError("--mixing", f"{self.mixing!r}: expected a probability in [0, 1]")
        if self.growth is not None and self.growth not in GROWTH_MODES:
            raise ConfigError("--growth", f"{self.growth!r}: expected one of {', '.join(GROWTH_MODES)}")
        if self.spectral_norm not in SPECTRAL_NORM_MODES:
            raise ConfigError("--spectral-norm", f"{self.spectral_norm!r}: expected one of {', '.join(SPECTRAL_NORM_MODES)}")
        parse_attention(self.attention)
        codes = parse_info_codes_option(self.info_codes)
        for name in ("info_weight", "info_cont_weight"):
            _non_negative(getattr(self, name), name)
            if not codes and getattr(self, name) != getattr(TrainConfig, name):
                raise ConfigError(option_name(name), f"{getattr(self, name)!r} without --info-codes: the weight "
                                                     "applies to InfoGAN's codes only; give --info-codes, e.g. 'cat:10,cont:2'")
        if not any(kind == "cont" for kind, _ in codes) and self.info_cont_weight != TrainConfig.info_cont_weight:
            raise ConfigError("--info-cont-weight", f"{self.info_cont_weight!r}: --info-codes {self.info_codes!r} has no "
                                                    "continuous code (cont:M)")
        if self.growth_start is not None and not _is_pow2(self.growth_start, minimum=4):
            raise ConfigError("--growth-start", f"{self.growth_start!r}: expected a power of two >= 4")
        _positive(self.fade_kimg, "fade_kimg")
        _positive(self.stable_kimg, "stable_kimg")
        parse_growth_batch(self.growth_batch or "")
        if self.precision is not None and self.precision not in PRECISIONS:
            raise ConfigError("--precision", f"{self.precision!r}: expected one of {', '.join(PRECISIONS)}")
        if self.memory_format is not None and self.memory_format not in MEMORY_FORMATS:
            raise ConfigError("--memory-format", f"{self.memory_format!r}: expected one of {', '.join(MEMORY_FORMATS)}"
                                                 f"{suggest(self.memory_format, MEMORY_FORMATS)}")
        if not isinstance(self.compile, bool):
            raise ConfigError("--compile", f"{self.compile!r}: expected true or false")
        if self.loss is not None and self.loss not in LOSSES:
            raise ConfigError("--loss", f"{self.loss!r}: expected one of {', '.join(LOSSES)}{suggest(self.loss, LOSSES)}")
        _non_negative(self.gp_weight, "gp_weight")
        _non_negative(self.drift, "drift")
        _positive(self.clip, "clip")
        if self.n_critic is not None:
            _int_at_least(self.n_critic, "n_critic", 1)
        if self.optimizer is not None and self.optimizer not in OPTIMIZERS:
            raise ConfigError("--optimizer", f"{self.optimizer!r}: expected one of {', '.join(OPTIMIZERS)}"
                                             f"{suggest(self.optimizer, OPTIMIZERS)}")
        for name in ("beta1", "beta2"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, (int, float)) and 0 <= value < 1):
                raise ConfigError(option_name(name), f"{value!r}: expected a number in [0, 1)")
        if self.aug is not None and self.aug not in AUG_MODES:
            hint = " (NVIDIA's 'noaug' is 'none' here)" if self.aug == "noaug" else suggest(self.aug, AUG_MODES)
            raise ConfigError("--aug", f"{self.aug!r}: expected one of {', '.join(AUG_MODES)}{hint}")
        if self.augpipe not in AUG_PIPES:
            raise ConfigError("--augpipe", f"{self.augpipe!r}: expected one of {', '.join(AUG_PIPES)}{suggest(self.augpipe, AUG_PIPES)}")
        if not (isinstance(self.target, (int, float)) and 0 < self.target < 1):
            raise ConfigError("--target", f"{self.target!r}: expected a number in (0, 1), e.g. 0.6")
        _positive(self.ada_kimg, "ada_kimg")
        if self.p is not None and not (isinstance(self.p, (int, float)) and 0 <= self.p <= 1):
            raise ConfigError("--p", f"{self.p!r}: expected a probability in [0, 1]")
        from training.diffaug import parse_policy

        try:
            parse_policy(self.diffaug)
        except ValueError as exc:
            raise ConfigError("--diffaug", str(exc)) from None
        _positive(self.tick, "tick")
        _non_negative(self.state_every, "state_every")
        if not isinstance(self.seed, int) or not 0 <= self.seed < 2**31:
            raise ConfigError("--seed", f"{self.seed!r}: expected an integer in [0, 2**31)")
        _int_at_least(self.workers, "workers", 0)
        _int_at_least(self.max_skipped, "max_skipped", 1)
        if self.metrics.strip():
            try:
                parse_metrics(self.metrics)
            except ValueError as exc:
                raise ConfigError("--metrics", str(exc)) from None
        if self.metrics_features not in EXTRACTORS:
            raise ConfigError("--metrics-features", f"{self.metrics_features!r}: expected one of {', '.join(EXTRACTORS)}")


# ---------------------------------------------------------------------- batch arithmetic
def micro_batch(batch: int, batch_gpu: int, world_size: int) -> int:
    """Per-process micro-batch for a global ``batch``: ``--batch-gpu``, or less when the batch is smaller."""
    return max(1, min(batch_gpu, batch // world_size))


def check_batch_split(batch: int, batch_gpu: int, world_size: int, option: str) -> None:
    """``batch`` must be ``batch_gpu * world_size * accumulation`` for a whole accumulation count."""
    per_round = batch_gpu * world_size
    if batch % per_round:
        raise ConfigError(
            option,
            f"{batch} is not a multiple of --batch-gpu ({batch_gpu}) x processes ({world_size}) = {per_round}; "
            "the global batch must split into whole micro-batches on every process",
        )


def parse_attention(text: str) -> tuple[int, ...]:
    """``"16,32"`` -> ``(16, 32)``: the resolutions of --attention (checked against the data later)."""
    if not text.strip():
        return ()
    out = []
    for item in text.split(","):
        try:
            res = int(item.strip())
        except ValueError:
            res = -1
        if not _is_pow2(res, minimum=8) or res in out:
            raise ConfigError("--attention", f"{item.strip()!r} in {text!r}: expected distinct resolutions, powers of "
                                             "two >= 8, separated by commas, e.g. '16,32'")
        out.append(res)
    return tuple(sorted(out))


def parse_info_codes_option(text: str) -> tuple[tuple[str, int], ...]:
    """``--info-codes 'cat:10,cont:2'`` as NetworkConfig's ``info_codes`` (checked against z_dim later)."""
    try:
        return parse_info_codes(text)
    except ValueError as exc:
        raise ConfigError("--info-codes", str(exc)) from None


def parse_growth_batch(text: str) -> dict[int, int]:
    """``"4:64,8:64,16:32"`` -> ``{4: 64, 8: 64, 16: 32}`` (the global batch per resolution)."""
    out: dict[int, int] = {}
    if not text.strip():
        return out
    for item in text.split(","):
        parts = item.strip().split(":")
        try:
            res, b = int(parts[0]), int(parts[1])
            if len(parts) != 2:
                raise IndexError
        except (ValueError, IndexError):
            raise ConfigError(
                "--growth-batch", f"{text!r}: expected RES:BATCH pairs separated by commas, e.g. '4:64,8:32'"
            ) from None
        if not _is_pow2(res, minimum=4) or b < 1:
            raise ConfigError(
                "--growth-batch", f"{item.strip()!r}: the resolution must be a power of two >= 4 and the batch >= 1"
            )
        out[res] = b
    return out


# ---------------------------------------------------------------------- helpers
def _is_pow2(value: Any, minimum: int = 1) -> bool:
    return isinstance(value, int) and value >= minimum and (value & (value - 1)) == 0


def _positive(value: Any, name: str) -> None:
    if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ConfigError(option_name(name), f"{value!r}: expected a number > 0")


def _non_negative(value: Any, name: str) -> None:
    if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ConfigError(option_name(name), f"{value!r}: expected a number >= 0")


def _int_at_least(value: Any, name: str, minimum: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ConfigError(option_name(name), f"{value!r}: expected an integer >= {minimum}")
