"""--memory-format and --compile (training/speedups.py): the same gradients as the plain eager path
within float rounding, the defaults by device, old runs resumed in the layout they trained with,
the double-backward phases kept eager, and a failed compile that falls back with one warning."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from train_fixtures import RecordGrads
from training.config import ConfigError, TrainConfig
from training.distributed import Dist
from training.resolve import DataShape, resolve_run
from training.session import build_session
from training.speedups import Compiled, CompiledGenerator, default_memory_format
from training.step import MicroBatch, run_phase

PHASES = ("G_main", "G_reg", "D_main", "D_reg")


def _session(compile_backend: str = "inductor", **changes):
    cfg = TrainConfig(**{"preset": "tiny", "batch": 4, "gamma": 1.0, **changes})
    run = resolve_run(cfg, DataShape(8, 1, 2))
    return build_session(run.train, Dist(), run.network, compile_backend=compile_backend)


def _micro(layout: torch.memory_format, rounds: int = 1) -> list[MicroBatch]:
    gen = torch.Generator().manual_seed(0)
    real = torch.rand([4, 1, 8, 8], generator=gen) * 2 - 1
    c = F.one_hot(torch.randint(0, 2, [4], generator=gen), 2).float()
    return [MicroBatch(real.contiguous(memory_format=layout), c, 1000 + r) for r in range(rounds)]


def _phase_grads(session, name: str, layout=torch.contiguous_format) -> list[torch.Tensor | None]:
    trained, _ = session.loss.networks(name)
    opt = RecordGrads(trained.parameters())
    run_phase(name, session.loss, opt, _micro(layout), dist=Dist())
    return opt.grads


def _assert_grads_close(got, want) -> None:
    assert len(got) == len(want)
    assert sum(g is not None for g in want) > 10  # the phase reached most parameters
    for g, w in zip(got, want):
        assert (g is None) == (w is None)
        if w is not None:
            torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-6)


def test_memory_format_defaults_by_device_and_is_checked():
    cpu = resolve_run(TrainConfig(preset="tiny"), DataShape(8, 1, 0), device_type="cpu")
    cuda = resolve_run(TrainConfig(preset="tiny"), DataShape(8, 1, 0), device_type="cuda")
    assert cpu.train.memory_format == "channels-last" and cuda.train.memory_format == "contiguous"
    assert cpu.sources["memory_format"] == "derived" and "CPU" in cpu.notes["memory_format"]
    assert default_memory_format("cuda")[0] == "contiguous"
    given = resolve_run(TrainConfig(preset="tiny", memory_format="contiguous"), DataShape(8, 1, 0))
    assert given.train.memory_format == "contiguous" and given.sources["memory_format"] == "given"
    with pytest.raises(ConfigError, match=r"--memory-format: 'channel-last'.*contiguous, channels-last"):
        TrainConfig(memory_format="channel-last").validate()


def test_channels_last_session_keeps_its_weights_in_that_layout():
    s = _session(memory_format="channels-last")
    four_d = [p for net in (s.G, s.D, s.G_ema) for p in net.parameters() if p.ndim == 4 and p.shape[1] > 1 and p.shape[2] > 1]
    assert four_d and all(p.is_contiguous(memory_format=torch.channels_last) and not p.is_contiguous() for p in four_d)
    plain = _session(memory_format="contiguous")
    assert all(p.is_contiguous() for net in (plain.G, plain.D) for p in net.parameters())


@pytest.mark.parametrize("phase", PHASES)
def test_channels_last_gives_the_contiguous_gradients(phase):
    want = _phase_grads(_session(memory_format="contiguous"), phase)
    got = _phase_grads(_session(memory_format="channels-last"), phase, torch.channels_last)
    _assert_grads_close(got, want)


def test_a_run_from_before_memory_format_resumes_contiguous(tmp_path):
    from training.train import _config_for

    cfg = resolve_run(TrainConfig(preset="tiny"), DataShape(8, 1, 0)).train
    saved = cfg.to_dict()
    del saved["memory_format"], saved["compile"]
    (tmp_path / "config.json").write_text(json.dumps({"train": saved}))
    resumed, _, _ = _config_for(TrainConfig().to_dict(), set(), tmp_path)
    assert resumed.memory_format == "contiguous" and resumed.compile is False
    changed, _, _ = _config_for({**TrainConfig().to_dict(), "memory_format": "channels-last", "compile": True},
                                {"memory_format", "compile"}, tmp_path)
    assert changed.memory_format == "channels-last" and changed.compile is True  # speed options may change


@pytest.mark.parametrize("phase", ["G_main", "D_main"])
def test_compiled_phases_give_the_eager_gradients(phase):
    # aot_eager: dynamo's graphs and AOTAutograd's joint forward/backward, without inductor's code
    # generation (seconds, not minutes); the e2e run below compiles with inductor.
    torch._dynamo.reset()
    compiled = _session(compile=True, compile_backend="aot_eager", memory_format="contiguous")
    assert isinstance(compiled.loss.fast_G, CompiledGenerator) and isinstance(compiled.loss.fast_D, Compiled)
    got = _phase_grads(compiled, phase)
    want = _phase_grads(_session(memory_format="contiguous"), phase)
    _assert_grads_close(got, want)
    assert compiled.loss.fast_D.compiled is not None  # it compiled (no fallback happened)
    assert compiled.loss.fast_G.synthesis.compiled is not None


class _MustNotRun:
    """Stands in for a compiled network in a phase that must use the eager one."""

    def __getattr__(self, name):
        raise AssertionError(f"a double-backward phase used the compiled network ({name})")

    def __call__(self, *args, **kwargs):
        raise AssertionError("a double-backward phase used the compiled network")


@pytest.mark.parametrize("phase,changes", [("G_reg", {}), ("D_reg", {}), ("D_main", {"loss": "wgan-gp", "gamma": 0.0})])
def test_double_backward_phases_run_the_eager_networks(phase, changes):
    s = _session(memory_format="contiguous", **changes)
    s.loss.fast_G, s.loss.fast_D = _MustNotRun(), _MustNotRun()
    _phase_grads(s, phase)


def test_a_compiled_graph_still_has_no_double_backward():
    """Why the regularisers run eagerly: if this starts to pass without an error, torch.compile
    learned double backward and --compile can cover R1 and path length too."""
    torch._dynamo.reset()
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.Softplus())
    fn = torch.compile(net, backend="aot_eager")
    x = torch.randn(2, 1, 5, 5, requires_grad=True)
    (grad,) = torch.autograd.grad(fn(x).sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="double backward"):
        grad.square().sum().backward()


def test_a_failed_compile_falls_back_to_eager_with_one_warning():
    torch._dynamo.reset()

    def broken_backend(gm, example_inputs):
        raise RuntimeError("no compiler here")

    warnings: list[str] = []
    fn = Compiled(lambda x: x.sin() * 2, "f", backend=broken_backend, warn=warnings.append)
    x = torch.randn(5)
    assert torch.equal(fn(x), x.sin() * 2) and torch.equal(fn(x), x.sin() * 2)
    assert len(warnings) == 1 and "--compile: f could not be compiled" in warnings[0] and "eagerly" in warnings[0]
    assert fn.compiled is None


def test_errors_of_the_model_itself_are_not_swallowed():
    torch._dynamo.reset()

    def bad(x):
        return x @ torch.ones(3, 3)  # wrong shape for x

    warnings: list[str] = []
    fn = Compiled(bad, "bad", backend="eager", warn=warnings.append)
    with pytest.raises(RuntimeError, match="shape|size"):
        fn(torch.ones(2, 4))
    assert not warnings


@pytest.mark.e2e
def test_a_compiled_run_trains_and_resumes_without_compile(tmp_path):
    """train.py --compile with inductor (the real compiler: minutes on 2 cores at this size), then
    the same run resumed eagerly: the speed options may change on resume."""
    from click.testing import CliRunner

    from train_fixtures import make_dataset
    from training.train import main

    torch._dynamo.reset()
    data = make_dataset(tmp_path / "d8", resolution=8, num_images=32, num_classes=4)
    args = ["--preset", "tiny", "--data", str(data), "--outdir", str(tmp_path / "runs"), "--batch", "8",
            "--tick", "0.008", "--workers", "0", "--threads", "1", "--no-progress"]
    result = CliRunner().invoke(main, [*args, "--kimg", "0.016", "--compile"])
    assert result.exit_code == 0, result.output
    (run,) = (tmp_path / "runs").iterdir()
    log = (run / "log.txt").read_text()
    assert "note: --compile: the regularisation phases" in log and "could not be compiled" not in log
    assert json.loads((run / "config.json").read_text())["train"]["compile"] is True
    result = CliRunner().invoke(main, [*args, "--kimg", "0.024", "--no-compile", "--resume", str(run)])
    assert result.exit_code == 0, result.output
    assert json.loads((run / "state" / "progress.json").read_text())["nimg"] == 24
