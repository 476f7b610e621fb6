"""The package's import contracts: layers with one direction of imports, and Snakemake's files using only the
pipeline glue.

The layers (pyproject.toml, [tool.importlinter]): preimage.pipeline > preimage.world > preimage.analysis >
preimage.engine > preimage.utils; each may import the layers below it, never those above, directly or through
a chain. Snakemake's Snakefile, rules and scripts import only preimage.pipeline.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest
from importlinter import cli

ROOT = Path(__file__).resolve().parents[1]
PREIMAGE_IMPORT = re.compile(r"^\s*(?:from|import)\s+(preimage(?:\.\w+)*)", re.MULTILINE)
WORKFLOW_FILES = [ROOT / "Snakefile", *sorted((ROOT / "rules").glob("*.smk")), *sorted((ROOT / "scripts").glob("*.py"))]


def test_layers_import_one_way(monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    status = cli.lint_imports(config_filename=str(ROOT / "pyproject.toml"), no_cache=True, no_logo=True)
    assert status == cli.EXIT_STATUS_SUCCESS, capsys.readouterr().out


def imported_preimage_modules(path: Path) -> set[str]:
    return set(PREIMAGE_IMPORT.findall(path.read_text()))


def test_workflow_files_import_only_the_pipeline():
    outside = {str(path.relative_to(ROOT)): sorted(module for module in imported_preimage_modules(path)
                                                   if not module.startswith("preimage.pipeline"))
               for path in WORKFLOW_FILES}
    assert {path: modules for path, modules in outside.items() if modules} == {}


def test_the_contract_check_sees_workflow_imports(tmp_path):
    script = tmp_path / "step.py"
    script.write_text("from preimage.pipeline.logs import redirect_output\nfrom preimage.engine.sets import read_set\n")
    assert imported_preimage_modules(script) == {"preimage.pipeline.logs", "preimage.engine.sets"}


@pytest.mark.parametrize("script", sorted(path.name for path in (ROOT / "benchmarks").glob("*.py")))
def test_every_benchmark_script_imports(script):
    """The benchmark scripts are run by hand, not by the workflow: a moved module must not break them silently."""
    spec = importlib.util.spec_from_file_location(f"benchmark_{script[:-3]}", ROOT / "benchmarks" / script)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is created
    spec.loader.exec_module(module)
    assert callable(getattr(module, "main", None)), f"benchmarks/{script} has no main()"
