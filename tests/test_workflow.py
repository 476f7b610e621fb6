"""The default workflow's plan, from a Snakemake dry run: which jobs it makes of the configuration."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from preimage.analysis.report.build import misclassified_sources
from preimage.pipeline import workflow
from preimage.pipeline.config import ConfigError, load_config
from preimage.pipeline.models import counterfactual_targets, objective_prompt_class, prompt_classes, prompt_targets
from preimage.pipeline.workflow import (
    ALLOCATOR_ENVIRONMENT,
    call_keeping_set_ids,
    check_pool_size,
    groups_settings,
    groups_table,
    read_groups,
    resolved_device,
    run_groups,
    select_sources,
    set_allocator_environment,
    set_class,
    set_ids,
    set_jobs,
    source_calls,
)

REPO = Path(__file__).resolve().parents[1]


def planned_output(*targets: str) -> str:
    """What a dry run of `targets` (the default target without) prints with nothing cached."""
    run = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--nolock", "--forceall", "--cores", "2", *targets],
                         cwd=REPO, capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stdout + run.stderr
    return run.stdout


def planned_jobs(*targets: str) -> dict[str, int]:
    """Rule name -> number of jobs a dry run of `targets` plans with nothing cached."""
    stats = planned_output(*targets).split("Job stats:", 1)[1].split("\n\n", 1)[0]
    return {rule: int(count) for rule, count in re.findall(r"^(\w+)\s+(\d+)$", stats, re.MULTILINE) if rule != "total"}


def test_groups_are_known_once_the_sets_that_keep_the_models_call_are_drawn():
    config = load_config(REPO / "config.yaml")
    jobs = planned_jobs("figures")
    # before the checkpoint: the jobs of the sets that keep the model's call, i.e. every source's (a set job draws
    # every objective's and sampler's set of its sources, and each source's sets are linked into results/sets/)
    sources = {set_id.split("__")[0] for set_id in call_keeping_set_ids(config)}
    assert jobs["link_sets"] == len(sources) == len(select_sources(config))
    assert jobs["invariant_sets"] == len(set_jobs(config)) < len(sources)
    assert jobs["concepts_groups"] == jobs["figures"] == 1
    assert not {"concepts_analysis", "figures_group", "figures_run"} & set(jobs)  # planned after the checkpoint


def write_members(folder: Path, set_id: str, target: int) -> Path:
    path = folder / set_id / "members.parquet"
    path.parent.mkdir(parents=True)
    pd.DataFrame({"source_id": [set_id.split("__")[0]] * 2, "target": [target] * 2}).to_parquet(path)
    return path


def test_a_misclassified_sources_label_sets_join_the_class_the_model_calls_it(tmp_path):
    config = load_config(REPO / "config.yaml")
    shapes = config["world"]["shapes"]
    keeping = call_keeping_set_ids(config)
    wrong_source = keeping[0].split("__")[0]
    true_class = set_class(config, keeping[0])
    called_as = next(shape for shape in shapes if shape != true_class)
    members = {set_id: write_members(tmp_path, set_id, shapes.index(
        called_as if set_id.startswith(f"{wrong_source}__") else set_class(config, set_id))) for set_id in keeping}
    calls = source_calls(config, members)
    groups = run_groups(config, calls)
    moved = [set_id for set_id in keeping if set_id.startswith(f"{wrong_source}__")]
    assert moved and all(set_id in groups[called_as].set_ids for set_id in moved)
    assert not any(set_id in groups[true_class].set_ids for set_id in moved)
    listed = misclassified_sources(calls)
    assert listed.to_dict("records") == [{"source_id": wrong_source, "source_class": true_class,
                                          "model_class": called_as}]
    assert read_groups(write_parquet_table(groups_table(groups), tmp_path / "groups.parquet")) == groups


def test_the_groups_step_knows_which_samplers_an_objective_drops(tmp_path):
    """A sampler overridden with `false` for an objective draws none of its sets, and the groups step, which
    reads only its own settings, must not wait for them (the latent preset drops noise_opt for most objectives)."""
    config = load_config(REPO / "config.yaml")
    dropped = next(name for name in config["sets"]["objectives"] if name != "label")
    config["sets"]["sampler_overrides"][dropped] = {"rejection": False}
    drawn = set_ids(config)
    assert drawn == set_ids(groups_settings(config)) and not any(s.endswith(f"__{dropped}__rejection") for s in drawn)
    keeping = call_keeping_set_ids(config)
    members = {set_id: write_members(tmp_path, set_id, config["world"]["shapes"].index(set_class(config, set_id)))
               for set_id in keeping}
    groups = run_groups(groups_settings(config), source_calls(config, members))
    assert sorted(set_id for group in groups.values() for set_id in group.set_ids) == sorted(drawn)


def write_parquet_table(table: pd.DataFrame, path: Path) -> Path:
    table.to_parquet(path)
    return path


def _run_in_redirect(tmp_path: Path, raise_line: str) -> tuple[subprocess.CompletedProcess, str]:
    script = tmp_path / "job.py"
    script.write_text("from preimage.pipeline.logs import redirect_output\n"
                      f"with redirect_output({str(tmp_path / 'job.log')!r}):\n    print('working')\n    {raise_line}\n")
    run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    return run, (tmp_path / "job.log").read_text()


def test_a_job_error_reaches_its_log_as_one_message_and_a_bug_with_its_traceback(tmp_path):
    run, log = _run_in_redirect(tmp_path, "raise ValueError('sets.objectives.neuron: no layer layer9')")
    assert run.returncode == 1 and "Traceback" not in run.stderr + log
    assert run.stderr.strip() == "error: sets.objectives.neuron: no layer layer9"
    assert log.splitlines() == ["working", "error: sets.objectives.neuron: no layer layer9"]
    run, log = _run_in_redirect(tmp_path, "raise RuntimeError('a bug')")
    assert run.returncode == 1 and "Traceback" in run.stderr and "Traceback" in log and "RuntimeError: a bug" in log


# --- errors a user can act on: named by key path or file, before any job starts where possible --------------------


def dry_run(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "snakemake", "-n", "--nolock", "--cores", "1", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=180)


def test_bad_objective_and_sampler_specs_stop_the_workflow_when_it_is_planned(tmp_path):
    overlay = tmp_path / "typo.yaml"
    overlay.write_text("sets:\n  samplers:\n    guided: {kind: guided, guidance_scal: 0.1}\n"
                       "  objectives:\n    neuron: {kind: neuron, layer: layer4.0.bn2, unit: -1}\n")
    run = dry_run("--configfile", str(overlay))
    output = run.stdout + run.stderr
    assert run.returncode != 0 and f"config.yaml + {overlay} is invalid:" in output, output  # no --config given
    assert "sets.samplers.guided: field 'guidance_scal' is not allowed for kind 'guided'" in output
    assert "sets.objectives.neuron: unit must be an integer >= 0, got -1" in output
    assert "Job stats" not in output  # refused while parsing, before any job is planned


def test_config_overrides_on_the_command_line_keep_their_types():
    """`--config` values reach the schema typed (Snakemake reads nested scalars as strings): a number is a number,
    null drops an objective, and a numeric title stays a string."""
    run = dry_run("--config", "sets={members: 4, objectives: {lowpass: null}}", "report={title: 2024}")
    output = run.stdout + run.stderr
    assert run.returncode == 0, output
    assert "__label__guided" in output and "__lowpass__" not in output


def test_a_yaml_syntax_error_in_config_yaml_names_file_and_line(tmp_path):
    (tmp_path / "config.yaml").write_text("sets:\n  members: 4\n  objectives: {label: {kind: label}\n  seed: 0\n")
    run = dry_run("--snakefile", str(REPO / "Snakefile"), "--directory", str(tmp_path), cwd=tmp_path)
    output = run.stdout + run.stderr
    assert run.returncode != 0 and "config.yaml, line 4, column 3: invalid YAML: expected ',' or '}'" in output, output


def test_a_set_job_draws_up_to_sources_per_job_sources_of_one_class(monkeypatch):
    config = load_config(REPO / "config.yaml")
    assert len(set_jobs(config)) == len(config["world"]["shapes"])  # the default run: a job per class
    selection = pd.DataFrame({"image_id": ["c1", "c2", "c3", "s1", "c4", "t1", "t2"],
                              "class_name": ["circle"] * 3 + ["square", "circle", "triangle", "triangle"]})
    monkeypatch.setattr(workflow, "select_sources", lambda config: selection)
    jobs = set_jobs({"sets": {"sources_per_job": 3}})
    assert jobs == {"c1": ["c1", "c2", "c3"], "c4": ["c4"], "s1": ["s1"], "t1": ["t1", "t2"]}
    assert set_jobs({"sets": {"sources_per_job": 1}}) == {source: [source] for source in selection["image_id"]}


def test_every_set_job_waits_for_the_one_objectives_check():
    jobs = planned_jobs("sets")
    assert jobs["check_objectives"] == 1 and jobs["invariant_sets"] > 1


def test_the_objectives_check_names_a_bad_layer_unit_or_class_with_its_key_path(tmp_path, monkeypatch):
    """The check step builds every objective on the (committed world) classifier once: a bad layer fails here,
    naming sets.objectives.<name>.layer and the nearest layer names, not minutes later in every set job."""
    from preimage.pipeline.steps.sets import check_objectives

    monkeypatch.chdir(REPO)  # the world classifier's folder is relative to the repository
    config = load_config(REPO / "config.yaml")
    marker = tmp_path / "objectives.json"
    checked = check_objectives(config, marker)
    assert checked["neuron"] == "neuron:layer4.0.bn2:165" and marker.is_file()
    assert checked["size_up"].startswith("regression")  # built and bound on the regressor it names
    objectives = config["sets"]["objectives"]
    objectives["neuron"]["layer"] = "layer4.0.bn3"
    objectives["wide"] = {"kind": "neuron", "layer": "layer4.0.bn2", "unit": 9999}
    objectives["shape"] = {"kind": "label", "target": "hexagon"}
    objectives["pair"] = {"kind": "sum", "parts": [{"kind": "lowpass", "factor": 8},
                                                   {"kind": "channel", "layer": "fc", "channel": 0}]}
    with pytest.raises(ValueError) as error:
        check_objectives(config, tmp_path / "again.json")
    lines = str(error.value).splitlines()
    assert lines[0] == f"4 of {len(objectives)} objectives do not fit the classifier (models.classifier):", lines
    assert lines[1].startswith("  sets.objectives.neuron.layer: layer 'layer4.0.bn3' is not a module of ResNet")
    assert "nearest matches: layer4.0.bn2" in lines[1]
    assert lines[2] == "  sets.objectives.wide: neuron unit 9999 is out of range: layer 'layer4.0.bn2' has 256 units"
    assert lines[3].startswith("  sets.objectives.shape: label: target 'hexagon': not a class of the model")
    assert lines[4].startswith("  sets.objectives.pair.parts[1]: channel: layer 'fc' gives a 2-D activation")
    assert not (tmp_path / "again.json").exists()


def test_every_rule_that_runs_a_script_writes_a_benchmark_named_after_it():
    """`benchmarks/rule_times.py` sums results/benchmarks/<rule>.tsv and <rule>/<wildcards>.tsv per rule."""
    for path in sorted((REPO / "rules").glob("*.smk")):
        blocks = re.split(r"^\s*(?=(?:rule|checkpoint) \w+:|use rule \w+ as \w+ with:)", path.read_text(), flags=re.MULTILINE)
        for block in blocks:
            name = re.match(r"(?:rule|checkpoint) (\w+):|use rule \w+ as (\w+) with:", block)
            if not name or "script:" not in block and not block.startswith("use rule"):
                continue
            rule = name.group(1) or name.group(2)
            benchmark = re.search(r'benchmark:\s*"results/benchmarks/([^"]+)\.tsv"', block)
            assert benchmark, f"{path.name}: rule {rule} has no benchmark"
            assert benchmark.group(1).split("/")[0] == rule, f"{path.name}: rule {rule} writes {benchmark.group(1)}"


def test_a_pool_too_small_for_a_class_prompted_priors_classes_is_refused_when_planning():
    """A class-prompted prior's pool is split over the classes: 1,024 draws over 100 classes would leave 11 per
    class, fewer than a set's 32, so every set would draw its own; planning says so before anything is drawn."""
    config = load_config(REPO / "config.yaml")
    classes = [f"c{k}" for k in range(100)]
    check_pool_size(config, classes)  # the world's pixel prior draws every class alike: one pool for all
    config["models"]["prior"] = {"source": "some/latent-prior", "prompt": "a photo of a {class_name}"}
    # the 100 sources' classes and the counterfactual's target, square: 101 prompts
    with pytest.raises(ConfigError, match=r"sets.rejection_pool.members: 1024 draws split over the prior's 101 class "
                                          r"prompts give 11 per class, fewer than sets.members \(32\).*at least 3232"):
        check_pool_size(config, classes)
    check_pool_size(config, classes[:31])


