"""StyleGAN3's generator (Karras et al. 2021, "Alias-Free Generative Adversarial Networks").

Every signal in the synthesis network is treated as a continuous, band-limited signal sampled on a
grid (sec. 2): the network starts from Fourier features instead of a learned constant (sec. 3.1),
each layer is a modulated convolution followed by a *filtered* leaky ReLU that runs at twice the
sampling rate between an upsampling and a downsampling low-pass filter (sec. 3.2,
:func:`ops.filtered_lrelu.filtered_lrelu`), and the filters' cutoffs rise geometrically from layer
to layer (appendix F, fig. 4). There are no noise inputs, no skip ToRGBs and no growth; the image is
the last (critically sampled) layer's output, scaled by ``output_scale``.

Two configurations (the ``stylegan3-t`` / ``stylegan3-r`` presets):

* config-T (translation equivariant): 3x3 convolutions, Kaiser-windowed sinc filters;
* config-R (rotation too): 1x1 convolutions, radially symmetric jinc-based downsampling filters in
  all but the critically sampled layers, and (NVIDIA's train.py) G's channels doubled.

The layer schedule (appendix F, with NVIDIA's defaults as :class:`~stylegan.config.NetworkConfig`
fields): for layer ``i`` of ``N = sg3_layers``, with ``e_i = min(i / (N - N_crit), 1)``,

* cutoff ``f_c = f_c0 * (f_cN / f_c0) ** e_i`` with ``f_c0 = first_cutoff``, ``f_cN = resolution / 2``,
* stopband ``f_t = f_t0 * (f_tN / f_t0) ** e_i`` with ``f_tN = f_cN * last_stopband_rel``,
* sampling rate ``s = 2 ** ceil(log2(min(2 f_t, resolution)))``,
* transition half-width ``f_h = max(f_t, s / 2) - f_c``,
* feature-map size ``s + 2 * margin_size`` (the last two: the image size),
* channels ``rint(min(channel_base / 2 / f_c, channel_max))`` (the last: ``img_channels``).

The input layer's Fourier features can be translated and rotated at inference through
``G.synthesis.input.transform`` (see :func:`input_transform`); that is what the equivariance metrics
and ``generate.py --translate/--rotate`` use. Module and tensor names follow NVIDIA's networks
(``input.{weight,affine,transform,freqs,phases}``, per layer ``weight, bias, affine,
magnitude_ema``), with the layers in ``synthesis.layers[i]`` instead of ``synthesis.L{i}_{size}_{ch}``;
the filters are rebuilt from the config and not stored (stylegan/nvidia_pickle.py checks NVIDIA's
stored ones against ours).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ops.filtered_lrelu import filtered_lrelu
from stylegan.config import NetworkConfig
from stylegan.generator import MappedGenerator
from stylegan.growth import GrowthMixin
from stylegan.layers import FullyConnectedLayer
from stylegan.mapping import MappingNetwork
from stylegan.modconv import NoiseGenerator, check_noise_mode
from stylegan.precision import block_dtype, check_precision

# ----- filter design (appendix F; Kaiser 1974) -----------------------------------------------------


def kaiser_beta(numtaps: int, width: float) -> float:
    """Kaiser's window parameter for ``numtaps`` taps and a transition ``width`` (fraction of Nyquist):
    the attenuation ``A = 2.285 (numtaps - 1) pi width + 7.95`` dB gives ``beta`` by Kaiser's formula."""
    atten = 2.285 * (numtaps - 1) * math.pi * width + 7.95
    if atten > 50:
        return 0.1102 * (atten - 8.7)
    if atten > 21:
        return 0.5842 * (atten - 21) ** 0.4 + 0.07886 * (atten - 21)
    return 0.0


