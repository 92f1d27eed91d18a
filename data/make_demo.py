"""Rebuild the demo dataset in data/: scikit-learn's 1,797 handwritten digits as 32x32 grayscale shards.

    pip install scikit-learn     # needed by this script only
    python data/make_demo.py

The digits (`sklearn.datasets.load_digits`, a copy of the test part of the UCI "Optical Recognition
of Handwritten Digits" data) are 8x8 images with values 0..16. They are scaled to 0..255, written as
8x8 PNGs in one folder per class, and converted by tools/dataset_tool.py, which upscales them to
32x32 with a bicubic filter and shuffles them (seed 0) across four shards of up to 500 images.
The output is deterministic: rerunning the script reproduces the committed files byte for byte.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
SOURCE_NAME = "sklearn.datasets.load_digits (UCI Optical Recognition of Handwritten Digits, 8x8, upscaled)"


def write_digits(folder: Path) -> int:
    """Write every digit as <folder>/<class>/<index>.png (8x8, uint8); returns the count."""
    from sklearn.datasets import load_digits  # only this script needs scikit-learn

    digits = load_digits()
    images = np.rint(digits.images * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)  # [1797, 8, 8], 0..16 -> 0..255
    for index, (image, label) in enumerate(zip(images, digits.target)):
        out = folder / str(int(label))
        out.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image, "L").save(out / f"{index:04d}.png")
    return len(images)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        count = write_digits(Path(tmp))
        print(f"wrote {count} 8x8 digit images to {tmp}")
        subprocess.run(
            [sys.executable, str(ROOT / "tools" / "dataset_tool.py"), "--source", tmp, "--dest", str(ROOT / "data"),
             "--resolution", "32", "--transform", "resize", "--resize-filter", "bicubic", "--channels", "1",
             "--labels", "folders", "--shard-size", "500", "--seed", "0", "--prefix", "digits",
             "--source-name", SOURCE_NAME, "--overwrite"],
            check=True,
        )


if __name__ == "__main__":
    main()
