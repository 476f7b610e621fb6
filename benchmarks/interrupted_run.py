"""Check that a pipeline run killed with SIGKILL and resumed ends with the same results as an uninterrupted run.

The property (issue 22): after `kill -9` mid-run, `snakemake --unlock` plus `snakemake --rerun-incomplete`
finishes with every set, table and image byte-identical to an uninterrupted run, timing columns aside.

What it does:

1. Copies the workflow (Snakefile, config.yaml, rules/, scripts/, report/, profiles/, models/ with the committed
   world weights, presets/, envs/) twice into a scratch folder, A and B, and the package source (src/) once
   beside them, which both runs import through PYTHONPATH: a snapshot, so edits to the checkout while the
   check runs reach neither run. (Running the checkout's Snakefile with `--directory` would work too: rules
   find their scripts relative to the rule files, config.yaml and models/ relative to the working directory;
   copies are used because they freeze the code for both runs and behave as a user's own clone does.)
2. Runs `snakemake --cores N` to the end in A.
3. Starts the same run in B in a new process group and sends SIGKILL to the whole group (Snakemake and every
   job it started; then to any other process still working in B's folder) once --kill-after is reached: by
   default when B has drawn half as many invariant sets (results/set_jobs/*/*/summary.parquet) as A made. Counting
   sets, not seconds, puts the kill inside the set stage on any machine (a fixed time is before the first set on
   a slow one and after the last on a fast one), where jobs are cut off mid-set and Snakemake's lock and
   incomplete markers are left behind; with two or more cores another job is nearly always running. Then
   `snakemake --unlock` and `snakemake --cores N --rerun-incomplete` finish B, and a dry run must find nothing
   left to do.
4. Compares every file under results/ of A and B and lists every difference:
   - Parquet tables: equal values, dtypes and columns after dropping timing columns (TIMING_COLUMNS and any
     column whose name contains "second");
   - the sampler tables and the Markdown report (STRIPPED_FILES): equal text after removing the table columns
     whose heading contains "second" and the durations in its prose ("... in 50 s", TIMING_PROSE);
   - JSON files: equal values once every key containing "second" is dropped, at any depth (a global direction's
     search.json records its search time);
   - PDFs: bytes equal once matplotlib's /CreationDate and /ModDate entries are removed;
   - skipped (SKIPPED_FILES: timing measured, drawn or embedded): Snakemake's benchmark files
     (results/benchmarks/), the sampler-comparison figure (it plots seconds per accepted member) and the HTML
     report (it embeds that figure and the set table's seconds); their data and every other figure are compared
     through the files above;
   - everything else (PNG, NPY, JSON, TXT, ...): byte-identical;
   - files present in one run only.
   It also checks that neither run left an atomic-write temporary file (a dot file beside its target, see
   preimage.utils.io.atomic_path) and that every set folder has its summary.parquet, which write_set writes last.

Prints PASS or FAIL with every problem and exits 0 or 1.

A full default run takes 7-20 minutes on 2 cores and this check makes two, so for a quick check pass a small
overlay, for example (keys as in docs/configuration.md; the world and training sections must stay as they are,
or the committed models no longer match and would be retrained):

    # tiny.yaml: 1 source per class, 8 members per set, 64 reference samples
    sets: {members: 8, sources: {per_class: 1}}
    reference: {members: 64}

    python benchmarks/interrupted_run.py --configfile tiny.yaml
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# What a run needs of the checkout, copied into each working directory (missing optional ones are left out).
WORKFLOW = ("Snakefile", "config.yaml", "rules", "scripts", "report", "profiles", "models", "presets", "envs")
PACKAGE = "src"  # copied once beside the two working directories and put on PYTHONPATH
COPY_IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", ".snakemake", "results", "logs")

# Columns that hold wall-clock time (set summaries and members, the sampler table); any other column whose name
# contains TIMING_WORD is dropped too.
TIMING_COLUMNS = ("seconds", "accepted_per_second", "seconds_per_accepted")
TIMING_WORD = "second"
# Paths under results/ whose content shows timing and that are compared with the timing columns of their tables
# removed, and those that are not compared at all (files, or folders ending in "/"; they must exist in both runs).
STRIPPED_FILES = ("figures/samplers.md", "figures/samplers.tex", "report/summary.md")
SKIPPED_FILES = {
    "benchmarks/": "Snakemake's benchmark files: each job's wall and CPU time and memory",
    "figures/samplers.png": "plots seconds per accepted member",
    "figures/samplers.pdf": "plots seconds per accepted member",
    "report/index.html": "embeds the sampler figure and the sets' seconds",
}
TIMING_PROSE = re.compile(r"\bin \d+(?:\.\d+)? s\b")  # a duration in the report's prose: "found ... in 50 s"
LATEX_RULE = re.compile(r"^\s*\\(toprule|midrule|bottomrule|hline|cline)")
PDF_DATES = re.compile(rb"/(CreationDate|ModDate) *\([^)]*\)")
SNAKEMAKE_FILES = {".snakemake_timestamp"}  # Snakemake marks each directory() output with one: not compared
SET_SUMMARY = "summary.parquet"  # preimage.engine.set_files.SUMMARY_FILE: written last, it marks a set complete
# preimage.utils.io.atomic_path writes to mkstemp(prefix=f".{name}.", suffix=<name's suffix>) beside the target.
TEMPORARY = re.compile(r"^\.(?P<target>.+)\.[a-z0-9_]{8}(\.[^.]*)?$")


# --- comparison -----------------------------------------------------------------------------------------------------


def is_timing_column(name: object) -> bool:
    return str(name) in TIMING_COLUMNS or TIMING_WORD in str(name).lower()


def temporary_files(results: Path) -> list[Path]:
    """Dot files under `results` but Snakemake's own: what an atomic write leaves when its process dies between
    creating its temporary file and renaming it."""
    return sorted(path for path in results.rglob(".*") if path.is_file() and path.name not in SNAKEMAKE_FILES)


def result_files(results: Path) -> set[str]:
    """Every file under `results` but temporaries, relative to it."""
    return {path.relative_to(results).as_posix() for path in results.rglob("*")
            if path.is_file() and not any(part.startswith(".") for part in path.relative_to(results).parts)}


def incomplete_sets(results: Path) -> list[str]:
    """Set folders without a summary, under results/sets and in the set jobs' folders, relative to `results`."""
    folders = [*results.glob("sets/*"), *results.glob("set_jobs/*/*")]
    return sorted(folder.relative_to(results).as_posix() for folder in folders
                  if folder.is_dir() and not (folder / SET_SUMMARY).is_file())


