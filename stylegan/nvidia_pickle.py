"""NVIDIA's StyleGAN2 and StyleGAN3 snapshots (``network-snapshot-*.pkl``, the published
FFHQ/AFHQ/MetFaces files) as our networks: read safely, the config rebuilt, the weights renamed.

Files of stylegan2-ada-pytorch and of the stylegan3 repository (``--cfg=stylegan2``,
``stylegan3-t``, ``stylegan3-r``) are a pickled dict ``{G, D, G_ema, augment_pipe,
training_set_kwargs}`` whose modules are NVIDIA persistent objects. :mod:`stylegan.safe_unpickle`
reads them without running any of their code; here each one becomes a :class:`ModuleRecord`
(class name, constructor arguments, tensors, submodules, attributes), the
:class:`~stylegan.config.NetworkConfig` is rebuilt from the constructor arguments, and the tensors
are renamed into our modules' state dicts:

======================================  ==========================================================
NVIDIA                                  ours
======================================  ==========================================================
``mapping.fc{i}.*``                     ``mapping.layers.{i}.*``
``synthesis.b{r}.*`` (StyleGAN2)        ``synthesis.blocks.b{r}.*``
``synthesis.L{i}_{size}_{ch}.*`` (SG3)  ``synthesis.layers.{i}.*``
``D.b{r}.*`` (r > 4)                    ``D.blocks.b{r}.*``
``*.resample_filter``                   not stored (rebuilt from the config; checked equal)
``*.up_filter``, ``*.down_filter``      not stored (rebuilt from the config; checked equal to 1e-6)
======================================  ==========================================================

Everything else (``mapping.embed``, ``mapping.w_avg``, ``const``, ``conv0/conv1/torgb/skip``,
``affine``, ``noise_strength``, ``noise_const``, StyleGAN3's ``input.{weight,affine,transform,freqs,
phases}`` and ``magnitude_ema``, ``D.b4`` epilogue, D's label mapping) has the same name. A
StyleGAN3 generator is also checked layer by layer against ours: each layer's sizes, channels,
sampling rates, cutoffs, transition widths, resampling factors, filter taps, padding and float16
flag as NVIDIA's code computed them (its stored attributes) must equal what our config gives.
What our config cannot represent (other activations, different channel schedules in a StyleGAN2 G
and D, an unknown constructor argument, ...) is refused with one line naming it.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from ops.upfirdn2d import setup_filter
from stylegan.config import NetworkConfig
from stylegan.families import network_classes
from stylegan.safe_unpickle import ArrayRecord, PersistentObject, PickleRefused, safe_loads

SNAPSHOT_MODULES = ("G", "D", "G_ema")
# Constructor arguments that change only speed or training, never what a network computes.
RUNTIME_KWARGS = ("channels_last", "fp16_channels_last", "fused_modconv_default", "freeze_layers")
_MAX_DEPTH = 32


class NvidiaPickleError(ValueError):
    """A pickle this reader cannot (or will not) turn into our networks; the message is one line."""


@dataclass
class ModuleRecord:
    """An NVIDIA ``nn.Module`` as data: what its persistent-object state holds."""

    class_name: str
    init_args: tuple
    init_kwargs: dict
    tensors: dict[str, torch.Tensor]  # parameters and persistent buffers
    modules: dict[str, "ModuleRecord | None"]
    attrs: dict[str, Any]  # the other plain attributes (w_avg_beta, use_fp16, ...)
    where: str = ""

    def child(self, name: str) -> "ModuleRecord":
        sub = self.modules.get(name)
        if sub is None:
            raise NvidiaPickleError(
                f"{self.where}.{name}: missing; this is not the {self.class_name} of NVIDIA's StyleGAN2 or StyleGAN3"
            )
        return sub

    def flat_tensors(self, prefix: str = "") -> dict[str, torch.Tensor]:
        out = {prefix + k: v for k, v in self.tensors.items()}
        for name, sub in self.modules.items():
            if sub is not None:
                out.update(sub.flat_tensors(f"{prefix}{name}."))
        return out


def module_record(obj: Any, where: str, depth: int = 0) -> ModuleRecord:
    """The :class:`ModuleRecord` of a pickled NVIDIA module (recursively)."""
    if not isinstance(obj, PersistentObject):
        raise NvidiaPickleError(f"{where}: a {type(obj).__name__}, expected an NVIDIA network module")
    if depth > _MAX_DEPTH:
        raise NvidiaPickleError(f"{where}: modules nested deeper than {_MAX_DEPTH}")
    state = obj.state
    tensors: dict[str, torch.Tensor] = {}
    skip = set(state.get("_non_persistent_buffers_set") or ())
    for group in ("_parameters", "_buffers"):
        for name, value in dict(state.get(group) or {}).items():
            if value is None or name in skip:
                continue
            if not isinstance(value, torch.Tensor):
                raise NvidiaPickleError(f"{where}.{name}: a {type(value).__name__}, expected a tensor")
            tensors[name] = value
    modules = {
        name: None if sub is None else module_record(sub, f"{where}.{name}", depth + 1)
        for name, sub in dict(state.get("_modules") or {}).items()
    }
    attrs = {k: v for k, v in state.items() if not k.startswith("_") and k != "training"}
    kwargs = state.get("_init_kwargs")
    args = state.get("_init_args")
    return ModuleRecord(
        obj.class_name, tuple(args) if isinstance(args, (tuple, list)) else (),
        dict(kwargs) if isinstance(kwargs, dict) else {}, tensors, modules, attrs, where,
    )


# ----- the config, from the constructor arguments ------------------------------------------------


def _take(kw: dict, key: str, fallback: Callable[[], Any]) -> Any:
    """A constructor argument, or what NVIDIA's code made of its default (read from the module)."""
    return kw.pop(key) if key in kw else fallback()