def test_a_counterfactual_is_prompted_with_its_target_and_every_other_objective_with_the_sources_class(config):
    objectives = config["sets"]["objectives"]
    assert objectives["counterfactual"] == {"kind": "label", "target": "square"}
    assert objective_prompt_class(objectives["counterfactual"], "circle") == "square"
    for name in ("label", "neuron", "lowpass", "size_up"):
        assert objective_prompt_class(objectives[name], "circle") == "circle", name
    assert objective_prompt_class({"kind": "label", "target": "source"}, "cross") == "cross"  # the source's own call
    targets = counterfactual_targets(objectives)
    assert targets == ["square"] and counterfactual_targets({"label": {"kind": "label"}}) == []
    assert prompt_classes(["circle", "cross", "circle"], targets) == ["circle", "cross", "square"]


def test_a_counterfactual_to_a_class_index_is_prompted_with_that_class_and_one_to_several_with_the_sources(config):
    shapes = config["world"]["shapes"]  # the world classifier's class names, in output order
    to_triangle, to_any = {"kind": "label", "target": 2}, {"kind": "label", "target": [1, 3]}
    assert objective_prompt_class(to_triangle, "circle", shapes) == "triangle"
    assert objective_prompt_class(to_any, "circle", shapes) == "circle"
    assert objective_prompt_class(to_triangle, "circle") == "circle"  # a classifier without class names
    objectives = config["sets"]["objectives"]
    objectives.update(to_triangle=to_triangle, to_any=to_any)
    assert counterfactual_targets(objectives, shapes) == ["square", "triangle"]
    assert prompt_targets(config) == ["square", "triangle"]  # while planning: the names from the world's shapes
    del objectives["to_triangle"]
    assert prompt_targets(config) == ["square"]


