"""The one step that turns the options a user gave into the run's complete configuration.

:func:`resolve_run` takes the given options (a :class:`TrainConfig` whose ``None`` fields were not
given), the dataset's shape and the number of processes, and returns every value the run uses
together with where it came from:

* ``given``: on the command line (or in the resumed run's ``config.json``); always wins;
* ``file``: implied by the ``--init`` network file (its preset and conditioning);
* ``preset``: the preset's recipe (:mod:`stylegan.presets`, StyleGAN2-ADA's ``cfg_specs``);
* ``derived``: computed from the data, the processes or other values (conditioning from labels,
  the per-process batch, the precision from ``accelerate config`` or the device);
* ``default``: an option's fixed default.

The network configuration is derived here too, from the preset, the data, the width options and
the precision: a float32 run has no float16 blocks and no clamping, as StyleGAN2-ADA's ``--fp32``.
Nothing else in the project fills in or re-derives a training option.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

import stylegan
from stylegan.config import NetworkConfig
from stylegan.families import unused_fields
from stylegan.presets import recipe_notes, stylegan3_magnitude_beta
from training.metrics.equivariance import check_family
from training.metrics.specs import parse_metrics
from training.speedups import default_memory_format
from training.config import (
    ACCELERATE_PRECISIONS,
    ConfigError,
    TrainConfig,
    check_batch_split,
    micro_batch,
    option_name,
    parse_attention,
    parse_info_codes_option,
    parse_growth_batch,
)

_DEFAULTS = TrainConfig()
_DEFAULTS_NET = NetworkConfig()
DEMO_DATA = TrainConfig.data  # the demo dataset (no --data): trains the tiny preset
RECIPE_FIELDS = ("kimg", "batch", "glr", "dlr", "gamma", "ema_kimg", "ema_rampup", "pl_weight", "pl_interval", "mixing",
                 "snap", "aug", "loss", "optimizer", "beta1", "beta2", "n_critic", "growth", "growth_batch", "blur_sigma",
                 "blur_fade_kimg")
# Recipe values NVIDIA's StyleGAN3 train.py derives from the run's batch (a recipe's None): the G_ema
# half-life and the blur's fade-out.
BATCH_RULES = {"ema_kimg": (10 / 32, "NVIDIA's StyleGAN3 rule: batch x 10 / 32"),
               "blur_fade_kimg": (200 / 32, "NVIDIA's StyleGAN3 rule: batch x 200 / 32")}
# WGAN with weight clipping as published (Arjovsky et al. 2017, Algorithm 1): RMSProp at 5e-5, five
# critic steps per generator step.
WGAN_LR, WGAN_N_CRITIC = 5e-5, 5
# Augmentation options and the --aug modes they belong to: given with another mode they are refused.
AUG_OPTIONS = {"augpipe": ("ada", "fixed"), "target": ("ada",), "ada_kimg": ("ada",), "p": ("ada", "fixed"),
               "diffaug": ("diffaug",)}
NETWORK_FIELDS = {"cbase": "channel_base", "cmax": "channel_max", "map": "mapping_layers", "mbstd_group": "mbstd_group_size"}


@dataclass(frozen=True)
class DataShape:
    """What resolution needs to know of the dataset."""

    resolution: int
    channels: int
    num_classes: int = 0
    class_counts: tuple[int, ...] | None = None

    @classmethod
    def of(cls, info: Any) -> "DataShape":
        """From a :class:`training.data.DatasetInfo`."""
        return cls(info.resolution, info.channels, info.num_classes, info.class_counts)


@dataclass(frozen=True)
class ResolvedRun:
    """A run's complete configuration: the training options, the networks, and each option's source."""

    train: TrainConfig
    network: NetworkConfig
    sources: dict[str, str] = field(default_factory=dict)  # field -> given | file | preset | derived | default
    notes: dict[str, str] = field(default_factory=dict)  # field -> why a derived value is what it is

    def by_source(self, source: str) -> list[str]:
        return [name for name, s in self.sources.items() if s == source]

    def describe(self) -> list[str]:
        """The lines ``--dry-run`` and the run's log start with: what came from where."""
        cfg = self.train

        def flag(name: str) -> str:
            value = getattr(cfg, name)
            if isinstance(value, bool):
                return option_name(name) if value else "--no-" + name.replace("_", "-")
            return f"{option_name(name)}={value:g}" if isinstance(value, float) else f"{option_name(name)}={value}"

        def note(name: str) -> str:
            return f" ({self.notes[name]})" if name in self.notes else ""

        # Network options the family's networks never read (--map for ProGAN, …) are not listed as the
        # preset's or the file's choice (config.json still records them).
        unused = {ours for ours, net in NETWORK_FIELDS.items() if net in unused_fields(self.network.family)}
        lines = []
        for source, label in (("file", f"from --init {cfg.init}"), ("preset", f"from --preset {cfg.preset}")):
            names = [n for n in self.by_source(source) if n not in unused]
            if names:
                lines.append(f"{label}: " + " ".join(flag(n) + note(n) for n in names))
        derived = self.by_source("derived")
        lines.append("derived: " + (", ".join(flag(n) + note(n) for n in derived) if derived else "nothing"))
        if self.network.family == "stylegan3":
            lines.append(f"magnitude EMAs: decay {self.network.magnitude_ema_beta:.6g} per step (NVIDIA's "
                         f"0.5 ** (batch / 20000) for --batch={cfg.batch}: a half-life of 20k images)")
        return lines

    def to_json(self) -> dict[str, Any]:
        return {"sources": dict(sorted(self.sources.items())), "notes": dict(sorted(self.notes.items()))}


