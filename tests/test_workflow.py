"""The default workflow's plan, from a Snakemake dry run: which jobs it makes of the configuration."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from preimage.analysis.concepts.groups import concept_groups
from preimage.pipeline.config import load_config
from preimage.pipeline.workflow import set_class, set_ids

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


def _run_in_redirect(tmp_path: Path, raise_line: str) -> tuple[subprocess.CompletedProcess, str]:
    script = tmp_path / "job.py"
    script.write_text("from preimage.pipeline.workflow import redirect_output\n"
                      f"with redirect_output({str(tmp_path / 'job.log')!r}):\n    print('working')\n    {raise_line}\n")
    run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    return run, (tmp_path / "job.log").read_text()


def test_a_job_error_reaches_its_log_as_one_message_and_a_bug_with_its_traceback(tmp_path):
    run, log = _run_in_redirect(tmp_path, "raise ValueError('sets.objectives.neuron: no layer layer9')")
    assert run.returncode == 1 and "Traceback" not in run.stderr + log
    assert run.stderr.strip() == "error: sets.objectives.neuron: no layer layer9"
    assert log.splitlines() == ["working", "error: sets.objectives.neuron: no layer layer9"]
    run, log = _run_in_redirect(tmp_path, "raise RuntimeError('a bug')")
    assert run.returncode == 1 and "Traceback" in run.stderr and "Traceback" in log and "RuntimeError: a bug" in log