def strip_table_timing(text: str) -> str:
    """`text` with every Markdown (`|` cells) or LaTeX (`&` cells) table column whose heading names seconds
    removed; a table is a run of consecutive row lines, its first line the heading."""
    out, drop, separator = [], None, None
    for line in text.splitlines():
        if LATEX_RULE.match(line) and separator == "&":  # \midrule between a LaTeX heading and its rows
            out.append(line)
            continue
        marker = "|" if line.lstrip().startswith("|") else "&" if " & " in line else None
        if marker is None:
            drop = separator = None
            out.append(line)
            continue
        if marker != separator:  # a new table: this line is its heading
            separator = marker
            drop = {i for i, cell in enumerate(split_row(line, marker)) if TIMING_WORD in cell.lower()}
        out.append(join_row([cell for i, cell in enumerate(split_row(line, marker)) if i not in drop], marker))
    return "\n".join(out)


def strip_timing(text: str) -> str:
    """`text` without its tables' timing columns and the durations in its prose."""
    return TIMING_PROSE.sub("in <duration>", strip_table_timing(text))


def without_timing_keys(value: object) -> object:
    """A JSON value with every key naming seconds dropped, at any depth."""
    if isinstance(value, dict):
        return {key: without_timing_keys(item) for key, item in value.items() if not is_timing_column(key)}
    if isinstance(value, list):
        return [without_timing_keys(item) for item in value]
    return value


