"""Config -> loaded models and source images, for the world and for real models saved in their real formats.

Every model is tiny and randomly initialised; Hub ids resolve against a fake Hugging Face cache in tmp_path, so
nothing real on this machine is found and nothing is downloaded.
"""

from __future__ import annotations

import copy
import shutil
import warnings
from pathlib import Path

import numpy as np
import open_clip
import pandas as pd
import pytest
import timm
import torch
import yaml
from PIL import Image
from snakemake.utils import update_config
from test_priors import save_latent_prior
from test_sdxl import save_sdxl_prior
from timm.data import ImageNetInfo

from preimage.engine.models import ClipModel, MissingWeightsError
from preimage.engine.priors import (
    LatentDiffusionPrior,
    PixelDiffusionPrior,
    SdxlDiffusionPrior,
)
from preimage.engine.samplers.spec import from_config as sampler_from_config
from preimage.pipeline.config import objective_samplers, validate_config, world_uses
from preimage.pipeline.models import (
    class_text,
    classifier_label_names,
    model_dir,
    model_settings,
    resolve_classifier,
    resolve_clip,
    resolve_prior,
)
from preimage.pipeline.sources import (
    load_source_images,
    path_safe_ids,
    select_sources_from_config,
    source_settings,
)
from preimage.pipeline.workflow import select_sources
from preimage.utils.devices import resolve_dtype
from preimage.world.training.clip import save_open_clip
from preimage.world.training.prior import build_scheduler, build_unet

torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]
PRESETS = sorted((REPO / "presets").glob("imagenet_*.yaml"))
# presets that plant other shortcuts in the world (world_latent.yaml keeps the world and swaps the prior)
WORLD_PRESETS = [p for p in sorted((REPO / "presets").glob("world_*.yaml")) if "world" in yaml.safe_load(p.read_text())]
CLIP_CFG = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}
SYNSETS = ["n01440764", "n03028079"]  # tench, church
HUB_COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(autouse=True)
def empty_hub_cache(tmp_path, monkeypatch) -> Path:
    """An empty Hugging Face cache: Hub ids resolve only against what a test puts there."""
    cache = tmp_path / "hf-cache"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    return cache


def hub_snapshot(cache: Path, repo: str) -> Path:
    """The cache layout: models--org--name/refs/main names snapshots/<commit>/."""
    root = cache / ("models--" + repo.replace("/", "--"))
    (root / "refs").mkdir(parents=True)
    (root / "refs" / "main").write_text(HUB_COMMIT)
    return root / "snapshots" / HUB_COMMIT


def tiny_timm(folder: Path, num_classes: int, label_names: list[str] | None = None) -> Path:
    torch.manual_seed(0)
    model = timm.create_model("resnet10t", num_classes=num_classes, channels=(8, 16, 32, 64))
    extra = {"label_names": label_names} if label_names else {}
    timm.models.save_for_hf(model, str(folder), model_config=extra, model_args={"channels": [8, 16, 32, 64]},
                            data_config={"input_size": (3, 16, 16)}, safe_serialization=True)
    return folder


def tiny_clip(folder: Path) -> Path:
    torch.manual_seed(0)
    save_open_clip(open_clip.CLIP(**CLIP_CFG), CLIP_CFG, 32, folder)
    return folder


@pytest.fixture(scope="module")
def world_root(tmp_path_factory) -> Path:
    """A working directory holding tiny stand-ins for the world's trained models, where model_dir points."""
    root = tmp_path_factory.mktemp("run")
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    shapes = config["world"]["shapes"]
    tiny_timm(root / model_dir(config, "classifier"), len(shapes), shapes)
    prior = root / model_dir(config, "prior")
    torch.manual_seed(0)
    build_unet(config["world"]["image_size"], {"block_out_channels": [8, 16], "layers_per_block": 1}).save_pretrained(
        prior / "unet")
    build_scheduler().save_pretrained(prior / "scheduler")
    tiny_clip(root / model_dir(config, "clip"))
    return root


@pytest.fixture(scope="module")
def imagenet_classifier(tmp_path_factory) -> Path:
    """A 1000-class timm folder without label names: ImageNet synsets are inferred, as for real ImageNet models."""
    return tiny_timm(tmp_path_factory.mktemp("imagenet-classifier"), 1000)


@pytest.fixture(scope="module")
def sd_dir(tmp_path_factory) -> Path:
    return save_latent_prior(tmp_path_factory.mktemp("sd"))


@pytest.fixture(scope="module")
def sdxl_dir(tmp_path_factory) -> Path:
    return save_sdxl_prior(tmp_path_factory.mktemp("sdxl"))


