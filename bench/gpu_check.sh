#!/usr/bin/env bash
# Everything the project checks and measures on a GPU, in one command: the toolchain report and
# build (`python -m ops doctor`), the CUDA-vs-reference tests (`pytest -m gpu`), the op benchmark
# and the training benchmark with the fused kernels and with the reference. Run it on a new GPU
# machine, a new driver or a new torch, and after changing ops/csrc/.
#
#   bench/gpu_check.sh                       # all stages, logs in gpu-check-<date>/
#   bench/gpu_check.sh OUT_DIR tests ops     # only these stages (doctor tests ops compile train speedups)
#   bench/gpu_check.sh OUT_DIR filtered_lrelu # StyleGAN3's op alone: its GPU tests and benchmark
#
# Each stage writes OUT_DIR/<stage>.log; OUT_DIR/summary.md lists every stage with its exit code
# and duration, and the tables to copy into docs/benchmarks.md. Exit code: the number of stages
# that failed. Runs from a checkout without installing (PYTHONPATH), with the python on PATH or
# $PYTHON; it needs the project's dependencies and a CUDA build of torch. On one H100 the whole
# run is planned to take 10-20 minutes, most of it the `compile` stage; run the stages in separate
# calls where one call has a time limit.
set -uo pipefail
cd "$(dirname "$0")/.."

out="${1:-gpu-check-$(date +%Y%m%d-%H%M%S)}"
shift || true
stages=("$@")
[ ${#stages[@]} -eq 0 ] && stages=(doctor tests ops compile train speedups)
py="${PYTHON:-python3}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
mkdir -p "$out"
summary="$out/summary.md"

stage_doctor() {
    nvidia-smi || true
    "$py" -c 'import torch; print("torch", torch.__version__, "CUDA", torch.version.cuda, "GPUs", torch.cuda.device_count())'
    "$py" -m ops doctor
}

stage_tests() {
    # The GPU tests live in one module, so a missing optional package elsewhere cannot stop them.
    # Without CUDA every one of them is skipped and pytest exits 0: a stage that ran nothing fails.
    local output rc
    output=$("$py" -m pytest -m gpu -q -p no:cacheprovider -rfEs tests/test_ops_cuda.py 2>&1)
    rc=$?
    echo "$output"
    if ! grep -Eq '[0-9]+ (passed|failed|errors?)' <<<"$output"; then
        echo "tests: FAILED: no GPU test ran (all skipped or none collected; is CUDA visible to torch? see doctor)"
        return 1
    fi
    return $rc
}

stage_filtered_lrelu() {
    # Not in the default list (tests and ops cover it): the one stage to run when only StyleGAN3's
    # op is at stake: its GPU tests, then ref vs fused vs torch.compile of ref at StyleGAN3-T's
    # layer shapes (36 .. 532 px, 2x up and down, 12-tap filters).
    local output rc status=0
    output=$("$py" -m pytest -m gpu -q -p no:cacheprovider -rfEs tests/test_ops_cuda.py -k filtered_lrelu 2>&1)
    rc=$?
    echo "$output"
    if ! grep -Eq '[0-9]+ (passed|failed|errors?)' <<<"$output"; then
        echo "filtered_lrelu: FAILED: no GPU test ran (is CUDA visible to torch? see doctor)"
        rc=1
    fi
    [ $rc -eq 0 ] || status=1
    "$py" bench/ops.py --device cuda --full --ops filtered_lrelu --dtypes fp32,fp16 --impls ref,cuda,compile || status=1
    return $status
}

stage_ops() {
    "$py" bench/ops.py --device cuda --full --dtypes fp32,fp16,bf16 --impls ref,cuda
}

stage_compile() {
    # torch.compile of the reference, on its own: about a hundred compilations (every op, shape
    # and direction), which take minutes, not the timings.
    "$py" bench/ops.py --device cuda --full --dtypes fp16 --impls compile
}

stage_train() {
    # 256x256 (paper256, batch 32) and 1024x1024 (config-f, batch 4: the paper's 32 over 8 GPUs),
    # fused kernels vs reference, in the precisions the presets train in.
    local status=0
    "$py" bench/train.py --device cuda --preset paper256 --channels 3 --classes 0 --batch 32 \
        --precision fp32 --precision fp16 --ops cuda --ops ref --processes 1 --no-append || status=1
    "$py" bench/train.py --device cuda --preset stylegan2 --channels 3 --classes 0 --batch 4 \
        --precision fp16 --ops cuda --ops ref --processes 1 --no-append || status=1
    return $status
}

stage_speedups() {
    # train.py's --memory-format and --compile (training/speedups.py) at 256x256 in fp16 with the fused
    # kernels: which layout `auto` should pick on CUDA, and whether --compile pays (warm-up column).
    "$py" bench/train.py --device cuda --preset paper256 --channels 3 --classes 0 --batch 32 \
        --precision fp16 --ops cuda --processes 1 --memory-format contiguous --memory-format channels-last \
        --compile off --compile on --no-append
}

for stage in "${stages[@]}"; do
    if ! declare -F "stage_$stage" >/dev/null; then
        echo "unknown stage '$stage': expected some of doctor, tests, ops, compile, train, speedups, filtered_lrelu" >&2
        exit 64
    fi
done
{
    echo "# bench/gpu_check.sh, $(date '+%Y-%m-%d %H:%M')"
    echo
    echo "| stage | exit | seconds |"
    echo "|---|---|---|"
} > "$summary"
failed=0
for stage in "${stages[@]}"; do
    echo "=== $stage (log: $out/$stage.log)"
    start=$(date +%s)
    "stage_$stage" > "$out/$stage.log" 2>&1
    rc=$?
    tail -n 5 "$out/$stage.log"
    echo "| $stage | $rc | $(( $(date +%s) - start )) |" >> "$summary"
    [ $rc -eq 0 ] || failed=$((failed + 1))
done
# The result tables, ready for docs/benchmarks.md.
for stage in ops compile filtered_lrelu train speedups; do
    if [ -f "$out/$stage.log" ]; then
        { echo; echo "## $stage"; echo; grep -E '^(\||#)' "$out/$stage.log"; } >> "$summary"
    fi
done
cat "$summary"
exit $failed
