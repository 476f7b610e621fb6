#!/usr/bin/env bash
# The project's GPU checks in one command, for a machine with a CUDA GPU (CI has none; docs/benchmarks.md#gpu):
#
#   bash benchmarks/gpu_checks.sh OUTDIR [SECONDS]
#
# 1. the engine's CUDA tests (tests/test_cuda.py);
# 2. the world's latent path on the GPU: acceptance and time per member in UNet, VAE decoder and classifier
#    (benchmarks/latent_world.py);
# 3. the default pipeline on the GPU, in a scratch copy of the workflow so that nothing is cached: wall time, job
#    seconds per rule, the report's scores ("--resources gpu=4": the world's models are small enough for four jobs
#    to share one GPU);
# 4. beside it, the samplers on the real architectures, one process per architecture with random weights (benchmarks/real_models.py): per-member
#    seconds, peak memory and where the time goes. Steps 3 and 4 share the machine, so both timings are upper bounds.
# Every step is capped so that the whole ends within SECONDS (default 540); each writes its log to OUTDIR.
# PYTHON names the interpreter (default python3); it must import preimage, snakemake and the project's dependencies.
set -u
OUT_DIR=$(mkdir -p "$1" && cd "$1" && pwd)
DEADLINE=$(( $(date +%s) + ${2:-540} ))
PYTHON=${PYTHON:-python3}
REPO=$(cd "$(dirname "$0")/.." && pwd)
CORES=$(nproc)
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1

seconds_left() { echo $(( DEADLINE - $(date +%s) )); }

# step NAME CAP COMMAND...: run COMMAND for at most CAP seconds (less if the deadline is nearer), log to NAME.log
step() {
    local name=$1 cap=$2 left
    shift 2
    left=$(seconds_left)
    (( left < cap )) && cap=$left
    if (( cap < 20 )); then echo "== $name: skipped, ${cap} s left" | tee -a "$OUT_DIR/steps.txt"; return; fi
    local start=$SECONDS
    timeout -k 10 "$cap" "$@" >"$OUT_DIR/$name.log" 2>&1
    echo "== $name: exit $? after $(( SECONDS - start )) s (cap $cap s)" | tee -a "$OUT_DIR/steps.txt"
}

cd "$REPO"
{
    date -u
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
    grep -m1 "model name" /proc/cpuinfo
    echo "cores: $CORES"
    git rev-parse HEAD 2>/dev/null || echo "commit: not a git checkout"
    "$PYTHON" -c "import sys, torch, diffusers, transformers, timm, open_clip, pandas, numpy, snakemake
print('python', sys.version.split()[0], '| torch', torch.__version__, torch.version.cuda, '| diffusers', diffusers.__version__,
      '| transformers', transformers.__version__, '| timm', timm.__version__, '| open_clip', open_clip.__version__,
      '| pandas', pandas.__version__, '| numpy', numpy.__version__, '| snakemake', snakemake.__version__)"
} >"$OUT_DIR/machine.txt" 2>&1
cat "$OUT_DIR/machine.txt"

step cuda_tests 120 "$PYTHON" -m pytest -q -p no:cacheprovider tests/test_cuda.py
# the world's 32-px latent model is launch-bound on a GPU: 32 members of every case took over 90 s on an H200
step latent_world 120 "$PYTHON" benchmarks/latent_world.py --members 8

WORKDIR=$(mktemp -d)
cp -r Snakefile config.yaml rules scripts report profiles models presets envs "$WORKDIR"/
(
    cd "$WORKDIR" && step default_run 360 "$PYTHON" -m snakemake --cores $(( CORES * 3 / 4 )) --resources gpu=4 \
        --scheduler greedy
    "$PYTHON" "$REPO/benchmarks/rule_times.py" --results results >"$OUT_DIR/default_run_rules.txt" 2>&1
    "$PYTHON" -c "import pandas; print(pandas.read_parquet('results/report/evaluation.parquet').to_markdown(index=False))" \
        >"$OUT_DIR/default_run_evaluation.md" 2>&1
    cp results/report/summary.md "$OUT_DIR/default_run_summary.md" 2>/dev/null
) &
DEFAULT_RUN=$!
for arch in sdxl-turbo sd-turbo sd15; do  # one process each: a capped architecture loses only its own rows
    step "real_models_$arch" 150 "$PYTHON" benchmarks/real_models.py --device cuda --threads $(( CORES / 4 )) \
        --archs "$arch" --json "$OUT_DIR/real_models_$arch.json"
done
wait $DEFAULT_RUN
nvidia-smi >"$OUT_DIR/nvidia-smi.txt" 2>&1
echo "== done, $(seconds_left) s before the deadline"
