#!/usr/bin/env bash
# CI without a GPU: compile both CUDA extensions for one architecture (sm_90) in a separate
# environment with a CUDA build of PyTorch, then run the kernels' CPU emulation and the loader
# tests there. Fails when an extension does not compile or a test fails. Needs nvcc, a C++
# compiler and network access to the package index; takes a few minutes on 2 cores.
#
#   .ci/compile_cuda_ops.sh            # STYLEGAN_OPS_CI_ARCHS="8.0;9.0" for more architectures
set -euo pipefail
cd "$(dirname "$0")/.."

archs="${STYLEGAN_OPS_CI_ARCHS:-9.0}"
venv=.ci/venv-cuda
rm -rf "$venv"
python3 -m venv "$venv"
# shellcheck disable=SC1091
. "$venv/bin/activate"
python -m pip install --upgrade pip >/dev/null

# pip's default torch wheel on Linux is a CUDA build; what the ops need besides it is light.
pip install torch ninja click pytest numpy
pip install --no-deps -e .
python -c 'import sys, torch; print("torch", torch.__version__, "CUDA", torch.version.cuda); sys.exit(torch.version.cuda is None)' \
    || { echo "pip installed a CPU-only torch; the compile check needs a CUDA build" >&2; exit 1; }

# A fresh cache, so that the compilers really run.
STYLEGAN_OPS_CACHE="$(mktemp -d)"
export STYLEGAN_OPS_CACHE
trap 'rm -rf "$STYLEGAN_OPS_CACHE"' EXIT

.ci/build_cuda_ops.sh "$archs" --emulation
STYLEGAN_OPS_REQUIRE_EMULATION=1 python -m pytest -q tests/test_ops_emulated.py tests/test_ops_loader.py
