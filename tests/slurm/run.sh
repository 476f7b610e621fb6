#!/usr/bin/env bash
# Run a small pipeline target through profiles/slurm on a private single-node SLURM and check, from the
# scheduler's own accounting (sacct via slurmdbd and MariaDB), that every Snakemake job ran under SLURM
# with the profile's account and partition, and that only the job asking for a GPU got one.
#
# Usage (as root, packages from .ci/slurm.sh): tests/slurm/run.sh [PYTHON]
#   PYTHON: the interpreter with snakemake and snakemake-executor-plugin-slurm (default: .venv/bin/python)
# Environment: SLURM_TEST_RUN_TIMEOUT (seconds for the Snakemake run, default 240),
#              SLURM_TEST_KEEP_STATE=1 keeps the cluster's state, logs and results for inspection.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
python=${1:-$repo/.venv/bin/python}
run_timeout=${SLURM_TEST_RUN_TIMEOUT:-240}
# One job per world split: the CPU job and the job given a (fake) GPU.
cpu_split=unbiased_test
gpu_split=broken_test

# shellcheck source=tests/slurm/cluster.sh
source "$repo/tests/slurm/cluster.sh"

fail() {
    echo "SLURM test FAILED: $*" >&2
    exit 1
}

[[ -x $python ]] || fail "no Python at $python; pass the venv's python as the first argument"
"$python" -c "import snakemake_executor_plugin_slurm" 2>/dev/null ||
    fail "$python lacks snakemake-executor-plugin-slurm; run .ci/slurm.sh"

state=$(mktemp -d /tmp/preimage-slurm.XXXXXX)
chmod 0755 "$state"
cleanup() {
    slurm_stop
    if [[ ${SLURM_TEST_KEEP_STATE:-0} == 1 ]]; then
        echo "state kept in $state"
    else
        rm -rf "$state"
    fi
}
trap cleanup EXIT

started=$SECONDS
slurm_start "$state/cluster" || fail "SLURM did not start (reason above)"
echo "cluster start: $((SECONDS - started)) s"

# The pipeline runs in a scratch directory, so the repository's results/ and .snakemake/ stay untouched.
work=$state/work
mkdir -p "$work"
log=$state/snakemake.log
export HF_HUB_OFFLINE=1
# Site settings as a user would give them; the test partition is not the cluster's default.
export PREIMAGE_SLURM_ACCOUNT=$SLURM_TEST_ACCOUNT PREIMAGE_SLURM_PARTITION=$SLURM_TEST_PARTITION
started=$SECONDS
status=0
timeout -k 10 "$run_timeout" "$python" -m snakemake \
    --snakefile "$repo/Snakefile" --directory "$work" \
    --configfile "$repo/config.yaml" "$repo/tests/slurm/tiny_world.yaml" \
    --profile "$repo/profiles/slurm" \
    --set-resources "world_data:gpu=int(wildcards.split == '$gpu_split')" \
    --slurm-init-seconds-before-status-checks 2 --slurm-keep-successful-logs \
    --slurm-efficiency-report --slurm-efficiency-report-path "$state/efficiency" \
    --verbose \
    -- "results/world/$cpu_split.parquet" "results/world/$gpu_split.parquet" >"$log" 2>&1 || status=$?
echo "snakemake run: $((SECONDS - started)) s"
if ((status != 0)); then
    tail -n 40 "$log" >&2
    ((status == 124 || status == 137)) && fail "snakemake did not finish within ${run_timeout}s"
    fail "snakemake exited with status $status (SLURM_TEST_KEEP_STATE=1 keeps $log)"
fi

run_id=$(sed -n 's/.*SLURM run ID: \([0-9a-f-]*\).*/\1/p' "$log" | head -n 1)
[[ -n $run_id ]] || fail "no SLURM run ID in the Snakemake log; did the run use the slurm executor?"
snakemake_jobs=$(sed -n 's/^\([0-9]*\) of \1 steps (100%) done$/\1/p' "$log" | tail -n 1)
[[ -n $snakemake_jobs ]] || fail "the Snakemake log does not report all steps done"
grep -q "command=sacct" "$log" || fail "the plugin did not query job states with sacct"
! grep -q "command=squeue" "$log" || fail "the plugin fell back to squeue; the test must exercise sacct"

# The scheduler's own records: one line per job of this run (-X: allocations, not steps).
records=$(timeout 30 sacct -X -n -P -S now-1hours --name="$run_id" -o JobID,State,Partition,Account,Comment,AllocTRES) ||
    fail "sacct could not read the accounting records"
echo "sacct records of run $run_id:"
echo "$records"
[[ $(grep -c . <<<"$records") == "$snakemake_jobs" ]] ||
    fail "sacct lists $(grep -c . <<<"$records") jobs of this run, Snakemake ran $snakemake_jobs"
while IFS='|' read -r job_id job_state partition account comment tres; do
    [[ $job_state == COMPLETED ]] || fail "SLURM job $job_id ($comment) ended $job_state"
    [[ $partition == "$SLURM_TEST_PARTITION" ]] || fail "SLURM job $job_id ran in partition '$partition'"
    [[ $account == "$SLURM_TEST_ACCOUNT" ]] || fail "SLURM job $job_id ran under account '$account'"
    case $comment in
        *"wildcards_$gpu_split") [[ $tres == *gres/gpu=1* ]] || fail "the GPU job $job_id got no GPU: $tres" ;;
        *"wildcards_$cpu_split") [[ $tres != *gres/gpu* ]] || fail "the CPU job $job_id got a GPU: $tres" ;;
        *) fail "SLURM job $job_id has an unexpected comment '$comment'" ;;
    esac
done <<<"$records"

# Inside the allocation SLURM exposes the GPU it granted; the jobstep logs the job's environment.
slurm_logs=$work/.snakemake/slurm_logs/rule_world_data
grep -qF "'CUDA_VISIBLE_DEVICES': '0'" "$slurm_logs/$gpu_split"/*.log ||
    fail "CUDA_VISIBLE_DEVICES is not set in the GPU job"
! grep -qF "CUDA_VISIBLE_DEVICES" "$slurm_logs/$cpu_split"/*.log ||
    fail "CUDA_VISIBLE_DEVICES is set in the CPU job"

compgen -G "$state/efficiency/*.csv" >/dev/null || fail "no efficiency report from the accounting records"
"$python" - "$work" "$cpu_split" "$gpu_split" <<'EOF' || fail "the jobs' outputs are not the tiny world's splits"
import sys
from pathlib import Path

import pandas as pd

work, *splits = sys.argv[1:]
for split in splits:
    rows = len(pd.read_parquet(Path(work, "results", "world", f"{split}.parquet")))
    assert rows == 16, f"{split}: {rows} rows, expected 16"
EOF
echo "SLURM test passed: $snakemake_jobs Snakemake jobs ran as SLURM jobs of run $run_id"
