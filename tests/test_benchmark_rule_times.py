"""benchmarks/rule_times.py: Snakemake's per-job benchmark files summed per rule, and a run's timeline from its log."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "rule_times.py"
HEADER = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"


def write_benchmark(path: Path, wall: float, cpu: float, rss: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(HEADER + f"{wall}\t0:00:01\t{rss}\t1\t1\t1\t0\t0\t50\t{cpu}\n")


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("rule_times", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_jobs_are_summed_per_rule_slowest_first(tmp_path):
    bench = tmp_path / "results" / "benchmarks"
    write_benchmark(bench / "invariant_sets" / "a__label.tsv", 30.0, 25.0, 900.0)
    write_benchmark(bench / "invariant_sets" / "b__label.tsv", 10.0, 9.0, 800.0)
    write_benchmark(bench / "concepts" / "group" / "square.tsv", 5.0, 4.0, 1200.0)
    module = load_script()
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


SNAKEMAKE_LOG = """Building DAG of jobs...
Job stats:
job      count
[Sun Dec  6 06:29:14 2026]
localrule world_data:
    output: results/world/a.parquet
    jobid: 3
    wildcards: split=a
[Sun Dec  6 06:29:14 2026]
rule select_sources:
    output: results/sources.parquet
    jobid: 2
[Sun Dec  6 06:29:16 2026]
Finished jobid: 3 (Rule: world_data)
1 of 4 steps (25%) done
[Sun Dec  6 06:29:17 2026]
Finished jobid: 2 (Rule: select_sources)
[Sun Dec  6 06:29:17 2026]
rule invariant_sets:
    output: results/sets/s__label__guided/summary.parquet
    jobid: 1
[Sun Dec  6 06:29:19 2026]
rule report_html:
    jobid: 4
[Sun Dec  6 06:29:20 2026]
Error in rule report_html:
[Sun Dec  6 06:29:21 2026]
Finished jobid: 1 (Rule: invariant_sets)
"""


def test_the_timeline_lists_finished_jobs_from_the_first_start(tmp_path):
    log = tmp_path / "run.snakemake.log"
    log.write_text(SNAKEMAKE_LOG)
    module = load_script()
    jobs = module.read_timeline(log)
    assert jobs.to_dict("records") == [  # the failed report_html job never finished
        {"rule": "world_data", "jobid": 3, "start": 0, "end": 2},
        {"rule": "select_sources", "jobid": 2, "start": 0, "end": 3},
        {"rule": "invariant_sets", "jobid": 1, "start": 3, "end": 7},
    ]
    assert module.busy_cores(jobs) == pytest.approx(9 / 7)
    run = subprocess.run([sys.executable, str(SCRIPT), "--timeline", str(log), "--csv", str(tmp_path / "t.csv")],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and "3 jobs in 7 s; on average 1.29 of them running" in run.stdout, run.stderr
    assert (tmp_path / "t.csv").read_text().splitlines()[0] == "rule,jobid,start,end"


def test_the_timeline_names_a_log_without_finished_jobs_and_a_missing_log_folder(tmp_path):
    log = tmp_path / "run.snakemake.log"
    log.write_text("Building DAG of jobs...\n")
    module = load_script()
    with pytest.raises(ValueError, match="records no finished job"):
        module.read_timeline(log)
    with pytest.raises(FileNotFoundError, match="no Snakemake log under"):
        module.newest_log(tmp_path / "missing")