def split_row(line: str, marker: str) -> list[str]:
    if marker == "|":
        return line.strip().strip("|").split("|")
    return line.strip().removesuffix("\\\\").split("&")


def join_row(cells: list[str], marker: str) -> str:
    return f"|{'|'.join(cells)}|" if marker == "|" else f"{'&'.join(cells)}\\\\"


def compare_parquet(a: Path, b: Path) -> str | None:
    """None if the tables agree once timing columns are dropped, else what differs."""
    import pandas as pd

    tables = []
    for path in (a, b):
        table = pd.read_parquet(path)
        tables.append(table.drop(columns=[c for c in table.columns if is_timing_column(c)]))
    left, right = tables
    if list(left.columns) != list(right.columns):
        return f"columns differ: {list(left.columns)} against {list(right.columns)}"
    try:
        pd.testing.assert_frame_equal(left, right, check_exact=True)
    except AssertionError as error:
        return " ".join(str(error).split())[:400]
    return None


def is_skipped(relative: str) -> bool:
    return any(relative == path or (path.endswith("/") and relative.startswith(path)) for path in SKIPPED_FILES)


def compare_file(relative: str, a: Path, b: Path) -> str | None:
    """None if the file agrees in both runs by its kind's rule, else what differs."""
    if relative in STRIPPED_FILES:
        same = strip_timing(a.read_text()) == strip_timing(b.read_text())
        return None if same else "text differs outside the timing columns"
    if a.suffix == ".json":
        same = without_timing_keys(json.loads(a.read_text())) == without_timing_keys(json.loads(b.read_text()))
        return None if same else "values differ outside the timing keys"
    if a.suffix == ".parquet":
        return compare_parquet(a, b)
    if a.suffix == ".pdf":
        same = PDF_DATES.sub(b"", a.read_bytes()) == PDF_DATES.sub(b"", b.read_bytes())
        return None if same else "bytes differ (creation dates aside)"
    return None if a.read_bytes() == b.read_bytes() else "bytes differ"


def compare_results(a: Path, b: Path) -> tuple[list[str], int]:
    """Every problem found comparing results folder `b` (the interrupted run) with `a` (the uninterrupted one),
    as lines naming the file, and how many files were compared."""
    problems = []
    for name, results in (("A", a), ("B", b)):
        for path in temporary_files(results):
            what = "atomic-write temporary" if TEMPORARY.match(path.name) else "dot file"
            problems.append(f"{path.relative_to(results)}: leftover {what} in run {name}")
        for folder in incomplete_sets(results):
            problems.append(f"{folder}: set folder without {SET_SUMMARY} in run {name}")
    files_a, files_b = result_files(a), result_files(b)
    problems += [f"{f}: only in the uninterrupted run (A)" for f in sorted(files_a - files_b)]
    problems += [f"{f}: only in the interrupted run (B)" for f in sorted(files_b - files_a)]
    compared = 0
    for relative in sorted(files_a & files_b):
        if is_skipped(relative):
            continue
        compared += 1
        difference = compare_file(relative, a / relative, b / relative)
        if difference:
            problems.append(f"{relative}: {difference}")
    return problems, compared


# --- running ----------------------------------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.start = time.monotonic()

    def say(self, message: str) -> None:
        print(f"[{time.monotonic() - self.start:6.0f} s] {message}", flush=True)


def copy_workflow(source: Path, target: Path) -> None:
    target.mkdir(parents=True)
    for name in WORKFLOW:
        path = source / name
        if path.is_dir():
            shutil.copytree(path, target / name, ignore=COPY_IGNORE)  # copy2: mtimes kept
        elif path.is_file():
            shutil.copy2(path, target / name)
        elif name in ("Snakefile", "config.yaml", "rules", "scripts"):
            raise FileNotFoundError(f"{path} is missing: is {source} a preimage checkout?")