@pytest.fixture
def image_folder(tmp_path) -> Path:
    """An ImageFolder of ImageNet synsets, three small images each."""
    rng = np.random.default_rng(0)
    for synset in SYNSETS:
        (tmp_path / "val" / synset).mkdir(parents=True)
        for i in range(3):
            pixels = rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / "val" / synset / f"ILSVRC2012_val_{i:08d}.png")
    return tmp_path / "val"


def with_models(config: dict, **models: dict) -> dict:
    return {**copy.deepcopy(config), "models": models}


def test_world_models_and_sources_resolve_from_model_dir(config, world_root, monkeypatch) -> None:
    monkeypatch.chdir(world_root)
    classifier = resolve_classifier(config, "cpu")
    assert classifier.label_names == config["world"]["shapes"] == classifier_label_names(config)
    prior = resolve_prior(config, "cpu", class_name="square")
    assert isinstance(prior, PixelDiffusionPrior) and prior.image_size == config["world"]["image_size"]
    assert prior.describe()["timestep_spacing"] == "trailing"
    assert isinstance(resolve_clip(config, "cpu"), ClipModel)

    selection = select_sources_from_config(config)  # config.yaml's sources have no kind: the world's
    pd.testing.assert_frame_equal(selection, select_sources(config))
    images = load_source_images(config, selection, prior.image_size)
    assert images.shape == (len(selection), 3, prior.image_size, prior.image_size)
    assert 0 <= images.min() and images.max() <= 1 and images.std() > 0
    assert class_text(classifier, "square") == "square"


def test_auto_prior_dtype_is_bfloat16_only_where_the_device_has_it(config, world_root, monkeypatch) -> None:
    monkeypatch.chdir(world_root)
    auto = with_models(config, prior={"source": "world", "dtype": "auto"})
    for native, expected in ((True, torch.bfloat16), (False, torch.float32)):
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda native=native: native)
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
        assert resolve_dtype("models.prior.dtype", "auto", "cpu") == expected
        assert resolve_prior(auto, "cpu").compute_dtype == expected
    assert resolve_dtype("models.prior.dtype", "float16", torch.device("cpu")) == torch.float16  # kept as given
    with pytest.raises(ValueError, match="models.prior.dtype: 'half'; expected 'auto' or one of"):
        resolve_prior(with_models(config, prior={"source": "world", "dtype": "half"}), "cpu")


def test_bfloat16_asked_for_where_it_is_emulated_is_kept_with_a_warning_naming_the_field(monkeypatch) -> None:
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    with pytest.warns(UserWarning, match="training.latent.vae.dtype: bfloat16 is emulated on this cpu"):
        assert resolve_dtype("training.latent.vae.dtype", "bfloat16", "cpu") == torch.bfloat16
    assert resolve_dtype("training.latent.vae.dtype", "auto", "cpu") == torch.float32
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # native: no warning
        assert resolve_dtype("training.latent.vae.dtype", "bfloat16", "cpu") == torch.bfloat16


def test_world_prior_refuses_settings_it_would_ignore(config) -> None:
    for setting in ({"prompt": "a square"}, {"cfg_scale": 7.5}):
        with pytest.raises(ValueError, match="unconditional pixel prior"):
            resolve_prior(with_models(config, prior={"source": "world", **setting}), "cpu")
    with pytest.raises(ValueError, match="pretrained_file"):
        resolve_classifier(with_models(config, classifier={"source": "world", "pretrained_file": "w.pth"}), "cpu")


def test_real_classifier_and_clip_folders(config, imagenet_classifier, tmp_path) -> None:
    clip_dir = tiny_clip(tmp_path / "clip")
    real = with_models(config, classifier={"source": str(imagenet_classifier)}, clip={"source": str(clip_dir)})
    classifier = resolve_classifier(real, "cpu")
    assert classifier.num_classes == 1000 and classifier.label_names == classifier_label_names(real)
    assert classifier.label_names[:1] == ["n01440764"]
    assert class_text(classifier, "n01440764") == "tench" and class_text(classifier, "n03028079") == "church"
    clip = resolve_clip(real, "cpu")
    assert clip.encode_images(torch.rand(2, 3, 48, 48)).shape == (2, CLIP_CFG["embed_dim"])


