"""benchmarks/rule_times.py: Snakemake's per-job benchmark files summed per rule."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "rule_times.py"
HEADER = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"


def write_benchmark(path: Path, wall: float, cpu: float, rss: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(HEADER + f"{wall}\t0:00:01\t{rss}\t1\t1\t1\t0\t0\t50\t{cpu}\n")


def test_jobs_are_summed_per_rule_slowest_first(tmp_path):
    bench = tmp_path / "results" / "benchmarks"
    write_benchmark(bench / "invariant_sets" / "a__label.tsv", 30.0, 25.0, 900.0)
    write_benchmark(bench / "invariant_sets" / "b__label.tsv", 10.0, 9.0, 800.0)
    write_benchmark(bench / "concepts" / "group" / "square.tsv", 5.0, 4.0, 1200.0)
    spec = importlib.util.spec_from_file_location("rule_times", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    table = module.per_rule(module.read_benchmarks(tmp_path / "results"))
    assert list(table.index) == ["invariant_sets", "concepts"]
    assert table.loc["invariant_sets"].to_dict() == pytest.approx(
        {"jobs": 2, "wall_s": 40.0, "cpu_s": 34.0, "max_rss_mb": 900.0, "wall_s_per_job": 20.0})
    run = subprocess.run([sys.executable, str(SCRIPT), "--results", str(tmp_path / "results")], capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0 and "CPU:" in run.stdout and "invariant_sets" in run.stdout, run.stderr


def test_a_run_without_benchmarks_is_named(tmp_path):
    run = subprocess.run([sys.executable, str(SCRIPT), "--results", str(tmp_path)], capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 1 and "no benchmark files under" in run.stderr
