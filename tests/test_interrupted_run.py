"""benchmarks/interrupted_run.py: its comparison of two runs' results/ folders on tiny synthetic folders, and its
kill of a process group (no pipeline run)."""

from __future__ import annotations

import argparse
import importlib.util
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from preimage.analysis.report.tables import sampler_table, to_latex, to_markdown

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "interrupted_run.py"
SET = "classifier_test-000001__label__guided"


def load_script() -> ModuleType:
    """The script as a module (benchmarks/ is no package)."""
    spec = importlib.util.spec_from_file_location("benchmark_interrupted_run", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


script = load_script()


def summaries(seconds: float) -> pd.DataFrame:
    return pd.DataFrame({"set_id": [SET, SET.replace("guided", "rejection")], "sampler": ["guided", "rejection"],
                         "members": [8, 8], "accepted": [8, 2], "acceptance_rate": [1.0, 0.25],
                         "diversity": [0.2, 0.3], "mean_lpips_to_source": [0.4, 0.5], "mean_l2_to_source": [1.0, 2.0],
                         "seconds": [seconds, 2 * seconds], "accepted_per_second": [8 / seconds, 1 / seconds]})


def make_results(root: Path, seconds: float = 1.0) -> Path:
    """A results/ folder shaped like a run's: a set, a world split, the sampler tables and figure, a report.
    Everything that shows time is derived from `seconds`."""
    results = root / "results"
    folder = results / "sets" / SET
    (folder / "members").mkdir(parents=True)
    Image.fromarray(np.full((4, 4, 3), 7, np.uint8)).save(folder / "source.png")
    Image.fromarray(np.arange(48, dtype=np.uint8).reshape(4, 4, 3)).save(folder / "members" / "0000.png")
    pd.DataFrame({"image": ["members/0000.png"], "accepted": [True], "loss": [0.5], "seconds": [seconds]}).to_parquet(
        folder / "members.parquet")
    summaries(seconds).iloc[:1].to_parquet(folder / "summary.parquet")
    (results / "world").mkdir()
    np.save(results / "world" / "classifier_test.npy", np.arange(12, dtype=np.uint8))
    (results / "checks").mkdir()
    (results / "checks" / "objectives.json").write_text('{"label": "ok"}\n')
    figures = results / "figures"
    figures.mkdir()
    table = sampler_table(summaries(seconds))
    (figures / "samplers.md").write_text(to_markdown(table))
    (figures / "samplers.tex").write_text(to_latex(table))
    (figures / "samplers.png").write_bytes(f"a plot of {seconds} s".encode())
    (figures / "guidance.pdf").write_bytes(b"%PDF-1.4 /CreationDate (D:2026120" + str(seconds).encode() + b") body")
    (results / "report").mkdir()
    (results / "report" / "index.html").write_text(f"<p>{seconds} s</p>")
    (results / "benchmarks" / "invariant_sets").mkdir(parents=True)  # Snakemake's `benchmark:` files
    (results / "benchmarks" / "invariant_sets" / f"{SET}.tsv").write_text(f"s\tmax_rss\n{seconds}\t512.0\n")
    (results / "report" / "summary.md").write_text(f"# report\n\nFound with 12 calls in {seconds:.0f} s.\n\n"
                                                   f"## Samplers\n\n{to_markdown(table)}")
    (results / "directions").mkdir()
    (results / "directions" / "search.json").write_text(
        f'{{"calls": 12, "search_seconds": {seconds}, "trace": [{{"flip_rate": 0.5, "seconds": {seconds}}}]}}\n')
    return results


@pytest.fixture
def runs(tmp_path) -> tuple[Path, Path]:
    """Results of an uninterrupted (A) and an interrupted (B) run that differ only in timing."""
    return make_results(tmp_path / "A", seconds=1.0), make_results(tmp_path / "B", seconds=3.7)


def test_runs_that_differ_only_in_timing_agree(runs) -> None:
    a, b = runs
    assert (a / "figures" / "samplers.md").read_text() != (b / "figures" / "samplers.md").read_text()
    problems, compared = script.compare_results(a, b)
    assert problems == []
    assert compared == len(script.result_files(a)) - 3  # all but the sampler figure, HTML report and benchmark file


def test_a_changed_png_byte_is_named(runs) -> None:
    a, b = runs
    member = b / "sets" / SET / "members" / "0000.png"
    data = bytearray(member.read_bytes())
    data[-20] ^= 1
    member.write_bytes(bytes(data))
    problems, _ = script.compare_results(a, b)
    assert problems == [f"sets/{SET}/members/0000.png: bytes differ"]


def test_a_changed_value_is_named_but_not_a_changed_time(runs) -> None:
    a, b = runs
    path = b / "sets" / SET / "members.parquet"
    members = pd.read_parquet(path)
    members["seconds"] = 99.0
    members.to_parquet(path)
    assert script.compare_results(a, b)[0] == []
    members["loss"] = 0.5000001
    members.to_parquet(path)
    problems, _ = script.compare_results(a, b)
    assert len(problems) == 1 and problems[0].startswith(f"sets/{SET}/members.parquet: ")


def test_a_changed_value_in_a_stripped_table_is_named(runs) -> None:
    a, b = runs
    path = b / "figures" / "samplers.md"
    path.write_text(path.read_text().replace("0.250", "0.251"))
    assert script.compare_results(a, b)[0] == ["figures/samplers.md: text differs outside the timing columns"]


def test_a_changed_value_in_a_json_file_or_the_reports_prose_is_named(runs) -> None:
    a, b = runs
    search = b / "directions" / "search.json"
    search.write_text(search.read_text().replace('"calls": 12', '"calls": 13'))
    summary = b / "report" / "summary.md"
    summary.write_text(summary.read_text().replace("12 calls", "13 calls"))
    assert script.compare_results(a, b)[0] == ["directions/search.json: values differ outside the timing keys",
                                               "report/summary.md: text differs outside the timing columns"]


def test_a_leftover_temporary_file_fails(runs) -> None:
    a, b = runs
    # what preimage.utils.io.atomic_path leaves when its process is killed before the rename
    (b / "sets" / SET / ".members.parquet.k3x_9a2q.parquet").write_bytes(b"PAR1")
    (b / "figures" / ".snakemake_timestamp").touch()  # Snakemake's own marker in a directory() output: ignored
    problems, _ = script.compare_results(a, b)
    assert problems == [f"sets/{SET}/.members.parquet.k3x_9a2q.parquet: leftover atomic-write temporary in run B"]


def test_an_incomplete_set_and_a_missing_file_fail(runs) -> None:
    a, b = runs
    (b / "sets" / SET / "summary.parquet").unlink()
    problems, _ = script.compare_results(a, b)
    assert problems == [f"sets/{SET}: set folder without summary.parquet in run B",
                        f"sets/{SET}/summary.parquet: only in the uninterrupted run (A)"]


def test_timing_columns_leave_markdown_and_latex_tables() -> None:
    table = sampler_table(summaries(2.0))
    for text in (to_markdown(table), to_latex(table)):
        stripped = script.strip_table_timing(text)
        assert "second" in text and "second" not in stripped
        assert "acceptance" in stripped and "0.250" in stripped and "diversity" in stripped
    assert script.strip_table_timing("no table\n") == "no table"


def test_kill_after_takes_half_a_set_count_or_seconds() -> None:
    assert script.parse_kill_after("half") == ("half", 0.5)
    assert script.parse_kill_after("12") == ("sets", 12)
    assert script.parse_kill_after("90s") == ("seconds", 90.0)
    for bad in ("0", "soon", "-3"):
        with pytest.raises(argparse.ArgumentTypeError):
            script.parse_kill_after(bad)


@pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="reads processes from Linux /proc")
def test_the_kill_ends_the_group_and_any_process_left_working_in_the_folder(tmp_path) -> None:
    group = subprocess.Popen(["sh", "-c", "sleep 60 & sleep 60"], cwd=tmp_path, start_new_session=True)
    stray = subprocess.Popen(["sleep", "61"], cwd=tmp_path, start_new_session=True)  # left the group
    elsewhere = subprocess.Popen(["sleep", "62"], cwd=REPO, start_new_session=True)
    try:
        strays = script.kill_group(group.pid, tmp_path)
        assert group.wait(timeout=10) == -9 and stray.wait(timeout=10) == -9
        assert strays == [f"{stray.pid}: sleep 61"]
        assert not any(pgid == group.pid for pgid, _ in script.live_processes().values())
        assert elsewhere.poll() is None
    finally:
        for process in (group, stray, elsewhere):
            process.kill()
            process.wait()


