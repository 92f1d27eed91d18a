"""Every fenced command and Python snippet of README.md and docs/*.md, run as a new user would.

Each ```bash block runs as one bash script (``set -euo pipefail``) in its own folder that looks like a
fresh checkout (the repository's folders linked in) after the demo run: ``runs/`` holds the demo's
run, made once here by the README's own command, shortened with ``--kimg``. Each ```python block
runs in a fresh interpreter in such a folder. A command that cannot run here, or only in a
shortened form, is in :data:`TABLE` with the reason; nothing else is left out. ``parse`` commands
cannot run here (GPUs, machines, data that is not here), but their arguments still go through
the tool's own click parser, so a renamed flag or value fails the test. A table row that matches
no documented command fails too, so the table cannot go stale.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import textwrap
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace


import numpy as np
import pytest
from PIL import Image

from nvidia_fixtures import fixtures_dir

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINKED = ("training", "tools", "stylegan", "ops", "bench", "data", "tests", "pyproject.toml")
DEMO_RUN = "runs/00000-data-tiny-cond-b32"
DEMO_NET = f"{DEMO_RUN}/network-snapshot-000064.safetensors"


@dataclass(frozen=True)
class Rule:
    """What to do with the commands a pattern matches (``re.fullmatch`` on the command, comments
    and backslash-newlines removed, spaces collapsed)."""

    pattern: str
    action: str  # "skip": not run; "parse": its arguments through the tool's parser; "run": rewritten; "demo"
    reason: str
    add: tuple[str, ...] = ()  # appended arguments (documented flags that shorten the command)
    replace: tuple[tuple[str, str], ...] = ()


# One table: every documented command that is not run exactly as written, and why.
TABLE = [
    Rule(r"python3 -m venv .* pip install -e \. && accelerate launch training/train\.py", "skip",
         "a fresh venv and pip install from the package index (no network here); the demo command runs alone"),
    Rule(r"python3 -m venv .* pip install -e \"\.\[test\]\" && python -m pytest", "skip",
         "installs, then runs the whole suite, which includes this test"),
    Rule(r"pip install -e \"\.\[(metrics|demo-data)\]\".*", "skip", "pip install from the package index (no network)"),
    Rule(r"docker .*", "skip", "docker and GPUs"),
    Rule(r"accelerate launch training/train\.py", "demo",
         "the demo, run once by the fixture with --kimg 0.032 (64 kimg take ~11 minutes); its final snapshot is "
         "copied to the name the 64-kimg run writes (checked with the loop's own naming)", add=("--kimg", "0.032")),
    Rule(r"accelerate launch --multi_gpu --num_processes 8 training/train\.py .*", "parse", "8 GPUs, /shards/ffhq256"),
    Rule(r"accelerate launch --multi_gpu --num_processes 2 training/train\.py --growth progressive --fade-kimg 10 --stable-kimg 10", "run",
         "2 CPU processes; --dry-run: the resolved run, not 64 kimg of training", add=("--dry-run",)),
    Rule(r"accelerate launch --multi_gpu --num_processes 2 training/train\.py --kimg 2", "parse",
         "2 processes for 2 kimg: minutes; tests/test_train_distributed.py trains 2 gloo processes"),
    Rule(r"torchrun --standalone --nproc-per-node 2 training/train\.py --kimg 2", "parse",
         "the same under torchrun: minutes; tests/test_train_distributed.py"),
    Rule(r"torchrun --standalone --nproc-per-node 8 training/train\.py .*", "parse", "8 GPUs, /shards/ffhq256"),
    Rule(r"python -m training\.launch --standalone --nproc-per-node 8 training/train\.py .*", "parse",
         "8 GPUs, /shards/ffhq256 (tests/test_train_launch.py and test_train_signals.py run it on 2 CPU processes)"),
    Rule(r"torchrun --nnodes 1:2 --nproc-per-node 8 .*", "parse",
         "8 GPUs, /shards/ffhq256 (tests/test_train_signals.py restarts 2 CPU processes under this recipe)"),
    Rule(r"accelerate launch training/train\.py --data /shards/\S+( --preset paper256 --mirror)?", "parse",
         "a dataset at /shards (not here)"),
    Rule(r"accelerate launch training/train\.py --resume auto", "run",
         "--dry-run: resolves the run to continue (the demo's) without training on", add=("--dry-run",)),
    Rule(r"python training/train\.py --kimg 10", "run", "--dry-run: 10 kimg takes minutes here", add=("--dry-run",)),
    Rule(r"accelerate launch .*(--config_file|--num_machines) .*", "skip", "4 machines of 8 GPUs"),
    Rule(r"(export MASTER_ADDR=|srun ).*", "skip", "a SLURM cluster"),
    Rule(r"mkdir -p ~/\.cache/stylegan-train && curl .*|curl .*", "skip",
         "downloads the Inception weights from a URL (no network here)"),
    Rule(r"torchrun --nproc-per-node 8 tools/metrics\.py \.\.\.", "skip",
         "'...' stands for the options of the line above; 8 processes: tests/test_metrics_distributed.py"),
    Rule(r"python tools/metrics\.py --network \S+ (--data data )?--metrics fid50k_full,kid50k_full,pr50k3_full,is50k",
         "run", "no Inception weights here, and 50k images take hours on a CPU: the weight-free features, 64 images",
         add=("--features", "random", "--num-gen", "64")),
    Rule(r"python tools/metrics\.py .* --num-gen 2000 --features random", "run", "2000 images: 64",
         replace=(("--num-gen 2000", "--num-gen 64"),)),
    Rule(r"python tools/metrics\.py --network stylegan3-snapshot\.safetensors --metrics eqt50k_int,eqt50k_frac,eqr50k",
         "parse", "a trained StyleGAN3 snapshot (none here); tests/test_metrics_equivariance.py runs these metrics on "
         "small StyleGAN3 networks through the same CLI"),
    Rule(r"python tools/metrics\.py --network \$NET --data data --metrics fid10k_full --noise-mode random", "run",
         "no Inception weights here: the weight-free features, 64 images", add=("--features", "random", "--num-gen", "64")),
    Rule(r"python tools/generate\.py --network \$NET --seeds 0-9999 .*", "run", "10,000 images: 64",
         replace=(("0-9999", "0-63"),)),
    Rule(r"fidelity .*", "skip", "needs the Inception weights file (a 91 MB download; none here)"),
    Rule(r"python tools/video\.py .*--frames 30 .*", "run", "30 frames per keyframe: 2",
         replace=(("--frames 30", "--frames 2"),)),
    Rule(r"python bench/\S+\.py.*", "parse",
         "a benchmark: minutes of timing (tests/test_bench_scripts.py runs the smallest cases)"),
    Rule(r"(PYTHON=\S+ )?bench/gpu_check\.sh.*", "skip",
         "a GPU machine (tests/test_bench_scripts.py checks it on a CPU: unknown stages, a tests stage that ran nothing)"),
    Rule(r"python -m ops build .*", "skip", "compiles the CUDA kernels: nvcc and minutes"),
    Rule(r"accelerate launch training/train\.py --data /shards/paintings256 .*", "parse",
         "a dataset at /shards and a 25,000-kimg run's snapshot (not here)"),
]

# The scripts whose click command a "parse" rule checks: module and command object.
CLIS = {"training/train.py": "training.train", "tools/": "tools.", "bench/": "bench."}


# ----- reading the docs --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Block:
    doc: str
    line: int
    lang: str
    text: str

    @property
    def id(self) -> str:
        return f"{self.doc}:{self.line}"


def doc_blocks() -> list[Block]:
    """The ```bash and ```python blocks of the docs, indented ones (in lists) included."""
    found = []
    fence = re.compile(r"^([ \t]*)```(\w*)[ \t]*\n(.*?)^\1```[ \t]*$", re.M | re.S)
    for path in DOCS:
        text = path.read_text()
        for m in fence.finditer(text):
            lang = m.group(2).lower()
            if lang in ("bash", "sh", "shell", "python", "py"):
                body = textwrap.dedent(m.group(3))
                found.append(Block(path.relative_to(ROOT).as_posix(), text[: m.start()].count("\n") + 1,
                                   "python" if lang.startswith("py") else "bash", body))
    return found


def strip_comment(line: str) -> str:
    """The line without a trailing ``# comment`` (a ``#`` outside quotes, after a space or first)."""
    quote = None
    for i, ch in enumerate(line):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip()
    return line.rstrip()


