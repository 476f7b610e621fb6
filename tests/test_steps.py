"""The pipeline's steps: the Snakemake scripts only unpack a job into one step of `preimage.pipeline.steps`,
and a step is a plain function of paths and settings that a notebook or a test can call."""

from __future__ import annotations

import ast
import importlib
import inspect
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from preimage.pipeline.steps.concepts import collect_spurious
from preimage.pipeline.steps.set_links import link_sets
from preimage.pipeline.steps.training import train_world_model
from preimage.pipeline.steps.world import write_ground_truth, write_world_split
from preimage.world.generator import WorldSpec, ground_truth, make_split

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = sorted((REPO / "scripts").glob("*.py"))
STEP_MODULES = ("concepts", "report", "set_links", "sets", "sources", "training", "world")


def _preimage_imports(path: Path) -> list[tuple[str, list[str]]]:
    """(module, names) of every preimage import of a file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "preimage":
            found.append((node.module, [alias.name for alias in node.names]))
        elif isinstance(node, ast.Import):
            found += [(alias.name, []) for alias in node.names if alias.name.split(".")[0] == "preimage"]
    return found


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda path: path.name)
def test_a_script_imports_only_the_pipeline_and_runs_one_step(script):
    imports = _preimage_imports(script)
    assert imports and all(module.startswith("preimage.pipeline") for module, _ in imports), imports
    steps = [(module, names) for module, names in imports if module.startswith("preimage.pipeline.steps.")]
    assert len(steps) == 1 and len(steps[0][1]) == 1, steps
    module, (name,) = steps[0]
    step = getattr(importlib.import_module(module), name)
    assert "snakemake" not in inspect.signature(step).parameters and inspect.getdoc(step)


def test_step_modules_leave_the_heavy_libraries_to_the_steps_that_need_them():
    """Every Snakemake job is a new process: importing a step module costs no model or plotting library."""
    heavy = ("diffusers", "timm", "open_clip", "lpips", "sklearn", "matplotlib", "transformers")
    code = ("import sys\n"
            + "".join(f"import preimage.pipeline.steps.{name}\n" for name in STEP_MODULES)
            + f"print(sorted(m for m in {heavy!r} if m in sys.modules))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]"


def test_the_figure_and_report_steps_import_no_torch():
    """The figure jobs (groups, run, directions, interventions) and the report start in about a second: their step
    module needs neither torch nor a model."""
    code = "import sys\nimport preimage.pipeline.steps.report\nprint('torch' in sys.modules)"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and run.stdout.strip() == "False", run.stdout + run.stderr


def test_linking_a_sources_sets_imports_no_array_library():
    """A link job (one per source) starts in a fraction of a second."""
    code = ("import sys\nimport preimage.pipeline.steps.set_links\n"
            "print(sorted(m for m in ('numpy', 'pandas', 'torch') if m in sys.modules))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and run.stdout.strip() == "[]", run.stdout + run.stderr


def write_set_files(folder: Path, members: int) -> None:
    (folder / "members").mkdir(parents=True)
    for i in range(members):
        (folder / "members" / f"{i:03d}.png").write_bytes(bytes([i]))
    (folder / "members.parquet").write_bytes(b"members")
    (folder / "summary.parquet").write_bytes(b"summary")


def test_a_sources_sets_are_hard_linked_from_its_jobs_folder_replacing_an_older_set(tmp_path):
    job, out = tmp_path / "set_jobs" / "a", tmp_path / "sets"
    for set_id in ("a__label__guided", "a__label__rejection", "b__label__guided"):
        write_set_files(job / set_id, members=2)
    write_set_files(out / "a__label__guided", members=5)  # an earlier run's set with more members
    placed = link_sets(job, [out / "a__label__guided" / "summary.parquet", out / "a__label__rejection" / "summary.parquet"])
    assert placed == [out / "a__label__guided", out / "a__label__rejection"]
    assert not (out / "b__label__guided").exists()  # another source's set: its own link job places it
    for folder in placed:
        files = sorted(path.relative_to(folder).as_posix() for path in folder.rglob("*") if path.is_file())
        assert files == ["members.parquet", "members/000.png", "members/001.png", "summary.parquet"]
        for name in files:
            linked, drawn = (folder / name).stat(), (job / folder.name / name).stat()
            assert (linked.st_ino, linked.st_dev) == (drawn.st_ino, drawn.st_dev)  # one file on disk
    # dated after the job's folder was marked done, so Snakemake sees the links as newer than their input
    assert (out / "a__label__guided" / "summary.parquet").stat().st_mtime >= (job / "b__label__guided").stat().st_mtime


def test_linking_a_set_the_job_did_not_finish_names_the_job_folder_and_set(tmp_path):
    job = tmp_path / "set_jobs" / "a"
    write_set_files(job / "a__label__guided", members=1)
    (job / "a__label__guided" / "summary.parquet").unlink()
    with pytest.raises(FileNotFoundError, match=r"set_jobs/a: the set job wrote no complete set 'a__label__guided'"):
        link_sets(job, [tmp_path / "sets" / "a__label__guided" / "summary.parquet"])


def test_world_steps_write_what_the_generator_makes(tiny_world, tmp_path):
    table, images, preview = tmp_path / "t.parquet", tmp_path / "i.npy", tmp_path / "p.png"
    write_world_split(tiny_world, "classifier_test", table, images, preview)
    expected_table, expected_images = make_split(WorldSpec.from_config(tiny_world), "classifier_test")
    pd.testing.assert_frame_equal(pd.read_parquet(table), expected_table)
    assert np.array_equal(np.load(images), expected_images) and preview.stat().st_size > 0
    write_ground_truth(tiny_world, tmp_path / "truth.parquet")
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "truth.parquet"),
                                  ground_truth(WorldSpec.from_config(tiny_world)))


def test_collect_spurious_keeps_the_order_of_its_inputs(tmp_path):
    paths = []
    for i in range(3):
        paths.append(tmp_path / f"{i}.parquet")
        pd.DataFrame({"group": [f"g{i}"] * 2, "value": [i, i + 0.5], "flagged": False}).to_parquet(paths[-1])
    unread = tmp_path / "absent.parquet"  # without mirrors, embeddings and the reference are not read
    stacked = collect_spurious(paths, unread, [], unread, unread, unread, {}, {"mirrors": False},
                               tmp_path / "all.parquet")
    assert list(pd.read_parquet(tmp_path / "all.parquet")["group"]) == ["g0", "g0", "g1", "g1", "g2", "g2"]
    assert list(stacked.index) == list(range(6)) and (stacked["mirror_of"] == "").all()


def test_an_unknown_world_model_is_a_clear_error(tiny_world, tmp_path):
    expected = (r"unknown world model 'prior'; expected one of \['classifier', 'oracle', 'clip', 'robust', "
                r"'regressor'\]")
    with pytest.raises(ValueError, match=expected):
        train_world_model("prior", tiny_world, {}, "cpu", tmp_path / "metrics.json", 1)