TOY_SNAKEFILE = """
configfile: "config.yaml"


include: "rules/sets.smk"


rule all:
    default_target: True
    input:
        expand("results/sets/s{i}/summary.parquet", i=range(config["sets"])),
"""
TOY_RULES = """
rule set_job:
    output:
        sets=directory("results/set_jobs/j{j}"),
    script:
        "../scripts/set_job.py"


rule link_sets:
    input:
        sets=lambda wildcards: f"results/set_jobs/j{int(wildcards.i) // 2}",
    output:
        members="results/sets/s{i}/members.parquet",
        summaries=["results/sets/s{i}/summary.parquet"],
    script:
        "../scripts/link_sets.py"
"""
# A set job as the pipeline's: two sets into the job's folder, each its members, then its summary, each atomically,
# with a timing column; it exits a moment after its last write, so the kill (on the second summary) finds that job
# still running, its sets all written but its folder marked incomplete. Each set is then linked to results/sets/ by
# the pipeline's own step.
TOY_SCRIPT = """
import time
from pathlib import Path

import pandas as pd

from preimage.utils.io import write_parquet

start = time.perf_counter()
j = int(Path(snakemake.output.sets).name[1:])
for i in (2 * j, 2 * j + 1):
    folder = Path(snakemake.output.sets) / f"s{i}"
    write_parquet(pd.DataFrame({"member": range(4), "value": [i * 10 + k for k in range(4)]}), folder / "members.parquet")
    time.sleep(0.5)
    write_parquet(pd.DataFrame({"set": [i], "seconds": [time.perf_counter() - start]}), folder / "summary.parquet")
time.sleep(1.5)
"""
TOY_LINK_SCRIPT = """
from preimage.pipeline.steps.set_links import link_sets

link_sets(snakemake.input.sets, snakemake.output.summaries)
"""


@pytest.mark.slow
def test_a_toy_workflow_killed_and_resumed_passes(tmp_path, capsys) -> None:
    """The whole script on a workflow shaped like the pipeline's set stage: two set jobs of two sets each and
    a link job per set (about half a minute)."""
    repo = tmp_path / "repo"
    for name, text in {"Snakefile": TOY_SNAKEFILE, "config.yaml": "sets: 4\n", "rules/sets.smk": TOY_RULES,
                       "scripts/set_job.py": TOY_SCRIPT, "scripts/link_sets.py": TOY_LINK_SCRIPT,
                       "src/README": ""}.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text)
    assert script.main(["--repo", str(repo), "--cores", "1", "--workdir", str(tmp_path / "scratch")]) == 0
    out = capsys.readouterr().out
    assert "B: SIGKILL sent to process group" in out and "with 2 sets written" in out
    assert int(re.search(r"(\d+) output\(s\) marked incomplete", out).group(1)) >= 1  # a set job was cut off
    assert "Forced execution" in (tmp_path / "scratch" / "B-resumed.log").read_text()  # and ran again
    assert any(line.startswith("PASS: ") for line in out.splitlines())
