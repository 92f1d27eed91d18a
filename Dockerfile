# StyleGAN2 training with the fused CUDA ops built ahead of time.
#
#   docker build -t stylegan-train .
#   docker run --gpus all --rm -v "$PWD/runs:/runs" stylegan-train training/train.py --outdir /runs
#   docker run --gpus all --rm --ipc=host -v "$PWD/runs:/runs" -v /data:/data stylegan-train \
#       --multi_gpu --num_processes 8 training/train.py --data /data/shards --outdir /runs
#
# The entry point is `accelerate launch`; its own options (--multi_gpu, --num_processes, and for a
# cluster --num_machines, --machine_rank, --main_process_ip, --main_process_port) come before the
# script. See README ("Docker") and docs/cuda_ops.md.
#
# The CUDA toolkit of the base image must match the CUDA of the torch wheels (TORCH_INDEX): the
# ops are compiled by this nvcc and run with torch's CUDA runtime. CUDA 12.x still compiles for
# sm_70 (V100); CUDA 13 dropped it, so with a CUDA 13 base remove 7.0 from TORCH_CUDA_ARCH_LIST.
ARG CUDA_IMAGE=nvidia/cuda:12.8.1-devel-ubuntu24.04
FROM ${CUDA_IMAGE}

ARG TORCH_INDEX=https://download.pytorch.org/whl/cu128
# V100, T4, A100, A10/RTX 30xx, L4/L40/RTX 40xx, H100/H200 as machine code; PTX of the newest for
# GPUs after it (compiled by the driver at first use).
ARG TORCH_CUDA_ARCH_LIST="7.0;7.5;8.0;8.6;8.9;9.0+PTX"

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    STYLEGAN_OPS_CACHE=/opt/stylegan-ops-cache

RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv python3-dev g++ git \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv "$VIRTUAL_ENV" \
    && pip install --upgrade pip \
    && pip install torch --index-url "$TORCH_INDEX" \
    && pip install ninja

WORKDIR /opt/stylegan
COPY . .
RUN pip install -e .

# The same script CI runs (.ci/compile_cuda_ops.sh): print the toolchain, build both extensions.
RUN .ci/build_cuda_ops.sh "$TORCH_CUDA_ARCH_LIST"

# A non-root user owns the ops cache (a GPU the list does not cover gets a build at first use)
# and /runs, where training writes.
RUN useradd --create-home --uid 1000 stylegan \
    && mkdir -p /runs \
    && chown -R stylegan:stylegan /runs "$STYLEGAN_OPS_CACHE"
USER stylegan

ENTRYPOINT ["accelerate", "launch"]
CMD ["training/train.py", "--outdir", "/runs"]