def _refuse_leftovers(kw: dict, who: str, notes: list[str]) -> None:
    for key in list(kw):
        if key in RUNTIME_KWARGS:
            notes.append(f"{who} {key}={kw.pop(key)!r}")
    if kw:
        key, value = next(iter(kw.items()))
        raise NvidiaPickleError(f"{who} kwarg {key}={value!r}: our NetworkConfig cannot represent it")


def _require(who: str, key: str, value: Any, allowed: tuple) -> None:
    if value not in allowed:
        raise NvidiaPickleError(
            f"{who} kwarg {key}={value!r}: our NetworkConfig supports only {' or '.join(map(repr, allowed))}"
        )


def _is_stylegan3(rec: ModuleRecord) -> bool:
    """Whether ``rec`` is a StyleGAN3 generator: its synthesis starts from a SynthesisInput (or its
    constructor took StyleGAN3's ``magnitude_ema_beta``)."""
    syn = rec.modules.get("synthesis")
    return "magnitude_ema_beta" in rec.init_kwargs or (
        syn is not None and any(m is not None and m.class_name == "SynthesisInput" for m in syn.modules.values())
    )


def stylegan3_variant(config: NetworkConfig) -> str:
    """'StyleGAN3-T' (3x3 convolutions, separable filters), 'StyleGAN3-R' (1x1, radial filters),
    else 'StyleGAN3' (another combination; NVIDIA's train.py makes only T and R)."""
    if config.conv_kernel == 3 and not config.use_radial_filters:
        return "StyleGAN3-T"
    if config.conv_kernel == 1 and config.use_radial_filters:
        return "StyleGAN3-R"
    return "StyleGAN3"


_SG3_LAYER = re.compile(r"^L(\d+)_(\d+)_(\d+)$")
# NVIDIA's SynthesisNetwork / SynthesisLayer defaults of the arguments its modules keep no attribute
# of; whatever is taken from here is checked against the layers' stored attributes afterwards.
_SG3_DEFAULTS = dict(first_stopband=2**2.1, last_stopband_rel=2**0.3, filter_size=6, lrelu_upsampling=2)


def stylegan3_layers(syn: ModuleRecord) -> list[tuple[str, ModuleRecord]]:
    """NVIDIA's StyleGAN3 synthesis layers in order, ``(name, record)``, from its ``layer_names``
    (``L{i}_{size}_{channels}``); any other submodule than ``input`` and these is refused."""
    names = syn.attrs.get("layer_names")
    if not (isinstance(names, list) and 0 < len(names) <= 256 and all(isinstance(n, str) for n in names)):
        raise NvidiaPickleError(
            f"{syn.where}: no list of layer names (layer_names); not NVIDIA's StyleGAN3 SynthesisNetwork"
        )
    layers = []
    for i, name in enumerate(names):
        match = _SG3_LAYER.match(name)
        if match is None or int(match.group(1)) != i:
            raise NvidiaPickleError(f"{syn.where}: layer {i} is named {name[:40]!r}, expected 'L{i}_<size>_<channels>'")
        layers.append((name, syn.child(name)))
    extra = sorted(set(syn.modules) - set(names) - {"input"})
    if extra:
        raise NvidiaPickleError(
            f"{syn.where}.{extra[0][:40]}: a module NVIDIA's StyleGAN3 SynthesisNetwork does not have"
        )
    return layers