def bash_commands(text: str) -> list[str]:
    """The commands of a bash block: continuation lines joined, comments removed, spaces collapsed."""
    joined = re.sub(r"\\\n", " ", text)
    out = []
    for line in joined.splitlines():
        command = " ".join(strip_comment(line).split())
        if command:
            out.append(command)
    return out


def rule_for(command: str) -> Rule | None:
    rules = [r for r in TABLE if re.fullmatch(r.pattern, command)]
    assert len(rules) <= 1, f"{command!r} matches {len(rules)} rows of TABLE: {[r.pattern for r in rules]}"
    return rules[0] if rules else None


def rewritten(command: str, rule: Rule | None) -> str:
    if rule is None:
        return command
    for old, new in rule.replace:
        assert old in command, (command, old)
        command = command.replace(old, new)
    return " ".join([command, *rule.add])


BLOCKS = doc_blocks()


def test_every_table_row_matches_a_documented_command():
    commands = [c for b in BLOCKS if b.lang == "bash" for c in bash_commands(b.text)]
    assert len(BLOCKS) > 20 and len(commands) > 40  # the extraction found the docs' blocks
    for rule in TABLE:
        assert any(re.fullmatch(rule.pattern, c) for c in commands), f"TABLE row matches no command: {rule.pattern}"
        assert rule.reason