def design_lowpass_filter(numtaps: int, cutoff: float, width: float, fs: float, radial: bool = False) -> torch.Tensor | None:
    """The low-pass filter of one resampling step: ``numtaps`` taps at sampling rate ``fs``, passing up
    to ``cutoff`` with a transition band ``width`` wide. ``None`` for a single tap (no filtering).

    Separable (1-D): the Kaiser-windowed ideal low-pass (a sinc), normalised to unit DC gain, as
    ``scipy.signal.firwin(numtaps, cutoff, width=width, fs=fs)`` designs it. Radial (2-D, config-R):
    the jinc ``J1(2 pi f_c r) / (pi r)`` (the 2-D ideal disc low-pass) times the separable Kaiser window,
    normalised to sum 1 (appendix F.2)."""
    if numtaps < 1:
        raise ValueError(f"numtaps={numtaps}: expected >= 1")
    if numtaps == 1:
        return None
    nyquist = fs / 2
    beta = kaiser_beta(numtaps, width / nyquist)
    window = np.kaiser(numtaps, beta)
    if not radial:
        m = np.arange(numtaps) - (numtaps - 1) / 2
        c = cutoff / nyquist
        f = c * np.sinc(c * m) * window
        return torch.as_tensor(f / f.sum(), dtype=torch.float32)
    x = (np.arange(numtaps) - (numtaps - 1) / 2) / fs
    r = np.hypot(*np.meshgrid(x, x))
    j1 = torch.special.bessel_j1(torch.as_tensor(2 * math.pi * cutoff * r, dtype=torch.float64)).numpy()
    f = j1 / (math.pi * r) * np.outer(window, window)
    return torch.as_tensor(f / f.sum(), dtype=torch.float32)


# ----- the layer schedule --------------------------------------------------------------------------


def layer_schedule(config: NetworkConfig) -> dict[str, np.ndarray]:
    """Per layer ``0..sg3_layers`` (index 0 is the input): ``cutoffs``, ``stopbands``,
    ``sampling_rates``, ``half_widths``, ``sizes``, ``channels`` (see the module docstring)."""
    n, n_crit, res = config.sg3_layers, config.sg3_critical_layers, config.resolution
    channel_base, channel_max = config.g_channels
    last_cutoff = res / 2
    last_stopband = last_cutoff * config.last_stopband_rel
    exponents = np.minimum(np.arange(n + 1) / (n - n_crit), 1)
    cutoffs = config.first_cutoff * (last_cutoff / config.first_cutoff) ** exponents
    stopbands = config.first_stopband * (last_stopband / config.first_stopband) ** exponents
    sampling_rates = np.exp2(np.ceil(np.log2(np.minimum(stopbands * 2, res))))
    half_widths = np.maximum(stopbands, sampling_rates / 2) - cutoffs
    sizes = sampling_rates + config.margin_size * 2
    sizes[-2:] = res
    channels = np.rint(np.minimum((channel_base / 2) / cutoffs, channel_max))
    channels[-1] = config.img_channels
    return dict(cutoffs=cutoffs, stopbands=stopbands, sampling_rates=sampling_rates, half_widths=half_widths,
                sizes=sizes, channels=channels)


# ----- the input: Fourier features (sec. 3.1) ------------------------------------------------------


def input_transform(translate: tuple[float, float] = (0.0, 0.0), rotate: float = 0.0) -> torch.Tensor:
    """The ``[3, 3]`` matrix for ``G.synthesis.input.transform`` that renders the image translated by
    ``translate`` (in units of the image size, x right, y down) and rotated by ``rotate`` degrees, as
    NVIDIA's ``gen_images.py --translate X,Y --rotate DEG`` does: the inverse of the image transform,
    since the features are sampled at transformed coordinates."""
    angle = math.radians(rotate)
    s, c = math.sin(angle), math.cos(angle)
    m = torch.tensor([[c, s, translate[0]], [-s, c, translate[1]], [0.0, 0.0, 1.0]], dtype=torch.float64)
    return torch.linalg.inv(m).float()