def snakemake_command(cores: int, overlays: Sequence[Path], targets: Sequence[str], *options: str) -> list[str]:
    command = [sys.executable, "-m", "snakemake", "--cores", str(cores), *options]
    if overlays:
        command += ["--configfile", *map(str, overlays)]
    return command + (["--", *targets] if targets else [])


def run_environment(package: Path) -> dict[str, str]:
    python_path = os.pathsep.join(filter(None, [str(package), os.environ.get("PYTHONPATH")]))
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    return {**os.environ, "PYTHONPATH": python_path, "PATH": path}


def run(command: list[str], workdir: Path, env: dict, log: Path) -> int:
    with open(log, "w") as handle:
        return subprocess.run(command, check=False, cwd=workdir, env=env, stdout=handle,
                              stderr=subprocess.STDOUT).returncode


def tail(log: Path, lines: int = 40) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def finished_sets(results: Path) -> int:
    """Sets drawn so far: complete set folders in the set jobs' folders, where each set lands as it is drawn (a
    job's sets are linked to results/sets/ only once the job ends)."""
    return len(list((results / "set_jobs").glob(f"*/*/{SET_SUMMARY}")))


def parse_kill_after(value: str) -> tuple[str, float]:
    """`half`, a number of sets (`12`) or seconds (`90s`)."""
    if value == "half":
        return "half", 0.5
    match = re.fullmatch(r"(\d+(?:\.\d+)?)s", value)
    if match:
        return "seconds", float(match.group(1))
    if value.isdigit() and int(value) > 0:
        return "sets", int(value)
    raise argparse.ArgumentTypeError(f"--kill-after takes `half`, a number of sets or seconds like `90s`, "
                                     f"not {value!r}")


def live_processes() -> dict[int, tuple[int, Path | None]]:
    """Every running (not zombie) process's id -> (process group, working directory) from Linux /proc; empty
    elsewhere. The working directory is None where it cannot be read."""
    found = {}
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()  # after "pid (comm)": state ppid pgrp
            if fields[0] == "Z":
                continue
            try:
                cwd = Path(os.readlink(entry / "cwd"))
            except OSError:
                cwd = None
            found[int(entry.name)] = (int(fields[2]), cwd)
        except (OSError, IndexError, ValueError):
            continue
    return found


