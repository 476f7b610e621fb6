"""The whole pipeline on real models, end to end and offline: no shortcut-world setting, file or model is used.

Tiny randomly initialised models of the real architectures are saved the way their libraries save them (a timm
classifier by `timm.models.save_for_hf`, Stable-Diffusion-class pipelines by `StableDiffusionPipeline.save_pretrained`,
an open_clip model in open_clip's local-dir layout), and the source images are real photographs from scikit-image's
`skimage.data`, cut into classes and saved as an image folder and as a CSV manifest. Then:

- the default target (and `concepts`, for the baseline) runs through `snakemake --cores 2` in a scratch directory on
  a config with no `world`, `training` or `evaluation` section at all: an SD-class prior with classifier-free
  guidance, image-folder sources, the label, neuron, low-pass and counterfactual objectives, the guided, rejection
  and noise_opt samplers, every concept step on the run's own images (`sources`), a report without ground truth.
  Every step's artifacts are checked, and that no world rule ran and nothing of the world was looked up or made;
- an SD-Turbo-style prior (trailing spacing, no CFG, 1-2 steps) on manifest sources generates one set job through an
  overlay on config.yaml, the way the presets are used;
- bad input on this path (a missing model folder, an image-folder class the classifier lacks, a corrupt image, a
  manifest without `label`) fails with a message naming the path, key or value, from the library and through
  Snakemake.

Every Snakemake job starts a Python process that imports torch and the model libraries (about 10 s of CPU each,
more than the tiny models cost), and the full run has 33 jobs: the tests that run Snakemake are marked slow.
"""

from __future__ import annotations

import copy
import json
import os
import random
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import timm
import torch
import yaml
from diffusers import (
    AutoencoderKL,
    DDIMScheduler,
    EulerAncestralDiscreteScheduler,
    StableDiffusionPipeline,
    UNet2DConditionModel,
)
from PIL import Image
from snakemake.utils import update_config
from test_interrupted_run import script as interrupted_run
from test_priors import PROMPT_LENGTH, tiny_tokenizer
from test_registry import tiny_clip
from transformers import CLIPTextConfig, CLIPTextModel

from preimage.pipeline.config import validate_config, world_uses
from preimage.pipeline.models import (
    classifier_label_names,
    resolve_classifier,
    resolve_clip,
    resolve_prior,
)
from preimage.pipeline.sources import (
    load_source_images,
    select_real_images,
    select_sources_from_config,
)
from preimage.pipeline.layout import GROUP_TABLE_DIRS, group_tables
from preimage.pipeline.steps.concepts import analyse_groups
from preimage.pipeline.steps.sets import generate_invariant_sets
from preimage.pipeline.workflow import (
    read_groups,
    real_model_files,
    run_groups,
    select_sources,
    set_ids,
)

skimage_data = pytest.importorskip("skimage.data", reason="scikit-image (the `test` extra) ships the photographs")

REPO = Path(__file__).resolve().parents[1]
IMAGE_SIZE = 32  # the priors' image side
# The classifier's classes, in output order; `cat` has images only in the manifest.
LABEL_NAMES = ["cat", "person", "texture", "vehicle"]
# Real photographs per class (skimage.data names; the greyscale ones are saved as greyscale files).
FOLDER_PHOTOS = {"person": ("astronaut", "camera"), "texture": ("brick", "grass", "gravel"),
                 "vehicle": ("rocket", "motorcycle")}
MANIFEST_PHOTOS = {"cat": ("chelsea",), "vehicle": ("motorcycle", "rocket"), "person": ("camera", "astronaut")}
FOLDER_IMAGES = 4  # per class
MANIFEST_IMAGES = 2  # per class
SOURCE_CLASSES = ["person", "vehicle"]  # one source image each: 2 set jobs, 4 concept groups
COUNTERFACTUAL = "vehicle"  # the person source's counterfactual joins the vehicle group
NEURON_LAYER = "layer4.0.bn1"  # a pre-activation in resnet10t's last block (timm zero-initialises bn2)
SAMPLERS = ("guided", "rejection", "noise_opt")
# Rules that make, train or evaluate with the shortcut world: none may run on real models.
WORLD_RULES = {"world_data", "world_ground_truth", "train_classifier", "train_prior", "refine_prior", "train_clip",
               "train_oracle", "train_robust", "evaluate_prior", "train_world", "report_evaluation"}
RUN_TIMEOUT = 900
# A sitecustomize module for every Python process of a run (Snakemake and each job's script): an audit hook that
# records each file or folder opened or listed under the paths in PREIMAGE_TEST_FORBIDDEN into PREIMAGE_TEST_OPENED.
OPEN_AUDIT = """
import os
import sys

_roots = [root for root in os.environ.get("PREIMAGE_TEST_FORBIDDEN", "").split(os.pathsep) if root]
_record = os.environ.get("PREIMAGE_TEST_OPENED")
_busy = []


def _audit(event, args):
    if _busy or event not in ("open", "os.listdir", "os.scandir") or not args or isinstance(args[0], (int, type(None))):
        return
    try:
        path = os.path.abspath(os.fsdecode(args[0]))
    except (TypeError, ValueError):
        return
    if any(path == root or path.startswith(root + os.sep) for root in _roots):
        _busy.append(path)
        try:
            with open(_record, "a") as handle:
                handle.write(f"{event} {path}\\n")
        finally:
            _busy.clear()


if _roots and _record:
    sys.addaudithook(_audit)
"""


def seed_everything(seed: int = 0) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


# --- models in their libraries' own formats ----------------------------------------------------------------------


def save_timm_classifier(folder: Path, label_names: list[str]) -> Path:
    """A slim resnet10t with `label_names`, saved by timm.models.save_for_hf (config.json + model.safetensors)."""
    seed_everything()
    channels = [8, 16, 32, 64]
    model = timm.create_model("resnet10t", num_classes=len(label_names), channels=channels)
    timm.models.save_for_hf(model, str(folder), model_config={"label_names": label_names},
                            model_args={"channels": channels}, data_config={"input_size": (3, IMAGE_SIZE, IMAGE_SIZE)},
                            safe_serialization=True)
    return folder


