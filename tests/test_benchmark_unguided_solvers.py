"""benchmarks/unguided_solvers.py: unguided draws of the world prior along several chains from the same noise."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "unguided_solvers.py"


def run_script(*arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *arguments], capture_output=True, text=True, cwd=REPO)


def test_every_chain_is_read_by_the_oracle_and_compared_with_the_yardstick() -> None:
    run = run_script("--draws", "6", "--chains", "dpmsolver++:4", "unipc:4", "unipc:4", "ddim:4")
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0].startswith("CPU: ") and "6 draws (seed 5)" in lines[0]
    assert "the yardstick: dpmsolver++ 4 steps" in lines[0]
    assert "shape / fg_colour / bg_colour / texture / tag" in lines[1]
    rows = [line.split() for line in lines[2:]]
    assert [row[:2] for row in rows] == [["dpmsolver++", "4"], ["unipc", "4"], ["unipc", "4"], ["ddim", "4"]]
    assert rows[0][-2] == "100.0"  # the yardstick agrees with itself
    assert rows[1][3:] == rows[2][3:]  # a chain is deterministic: the same draws from the same noise
    for row in rows:
        distances = [float(value) for value in row[4:-2] if value != "/"]
        assert len(distances) == 5 and all(0 <= distance <= 1 for distance in distances)
        assert 0 <= float(row[3]) <= 100 and float(row[2]) > 0


def test_a_chain_that_names_no_solver_is_refused_with_the_allowed_ones() -> None:
    run = run_script("--draws", "2", "--chains", "euler:8")
    assert run.returncode == 2
    assert "'euler:8'" in run.stderr and "dpmsolver++" in run.stderr and "unipc" in run.stderr


def test_acceptance_lists_every_objective_per_chain_with_its_paired_difference() -> None:
    run = run_script("--draws", "4", "--chains", "unipc:3", "unipc:3", "--acceptance")
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("rejection acceptance"))
    assert "each of the run's 12 sources" in lines[start]
    assert lines[start + 1].split() == ["objective", "unipc", "3", "unipc", "3"]
    rows = [line.split() for line in lines[start + 2:]]
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    assert [row[0] for row in rows] == list(config["sets"]["objectives"])
    for row in rows:
        share = float(row[1])
        assert 0 <= share <= 100 and abs(share - round(share * 48 / 100) * 100 / 48) <= 0.051  # of 4 draws x 12 sources
        assert row[2:] == [f"{share:.1f}", "(+0.0", "+-", "0.0)"]  # the same chain: the same draws, no difference