def given_fields(cfg: TrainConfig) -> set[str]:
    """Fields of ``cfg`` that differ from :class:`TrainConfig`'s defaults: what a caller set."""
    default = TrainConfig()
    return {f.name for f in fields(cfg) if getattr(cfg, f.name) != getattr(default, f.name)}


def resolve_run(
    cfg: TrainConfig,
    shape: DataShape,
    *,
    world_size: int = 1,
    device_type: str = "cpu",
    accelerate_precision: str | None = None,
    given: set[str] | None = None,
    file_options: dict[str, Any] | None = None,
    file_network: NetworkConfig | None = None,
    saved_network: NetworkConfig | None = None,
) -> ResolvedRun:
    """Fill every option of ``cfg`` that was not given and build the network configuration.

    Args:
        cfg: the options; ``None`` fields were not given.
        shape: the dataset's resolution, channels and classes.
        world_size: the number of training processes.
        device_type: ``'cuda'`` or ``'cpu'``; the presets' float16 needs CUDA.
        accelerate_precision: ``accelerate config``'s mixed precision (``no``/``fp16``/``bf16``).
        given: the names the user gave (default: those differing from the defaults).
        file_options: what the ``--init`` file implies (``preset``, ``cond``, width), where not given.
        file_network: the ``--init`` file's network when it is none of our presets (an NVIDIA
            pickle): the run builds exactly that network, with its own growth and precision layout.
        saved_network: a resumed run's network (``config.json``), built as it was saved.

    Raises:
        ConfigError: a value that cannot work with this data or these processes; the message
            names the option.
    """
    cfg.validate()
    given = given_fields(cfg) if given is None else set(given)
    sources: dict[str, str] = {}
    notes: dict[str, str] = {}
    values: dict[str, Any] = {}

    def take(name: str, value: Any, source: str, why: str | None = None) -> None:
        """Fill ``name`` unless it was given or already filled by an earlier (stronger) source."""
        if (getattr(cfg, name) is not None and name in given) or name in values:
            return
        values[name] = value
        sources[name] = source
        if why:
            notes[name] = why

    for name in given:
        sources[name] = "given"
    for name, value in (file_options or {}).items():
        if name not in given:
            take(name, value, "file")

    # The preset: given, implied by --init's file, else 'auto' for the user's data and 'tiny' for the demo.
    preset = values.get("preset", cfg.preset)
    if preset is None:
        preset = "tiny" if cfg.data == DEMO_DATA and "data" not in given else "auto"
        why = "the demo dataset" if preset == "tiny" else "--data without --preset"
        if file_network is not None:
            why = f"the recipe for --init's {file_network.preset!r} network"
        take("preset", preset, "derived", why)

    try:
        recipe = stylegan.preset_recipe(preset, shape.resolution, world_size)
        network_defaults = stylegan.preset_network(preset, shape.resolution, world_size)
    except ValueError as err:
        raise ConfigError("--data", f"the dataset ({shape.resolution}x{shape.resolution}) does not fit --preset={preset!r}: {err}") from None
    if cfg.loss is None:
        take("loss", recipe.loss, "preset")
    loss = values.get("loss", cfg.loss)
    _resolve_loss(cfg, loss, given, take)
    if cfg.init is not None and cfg.ema_rampup is None:
        take("ema_rampup", 0.0, "derived", "--init: G_ema starts trained")
    if cfg.init is not None and cfg.blur_sigma is None and recipe.blur_sigma:
        take("blur_sigma", 0.0, "derived", "--init: D starts trained (NVIDIA's train.py turns the blur off on --resume)")
    preset_notes = recipe_notes(preset, shape.resolution)
    for name in RECIPE_FIELDS:
        if getattr(cfg, name) is None and getattr(recipe, name) is not None:
            take(name, getattr(recipe, name), "preset", preset_notes.get(name))
    batch = values.get("batch", cfg.batch)
    if not values.get("blur_sigma", cfg.blur_sigma) and cfg.blur_fade_kimg is None:
        take("blur_fade_kimg", 0.0, "default")  # no blur to fade
    for name, (per_image, why) in BATCH_RULES.items():
        if getattr(cfg, name) is None and getattr(recipe, name) is None:
            take(name, batch * per_image, "derived", why)
    if values.get("pl_interval", cfg.pl_interval) == 0 and values.get("pl_weight", cfg.pl_weight):
        raise ConfigError("--pl-weight", f"{values.get('pl_weight', cfg.pl_weight):g} with --pl-interval 0 (no lazy G "
                                         "regularisation, the preset's): path length runs lazily here; give "
                                         "--pl-interval N (e.g. 4) too")
    if sources.get("kimg") == "preset" and recipe.growth == "progressive" and values.get("growth", cfg.growth) == "progressive":
        # A growing preset's length is its schedule on this data: every fade and stable phase up to
        # the data's resolution, then one more stable phase there (ProGAN sec. A.1).
        doublings = max(0, (shape.resolution // (cfg.growth_start or 4)).bit_length() - 1)
        values["kimg"] = cfg.stable_kimg + doublings * (cfg.fade_kimg + cfg.stable_kimg)
        sources["kimg"], notes["kimg"] = "derived", "the growth schedule up to this resolution, then one stable phase"
    if sources.get("growth_batch") == "preset":  # the preset's batches for resolutions this data has
        kept = {r: b for r, b in parse_growth_batch(values["growth_batch"]).items() if r <= shape.resolution}
        values["growth_batch"] = ",".join(f"{r}:{b}" for r, b in sorted(kept.items()))
    if values.get("optimizer", cfg.optimizer) == "rmsprop":
        for name in ("beta1", "beta2"):
            if name in given:
                raise ConfigError(option_name(name), "applies to --optimizer adam only; this run uses rmsprop")
    if cfg.batch_gpu is None:
        if recipe.batch_gpu is not None and "batch" not in given and batch // world_size >= 1:
            take("batch_gpu", min(recipe.batch_gpu, batch // world_size), "preset")
        else:
            if batch % world_size:
                raise ConfigError(
                    "--batch",
                    f"{batch} is not divisible by the number of processes ({world_size}); "
                    f"use a multiple of {world_size} (e.g. {world_size * max(1, batch // world_size)})",
                )
            take("batch_gpu", batch // world_size, "derived", "batch / processes")
    for name, net_name in NETWORK_FIELDS.items():
        if getattr(cfg, name) is None:
            take(name, network_defaults.get(net_name, getattr(_DEFAULTS_NET, net_name)), "preset")

    family = network_defaults.get("family", _DEFAULTS_NET.family)
    if cfg.attention.strip() and family != "stylegan2":
        raise ConfigError("--attention", f"self-attention blocks exist in the stylegan2 family only; --preset {preset} "
                                         f"builds {family}'s networks")
    if cfg.info_codes.strip() and family != "stylegan2":
        raise ConfigError("--info-codes", f"InfoGAN's codes (D's head Q) exist in the stylegan2 family only; --preset "
                                          f"{preset} builds {family}'s networks")
    cond = values.get("cond", cfg.cond)
    if cond is None:
        take("cond", shape.num_classes > 0, "derived", "the dataset has labels" if shape.num_classes else "no labels")
    elif cond and shape.num_classes == 0:
        raise ConfigError("--cond", f"the dataset {cfg.data!r} has no labels; use --no-cond")

    if cfg.precision is None:
        # accelerate launch exports its mixed_precision even when nobody chose it ('no' by default):
        # only fp16/bf16 there is a choice that overrides the preset.
        accel = ACCELERATE_PRECISIONS.get((accelerate_precision or "").lower())
        if accel in ("fp16", "bf16"):
            take("precision", accel, "derived", "accelerate config")
        elif recipe.precision != "fp32" and device_type != "cuda":
            take("precision", "fp32", "derived", f"the preset's {recipe.precision} needs CUDA")
        else:
            take("precision", recipe.precision, "preset")

    if cfg.memory_format is None:
        layout, why = default_memory_format(device_type)
        take("memory_format", layout, "derived", why)
    _resolve_augmentation(cfg, given, values, sources, notes)
    resolved = cfg.replace(**values)
    for name in sorted(f.name for f in fields(resolved)):
        sources.setdefault(name, "default")
    if saved_network is not None:
        network = saved_network
    elif file_network is not None:
        network = _network_from_file(file_network, resolved, shape)
    else:
        network = network_config(resolved, shape)
    _check_batches(resolved, network, world_size, shape.resolution)
    _check_metrics(resolved, network)
    missing = resolved.unresolved()
    if missing:  # a programming error: every option must have a source
        raise AssertionError(f"unresolved options: {missing}")
    return ResolvedRun(resolved, network, sources, notes)


def _check_metrics(cfg: TrainConfig, network: NetworkConfig) -> None:
    """Equivariance metrics are refused at start-up for a network without StyleGAN3's input transform."""
    if not cfg.metrics.strip():
        return
    try:
        check_family([s.name for s in parse_metrics(cfg.metrics) if s.is_equivariance], network.family)
    except ValueError as exc:
        raise ConfigError("--metrics", str(exc)) from None


def _resolve_loss(cfg: TrainConfig, loss: str, given: set[str], take: Any) -> None:
    """What ``--loss`` implies: WGAN-GP's penalty and WGAN's clipping take R1's place; WGAN trains as
    its paper (RMSProp at 5e-5, 5 critic steps per G step) unless told otherwise; options of one loss
    are refused with another."""
    lipschitz = {"wgan-gp": "its gradient penalty (--gp-weight)", "wgan": "its weight clipping (--clip)"}
    if loss in lipschitz:
        # R1 on top would constrain D's gradients a second time, with a second weight to tune.
        if cfg.gamma and "gamma" in given:
            raise ConfigError("--gamma", f"{cfg.gamma:g} with --loss {loss}: {lipschitz[loss]} takes R1's place; "
                                         "leave --gamma out or set it to 0")
        take("gamma", 0.0, "derived", f"--loss {loss}: {lipschitz[loss]} takes R1's place")
    if loss == "wgan":
        take("optimizer", "rmsprop", "derived", "--loss wgan: RMSProp, as its paper (momentum hurt the critic there)")
        take("n_critic", WGAN_N_CRITIC, "derived", "--loss wgan: the paper's n_critic")
        for name in ("glr", "dlr"):
            take(name, WGAN_LR, "derived", "--loss wgan: the paper's learning rate")
    for name, owner in (("gp_weight", "wgan-gp"), ("drift", "wgan-gp"), ("clip", "wgan")):
        if name in given and loss != owner and getattr(cfg, name) != getattr(_DEFAULTS, name):
            raise ConfigError(option_name(name), f"applies to --loss {owner} only; this run has --loss {loss}")


def _resolve_augmentation(cfg: TrainConfig, given: set[str], values: dict[str, Any], sources: dict[str, str],
                          notes: dict[str, str]) -> None:
    """Check the augmentation options against ``--aug`` and settle p: ``--aug fixed`` needs it, ADA
    starts at 0 or at the ``--init`` file's p (an NVIDIA snapshot's ``augment_pipe.p``, or ours)."""
    aug = values.get("aug", cfg.aug)
    for name, modes in AUG_OPTIONS.items():
        if name in given and aug not in modes and getattr(cfg, name) != getattr(_DEFAULTS, name):
            raise ConfigError(option_name(name), f"applies to --aug {' / '.join(modes)} only; this run has --aug {aug}")
    if aug == "fixed" and values.get("p", cfg.p) is None:
        raise ConfigError("--p", "--aug fixed needs --p, the probability of each augmentation (e.g. 0.2)")
    if aug == "ada" and values.get("p", cfg.p) is None:
        values["p"], sources["p"] = 0.0, "default"
    elif aug in ("none", "diffaug") and sources.get("p") == "file":
        del values["p"], sources["p"]  # the file's p has no use without ADA
    if aug == "ada" and sources.get("p") == "file":
        notes["p"] = "ADA starts at the --init file's augmentation probability"


def network_config(cfg: TrainConfig, shape: DataShape) -> NetworkConfig:
    """The networks of a resolved ``cfg`` on data of ``shape``. Float32 runs have no float16 blocks
    and no clamping (StyleGAN2-ADA ``--fp32``); fp16 and bf16 runs take the preset's."""
    overrides: dict[str, Any] = {net: getattr(cfg, ours) for ours, net in NETWORK_FIELDS.items()}
    overrides.update(spectral_norm=cfg.spectral_norm, attention=parse_attention(cfg.attention),
                     info_codes=parse_info_codes_option(cfg.info_codes))
    if cfg.precision == "fp32":
        overrides.update(num_fp16_res=0, conv_clamp=None)
    if stylegan.preset_network(cfg.preset, shape.resolution).get("family") == "stylegan3":
        overrides.update(magnitude_ema_beta=stylegan3_magnitude_beta(cfg.batch))  # NVIDIA: from the run's batch
    c_dim = shape.num_classes if cfg.cond else 0
    try:
        return stylegan.resolve_config(cfg.preset, shape.resolution, shape.channels, c_dim, growth=cfg.growth, **overrides)
    except ValueError as err:
        raise ConfigError(
            "--data", f"the dataset ({shape.resolution}x{shape.resolution}, {shape.channels} channels) does not fit "
            f"--preset={cfg.preset!r}: {err}",
        ) from None


def _network_from_file(file_net: NetworkConfig, cfg: TrainConfig, shape: DataShape) -> NetworkConfig:
    """The ``--init`` file's network for this run: its architecture as it is, this run's growth, and
    the precision layout of this run (none in fp32; the preset's float16 blocks and clamp otherwise)."""
    c_dim = shape.num_classes if cfg.cond else 0
    wanted = {"resolution": shape.resolution, "img_channels": shape.channels, "c_dim": c_dim}
    diff = [f"{k}: file {getattr(file_net, k)!r}, this run {v!r}" for k, v in wanted.items() if getattr(file_net, k) != v]
    if diff:
        raise ConfigError(
            "--init", f"{cfg.init}: its networks differ from this run's ({', '.join(diff)}); use data of the "
            f"file's resolution and channels, and --cond/--no-cond to match its classes",
        )
    for name, ours in (("spectral_norm", cfg.spectral_norm), ("attention", parse_attention(cfg.attention)),
                       ("info_codes", parse_info_codes_option(cfg.info_codes))):
        if ours != getattr(file_net, name) and ours != getattr(_DEFAULTS_NET, name):
            raise ConfigError(option_name(name), f"{cfg.init} has {name}={getattr(file_net, name)!r}; a run that takes "
                                                 "its weights builds the same networks (leave the option out)")
    layout = stylegan.preset_network(cfg.preset, shape.resolution)
    fp16_res, clamp = (0, None) if cfg.precision == "fp32" else (layout["num_fp16_res"], layout["conv_clamp"])
    return file_net.replace(growth=cfg.growth, num_fp16_res=fp16_res, conv_clamp=clamp)


def _check_batches(cfg: TrainConfig, network: NetworkConfig, world_size: int, resolution: int) -> None:
    """Every global batch must split into whole micro-batches, and each micro-batch into D's
    minibatch-stddev groups."""
    check_batch_split(cfg.batch, cfg.batch_gpu, world_size, "--batch")
    growth_batches = parse_growth_batch(cfg.growth_batch)
    for res, b in growth_batches.items():
        if res > resolution:
            raise ConfigError("--growth-batch", f"resolution {res} is above the dataset's resolution {resolution}")
        check_batch_split(b, micro_batch(b, cfg.batch_gpu, world_size), world_size, "--growth-batch")
    start = cfg.growth_start or 4
    if cfg.growth == "progressive" and start > resolution:
        raise ConfigError("--growth-start", f"{start} is above the dataset's resolution {resolution}")
    group = network.mbstd_group_size if network.mbstd_num_channels else 1
    for b in sorted({cfg.batch} | set(growth_batches.values())):
        n = micro_batch(b, cfg.batch_gpu, world_size)
        if n % min(group, n):
            raise ConfigError(
                "--batch-gpu", f"{n} images per micro-batch do not split into D's minibatch-stddev groups of "
                f"{group}; use a multiple of {group} (or --mbstd-group)",
            )


def with_network_fields(saved: dict[str, Any], network: dict[str, Any]) -> dict[str, Any]:
    """A saved ``config.json`` train section from before the width options existed, completed from
    its network section so that a resumed run rebuilds the same networks."""
    out = dict(saved)
    for ours, net in NETWORK_FIELDS.items():
        if out.get(ours) is None and net in network:
            out[ours] = network[net]
    return out

