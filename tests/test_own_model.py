"""Your own model from Python: wrap a torchvision classifier, load a source image file, read a stored set back,
and build a latent prior from a loaded diffusers pipeline; the README's example runs as written."""

from __future__ import annotations

import math
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torchvision
from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline
from PIL import Image
from test_priors import save_latent_prior, save_pixel_prior
from test_sdxl import tiny_sdxl_pipeline

import preimage
from preimage.engine.models import wrap_classifier
from preimage.engine.models.preprocess import fit_to_size
from preimage.engine.objectives import from_config, label, lowpass, neuron
from preimage.engine.priors import (
    LatentDiffusionPrior,
    PixelDiffusionPrior,
    SdxlDiffusionPrior,
)
from preimage.engine.samplers import RejectionSampler
from preimage.pipeline.models import class_text

os.environ["HF_HUB_OFFLINE"] = "1"
torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
NAMES = ["tench", "goldfish", "shark"]
DESCRIPTIONS = ["tench, Tinca tinca", "goldfish, Carassius auratus", "great white shark"]
SIZE = 64


def resnet() -> torch.nn.Module:
    torch.manual_seed(0)
    return torchvision.models.resnet18(weights=None, num_classes=3)


def wrapped_resnet(**changes: object) -> torch.nn.Module:
    arguments = {"mean": MEAN, "std": STD, "input_size": SIZE, "class_names": NAMES} | changes
    return wrap_classifier(resnet(), **arguments)


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    return wrapped_resnet(class_descriptions=DESCRIPTIONS)


def normalised(images: torch.Tensor) -> torch.Tensor:
    return (images - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)


# --- wrap_classifier ------------------------------------------------------------------------------------------


def test_wrapped_model_normalises_resizes_and_keeps_its_layer_names(model):
    reference = resnet().eval()
    images = torch.rand(2, 3, SIZE, SIZE)
    with torch.no_grad():
        torch.testing.assert_close(model(images), reference(normalised(images)), atol=1e-5, rtol=1e-4)
        other = torch.rand(2, 3, 48, 80)
        expected = reference(normalised(fit_to_size(other, (SIZE, SIZE), "bilinear", "shortest")))
        torch.testing.assert_close(model(other), expected, atol=1e-5, rtol=1e-4)
    assert [name for name, _ in model.named_modules()] == [name for name, _ in reference.named_modules()]
    captured = {}
    reference.layer4[0].conv1.register_forward_hook(lambda module, args, out: captured.setdefault("out", out))
    with torch.no_grad():
        reference(normalised(images[:1]))
    centre = captured["out"][:, 5, captured["out"].shape[2] // 2, captured["out"].shape[3] // 2]
    unit = neuron(model, "layer4.0.conv1", unit=5).bind(images[:1])
    torch.testing.assert_close(unit.value(images[:1]), centre, atol=1e-5, rtol=1e-4)


def test_wrapped_model_carries_what_downstream_steps_read(model):
    assert model.label_names == NAMES and model.label_descriptions == DESCRIPTIONS
    assert model.data_config == {"input_size": (3, SIZE, SIZE), "interpolation": "bilinear", "mean": MEAN,
                                 "std": STD, "crop_pct": 1.0, "crop_mode": "center"}
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    assert class_text(model, "tench") == "tench" and class_text(model, "shark") == "great white shark"
    images = torch.rand(1, 3, SIZE, SIZE, requires_grad=True)
    model(images)[0, 1].backward()
    assert images.grad is not None and images.grad.abs().sum() > 0


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"mean": (123.7, 116.3, 103.5)}, r"mean=.*expected 3 numbers in \[0, 1\]"),
        ({"mean": (0.5, 0.5)}, r"mean=\(0.5, 0.5\): expected 3 numbers"),
        ({"std": (0.2, 0.0, 0.2)}, r"std=.*expected 3 numbers > 0"),
        ({"input_size": (64, 0)}, r"input_size=\(64, 0\)"),
        ({"class_names": ["a", "b"]}, r"class_names: 2 names, but the module outputs 3 logits"),
        ({"class_names": "abc"}, r"class_names='abc': expected a list"),
        ({"class_names": ["a", "a", "b"]}, r"distinct"),
        ({"class_descriptions": ["x"]}, r"class_descriptions: expected one string per class name \(3"),
        ({"interpolation": "lanczos"}, r"interpolation='lanczos': expected one of"),
        ({"resize": "crop"}, r"resize='crop': expected one of"),
    ],
)
def test_wrap_classifier_errors_name_the_argument(changes, message):
    with pytest.raises(ValueError, match=message):
        wrapped_resnet(**changes)


