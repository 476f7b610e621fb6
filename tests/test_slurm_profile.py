"""Static checks of the Snakemake profiles: they parse the way `--profile` parses them, SLURM site settings
come from the environment, and only GPU rules ask SLURM for a GPU. The run against a real scheduler is
tests/slurm/run.sh (called by .ci/slurm.sh)."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest
from snakemake.profiles import ProfileConfigFileParser

REPO = Path(__file__).resolve().parents[1]
PROFILES = REPO / "profiles"
GPU_RULES = (
    "invariant_sets",
    "reference_samples",
    "rejection_pool",
    "train_prior",
    "refine_prior",
    "train_clip",
    "train_classifier",
    "train_oracle",
    "train_robust",
    "train_regressor",
    "evaluate_prior",
    "concepts_vocabulary",
    "concepts_embed_groups",
    "concepts_embed_reference",
    "concepts_embed_real",
    "concepts_predict_real",
    "concepts_predict_reference",
    "global_direction",
)
SITE_VARIABLES = ("PREIMAGE_SLURM_ACCOUNT", "PREIMAGE_SLURM_PARTITION", "PREIMAGE_SLURM_GPU_PARTITION")


def load_profile(name: str) -> dict:
    """A profile's settings as Snakemake's --profile reads them, with the environment applied."""
    with (PROFILES / name / "config.yaml").open() as stream:
        return dict(ProfileConfigFileParser().parse(stream))


def default_resources(profile: dict) -> dict[str, str]:
    return dict(entry.split("=", 1) for entry in profile["default-resources"])


def rule_resources(profile: dict, rule: str) -> dict[str, str]:
    prefix = f"{rule}:"
    return dict(entry[len(prefix) :].split("=", 1) for entry in profile["set-resources"] if entry.startswith(prefix))


def configured_rules(profile: dict) -> set[str]:
    return {entry.split(":", 1)[0] for entry in profile["set-resources"]}


@pytest.fixture
def site(monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """Set SLURM site variables, starting from none of them set."""
    for variable in SITE_VARIABLES:
        monkeypatch.delenv(variable, raising=False)

    def set_variables(**values: str) -> None:
        for variable, value in values.items():
            monkeypatch.setenv(variable, value)

    return set_variables


def test_local_profile_uses_all_cores_and_one_gpu_at_a_time():
    profile = load_profile("local")
    assert profile["cores"] == "all"
    assert profile["resources"] == ["gpu=1"]


def test_slurm_profile_leaves_account_and_partition_to_the_cluster_by_default(site):
    site()
    profile = load_profile("slurm")
    assert profile["executor"] == "slurm"
    assert int(profile["cores"]) >= 1
    assert not [entry for entry in profile["default-resources"] + profile["set-resources"] if "slurm_" in entry]
    assert {"runtime", "mem_mb"} <= default_resources(profile).keys()


def test_slurm_profile_sizes_every_gpu_rule(site):
    site()
    profile = load_profile("slurm")
    assert configured_rules(profile) == set(GPU_RULES)
    for rule in GPU_RULES:
        assert {"runtime", "mem_mb"} <= rule_resources(profile, rule).keys(), rule


def test_slurm_site_settings_come_from_the_environment(site):
    site(PREIMAGE_SLURM_ACCOUNT="lab", PREIMAGE_SLURM_PARTITION="cpu", PREIMAGE_SLURM_GPU_PARTITION="gpu")
    profile = load_profile("slurm")
    assert default_resources(profile)["slurm_account"] == "lab"
    assert default_resources(profile)["slurm_partition"] == "cpu"
    for rule in GPU_RULES:
        assert rule_resources(profile, rule)["slurm_partition"] == "gpu", rule


def test_gpu_rules_fall_back_to_the_common_partition(site):
    site(PREIMAGE_SLURM_PARTITION="shared")
    profile = load_profile("slurm")
    assert "slurm_account" not in default_resources(profile)
    for rule in GPU_RULES:
        assert rule_resources(profile, rule)["slurm_partition"] == "shared", rule


def dry_run_jobs(workdir: Path, *args: str) -> dict[str, SimpleNamespace]:
    """Rule name -> threads and resources of its jobs, as Snakemake evaluates them in a dry run with the
    SLURM profile."""
    run = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--profile", str(PROFILES / "slurm"), *args],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    jobs: dict[str, SimpleNamespace] = {}
    for line in run.stdout.splitlines():
        if match := re.match(r"(?:local)?(?:rule|checkpoint) (\w+):$", line):  # every job's block has its resources
            job = jobs[match[1]] = SimpleNamespace(threads=1, resources={})
        elif match := re.match(r"\s+threads: (\d+)$", line):
            job.threads = int(match[1])
        elif match := re.match(r"\s+resources: (.*)$", line):
            pairs = (item.split("=", 1) for item in match[1].split(", "))
            job.resources = {key: int(value) if value.isdigit() else value for key, value in pairs}
    return jobs


class _JobResources(dict):
    """The attribute-and-get access the plugin uses on a job's resources."""

    def __getattr__(self, name: str):
        try:
            return self[name]
        except KeyError as error:
            raise AttributeError(name) from error