def save_sd_pipeline(folder: Path, turbo: bool = False) -> Path:
    """A Stable-Diffusion-class pipeline (VAE, conditional UNet, CLIP text encoder, tokenizer, scheduler) drawing
    IMAGE_SIZE images, saved by StableDiffusionPipeline.save_pretrained. `turbo`: SD-Turbo's scheduler (Euler
    ancestral, trailing spacing), of which the prior reads only the training schedule."""
    seed_everything(1 if turbo else 0)
    tokenizer = tiny_tokenizer()
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tokenizer.get_vocab()), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
        num_attention_heads=2, max_position_embeddings=PROMPT_LENGTH, bos_token_id=0, eos_token_id=1, pad_token_id=1))
    unet = UNet2DConditionModel(
        sample_size=IMAGE_SIZE // 2, in_channels=4, out_channels=4, block_out_channels=(8, 16), layers_per_block=1,
        norm_num_groups=4, cross_attention_dim=16, attention_head_dim=2,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"))
    vae = AutoencoderKL(
        latent_channels=4, block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=4, sample_size=IMAGE_SIZE,
        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2)
    schedule = {"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012, "steps_offset": 1}
    scheduler = (EulerAncestralDiscreteScheduler(**schedule, timestep_spacing="trailing") if turbo
                 else DDIMScheduler(**schedule, clip_sample=False))
    StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
                            safety_checker=None, feature_extractor=None,
                            requires_safety_checker=False).save_pretrained(folder)
    return folder


# --- real photographs ----------------------------------------------------------------------------------------------


def photograph(name: str) -> np.ndarray:
    return skimage_data.stereo_motorcycle()[0] if name == "motorcycle" else getattr(skimage_data, name)()


def crop(pixels: np.ndarray, rng: np.random.Generator, side: int = 96) -> Image.Image:
    """A random square crop (40-90 % of the short side, mirrored half of the time) of a photograph, `side` pixels."""
    height, width = pixels.shape[:2]
    size = int(min(height, width) * rng.uniform(0.4, 0.9))
    top, left = rng.integers(0, height - size + 1), rng.integers(0, width - size + 1)
    image = Image.fromarray(pixels[top:top + size, left:left + size]).resize((side, side), Image.Resampling.LANCZOS)
    return image.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if rng.random() < 0.5 else image


def save_photos(photos: dict[str, tuple[str, ...]], per_class: int, seed: int, folder_for) -> list[Path]:
    """Crops of each class's photographs in turn, saved alternately as PNG and JPEG in folder_for(class)."""
    rng = np.random.default_rng(seed)
    files = []
    for class_name, names in photos.items():
        for i in range(per_class):
            name = names[i % len(names)]
            path = folder_for(class_name) / f"{class_name}_{name}_{i}.{'png' if i % 2 == 0 else 'jpg'}"
            path.parent.mkdir(parents=True, exist_ok=True)
            crop(photograph(name), rng).save(path)
            files.append(path)
    return files


def make_image_folder(root: Path) -> Path:
    """root/<class>/<image>: FOLDER_IMAGES crops per class."""
    save_photos(FOLDER_PHOTOS, FOLDER_IMAGES, 0, lambda class_name: root / class_name)
    return root


def make_manifest(root: Path) -> Path:
    """root/manifest.csv (path relative to it, label) over other crops, in one flat folder root/photos."""
    files = save_photos(MANIFEST_PHOTOS, MANIFEST_IMAGES, 1, lambda class_name: root / "photos")
    manifest = root / "manifest.csv"
    pd.DataFrame({"path": [str(p.relative_to(root)) for p in files],
                  "label": [p.name.split("_", 1)[0] for p in files]}).to_csv(manifest, index=False)
    return manifest


# --- configurations ------------------------------------------------------------------------------------------------


def real_config(models: dict[str, Path], folder: Path) -> dict:
    """A complete run on real models and images with tiny settings; no world, training or evaluation section."""
    return {
        "device": "cpu",
        "models": {
            "classifier": {"source": str(models["classifier"])},
            "prior": {"source": str(models["sd"]), "prompt": "a photo of a {class_name}", "negative_prompt": "blurry",
                      "cfg_scale": 2.0, "timestep_spacing": "leading", "dtype": "float32"},
            "clip": {"source": str(models["clip"])},
        },
        "sets": {
            "sources": {"kind": "folder", "path": str(folder), "classes": SOURCE_CLASSES, "per_class": 1, "seed": 0},
            "members": 3,
            "seed": 0,
            "rejection_pool": {"kind": "reference"},
            "objectives": {
                "label": {"kind": "label"},
                "neuron": {"kind": "neuron", "layer": NEURON_LAYER, "unit": 3, "rel_tolerance": 0.5},
                "lowpass": {"kind": "lowpass", "factor": 8, "tolerance": 0.6},  # a random prior draws greys
                "counterfactual": {"kind": "label", "target": COUNTERFACTUAL},
            },
            "samplers": {
                "guided": {"kind": "guided", "num_steps": 3, "guidance_scale": 0.1, "restarts": 1, "batch_size": 3},
                "rejection": {"kind": "rejection", "num_steps": 2, "batch_size": 3},
                "noise_opt": {"kind": "noise_opt", "num_steps": 2, "iterations": 2, "batch_size": 3},
            },
            # the guided counterfactual as a minimal edit, as config.yaml has it: a late start in the VAE's latents
            "sampler_overrides": {"counterfactual": {"guided": {"strength": 0.7, "distance_weight": 0.1}}},
        },
        "reference": {"members": 8, "seed": 1, "num_steps": 2},
        "perceptual": {"allow_random": True},  # no LPIPS backbone offline: a seeded random trunk
        "concepts": {
            "vocabulary": "common",
            "prompt_template": "a photo of {}.",
            "class_template": "a photo of a {}.",
            "synonyms": {},
            "batch_size": 16,
            "baseline_split": "sources",
            "real_split": "sources",
            "real_images": 6,
            "map_points": 50,
            "clusters": {"k_max": 3, "min_silhouette": 0.0, "min_size": 2, "representatives": 2, "name_terms": 2,
                         "seed": 0},
            "spurious": {"permutations": 20, "alpha": 0.05, "min_effect": 0.2, "min_reference": 2, "min_absent": 2,
                         "absent_fraction": 0.5, "evidence": 2, "seed": 0},
            # interventions through the latent prior and open_clip: few images, one strength, a short schedule
            "interventions": {"enabled": True, "images": 4, "concepts_per_group": 1, "strengths": [0.5],
                              "num_steps": 4, "batch_size": 4},
            "effects": {"min_edits": 2, "resamples": 200},
        },
        "report": {"title": "preimage report: end-to-end test", "evaluate": False, "top_concepts": 5,
                   "grid_members": 3, "grid_columns": 3},
    }


def turbo_overlay(models: dict[str, Path], manifest: Path) -> dict:
    """An overlay on config.yaml like presets/imagenet_sdxl_turbo.yaml: an SD-Turbo-style prior sampled in 1-2
    trailing steps without CFG, manifest sources; it replaces every key of config.yaml that points at the world."""
    return {
        "device": "cpu",
        "models": {
            "classifier": {"source": str(models["classifier"])},
            "prior": {"source": str(models["turbo"]), "prompt": "a photo of a {class_name}", "negative_prompt": "",
                      "cfg_scale": 0.0, "timestep_spacing": "trailing", "dtype": "float32"},
            "clip": {"source": str(models["clip"])},
            "regressor": None,  # null removes config.yaml's world regressor
        },
        "sets": {
            "sources": {"kind": "manifest", "path": str(manifest), "classes": ["cat"], "per_class": 1, "seed": 0},
            "members": 2,
            "rejection_pool": {"kind": "shared", "members": 4},  # drawn once, with the reference's one step
            "objectives": {
                "label": {"kind": "label"},
                "neuron": {"kind": "neuron", "layer": NEURON_LAYER, "unit": 5, "rel_tolerance": 0.5},
                "lowpass": {"kind": "lowpass", "factor": 8, "tolerance": 0.6},  # a random prior draws greys
                # by index: the prompts name the class the classifier's label_names give it
                "counterfactual": {"kind": "label", "target": LABEL_NAMES.index(COUNTERFACTUAL)},
                "size": None, "size_up": None, "size_down": None,  # config.yaml's objectives on the regressor
            },
            "sampler_overrides": {"size_up": None, "size_down": None},
            "samplers": {
                "guided": {"kind": "guided", "num_steps": 2, "guidance_scale": 0.3, "restarts": 0, "batch_size": 2},
                "rejection": {"kind": "rejection", "num_steps": 1, "batch_size": 2},
                "noise_opt": {"kind": "noise_opt", "num_steps": 1, "iterations": 2, "batch_size": 2},
            },
        },
        "reference": {"members": 4, "seed": 1, "num_steps": 1},
        "perceptual": {"allow_random": True},
        "concepts": {"vocabulary": "common", "baseline_split": "sources", "real_split": "sources", "real_images": 4},
        "directions": {"targets": []},  # config.yaml's global direction is towards a world class, on a world split
        "report": {"evaluate": False},
    }


def write_yaml(path: Path, content: dict) -> Path:
    path.write_text(yaml.safe_dump(content, sort_keys=False))
    return path


def merged_with_config_yaml(overlay: dict) -> dict:
    """What `snakemake --configfile config.yaml overlay.yaml` runs on."""
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    update_config(config, copy.deepcopy(overlay))
    return validate_config(config, source="config.yaml + overlay")


# --- running Snakemake --------------------------------------------------------------------------------------------


def world_paths(workdir: Path) -> list[Path]:
    """Where the shortcut world's models and data live: the repository's models/ and results/, and the working
    directory's models/ and results/world/."""
    return [REPO / "models", REPO / "results", workdir / "models", workdir / "results" / "world"]


def run_snakemake(workdir: Path, configfiles: list[Path], *targets: str, hub_cache: Path,
                  options: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    """`snakemake -s <repo>/Snakefile --directory <workdir> --cores 2 [options] --configfile ... -- targets`, as a
    user runs the workflow from elsewhere (the workflow profile is found beside the Snakefile); with an empty Hugging
    Face cache and torch home, so nothing on this machine can stand in for a missing model. Every file or folder any
    of its Python processes opens under `world_paths` is listed in <workdir>.opened (see `opened_world_paths`)."""
    audit = workdir.parent / f"{workdir.name}.audit"
    audit.mkdir(exist_ok=True)
    (audit / "sitecustomize.py").write_text(OPEN_AUDIT)
    python_path = os.pathsep.join(filter(None, [str(audit), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(hub_cache), "TORCH_HOME": str(hub_cache / "torch"),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}", "PYTHONPATH": python_path,
           "PREIMAGE_TEST_FORBIDDEN": os.pathsep.join(map(str, world_paths(workdir))),
           "PREIMAGE_TEST_OPENED": str(workdir.parent / f"{workdir.name}.opened")}
    command = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory", str(workdir),
               "--cores", "2", *options, "--configfile", *map(str, configfiles), "--", *targets]
    return subprocess.run(command, check=False, cwd=workdir, env=env, capture_output=True, text=True,
                          timeout=RUN_TIMEOUT)


def opened_world_paths(workdir: Path) -> list[str]:
    """What the runs in `workdir` opened or listed under `world_paths`."""
    record = workdir.parent / f"{workdir.name}.opened"
    return record.read_text().splitlines() if record.is_file() else []


def job_stats(output: str) -> dict[str, int]:
    """Rule -> jobs Snakemake ran (or, dry-running, planned), counted from the job blocks it prints: the 'Job stats'
    table it prints first would miss the jobs planned once the concept groups' checkpoint has run."""
    names = re.findall(r"^(?:local)?(?:rule|checkpoint) (\w+):$", output, re.MULTILINE)
    return {name: names.count(name) for name in sorted(set(names))}


def rule_logs(workdir: Path) -> str:
    return "\n".join(f"--- {log.relative_to(workdir)}\n{log.read_text()[-4000:]}"
                     for log in sorted((workdir / "logs").rglob("*.log")) if log.is_file())


def failure(run: subprocess.CompletedProcess, workdir: Path) -> str:
    """The run's output and every rule log, for an assertion message."""
    return f"exit {run.returncode}\n{run.stdout[-3000:]}\n{run.stderr[-8000:]}\n{rule_logs(workdir)}"


# --- fixtures ------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("real-models")
    return {
        "classifier": save_timm_classifier(root / "classifier", LABEL_NAMES),
        "sd": save_sd_pipeline(root / "sd"),
        "turbo": save_sd_pipeline(root / "sd-turbo", turbo=True),
        "clip": tiny_clip(root / "clip"),
    }


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("photos")
    return {"folder": make_image_folder(root / "folder"), "manifest": make_manifest(root / "listed")}


@pytest.fixture(scope="module")
def hub_cache(tmp_path_factory) -> Path:
    """An empty Hugging Face cache (and torch home) for every run."""
    return tmp_path_factory.mktemp("empty-hf-cache")


@pytest.fixture
def empty_caches(hub_cache, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(hub_cache))
    monkeypatch.setenv("TORCH_HOME", str(hub_cache / "torch"))


@pytest.fixture(scope="module")
def full_run(tmp_path_factory, models, photos, hub_cache) -> dict:
    """The default target (which includes the data-only baseline) on the real models and the image folder, in a
    scratch working directory holding no config.yaml."""
    workdir = tmp_path_factory.mktemp("run")
    config = real_config(models, photos["folder"])
    configfile = write_yaml(workdir.parent / f"{workdir.name}.yaml", config)  # outside the working directory
    run = run_snakemake(workdir, [configfile], "all", hub_cache=hub_cache)
    assert run.returncode == 0, failure(run, workdir)
    return {"workdir": workdir, "written": copy.deepcopy(config), "config": validate_config(config), "run": run}


# --- the whole pipeline on real models ------------------------------------------------------------------------------


def test_the_run_needs_no_world_settings(models, photos) -> None:
    config = real_config(models, photos["folder"])
    assert not {"world", "training", "evaluation"} & set(config)
    validated = validate_config(copy.deepcopy(config), source="real")
    assert world_uses(validated) == []
    assert validated["models"]["prior"]["cfg_scale"] == 2.0 and validated["perceptual"]["net"] == "alex"
    assert classifier_label_names(validated) == LABEL_NAMES
    files = real_model_files(validated, "classifier", "prior", "clip")  # the rules' model inputs
    for kind in ("classifier", "sd", "clip"):
        assert any(Path(file).is_relative_to(models[kind]) for file in files), kind


@pytest.mark.slow
def test_default_target_runs_every_step_on_real_models(full_run) -> None:
    workdir, config = full_run["workdir"], full_run["config"]
    results = workdir / "results"

    # sources: one image per chosen class of the folder, labelled in the classifier's vocabulary
    sources = pd.read_parquet(results / "sources.parquet")
    assert sources["class_name"].tolist() == SOURCE_CLASSES
    assert [LABEL_NAMES[label] for label in sources["label"]] == SOURCE_CLASSES
    assert all(Path(path).is_relative_to(config["sets"]["sources"]["path"]) for path in sources["source"])

    # every set of every (source, objective, sampler), noise_opt included; the vehicle source's counterfactual to
    # its own class too
    ids = set_ids(config)
    assert len(ids) == len(sources) * 4 * len(SAMPLERS)
    assert {set_id.rsplit("__", 1)[1] for set_id in ids} == set(config["sets"]["samplers"]) == set(SAMPLERS)
    assert {p.name for p in (results / "sets").iterdir()} == set(ids)
    for set_id in ids:
        folder = results / "sets" / set_id
        members, summary = pd.read_parquet(folder / "members.parquet"), pd.read_parquet(folder / "summary.parquet")
        assert len(members) == config["sets"]["members"] and len(summary) == 1, set_id
        assert (members["set_id"] == set_id).all() and (folder / "source.png").is_file(), set_id
        for image in members["image"]:
            with Image.open(folder / image) as png:
                assert png.size == (IMAGE_SIZE, IMAGE_SIZE), set_id
        assert summary["sampler_name"].iloc[0] == set_id.rsplit("__", 1)[1]
        strength = json.loads(members["sampler_params"].iloc[0]).get("strength")
        edit = set_id.endswith("__counterfactual__guided")  # sets.sampler_overrides
        assert strength == (0.7 if edit else 1.0) or (strength is None and "__rejection" in set_id), set_id
        assert 0 <= summary["acceptance_rate"].iloc[0] <= 1 and summary["members"].iloc[0] == len(members)
        # the class prompt names the counterfactual's target (what its members should look like), else the source's
        prompted = COUNTERFACTUAL if "__counterfactual__" in set_id else members["source_class"].iloc[0]
        assert (members["prompt"] == f"a photo of a {prompted}").all(), set_id

    # the reference sample, drawn with each source class's prompt
    reference = pd.read_parquet(results / "reference" / "members.parquet")
    assert len(reference) == config["reference"]["members"] and set(reference["source_class"]) <= set(SOURCE_CLASSES)
    assert all((results / "reference" / image).is_file() for image in reference["image"])
    assert len(pd.read_parquet(results / "reference" / "summary.parquet")) == 1
    # rejection sets test the reference's draws made under their own class prompt instead of drawing
    for set_id in [set_id for set_id in ids if set_id.endswith("__rejection")]:
        members = pd.read_parquet(results / "sets" / set_id / "members.parquet")
        prompted = COUNTERFACTUAL if "__counterfactual__" in set_id else members["source_class"].iloc[0]
        drawn_for_class = reference.loc[reference["source_class"] == prompted, "seed"]
        assert set(members["seed"]) <= set(drawn_for_class) and members["seed"].is_unique, set_id
        assert json.loads(members["sampler_params"].iloc[0])["pool"] == len(drawn_for_class), set_id

    # the run's own real images: the folder's images of the source classes, at most real_images, evenly
    real = pd.read_parquet(results / "real" / "sources.parquet")
    assert real["class_name"].value_counts().to_dict() == {name: 3 for name in SOURCE_CLASSES}
    assert np.load(results / "real" / "sources.npy").shape == (len(real), 224, 224, 3)

    # concepts: vocabulary, embeddings, predictions, clusters, scores, the baseline, maps
    # groups: label sets join the class the (random) classifier calls their source, counterfactuals their target
    concepts = results / "concepts"
    calls = pd.read_parquet(concepts / "source_calls.parquet")
    groups = read_groups(concepts / "groups.parquet")
    assert groups == run_groups(config, calls)
    assert set(calls["set_id"]) == {s for s in ids if s.split("__")[1] == "label"}
    assert set(calls["source_class"]) == set(SOURCE_CLASSES) and set(calls["model_class"]) <= set(LABEL_NAMES)
    assert set(groups) == {*calls["model_class"], COUNTERFACTUAL, "neuron", "lowpass"}
    for row in calls.itertuples():
        assert row.set_id in groups[row.model_class].set_ids
    counterfactuals = {s for s in ids if s.split("__")[1] == "counterfactual"}
    assert counterfactuals and counterfactuals <= set(groups[COUNTERFACTUAL].set_ids)
    assert len(pd.read_parquet(concepts / "vocabulary.parquet")) > 10 and (concepts / "vocabulary.txt").is_file()
    embedded = pd.read_parquet(concepts / "embeddings" / "reference.parquet")
    assert (embedded["role"] == "member").sum() == len(reference)
    assert len(pd.read_parquet(concepts / "reference_predictions.parquet")) == len(reference)
    for path in ("embeddings/real/sources.parquet", "predictions/sources.parquet"):
        assert len(pd.read_parquet(concepts / path)) == len(real), path
    embedded_sets = set(pd.read_parquet(concepts / "embeddings" / "groups.parquet")["set_id"])
    assert embedded_sets == {set_id for group in groups.values() for set_id in group.set_ids}
    for group in groups:
        for path in (f"clusters/{group}/assignments.parquet",
                     f"clusters/{group}/clusters.parquet", f"spurious/{group}.parquet", f"maps/{group}.parquet"):
            assert len(pd.read_parquet(concepts / path)) > 0, path
    spurious = pd.read_parquet(concepts / "spurious.parquet")
    assert set(spurious["group"]) == set(groups)
    baseline = pd.read_parquet(concepts / "baseline.parquet")
    assert set(baseline["class"]) == {group.core for group in groups.values() if group.kind == "class"}

    # figures: per group (PNG + PDF, a grid per set) and for the run; none against a ground truth
    figures = results / "figures"
    for group in groups:
        for name in ("enrichment", "clusters", "embedding"):
            for suffix in (".png", ".pdf"):
                assert (figures / "groups" / group / f"{name}{suffix}").is_file(), (group, name, suffix)
        assert {p.stem for p in (figures / "groups" / group / "sets").glob("*.png")} == set(groups[group].set_ids)
    for name in ("samplers.png", "samplers.pdf", "samplers.tex", "samplers.md", "guidance.png", "guidance.pdf"):
        assert (figures / name).is_file(), name
    samplers_table = (figures / "samplers.md").read_text()
    sources = len(ids) // len(SAMPLERS) // len(config["sets"]["objectives"])
    for objective in config["sets"]["objectives"]:
        for sampler in ("GuidedSampler", "RejectionSampler", "NoiseOptSampler"):
            row = rf"^\| {objective} +\| {sampler} +\| +{sources} \|"
            assert re.search(row, samplers_table, re.MULTILINE), (objective, sampler)
    assert not list(figures.glob("evaluation*"))

    # concept interventions: every tested concept edited on every image, its effects on every class, figures
    edits = pd.read_parquet(concepts / "interventions" / "edits.parquet")
    tested = list(dict.fromkeys(edits["concept"]))
    assert len(edits) == 4 * len(tested) >= 1 and set(edits["strength"]) == {0.5}
    pixels = np.load(concepts / "interventions" / "images.npy")
    assert pixels.shape[:3] == (len(tested), 4, 3) and pixels.dtype == np.uint8
    effects = pd.read_parquet(concepts / "effects.parquet")
    vocabulary = pd.read_parquet(concepts / "vocabulary.parquet")
    classes = set(vocabulary.loc[vocabulary["kind"] == "class", "name"])  # every class of the classifier
    assert set(effects["readout"]) == classes and set(effects["concept"]) == set(tested)
    for name in ("effects", "pairs"):
        assert (figures / "interventions" / f"{name}.png").is_file(), name

    # the report, without an evaluation
    html = (results / "report" / "index.html").read_text()
    assert "Findings from concept interventions" in html
    summary = (results / "report" / "summary.md").read_text()
    assert config["report"]["title"] in html and "noise_opt" in html
    assert summary.startswith(f"# {config['report']['title']}")
    assert all(re.search(rf"^## {re.escape(group)}( \(.*\))?$", summary, re.MULTILINE) for group in groups)
    assert not (results / "report" / "evaluation.parquet").exists()


@pytest.mark.slow
def test_groups_analysed_on_two_worker_processes_equal_those_analysed_in_one(full_run, tmp_path) -> None:
    """The run's `concepts_analysis` job had two cores, so its groups were analysed on two forked workers."""
    workdir, config = full_run["workdir"], full_run["config"]
    concepts, settings = workdir / "results" / "concepts", config["concepts"]
    groups = read_groups(concepts / "groups.parquet")
    dirs = {name: str(tmp_path / name) for name in GROUP_TABLE_DIRS}
    analyse_groups(str(concepts / "vocabulary.parquet"), str(concepts / "embeddings" / "groups.parquet"),
                   str(concepts / "embeddings" / "reference.parquet"), str(concepts / "reference_predictions.parquet"),
                   str(concepts / "embeddings" / "real" / f"{settings['real_split']}.parquet"), groups,
                   config["sets"]["objectives"], settings["synonyms"], settings["clusters"], settings["spurious"],
                   settings["map_points"], dirs, tmp_path / "spurious.parquet", workers=1)
    job_dirs = {name: str(workdir / folder) for name, folder in GROUP_TABLE_DIRS.items()}
    for slug in groups:
        for name, path in group_tables(slug, dirs).items():
            pd.testing.assert_frame_equal(pd.read_parquet(path), pd.read_parquet(group_tables(slug, job_dirs)[name]))
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "spurious.parquet"),
                                  pd.read_parquet(concepts / "spurious.parquet"))
    assert (workdir / "logs" / "concepts" / "analysis.log").read_text().count("== group ") == len(groups)


