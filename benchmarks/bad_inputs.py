"""The bad-input table: what a new user's mistakes look like, and whether each message names the key or file.

Each case is an overlay on config.yaml (written to a YAML file passed as `--configfile`), optionally with files made
in a scratch working directory (a broken manifest, a 1x1 PNG, a truncated weights copy, a YAML syntax error...).
For each case, in its own scratch directory (config.yaml copied, models/ linked, or copied where a job reads it):

- `snakemake -n --cores 1 --configfile overlay.yaml` (this repository's Snakefile, `--directory` the scratch
  directory): a failure here is a failure at *parse* time, while the workflow is planned, before any job runs;
- if the dry run passed and the case names a target (the cases that can only fail in a job: a bad layer name, a
  truncated weights file, a corrupt image...; and a few that should fail at parse but may slip through), a real
  run of only that target (e.g. `results/checks/objectives.json`): a failure there is a failure in a *job*.

It records the case, the error message (the job's `error:` line, Snakemake's `<Error> in file ...:` block, else the
last `...Error: ...` line; the scratch directory's path is cut from it, leaving paths as the user wrote them), when
it failed, the exit code and whether the message names every expected key path or file name. It prints a Markdown
table and exits 1 if an error case fails to name its key or file or a control case (expected `ok`) fails; cases
marked as known limitations are listed below the table, not counted. A row whose "fails at" is in bold failed later
than expected (or not at all).

The whole table (50 cases, 3 of them running a job) takes about 3 minutes with `--jobs 2` on two idle cores;
tests/test_bad_inputs.py runs a fast subset.

Usage: python benchmarks/bad_inputs.py [--cases name,...] [--markdown out.md] [--jobs N] [--workdir DIR] [--list]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
PARSE, JOB, OK = "parse", "job", "ok"
DRY_TIMEOUT_S = 180
JOB_TIMEOUT_S = 240
OBJECTIVES_CHECK = "results/checks/objectives.json"  # one check job for every objective
REAL_SOURCES = "results/real/sources.parquet"
REFERENCE = "results/reference/summary.parquet"
BROKEN_PNG_SET = "results/sets/circle.broken.png__label__guided/summary.parquet"  # the first job reading its pixels


@dataclass(frozen=True)
class Case:
    """One bad input: how to make it and what its message must name."""

    name: str
    what: str  # what the user did, in words
    overlay: dict | None = None  # merged onto config.yaml by Snakemake (--configfile overlay.yaml)
    names: tuple[str, ...] = ()  # substrings the error message must contain: the key path or the file name
    expect: str = PARSE  # parse | job | ok (a control case that must pass)
    target: str | None = None  # the target whose job fails, run for real if the dry run passes (a job case, or
    # a parse case that may slip through planning: its row then says it failed later than expected)
    make: Callable[[Path], None] | None = None  # makes files in the scratch working directory
    overlay_text: str | None = None  # the overlay's raw text instead of `overlay` (a YAML syntax error)
    config_text: str | None = None  # replaces the scratch copy of config.yaml
    copy_models: bool = False  # copy models/ (a job reads or a case edits them) instead of linking it
    limitation: str | None = None  # a known limitation: recorded and listed, not counted as a failure
    config_args: tuple[str, ...] = ()  # `--config` entries (key=value) given after the overlay


@dataclass
class Result:
    case: Case
    when: str  # parse | job | none (both runs passed) | timeout
    exit_code: int
    message: str  # the whole error message found ("" when none)
    seconds: float
    output: str = field(repr=False, default="")

    @property
    def named(self) -> bool:
        return bool(self.message) and all(name in self.message for name in self.case.names)

    @property
    def passed(self) -> bool:
        if self.case.expect == OK:
            return self.exit_code == 0
        return self.exit_code != 0 and self.named

    @property
    def counts(self) -> bool:
        """Whether a failure of this case fails the table (known limitations do not)."""
        return not self.passed and self.case.limitation is None


# --- files the cases make ----------------------------------------------------------------------------------------


def png(path: Path, side: int = 32, colour: tuple[int, int, int] = (200, 40, 40)) -> Path:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (side, side), colour).save(path)
    return path


def image_folder(root: Path, classes: Sequence[str] = ("circle", "square"), per_class: int = 2) -> Path:
    """root/<class>/<i>.png, classes named as the world classifier names them."""
    for c, name in enumerate(classes):
        for i in range(per_class):
            png(root / name / f"{i}.png", colour=(40 * c, 200, 40 * i))
    return root


def write_text(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def make_tiny_image(scratch: Path) -> None:
    png(scratch / "images" / "circle" / "tiny.png", side=1)  # the only circle: the pick
    png(scratch / "images" / "square" / "0.png")


def make_symlink_outside(scratch: Path) -> None:
    image_folder(scratch / "images")
    outside = png(scratch / "elsewhere" / "photo.png")
    (scratch / "images" / "circle" / "link.png").symlink_to(os.path.relpath(outside, scratch / "images" / "circle"))


def make_manifest_without_label(scratch: Path) -> None:
    image_folder(scratch / "data")
    write_text(scratch / "data" / "manifest.csv", "path,class\ncircle/0.png,circle\nsquare/0.png,square\n")


def make_manifest_row_outside(scratch: Path) -> None:
    image_folder(scratch / "data")
    png(scratch / "outside.png")
    write_text(scratch / "data" / "manifest.csv", "path,label\ncircle/0.png,circle\n../outside.png,square\n")


def make_manifest_txt(scratch: Path) -> None:
    image_folder(scratch / "data")
    write_text(scratch / "data" / "manifest.txt", "path,label\ncircle/0.png,circle\nsquare/0.png,square\n")


def make_truncated_png(scratch: Path) -> None:
    """A PNG cut short after its header, as an interrupted copy leaves it: its size reads, its pixels do not. It is
    its class's only image, so the pick."""
    png(scratch / "images" / "square" / "0.png")
    broken = scratch / "images" / "circle" / "broken.png"
    data = png(broken, side=64).read_bytes()
    broken.write_bytes(data[: len(data) // 3])


def make_truncated_weights(scratch: Path) -> None:
    weights = next((scratch / "models").glob("*/classifier-*/model.safetensors"))
    weights.write_bytes(weights.read_bytes()[:4096])


def make_fake_prior(scratch: Path) -> None:
    write_text(scratch / "my-prior" / "README.md", "weights to come\n")


def make_classifier_folder_without_config(scratch: Path) -> None:
    write_text(scratch / "my-classifier" / "model.safetensors", "not really weights\n")


FOLDER = {"kind": "folder", "path": "images", "per_class": 1}
MANIFEST = {"kind": "manifest", "path": "data/manifest.csv", "per_class": 1}
BROKEN_CONFIG = (REPO / "config.yaml").read_text().replace("  members: 32\n", "  members: 32\n  seed 0\n", 1)


def sources(**settings) -> dict:
    return {"sets": {"sources": settings}}


CASES = [
    # --- the schema: keys, types, ranges ---
    Case("unknown-top-level-key", "a key no section has", {"colour": "red"}, ("(top level)", "colour")),
    Case("misspelt-section-key", "concepts.clusterz for concepts.clusters", {"concepts": {"clusterz": {"k_max": 4}}},
         ("concepts:", "clusterz")),
    Case("misspelt-nested-key", "world.splits.classifer_test", {"world": {"splits": {"classifer_test": 100}}},
         ("world.splits", "classifer_test")),
    Case("wrong-type", "sets.members: ten", {"sets": {"members": "ten"}}, ("sets.members",)),
    Case("zero-members", "sets.members: 0", {"sets": {"members": 0}}, ("sets.members",)),
    Case("zero-sources-per-job", "sets.sources_per_job: 0", {"sets": {"sources_per_job": 0}}, ("sets.sources_per_job",)),
    Case("negative-reference", "reference.members: -1", {"reference": {"members": -1}}, ("reference.members",)),
    Case("pool-smaller-than-a-set", "a shared rejection pool of 16 draws for sets of 32",
         {"sets": {"rejection_pool": {"kind": "shared", "members": 16}}}, ("sets.rejection_pool.members",)),
    Case("unknown-device", "device: gpu", {"device": "gpu"}, ("device",)),
    Case("shortcut-attribute", "world.shortcuts: attribute colour", {"world": {"shortcuts": [
        {"class": "square", "attribute": "colour", "value": "red", "strength": 0.9}]}}, ("world.shortcuts[0].attribute",)),
    Case("shortcut-value", "world.shortcuts: tag value maybe", {"world": {"shortcuts": [
        {"class": "square", "attribute": "tag", "value": "maybe", "strength": 0.9}]}}, ("world.shortcuts", "maybe")),
    Case("shortcut-class", "world.shortcuts: class hexagon", {"world": {"shortcuts": [
        {"class": "hexagon", "attribute": "tag", "value": "present", "strength": 0.9}]}}, ("world.shortcuts", "hexagon")),
    Case("objective-name-with-__", "an objective named keep__label", {"sets": {"objectives": {
        "keep__label": {"kind": "label"}}}}, ("sets.objectives", "keep__label")),
    Case("template-placeholder", "concepts.prompt_template with {word}", {"concepts": {
        "prompt_template": "a {word} photo of {}."}}, ("concepts.prompt_template",)),
    Case("braces-in-title", "report.title with braces (control: must pass)", {"report": {
        "title": "run {a} of {b}: {}"}}, expect=OK),
    Case("sampler-field-typo", "guidance_scal for guidance_scale", {"sets": {"samplers": {
        "guided": {"kind": "guided", "guidance_scal": 0.1}}}}, ("sets.samplers.guided", "guidance_scal")),
    Case("sampler-out-of-range", "rejection sampler with num_steps: 0", {"sets": {"samplers": {
        "rejection": {"kind": "rejection", "num_steps": 0}}}}, ("sets.samplers.rejection", "num_steps")),
    Case("objective-unknown-kind", "an objective of kind nueron", {"sets": {"objectives": {
        "odd": {"kind": "nueron", "layer": "layer4", "unit": 3}}}}, ("sets.objectives.odd.kind",)),
    Case("objective-field-typo", "lowpass with tolerence", {"sets": {"objectives": {
        "lowpass": {"tolerence": 0.1}}}}, ("sets.objectives.lowpass", "tolerence")),
    Case("neuron-without-layer", "a neuron objective with a unit but no layer", {"sets": {"objectives": {
        "unit7": {"kind": "neuron", "unit": 7}}}}, ("sets.objectives.unit7", "layer")),
    Case("label-target-not-a-class", "a counterfactual to class hexagon", {"sets": {"objectives": {
        "counterfactual": {"target": "hexagon"}}}}, ("sets.objectives.counterfactual.target", "hexagon")),
    Case("label-target-index-out-of-range", "a counterfactual to class index 7 of 4", {"sets": {"objectives": {
        "counterfactual": {"target": 7}}}}, ("sets.objectives.counterfactual.target", "7")),
    Case("bad-layer-name", "a neuron objective on layer4.0.bn3", {"sets": {"objectives": {
        "neuron": {"layer": "layer4.0.bn3"}}}}, ("sets.objectives.neuron.layer", "layer4.0.bn3"),
        expect=JOB, target=OBJECTIVES_CHECK, copy_models=True),
    # --- source images ---
    Case("sources-folder-missing", "sets.sources.path names no folder", sources(**FOLDER | {"path": "my-images"}),
         ("my-images",)),
    Case("sources-folder-without-path", "kind folder, path left out", sources(kind="folder"), ("sets.sources.path",)),
    Case("sources-unknown-class", "sets.sources.classes with hexagon", sources(classes=["circle", "hexagon"]),
         ("sets.sources.classes", "hexagon")),
    Case("sources-too-few-images", "per_class 3 from a folder of 2 per class", sources(**FOLDER | {"per_class": 3}),
         ("per_class",), make=lambda s: image_folder(s / "images")),
    Case("tiny-image", "a 1x1 PNG in the source folder", sources(**FOLDER), ("images/circle/tiny.png",),
         make=make_tiny_image),
    Case("symlink-outside", "a folder's link to a file outside it", sources(**FOLDER), ("circle/link.png",),
         make=make_symlink_outside),
    Case("image-root-missing", "sets.sources.image_root names no folder", sources(**FOLDER | {"image_root": "shared"}),
         ("sets.sources.image_root", "shared"), make=lambda s: image_folder(s / "images")),
    Case("manifest-missing", "a manifest path with no file", sources(**MANIFEST), ("data/manifest.csv",)),
    Case("manifest-not-csv", "a manifest saved as .txt", sources(**MANIFEST | {"path": "data/manifest.txt"}),
         ("data/manifest.txt",), make=make_manifest_txt),
    Case("manifest-without-label", "a manifest with `class` for `label`", sources(**MANIFEST),
         ("data/manifest.csv", "label"), make=make_manifest_without_label),
    Case("manifest-row-outside", "a manifest row ../outside.png", sources(**MANIFEST),
         ("data/manifest.csv", "row 1", "../outside.png"), make=make_manifest_row_outside),
    Case("sources-split-without-world", "concepts.real_split: sources with world sources",
         {"concepts": {"real_split": "sources"}}, ("concepts.", "sets.sources.kind")),
    Case("corrupt-source-png", "a truncated PNG as a source image", sources(**FOLDER), ("images/circle/broken.png",),
         expect=JOB, target=BROKEN_PNG_SET, make=make_truncated_png, copy_models=True),
    Case("real-split-from-folder", "folder sources as concepts.real_split (control: must pass)",
         sources(**FOLDER) | {"concepts": {"real_split": "sources"}}, expect=OK, target=REAL_SOURCES,
         make=lambda s: image_folder(s / "images")),
    # --- models and vocabulary ---
    Case("classifier-folder-missing", "models.classifier.source ./my-classifier, no such folder",
         {"models": {"classifier": {"source": "./my-classifier"}}}, ("models.classifier.source", "my-classifier")),
    Case("classifier-folder-without-config", "a classifier folder without config.json",
         {"models": {"classifier": {"source": "my-classifier"}}}, ("my-classifier", "config.json"),
         target=OBJECTIVES_CHECK, make=make_classifier_folder_without_config, copy_models=True),
    Case("classifier-weights-file-missing", "models.classifier.pretrained_file names no file",
         {"models": {"classifier": {"source": "resnet18", "pretrained_file": "weights/resnet18.safetensors"}}},
         ("models.classifier.pretrained_file", "resnet18.safetensors")),
    Case("prior-not-diffusers", "models.prior.source a folder without model_index.json",
         {"models": {"prior": {"source": "my-prior"}}}, ("models.prior.source", "my-prior", "model_index.json"),
         target=REFERENCE, make=make_fake_prior, copy_models=True),
    Case("prior-hub-id-not-cached", "models.prior.source a Hub id not in the cache",
         {"models": {"prior": {"source": "someone/no-such-model"}}}, ("someone/no-such-model",)),
    Case("vocabulary-file-missing", "concepts.vocabulary names no file", {"concepts": {"vocabulary": "my_words.txt"}},
         ("concepts.vocabulary", "my_words.txt")),
    Case("truncated-classifier-weights", "the world classifier's weights file cut short", {},
         ("model.safetensors",), expect=JOB, target=OBJECTIVES_CHECK, make=make_truncated_weights, copy_models=True),
    # --- YAML ---
    Case("yaml-error-in-config", "config.yaml with `seed 0` for `seed: 0`", {}, ("config.yaml", "line"),
         config_text=BROKEN_CONFIG),
    # --- --config overrides (Snakemake reads a nested value's scalars as strings) ---
    Case("config-override-number", "--config sets='{members: 4}' (control: must pass)", expect=OK,
         config_args=("sets={members: 4}",)),
    Case("config-override-removes-objective", "--config sets='{objectives: {lowpass: null}}' (control: must pass)",
         expect=OK, config_args=("sets={objectives: {lowpass: null}}",)),
    Case("config-override-numeric-title", "--config report='{title: 2024}' (control: must pass)", expect=OK,
         config_args=("report={title: 2024}",)),
    Case("config-override-wrong-type", "--config sets='{members: four}'", names=("--config", "sets.members", "four"),
         config_args=("sets={members: four}",)),
    Case("yaml-error-in-overlay", "an overlay with an unclosed {", names=("overlay.yaml",),
         overlay_text="sets: {members: 4\nreport: {title: x}\n",
         limitation="Snakemake reads --configfile files before the Snakefile runs; its message names no file"),
]


# --- running ------------------------------------------------------------------------------------------------------


def snakemake(scratch: Path, *args: str, config: Sequence[str] = (), timeout: int) -> tuple[int, str]:
    command = [sys.executable, "-m", "snakemake", *args, "--cores", "1", "--snakefile", str(REPO / "Snakefile"),
               "--directory", str(scratch), "--configfile", "overlay.yaml", *(["--config", *config] if config else [])]
    env = os.environ | {"HF_HUB_OFFLINE": "1"}
    try:
        run = subprocess.run(command, cwd=scratch, capture_output=True, text=True, timeout=timeout, env=env,
                             check=False)
    except subprocess.TimeoutExpired as expired:
        text = (expired.stdout or b"").decode() if isinstance(expired.stdout, bytes) else (expired.stdout or "")
        return 124, text + f"\n(timed out after {timeout} s)"
    return run.returncode, run.stdout + run.stderr


def prepare(case: Case, scratch: Path) -> None:
    """The scratch working directory: config.yaml (or the case's), models/, the case's files and overlay."""
    scratch.mkdir(parents=True)
    (scratch / "config.yaml").write_text(case.config_text or (REPO / "config.yaml").read_text())
    if case.copy_models:
        shutil.copytree(REPO / "models", scratch / "models")
    else:
        (scratch / "models").symlink_to(REPO / "models")
    if case.make:
        case.make(scratch)
    text = case.overlay_text if case.overlay_text is not None else yaml.safe_dump(case.overlay or {}, sort_keys=False)
    (scratch / "overlay.yaml").write_text(text)


def run_case(case: Case, workdir: Path) -> Result:
    """Dry run the case; if it passes and the case names a target, run that target for real."""
    started = time.perf_counter()
    scratch = workdir / case.name
    shutil.rmtree(scratch, ignore_errors=True)
    prepare(case, scratch)
    code, output = snakemake(scratch, "-n", "--nolock", config=case.config_args, timeout=DRY_TIMEOUT_S)
    when = PARSE
    if code == 0 and case.target:
        code, output = snakemake(scratch, case.target, config=case.config_args, timeout=JOB_TIMEOUT_S)
        when = JOB
    if code == 124:
        when = "timeout"
    elif code == 0:
        when = "none"
    message = error_message(output) if code else ""
    for folder in {str(scratch), os.path.realpath(scratch)}:  # paths in the working directory, as the user gave them
        message = message.replace(folder + os.sep, "")
    return Result(case, when, code, message, time.perf_counter() - started, output)


BLOCK = re.compile(r'^([A-Za-z_]\w*)(?: in rule \w+)? in file "?[^"]*"?, line \d+:$|^([A-Za-z_]\w*(?:Error|Exception)):$')
BLOCK_END = ('  File "', "Wildcards:", "Traceback:")
EXCEPTION_LINE = re.compile(r"^(?:[\w.]+\.)?\w*(?:Error|Exception): .+")
GENERIC = ("RuleException", "CalledProcessError", "WorkflowError")


def error_message(output: str) -> str:
    """The error message in Snakemake's output: a job's `error: ...` line (redirect_output) and the indented lines
    after it; else the first `<Error> in file ..., line N:` (or `<Error>:`) block that is not about a failed job,
    up to its traceback; else the last `...Error: ...` line."""
    lines = output.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("error: "):
            return "\n".join([line.removeprefix("error: "), *_indented(lines[i + 1:])])
    for i, line in enumerate(lines):
        match = BLOCK.match(line)
        if match and (match.group(1) or match.group(2)) not in GENERIC[:2]:
            body = []
            for following in lines[i + 1:]:
                if following.startswith(BLOCK_END) or not following.strip() or BLOCK.match(following):
                    break
                body.append(following)
            if body and body[0] != "At least one job did not complete successfully.":
                return "\n".join([f"{match.group(1) or match.group(2)}: {body[0]}", *body[1:]])
    found = [line for line in lines if EXCEPTION_LINE.match(line)]
    return found[-1] if found else ""


def _indented(lines: list[str]) -> list[str]:
    body = []
    for line in lines:
        if not line.startswith("  "):
            break
        body.append(line)
    return body


def run_cases(cases: Sequence[Case], jobs: int = 1, workdir: Path | None = None) -> list[Result]:
    """Every case in its own scratch directory under `workdir` (default: a temporary one, removed after)."""
    with tempfile.TemporaryDirectory(prefix="bad-inputs-") as temporary:
        root = Path(workdir or temporary)
        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            return list(pool.map(lambda case: run_case(case, root), cases))


def select(names: str | None) -> list[Case]:
    if not names:
        return list(CASES)
    by_name = {case.name: case for case in CASES}
    unknown = [name for name in names.split(",") if name not in by_name]
    if unknown:
        raise SystemExit(f"--cases: unknown case(s) {unknown}; known: {list(by_name)}")
    return [by_name[name] for name in names.split(",")]


# --- the table ----------------------------------------------------------------------------------------------------


def headline(message: str, width: int = 220) -> str:
    """The message's first line, with the next one where the first only introduces it (ends with ':')."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    if not lines:
        return ""
    text = lines[0] + (f" {lines[1]}" if lines[0].endswith(":") and len(lines) > 1 else "")
    return text if len(text) <= width else text[: width - 1] + "…"


def named_cell(result: Result) -> str:
    if result.case.expect == OK:
        return "n/a (must pass)" + ("" if result.passed else ": FAILED")
    if result.named and result.exit_code:
        return "yes"
    return "no (known limitation)" if result.case.limitation else "**NO**"


def markdown(results: Sequence[Result]) -> str:
    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    rows = ["| case | input | expected | fails at | exit | names key/file | message |",
            "|---|---|---|---|---|---|---|"]
    for r in results:
        when = r.when if r.when == r.case.expect or (r.when == "none" and r.case.expect == OK) else f"**{r.when}**"
        message = headline(r.message) or ("(none: passed)" if r.exit_code == 0 else "(no message found)")
        names = f"{named_cell(r)}: `{cell(', '.join(r.case.names))}`" if r.case.names else named_cell(r)
        rows.append(f"| {r.case.name} | {cell(r.case.what)} | {r.case.expect} | {when} | {r.exit_code} | {names} | "
                    f"{cell(message)} |")
    failing = [r for r in results if r.counts]
    limited = [r for r in results if not r.passed and r.case.limitation]
    counts = f"{len(results)} cases, {sum(r.passed for r in results)} pass, {len(failing)} fail"
    notes = [f"\n{counts}{f', {len(limited)} known limitation(s)' if limited else ''}."]
    notes += [f"- FAILS: {r.case.name}: expected {list(r.case.names) or 'success'}, got exit {r.exit_code}: "
              f"{headline(r.message) or '(no message)'}" for r in failing]
    notes += [f"- known limitation: {r.case.name}: {r.case.limitation}" for r in limited]
    notes += [f"- caught later than expected: {r.case.name}: expected at {r.case.expect}, "
              f"{'failed in a job' if r.when == JOB else 'not caught'} (the dry run passed)"
              for r in results if r.case.expect == PARSE and r.when in (JOB, "none")]
    return "\n".join(rows + notes) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", help="comma-separated case names (default: all)")
    parser.add_argument("--markdown", type=Path, help="also write the table to this file")
    parser.add_argument("--jobs", type=int, default=1, help="cases run at once (each dry run takes a core)")
    parser.add_argument("--workdir", type=Path, help="keep the scratch directories here (default: removed)")
    parser.add_argument("--list", action="store_true", help="list the cases and exit")
    args = parser.parse_args(argv)
    cases = select(args.cases)
    if args.list:
        for case in cases:
            print(f"{case.name:34} {case.expect:6} {case.what}")
        return 0
    started = time.perf_counter()
    results = run_cases(cases, args.jobs, args.workdir)
    table = markdown(results)
    table += f"\nTotal time: {time.perf_counter() - started:.0f} s ({args.jobs} case(s) at once).\n"
    print(table)
    if args.markdown:
        args.markdown.write_text(table)
    return 1 if any(r.counts for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