def sbatch_call(job: SimpleNamespace) -> str:
    """The sbatch options the SLURM plugin derives from a job's threads and resources."""
    from snakemake_executor_plugin_slurm.submit_string import get_submit_command
    from snakemake_executor_plugin_slurm.utils import set_gres_string

    plugin_job = SimpleNamespace(threads=job.threads, resources=_JobResources(job.resources))
    # Account and partition arguments come from the executor's cluster queries; tests read the resources.
    params = dict(run_uuid="run", slurm_logfile="log", comment_str="rule", account="", partition="", workdir=".")
    return get_submit_command(plugin_job, params) + set_gres_string(plugin_job)


def test_only_gpu_rules_ask_slurm_for_a_gpu(site, tmp_path):
    pytest.importorskip("snakemake_executor_plugin_slurm")
    site(PREIMAGE_SLURM_PARTITION="cpu", PREIMAGE_SLURM_GPU_PARTITION="gpu")
    # GPU rules declare their GPU and threads the way the pipeline's rules do; world_data stands for every
    # CPU rule. The profile's `cores` caps what `workflow.cores` means for a job.
    (tmp_path / "Snakefile").write_text(
        f"GPU_RULES = {list(GPU_RULES)}\n"
        "rule all:\n"
        '    input: expand("{name}.done", name=GPU_RULES + ["world_data"])\n'
        "for name in GPU_RULES:\n"
        "    rule:\n"
        "        name: name\n"
        '        output: f"{name}.done"\n'
        "        threads: workflow.cores\n"
        "        resources: gpu=1\n"
        '        shell: "touch {output}"\n'
        "rule world_data:\n"
        '    output: "world_data.done"\n'
        '    shell: "touch {output}"\n'
    )
    jobs = dry_run_jobs(tmp_path)
    cores = load_profile("slurm")["cores"]
    for rule in GPU_RULES:
        call = sbatch_call(jobs[rule])
        assert "--gpus=1" in call and f"--cpus-per-task={cores}" in call and "--mem 16000" in call, call
        assert re.search(r" -t \d+", call), call
        assert jobs[rule].resources["slurm_partition"] == "gpu"
    call = sbatch_call(jobs["world_data"])
    assert "--gpus" not in call and "--gres" not in call, call
    assert "--cpus-per-task=1" in call and "--mem 4000" in call and " -t 60" in call, call
    assert jobs["world_data"].resources["slurm_partition"] == "cpu"


def test_the_pipelines_gpu_rules_are_the_ones_the_profile_sizes(site):
    """With device=cuda exactly the rules sized in the profile ask SLURM for a GPU. Snakemake silently
    ignores resources set for a rule that does not exist, so a renamed or new GPU rule shows up here."""
    pytest.importorskip("snakemake_executor_plugin_slurm")
    site()
    jobs = dry_run_jobs(REPO, "--nolock", "--forceall", "--config", "device=cuda", "--", "all", "train_world")
    gpu_jobs = {rule: job for rule, job in jobs.items() if job.resources.get("gpu", 0) > 0}
    assert gpu_jobs.keys() == set(GPU_RULES)
    for rule, job in gpu_jobs.items():
        assert "--gpus=1" in sbatch_call(job), rule
