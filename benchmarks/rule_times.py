"""Where a pipeline run spent its time: the `benchmark:` files Snakemake wrote, summed per rule.

Every rule writes `results/benchmarks/<rule>.tsv` (`<rule>/<wildcards>.tsv` for one job of several) (wall seconds, CPU seconds, peak memory of its job). This
script prints one row per rule (jobs, wall seconds in all and per job, CPU seconds, largest peak RSS) and the
machine's CPU, so a speed change can be traced to the step that moved.

Usage: python benchmarks/rule_times.py [--results results] [--csv rule_times.csv]
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import pandas as pd

from preimage.utils.devices import device_name

COLUMNS = {"s": "wall_s", "cpu_time": "cpu_s", "max_rss": "max_rss_mb"}


def read_benchmarks(results: Path) -> pd.DataFrame:
    """One row per job: its rule (the first folder under results/benchmarks) and Snakemake's measurements."""
    root = results / "benchmarks"
    files = sorted(root.rglob("*.tsv"))
    if not files:
        raise FileNotFoundError(f"no benchmark files under {str(root)!r}: run the pipeline first")
    rows = []
    for path in files:
        table = pd.read_csv(path, sep="\t").rename(columns=COLUMNS)
        rule = path.relative_to(root).parts[0].removesuffix(".tsv")  # <rule>.tsv, or <rule>/<wildcards>.tsv
        rows.append(table.iloc[-1][list(COLUMNS.values())].to_dict() | {"rule": rule})
    return pd.DataFrame(rows)


def per_rule(jobs: pd.DataFrame) -> pd.DataFrame:
    """Jobs, wall and CPU seconds and the largest peak memory per rule, the slowest rule first."""
    summary = jobs.groupby("rule").agg(jobs=("wall_s", "size"), wall_s=("wall_s", "sum"), cpu_s=("cpu_s", "sum"),
                                       max_rss_mb=("max_rss_mb", "max"))
    summary["wall_s_per_job"] = summary["wall_s"] / summary["jobs"]
    return summary.sort_values("wall_s", ascending=False).round(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=Path("results"), help="the run's results folder")
    parser.add_argument("--csv", type=Path, help="also write the table here")
    args = parser.parse_args()
    table = per_rule(read_benchmarks(args.results))
    print(f"CPU: {device_name('cpu')} ({os.cpu_count()} cores visible)")
    print(table.to_string())
    print(f"\nsum of job wall seconds: {table['wall_s'].sum():.0f} (jobs run in parallel: more than the run's wall time)")
    if args.csv:
        table.to_csv(args.csv)


if __name__ == "__main__":
    main()