@pytest.mark.slow
def test_no_world_rule_ran_and_nothing_of_the_world_was_looked_up(full_run) -> None:
    workdir, run = full_run["workdir"], full_run["run"]
    output = run.stdout + run.stderr
    jobs = job_stats(output)
    assert not set(jobs) & WORLD_RULES, jobs
    groups = pd.read_parquet(workdir / "results" / "concepts" / "groups.parquet")["slug"].nunique()
    assert jobs["invariant_sets"] == len(SOURCE_CLASSES) and jobs["concepts_groups"] == 1
    assert jobs["concepts_analysis"] == 1 and jobs["figures_group"] == groups >= 3
    assert jobs["real_sources"] == jobs["concepts_embed_real"] == jobs["concepts_predict_real"] == 1
    assert jobs["concepts_baseline"] == jobs["report_html"] == 1
    assert not (workdir / "results" / "world").exists()
    assert not (workdir / "models").exists()  # where the world's models would be looked up and trained
    assert not (workdir / "config.yaml").exists()  # so the run's config was the file without world sections
    inputs = [path.strip() for line in re.findall(r"^\s+input: (.*)$", output, re.MULTILINE)
              for path in line.split(",")]
    world_paths = ("models/", str(REPO / "models"), "results/world")
    assert inputs and not [path for path in inputs if path.startswith(world_paths)]
    assert "shortcut-world" not in output + rule_logs(workdir)
    assert opened_world_paths(workdir) == []


