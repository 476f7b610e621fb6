"""The package's lazy imports: every listed name resolves, and light modules stay light."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGES = ("preimage", "preimage.analysis.concepts", "preimage.analysis.report", "preimage.engine.models",
            "preimage.engine.objectives", "preimage.engine.priors", "preimage.engine.samplers")
HEAVY = ("diffusers", "timm", "open_clip", "lpips", "sklearn", "matplotlib")


@pytest.mark.parametrize("package", PACKAGES)
def test_every_name_a_package_lists_resolves(package):
    module = importlib.import_module(package)
    missing = [name for name in module.__all__ if getattr(module, name, None) is None]
    assert not missing, f"{package} lists {missing} but they do not import"


def imported_heavy_libraries(statement: str) -> list[str]:
    """Which heavy libraries a fresh interpreter has loaded after `statement`."""
    code = f"{statement}\nimport sys\nprint(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    return run.stdout.split()


def test_workflow_glue_and_a_single_loader_import_only_what_they_need():
    # every Snakemake job imports preimage.pipeline.workflow; each library here costs a job a second or more
    assert imported_heavy_libraries("import preimage.pipeline.workflow") == []
    assert imported_heavy_libraries("import preimage.pipeline.layout") == []  # read when the workflow is planned
    clip = set(imported_heavy_libraries("from preimage.engine.models import load_clip"))  # open_clip imports timm
    assert "open_clip" in clip and not clip & {"diffusers", "lpips", "sklearn", "matplotlib"}


def test_the_first_job_and_the_groups_checkpoint_import_no_torch():
    """The pool waits for the source selection and every concept job for the groups checkpoint: both are on the
    run's critical path, and torch with timm costs them seconds of imports for a second of work."""
    code = ("import sys\nfrom preimage.pipeline.config import load_config\nfrom preimage.pipeline.models import "
            "classifier_label_names\nimport preimage.pipeline.steps.sources\n"
            "assert classifier_label_names(load_config('config.yaml')) == ['circle', 'square', 'triangle', 'cross']\n"
            "print(' '.join(m for m in ('torch', 'timm') if m in sys.modules))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         cwd=Path(__file__).resolve().parents[1])
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == []
