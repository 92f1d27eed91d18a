"""Compile one extension with ``torch.utils.cpp_extension.load`` (ninja), then load it once.

Run by :func:`ops._build.compile_in_subprocess` as ``python _compile_worker.py '<json request>'``
in a child process whose environment carries ``CUDA_HOME`` and a ``PATH`` with ninja, so that the
parent's environment is never changed. Loading the result here checks that it links (undefined
symbols show up now, with the compiler's output, rather than in the training process). This file
imports only torch, so it runs without the project on ``sys.path``.
"""

from __future__ import annotations

import json
import sys


def main(argv: list[str]) -> int:
    request = json.loads(argv[1])
    from torch.utils.cpp_extension import load

    load(
        name=request["name"],
        sources=request["sources"],
        extra_cflags=request["cflags"],
        extra_cuda_cflags=request["cuda_cflags"],
        build_directory=request["build_dir"],
        verbose=request["verbose"],
        with_cuda=request["cuda"],
        is_python_module=False,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
