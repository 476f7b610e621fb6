"""benchmarks/guided_chains.py: the default run's guided sets along several guided chains from the same seeds."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "guided_chains.py"


def run_script(*arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *arguments], capture_output=True, text=True, cwd=REPO)


def test_each_chain_draws_every_objective_from_the_same_seeds_with_paired_differences() -> None:
    run = run_script("--members", "1", "--objectives", "label", "size_up",
                     "--chains", "{}", '{"approach_steps": null}', "{}")
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0].startswith("CPU: ") and "12 sources x 1 members" in lines[0]
    table = lines[lines.index(next(line for line in lines if line.startswith("guided acceptance"))) + 2:][:2]
    rows = {line.split()[0]: line for line in table}
    assert set(rows) == {"label", "size_up"}
    for row in rows.values():
        assert row.endswith("(+0.0 +- 0.0)")  # config.yaml's chain twice: the same members from the same seeds
    costs = {line.split()[0]: line.split() for line in lines[lines.index("passes per member / CPU s") + 2:]}
    own, schedule, again = (float(costs["label"][i]) for i in (1, 4, 7))
    assert own == again and own < schedule  # one approach step instead of the schedule's four
    assert costs["size_up"][1] == costs["size_up"][4]  # an edit starts inside the guidance interval: no approach


def test_a_chain_that_is_not_a_json_object_or_an_unknown_objective_is_refused() -> None:
    run = run_script("--chains", "[1]")
    assert run.returncode == 2 and "a chain is a JSON object of guided sampler fields, got '[1]'" in run.stderr
    run = run_script("--objectives", "labl", "--chains", "{}")
    assert run.returncode == 2 and "--objectives ['labl'] are not in sets.objectives" in run.stderr
