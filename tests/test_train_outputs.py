"""A run's files under faults: a full disk while writing state/, a snapshot, a grid or stats.jsonl
stops with one line and keeps the previous state; leftovers of a kill are removed at the next
start; snapshots and grids get the umask's mode. The full disk is simulated (we run as root, and no
small file system is at hand): the lowest writer each path uses raises ``ENOSPC`` as the OS would.
"""

from __future__ import annotations

import builtins
import errno
import os
import signal
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image
from safetensors import SafetensorError

import stylegan.netfile
from train_fixtures import make_dataset
from training import checkpoint, runlog
from training.runlog import unstamped
from training.outputs import OutputError, clean_leftovers, writing
from training.train import main

NOSPACE = os.strerror(errno.ENOSPC)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("data"), resolution=8, num_images=32, num_classes=0)


def _args(data: Path, out: Path, kimg: float) -> list[str]:
    return ["--preset", "tiny", "--data", str(data), "--outdir", str(out), "--batch", "8", "--tick", "0.008", "--snap", "1",
            "--workers", "0", "--threads", "1", "--kimg", str(kimg)]


def _first_run(data: Path, out: Path) -> Path:
    done = CliRunner().invoke(main, _args(data, out, 0.008))
    assert done.exit_code == 0, done.output
    return next(out.iterdir())


def _enospc() -> OSError:
    return OSError(errno.ENOSPC, NOSPACE)


def _full_state(monkeypatch) -> str:
    def save_torch(path, obj):  # torch.save fails mid-file and chains its own RuntimeError
        with open(path, "wb") as f:
            f.write(b"partial")
        try:
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")
        except RuntimeError:
            raise _enospc()

    monkeypatch.setattr(checkpoint, "_save_torch", save_torch)
    return "state"


def _full_snapshot(monkeypatch) -> str:
    def save_file(tensors, path, metadata=None):
        raise SafetensorError(f'Error while serializing: I/O error: No space left on device (os error 28) at path "{path}"')

    monkeypatch.setattr(stylegan.netfile, "save_file", save_file)
    return "network-snapshot-000000.016.safetensors"


def _full_grid(monkeypatch) -> str:
    real = Image.Image.save

    def save(self, fp, *args, **kwargs):
        if "fakes" in str(fp):
            raise _enospc()
        return real(self, fp, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "save", save)
    return "samples/fakes000000.016.png"


def _full_stats(monkeypatch) -> str:
    def fake_open(file, mode="r", *args, **kwargs):
        if str(file).endswith("stats.jsonl") and "a" in mode:
            raise _enospc()
        return builtins.open(file, mode, *args, **kwargs)

    monkeypatch.setattr(runlog, "open", fake_open, raising=False)
    return "stats.jsonl"


@pytest.mark.parametrize("fill", [_full_state, _full_snapshot, _full_grid, _full_stats],
                         ids=["state", "snapshot", "grid", "stats"])
def test_full_disk_stops_with_one_line_and_keeps_the_state(data, tmp_path, monkeypatch, fill):
    out = tmp_path / "runs"
    run = _first_run(data, out)
    before = {p.name: p.read_bytes() for p in (run / "state").iterdir()}
    target = fill(monkeypatch)
    result = CliRunner().invoke(main, [*_args(data, out, 0.032), "--resume", str(run)])
    assert result.exit_code == 1, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "Traceback" not in result.output, result.output
    assert errors[0].startswith(f"Error: cannot write {run / target}: {NOSPACE} (state/ is as last saved;")
    assert {p.name: p.read_bytes() for p in (run / "state").iterdir()} == before
    assert not [p for p in run.rglob("*") if p.name.startswith((".state-tmp-", ".state-old-")) or p.suffix == ".tmp"]
    assert f"error: cannot write {run / target}: {NOSPACE}" in (run / "log.txt").read_text()
    monkeypatch.undo()
    again = CliRunner().invoke(main, [*_args(data, out, 0.032), "--resume", str(run)])
    assert again.exit_code == 0, again.output


def test_full_disk_at_start_up_stops_with_one_line(data, tmp_path, monkeypatch):
    import training.train as train_cli

    def full(path, obj):
        raise _enospc()

    monkeypatch.setattr(train_cli, "write_json_atomic", full)
    out = tmp_path / "runs"
    result = CliRunner().invoke(main, _args(data, out, 0.008))
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    run = next(out.iterdir())
    assert errors == [f"Error: cannot write {run / 'config.json'}: {NOSPACE}"], result.output


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_run_folder_stops_with_one_line(data, tmp_path):
    out = tmp_path / "runs"
    run = _first_run(data, out)
    run.chmod(0o555)
    try:
        result = CliRunner().invoke(main, [*_args(data, out, 0.032), "--resume", str(run)])
    finally:
        run.chmod(0o755)
    assert result.exit_code == 1 and "Permission denied" in result.output and "Traceback" not in result.output


