#!/usr/bin/env bash
# SLURM execution check for CI: on a fresh Debian 12 machine, as root, install a single-node SLURM stack
# (slurmctld, slurmd, slurmdbd with MariaDB, munge) and the Snakemake SLURM executor plugin, then run the
# pipeline through profiles/slurm on it (tests/slurm/run.sh).
# Usage: .ci/slurm.sh [PYTHON]   PYTHON: the venv's interpreter (default: .venv/bin/python of this checkout)
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
python=${1:-$repo/.venv/bin/python}

[[ $(id -u) == 0 ]] || { echo ".ci/slurm.sh: must run as root (installs packages, starts daemons)" >&2; exit 1; }
[[ -x $python ]] || { echo ".ci/slurm.sh: no Python at $python; pass the venv's python" >&2; exit 1; }

started=$SECONDS
export DEBIAN_FRONTEND=noninteractive
timeout 300 apt-get update -qq
timeout 300 apt-get install -y -qq --no-install-recommends \
    slurmctld slurmd slurmdbd slurm-client munge mariadb-server >/dev/null
timeout 300 "$python" -m pip install --quiet "snakemake-executor-plugin-slurm>=2,<3"
echo "SLURM setup: $((SECONDS - started)) s"

"$repo/tests/slurm/run.sh" "$python"