def test_wrap_classifier_checks_the_module_on_one_image_of_its_input_size():
    def small() -> torch.nn.Module:
        return torch.nn.Sequential(torch.nn.Conv2d(3, 2, 3), torch.nn.Flatten(), torch.nn.Linear(2 * 6 * 6, 3))

    fitting = wrap_classifier(small(), mean=MEAN, std=STD, input_size=8, class_names=NAMES)
    assert fitting(torch.rand(1, 3, 20, 20)).shape == (1, 3)
    with pytest.raises(ValueError, match=r"input_size=\(16, 16\): the module fails on an image of that size"):
        wrap_classifier(small(), mean=MEAN, std=STD, input_size=16)
    with pytest.raises(ValueError, match=r"module: expected a classifier returning \(B, K\) logits, got \(1, 2, 6, 6"):
        wrap_classifier(torch.nn.Conv2d(3, 2, 3), mean=MEAN, std=STD, input_size=8)


def test_wrap_classifier_refuses_non_modules_and_a_second_wrap(model):
    with pytest.raises(TypeError, match="module: expected a torch.nn.Module"):
        wrap_classifier(lambda x: x, mean=MEAN, std=STD, input_size=SIZE)
    with pytest.raises(ValueError, match="module: already has preimage's preprocessing hook"):
        wrap_classifier(model, mean=MEAN, std=STD, input_size=SIZE)


# --- label targets by class name ------------------------------------------------------------------------------


def test_label_target_by_class_name(model):
    images = torch.rand(4, 3, SIZE, SIZE)
    by_name = label(model, target="shark")
    assert by_name.describe()["target"] == 2
    assert torch.equal(by_name.accept(images), label(model, target=2).accept(images))
    assert label(model).with_target("goldfish").describe()["target"] == 1
    assert from_config({"kind": "label", "target": "goldfish"}, model).describe()["target"] == 1
    assert from_config({"kind": "label", "target": "tench"}, model).describe()["target"] == 0
    with pytest.raises(ValueError, match=r"'whale': not a class of the model; classes are \['tench', 'goldfish'"):
        label(model, target="whale")


def test_label_target_by_name_needs_label_names():
    unnamed = wrap_classifier(resnet(), mean=MEAN, std=STD, input_size=SIZE)
    assert unnamed.label_names is None
    with pytest.raises(ValueError, match="'tench': the model has no label_names"):
        label(unnamed, target="tench")


# --- load_image -------------------------------------------------------------------------------------------------


def pixels(size: int = 16) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)