def test_a_clone_that_checks_the_priors_first_stage_out_after_its_refinement_retrains_neither(tmp_path):
    """Git writes a clone's files in path order, so a committed first stage can be newer than the second stage
    trained from it; the refine rules ignore that (ancient) and train only what is missing."""
    import os
    import shutil

    from preimage.pipeline.models import base_model_dir, model_dir

    config = load_config(REPO / "config.yaml")
    refined, base = model_dir(config, "prior"), base_model_dir(config, "prior")
    assert refined != base
    for folder in (refined, base):  # the first stage copied last, as a clone may write it
        shutil.copytree(REPO / folder, tmp_path / folder)
    later = os.stat(tmp_path / refined / "unet" / "diffusion_pytorch_model.safetensors").st_mtime + 60
    for file in (tmp_path / base).rglob("*"):
        os.utime(file, (later, later))
    shutil.copy(REPO / "config.yaml", tmp_path / "config.yaml")
    run = dry_run("--snakefile", str(REPO / "Snakefile"), "--directory", str(tmp_path),
                  f"{refined}/unet/diffusion_pytorch_model.safetensors", cwd=tmp_path)
    assert run.returncode == 0 and "Nothing to be done" in run.stdout + run.stderr, run.stdout + run.stderr


# --- the jobs' environment ------------------------------------------------------------------------------------------


