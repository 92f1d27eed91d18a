"""Generation from a network file: seeds to latents, latents to images (the Python API of the tools).

This is the library behind ``tools/generate.py``, ``tools/style_mixing.py`` and ``tools/video.py``,
and it is usable on its own::

    from tools.genlib import load_generator, parse_seeds, generate
    G = load_generator("network-snapshot-000064.safetensors", device="auto")   # CUDA when present
    images = generate(G, parse_seeds("0-7"), truncation_psi=0.7)   # [8, C, H, W] float in [-1, 1]

It knows the networks only through their public interface (``G.mapping``, ``G.synthesis``,
``G.mapping.w_avg``, ``stylegan.load_network``), never the training code.

Reproducibility: seed N's latent is ``np.random.RandomState(N).randn(z_dim)``, the latent NVIDIA's
``generate.py`` / ``gen_images.py`` draw, so an NVIDIA network renders the same image here for the
same seed, truncation and class. A network with InfoGAN codes (``G.config.info_codes``) takes
the codes as the last entries of z: a seed's codes come from its own generator
(:func:`stylegan.sampling.seed_latent`), and ``codes`` ({code index: value}, :func:`parse_codes`)
sets some of them for every seed. With ``noise_mode='random'`` the noise inputs come from a CPU
``torch.Generator`` of the seed's own (:func:`noise_generator`). So a seed's inputs do not depend on
the batch it lands in, on the other seeds, or on the device that renders it. (The arithmetic itself
can differ in the last float bits between batch sizes, because matrix-multiply kernels sum in a
shape-dependent order; see docs/generate.md.)

``load_generator`` also takes NVIDIA's StyleGAN2 and StyleGAN3 ``.pkl`` snapshots, read without running their
code and converted in memory (:mod:`stylegan.nvidia_pickle`).

Bad arguments raise :class:`ArgumentError` (a ``ValueError``) whose ``arg`` names the argument, so
a CLI can point at its own option name.
"""

from __future__ import annotations

import difflib
import math
import re
from pathlib import Path
from typing import Callable, Iterator, Mapping, Sequence

import torch
from torch import nn

from stylegan import info_codes as infocodes
from stylegan import sampling

NOISE_MODES = ("const", "random", "none")
MAX_SEED = sampling.MAX_SEED
MAX_LIST_LENGTH = 1_000_000  # a range longer than this is almost certainly a typo


class ArgumentError(ValueError):
    """A bad argument. ``arg`` is its Python name; ``reason`` says what is wrong and what is allowed."""

    def __init__(self, arg: str, reason: str) -> None:
        super().__init__(f"{arg}: {reason}")
        self.arg, self.reason = arg, reason


# ----- parsing -------------------------------------------------------------------------------------

_ITEM = re.compile(r"^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$")


def parse_ranges(text: str, arg: str = "seeds", lo: int = 0, hi: int = MAX_SEED) -> list[int]:
    """Parse ``'0-15,20,30-35'`` into ``[0, ..., 15, 20, 30, ..., 35]`` (ranges inclusive).

    Every number must lie in ``[lo, hi]``, ranges must not run backwards, and no number may appear
    twice (two images would claim one file name).
    """
    if not isinstance(text, str) or not text.strip():
        raise ArgumentError(arg, f"{text!r} is empty; expected numbers and ranges like '0-15,20,30-35'")
    out: list[int] = []
    seen: set[int] = set()
    for item in text.split(","):
        m = _ITEM.match(item)
        if m is None:
            raise ArgumentError(
                arg, f"{item.strip()!r} in {text!r} is not a number or a range A-B; expected e.g. '0-15,20,30-35'"
            )
        a = int(m.group(1))
        b = int(m.group(2)) if m.group(2) is not None else a
        if b < a:
            raise ArgumentError(arg, f"range {item.strip()!r} runs backwards; write it as {b}-{a}")
        for value in (a, b):
            if not lo <= value <= hi:
                raise ArgumentError(arg, f"{value} is out of range; expected numbers in [{lo}, {hi}]")
        if len(out) + (b - a + 1) > MAX_LIST_LENGTH:
            raise ArgumentError(arg, f"{text!r} lists more than {MAX_LIST_LENGTH} numbers")
        for value in range(a, b + 1):
            if value in seen:
                raise ArgumentError(arg, f"{value} appears more than once in {text!r}")
            seen.add(value)
            out.append(value)
    return out