def _stylegan3_generator_values(rec: ModuleRecord, notes: list[str]) -> dict[str, Any]:
    """NetworkConfig fields of an NVIDIA StyleGAN3 generator, from its constructor arguments (the
    Generator passes its synthesis and layer arguments through, so all of them are here); an
    argument left at NVIDIA's default is read from the modules' attributes where they keep it."""
    who = rec.where
    if rec.class_name != "Generator":
        raise NvidiaPickleError(f"{who}: class {rec.class_name!r}, expected NVIDIA's StyleGAN3 'Generator'")
    syn, mapping = rec.child("synthesis"), rec.child("mapping")
    if syn.class_name != "SynthesisNetwork" or syn.child("input").class_name != "SynthesisInput":
        raise NvidiaPickleError(
            f"{who}.synthesis: class {syn.class_name!r}, expected NVIDIA's StyleGAN3 SynthesisNetwork"
        )
    layers = stylegan3_layers(syn)
    first = layers[0][1]
    kw = dict(rec.init_kwargs)
    mk = dict(kw.pop("mapping_kwargs", None) or {})
    v: dict[str, Any] = {"family": "stylegan3"}
    for key, ours in (("z_dim", "z_dim"), ("c_dim", "c_dim"), ("w_dim", "w_dim"),
                      ("img_resolution", "resolution"), ("img_channels", "img_channels")):
        v[ours] = _take(kw, key, lambda key=key: rec.attrs.get(key))
    # G's channel schedule; it becomes our g_channel_* where D's differs (config-R doubles G's).
    v["g_channel_base"] = _take(kw, "channel_base", lambda: 32768)
    v["g_channel_max"] = _take(kw, "channel_max", lambda: 512)
    v["num_fp16_res"] = _take(kw, "num_fp16_res", lambda: syn.attrs.get("num_fp16_res"))
    v["conv_clamp"] = _take(kw, "conv_clamp", lambda: first.attrs.get("conv_clamp"))
    v["magnitude_ema_beta"] = _take(kw, "magnitude_ema_beta", lambda: first.attrs.get("magnitude_ema_beta"))
    v["conv_kernel"] = _take(kw, "conv_kernel", lambda: first.attrs.get("conv_kernel"))
    v["use_radial_filters"] = _take(kw, "use_radial_filters", lambda: any(
        m.attrs.get("down_radial") is True for _, m in layers))
    v["sg3_layers"] = _take(kw, "num_layers", lambda: syn.attrs.get("num_layers"))
    v["sg3_critical_layers"] = _take(kw, "num_critical", lambda: syn.attrs.get("num_critical"))
    v["margin_size"] = _take(kw, "margin_size", lambda: syn.attrs.get("margin_size"))
    v["output_scale"] = _take(kw, "output_scale", lambda: syn.attrs.get("output_scale"))
    v["first_cutoff"] = _take(kw, "first_cutoff", lambda: first.attrs.get("in_cutoff"))
    for key, default in _SG3_DEFAULTS.items():
        v[key] = _take(kw, key, lambda default=default: default)
    for key in ("first_cutoff", "first_stopband", "last_stopband_rel", "output_scale", "magnitude_ema_beta"):
        if isinstance(v[key], int) and not isinstance(v[key], bool):
            v[key] = float(v[key])  # NVIDIA's 2 and 1 are our 2.0 and 1.0
    _refuse_leftovers(kw, who, notes)

    mwho = f"{who}.mapping"
    if mapping.class_name != "MappingNetwork":
        raise NvidiaPickleError(f"{mwho}: class {mapping.class_name!r}, expected NVIDIA's 'MappingNetwork'")
    v["mapping_layers"] = _take(mk, "num_layers", lambda: mapping.attrs.get("num_layers"))
    v["mapping_lr_multiplier"] = _take(mk, "lr_multiplier", lambda: mapping.child("fc0").attrs.get("bias_gain"))
    v["w_avg_beta"] = _take(mk, "w_avg_beta", lambda: mapping.attrs.get("w_avg_beta"))
    _refuse_leftovers(mk, mwho, notes)
    return v


def generator_values(rec: ModuleRecord, notes: list[str]) -> dict[str, Any]:
    """NetworkConfig fields of an NVIDIA StyleGAN2 or StyleGAN3 generator, from its constructor arguments."""
    who = rec.where
    if _is_stylegan3(rec):
        return _stylegan3_generator_values(rec, notes)
    if rec.class_name != "Generator":
        raise NvidiaPickleError(f"{who}: class {rec.class_name!r}, expected NVIDIA's StyleGAN2 'Generator'")
    syn, mapping = rec.child("synthesis"), rec.child("mapping")
    b4 = syn.child("b4")
    layer = b4.child("conv1")
    kw = dict(rec.init_kwargs)
    mk = dict(kw.pop("mapping_kwargs", None) or {})
    kw.update(kw.pop("synthesis_kwargs", None) or {})  # stylegan2-ada-pytorch nests them
    v: dict[str, Any] = {}
    for key, ours in (("z_dim", "z_dim"), ("c_dim", "c_dim"), ("w_dim", "w_dim"),
                      ("img_resolution", "resolution"), ("img_channels", "img_channels")):
        v[ours] = _take(kw, key, lambda key=key: rec.attrs.get(key))
    v["channel_base"] = _take(kw, "channel_base", lambda: 32768)  # NVIDIA's default in both repositories
    v["channel_max"] = _take(kw, "channel_max", lambda: 512)
    v["num_fp16_res"] = _take(kw, "num_fp16_res", lambda: _count_fp16(syn))
    v["conv_clamp"] = _take(kw, "conv_clamp", lambda: layer.attrs.get("conv_clamp"))
    v["g_architecture"] = _take(kw, "architecture", lambda: b4.attrs.get("architecture"))
    v["use_noise"] = _take(kw, "use_noise", lambda: layer.attrs.get("use_noise", True))
    v["resample_filter"] = tuple(_take(kw, "resample_filter", lambda: [1, 3, 3, 1]))
    _require(who, "activation", kw.pop("activation", "lrelu"), ("lrelu",))
    _require(who, "conv_kernel", kw.pop("conv_kernel", 3), (3,))
    _refuse_leftovers(kw, who, notes)

    mwho = f"{who}.mapping"
    v["mapping_layers"] = _take(mk, "num_layers", lambda: mapping.attrs.get("num_layers"))
    v["mapping_lr_multiplier"] = _take(mk, "lr_multiplier", lambda: mapping.child("fc0").attrs.get("bias_gain"))
    v["w_avg_beta"] = _take(mk, "w_avg_beta", lambda: mapping.attrs.get("w_avg_beta"))
    _require(mwho, "activation", mk.pop("activation", "lrelu"), ("lrelu",))
    _require(mwho, "layer_features", mk.pop("layer_features", None), (None, v["w_dim"]))
    _require(mwho, "embed_features", mk.pop("embed_features", None), (None, v["w_dim"] if v["c_dim"] else 0))
    _refuse_leftovers(mk, mwho, notes)
    return v