def test_writing_names_the_file_and_the_reason(tmp_path):
    with pytest.raises(OutputError) as err:
        with writing(tmp_path / "x.json"):
            raise _enospc()
    assert str(err.value) == f"cannot write {tmp_path / 'x.json'}: {NOSPACE}" and err.value.errno == errno.ENOSPC
    assert err.value.__cause__ is None and err.value.__suppress_context__


def _leftovers(run: Path) -> tuple[list[Path], list[Path]]:
    """(our temporary names, a user's files that look alike but are not ours)."""
    (run / "samples").mkdir(parents=True, exist_ok=True)
    ours = [run / f".state-tmp-{'a' * 32}", run / f".network-snapshot-000008.safetensors.{'b' * 32}.tmp",
            run / "samples" / f".fakes000008.png.{'c' * 32}.tmp", run / f".stats.jsonl.{'d' * 32}.tmp"]
    for folder in ours[:2]:  # a state folder, and the folder a network file is written in
        folder.mkdir()
        (folder / ".tmpAb12Cd").write_bytes(b"half")
    for p in ours[2:]:
        p.write_bytes(b"partial")
    users = [run / "notes.tmp", run / ".tmp", run / ".my.tmp", run / "samples" / "keep.png", run / ".tmpfolder"]
    for p in users:
        p.write_bytes(b"mine")
    return ours, users


def test_clean_leftovers_removes_only_our_temporary_names(tmp_path):
    run = tmp_path / "run"
    ours, users = _leftovers(run)
    aside = run / f".state-old-{'e' * 32}"
    aside.mkdir()
    (aside / "progress.json").write_text("{}")
    removed = clean_leftovers(run)
    assert not any(p.exists() for p in ours) and all(p.exists() for p in users)
    assert len(removed) == len(ours)
    assert aside.exists(), "a moved-aside state is kept while state/ is incomplete: it may be the only one"
    (run / "state").mkdir()
    (run / "state" / "progress.json").write_text("{}")
    assert clean_leftovers(run) == [aside.name] and not aside.exists()


def test_resume_removes_what_a_kill_left(data, tmp_path):
    out = tmp_path / "runs"
    run = _first_run(data, out)
    ours, users = _leftovers(run)
    result = CliRunner().invoke(main, [*_args(data, out, 0.016), "--resume", str(run)])
    assert result.exit_code == 0, result.output
    assert not any(p.exists() for p in ours) and all(p.exists() for p in users)
    assert "removed 4 temporary file(s) an interrupted run left" in (run / "log.txt").read_text()


@pytest.mark.parametrize("umask", [0o022, 0o002])
def test_snapshots_and_grids_get_the_umask_mode(data, tmp_path, umask):
    old = os.umask(umask)
    try:
        run = _first_run(data, tmp_path / "runs")
    finally:
        os.umask(old)
    want = 0o666 & ~umask
    files = [*run.glob("network-snapshot-*.safetensors"), *(run / "samples").glob("*.png"),
             run / "state" / "networks.safetensors"]
    assert len(files) >= 4
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == want, f"{path.name}: {oct(path.stat().st_mode)}"


def test_two_processes_stop_together_when_the_main_one_cannot_write(data, tmp_path):
    """Rank 0's snapshot write fails (a full disk) while rank 1 waits for it: both processes stop
    within the time limit with one line each and a non-zero status, log.txt has the one error line
    naming the file, no traceback. Before, rank 1 waited in the barrier after the write until gloo's
    30-minute timeout (a launcher that tears the group down hid it)."""
    import json
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[1]
    out = tmp_path / "runs"
    args = ["--preset", "tiny", "--data", str(data), "--outdir", str(out), "--batch", "8", "--threads", "1",
            "--workers", "0", "--kimg", "0.016", "--tick", "0.016", "--snap", "1"]
    env = {**os.environ, "PYTHONPATH": str(repo), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, str(repo / "tests" / "group_launcher.py"), "2",
                             str(repo / "tests" / "full_disk_worker.py"), *args], cwd=repo, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=float(os.environ.get("FULL_DISK_TEST_TIMEOUT", "240")))
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the launcher and both ranks
        output, _ = proc.communicate()
        pytest.fail("the processes did not stop after rank 0's write failed (a rank hangs in a collective):\n"
                    + output[-4000:])
    codes = json.loads(output.strip().splitlines()[-1])
    assert codes == [1, 1], output[-6000:]
    assert "Traceback" not in output, output[-6000:]
    errors = [line for line in output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 2 and all(NOSPACE in e and "network-snapshot-" in e for e in errors), output[-6000:]
    (run,) = out.iterdir()
    logged = [unstamped(line) for line in (run / "log.txt").read_text().splitlines()]
    logged = [line for line in logged if line.startswith("error")]
    assert len(logged) == 1 and logged[0].startswith(f"error: cannot write {run}/network-snapshot-"), logged
    assert logged[0].endswith(NOSPACE)
