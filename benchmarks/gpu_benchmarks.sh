#!/usr/bin/env bash
# The GPU benchmarks in one call, for a machine lent through the `device` tool (see DESIGN.md, "The GPU machine").
# That machine has torch, transformers and torchvision but no diffusers and no sqlite-utils, and no network, so the
# missing packages travel as wheels in .whl/ (git-ignored). Here, from the repository root:
#
#   python -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux2014_x86_64 -d .whl diffusers==0.42.1 transformers==5.24.0 \
#       sqlite-utils==4.2.1 sqlite-fts4==1.0.3 click-default-group==1.2.4 regex==2026.11.19
#
# then run this script there with .whl carried:  bash benchmarks/gpu_benchmarks.sh [SECONDS [STAGE...]]
# (stages: sam sdxl flux2-klein qwen-edit sd15; all by default)
# Each benchmark runs in its own process under a time limit, most wanted first, and is skipped when less time is
# left than it needs, so one slow or broken family cannot cost the others. JSON lines go to $OUT/gpu_benchmarks.jsonl
# (or ./benchmarks/out/ off the device machine), each process's log beside it.
set -u
BUDGET=${1:-540}
STAGES=" ${*:2} "
STARTED=$SECONDS
RESULTS=${OUT:-benchmarks/out}
mkdir -p "$RESULTS"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false

if [ -d .whl ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        || exit 1
    export PYTHONPATH=/tmp/site
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$RESULTS/gpu.txt"
python3 -c "import torch, transformers, diffusers; print('torch', torch.__version__, 'transformers',
transformers.__version__, 'diffusers', diffusers.__version__)" | tee -a "$RESULTS/gpu.txt" || exit 1

# run NAME LIMIT_SECONDS COMMAND...: skipped when fewer than LIMIT seconds are left of the budget
run() {
    local name=$1 limit=$2
    shift 2
    if [ "$STAGES" != "  " ] && [[ "$STAGES" != *" $name "* ]]; then
        return
    fi
    local left=$((BUDGET - (SECONDS - STARTED)))
    if [ "$left" -lt "$limit" ]; then
        echo "{\"skipped\": \"$name\", \"seconds_left\": $left}" | tee -a "$RESULTS/gpu_benchmarks.jsonl"
        return
    fi
    local began=$SECONDS
    timeout "$limit" "$@" 2>"$RESULTS/$name.log" | tee -a "$RESULTS/gpu_benchmarks.jsonl"
    echo "# $name: exit ${PIPESTATUS[0]} after $((SECONDS - began)) s" | tee -a "$RESULTS/$name.log"
}

run sam 100 python3 benchmarks/sam_speed.py --sizes base,large,huge,sam2.1-tiny,sam2.1-small --runs 5 \
    --decoder-runs 10 --device cuda
run sdxl 140 python3 benchmarks/diffusion_speed.py --family sdxl --steps 30,8,4 --batch 3 --device cuda
run flux2-klein 110 python3 benchmarks/diffusion_speed.py --family flux2-klein --steps 4 --batch 3 --device cuda
run qwen-edit 170 python3 benchmarks/diffusion_speed.py --family qwen-edit --steps 4 --batch 3 --device cuda
run sd15 90 python3 benchmarks/diffusion_speed.py --family sd15 --steps 30,4 --batch 3 --device cuda
echo "# all done in $((SECONDS - STARTED)) s"