def discriminator_values(rec: ModuleRecord, notes: list[str]) -> dict[str, Any]:
    """NetworkConfig fields of an NVIDIA StyleGAN2 discriminator, from its constructor arguments."""
    who = rec.where
    if rec.class_name != "Discriminator":
        raise NvidiaPickleError(f"{who}: class {rec.class_name!r}, expected NVIDIA's StyleGAN2 'Discriminator'")
    b4 = rec.child("b4")
    kw = dict(rec.init_kwargs)
    bk = dict(kw.pop("block_kwargs", None) or {})
    mk = dict(kw.pop("mapping_kwargs", None) or {})
    ek = dict(kw.pop("epilogue_kwargs", None) or {})
    v: dict[str, Any] = {}
    for key, ours in (("c_dim", "c_dim"), ("img_resolution", "resolution"), ("img_channels", "img_channels")):
        v[ours] = _take(kw, key, lambda key=key: rec.attrs.get(key))
    v["d_architecture"] = _take(kw, "architecture", lambda: b4.attrs.get("architecture"))
    v["channel_base"] = _take(kw, "channel_base", lambda: 32768)
    v["channel_max"] = _take(kw, "channel_max", lambda: 512)
    v["num_fp16_res"] = _take(kw, "num_fp16_res", lambda: _count_fp16(rec))
    v["conv_clamp"] = _take(kw, "conv_clamp", lambda: b4.child("conv").attrs.get("conv_clamp"))
    cmap_dim = kw.pop("cmap_dim", None)
    _refuse_leftovers(kw, who, notes)

    v["resample_filter"] = tuple(_take(bk, "resample_filter", lambda: [1, 3, 3, 1]))
    _require(f"{who}.block_kwargs", "activation", bk.pop("activation", "lrelu"), ("lrelu",))
    _refuse_leftovers(bk, f"{who}.block_kwargs", notes)

    mbstd = b4.modules.get("mbstd")
    v["mbstd_group_size"] = _take(ek, "mbstd_group_size", lambda: mbstd.attrs.get("group_size") if mbstd else 4)
    v["mbstd_num_channels"] = _take(ek, "mbstd_num_channels", lambda: mbstd.attrs.get("num_channels") if mbstd else 0)
    _require(f"{who}.epilogue_kwargs", "activation", ek.pop("activation", "lrelu"), ("lrelu",))
    _refuse_leftovers(ek, f"{who}.epilogue_kwargs", notes)

    if v["c_dim"]:
        mapping = rec.child("mapping")
        our_cmap = min(v["channel_base"] // 4, v["channel_max"])
        _require(who, "cmap_dim", cmap_dim, (None, our_cmap))
        v["d_mapping_layers"] = _take(mk, "num_layers", lambda: mapping.attrs.get("num_layers"))
        v["mapping_lr_multiplier"] = _take(mk, "lr_multiplier", lambda: mapping.child("fc0").attrs.get("bias_gain"))
        _require(f"{who}.mapping", "activation", mk.pop("activation", "lrelu"), ("lrelu",))
        for key in ("layer_features", "embed_features"):
            _require(f"{who}.mapping", key, mk.pop(key, None), (None, our_cmap))
        _refuse_leftovers(mk, f"{who}.mapping_kwargs", notes)
    # An unconditional D builds no mapping network: its mapping_kwargs (legacy.py fills them) do nothing.
    return v


def _count_fp16(rec: ModuleRecord) -> int:
    return sum(1 for m in rec.modules.values() if m is not None and m.attrs.get("use_fp16") is True)


# How each network computes, not what its tensors mean: where D's differ from the generators', the
# generators' are kept (G_ema is what the tools render) and D's are reported, not refused.
LAYOUT_FIELDS = ("num_fp16_res", "conv_clamp")


def _merge(values: dict[str, dict[str, Any]], notes: list[str] | None = None) -> dict[str, Any]:
    """One set of config fields from G's, G_ema's and D's; a field they disagree on is refused, except
    D's :data:`LAYOUT_FIELDS` (added to ``notes``)."""
    merged: dict[str, Any] = {}
    owner: dict[str, str] = {}
    for name in sorted(values, key=lambda n: n == "D"):  # the generators first
        for key, value in values[name].items():
            if key in merged and merged[key] != value:
                if name == "D" and key in LAYOUT_FIELDS and notes is not None:
                    notes.append(f"D {key}={value!r} -> {merged[key]!r}")
                    continue
                raise NvidiaPickleError(
                    f"{name} has {key}={value!r} but {owner[key]} has {merged[key]!r}: our NetworkConfig has one "
                    f"{key} for G and D"
                )
            merged.setdefault(key, value)
            owner.setdefault(key, name)
    if merged.get("family") == "stylegan3":
        # G's channel schedule is our g_channel_*, D's our channel_*; G's alone (no D) is both.
        for ours in ("channel_base", "channel_max"):
            g = merged.get(f"g_{ours}")
            merged.setdefault(ours, g)
            if merged[ours] == g:
                merged[f"g_{ours}"] = None
    return merged


def _preset_name(config: NetworkConfig) -> str:
    """The preset whose config this is (then ``--init`` can infer ``--preset``), else ``'nvidia'``
    (StyleGAN2) or ``'nvidia-stylegan3-t'`` / ``'-r'`` (``'nvidia-stylegan3'`` for another kernel
    and filter combination)."""
    from stylegan import presets  # presets import the networks; keep this module importable alone

    for name in presets.PRESETS:
        try:
            candidate = presets.resolve_config(name, config.resolution, config.img_channels, config.c_dim)
        except ValueError:
            continue
        if candidate == config.replace(preset=name):
            return name
    if config.family == "stylegan3":
        return "nvidia-" + stylegan3_variant(config).lower()
    return "nvidia"


# ----- the weights --------------------------------------------------------------------------------

_BLOCK = re.compile(r"^b\d+$")
FILTER_TOLERANCE = 1e-6  # NVIDIA's stored filters against ours (radial: a Bessel function's ~2e-8 apart)


def our_key(kind: str, key: str, layer_index: dict[str, int] | None = None) -> str | None:
    """Our state-dict name for NVIDIA's ``key`` (``None``: a buffer we rebuild from the config).
    ``layer_index``: a StyleGAN3 generator's layer names (``L3_36_64``) -> their index."""
    parts = key.split(".")
    if parts[-1] in ("resample_filter", "up_filter", "down_filter"):
        return None
    if len(parts) > 1 and parts[0] == "mapping" and re.fullmatch(r"fc\d+", parts[1]):
        parts[1:2] = ["layers", parts[1][2:]]
    if kind == "generator" and len(parts) > 1 and parts[0] == "synthesis":
        if layer_index is not None and parts[1] in layer_index:
            parts[1:2] = ["layers", str(layer_index[parts[1]])]
        elif _BLOCK.match(parts[1]):
            parts.insert(1, "blocks")
    if kind == "discriminator" and _BLOCK.match(parts[0]) and parts[0] != "b4":
        parts.insert(0, "blocks")
    return ".".join(parts)


def build_module(name: str, kind: str, rec: ModuleRecord, config: NetworkConfig, check_fp16: bool = True) -> nn.Module:
    """Our module for ``config`` holding ``rec``'s weights (eval mode, CPU, float32). ``check_fp16``:
    refuse blocks whose float16 flag differs from ours (off for a D whose layout was overridden)."""
    sg3 = kind == "generator" and config.family == "stylegan3"
    layer_index = {n: i for i, (n, _) in enumerate(stylegan3_layers(rec.child("synthesis")))} if sg3 else None
    taps = setup_filter(list(config.resample_filter))
    state: dict[str, torch.Tensor] = {}
    filters: dict[str, torch.Tensor] = {}
    for key, tensor in rec.flat_tensors().items():
        ours = our_key(kind, key, layer_index)
        if ours is None:
            if sg3:
                filters[key] = tensor  # checked against the built layers below
            elif tensor.shape != taps.shape or not torch.allclose(tensor.float(), taps, atol=1e-6):
                raise NvidiaPickleError(f"{name}.{key}: a resampling filter other than {list(config.resample_filter)}")
            continue
        if not tensor.is_floating_point():
            raise NvidiaPickleError(f"{name}.{key}: dtype {tensor.dtype}, expected floating point")
        state[ours] = tensor.float().contiguous()
    with torch.device("meta"):  # no random init: every tensor comes from the file
        module = network_classes(config)[0 if kind == "generator" else 1](config)
    expected = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state) if tuple(state[k].shape) != expected[k])
    if missing or unexpected or wrong:
        parts = [f"missing {k}" for k in missing[:3]] + [f"unexpected {k}" for k in unexpected[:3]]
        parts += [f"{k} is {list(state[k].shape)}, expected {list(expected[k])}" for k in wrong[:3]]
        raise NvidiaPickleError(f"{name}: the tensors do not match the rebuilt config ({'; '.join(parts)})")
    module.load_state_dict(state, strict=True, assign=True)
    if sg3:
        _check_stylegan3(name, rec, module, filters)
    else:
        _check_layout(name, kind, rec, module, check_fp16)
    return module.eval().requires_grad_(False)