def test_the_allocator_settings_are_set_together_and_never_over_a_users_own():
    environ = {"PATH": "/bin"}
    assert set_allocator_environment(environ) == ALLOCATOR_ENVIRONMENT
    assert environ == {"PATH": "/bin", **ALLOCATOR_ENVIRONMENT}
    own = {"MALLOC_TRIM_THRESHOLD_": "0"}
    assert set_allocator_environment(own) == {}
    assert own == {"MALLOC_TRIM_THRESHOLD_": "0"}


@pytest.mark.parametrize("own", [{}, {"MALLOC_TRIM_THRESHOLD_": "4096"}])
def test_the_process_that_starts_the_jobs_holds_the_allocator_settings_once_the_workflow_is_read(own):
    """Snakemake's jobs inherit the environment of the process that plans them: a dry run in-process shows it."""
    names = list(ALLOCATOR_ENVIRONMENT)
    code = ("import os\nfrom snakemake.cli import main\ntry:\n    main(['-n', '--nolock', '--cores', '1', "
            "'results/sources.parquet'])\nexcept SystemExit as stop:\n    assert not stop.code, stop.code\n"
            f"print([os.environ.get(name) for name in {names!r}])")
    environ = {name: value for name, value in os.environ.items() if name not in names} | own
    run = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=environ, capture_output=True, text=True,
                         timeout=180)
    assert run.returncode == 0, run.stdout + run.stderr
    expected = [own.get(name) for name in names] if own else [ALLOCATOR_ENVIRONMENT[name] for name in names]
    assert run.stdout.strip().splitlines()[-1] == repr(expected)