@pytest.mark.slow
def test_sd_turbo_style_prior_on_a_manifest_through_a_config_yaml_overlay(tmp_path, models, photos, hub_cache) -> None:
    overlay = turbo_overlay(models, photos["manifest"])
    config = merged_with_config_yaml(overlay)
    assert world_uses(config) == [] and "world" in config  # config.yaml's world is there, and unused
    ids = set_ids(config)
    assert [set_id.split("__")[1] for set_id in ids[::len(SAMPLERS)]] == ["label", "neuron", "lowpass", "counterfactual"]
    job = ids[0].rsplit("__", 1)[0]  # the label objective, guided by the classifier through the few-step sampler
    workdir = tmp_path / "run"
    workdir.mkdir()
    targets = [f"results/sets/{job}__{sampler}/summary.parquet" for sampler in SAMPLERS]
    run = run_snakemake(workdir, [REPO / "config.yaml", write_yaml(tmp_path / "turbo.yaml", overlay)], *targets,
                        hub_cache=hub_cache)
    assert run.returncode == 0, failure(run, workdir)
    assert job_stats(run.stdout + run.stderr) == {"select_sources": 1, "check_objectives": 1, "rejection_pool": 1,
                                                  "invariant_sets": 1, "link_sets": 1}
    pool = pd.read_parquet(workdir / "results" / "pool" / "members.parquet")
    # drawn under the source's class prompt and the counterfactual target's, two each
    assert pool["source_class"].value_counts().to_dict() == {"cat": 2, COUNTERFACTUAL: 2}
    assert (pool["set_id"] == "rejection_pool").all()
    assert not (workdir / "results" / "reference").exists()

    sources = pd.read_parquet(workdir / "results" / "sources.parquet")
    assert sources["class_name"].tolist() == ["cat"] and sources["image_id"].iloc[0].startswith("photos.cat_chelsea_")
    for sampler in SAMPLERS:
        folder = workdir / "results" / "sets" / f"{job}__{sampler}"
        members = pd.read_parquet(folder / "members.parquet")
        assert len(members) == 2 and all((folder / image).is_file() for image in members["image"])
        assert json.loads(members["sampler_params"].iloc[0])["num_steps"] <= 2
        assert len(pd.read_parquet(folder / "summary.parquet")) == 1
        if sampler == "rejection":  # the pool's draws, tested instead of drawn
            drawn_for_cat = pool.loc[pool["source_class"] == "cat", "seed"]  # the label set: the source's prompt
            assert set(members["seed"]) <= set(drawn_for_cat) and json.loads(members["sampler_params"].iloc[0])["pool"] == 2
    counterfactual = pd.read_parquet(workdir / "results" / "sets" / f"{job.rsplit('__', 1)[0]}__counterfactual__guided"
                                     / "members.parquet")
    assert (counterfactual["prompt"] == f"a photo of a {COUNTERFACTUAL}").all()  # its target, given by index
    assert not (workdir / "results" / "world").exists() and not (workdir / "models").exists()
    assert opened_world_paths(workdir) == []