def parse_seeds(text: str) -> list[int]:
    """Seeds for ``--seeds``: numbers in ``[0, 2**32 - 1]``, see :func:`parse_ranges`."""
    return parse_ranges(text, arg="seeds", lo=0, hi=MAX_SEED)


def network_codes(G: nn.Module) -> tuple[tuple[str, int], ...]:
    """The InfoGAN codes of ``G`` (``()`` for a network without, or without a config)."""
    return tuple(getattr(getattr(G, "config", None), "info_codes", ()) or ())


def parse_codes(text: str | None, codes: Sequence[tuple[str, int]]) -> dict[int, float]:
    """``'0=3,1=0.5'`` -> ``{0: 3.0, 1: 0.5}`` for ``--code``: code index = value, a class index for a
    categorical code, a number in [-1, 1] for a continuous one; checked against ``codes`` (a
    network's ``info_codes``). ``None`` or ``''`` is no codes."""
    if text is None or not str(text).strip():
        return {}
    codes = tuple(codes)
    if not codes:
        raise ArgumentError("codes", f"{text!r} given, but this network has no InfoGAN codes (it was trained "
                                     "without --info-codes); omit the codes")
    out: dict[int, float] = {}
    for item in str(text).split(","):
        m = re.fullmatch(r"\s*(\d+)\s*=\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*", item)
        if m is None:
            raise ArgumentError("codes", f"{item.strip()!r} in {text!r}: expected INDEX=VALUE pairs, e.g. '0=3,1=0.5'")
        index, value = int(m.group(1)), float(m.group(2))
        if index in out:
            raise ArgumentError("codes", f"code {index} appears more than once in {text!r}")
        try:
            infocodes.check_code_value(codes, index, value)
        except ValueError as exc:
            raise ArgumentError("codes", str(exc)) from None
        out[index] = value
    return out


# ----- loading -------------------------------------------------------------------------------------


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``'auto'`` is CUDA when present, else the CPU; ``'cuda'`` without CUDA is refused."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ArgumentError("device", f"{device!r} is not a device; expected 'auto', 'cpu' or 'cuda'") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ArgumentError("device", f"{device!r}: CUDA is not available here; use 'cpu' or 'auto'")
    return dev


def load_generator(
    path: str | Path, device: str | torch.device = "cpu", log: Callable[[str], None] | None = None
) -> nn.Module:
    """The generator of a network file, in eval mode on ``device``: ``G_ema`` when present, else ``G``.

    ``.safetensors`` files go through ``stylegan.load_network``; NVIDIA ``.pkl`` snapshots through
    ``stylegan.read_nvidia_pickle`` (converted in memory; ``log`` gets one line saying so). Neither
    executes code from the file.
    """
    import stylegan  # imported here so that parsing and image helpers work without torch models
    from stylegan.nvidia_pickle import is_pickle_path

    path = Path(path)
    if not path.is_file():
        raise ArgumentError("network", f"{str(path)!r} does not exist or is not a file")
    dev = resolve_device(device)
    try:
        if is_pickle_path(path):
            net = stylegan.read_nvidia_pickle(path)
            modules = {name: m.to(dev) for name, m in net.modules.items()}
            if log is not None:
                log(net.one_line())
        else:
            modules = stylegan.load_network(path, device=dev)
    except (stylegan.NetworkFileError, stylegan.NvidiaPickleError, OSError) as exc:
        # Both errors name the file and the problem; keep it to one line for CLIs.
        raise ArgumentError("network", " ".join(str(exc).split())) from exc
    for name in ("G_ema", "G"):
        if name in modules:
            return modules[name].eval().requires_grad_(False)
    raise ArgumentError(
        "network", f"{str(path)!r} holds no generator (modules: {', '.join(sorted(modules)) or 'none'}); "
        f"expected 'G_ema' or 'G'"
    )


# ----- checks against a loaded generator -----------------------------------------------------------


