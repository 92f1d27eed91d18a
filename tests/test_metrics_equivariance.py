"""StyleGAN3's equivariance metrics (EQ-T integer / fractional, EQ-R): the resampling primitives
against exact answers, the PSNR, the names, the pipeline on an equivariant stand-in, one that ignores
its transform and a small real StyleGAN3, the refusal for other networks, the CLI and training."""

from __future__ import annotations

import json
import math

import pytest
import torch
from click.testing import CliRunner

import stylegan
from equivariance_helpers import FourierToy, tiny_stylegan3
from training.metrics import compute_metrics, evaluate_snapshot, is_result_key, parse_metric, parse_metrics
from training.metrics import equivariance as E

# ----- PSNR and names ---------------------------------------------------------------------------------


def test_psnr_is_the_papers_formula():
    assert E.psnr(4.0 * 10, 10) == pytest.approx(0.0, abs=1e-12)  # MSE = peak^2: 0 dB
    assert E.psnr(0.04 * 7, 7) == pytest.approx(20.0, abs=1e-12)
    assert E.psnr(3.0, 1000) == pytest.approx(20 * math.log10(2) - 10 * math.log10(3.0 / 1000), abs=1e-12)
    assert E.psnr(0.0, 5) == math.inf and math.isnan(E.psnr(0.0, 0))


def test_names_parse_and_rename():
    assert [s.name for s in parse_metrics("eqt50k_int,eqt50k_frac,eqr50k")] == ["eqt50k_int", "eqt50k_frac", "eqr50k"]
    spec = parse_metric("eqt50k_int", num_gen=500)
    assert (spec.kind, spec.name, spec.keys, spec.needs_reals, spec.needs_features) == (
        "eqt_int", "eqt500_int", ("eqt500_int",), False, False)
    assert parse_metric("eqr2k").num_gen == 2000 and parse_metric("eqt100_frac").name == "eqt100_frac"
    assert is_result_key("eqr50k") and is_result_key("eqt50k_frac") and not is_result_key("eqt50k")
    with pytest.raises(ValueError, match="did you mean 'eqt50k_int'"):
        parse_metric("eqt50k")


# ----- resampling primitives --------------------------------------------------------------------------


def _waves(size: int, fmax: float, seed: int = 0, count: int = 24):
    """A band-limited test signal (waves below ``fmax`` cycles per pixel) and a renderer of it at ``M p``."""
    gen = torch.Generator().manual_seed(seed)
    radius = torch.rand(count, generator=gen, dtype=torch.float64).sqrt() * fmax
    angle = torch.rand(count, generator=gen, dtype=torch.float64) * 2 * math.pi
    phase = torch.rand(count, generator=gen, dtype=torch.float64)
    freqs = torch.stack([radius * angle.cos(), radius * angle.sin()], dim=1)

    def render(m: torch.Tensor | None = None) -> torch.Tensor:
        i = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
        py, px = torch.meshgrid(i, i, indexing="ij")
        m = torch.eye(3, dtype=torch.float64) if m is None else m.double()
        qx = m[0, 0] * px + m[0, 1] * py + m[0, 2] * size
        qy = m[1, 0] * px + m[1, 1] * py + m[1, 2] * size
        v = torch.sin(2 * math.pi * (qx[..., None] * freqs[:, 0] + qy[..., None] * freqs[:, 1] + phase)).mean(-1)
        return (0.9 * v)[None, None].float()

    return render