def test_timm_hub_id_and_name_are_labelled_from_metadata_alone(config, imagenet_classifier, empty_hub_cache) -> None:
    snapshot = hub_snapshot(empty_hub_cache, "org/tiny-classifier")
    shutil.copytree(imagenet_classifier, snapshot)
    synsets = list(ImageNetInfo().label_names())
    assert classifier_label_names(with_models(config, classifier={"source": "hf-hub:org/tiny-classifier"})) == synsets
    assert classifier_label_names(with_models(config, classifier={"source": "resnet50.a1_in1k"})) == synsets
    with pytest.raises(MissingWeightsError, match="hf download org/absent"):
        classifier_label_names(with_models(config, classifier={"source": "hf-hub:org/absent"}))


def test_sd_folder_and_its_hub_id_resolve_with_the_class_in_the_prompt(config, sd_dir, empty_hub_cache) -> None:
    shutil.copytree(sd_dir, hub_snapshot(empty_hub_cache, "org/tiny-sd"))
    settings = {"prompt": "a photo of a {class_name}", "negative_prompt": "no {class_name}", "cfg_scale": 7.5}
    for source in (str(sd_dir), "org/tiny-sd", "hf-hub:org/tiny-sd", f"org/tiny-sd@{HUB_COMMIT}"):
        prior = resolve_prior(with_models(config, prior={"source": source, **settings}), "cpu", class_name="tench")
        assert type(prior) is LatentDiffusionPrior
        assert (prior.prompt, prior.negative_prompt, prior.cfg_scale) == ("a photo of a tench", "no tench", 7.5)
    torch.testing.assert_close(prior.condition, prior.encode_prompt("a photo of a tench"))
    assert prior.image_size == 16 and prior.describe()["timestep_spacing"] == "trailing"
    with pytest.raises(ValueError, match="class_name"):
        resolve_prior(with_models(config, prior={"source": str(sd_dir), **settings}), "cpu")


def test_sdxl_folder_resolves_to_the_sdxl_prior(config, sdxl_dir) -> None:
    settings = {"source": str(sdxl_dir), "prompt": "a {class_name}", "timestep_spacing": "leading"}
    real = with_models(config, prior=settings)
    prior = resolve_prior(real, "cpu", class_name="church")
    assert isinstance(prior, SdxlDiffusionPrior) and prior.prompt == "a church"
    assert prior.describe()["timestep_spacing"] == "leading"
    assert prior.unet.dtype == resolve_dtype("models.prior.dtype", "auto", "cpu")  # the default dtype, per CPU


def test_a_missing_hub_id_names_the_fetch_command(config) -> None:
    with pytest.raises(MissingWeightsError) as caught:
        resolve_prior(with_models(config, prior={"source": "stabilityai/sd-turbo"}), "cpu")
    assert caught.value.fetch == "hf download stabilityai/sd-turbo"
    assert "hf download stabilityai/sd-turbo" in str(caught.value) and "model_index.json" in str(caught.value)
    with pytest.raises(FileNotFoundError, match="not a Hub id"):
        resolve_prior(with_models(config, prior={"source": "/no/such/folder"}), "cpu")


def test_bad_settings_are_named(config, tmp_path) -> None:
    with pytest.raises(ValueError, match=r"models.prior: unknown key\(s\) \['promt'\]"):
        model_settings(with_models(config, prior={"source": "x/y", "promt": "a"}), "prior")
    with pytest.raises(ValueError, match="models.prior.dtype"):
        resolve_prior(with_models(config, prior={"source": "x/y", "dtype": "float8"}), "cpu")
    (tmp_path / "odd" / "unet").mkdir(parents=True)
    (tmp_path / "odd" / "model_index.json").write_text('{"_class_name": "FluxPipeline"}')
    with pytest.raises(ValueError, match="FluxPipeline"):
        resolve_prior(with_models(config, prior={"source": str(tmp_path / "odd")}), "cpu")
    sources = config["sets"]["sources"]
    for bad, message in (({"kind": "folder"}, "sets.sources.path"), ({"kind": "web"}, "sets.sources.kind"),
                         ({"kind": "world", "split": None}, "sets.sources.split"), ({"size": 3}, "unknown key")):
        with pytest.raises(ValueError, match=message):
            source_settings({"sets": {"sources": {**sources, **bad}}})