def check_noise_mode(noise_mode: str) -> None:
    if noise_mode not in NOISE_MODES:
        raise ArgumentError("noise_mode", f"{noise_mode!r}; expected one of {', '.join(map(repr, NOISE_MODES))}")


def check_truncation(G: nn.Module, truncation_psi: float, truncation_cutoff: int | None) -> None:
    """``psi`` any finite number; ``cutoff`` ``None`` or a layer count in ``[0, G.num_ws]``."""
    if isinstance(truncation_psi, bool) or not isinstance(truncation_psi, (int, float)) or not math.isfinite(
        truncation_psi
    ):
        raise ArgumentError("truncation_psi", f"{truncation_psi!r}; expected a finite number (1 = no truncation)")
    if truncation_cutoff is None:
        return
    if isinstance(truncation_cutoff, bool) or not isinstance(truncation_cutoff, int) or not (
        0 <= truncation_cutoff <= G.num_ws
    ):
        raise ArgumentError(
            "truncation_cutoff",
            f"{truncation_cutoff!r} is beyond this network's {G.num_ws} layers (ws); expected an int in "
            f"[0, {G.num_ws}] (the first N layers are truncated)",
        )


# ----- StyleGAN3's view: the input grid translated and rotated ------------------------------------


def parse_vec2(text: str, arg: str = "translate") -> tuple[float, float]:
    """``'0.25,-0.1'`` -> (0.25, -0.1): two finite numbers, as NVIDIA's ``--translate X,Y``."""
    parts = text.split(",") if isinstance(text, str) else []
    try:
        values = tuple(float(p) for p in parts)
    except ValueError:
        values = ()
    if len(values) != 2 or not all(math.isfinite(v) for v in values):
        raise ArgumentError(arg, f"{text!r}; expected two finite numbers X,Y, e.g. 0.25,-0.1")
    return values


def _input_transform_buffer(G: nn.Module, arg: str) -> torch.Tensor:
    """StyleGAN3's ``G.synthesis.input.transform``, or an :class:`ArgumentError` naming ``arg`` for a
    network that has none (every other family: their inputs are a constant or the latent)."""
    buffer = getattr(getattr(getattr(G, "synthesis", None), "input", None), "transform", None)
    if not isinstance(buffer, torch.Tensor):
        family = getattr(getattr(G, "config", None), "family", type(G).__name__)
        raise ArgumentError(arg, f"translation and rotation move StyleGAN3's input grid (its Fourier features); this "
                                 f"is a {family!r} network, which has none (StyleGAN3 networks only)")
    return buffer


def check_view(G: nn.Module, **given: object) -> None:
    """Refuse the view options in ``given`` (``translate=...``, ``pan=...``; ``None``: not given) for a
    network that is not a StyleGAN3; the error names the first one given."""
    named = [arg for arg, value in given.items() if value is not None]
    if named:
        _input_transform_buffer(G, named[0])


def set_view(G: nn.Module, translate: Sequence[float] = (0.0, 0.0), rotate: float = 0.0) -> None:
    """Render StyleGAN3's images translated by ``translate`` (in units of the image: x right, y down;
    ``(1 / resolution, 0)`` moves it one pixel right) and rotated by ``rotate`` degrees, as NVIDIA's
    ``gen_images.py --translate X,Y --rotate DEG``: ``G.synthesis.input.transform`` becomes
    :func:`stylegan.stylegan3.input_transform` of them (``(0, 0)`` and ``0``: the identity). It stays
    so until set again (:func:`view` restores it)."""
    from stylegan.stylegan3 import input_transform

    buffer = _input_transform_buffer(G, "translate")
    try:
        (tx, ty), angle = [float(v) for v in translate], float(rotate)
        finite = all(math.isfinite(v) for v in (tx, ty, angle))
    except (TypeError, ValueError):
        finite = False
    if not finite:
        raise ArgumentError("translate", f"translate={translate!r}, rotate={rotate!r}: expected two finite numbers "
                                         "and a finite angle")
    buffer.copy_(input_transform((tx, ty), angle).to(buffer))


