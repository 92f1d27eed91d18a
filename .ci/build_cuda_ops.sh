#!/usr/bin/env bash
# Build the fused CUDA ops ahead of time, for the given GPU architectures, into the ops cache
# ($STYLEGAN_OPS_CACHE, default ~/.cache/stylegan_ops). Run by the Dockerfile and by
# .ci/compile_cuda_ops.sh, in an environment that has a CUDA build of PyTorch, ninja and nvcc.
# No GPU is needed. Fails when either extension does not compile.
#
#   .ci/build_cuda_ops.sh "8.0;8.6;9.0"      # default: $TORCH_CUDA_ARCH_LIST, else 9.0
set -euo pipefail
cd "$(dirname "$0")/.."

archs="${1:-${TORCH_CUDA_ARCH_LIST:-9.0}}"
shift || true

# The toolchain as the ops see it (versions, where nvcc/ninja/c++ are). Exit code 1 only means
# "no GPU here", which is expected while building an image or in CI.
python -m ops doctor --no-build || true

start=$(date +%s)
python -m ops build --arch "$archs" "$@"
echo "built the CUDA ops for $archs in $(( $(date +%s) - start )) s"