class SynthesisInput(nn.Module):
    """``w [N, w_dim] -> x [N, channels, size, size]``: Fourier features of random frequencies
    (within ``bandwidth``) and phases, sampled on a ``size``-pixel grid at ``sampling_rate``, rotated
    and translated per sample by an affine of ``w`` (sec. 3.1, "Fourier features"; initially the
    identity), then mixed by a learned ``channels x channels`` matrix."""

    def __init__(self, w_dim: int, channels: int, size: int, sampling_rate: float, bandwidth: float) -> None:
        super().__init__()
        self.w_dim, self.channels, self.size = w_dim, channels, size
        self.sampling_rate, self.bandwidth = float(sampling_rate), float(bandwidth)
        # Frequencies: random directions; radii pushed inside the band by r / (r * exp(r^2)^(1/4)).
        freqs = torch.randn([channels, 2])
        radii = freqs.square().sum(dim=1, keepdim=True).sqrt()
        freqs = freqs / (radii * radii.square().exp().pow(0.25)) * bandwidth
        phases = torch.rand([channels]) - 0.5
        self.weight = nn.Parameter(torch.randn([channels, channels]))
        # (r_c, r_s, t_x, t_y) of the per-sample rotation and translation; starts at the identity.
        self.affine = FullyConnectedLayer(w_dim, 4, weight_init=0.0, bias_init=[1.0, 0.0, 0.0, 0.0])
        self.register_buffer("transform", torch.eye(3))  # the user's transform (input_transform)
        self.register_buffer("freqs", freqs)
        self.register_buffer("phases", phases)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        n = w.shape[0]
        t = self.affine(w.float())  # [N, 4]
        t = t / t[:, :2].norm(dim=1, keepdim=True)  # a pure rotation: (cos, sin) of unit length
        rot = torch.eye(3, device=w.device).repeat(n, 1, 1)
        rot[:, 0, 0], rot[:, 0, 1], rot[:, 1, 0], rot[:, 1, 1] = t[:, 0], -t[:, 1], t[:, 1], t[:, 0]
        trans = torch.eye(3, device=w.device).repeat(n, 1, 1)
        trans[:, 0, 2], trans[:, 1, 2] = -t[:, 2], -t[:, 3]
        m = rot @ trans @ self.transform.unsqueeze(0)  # [N, 3, 3]

        # Transforming the coordinates p -> A p + b turns sin(2 pi (f . p + phi)) into a wave with
        # frequency f A and phase phi + f . b.
        freqs = self.freqs.unsqueeze(0)  # [1, C, 2]
        phases = self.phases.unsqueeze(0) + (freqs @ m[:, :2, 2:]).squeeze(2)  # [N, C]
        freqs = freqs @ m[:, :2, :2]  # [N, C, 2]
        # Fade out the frequencies the transform pushed beyond the band (towards Nyquist).
        amplitudes = (1 - (freqs.norm(dim=2) - self.bandwidth) / (self.sampling_rate / 2 - self.bandwidth)).clamp(0, 1)

        # Sample positions: the centres of a size x size grid covering size / sampling_rate units.
        theta = torch.zeros([1, 2, 3], device=w.device)
        theta[0, 0, 0] = theta[0, 1, 1] = 0.5 * self.size / self.sampling_rate
        grid = F.affine_grid(theta, [1, 1, self.size, self.size], align_corners=False)  # [1, H, W, 2]
        x = (grid.unsqueeze(3) @ freqs.permute(0, 2, 1).unsqueeze(1).unsqueeze(2)).squeeze(3)  # [N, H, W, C]
        x = torch.sin((x + phases.unsqueeze(1).unsqueeze(2)) * (2 * math.pi)) * amplitudes.unsqueeze(1).unsqueeze(2)
        x = x @ (self.weight / math.sqrt(self.channels)).t()
        return x.permute(0, 3, 1, 2)  # [N, C, H, W]

    def extra_repr(self) -> str:
        return (f"w_dim={self.w_dim}, channels={self.channels}, size={self.size}, "
                f"sampling_rate={self.sampling_rate:g}, bandwidth={self.bandwidth:g}")


# ----- one layer: modulated conv + filtered lrelu (sec. 3.2) ----------------------------------------