@pytest.mark.slow
def test_a_set_job_of_two_sources_draws_what_two_jobs_of_one_source_draw(tmp_path, models, photos,
                                                                         empty_caches) -> None:
    """`sets.sources_per_job` changes how many processes draw the sets, not the sets: each set's seed is its id's,
    and the models a job loads once carry no state from one source's sets to the next."""
    overlay = turbo_overlay(models, photos["manifest"])
    overlay["sets"]["sources"]["per_class"] = 2
    overlay["sets"]["rejection_pool"] = {"kind": "none"}  # each rejection set draws its own members
    config = merged_with_config_yaml(overlay)
    sources = tmp_path / "sources.parquet"
    selection = select_sources(config)
    selection.to_parquet(sources)
    ids = list(selection["image_id"])
    assert len(ids) == 2
    together = generate_invariant_sets(ids, sources, tmp_path / "together", config, threads=1)
    apart = [folder for source in reversed(ids)  # the second source first, each in a call of its own
             for folder in generate_invariant_sets([source], sources, tmp_path / "apart", config, threads=1)]
    assert sorted(folder.name for folder in together) == sorted(folder.name for folder in apart)
    assert {folder.name.split("__")[0] for folder in together} == set(ids)
    # every file equal, tables by value without their timing columns: the interrupted-run check's comparison
    problems, compared = interrupted_run.compare_results(tmp_path / "apart", tmp_path / "together")
    assert problems == [] and compared > 4 * len(together), problems  # PNGs, members and summary per set


