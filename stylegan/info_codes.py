"""InfoGAN's latent codes (Chen et al. 2016): their layout in ``z``, their sampling and their loss.

A network with codes (``NetworkConfig.info_codes``, e.g. ``(("cat", 10), ("cont", 1), ("cont", 1))``
for ``"cat:10,cont:2"``) takes them as the LAST ``K`` entries of its latent ``z``; the first
``z_dim - K`` entries stay the usual N(0, I) noise. A categorical code of ``n`` classes takes ``n``
entries (one-hot), a continuous code one. So G's networks do not change at all; only what is fed
into ``z`` does. D's auxiliary head Q (:class:`stylegan.discriminator.Discriminator`,
``with_codes=True``) returns ``K`` numbers per image in the same layout: ``n`` logits per categorical
code and one mean per continuous code.

* Sampling (sec. 5 and 6 of the paper): a categorical code uniform over its classes, a continuous
  code ``Uniform(-1, 1)``.
* Loss (eq. 4-6, the variational lower bound ``L_I``): ``-log Q(c | x)`` per sample: the
  cross-entropy of each categorical code, plus ``0.5 * (c - mu)^2`` for each continuous code,
  i.e. a Gaussian ``Q(c | x)`` whose variance is fixed at 1 (the constant ``0.5 log 2 pi`` dropped).
"""

from __future__ import annotations

import re
from typing import Mapping

import torch
import torch.nn.functional as F

KINDS = ("cat", "cont")
MAX_CODES = 16  # codes per network
MAX_CLASSES = 1000  # classes of one categorical code
CONT_LOW, CONT_HIGH = -1.0, 1.0  # a continuous code's range, Uniform(-1, 1) (sec. 5)

InfoCodes = tuple[tuple[str, int], ...]


def check_info_codes(codes: object, z_dim: int) -> None:
    """Raise a one-line ``ValueError`` unless ``codes`` is a valid layout for a latent of ``z_dim``:
    at most 16 codes, each ``('cat', n)`` with n in [2, 1000] or ``('cont', 1)``, and ``K < z_dim``
    (at least one entry of noise stays)."""
    allowed = (f"expected a tuple of at most {MAX_CODES} pairs ('cat', n) with n in [2, {MAX_CLASSES}] "
               "or ('cont', 1)")
    if not isinstance(codes, tuple) or len(codes) > MAX_CODES:
        raise ValueError(f"info_codes={_short(codes)}: {allowed}")
    for code in codes:
        ok = isinstance(code, tuple) and len(code) == 2 and code[0] in KINDS and isinstance(code[1], int) \
            and not isinstance(code[1], bool)
        if ok and code[0] == "cat":
            ok = 2 <= code[1] <= MAX_CLASSES
        elif ok:
            ok = code[1] == 1
        if not ok:
            raise ValueError(f"info_codes: code {_short(code)}: {allowed}")
    k = code_dim(codes)
    if codes and k >= z_dim:
        raise ValueError(f"info_codes={_short(codes)}: the codes take {k} entries of z, z_dim is {z_dim}; "
                         f"expected fewer than z_dim (the rest of z is noise)")


