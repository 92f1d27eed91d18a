"""One training process whose disk is full when it writes a network snapshot (as rank 0 sees a full
or read-only run folder while the others write nothing), started by ``tests/group_launcher.py``.

``python tests/full_disk_worker.py TRAIN_ARGS...``: on the process with ``RANK=0``, safetensors'
writer fails as it does on a full disk; then the ordinary ``training/train.py`` entry point runs.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import stylegan.netfile  # noqa: E402
from safetensors import SafetensorError  # noqa: E402
from training.train import main  # noqa: E402


def _full_disk(tensors, path, metadata=None):
    raise SafetensorError(f'Error while serializing: I/O error: No space left on device (os error 28) at path "{path}"')


if os.environ.get("RANK") == "0":
    stylegan.netfile.save_file = _full_disk

if __name__ == "__main__":
    main(prog_name="train.py")
