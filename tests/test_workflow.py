"""The default workflow's plan, from a Snakemake dry run: which jobs it makes of the configuration."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from preimage.concepts.layout import concept_groups
from preimage.config import load_config
from preimage.workflow import set_class, set_ids

REPO = Path(__file__).resolve().parents[1]


def planned_jobs(*targets: str) -> dict[str, int]:
    """Rule name -> number of jobs a dry run of `targets` plans with nothing cached."""
    run = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--nolock", "--forceall", "--cores", "2", *targets],
                         cwd=REPO, capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stdout + run.stderr
    stats = run.stdout.split("Job stats:", 1)[1].split("\n\n", 1)[0]
    return {rule: int(count) for rule, count in re.findall(r"^(\w+)\s+(\d+)$", stats, re.MULTILINE) if rule != "total"}


def test_figures_are_drawn_by_one_job_per_concept_group_and_one_for_the_run():
    config = load_config(REPO / "config.yaml")
    ids = set_ids(config)
    groups = concept_groups(ids, lambda set_id: set_class(config, set_id), config["sets"]["objectives"])
    jobs = planned_jobs("figures")
    assert jobs["invariant_sets"] * len(config["sets"]["samplers"]) == len(ids)
    assert jobs["figures_group"] == jobs["concepts_group"] == len(groups) > 1
    assert jobs["figures_run"] == jobs["figures"] == 1