def _psnr(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> float:
    return E.psnr(float(((a - b).double().square() * mask.double()).sum()), float(mask.sum()) * a.shape[1])


def test_integer_translation_is_an_exact_shift_with_its_mask():
    x = torch.randn(2, 3, 9, 11)
    out, mask = E.integer_translate(x, 3, -2)
    assert mask.shape == (9, 11) and int(mask.sum()) == (9 - 2) * (11 - 3)
    assert torch.equal(out[..., :7, 3:], x[..., 2:, :8])  # out[i, j] = x[i + 2, j - 3]
    assert torch.equal(mask[:7, 3:], torch.ones(7, 8))
    assert float(out[..., 7:, :].abs().sum() + out[..., :, :3].abs().sum()) == 0
    out, mask = E.integer_translate(x, 11, 0)
    assert float(mask.sum()) == 0 and float(out.abs().sum()) == 0


def test_fractional_translation_of_a_band_limited_signal_matches_its_analytic_shift():
    size = 48
    render = _waves(size, 0.25)
    dx, dy = 3.37, -5.81
    out, mask = E.fractional_translate(render(), dx, dy)
    truth = render(E.translation_matrix(dx / size, dy / size))
    assert _psnr(out, truth, mask) > 55
    # The mask: every tap of the 2a = 6 inside (columns n + a .. W - a + n for dx = n + f, within the image).
    assert torch.equal(mask.nonzero()[:, 1].unique(), torch.arange(3 + 3, size))
    assert torch.equal(mask.nonzero()[:, 0].unique(), torch.arange(0, size - 3 - 6 + 1))
    # A whole-pixel shift is the exact shift; a constant stays constant (taps normalised).
    x = torch.randn(1, 2, 16, 16)
    frac, m1 = E.fractional_translate(x, 2.0, -1.0)
    exact, m2 = E.integer_translate(x, 2, -1)
    assert torch.allclose(frac * m1, exact * m1, atol=1e-6) and bool((m1 <= m2).all())
    const, m3 = E.fractional_translate(torch.full((1, 1, 16, 16), 0.7), 0.43, 0.61)
    assert torch.allclose(const[..., m3.bool()], torch.tensor(0.7), atol=1e-6)


def test_polygon_kernel_of_the_square_is_the_separable_sinc_and_of_an_octagon_its_integral():
    d = torch.linspace(-4.3, 4.3, 29, dtype=torch.float64)
    dy, dx = torch.meshgrid(d, d, indexing="ij")
    square = [(-0.5, -0.5), (0.5, -0.5), (0.5, 0.5), (-0.5, 0.5)]
    assert torch.allclose(E.polygon_kernel(square, dx, dy), torch.sinc(dx) * torch.sinc(dy), atol=1e-12)
    zero = torch.zeros(1, dtype=torch.float64)
    band_in, band_out = E.passband(E.rotation_matrix(0.6)[:2, :2].numpy())
    assert len(band_in) == 8 and E.polygon_area(band_in) == pytest.approx(E.polygon_area(band_out))
    assert float(E.polygon_kernel(band_in, zero, zero)) == pytest.approx(E.polygon_area(band_in))
    # Against a midpoint-rule integral of cos(2 pi nu.d) over the octagon.
    n = 1200
    nu = (torch.arange(n, dtype=torch.float64) + 0.5) / n - 0.5
    vy, vx = torch.meshgrid(nu, nu, indexing="ij")
    inside = torch.ones_like(vx, dtype=torch.bool)
    for (x0, y0), (x1, y1) in zip(band_in, band_in[1:] + band_in[:1]):
        inside &= (x1 - x0) * (vy - y0) - (y1 - y0) * (vx - x0) >= 0
    for px, py in ((0.0, 0.0), (0.7, -0.2), (1.9, 2.6), (-3.1, 0.4)):
        numeric = float(torch.cos(2 * math.pi * (vx * px + vy * py))[inside].sum()) / n**2
        at = [torch.tensor([v], dtype=torch.float64) for v in (px, py)]
        exact = float(E.polygon_kernel(band_in, *at))
        assert exact == pytest.approx(numeric, abs=2e-3)


def test_rotation_by_zero_is_the_identity():
    x = torch.randn(2, 3, 20, 20)
    out, mask = E.affine_resample(x, torch.eye(3))
    inner = mask.bool()
    assert int(inner.sum()) == 10 * 10  # radius 6: 5 pixels of border each side
    assert torch.allclose(out[..., inner], x[..., inner], atol=1e-5)
    cmp, cmask = E.pseudo_resample(x, torch.eye(3))
    assert torch.allclose(cmp[..., cmask.bool()], x[..., cmask.bool()], atol=1e-5)


def test_rotation_of_a_radially_symmetric_band_limited_image_is_near_identity():
    size = 40
    i = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    r2 = i[:, None] ** 2 + i[None, :] ** 2
    # A Gaussian of sigma 3 px: its spectrum exp(-(2 pi 3 f)^2 / 2) is negligible from f = 0.3 on.
    blob = (torch.exp(-r2 / (2 * 3.0**2)) - 0.5)[None, None].float()
    for angle in (0.4, 2.2, -1.3):
        out, mask = E.affine_resample(blob, E.rotation_matrix(angle))
        assert _psnr(out, blob, mask) > 70


def test_rotation_of_band_limited_waves_matches_the_analytic_rotation_and_its_direction():
    size = 48
    render = _waves(size, 0.35, seed=1)
    for angle in (1.0, -2.5):
        m = E.rotation_matrix(angle)
        out, mask = E.affine_resample(render(), m)
        assert _psnr(out, render(m), mask) > 60
        # The other direction is no better than unrelated images (~21 dB).
        assert _psnr(out, render(E.rotation_matrix(-angle)), mask) < 25
    # A rotation and a translation together (any affine map): still the analytic answer.
    m = E.rotation_matrix(0.8) @ E.translation_matrix(0.05, -0.03)
    out, mask = E.affine_resample(render(), m)
    assert _psnr(out, render(m), mask) > 60


def test_pseudo_rotation_keeps_the_shared_band_and_removes_the_corners():
    size = 48
    m = E.rotation_matrix(math.pi / 4)
    inside = _waves(size, 0.45, seed=2)()  # |f| < 0.5: inside every rotated square
    out, mask = E.pseudo_resample(inside, m)
    assert _psnr(out, inside, mask) > 35
    i = torch.arange(size, dtype=torch.float32)
    corner = torch.sin(2 * math.pi * 0.45 * (i[:, None] + i[None, :]))[None, None]  # (0.45, 0.45): outside at 45 deg
    out, mask = E.pseudo_resample(corner, m)
    rms = lambda t: float(t[..., mask.bool()].square().mean().sqrt())  # noqa: E731
    assert rms(out) < 0.05 * rms(corner)
    out, mask = E.pseudo_resample(corner, torch.eye(3))  # no rotation: the whole square is kept
    assert rms(out - corner) < 0.02 * rms(corner)


def test_transforms_are_drawn_per_group_within_the_ranges():
    res = (16, 16)
    ints = [E.draw_transform("eqt_int", s, res) for s in range(200)]
    fracs = [E.draw_transform("eqt_frac", s, res) for s in range(200)]
    rots = [E.draw_transform("eqr", s, res) for s in range(200)]
    t_int = torch.stack([m[:2, 2] for m in ints])
    assert torch.equal(t_int * 16, (t_int * 16).round()) and float(t_int.abs().max()) <= 2 / 16
    t_frac = torch.stack([m[:2, 2] for m in fracs])
    assert float(t_frac.abs().max()) <= 0.125 and float(t_frac.abs().max()) > 0.11
    assert all(torch.equal(m[:2, :2], torch.eye(2, dtype=torch.float64)) for m in ints + fracs)
    angles = torch.tensor([math.atan2(float(m[1, 0]), float(m[0, 0])) for m in rots])
    assert float(angles.abs().max()) > 3.0 and float(angles.min()) < -2.5 and float(angles.max()) > 2.5
    assert torch.equal(E.draw_transform("eqr", 7, res), E.draw_transform("eqr", 7, res))
    assert not torch.equal(fracs[0], E.draw_transform("eqt_frac", 1, res))
    assert not torch.equal(E.draw_transform("eqt_frac", 5, res)[:2, 2], E.draw_transform("eqt_int", 5, res)[:2, 2] + 1)


# ----- the metrics ------------------------------------------------------------------------------------

EQ = "eqt8_int,eqt8_frac,eqr8"


def _results(G, names=EQ, **kwargs) -> dict[str, float]:
    results = compute_metrics(G, parse_metrics(names), None, **kwargs)
    return {k: v for r in results for k, v in r.results.items()}


def test_an_equivariant_network_scores_high_and_one_that_ignores_its_transform_low():
    good = _results(FourierToy(), batch_size=8)
    bad = _results(FourierToy(follow=False), batch_size=8)
    assert good["eqt8_int"] > 80 and good["eqt8_frac"] > 50 and good["eqr8"] > 55
    assert bad["eqt8_int"] < 30 and bad["eqt8_frac"] < 30 and bad["eqr8"] < 30


def test_renders_without_noise_in_fp32_under_each_groups_transform_and_restores_it():
    G = FourierToy()
    before = G.synthesis.input.transform.clone()
    results = compute_metrics(G, parse_metrics("eqt6_frac"), None, batch_size=6)
    assert results[0].features == "none" and results[0].num_real == 0
    calls = G.synthesis.calls
    assert all(c["noise_mode"] == "const" and c["precision"] == "fp32" for c in calls)
    # One identity render of the batch, then one render per group of 4 seeds (0-3, 4-5).
    assert [c["n"] for c in calls] == [6, 4, 2] and torch.equal(calls[0]["transform"], torch.eye(3))
    assert torch.allclose(calls[1]["transform"].double(), E.draw_transform("eqt_frac", 0, (16, 16)))
    assert torch.allclose(calls[2]["transform"].double(), E.draw_transform("eqt_frac", 4, (16, 16)))
    assert torch.equal(G.synthesis.input.transform, before)


def test_results_do_not_depend_on_the_batch_size_and_smaller_counts_use_the_first_samples():
    a = _results(FourierToy(), "eqt9_frac,eqr9,eqr5", batch_size=9)
    b = _results(FourierToy(), "eqt9_frac,eqr9,eqr5", batch_size=2)
    assert a == pytest.approx(b, rel=1e-9)
    assert _results(FourierToy(), "eqr5", batch_size=3)["eqr5"] == pytest.approx(a["eqr5"], rel=1e-9)


def test_other_networks_are_refused_in_one_line_naming_the_metric():
    G, _ = stylegan.build("tiny", resolution=16, img_channels=1)
    with pytest.raises(ValueError) as info:
        compute_metrics(G, parse_metrics("fid10_full,eqr50k"), None, data="unused")
    message = str(info.value)
    assert "\n" not in message and message.startswith("eqr50k:") and "StyleGAN3 generator" in message
    assert "G.synthesis.input.transform" in message and "stylegan2 network" in message


def test_a_small_stylegan3_is_equivariant_where_its_configuration_says():
    t = _results(tiny_stylegan3("t"), "eqt8_int,eqt8_frac,eqr8", batch_size=8)
    r = _results(tiny_stylegan3("r"), "eqr8", batch_size=8)
    # The same config-T network with its input transform ignored by the features: far lower.
    ignoring = tiny_stylegan3("t")
    ignoring.synthesis.input.forward = _ignoring_forward(ignoring.synthesis.input)
    low = _results(ignoring, "eqt8_int", batch_size=8)
    assert t["eqt8_int"] > 80 and t["eqt8_frac"] > 55 and low["eqt8_int"] < t["eqt8_int"] - 40
    assert r["eqr8"] > 50 and r["eqr8"] > t["eqr8"] + 20  # config-R is rotation equivariant, config-T is not


def _ignoring_forward(module):
    """``module``'s forward with the identity in place of its transform while it renders."""
    original = type(module).forward

    def forward(w):
        saved = module.transform.clone()
        module.transform.copy_(torch.eye(3))
        try:
            return original(module, w)
        finally:
            module.transform.copy_(saved)

    return forward


# ----- the CLI and training ---------------------------------------------------------------------------


def test_cli_computes_them_without_data_or_feature_network_and_refuses_other_networks(tmp_path, monkeypatch):
    from generate_helpers import make_network_file
    from tools.metrics import main

    monkeypatch.delenv("STYLEGAN_INCEPTION_WEIGHTS", raising=False)
    G = tiny_stylegan3("r")
    net = tmp_path / "sg3.safetensors"
    stylegan.save_network(net, {"G_ema": G}, G.config)
    result = CliRunner().invoke(main, ["--network", str(net), "--metrics", "eqt50k_int,eqr50k", "--num-gen", "4",
                                       "--device", "cpu", "--cache-dir", str(tmp_path / "c")], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    lines = [json.loads(x) for x in result.stdout.splitlines() if x.startswith("{")]
    assert [x["metric"] for x in lines] == ["eqt4_int", "eqr4"] and lines[1]["results"]["eqr4"] > 40
    assert lines[0]["features"] == "none" and lines[0]["num_real"] == 0

    sg2 = make_network_file(tmp_path / "sg2.safetensors")
    result = CliRunner().invoke(main, ["--network", str(sg2), "--metrics", "eqt50k_frac", "--device", "cpu"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "'--metrics'" in result.output
    assert "eqt50k_frac: the equivariance metrics need a StyleGAN3 generator" in result.output


def test_training_snapshot_hook_records_them_even_when_the_feature_network_is_missing(tmp_path, monkeypatch):
    monkeypatch.delenv("STYLEGAN_INCEPTION_WEIGHTS", raising=False)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    notes: list[str] = []
    results = evaluate_snapshot(FourierToy(), metrics="is10,eqt10_int", data=None, run_dir=tmp_path,
                                snapshot="network-snapshot-000004.safetensors", kimg=4.0, cache_dir=str(tmp_path / "c"),
                                log=notes.append)
    assert list(results) == ["eqt10_int"] and results["eqt10_int"] > 80
    assert any(n.startswith("warning: metrics is10 skipped") for n in notes)
    record = json.loads((tmp_path / "metric-eqt10_int.jsonl").read_text())
    assert record["snapshot"] == "network-snapshot-000004.safetensors" and record["features"] == "none"
    assert not (tmp_path / "metric-is10.jsonl").exists()


def test_training_refuses_them_at_start_up_for_other_networks(tmp_path):
    from train_fixtures import make_dataset
    from training.train import main

    data = make_dataset(tmp_path / "data", resolution=8, num_images=8, shards=1)
    result = CliRunner().invoke(main, ["--preset", "tiny", "--data", str(data), "--outdir", str(tmp_path / "runs"),
                                       "--metrics", "fid1k_full,eqr50k", "--dry-run"])
    assert result.exit_code == 2
    assert "--metrics" in result.output
    assert "eqr50k: the equivariance metrics need a StyleGAN3 generator" in result.output
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_a_stylegan3_training_run_records_them_at_each_snapshot(tmp_path, monkeypatch):
    from train_fixtures import make_dataset
    from training.train import main

    monkeypatch.setenv("STYLEGAN_CACHE_DIR", str(tmp_path / "cache"))
    data = make_dataset(tmp_path / "data", resolution=32, num_images=16, num_classes=4, shards=1)
    args = ["--preset", "stylegan3-tiny", "--data", str(data), "--outdir", str(tmp_path / "runs"), "--batch", "8",
            "--workers", "0", "--threads", "1", "--kimg", "0.008", "--tick", "0.008", "--snap", "1",
            "--metrics", "eqt8_int,eqr8"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    run = next((tmp_path / "runs").iterdir())
    stats = [json.loads(x) for x in (run / "stats.jsonl").read_text().splitlines()]
    record = next(r for r in stats if "eqt8_int" in r)
    assert record["snapshot"] == "network-snapshot-000000.008.safetensors"
    assert record["eqt8_int"] > 30 and math.isfinite(record["eqr8"])
    assert json.loads((run / "metric-eqr8.jsonl").read_text())["results"]["eqr8"] == record["eqr8"]