# --- bad input names the file, key or value ------------------------------------------------------------------------


def with_source(config: dict, **sources) -> dict:
    config = copy.deepcopy(config)
    config["sets"]["sources"] = {"per_class": 1, "seed": 0, **sources}
    return config


def with_model(config: dict, kind: str, source: str) -> dict:
    config = copy.deepcopy(config)
    config["models"][kind]["source"] = source
    return config


@pytest.fixture
def bad_inputs(tmp_path, models, photos) -> dict:
    """A config on the real models, a folder with a class the classifier lacks, a folder with a corrupt image
    among its sources, a manifest without `label` and a path where no model is."""
    config = real_config(models, photos["folder"])
    unknown_class = tmp_path / "unknown-class"
    shutil.copytree(photos["folder"], unknown_class)
    shutil.copytree(unknown_class / "person", unknown_class / "dog")
    corrupt = tmp_path / "corrupt"
    (corrupt / "person").mkdir(parents=True)
    (corrupt / "person" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated, not an image")
    shutil.copytree(photos["folder"] / "vehicle", corrupt / "vehicle")
    listed = pd.read_csv(photos["manifest"])
    no_label = photos["manifest"].with_name("no_label.csv")
    listed.rename(columns={"label": "class"}).to_csv(no_label, index=False)
    return {"config": config, "unknown_class": unknown_class, "corrupt": corrupt, "no_label": no_label,
            "missing": tmp_path / "no-such-model"}


def test_a_missing_model_folder_is_named(bad_inputs, empty_caches) -> None:
    config, missing = bad_inputs["config"], str(bad_inputs["missing"])
    with pytest.raises(ValueError, match=rf"models\.classifier\.source '{re.escape(missing)}'"):
        select_sources_from_config(with_model(config, "classifier", missing))
    with pytest.raises(ValueError, match=re.escape(missing)):
        resolve_classifier(with_model(config, "classifier", missing), "cpu")
    with pytest.raises(FileNotFoundError, match=rf"models\.prior\.source '{re.escape(missing)}': no such folder"):
        resolve_prior(with_model(config, "prior", missing), "cpu", class_name="person")
    with pytest.raises(ValueError, match=re.escape(missing)):
        resolve_clip(with_model(config, "clip", missing), "cpu")


def test_an_image_folder_class_the_classifier_lacks_is_named(bad_inputs) -> None:
    config = with_source(bad_inputs["config"], kind="folder", path=str(bad_inputs["unknown_class"]))
    for select in (select_sources_from_config, select_real_images):
        with pytest.raises(ValueError, match=r"\['dog'\] are not among label_names") as caught:
            select(config)
        assert str(bad_inputs["unknown_class"]) in str(caught.value)


def test_a_corrupt_source_image_is_named(bad_inputs) -> None:
    config = with_source(bad_inputs["config"], kind="folder", path=str(bad_inputs["corrupt"]), classes=["person"])
    selection = select_sources_from_config(config)  # selecting reads no pixels
    broken = bad_inputs["corrupt"] / "person" / "broken.png"
    assert selection["source"].tolist() == [str(broken)]
    with pytest.raises(ValueError, match=rf"image file '{re.escape(str(broken))}' cannot be read as an image"):
        load_source_images(config, selection, IMAGE_SIZE)


def test_a_manifest_without_labels_is_named(bad_inputs) -> None:
    config = with_source(bad_inputs["config"], kind="manifest", path=str(bad_inputs["no_label"]))
    with pytest.raises(ValueError, match=r"column 'label' not in dataframe") as caught:
        select_sources_from_config(config)
    assert f"manifest '{bad_inputs['no_label']}'" in str(caught.value)


@pytest.mark.slow
@pytest.mark.parametrize("case", ["missing_classifier", "unknown_class", "no_label"])
def test_snakemake_stops_before_any_job_naming_the_bad_input(case, bad_inputs, tmp_path, hub_cache) -> None:
    """Errors found while planning the run reach the user through `snakemake -n`, naming what is wrong."""
    config = bad_inputs["config"]
    config, expected = {
        "missing_classifier": (with_model(config, "classifier", str(bad_inputs["missing"])),
                               [f"models.classifier.source '{bad_inputs['missing']}'"]),
        "unknown_class": (with_source(config, kind="folder", path=str(bad_inputs["unknown_class"])),
                          ["['dog'] are not among label_names", str(bad_inputs["unknown_class"])]),
        "no_label": (with_source(config, kind="manifest", path=str(bad_inputs["no_label"])),
                     ["column 'label' not in dataframe", str(bad_inputs["no_label"])]),
    }[case]
    workdir = tmp_path / "run"
    workdir.mkdir()
    run = run_snakemake(workdir, [write_yaml(tmp_path / "bad.yaml", config)], options=("-n",), hub_cache=hub_cache)
    output = run.stdout + run.stderr
    assert run.returncode != 0 and all(text in output for text in expected), output[-4000:]


@pytest.mark.slow
def test_a_corrupt_source_image_fails_its_jobs_naming_the_file(bad_inputs, tmp_path, hub_cache) -> None:
    """A corrupt image is found when a job reads it: the set job of its source and the real-image job."""
    config = with_source(bad_inputs["config"], kind="folder", path=str(bad_inputs["corrupt"]), classes=["person"])
    broken = bad_inputs["corrupt"] / "person" / "broken.png"
    workdir = tmp_path / "run"
    workdir.mkdir()
    targets = ["results/sets/person.broken.png__label__guided/summary.parquet", "results/real/sources.parquet"]
    run = run_snakemake(workdir, [write_yaml(tmp_path / "corrupt.yaml", config)], *targets, options=("--keep-going",),
                        hub_cache=hub_cache)
    assert run.returncode != 0, failure(run, workdir)
    message = f"image file '{broken}' cannot be read as an image"
    output = run.stdout + run.stderr
    assert output.count(message) >= 2 and "Error in rule real_sources:" in output, output[-6000:]
    assert "Error in rule invariant_sets:" in output and "wildcards: job=person.broken.png" in output
    for log in ("logs/invariant_sets/person.broken.png.log", "logs/real_sources.log"):  # where Snakemake points
        assert message in (workdir / log).read_text(), log
    assert (workdir / "results" / "sources.parquet").is_file()  # selection itself read no pixels


# --- what an edit reruns --------------------------------------------------------------------------------------------


def replanned(full_run: dict, hub_cache: Path, edit=None, rewritten: tuple[Path, ...] = ()) -> dict[str, int]:
    """The jobs a dry run of the default target plans after the finished full run, with `edit` applied to its
    config and the files in `rewritten` given new content and a later modification time (Snakemake compares an
    updated input's checksum, so touching alone reruns nothing); the files are restored afterwards."""
    config = copy.deepcopy(full_run["written"])
    if edit is not None:
        edit(config)
    workdir = full_run["workdir"]
    configfile = write_yaml(workdir.parent / f"{workdir.name}-edited.yaml", config)
    originals = {path: (path.read_bytes(), path.stat().st_mtime) for path in rewritten}
    try:
        for path, (content, mtime) in originals.items():
            path.write_bytes(content + b"\0")
            os.utime(path, (mtime + 3600, mtime + 3600))
        run = run_snakemake(workdir, [configfile], "all", hub_cache=hub_cache, options=("-n",))
    finally:
        for path, (content, mtime) in originals.items():
            path.write_bytes(content)
            os.utime(path, (mtime, mtime))
    assert run.returncode == 0, failure(run, workdir)
    return job_stats(run.stdout) if "Job stats:" in run.stdout else {}


def reordered(config: dict) -> None:
    """The same settings with every section's keys in reverse order (an overlay repeating values does this)."""
    for key in list(config):
        value = config.pop(key)
        config[key] = dict(reversed(list(value.items()))) if isinstance(value, dict) else value
    config.update(dict(reversed(list(config.items()))))


@pytest.mark.slow
def test_only_what_an_edit_touches_is_planned_again(full_run, models, hub_cache) -> None:
    sources = pd.read_parquet(full_run["workdir"] / "results" / "sources.parquet")
    set_jobs = len(sources)  # one source per class, so a set job per source
    assert replanned(full_run, hub_cache, reordered) == {}
    title = replanned(full_run, hub_cache, lambda config: config["report"].update(title="another {title}"))
    assert title == {"report_html": 1, "all": 1}
    clusters = replanned(full_run, hub_cache, lambda config: config["concepts"]["clusters"].update(k_max=2))
    assert clusters["concepts_analysis"] == 1 and not {"invariant_sets", "reference_samples"} & set(clusters)
    assert full_run["config"]["sets"]["rejection_pool"]["kind"] == "reference"  # its draws: the reference's
    unused_pool = replanned(full_run, hub_cache, lambda config: config["sets"]["rejection_pool"].update(seed=7))
    assert unused_pool == {}, unused_pool  # a shared pool's seed: no pool of that kind is drawn, nothing reruns
    members = replanned(full_run, hub_cache, lambda config: config["sets"].update(members=4))
    assert members["invariant_sets"] == set_jobs and "reference_samples" not in members
    weights = replanned(full_run, hub_cache, rewritten=(models["classifier"] / "model.safetensors",))
    assert weights.get("invariant_sets") == set_jobs and weights.get("reference_samples") == 1, weights
    image = Path(sources.iloc[0]["source"])
    one_source = replanned(full_run, hub_cache, rewritten=(image,))
    assert one_source.get("invariant_sets") == 1 and "reference_samples" not in one_source, \
        one_source


@pytest.mark.slow
def test_a_deleted_set_is_linked_again_from_its_jobs_folder_not_redrawn(full_run, hub_cache) -> None:
    sets = full_run["workdir"] / "results" / "sets"
    folder = sorted(sets.iterdir())[0]
    aside = full_run["workdir"] / "set-aside"
    folder.rename(aside)
    try:
        planned = replanned(full_run, hub_cache)
    finally:
        aside.rename(folder)
    assert planned.get("link_sets") == 1 and "invariant_sets" not in planned, planned