def kill_group(pgid: int, workdir: Path, patience: float = 10.0) -> list[str]:
    """SIGKILL process group `pgid`, wait until none of it runs, then SIGKILL any other process still working in
    `workdir` (a job that left the group would go on writing); the command lines of those, if any."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + patience
    while any(group == pgid for group, _ in live_processes().values()) and time.monotonic() < deadline:
        time.sleep(0.1)  # SIGKILL is delivered asynchronously: the group's processes are still exiting
    strays = []
    for pid, (_, cwd) in live_processes().items():
        if cwd is not None and (cwd == workdir or workdir in cwd.parents) and pid != os.getpid():
            try:
                command = (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                os.kill(pid, signal.SIGKILL)
                strays.append(f"{pid}: {command.strip()[:200]}")
            except (OSError, UnicodeDecodeError):
                continue
    return strays


def incomplete_markers(workdir: Path) -> list[str]:
    """The outputs Snakemake marked incomplete (.snakemake/incomplete holds their paths, base64-encoded)."""
    names = []
    for marker in sorted((workdir / ".snakemake" / "incomplete").rglob("*")):
        if marker.is_file():
            try:
                names.append(base64.urlsafe_b64decode(marker.name.encode()).decode())
            except ValueError:
                names.append(marker.name)
    return names


def interrupted_run(command: list[str], workdir: Path, env: dict, log: Path, kill: tuple[str, float],
                    clock: Clock) -> bool:
    """Start `command` in its own process group and SIGKILL the group when `kill` (("seconds" or "sets", amount))
    is reached; False if the run ended first."""
    with open(log, "w") as handle:
        process = subprocess.Popen(command, cwd=workdir, env=env, stdout=handle, stderr=subprocess.STDOUT,
                                   start_new_session=True)  # its own process group: Snakemake and its jobs
        try:
            return watch_and_kill(process, workdir, kill, clock)
        except BaseException:  # Ctrl-C or an error here: the run's group would not see it, so end it too
            kill_group(process.pid, workdir)
            raise


def watch_and_kill(process: subprocess.Popen, workdir: Path, kill: tuple[str, float], clock: Clock) -> bool:
    kind, amount = kill
    results = workdir / "results"
    start = time.monotonic()
    while process.poll() is None:
        if (time.monotonic() - start >= amount) if kind == "seconds" else finished_sets(results) >= amount:
            sets = finished_sets(results)
            strays = kill_group(process.pid, workdir)
            process.wait()
            clock.say(f"B: SIGKILL sent to process group {process.pid} after {time.monotonic() - start:.0f} s, "
                      f"with {sets} sets written")
            for stray in strays:
                clock.say(f"B: a process outside the group was still running there, killed too: {stray}")
            return True
        time.sleep(0.2)
    clock.say(f"B: the run ended (exit {process.returncode}) before --kill-after was reached: nothing interrupted")
    return False


def report_interruption(workdir: Path, clock: Clock) -> None:
    """What the kill left behind: the lock, incomplete markers, partial set folders, temporaries."""
    results = workdir / "results"
    locks = list((workdir / ".snakemake" / "locks").glob("*"))
    markers = incomplete_markers(workdir)
    clock.say(f"B after the kill: {len(locks)} lock file(s), {len(markers)} output(s) marked incomplete"
              + (f" ({', '.join(markers[:6])}{', ...' if len(markers) > 6 else ''})" if markers else ""))
    partial = incomplete_sets(results) if results.is_dir() else []
    temporaries = temporary_files(results) if results.is_dir() else []
    clock.say(f"B after the kill: {len(partial)} set folder(s) without a summary, {len(temporaries)} temporary file(s)"
              + (f": {', '.join(str(p.relative_to(results)) for p in temporaries[:6])}" if temporaries else ""))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cores", type=int, default=2, help="snakemake --cores for every run (default 2)")
    parser.add_argument("--configfile", type=Path, action="append", default=[],
                        help="a config overlay on config.yaml, as snakemake --configfile; repeatable")
    parser.add_argument("--kill-after", type=parse_kill_after, default="half", metavar="half|N|Ts",
                        help="when to kill run B: `half` (default) once it has written half as many invariant sets "
                             "as run A made, N once it has written N sets, `90s` after 90 seconds")
    parser.add_argument("--target", action="append", default=[],
                        help="snakemake target; repeatable (default: the workflow's default target)")
    parser.add_argument("--workdir", type=Path,
                        help="scratch folder (absent or empty; kept); default: a temporary folder")
    parser.add_argument("--keep", action="store_true", help="keep the temporary scratch folder (kept anyway on FAIL)")
    parser.add_argument("--repo", type=Path, default=REPO, help=f"the checkout to copy (default {REPO})")
    args = parser.parse_args(argv)  # argparse passes the string default through parse_kill_after too

    overlays = [path.resolve() for path in args.configfile]
    for path in overlays:
        if not path.is_file():
            parser.error(f"--configfile {path}: no such file")
    if args.workdir:
        scratch = args.workdir.resolve()
        if scratch.exists() and any(scratch.iterdir()):
            parser.error(f"--workdir {scratch} is not empty")
        scratch.mkdir(parents=True, exist_ok=True)
    else:
        scratch = Path(tempfile.mkdtemp(prefix="preimage-interrupted-"))
    clock = Clock()
    target_text = " ".join(args.target) or "the default target"
    print(f"interrupted-run check: {args.repo} -> {scratch}; snakemake --cores {args.cores}, {target_text}"
          + (f", overlays {', '.join(map(str, overlays))}" if overlays else ""), flush=True)

    problems, verdict, finished = [], None, False
    try:
        runs = {name: scratch / name for name in ("A", "B")}
        for workdir in runs.values():
            copy_workflow(args.repo, workdir)
        shutil.copytree(args.repo / PACKAGE, scratch / PACKAGE, ignore=COPY_IGNORE)
        env = run_environment(scratch / PACKAGE)
        clock.say(f"copied the workflow to {runs['A']} and {runs['B']}, the package to {scratch / PACKAGE}")
        full = snakemake_command(args.cores, overlays, args.target)

        clock.say("A: uninterrupted run: " + " ".join(full[1:]))
        if run(full, runs["A"], env, scratch / "A.log") != 0:
            verdict = f"run A failed; the end of {scratch / 'A.log'}:\n{tail(scratch / 'A.log')}"
            return 1
        total = finished_sets(runs["A"] / "results")
        clock.say(f"A: done, {total} invariant sets")

        kind, amount = args.kill_after
        if kind == "half":
            kind, amount = "sets", max(1, int(total * amount))
        if kind == "sets" and amount >= total:
            verdict = f"--kill-after: run A made {total} sets, so waiting for {amount} would never interrupt run B"
            return 1
        clock.say(f"B: the same run, killed with SIGKILL after {amount:g} {kind}")
        if not interrupted_run(full, runs["B"], env, scratch / "B-killed.log", (kind, amount), clock):
            verdict = "run B was never interrupted"
            return 1
        report_interruption(runs["B"], clock)

        unlock = snakemake_command(args.cores, overlays, args.target, "--unlock")
        clock.say("B: " + " ".join(unlock[1:]))
        if run(unlock, runs["B"], env, scratch / "B-unlock.log") != 0:
            verdict = f"snakemake --unlock failed:\n{tail(scratch / 'B-unlock.log')}"
            return 1
        resume = snakemake_command(args.cores, overlays, args.target, "--rerun-incomplete")
        clock.say("B: " + " ".join(resume[1:]))
        if run(resume, runs["B"], env, scratch / "B-resumed.log") != 0:
            log = scratch / "B-resumed.log"
            verdict = f"the resumed run failed; the end of {log}:\n{tail(log)}"
            return 1
        dry = snakemake_command(args.cores, overlays, args.target, "--dry-run")
        run(dry, runs["B"], env, scratch / "B-dry-run.log")
        if "Nothing to be done" not in (scratch / "B-dry-run.log").read_text():
            problems.append(f"a dry run after the resumed run still plans jobs: see {scratch / 'B-dry-run.log'}")
        clock.say("B: resumed run done; comparing results/ of A and B")

        found, compared = compare_results(runs["A"] / "results", runs["B"] / "results")
        problems += found
        skipped = ", ".join(f"{path} ({why})" for path, why in SKIPPED_FILES.items())
        clock.say(f"compared {compared} files (timing columns dropped: {', '.join(TIMING_COLUMNS)} and any "
                  f"'{TIMING_WORD}' column; not compared: {skipped})")
        finished = True
        return 1 if problems else 0
    finally:
        if not (finished or verdict):
            verdict = "the check itself stopped with an error (above)"
        failed = bool(problems or verdict)
        for problem in problems:
            print(f"  - {problem}")
        if verdict:
            print(verdict)
        if not failed:
            outcome = ("the killed and resumed run's results equal the uninterrupted run's (timing aside), "
                       "no temporary file left, every set complete")
        else:
            outcome = f"{len(problems)} problem(s)" if problems else verdict.splitlines()[0]
        print(f"{'FAIL' if failed else 'PASS'}: {outcome} ({time.monotonic() - clock.start:.0f} s)")
        if args.keep or args.workdir or failed:
            print(f"scratch folder kept: {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)

if __name__ == "__main__":
    sys.exit(main())