def _short(value: object, width: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= width else text[: width - 3] + "..."


def parse_info_codes(text: str) -> InfoCodes:
    """``"cat:10,cont:2"`` -> ``(("cat", 10), ("cont", 1), ("cont", 1))``: ``cat:N`` is one
    categorical code of N classes, ``cont:M`` is M continuous codes (``cont`` alone is one);
    ``""`` is no codes."""
    if not isinstance(text, str) or not text.strip():
        return ()
    out: list[tuple[str, int]] = []
    for item in text.split(","):
        m = re.fullmatch(r"\s*(cat|cont)\s*(?::\s*(\d+)\s*)?", item)
        count = int(m.group(2)) if m and m.group(2) is not None else None
        if m is None or (m.group(1) == "cat" and (count is None or not 2 <= count <= MAX_CLASSES)) or count == 0:
            raise ValueError(f"{item.strip()!r} in {text!r}: expected cat:N (N classes in [2, {MAX_CLASSES}]) or "
                             "cont:M (M continuous codes), separated by commas, e.g. 'cat:10,cont:2'")
        if m.group(1) == "cat":
            out.append(("cat", count))
        else:
            out.extend([("cont", 1)] * (count or 1))
        if len(out) > MAX_CODES:
            raise ValueError(f"{text!r}: more than {MAX_CODES} codes")
    return tuple(out)


def format_info_codes(codes: InfoCodes) -> str:
    """The inverse of :func:`parse_info_codes` (one item per code): ``"cat:10,cont:1,cont:1"``."""
    return ",".join(f"{kind}:{n}" for kind, n in codes)


def code_dim(codes: InfoCodes) -> int:
    """``K``, the entries of z the codes take: ``n`` per categorical code, 1 per continuous code."""
    return sum(n for _, n in codes)


def code_slices(codes: InfoCodes, z_dim: int) -> list[slice]:
    """Where each code lies in ``z`` (and in Q's output, shifted by ``z_dim - K``): the last K entries."""
    start, out = z_dim - code_dim(codes), []
    for _, n in codes:
        out.append(slice(start, start + n))
        start += n
    return out


def sample_codes(codes: InfoCodes, n: int, gen: torch.Generator, device: torch.device | str = "cpu") -> torch.Tensor:
    """``[n, K]`` codes drawn from ``gen``: one-hot of a uniform class per categorical code,
    ``Uniform(-1, 1)`` per continuous code (InfoGAN sec. 5), code by code in order."""
    parts = []
    for kind, size in codes:
        if kind == "cat":
            idx = torch.randint(0, size, [n], generator=gen, device=device)
            parts.append(F.one_hot(idx, size).float())
        else:
            u = torch.rand([n, 1], generator=gen, device=device)
            parts.append(u * (CONT_HIGH - CONT_LOW) + CONT_LOW)
    return torch.cat(parts, dim=1) if parts else torch.zeros([n, 0], device=device)


def with_codes(z: torch.Tensor, codes: InfoCodes, values: torch.Tensor) -> torch.Tensor:
    """``z`` [N, z_dim] with its last K entries replaced by ``values`` [N, K] (a new tensor)."""
    k = code_dim(codes)
    if k == 0:
        return z
    return torch.cat([z[:, : z.shape[1] - k], values.to(z.dtype)], dim=1)


def check_code_value(codes: InfoCodes, index: int, value: float) -> None:
    """Raise a one-line ``ValueError`` unless ``value`` is valid for code ``index``: a class index
    in ``[0, n)`` for a categorical code, a number in ``[-1, 1]`` for a continuous one."""
    if not codes:
        raise ValueError("this network has no InfoGAN codes (it was trained without --info-codes)")
    if not 0 <= index < len(codes):
        raise ValueError(f"code {index} does not exist; this network has codes 0-{len(codes) - 1} "
                         f"({format_info_codes(codes)})")
    kind, n = codes[index]
    if kind == "cat" and not (float(value).is_integer() and 0 <= value < n):
        raise ValueError(f"code {index} is categorical with {n} classes: expected a class index in [0, {n - 1}], "
                         f"got {value:g}")
    if kind == "cont" and not CONT_LOW <= value <= CONT_HIGH:
        raise ValueError(f"code {index} is continuous: expected a number in [{CONT_LOW:g}, {CONT_HIGH:g}], got {value:g}")


def set_codes(z: torch.Tensor, codes: InfoCodes, values: Mapping[int, float]) -> torch.Tensor:
    """``z`` [N, z_dim] with the codes named in ``values`` (code index -> class index or number) set
    in every row; the other codes and the noise stay. Values are checked first."""
    for index, value in values.items():
        check_code_value(codes, index, value)
    z = z.clone()
    slices = code_slices(codes, z.shape[1])
    for index, value in values.items():
        kind, n = codes[index]
        if kind == "cat":
            z[:, slices[index]] = F.one_hot(torch.tensor(int(value)), n).to(z.dtype)
        else:
            z[:, slices[index]] = float(value)
    return z


def info_loss(codes: InfoCodes, params: torch.Tensor, c: torch.Tensor, cont_weight: float = 1.0) -> torch.Tensor:
    """InfoGAN's ``-L_I`` per sample (eq. 5-6, without the constant ``H(c)``): ``[N]``.

    ``params`` [N, K] is Q's output (logits of each categorical code, the mean of each continuous
    one), ``c`` [N, K] the codes that made the images. Each categorical code adds its cross-entropy
    ``-log softmax(logits)[class]``; each continuous code adds ``cont_weight * 0.5 * (c - mu)^2``,
    the negative log-likelihood of a unit-variance Gaussian up to ``0.5 log(2 pi)``.
    """
    params, c = params.float(), c.float()
    total = torch.zeros([params.shape[0]], device=params.device)
    start = 0
    for kind, n in codes:
        p, t = params[:, start : start + n], c[:, start : start + n]
        if kind == "cat":
            total = total + F.cross_entropy(p, t.argmax(dim=1), reduction="none")
        else:
            total = total + cont_weight * 0.5 * (t[:, 0] - p[:, 0]).square()
        start += n
    return total