def modulated_conv2d(
    x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor, demodulate: bool, padding: int,
    input_gain: torch.Tensor | None,
) -> torch.Tensor:
    """StyleGAN2's modulated convolution as StyleGAN3 runs it: always one grouped convolution, the
    weights and styles first normalised to unit RMS (which the demodulation then cancels: it only keeps
    float16 in range), and the input divided by its tracked magnitude through the weights."""
    n = x.shape[0]
    out_ch, in_ch, kh, kw = weight.shape
    if demodulate:
        weight = weight * weight.square().mean([1, 2, 3], keepdim=True).rsqrt()
        styles = styles * styles.square().mean().rsqrt()
    w = weight.unsqueeze(0) * styles.reshape(n, 1, in_ch, 1, 1)  # [N, O, I, k, k] (StyleGAN2 eq. 1)
    if demodulate:
        w = w * (w.square().sum(dim=[2, 3, 4], keepdim=True) + 1e-8).rsqrt()  # StyleGAN2 eq. 3
    if input_gain is not None:
        w = w * input_gain.expand(n, in_ch).reshape(n, 1, in_ch, 1, 1)
    x = x.reshape(1, n * in_ch, *x.shape[2:])
    x = F.conv2d(x, w.reshape(n * out_ch, in_ch, kh, kw).to(x.dtype), padding=padding, groups=n)
    return x.reshape(n, out_ch, *x.shape[2:])