def _check_layout(name: str, kind: str, rec: ModuleRecord, module: nn.Module, check_fp16: bool = True) -> None:
    """What the tensors cannot show: ws count and which blocks run in float16 must agree too."""
    if kind == "generator":
        theirs = rec.child("mapping").attrs.get("num_ws")
        if theirs != module.num_ws:
            raise NvidiaPickleError(f"{name}: NVIDIA's generator has {theirs} ws, ours {module.num_ws}")
        blocks, ours = rec.child("synthesis").modules, module.synthesis.blocks
    else:
        blocks, ours = {k: v for k, v in rec.modules.items() if _BLOCK.match(k) and k != "b4"}, module.blocks
    if not check_fp16:
        return
    for key, block in blocks.items():
        if block is not None and _BLOCK.match(key) and block.attrs.get("use_fp16") != ours[key].use_fp16:
            raise NvidiaPickleError(f"{name}.{key}: float16 {block.attrs.get('use_fp16')} there, {ours[key].use_fp16} here")


def _plain(value: Any) -> Any:
    """A stored attribute as plain Python: numpy arrays (NVIDIA keeps sizes as ``[h, w]`` arrays)
    and scalars become lists and numbers."""
    if isinstance(value, ArrayRecord):
        value = value.array
    if isinstance(value, (np.ndarray, np.generic)):
        return value.tolist()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _same(theirs: Any, ours: Any) -> bool:
    theirs = _plain(theirs)
    if isinstance(ours, (list, tuple)):
        return isinstance(theirs, list) and len(theirs) == len(ours) and all(map(_same, theirs, ours))
    if isinstance(ours, bool) or ours is None:
        return theirs is ours
    if isinstance(ours, int):
        return isinstance(theirs, (int, float)) and not isinstance(theirs, bool) and theirs == ours
    if isinstance(ours, float):
        return isinstance(theirs, (int, float)) and not isinstance(theirs, bool) and math.isclose(
            theirs, ours, rel_tol=1e-9, abs_tol=1e-12)
    return theirs == ours