def test_auto_is_the_cpu_without_asking_torch_where_no_gpu_driver_is_installed(monkeypatch):
    monkeypatch.setattr(workflow, "gpu_driver_present", lambda: False)
    assert resolved_device("auto") == "cpu"
    assert resolved_device("cuda:1") == "cuda:1"
    monkeypatch.setattr(workflow, "gpu_driver_present", lambda: True)
    import torch

    assert resolved_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")


@pytest.mark.parametrize(("platform", "paths", "expected"), [
    ("linux", [], False), ("linux", ["/dev/nvidiactl"], True), ("linux", ["/dev/kfd"], True),
    ("darwin", ["/dev/nvidiactl"], False), ("win32", [], True)])
def test_a_gpu_driver_is_read_from_the_drivers_files_on_linux(monkeypatch, platform, paths, expected):
    monkeypatch.setattr(workflow.sys, "platform", platform)
    monkeypatch.setattr(workflow.Path, "exists", lambda path: str(path) in paths)
    assert workflow.gpu_driver_present() is expected


def test_what_the_long_jobs_need_comes_first_then_the_pool_the_long_jobs_the_sets_and_the_short_ones_last():
    """Two cores stay busy only if the long jobs start before the short ones, which then fill the core the last
    set job leaves free, and the pool and the global direction (the longest job) start side by side, the reference
    after them (docs/benchmarks.md): the priorities the plan gives each rule."""
    priorities: dict[str, set[int]] = {}
    for block in re.split(r"\n(?=(?:local)?(?:rule|checkpoint) \w+:)", planned_output()):
        rule = re.match(r"(?:local)?(?:rule|checkpoint) (\w+):", block)
        if rule:
            found = re.search(r"^\s+priority: (\d+)$", block, re.MULTILINE)
            priorities.setdefault(rule.group(1), set()).add(int(found.group(1)) if found else 0)
    for rule in ("select_sources", "world_data", "concepts_vocabulary", "check_objectives"):
        assert priorities[rule] == {4}, rule
    assert priorities["rejection_pool"] == priorities["global_direction"] == {3}
    assert priorities["reference_samples"] == {2}
    assert priorities["invariant_sets"] == priorities["report_evaluation"] == {1}
    # the run's figures (planned here through their own target: the group figures come after the checkpoint) start
    # before the group figures, which keep priority 0
    assert re.search(r"rule figures_run:\n(?:\s+.*\n)*?\s+priority: 1\n", planned_output("results/figures/samplers.png"))
    for rule in ("concepts_embed_real", "concepts_predict_real", "concepts_predict_reference", "figures_direction"):
        assert priorities[rule] == {0}, rule


def test_cuda_on_a_machine_without_one_is_refused_naming_the_device_key(monkeypatch):
    import torch

    from preimage.utils.devices import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match=r"^device: 'cuda' was asked for, but this machine has no visible CUDA device"):
        resolve_device("cuda")
    assert resolve_device("auto") == torch.device("cpu")
