"""benchmarks/real_models.py on its tiny architectures, on the CPU: a row per case, with measured figures."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from itertools import product
from pathlib import Path
from types import ModuleType

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "real_models.py"
ARCHS = ["sd15", "sdxl-turbo"]  # classifier-free guidance on an SD-1.5 UNet; SDXL's two encoders and size ids
STEPS = 3


def load_script() -> ModuleType:
    """The script as a module (benchmarks/ is no package); registered first, as its dataclasses look it up."""
    spec = importlib.util.spec_from_file_location("benchmark_real_models", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def markdown_rows(text: str) -> list[dict[str, str]]:
    """The rows of the one Markdown table in `text`, as {heading: cell}."""
    lines = [line for line in text.splitlines() if line.startswith("|")]
    headings, *body = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]
    assert set(body[0]) == {"---"}
    return [dict(zip(headings, cells, strict=True)) for cells in body[1:]]


@pytest.mark.slow
def test_tiny_run_prints_a_measured_row_per_case(capsys, tmp_path) -> None:
    bench = load_script()
    threads = torch.get_num_threads()
    try:
        rows = bench.main(["--tiny", "--device", "cpu", "--members", "2", "--steps", str(STEPS), "--iterations", "1",
                           "--archs", *ARCHS, "--json", str(tmp_path / "bench.json")])
    finally:
        torch.set_num_threads(threads)  # --tiny runs on one thread; leave the session as it was
    out = capsys.readouterr().out

    for field in ("device: cpu", "torch:", "diffusers:", "commit:", "date:"):
        assert f"- {field}" in out
    table = markdown_rows(out)
    cases = set(product(ARCHS, bench.SAMPLERS, bench.OBJECTIVES))
    assert len(table) == len(cases) and {(r["arch"], r["sampler"], r["objective"]) for r in table} == cases
    for row in table:
        assert math.isfinite(float(row["s/member"])) and float(row["s/member"]) > 0
        assert float(row["UNet passes/member"]) > 0
        assert int(row["accepted"]) <= int(row["members"]) == 2

    saved = json.loads((tmp_path / "bench.json").read_text())
    assert saved["cases"] == json.loads(json.dumps(rows))
    assert saved["header"]["weights"].endswith("--tiny architectures")
    for row in rows:
        rows_per_step = 2 if row["cfg_scale"] > 1 else 1  # classifier-free guidance: two UNet rows per step
        if row["sampler"] == "rejection":  # a plain draw is exactly its steps, and nothing is differentiated
            assert row["sampler_steps_per_member"] == STEPS
            assert row["unet_passes_per_member"] == STEPS * rows_per_step
            assert row["vae_backward_s_per_member"] == row["classifier_backward_s_per_member"] == 0
        else:  # both differentiate the decoded image through the classifier
            assert row["vae_backward_s_per_member"] > 0 and row["classifier_backward_s_per_member"] > 0
        if row["sampler"] == "noise_opt":  # ... and noise_opt also through the UNet
            assert row["unet_backward_s_per_member"] > 0
        assert row["other_s_per_member"] > -0.01  # the parts measured never add up to more than the whole
        assert row["finite_fraction"] == 1.0