def test_folder_and_manifest_sources_in_the_classifiers_vocabulary(config, imagenet_classifier, image_folder) -> None:
    real = with_models(config, classifier={"source": str(imagenet_classifier)})
    real["sets"]["sources"] = {"kind": "folder", "path": str(image_folder), "classes": None, "per_class": 2, "seed": 0}
    selection = select_sources_from_config(real)
    synsets = list(ImageNetInfo().label_names())
    assert selection["class_name"].tolist() == [SYNSETS[0]] * 2 + [SYNSETS[1]] * 2
    assert selection["label"].tolist() == [synsets.index(name) for name in selection["class_name"]]
    for image_id, class_name in zip(selection["image_id"], selection["class_name"]):
        assert image_id.startswith(f"{class_name}.ILSVRC") and "/" not in image_id
    images = load_source_images(real, selection, 16)
    assert images.shape == (4, 3, 16, 16) and 0 <= images.min() and images.max() <= 1

    manifest = image_folder.parent / "manifest.csv"
    files = sorted(image_folder.glob("*/*.png"))
    pd.DataFrame({"path": [str(f.relative_to(image_folder.parent)) for f in files],
                  "label": [f.parent.name for f in files]}).to_csv(manifest, index=False)
    real["sets"]["sources"] = {"kind": "manifest", "path": str(manifest), "classes": [SYNSETS[1]], "per_class": 1,
                               "seed": 0, "split": "classifier_test"}  # an inherited world key is ignored
    picked = select_sources_from_config(real)
    assert picked["class_name"].tolist() == [SYNSETS[1]] and picked["label"].tolist() == [synsets.index(SYNSETS[1])]
    assert picked["image_id"].iloc[0].startswith(f"val.{SYNSETS[1]}.")


def test_ids_that_would_break_set_paths_are_refused() -> None:
    table = pd.DataFrame({"image_id": ["a/x__y.png"], "label": [0], "class_name": ["a"], "source": ["f"], "index": [0]})
    with pytest.raises(ValueError, match="'__'"):
        path_safe_ids(table)
    table = pd.DataFrame({"image_id": ["a/b.png", "a.b.png"], "label": [0, 0], "class_name": ["a"] * 2,
                          "source": ["f"] * 2, "index": [0, 1]})
    with pytest.raises(ValueError, match="clash"):
        path_safe_ids(table)


@pytest.mark.parametrize("preset", PRESETS, ids=[p.stem for p in PRESETS])
def test_presets_overlay_config_yaml_with_valid_real_model_settings(config, preset: Path) -> None:
    overlay = yaml.safe_load(preset.read_text())
    merged = copy.deepcopy(config)
    update_config(merged, overlay)  # what `snakemake --configfile` does
    validate_config(merged, source=preset.name)  # unknown keys are refused by the schema
    # nothing of the shortcut world is used: no world model, split, vocabulary or ground-truth evaluation
    assert world_uses(merged) == []
    assert merged["concepts"]["vocabulary"] != "world" and merged["report"]["evaluate"] is False
    assert merged["concepts"]["baseline_split"] == merged["concepts"]["real_split"] == "sources"
    prior = model_settings(merged, "prior")
    assert "{class_name}" in prior["prompt"] and prior["dtype"] == "float16" and merged["device"] == "auto"
    synsets = set(ImageNetInfo().label_names())
    sources = source_settings(merged)
    assert sources["kind"] == "folder" and set(sources["classes"]) <= synsets
    # no world objective or sampler leaks through the merge: the preset renames each of config.yaml's
    assert set(config["sets"]["objectives"]) <= set(overlay["sets"]["objectives"])
    assert set(config["sets"]["samplers"]) <= set(overlay["sets"]["samplers"])
    for spec in merged["sets"]["objectives"].values():
        assert spec["kind"] != "label" or spec.get("target", "source") in synsets | {"source"}
    for spec in merged["sets"]["samplers"].values():
        sampler_from_config(spec)
    # the counterfactual is a minimal edit, guided as strongly as the preset guides: no world-tuned scale leaks
    edit = objective_samplers(merged["sets"], "counterfactual")["guided"]
    assert edit["strength"] < 1 and edit["guidance_scale"] == merged["sets"]["samplers"]["guided"]["guidance_scale"]
    assert merged["perceptual"] == {"net": "alex", "backbone_file": None, "allow_random": False}


@pytest.mark.parametrize("preset", WORLD_PRESETS, ids=[p.stem for p in WORLD_PRESETS])
def test_world_presets_only_retrain_the_classifier(config, preset: Path) -> None:
    """Another world's shortcuts reach only the classifier's data, so the committed prior, CLIP model and
    oracle serve it and the preset's run costs one classifier training."""
    merged = copy.deepcopy(config)
    update_config(merged, yaml.safe_load(preset.read_text()))
    validate_config(merged, source=preset.name)
    assert merged["world"]["shortcuts"] != config["world"]["shortcuts"]
    for model in ("prior", "clip", "oracle"):
        assert model_dir(merged, model) == model_dir(config, model)
    assert model_dir(merged, "classifier") != model_dir(config, "classifier")