def _check_stylegan3(name: str, rec: ModuleRecord, G: nn.Module, filters: dict[str, torch.Tensor]) -> None:
    """NVIDIA's StyleGAN3 generator, as its code computed it, against ours built from the rebuilt
    config: the synthesis network's and the input's attributes, each layer's schedule (sizes,
    channels, sampling rates, cutoffs, transition half-widths, resampling factors and taps, padding,
    float16 flag, ...), and the stored up/down filters (to :data:`FILTER_TOLERANCE`)."""
    def check(where: str, record: ModuleRecord, expected: dict[str, Any]) -> None:
        for key, ours in expected.items():
            theirs = record.attrs.get(key)
            if not _same(theirs, ours):
                raise NvidiaPickleError(
                    f"{name}.{where}: {key} is {str(_plain(theirs))[:60]} in NVIDIA's network, {ours!r} in ours "
                    "(rebuilt from its constructor arguments); not a StyleGAN3 generator our config can represent"
                )

    theirs_ws = rec.child("mapping").attrs.get("num_ws")
    if theirs_ws != G.num_ws:
        raise NvidiaPickleError(f"{name}: NVIDIA's generator has {theirs_ws} ws, ours {G.num_ws}")
    syn, ours = rec.child("synthesis"), G.synthesis
    cfg = G.config
    check("synthesis", syn, dict(num_ws=ours.num_ws, num_layers=cfg.sg3_layers, num_critical=cfg.sg3_critical_layers,
                                 margin_size=cfg.margin_size, output_scale=float(cfg.output_scale)))
    inp = ours.input
    check("synthesis.input", syn.child("input"), dict(
        channels=inp.channels, size=[inp.size, inp.size], sampling_rate=inp.sampling_rate, bandwidth=inp.bandwidth))
    layers = stylegan3_layers(syn)
    if len(layers) != len(ours.layers):
        raise NvidiaPickleError(
            f"{name}.synthesis: {len(layers)} layers in NVIDIA's network, {len(ours.layers)} in ours"
        )
    for (lname, layer), our in zip(layers, ours.layers):
        expected_name = f"L{our.index}_{our.out_size}_{our.out_channels}"
        if lname != expected_name:
            raise NvidiaPickleError(f"{name}.synthesis.{lname}: ours is {expected_name} (size and channels differ)")
        check(f"synthesis.{lname}", layer, dict(
            is_torgb=our.is_torgb, is_critically_sampled=our.is_critically_sampled, use_fp16=our.use_fp16,
            in_channels=our.in_channels, out_channels=our.out_channels,
            in_size=[our.in_size, our.in_size], out_size=[our.out_size, our.out_size],
            in_sampling_rate=our.in_sampling_rate, out_sampling_rate=our.out_sampling_rate,
            tmp_sampling_rate=our.tmp_sampling_rate, in_cutoff=our.in_cutoff, out_cutoff=our.out_cutoff,
            in_half_width=our.in_half_width, out_half_width=our.out_half_width, conv_kernel=our.conv_kernel,
            conv_clamp=our.conv_clamp, magnitude_ema_beta=our.magnitude_ema_beta, up_factor=our.up_factor,
            up_taps=our.up_taps, down_factor=our.down_factor, down_taps=our.down_taps, down_radial=our.down_radial,
            padding=list(our.padding),
        ))
        for which in ("up_filter", "down_filter"):
            theirs_f, ours_f = filters.get(f"synthesis.{lname}.{which}"), getattr(our, which)
            where = f"{name}.synthesis.{lname}.{which}"
            if (theirs_f is None) != (ours_f is None):
                raise NvidiaPickleError(f"{where}: {'none' if theirs_f is None else 'a filter'} in NVIDIA's network, "
                                        f"{'none' if ours_f is None else 'a filter'} in ours")
            if theirs_f is None:
                continue
            if tuple(theirs_f.shape) != tuple(ours_f.shape):
                raise NvidiaPickleError(
                    f"{where}: shape {list(theirs_f.shape)} in NVIDIA's network, {list(ours_f.shape)} in ours"
                )
            err = (theirs_f.double() - ours_f.double()).abs().max().item()
            if not err <= FILTER_TOLERANCE:
                raise NvidiaPickleError(f"{where}: differs from ours by {err:.3g} (more than {FILTER_TOLERANCE:g}); "
                                        "NVIDIA's filter design and ours disagree")
    unused = sorted(set(filters) - {f"synthesis.{n}.{w}" for n, _ in layers for w in ("up_filter", "down_filter")})
    if unused:
        raise NvidiaPickleError(f"{name}.{unused[0]}: a filter where our network has none")


