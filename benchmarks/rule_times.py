"""Where a pipeline run spent its time: the `benchmark:` files Snakemake wrote, summed per rule.

Every rule writes `results/benchmarks/<rule>.tsv` (`<rule>/<wildcards>.tsv` for one job of several) (wall seconds, CPU seconds, peak memory of its job). This
script prints one row per rule (jobs, wall seconds in all and per job, CPU seconds, largest peak RSS) and the
machine's CPU, so a speed change can be traced to the step that moved.

With --timeline it reads a run's Snakemake log instead (the newest under .snakemake/log/ unless named) and prints
when each finished job started and ended, in seconds since the run's first job started (the log's timestamps have
whole seconds), and how many of the cores the jobs kept busy on average: on a machine whose cores are all busy,
only less work shortens the run.

Usage: python benchmarks/rule_times.py [--results results] [--csv rule_times.csv]
       python benchmarks/rule_times.py --timeline [.snakemake/log/<run>.snakemake.log] [--csv timeline.csv]
"""

from __future__ import annotations

import argparse
import os
import re
from datetime import datetime
from pathlib import Path

import pandas as pd

from preimage.utils.devices import device_name

COLUMNS = {"s": "wall_s", "cpu_time": "cpu_s", "max_rss": "max_rss_mb"}
LOG_FOLDER = Path(".snakemake") / "log"
TIMESTAMP = re.compile(r"^\[(\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4})\]$")
JOB_RULE = re.compile(r"^(?:local)?(?:rule|checkpoint) (\w+):$")
JOB_ID = re.compile(r"^\s+jobid: (\d+)$")
FINISHED = re.compile(r"^Finished jobid: (\d+)\b")


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


def machine() -> str:
    """The CPU and its visible cores, which every figure here depends on."""
    return f"CPU: {device_name('cpu')} ({os.cpu_count()} cores visible)"


def newest_log(folder: Path = LOG_FOLDER) -> Path:
    """The most recent Snakemake run log in `folder`."""
    logs = sorted(folder.glob("*.snakemake.log"))
    if not logs:
        raise FileNotFoundError(f"no Snakemake log under {str(folder)!r}: run the pipeline first, or name a log")
    return logs[-1]


def read_timeline(log: Path) -> pd.DataFrame:
    """One row per job that finished in the Snakemake log `log`: its rule, job id, and its start and end in seconds
    since the first job started, earliest first."""
    now, rule, started, rows = None, None, {}, []
    for line in log.read_text().splitlines():
        if match := TIMESTAMP.match(line):
            now = datetime.strptime(match.group(1), "%a %b %d %H:%M:%S %Y")
        elif match := JOB_RULE.match(line):
            rule = match.group(1)
        elif (match := JOB_ID.match(line)) and rule is not None:
            started[match.group(1)] = (rule, now)
            rule = None
        elif (match := FINISHED.match(line)) and match.group(1) in started:
            job_rule, start = started[match.group(1)]
            rows.append({"rule": job_rule, "jobid": int(match.group(1)), "start": start, "end": now})
    if not rows:
        raise ValueError(f"{str(log)!r} records no finished job")
    jobs = pd.DataFrame(rows)
    first = jobs["start"].min()
    for column in ("start", "end"):
        jobs[column] = (jobs[column] - first).dt.total_seconds().astype(int)
    return jobs.sort_values(["start", "end", "jobid"]).reset_index(drop=True)


def busy_cores(jobs: pd.DataFrame) -> float:
    """The cores the jobs kept busy on average over the timeline (a job counts as one core)."""
    span = jobs["end"].max() - jobs["start"].min()
    return float((jobs["end"] - jobs["start"]).sum() / span) if span > 0 else float("nan")


def print_timeline(log: Path, csv: Path | None) -> None:
    """Print the timeline of the run that `log` records, and write it to `csv` if given."""
    jobs = read_timeline(log)
    print(f"{machine()}; log: {log}")
    print(jobs.to_string(index=False))
    print(f"\n{len(jobs)} jobs in {jobs['end'].max()} s; on average {busy_cores(jobs):.2f} of them running")
    if csv:
        jobs.to_csv(csv, index=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=Path("results"), help="the run's results folder")
    parser.add_argument("--timeline", type=Path, nargs="?", const=LOG_FOLDER,
                        help="print each job's start and end from a Snakemake log (default: the newest)")
    parser.add_argument("--csv", type=Path, help="also write the table here")
    args = parser.parse_args()
    if args.timeline is not None:
        print_timeline(args.timeline if args.timeline.is_file() else newest_log(args.timeline), args.csv)
        return
    table = per_rule(read_benchmarks(args.results))
    print(machine())
    print(table.to_string())
    print(f"\nsum of job wall seconds: {table['wall_s'].sum():.0f} (jobs run in parallel: more than the run's wall time)")
    if args.csv:
        table.to_csv(args.csv)


if __name__ == "__main__":
    main()