class view:
    """``with view(G, translate, rotate):`` renders in that view (:func:`set_view`) and puts the
    network's own transform back afterwards."""

    def __init__(self, G: nn.Module, translate: Sequence[float] = (0.0, 0.0), rotate: float = 0.0) -> None:
        self.G, self.translate, self.rotate = G, translate, rotate
        self.saved: torch.Tensor | None = None

    def __enter__(self) -> nn.Module:
        self.saved = _input_transform_buffer(self.G, "translate").clone()
        set_view(self.G, self.translate, self.rotate)
        return self.G

    def __exit__(self, *exc: object) -> None:
        _input_transform_buffer(self.G, "translate").copy_(self.saved)


def seed_classes(G: nn.Module, seeds: Sequence[int]) -> list[int] | None:
    """The classes seeds get when none is given: seed N gets class ``N mod c_dim`` (``None`` for an
    unconditional network). So ``--seeds 0-15`` of a digit network shows every digit, and a seed's
    image still depends on the seed alone, not on the other seeds of the list."""
    return None if G.c_dim == 0 else [int(s) % G.c_dim for s in seeds]


def read_class_names(path: str | Path, c_dim: int) -> tuple[str, ...] | None:
    """The class names of a network file: its metadata's ``class_names``, else those of the training
    run it lies in (``config.json`` beside it, ``dataset.class_names``); ``None`` when neither has
    ``c_dim`` of them. Only JSON is read."""
    import json

    import stylegan

    path = Path(path)
    candidates = []
    if not path.name.endswith(".pkl"):
        try:
            candidates.append(stylegan.read_network_info(path).metadata.get("class_names"))
        except (stylegan.NetworkFileError, OSError):
            pass
    config = path.parent / "config.json"
    if config.is_file():
        try:
            candidates.append((json.loads(config.read_text()).get("dataset") or {}).get("class_names"))
        except (OSError, ValueError, AttributeError):
            pass
    for names in candidates:
        if isinstance(names, list) and len(names) == c_dim and c_dim > 0:
            return tuple(str(n) for n in names)
    return None