# ----- the whole file -----------------------------------------------------------------------------


@dataclass(frozen=True)
class NvidiaNetwork:
    """An NVIDIA snapshot as our networks, and what was and was not taken from it."""

    path: Path
    config: NetworkConfig
    modules: dict[str, nn.Module]  # of "G", "D", "G_ema": those the file holds
    parameters: dict[str, int]
    left_out: dict[str, str]  # snapshot entry -> what it was (augment_pipe, training_set_kwargs, ...)
    ignored_kwargs: list[str] = field(default_factory=list)  # runtime-only constructor arguments
    augment_p: float | None = None  # ADA's augmentation probability when the file had an augment_pipe
    layout_notes: list[str] = field(default_factory=list)  # D's num_fp16_res/conv_clamp where G's replaced them

    @property
    def family_name(self) -> str:
        """'StyleGAN2', 'StyleGAN3-T', 'StyleGAN3-R' (or 'StyleGAN3')."""
        return stylegan3_variant(self.config) if self.config.family == "stylegan3" else "StyleGAN2"

    def describe(self) -> list[str]:
        """What was found and what was left out, for a CLI to print."""
        c = self.config
        classes = f"{c.c_dim} classes" if c.c_dim else "unconditional"
        fp16 = f"fp16 in the top {c.num_fp16_res} resolutions" if c.num_fp16_res else "no fp16 blocks"
        if c.family == "stylegan3":
            fp16 = f"num_fp16_res {c.num_fp16_res}" if c.num_fp16_res else "no fp16 layers"
            g_base, g_max = c.g_channels
            d = f" / D {c.d_architecture}" if "D" in self.modules else ""
            lines = [
                f"found {', '.join(self.modules)}: {self.family_name}, G {c.sg3_layers} layers "
                f"({c.sg3_critical_layers} critically sampled) + ToRGB{d}, {c.resolution}x{c.resolution}, "
                f"{c.img_channels} channels, {classes}",
                f"config: z {c.z_dim}, w {c.w_dim}, mapping {c.mapping_layers} layers, G channel_base {g_base} "
                f"channel_max {g_max}, D channel_base {c.channel_base} channel_max {c.channel_max}, conv_kernel "
                f"{c.conv_kernel}, radial filters {'yes' if c.use_radial_filters else 'no'}, margin {c.margin_size}, "
                f"magnitude_ema_beta {c.magnitude_ema_beta:g}, {fp16}, conv_clamp {c.conv_clamp}, mbstd "
                f"{c.mbstd_group_size}x{c.mbstd_num_channels}, w_avg_beta {c.w_avg_beta}, preset {c.preset!r}",
            ]
        else:
            lines = [
                f"found {', '.join(self.modules)}: StyleGAN2, G {c.g_architecture} / D {c.d_architecture}, "
                f"{c.resolution}x{c.resolution}, {c.img_channels} channels, {classes}",
                f"config: z {c.z_dim}, w {c.w_dim}, mapping {c.mapping_layers} layers, channel_base {c.channel_base}, "
                f"channel_max {c.channel_max}, {fp16}, conv_clamp {c.conv_clamp}, mbstd {c.mbstd_group_size}x"
                f"{c.mbstd_num_channels}, w_avg_beta {c.w_avg_beta}, preset {c.preset!r}",
            ]
        lines.append("parameters: " + ", ".join(f"{k} {v:,}" for k, v in self.parameters.items()))
        if self.left_out:
            lines.append("left out: " + "; ".join(f"{k} ({v})" for k, v in self.left_out.items()))
        if self.ignored_kwargs:
            lines.append("ignored (speed or training only): " + ", ".join(self.ignored_kwargs))
        if self.layout_notes:
            lines.append("D built with G's num_fp16_res and conv_clamp (our config has one of each for G and D; "
                         "they decide float16 use and the activation clamp): " + ", ".join(self.layout_notes))
        return lines

    def one_line(self) -> str:
        """The line a tool prints when it uses a ``.pkl`` directly."""
        c = self.config
        return (
            f"{self.path}: NVIDIA {self.family_name} pickle read without running its code and converted in memory "
            f"({', '.join(self.modules)}; {c.resolution}x{c.resolution}x{c.img_channels}"
            f"{f', {c.c_dim} classes' if c.c_dim else ''}); tools/convert.py saves it as .safetensors"
        )