class AliasFreeLayer(nn.Module):
    """One synthesis layer: ``x [N, in_channels, in_size, in_size], w -> [N, out_channels, out_size,
    out_size]``. Modulated conv (3x3, or 1x1 in config-R and for ToRGB) on the input scaled by
    ``1 / sqrt(magnitude_ema)``, then bias + leaky ReLU at ``lrelu_upsampling`` times the higher of the
    two sampling rates, between the up- and downsampling filters. The ToRGB layer (``is_torgb``) is a
    plain modulated 1x1 conv without demodulation, bias, clamp and no filtering."""

    def __init__(self, config: NetworkConfig, index: int, schedule: dict[str, np.ndarray]) -> None:
        super().__init__()
        n = config.sg3_layers
        prev = max(index - 1, 0)
        self.index = index
        self.is_torgb = index == n
        self.is_critically_sampled = index >= n - config.sg3_critical_layers
        self.use_fp16 = bool(schedule["sampling_rates"][index] * 2**config.num_fp16_res > config.resolution)
        self.in_channels, self.out_channels = int(schedule["channels"][prev]), int(schedule["channels"][index])
        self.in_size, self.out_size = int(schedule["sizes"][prev]), int(schedule["sizes"][index])
        self.in_sampling_rate = int(schedule["sampling_rates"][prev])
        self.out_sampling_rate = int(schedule["sampling_rates"][index])
        self.in_cutoff, self.out_cutoff = float(schedule["cutoffs"][prev]), float(schedule["cutoffs"][index])
        self.in_half_width = float(schedule["half_widths"][prev])
        self.out_half_width = float(schedule["half_widths"][index])
        self.conv_kernel = 1 if self.is_torgb else config.conv_kernel
        self.conv_clamp = config.conv_clamp
        self.magnitude_ema_beta = config.magnitude_ema_beta

        self.affine = FullyConnectedLayer(config.w_dim, self.in_channels, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn([self.out_channels, self.in_channels, self.conv_kernel, self.conv_kernel]))
        self.bias = nn.Parameter(torch.zeros([self.out_channels]))
        self.register_buffer("magnitude_ema", torch.ones([]))

        # The nonlinearity's temporary rate: lrelu_upsampling x the higher rate (sec. 3.2, fig. 4c).
        tmp_rate = max(self.in_sampling_rate, self.out_sampling_rate) * (1 if self.is_torgb else config.lrelu_upsampling)
        self.tmp_sampling_rate = tmp_rate
        self.up_factor = int(np.rint(tmp_rate / self.in_sampling_rate))
        self.down_factor = int(np.rint(tmp_rate / self.out_sampling_rate))
        self.up_taps = config.filter_size * self.up_factor if self.up_factor > 1 and not self.is_torgb else 1
        self.down_taps = config.filter_size * self.down_factor if self.down_factor > 1 and not self.is_torgb else 1
        self.down_radial = config.use_radial_filters and not self.is_critically_sampled
        with torch.device("cpu"):  # designed on the CPU even under a meta-device context
            up = design_lowpass_filter(self.up_taps, self.in_cutoff, self.in_half_width * 2, tmp_rate)
            down = design_lowpass_filter(self.down_taps, self.out_cutoff, self.out_half_width * 2, tmp_rate,
                                         radial=self.down_radial)
        # Rebuilt from the config, so not stored in network files (None: no filtering).
        self.register_buffer("up_filter", up, persistent=False)
        self.register_buffer("down_filter", down, persistent=False)

        # Padding so that the output has out_size samples, centred (appendix C.3's symmetric grid).
        pad_total = (self.out_size - 1) * self.down_factor + 1  # wanted length before downsampling
        pad_total -= (self.in_size + self.conv_kernel - 1) * self.up_factor  # the conv's output, upsampled
        pad_total += self.up_taps + self.down_taps - 2  # what the two filters take away
        pad_lo = (pad_total + self.up_factor) // 2
        pad_hi = pad_total - pad_lo
        self.padding = [pad_lo, pad_hi, pad_lo, pad_hi]

    def forward(self, x: torch.Tensor, w: torch.Tensor, dtype: torch.dtype, update_emas: bool = False) -> torch.Tensor:
        if update_emas:  # the input's mean square, tracked (lerp keeps beta of the old value)
            with torch.no_grad():
                current = x.detach().float().square().mean()
                self.magnitude_ema.copy_(current.lerp(self.magnitude_ema, self.magnitude_ema_beta))
        input_gain = self.magnitude_ema.rsqrt()
        styles = self.affine(w)
        if self.is_torgb:  # no demodulation: the equalized-lr constant goes into the styles
            styles = styles * (1 / math.sqrt(self.in_channels * self.conv_kernel**2))
        x = modulated_conv2d(x.to(dtype), self.weight, styles, demodulate=not self.is_torgb,
                             padding=self.conv_kernel - 1, input_gain=input_gain)
        gain, slope = (1.0, 1.0) if self.is_torgb else (math.sqrt(2), 0.2)
        return filtered_lrelu(x, self.up_filter, self.down_filter, self.bias.to(x.dtype), self.up_factor,
                              self.down_factor, self.padding, gain, slope, self.conv_clamp)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}->{self.out_channels} ch, {self.in_size}->{self.out_size} px, "
                f"rate {self.in_sampling_rate}->{self.out_sampling_rate}, cutoff {self.in_cutoff:g}->{self.out_cutoff:g}, "
                f"up {self.up_factor} ({self.up_taps} taps), down {self.down_factor} ({self.down_taps} taps"
                f"{', radial' if self.down_radial else ''}), k={self.conv_kernel}"
                f"{', torgb' if self.is_torgb else ''}{', fp16' if self.use_fp16 else ''}")