def parse_class(value: str | int | None, c_dim: int, names: Sequence[str] | None = None) -> tuple[int | None, str | None]:
    """``(class index or None, a note or None)`` for ``--class``: a number is an index, anything
    else a name in ``names``. When a number is also the name of another class, the index wins and
    the note says so (an index always works, as in NVIDIA's tools)."""
    if value is None:
        return None, None
    if c_dim == 0:
        raise ArgumentError(
            "class_idx", f"{value!r} given, but this network is unconditional (it has no classes); omit the class"
        )
    text = str(value).strip()
    known = f"names: {', '.join(names)}" if names else "no class names stored in the network or its run"
    if re.fullmatch(r"-?\d+", text):
        idx = int(text)
        if not 0 <= idx < c_dim:
            raise ArgumentError("class_idx", f"{idx} is out of range; this network has {c_dim} classes: 0-{c_dim - 1}")
        note = None
        if names and text in names and names.index(text) != idx:
            note = (f"--class {text}: taken as the index of class {names[idx]!r}; the class named {text!r} is "
                    f"index {names.index(text)}")
        return idx, note
    if names and text in names:
        return list(names).index(text), None
    close = difflib.get_close_matches(text, list(names or []), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise ArgumentError("class_idx", f"{text!r} is not a class index (0-{c_dim - 1}) or name ({known}){hint}")


def make_labels(G: nn.Module, class_idx: int | Sequence[int] | None, n: int) -> torch.Tensor | None:
    """One-hot labels ``[n, c_dim]`` for ``class_idx`` (one int for all, or one per image).

    Conditional networks need a class; unconditional ones refuse one, so a forgotten or stray
    ``--class`` is never silently ignored.
    """
    if G.c_dim == 0:
        if class_idx is not None:
            raise ArgumentError(
                "class_idx", f"{class_idx!r} given, but this network is unconditional (it has no classes); omit the class"
            )
        return None
    if class_idx is None:
        raise ArgumentError(
            "class_idx", f"required: this network is conditional with {G.c_dim} classes; give one in [0, {G.c_dim - 1}] "
            f"(the functions that take seeds default to class seed mod {G.c_dim})"
        )
    indices = [class_idx] * n if isinstance(class_idx, int) else list(class_idx)
    if len(indices) != n:
        raise ArgumentError("class_idx", f"{len(indices)} labels for {n} images; give one int or one per image")
    for idx in indices:
        if isinstance(idx, bool) or not isinstance(idx, int) or not 0 <= idx < G.c_dim:
            raise ArgumentError(
                "class_idx", f"{idx!r} is out of range; this network has {G.c_dim} classes: 0-{G.c_dim - 1}"
            )
    return torch.nn.functional.one_hot(torch.tensor(indices, dtype=torch.long), G.c_dim).float()


# ----- per-seed randomness -------------------------------------------------------------------------


def check_seed(seed: int) -> None:
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise ArgumentError("seeds", f"{seed!r}; expected ints in [0, {MAX_SEED}]")


def seed_latent(seed: int, z_dim: int) -> torch.Tensor:
    """``z`` [z_dim] for ``seed`` (:func:`stylegan.sampling.seed_latent`: NVIDIA's
    ``np.random.RandomState(seed).randn(z_dim)`` as float32), after checking the seed."""
    check_seed(seed)
    return sampling.seed_latent(seed, z_dim)


def latents(
    seeds: Sequence[int], z_dim: int, info_codes: Sequence[tuple[str, int]] = (), codes: Mapping[int, float] | None = None
) -> torch.Tensor:
    """``z`` for each seed, ``[len(seeds), z_dim]`` on the CPU; with a network's ``info_codes``, the
    last entries are the seed's codes, those in ``codes`` (code index -> value) set for every seed."""
    for s in seeds:
        check_seed(s)
    z = sampling.seed_latents(seeds, z_dim, tuple(info_codes))
    if codes:
        try:
            z = infocodes.set_codes(z, tuple(info_codes), codes)
        except ValueError as exc:
            raise ArgumentError("codes", str(exc)) from None
    return z


def noise_generator(seed: int) -> torch.Generator:
    """The CPU generator that draws the noise inputs of ``seed``'s image (``noise_mode='random'``;
    :func:`stylegan.sampling.noise_generator`)."""
    check_seed(seed)
    return sampling.noise_generator(seed)


# ----- mapping and synthesis -----------------------------------------------------------------------


def _device(G: nn.Module) -> torch.device:
    return next(G.parameters()).device


@torch.no_grad()
def map_latents(
    G: nn.Module,
    z: torch.Tensor,
    class_idx: int | Sequence[int] | None = None,
    truncation_psi: float = 1.0,
    truncation_cutoff: int | None = None,
    batch_size: int = 16,
) -> torch.Tensor:
    """``ws`` [N, num_ws, w_dim] (on G's device) for latents ``z`` [N, z_dim], truncated towards w_avg."""
    check_truncation(G, truncation_psi, truncation_cutoff)
    _check_batch_size(batch_size)
    c = make_labels(G, class_idx, z.shape[0])
    dev = _device(G)
    out = []
    for i in range(0, z.shape[0], batch_size):
        zb = z[i : i + batch_size].to(dev)
        cb = None if c is None else c[i : i + batch_size].to(dev)
        out.append(G.mapping(zb, cb, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff))
    if not out:
        return torch.zeros(0, G.num_ws, G.w_dim, device=dev)
    return torch.cat(out)


def map_seeds(
    G: nn.Module,
    seeds: Sequence[int],
    class_idx: int | Sequence[int] | None = None,
    truncation_psi: float = 1.0,
    truncation_cutoff: int | None = None,
    batch_size: int = 16,
    codes: Mapping[int, float] | None = None,
) -> torch.Tensor:
    """``ws`` [len(seeds), num_ws, w_dim] for seeds (see :func:`map_latents`); without ``class_idx`` a
    conditional network gives seed N class ``N mod c_dim`` (:func:`seed_classes`). ``codes``: InfoGAN
    code values set for every seed (:func:`parse_codes`)."""
    if class_idx is None:
        class_idx = seed_classes(G, seeds)
    z = latents(seeds, G.z_dim, network_codes(G), codes)
    return map_latents(G, z, class_idx, truncation_psi, truncation_cutoff, batch_size)


@torch.no_grad()
def iter_synthesize(
    G: nn.Module,
    ws: torch.Tensor,
    noise_seeds: Sequence[int] | None = None,
    noise_mode: str = "const",
    batch_size: int = 16,
) -> Iterator[torch.Tensor]:
    """Render ``ws`` [N, num_ws, w_dim] in batches; yields float images [B, C, H, W] on the CPU.

    ``noise_seeds[i]`` picks image i's noise inputs when ``noise_mode='random'`` (required then,
    ignored otherwise). Each image of a batch draws its noise from its own seed's generator, so the
    result does not depend on the batch size.
    """
    check_noise_mode(noise_mode)
    _check_batch_size(batch_size)
    if noise_mode == "random" and (noise_seeds is None or len(noise_seeds) != ws.shape[0]):
        got = "none" if noise_seeds is None else len(noise_seeds)
        raise ArgumentError(
            "noise_seeds", f"{got} seeds for {ws.shape[0]} ws; noise_mode='random' needs one seed per ws"
        )
    dev = _device(G)
    for i in range(0, ws.shape[0], batch_size):
        wb = ws[i : i + batch_size].to(dev)
        if noise_mode == "random":
            gens = [noise_generator(s) for s in noise_seeds[i : i + batch_size]]
            img = G.synthesis(wb, noise_mode="random", generator=gens)
        else:
            img = G.synthesis(wb, noise_mode=noise_mode)
        yield img.float().cpu()


def iter_generate(
    G: nn.Module,
    seeds: Sequence[int],
    class_idx: int | Sequence[int] | None = None,
    truncation_psi: float = 1.0,
    truncation_cutoff: int | None = None,
    noise_mode: str = "const",
    batch_size: int = 16,
    codes: Mapping[int, float] | None = None,
) -> Iterator[tuple[list[int], torch.Tensor]]:
    """Yield ``(seeds_of_batch, images)`` with images float [B, C, H, W] in [-1, 1] on the CPU.

    Mapping and synthesis run batch by batch, so memory stays bounded for any number of seeds.
    All arguments are checked before the first batch runs. Without ``class_idx`` a conditional
    network gives seed N class ``N mod c_dim`` (:func:`seed_classes`). ``codes``: InfoGAN code values
    set for every seed (code index -> value, :func:`parse_codes`).
    """
    seeds = list(seeds)
    if codes:
        for index, value in codes.items():  # checked up front, like the labels
            try:
                infocodes.check_code_value(network_codes(G), index, value)
            except ValueError as exc:
                raise ArgumentError("codes", str(exc)) from None
    check_noise_mode(noise_mode)
    check_truncation(G, truncation_psi, truncation_cutoff)
    _check_batch_size(batch_size)
    if class_idx is None:
        class_idx = seed_classes(G, seeds)
    labels = class_idx if class_idx is None or isinstance(class_idx, int) else list(class_idx)
    make_labels(G, labels, len(seeds))  # validate all labels up front
    for i in range(0, len(seeds), batch_size):
        sb = seeds[i : i + batch_size]
        cb = labels if labels is None or isinstance(labels, int) else labels[i : i + batch_size]
        ws = map_seeds(G, sb, cb, truncation_psi, truncation_cutoff, batch_size, codes)
        (img,) = iter_synthesize(G, ws, sb, noise_mode, batch_size)
        yield sb, img


def generate(
    G: nn.Module,
    seeds: Sequence[int],
    class_idx: int | Sequence[int] | None = None,
    truncation_psi: float = 1.0,
    truncation_cutoff: int | None = None,
    noise_mode: str = "const",
    batch_size: int = 16,
    codes: Mapping[int, float] | None = None,
) -> torch.Tensor:
    """Images for ``seeds``: float [N, C, H, W] in [-1, 1] (unclamped) on the CPU, in seed order."""
    parts = [img for _, img in iter_generate(G, seeds, class_idx, truncation_psi, truncation_cutoff, noise_mode, batch_size,
                                             codes)]
    if not parts:
        raise ArgumentError("seeds", "empty; expected at least one seed")
    return torch.cat(parts)


def _check_batch_size(batch_size: int) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ArgumentError("batch_size", f"{batch_size!r}; expected an int >= 1")