def as_tensor(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(array.copy()).permute(2, 0, 1)[None].float() / 255


def test_load_image_reads_png_and_jpeg(tmp_path):
    array = pixels()
    Image.fromarray(array).save(tmp_path / "image.png")
    loaded = preimage.load_image(tmp_path / "image.png", 16)
    assert loaded.shape == (1, 3, 16, 16) and loaded.dtype == torch.float32
    torch.testing.assert_close(loaded, as_tensor(array))
    smooth = np.repeat(np.linspace(0, 255, 16, dtype=np.uint8)[None, :, None], 16, axis=0).repeat(3, axis=2)
    Image.fromarray(smooth).save(tmp_path / "image.jpg", quality=95)
    assert (preimage.load_image(str(tmp_path / "image.jpg"), 16) - as_tensor(smooth)).abs().max() < 0.05


def test_load_image_centre_crops_to_a_square_and_resizes(tmp_path):
    wide = np.zeros((32, 64, 3), dtype=np.uint8)
    wide[:, :, 1] = 200
    wide[:, :4, 0] = wide[:, 60:, 0] = 255  # red bands outside the centre square, beyond the filter's reach
    Image.fromarray(wide).save(tmp_path / "wide.png")
    loaded = preimage.load_image(tmp_path / "wide.png", 8)
    assert loaded.shape == (1, 3, 8, 8)
    torch.testing.assert_close(loaded, torch.tensor([0.0, 200 / 255, 0.0]).view(1, 3, 1, 1).expand(1, 3, 8, 8))


def test_load_image_converts_modes_deliberately(tmp_path):
    rgba = np.zeros((4, 4, 4), dtype=np.uint8)
    rgba[..., 0] = 255
    rgba[0, :, 3] = 0  # transparent row -> white
    rgba[1, :, 3] = 255  # opaque red
    rgba[2:, :, 3] = 128  # half transparent red on white
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    loaded = preimage.load_image(tmp_path / "rgba.png", 4)[0]
    torch.testing.assert_close(loaded[:, 0], torch.ones(3, 4))
    torch.testing.assert_close(loaded[:, 1], torch.tensor([1.0, 0.0, 0.0])[:, None].expand(3, 4))
    assert torch.allclose(loaded[1:, 2], torch.full((2, 4), 127 / 255), atol=1 / 255)
    grey = np.arange(16, dtype=np.uint8).reshape(4, 4) * 16
    expanded = as_tensor(np.repeat(grey[..., None], 3, axis=2))
    Image.fromarray(grey).save(tmp_path / "grey.png")
    Image.fromarray(grey.astype(np.uint16) * 257).save(tmp_path / "grey16.png")  # Pillow's I;16 mode
    Image.fromarray(grey).convert("P").save(tmp_path / "palette.png")
    for name in ("grey.png", "grey16.png", "palette.png"):
        torch.testing.assert_close(preimage.load_image(tmp_path / name, 4), expanded)


def test_load_image_errors_name_the_file(tmp_path):
    Image.fromarray(pixels(64)).save(tmp_path / "whole.png")
    data = (tmp_path / "whole.png").read_bytes()
    (tmp_path / "truncated.png").write_bytes(data[: len(data) // 2])
    (tmp_path / "notes.png").write_text("not an image")
    for name in ("truncated.png", "notes.png"):
        with pytest.raises(ValueError, match=f"image file '.*{name}' cannot be read as an image"):
            preimage.load_image(tmp_path / name, 16)
    with pytest.raises(FileNotFoundError, match="image file '.*missing.png' does not exist"):
        preimage.load_image(tmp_path / "missing.png", 16)
    with pytest.raises(ValueError, match="size=0"):
        preimage.load_image(tmp_path / "whole.png", 0)


# --- read_set ----------------------------------------------------------------------------------------------------


def same_value(a: object, b: object) -> bool:
    return a == b or (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b))


def same_summary(read: dict, written: dict) -> bool:
    return read.keys() == written.keys() and all(same_value(read[key], written[key]) for key in read)


def test_read_set_reads_back_what_write_set_stored(tmp_path):
    prior = PixelDiffusionPrior.from_pretrained(save_pixel_prior(tmp_path / "prior"))
    source = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    written = preimage.sample(lowpass(4, tolerance=0.5), source, prior, RejectionSampler(num_steps=2), 3)
    extra = {"sampler_name": "rejection"}
    preimage.write_set(written, tmp_path / "set", extra)
    read = preimage.read_set(tmp_path / "set")
    pd.testing.assert_frame_equal(read.members, written.members)
    assert read.images.shape == written.images.shape and read.source.shape == source.shape
    assert (read.images - written.images).abs().max() <= 0.5 / 255 + 1e-6
    assert (read.source - source).abs().max() <= 0.5 / 255 + 1e-6
    assert same_summary(read.summary, written.summary | extra)
    with pytest.raises(FileNotFoundError, match=r"invariant set folder '.*half' is not a complete set"):
        preimage.read_set(tmp_path / "half")


# --- from_pipeline -----------------------------------------------------------------------------------------------


def predictions(prior: LatentDiffusionPrior) -> tuple[torch.Tensor, ...]:
    z = torch.randn(2, *prior.latent_shape, generator=torch.Generator().manual_seed(0))
    t = prior.timesteps(4)[1]
    images = torch.rand(1, 3, prior.image_size, prior.image_size, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        return prior.predict(z, t), prior.decode(z), prior.encode(images)


@pytest.fixture(scope="module")
def sd_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_latent_prior(tmp_path_factory.mktemp("sd"))


@pytest.fixture(scope="module")
def sd_pipe(sd_folder: Path) -> StableDiffusionPipeline:
    return StableDiffusionPipeline.from_pretrained(sd_folder, local_files_only=True, use_safetensors=True)


def test_latent_prior_from_a_loaded_pipeline_predicts_as_from_pretrained(sd_folder, sd_pipe):
    settings = {"prompt": "a red square", "negative_prompt": "blue", "cfg_scale": 3.0, "timestep_spacing": "leading"}
    from_pipe = LatentDiffusionPrior.from_pipeline(sd_pipe, **settings)
    from_disk = LatentDiffusionPrior.from_pretrained(sd_folder, **settings)
    assert from_pipe.unet is sd_pipe.unet and type(from_pipe.scheduler) is type(from_disk.scheduler)
    assert from_pipe.scheduler.config == from_disk.scheduler.config
    assert from_pipe.describe() == from_disk.describe()
    for a, b in zip(predictions(from_pipe), predictions(from_disk)):
        torch.testing.assert_close(a, b)
    with pytest.raises(TypeError, match=r"pipe: LatentDiffusionPrior.from_pipeline needs .* lacks \['vae', 'unet'"):
        LatentDiffusionPrior.from_pipeline(object())
    with pytest.raises(TypeError, match=r"SdxlDiffusionPrior.* lacks \['text_encoder_2', 'tokenizer_2'\]"):
        SdxlDiffusionPrior.from_pipeline(sd_pipe)


def test_sdxl_prior_from_a_loaded_pipeline_predicts_as_from_pretrained(tmp_path):
    tiny_sdxl_pipeline().save_pretrained(tmp_path / "sdxl")
    pipe = StableDiffusionXLPipeline.from_pretrained(tmp_path / "sdxl", local_files_only=True, use_safetensors=True)
    from_pipe = SdxlDiffusionPrior.from_pipeline(pipe, prompt="a cat", cfg_scale=3.0)
    from_disk = SdxlDiffusionPrior.from_pretrained(tmp_path / "sdxl", prompt="a cat", cfg_scale=3.0)
    assert from_pipe.zero_empty_negative == from_disk.zero_empty_negative
    assert from_pipe.describe() == from_disk.describe()
    for a, b in zip(predictions(from_pipe), predictions(from_disk)):
        torch.testing.assert_close(a, b)
    with pytest.raises(ValueError, match="use SdxlDiffusionPrior"):
        LatentDiffusionPrior.from_pipeline(pipe)


# --- the README's example ----------------------------------------------------------------------------------------


def readme_example() -> str:
    """The first Python block after the README's "Your own model from Python" paragraph."""
    text = (REPO / "README.md").read_text()
    start = text.index("**Your own model from Python.**")
    return re.search(r"```python\n(.*?)```", text[start:], re.DOTALL).group(1)


@pytest.mark.slow
def test_readme_example_runs_as_written(tmp_path, monkeypatch, capsys):
    (tmp_path / "models").symlink_to(REPO / "models")  # the committed prior, as from the repository root
    monkeypatch.chdir(tmp_path)
    exec(compile(readme_example(), "README.md", "exec"), {"__name__": "readme"})
    assert preimage.read_set(tmp_path / "results/own-model/to-square").summary["members"] == 4
    assert "accepted" in capsys.readouterr().out