class StyleGAN3Synthesis(nn.Module):
    """``ws [N, num_ws, w_dim] -> img [N, img_channels, r, r]``: ``ws[:, 0]`` drives the input's
    transform, ``ws[:, i + 1]`` layer ``i`` (``num_ws = sg3_layers + 2``)."""

    def __init__(self, config: NetworkConfig) -> None:
        super().__init__()
        self.config = config
        self.w_dim, self.img_resolution, self.img_channels = config.w_dim, config.resolution, config.img_channels
        schedule = layer_schedule(config)
        self.schedule = schedule
        self.num_ws = config.sg3_layers + 2
        self.input = SynthesisInput(config.w_dim, int(schedule["channels"][0]), int(schedule["sizes"][0]),
                                    float(schedule["sampling_rates"][0]), float(schedule["cutoffs"][0]))
        self.layers = nn.ModuleList(AliasFreeLayer(config, i, schedule) for i in range(config.sg3_layers + 1))
        self.output_scale = config.output_scale

    def forward(
        self,
        ws: torch.Tensor,
        noise_mode: str = "random",
        fused_modconv: bool | None = None,
        precision: str = "auto",
        generator: NoiseGenerator = None,
        update_emas: bool = False,
    ) -> torch.Tensor:
        """Render ws. StyleGAN3 has no noise inputs and always runs the grouped modulated conv:
        ``noise_mode``, ``fused_modconv`` and ``generator`` are checked and accepted for the common
        interface (stylegan/families.py), then unused. ``precision``: the dtype of the layers whose
        sampling rate times ``2 ** num_fp16_res`` exceeds the resolution (:mod:`stylegan.precision`).
        ``update_emas`` updates each layer's input-magnitude EMA (training's D-phase renders)."""
        check_noise_mode(noise_mode)
        check_precision(precision)
        if fused_modconv is not None and not isinstance(fused_modconv, bool):
            raise ValueError(f"fused_modconv={fused_modconv!r}: expected None, True or False")
        if not isinstance(ws, torch.Tensor) or ws.ndim != 3 or ws.shape[1:] != (self.num_ws, self.w_dim):
            shape = tuple(ws.shape) if isinstance(ws, torch.Tensor) else None
            raise ValueError(f"ws: expected shape [N, {self.num_ws}, {self.w_dim}], got {shape}")
        ws = ws.float()
        x = self.input(ws[:, 0])
        for i, layer in enumerate(self.layers):
            dtype = block_dtype(layer.use_fp16, precision, ws.device, torch.float32)
            x = layer(x, ws[:, i + 1], dtype, update_emas=update_emas)
        if self.output_scale != 1:
            x = x * self.output_scale
        return x.float()

    def extra_repr(self) -> str:
        return f"w_dim={self.w_dim}, num_ws={self.num_ws}, img_resolution={self.img_resolution}"


class StyleGAN3Generator(GrowthMixin, MappedGenerator):
    """``G(z [N, z_dim], c [N, c_dim]) -> img [N, img_channels, r, r]``: StyleGAN's mapping network
    (2 layers in NVIDIA's StyleGAN3 configs) and the alias-free synthesis network. No growth: the
    growth stage is always (resolution, 1)."""

    network_kind = "generator"  # for network files (stylegan/families.py)

    def __init__(self, config: NetworkConfig) -> None:
        super().__init__()
        if not isinstance(config, NetworkConfig):
            raise ValueError(f"config: expected a NetworkConfig, got {type(config).__name__}")
        self.config = config
        self.z_dim, self.c_dim, self.w_dim = config.z_dim, config.c_dim, config.w_dim
        self.img_resolution, self.img_channels = config.resolution, config.img_channels
        self.synthesis = StyleGAN3Synthesis(config)
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(
            z_dim=config.z_dim, c_dim=config.c_dim, w_dim=config.w_dim, num_ws=self.num_ws,
            num_layers=config.mapping_layers, lr_multiplier=config.mapping_lr_multiplier,
            w_avg_beta=config.w_avg_beta,
        )
        self._init_growth()

    def forward(
        self,
        z: torch.Tensor,
        c: torch.Tensor | None = None,
        truncation_psi: float = 1.0,
        truncation_cutoff: int | None = None,
        noise_mode: str = "random",
        update_emas: bool = False,
        fused_modconv: bool | None = None,
        precision: str = "auto",
        generator: NoiseGenerator = None,
    ) -> torch.Tensor:
        """As every family's ``G(z, c)``; ``update_emas`` also updates the synthesis layers' magnitude EMAs."""
        ws = self.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff,
                          update_emas=update_emas)
        return self.synthesis(ws, noise_mode=noise_mode, fused_modconv=fused_modconv, precision=precision,
                              generator=generator, update_emas=update_emas)