# ----- the workspace: a checkout after the demo run ----------------------------------------------------


def _env(ws: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ACCELERATE_", "STYLEGAN_"))}
    env.update(PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}", HOME=str(ws / "home"),
               PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    return env


def _checkout(ws: Path, name: str) -> Path:
    """A folder that looks like the checkout: the repository's folders linked, the shared runs/ and
    the inputs the docs name (photos.zip, ffhq.zip, NVIDIA pickles)."""
    d = ws / "blocks" / name
    d.mkdir(parents=True)
    for item in LINKED:
        (d / item).symlink_to(ROOT / item)
    for item in (ws / "inputs").iterdir():
        (d / item.name).symlink_to(item)
    return d


def _image_zip(path: Path, folders: tuple[str, ...]) -> None:
    """A zip of 64x64 photos (one sub-folder per class when ``folders`` has names)."""
    rng = np.random.default_rng(0)
    with zipfile.ZipFile(path, "w") as zf:
        for k, folder in enumerate(folders):
            for i in range(3):
                img = Image.fromarray(rng.integers(0, 256, (64, 80, 3), dtype=np.uint8))
                tmp = path.with_suffix(f".{k}{i}.png")
                img.save(tmp)
                zf.write(tmp, f"{folder}/{i}.png" if folder else f"{k}{i}.png")
                tmp.unlink()


def _demo(ws: Path) -> None:
    """The README's demo command (shortened), in a checkout folder whose runs/ is the shared one."""
    demo = [r for r in TABLE if r.action == "demo"]
    assert len(demo) == 1
    command = rewritten(demo[0].pattern.replace("\\", ""), demo[0])
    done = subprocess.run(["bash", "-c", command], cwd=_checkout(ws, "demo"), env=_env(ws), capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, f"{command}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    run = ws / DEMO_RUN
    assert (run / "samples" / "fakes000000.png").is_file() and (run / "state").is_dir(), sorted(run.iterdir())
    # The documented name is the one the full demo writes: 64 kimg (the preset) in the loop's naming.
    from stylegan.presets import preset_recipe
    from training.run_outputs import kimg_label

    train = json.loads((run / "config.json").read_text())["train"]
    label = kimg_label(int(preset_recipe("tiny").kimg * 1000), SimpleNamespace(tick=train["tick"], snap=train["snap"]))
    assert f"network-snapshot-{label}.safetensors" == Path(DEMO_NET).name
    shutil.copy(run / "network-snapshot-000000.safetensors", ws / DEMO_NET)


def _inputs(ws: Path) -> None:
    for name in ("home", "runs", "blocks"):
        (ws / name).mkdir()
    inputs = ws / "inputs"
    inputs.mkdir()
    (inputs / "runs").symlink_to(ws / "runs")
    _image_zip(inputs / "photos.zip", ("cats", "dogs"))
    _image_zip(inputs / "ffhq.zip", ("",))
    pickles = {"network-snapshot-001000.pkl": "sg2-cond-rgb32.pkl", "ffhq.pkl": "sg2-uncond-gray64-fp16.pkl",
               "stylegan3-r-afhqv2-512x512.pkl": "sg3-r-uncond-gray32.pkl"}
    for name, fixture in pickles.items():
        if (fixtures_dir() / fixture).is_file():
            (inputs / name).symlink_to(fixtures_dir() / fixture)


def _script(block: Block) -> str | None:
    """The bash script a block runs (its commands after TABLE), or ``None`` when nothing runs."""
    lines = []
    for command in bash_commands(block.text):
        rule = rule_for(command)
        if rule is not None and rule.action in ("skip", "demo", "parse"):
            continue
        run = rewritten(command, rule)
        lines += [f"echo {shlex.quote('>>> ' + run)} >&2", run]
    return "set -euo pipefail\n" + "\n".join(lines) + "\n" if lines else None


def _missing(block: Block, ws: Path) -> str | None:
    for name in ("network-snapshot-001000.pkl", "ffhq.pkl", "stylegan3-r-afhqv2-512x512.pkl"):
        if name in block.text and not (ws / "inputs" / name).exists():
            return f"{block.id} uses {name}: the NVIDIA test vectors are not here ({fixtures_dir()})"
    return None


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory) -> dict[str, subprocess.CompletedProcess | str | None]:
    """Every block run in its own checkout folder, several at once (each is mostly one process that
    waits for Python and torch to start): block id -> the finished process, a reason it could not
    run (a string), or ``None`` (nothing of it runs here). Blocks that read runs/ wait for the demo."""
    ws = tmp_path_factory.mktemp("docs")
    _inputs(ws)
    jobs: list[tuple[Block, list[str]]] = []
    results: dict[str, subprocess.CompletedProcess | str | None] = {}
    for block in BLOCKS:
        argv = [sys.executable, "-c", block.text] if block.lang == "python" else None
        if block.lang == "bash":
            script = _script(block)
            argv = None if script is None else ["bash", "-c", script]
        results[block.id] = _missing(block, ws) if argv is not None else None
        if argv is not None and results[block.id] is None:
            jobs.append((block, argv))
    jobs.sort(key=lambda job: "runs/" in job[0].text or "--resume" in job[0].text)  # independent ones first

    workers = max(2, min(8, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 2))
    with ThreadPoolExecutor(workers) as pool:
        demo = pool.submit(_demo, ws)

        def run(block: Block, argv: list[str]) -> subprocess.CompletedProcess | str:
            if "runs/" in block.text or "--resume" in block.text:
                try:
                    demo.result()
                except Exception as err:  # reported by every block that needs it
                    return f"the demo run failed: {err}"
            d = _checkout(ws, block.id.replace("/", "_").replace(":", "_"))
            return subprocess.run(argv, cwd=d, env=_env(ws), capture_output=True, text=True, timeout=600)

        futures = {block.id: pool.submit(run, block, argv) for block, argv in jobs}
        demo.result()
        results.update({k: f.result() for k, f in futures.items()})
    return results


# ----- the tests -------------------------------------------------------------------------------------------


def _parse(command: str) -> None:
    """The arguments of ``command`` through its tool's click parser, without running it."""
    words = shlex.split(command)
    script = next((w for w in words if w.endswith(".py") and w.startswith(("training/", "tools/", "bench/"))), None)
    assert script is not None, f"{command!r}: no script of ours to parse; mark it 'skip' instead"
    args = words[words.index(script) + 1 :]
    assert not any("$" in a or a == "..." for a in args), f"{command!r}: placeholders; mark it 'skip' instead"
    module = importlib.import_module(script.removesuffix(".py").replace("/", "."))
    with module.main.make_context(script, args) as ctx:  # parses, converts and checks every option
        assert ctx.params is not None


def _check(block: Block, outcome: subprocess.CompletedProcess | str | None) -> None:
    if isinstance(outcome, str):
        pytest.skip(outcome) if "test vectors" in outcome else pytest.fail(outcome)
    if outcome is not None:
        assert outcome.returncode == 0, (
            f"{block.id} failed:\n{block.text}\n--- stdout\n{outcome.stdout[-3000:]}\n--- stderr\n{outcome.stderr[-4000:]}"
        )


@pytest.mark.e2e
@pytest.mark.parametrize("block", [b for b in BLOCKS if b.lang == "bash"], ids=lambda b: b.id)
def test_bash_block_runs_as_documented(block: Block, outcomes):
    for command in bash_commands(block.text):
        rule = rule_for(command)
        if rule is not None and rule.action == "parse":
            _parse(command)
    _check(block, outcomes[block.id])


@pytest.mark.e2e
@pytest.mark.parametrize("block", [b for b in BLOCKS if b.lang == "python"], ids=lambda b: b.id)
def test_python_block_runs_as_documented(block: Block, outcomes):
    _check(block, outcomes[block.id])