def _left_out(name: str, value: Any) -> tuple[str, float | None]:
    if isinstance(value, PersistentObject) and value.class_name == "AugmentPipe":
        p = dict(value.state.get("_buffers") or {}).get("p")
        p = float(p) if isinstance(p, torch.Tensor) and p.numel() == 1 else None
        return (f"ADA's AugmentPipe, p={p:.4f}" if p is not None else "ADA's AugmentPipe"), p
    if isinstance(value, dict):
        items = ", ".join(f"{k}={v!r}" for k, v in value.items() if k != "class_name" and not isinstance(v, dict))
        return items[:200], None
    if isinstance(value, PersistentObject):
        return f"NVIDIA {value.class_name}", None
    return type(value).__name__, None


def convert_snapshot(obj: Any, path: Path) -> NvidiaNetwork:
    """Our networks from an unpickled snapshot dict (see :func:`read_nvidia_pickle`)."""
    if not isinstance(obj, dict) or not any(isinstance(obj.get(k), PersistentObject) for k in SNAPSHOT_MODULES):
        found = sorted(map(str, obj)) if isinstance(obj, dict) else type(obj).__name__
        raise NvidiaPickleError(
            f"a pickle, but not an NVIDIA network snapshot: expected a dict with G, D and/or G_ema, found {found}"
        )
    records = {k: module_record(obj[k], k) for k in SNAPSHOT_MODULES if obj.get(k) is not None}
    notes: list[str] = []
    values = {}
    for name, rec in records.items():
        reader = discriminator_values if name == "D" else generator_values
        values[name] = reader(rec, notes)
    layout_notes: list[str] = []
    merged = _merge(values, layout_notes)
    if isinstance(merged.get("conv_clamp"), int) and not isinstance(merged["conv_clamp"], bool):
        merged["conv_clamp"] = float(merged["conv_clamp"])  # 256 -> 256.0, as our presets write it
    try:
        config = NetworkConfig(**{"preset": "nvidia", **merged})
    except (TypeError, ValueError) as err:
        raise NvidiaPickleError(f"the pickled constructor arguments give no valid network: {err}") from None
    config = config.replace(preset=_preset_name(config))
    modules = {
        name: build_module(name, "discriminator" if name == "D" else "generator", rec, config,
                           check_fp16=not (name == "D" and layout_notes))
        for name, rec in records.items()
    }
    left_out, augment_p = {}, None
    for key, value in obj.items():
        if key in records or value is None:
            continue
        left_out[str(key)], p = _left_out(str(key), value)
        augment_p = p if p is not None else augment_p
    parameters = {name: sum(p.numel() for p in m.parameters()) for name, m in modules.items()}
    return NvidiaNetwork(path, config, modules, parameters, left_out, sorted(set(notes)), augment_p, layout_notes)


def read_nvidia_pickle(path: str | os.PathLike) -> NvidiaNetwork:
    """Read an NVIDIA StyleGAN2 or StyleGAN3 ``.pkl`` into our networks, without running any code from it.

    Raises :class:`NvidiaPickleError` (a ``ValueError``) with one line that names the file and
    says what it is and what is supported: not a pickle, truncated, a TensorFlow-era pickle,
    a global off the allowlist, a constructor argument we cannot represent.
    """
    path = Path(path)
    if not path.is_file():
        raise NvidiaPickleError(f"{path}: no such file")
    try:
        obj = safe_loads(path.read_bytes())
        return convert_snapshot(obj, path)
    except (PickleRefused, NvidiaPickleError) as err:
        raise NvidiaPickleError(f"{path}: {err}") from None


def is_pickle_path(path: str | os.PathLike) -> bool:
    """Whether tools should read ``path`` with :func:`read_nvidia_pickle` (``.pkl`` / ``.pickle``)."""
    return Path(path).suffix.lower() in (".pkl", ".pickle")
