"""Model loaders: tiny random models saved in the libraries' real formats load back unchanged, offline."""

from __future__ import annotations

import json
import os
import shutil
import warnings
from pathlib import Path

import lpips
import open_clip
import pytest
import safetensors.torch
import timm
import torch
import torch.nn.functional as F

from preimage.engine.models import (
    CorruptWeightsError,
    MissingWeightsError,
    load_classifier,
    load_clip,
    load_lpips,
)
from preimage.engine.models.errors import safetensors_problem
from preimage.engine.models.preprocess import fit_to_size

torch.set_num_threads(1)

ARCH = "test_resnet"  # timm's tiny test model; its default tag's Hub repo is timm/test_resnet.r160_in1k
HUB_REPO = "timm/test_resnet.r160_in1k"
CLIP_CFG = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}
CLIP_PREPROCESS = {"size": 32, "mean": [0.5, 0.4, 0.3], "std": [0.2, 0.25, 0.3], "interpolation": "bicubic", "resize_mode": "shortest"}


@pytest.fixture(autouse=True)
def empty_caches(tmp_path, monkeypatch):
    """Point every cache at empty folders, so nothing real on this machine is found or downloaded."""
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))


def _timm_model(num_classes: int = 3) -> torch.nn.Module:
    torch.manual_seed(0)
    return timm.create_model(ARCH, num_classes=num_classes).eval()


def _reference(model: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(model.pretrained_cfg["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(model.pretrained_cfg["std"]).view(1, 3, 1, 1)
    with torch.no_grad():
        return model((images - mean) / std)


def _hub_snapshot(cache: Path, repo: str) -> Path:
    """The Hugging Face cache layout: models--org--name/refs/main names snapshots/<commit>/."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    root = cache / ("models--" + repo.replace("/", "--"))
    (root / "refs").mkdir(parents=True)
    (root / "refs" / "main").write_text(commit)
    snapshot = root / "snapshots" / commit
    snapshot.mkdir(parents=True)
    return snapshot


class Pwned:
    """Pickled as a call to open(marker, "w"): unpickling it would create the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_timm_folder_loads_identical_model_with_timm_names(tmp_path):
    model = _timm_model()
    folder = tmp_path / "clf"
    timm.models.save_for_hf(model, str(folder), model_config={"label_names": ["a", "b", "c"]}, safe_serialization=True)
    for source in (str(folder), "local-dir:" + str(folder)):
        loaded = load_classifier(source)
        images = torch.rand(2, 3, 160, 160)
        assert torch.allclose(loaded(images), _reference(model, images), atol=1e-6)
        assert [n for n, _ in loaded.named_modules()] == [n for n, _ in model.named_modules()]
        assert "layer1.0.conv1" in dict(loaded.named_modules())
        assert loaded.label_names == ["a", "b", "c"] and loaded.label_descriptions is None
        assert loaded.data_config["input_size"] == (3, 160, 160)
        assert not loaded.training and not any(p.requires_grad for p in loaded.parameters())


def test_classifier_resizes_other_sizes_and_passes_gradients(tmp_path):
    model = _timm_model()
    timm.models.save_for_hf(model, str(tmp_path / "clf"), safe_serialization=True)
    loaded = load_classifier(str(tmp_path / "clf"))
    images = torch.rand(2, 3, 64, 96, requires_grad=True)
    out = loaded(images)
    expected = _reference(model, fit_to_size(images.detach(), (160, 160), "bilinear", "shortest"))
    assert torch.allclose(out, expected, atol=1e-5)
    out[:, 1].sum().backward()
    assert images.grad is not None and images.grad.abs().sum() > 0
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        loaded(torch.rand(3, 32, 32))


def test_timm_name_with_local_weight_files(tmp_path):
    model = _timm_model(num_classes=5)
    safetensors.torch.save_file(model.state_dict(), str(tmp_path / "w.safetensors"))
    torch.save(model.state_dict(), tmp_path / "w.pth")
    images = torch.rand(2, 3, 160, 160)
    for path in (tmp_path / "w.safetensors", tmp_path / "w.pth"):
        loaded = load_classifier(ARCH, pretrained_file=path)  # num_classes read from the head "fc"
        assert loaded.num_classes == 5 and loaded.label_names is None
        assert torch.allclose(loaded(images), _reference(model, images), atol=1e-6)
    with pytest.raises(ValueError, match="num_classes=4"):
        load_classifier(ARCH, pretrained_file=tmp_path / "w.safetensors", num_classes=4)


def test_weight_files_are_never_unpickled_as_code(tmp_path):
    marker = tmp_path / "executed"
    torch.save({"fc.weight": torch.zeros(3, 96), "payload": Pwned(marker)}, tmp_path / "evil.pth")
    with pytest.raises(Exception, match="weights_only"):
        load_classifier(ARCH, pretrained_file=tmp_path / "evil.pth", num_classes=3)
    with pytest.raises(Exception, match="weights_only|Unsupported global"):
        load_lpips("alex", backbone_file=tmp_path / "evil.pth")
    assert not marker.exists()


def test_timm_weights_found_in_the_hugging_face_cache(tmp_path):
    model = _timm_model(num_classes=1000)
    snapshot = _hub_snapshot(tmp_path / "hf-cache", HUB_REPO)
    timm.models.save_for_hf(model, str(snapshot), safe_serialization=True)
    images = torch.rand(1, 3, 160, 160)
    for source in (ARCH, f"{ARCH}.r160_in1k", f"hf-hub:{HUB_REPO}"):
        loaded = load_classifier(source)
        assert torch.allclose(loaded(images), _reference(model, images), atol=1e-5)
        assert loaded.label_names[0] == "n01440764" and loaded.label_descriptions[0].startswith("tench")


def test_missing_timm_weights_say_where_looked_and_how_to_fetch(tmp_path):
    cache = str(tmp_path / "hf-cache")
    for source in (ARCH, f"hf-hub:{HUB_REPO}"):
        with pytest.raises(MissingWeightsError) as caught:
            load_classifier(source)
        message = str(caught.value)
        assert source in message and cache in message and f"hf download {HUB_REPO}" in message
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "config.json").write_text(json.dumps({"architecture": ARCH}))
    with pytest.raises(MissingWeightsError, match="model.safetensors"):
        load_classifier(str(tmp_path / "empty"))
    with pytest.raises(MissingWeightsError, match="nowhere.safetensors"):
        load_classifier(ARCH, pretrained_file=tmp_path / "nowhere.safetensors")


def test_bad_classifier_sources_are_named(tmp_path):
    with pytest.raises(ValueError, match="not_a_model"):
        load_classifier("not_a_model")
    model = _timm_model()
    timm.models.save_for_hf(model, str(tmp_path / "clf"), safe_serialization=True)
    with pytest.raises(ValueError, match="pretrained_file"):
        load_classifier(str(tmp_path / "clf"), pretrained_file=tmp_path / "w.safetensors")
    with pytest.raises(ValueError, match="num_classes=7"):
        load_classifier(str(tmp_path / "clf"), num_classes=7)


def _clip_folder(folder: Path) -> torch.nn.Module:
    """A tiny open_clip model in open_clip's Hub layout: open_clip_config.json + open_clip_model.safetensors."""
    torch.manual_seed(0)
    model = open_clip.CLIP(**CLIP_CFG).eval()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": CLIP_CFG, "preprocess_cfg": CLIP_PREPROCESS}))
    safetensors.torch.save_file(model.state_dict(), str(folder / "open_clip_model.safetensors"))
    return model


def _clip_reference(model: torch.nn.Module, images: torch.Tensor, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    mean = torch.tensor(CLIP_PREPROCESS["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_PREPROCESS["std"]).view(1, 3, 1, 1)
    tokens = open_clip.SimpleTokenizer(context_length=CLIP_CFG["text_cfg"]["context_length"])(texts)
    with torch.no_grad():
        return model.encode_image((images - mean) / std, normalize=True), model.encode_text(tokens, normalize=True)


def test_open_clip_folder_encodes_like_the_original(tmp_path):
    model = _clip_folder(tmp_path / "clip")
    clip = load_clip(str(tmp_path / "clip"))
    images, texts = torch.rand(3, 3, 32, 32), ["a red circle", "a blue square"]
    image_ref, text_ref = _clip_reference(model, images, texts)
    assert torch.allclose(clip.encode_images(images), image_ref, atol=1e-5)
    assert torch.allclose(clip.encode_texts(texts), text_ref, atol=1e-5)
    probs = clip.zero_shot(images, texts)
    assert probs.shape == (3, 2) and torch.allclose(probs.sum(1), torch.ones(3))
    big = torch.rand(2, 3, 48, 64, requires_grad=True)  # resized and centre-cropped on the tensor
    embedding = clip.encode_images(big)
    assert torch.allclose(embedding.norm(dim=1), torch.ones(2))
    embedding[:, 0].sum().backward()
    assert big.grad.abs().sum() > 0
    assert not any(p.requires_grad for p in clip.parameters())


def test_open_clip_from_hub_cache_and_from_architecture_plus_file(tmp_path):
    model = _clip_folder(_hub_snapshot(tmp_path / "hf-cache", "org/tiny-clip"))
    images = torch.rand(2, 3, 32, 32)
    image_ref, _ = _clip_reference(model, images, ["x"])
    assert torch.allclose(load_clip("hf-hub:org/tiny-clip").encode_images(images), image_ref, atol=1e-5)
    config = tmp_path / "configs" / "preimage-tiny-clip.json"
    config.parent.mkdir()
    config.write_text(json.dumps(CLIP_CFG))
    open_clip.add_model_config(config)
    (tmp_path / "ckpt").mkdir()
    torch.save(model.state_dict(), tmp_path / "ckpt" / "tiny.pth")
    clip = load_clip("preimage-tiny-clip", pretrained_file=tmp_path / "ckpt" / "tiny.pth")
    assert clip.preprocess_cfg["size"] == (32, 32)
    with torch.no_grad():
        assert torch.allclose(clip.model.encode_image(images), model.encode_image(images), atol=1e-5)


def test_missing_clip_weights_are_explained(tmp_path):
    with pytest.raises(MissingWeightsError) as caught:
        load_clip("hf-hub:org/absent")
    assert "open_clip_config.json" in str(caught.value) and "hf download org/absent" in str(caught.value)
    with pytest.raises(MissingWeightsError, match="hf download .*ViT-B-32|Hub repos with ViT-B-32"):
        load_clip("ViT-B-32")
    (tmp_path / "clip").mkdir()
    (tmp_path / "clip" / "open_clip_config.json").write_text(json.dumps({"model_cfg": CLIP_CFG}))
    with pytest.raises(MissingWeightsError, match="open_clip_model.safetensors"):
        load_clip(str(tmp_path / "clip"))
    with pytest.raises(ValueError, match="not an open_clip architecture"):
        load_clip("no-such-clip")


def _random_lpips(net: str) -> lpips.LPIPS:
    torch.manual_seed(1)  # not load_lpips' own seed 0, so a cached backbone differs from its random trunk
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return lpips.LPIPS(net=net, pretrained=True, pnet_rand=True, verbose=False).eval()


def _torchvision_state(metric: lpips.LPIPS) -> dict[str, torch.Tensor]:
    """lpips keeps torchvision's feature indices: slice2.3.weight is torchvision's features.3.weight."""
    return {"features." + key.split(".", 1)[1]: value for key, value in metric.net.state_dict().items()}


@pytest.mark.parametrize("net", ["alex", "squeeze"])
def test_lpips_matches_the_package_and_embeddings_are_exact(tmp_path, net):
    reference = _random_lpips(net)
    torch.save(_torchvision_state(reference), tmp_path / "backbone.pth")
    metric = load_lpips(net, backbone_file=tmp_path / "backbone.pth")
    a, b = torch.rand(3, 3, 64, 64), torch.rand(3, 3, 64, 64)
    distances = metric(a, b)
    with torch.no_grad():
        assert torch.allclose(distances, reference(a, b, normalize=True).flatten(), atol=1e-6)
    embeddings = metric.embed(torch.cat([a, b]))
    assert torch.allclose(((embeddings[:3] - embeddings[3:]) ** 2).sum(1), distances, rtol=1e-4)
    assert not any(p.requires_grad for p in metric.parameters())
    # smaller images are upsampled to min_size (64) first, by forward and embed alike, so embed stays exact
    small_a, small_b = torch.rand(3, 3, 32, 32), torch.rand(3, 3, 32, 32)
    upsampled = [F.interpolate(x, size=(64, 64), mode="bilinear", align_corners=False) for x in (small_a, small_b)]
    small = metric(small_a, small_b)
    with torch.no_grad():
        assert torch.allclose(small, reference(*upsampled, normalize=True).flatten(), atol=1e-6)
    embeddings = metric.embed(torch.cat([small_a, small_b]))
    assert torch.allclose(((embeddings[:3] - embeddings[3:]) ** 2).sum(1), small, rtol=1e-4)
    assert torch.equal(metric.embed(small_a), metric.embed(upsampled[0]))
    native = load_lpips(net, backbone_file=tmp_path / "backbone.pth", min_size=32)
    with torch.no_grad():
        at_32 = reference(small_a, small_b, normalize=True).flatten()
        assert torch.allclose(native(small_a, small_b), at_32, atol=1e-6)


def test_lpips_backbone_from_torch_cache_or_refused(tmp_path):
    with pytest.raises(MissingWeightsError) as caught:
        load_lpips("alex")
    cached = Path(os.environ["TORCH_HOME"]) / "hub" / "checkpoints" / "alexnet-owt-7be5be79.pth"
    assert str(cached) in str(caught.value) and "torchvision.models.alexnet(weights='IMAGENET1K_V1')" in str(caught.value)
    random_metric = load_lpips("alex", allow_random=True)
    torch.manual_seed(123)  # the random trunk does not depend on what the caller drew before
    assert all(torch.equal(p, q) for p, q in zip(random_metric.parameters(),
                                                 load_lpips("alex", allow_random=True).parameters()))
    cached.parent.mkdir(parents=True)
    reference = _random_lpips("alex")
    torch.save(_torchvision_state(reference), cached)
    a, b = torch.rand(2, 3, 64, 64), torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(load_lpips("alex")(a, b), reference(a, b, normalize=True).flatten(), atol=1e-6)
        assert not torch.allclose(random_metric(a, b), reference(a, b, normalize=True).flatten())
    with pytest.raises(ValueError, match="net='resnet'"):
        load_lpips("resnet")


def test_preprocessing_resize_modes():
    images = torch.rand(2, 3, 20, 40)
    assert fit_to_size(images, (10, 10), mode="shortest").shape[-2:] == (10, 10)
    padded = fit_to_size(images, (10, 10), mode="longest")
    assert padded.shape[-2:] == (10, 10) and padded[..., :2, :].abs().sum() == 0  # zero padding on top
    assert fit_to_size(images, (20, 40)) is images
    with pytest.raises(ValueError, match="resize mode 'crop'"):
        fit_to_size(images, (10, 10), mode="crop")
    assert F.mse_loss(fit_to_size(images, (10, 20), mode="squash"), fit_to_size(images, (10, 20))) < 1e-8



# --- truncated or corrupt weights files: the error names the file and how to replace it ------------------------------

WORLD_MODELS = Path(__file__).resolve().parents[1] / "models" / "shortcut-world"


def _truncated(path: Path, keep: float = 0.5) -> Path:
    """`path` cut to a fraction of its bytes, as an interrupted download or copy leaves it."""
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def _world_copy(tmp_path: Path, kind: str) -> Path:
    """A copy of the committed world model of `kind` (classifier, clip, prior), to damage."""
    folder = sorted(WORLD_MODELS.glob(f"{kind}-*"))[0]
    return Path(shutil.copytree(folder, tmp_path / folder.name))


def _names_the_bad_file(caught: pytest.ExceptionInfo, path: Path, *more: str) -> str:
    message = str(caught.value)
    assert isinstance(caught.value, ValueError)  # a job shows it as one `error:` line, not a traceback
    assert f"weights file {path} is truncated or corrupt" in message, message
    assert "incomplete metadata" not in message and all(text in message for text in more), message
    return message


def test_truncated_world_models_name_the_file_and_say_how_to_get_a_good_one(tmp_path):
    from preimage.engine.priors import PixelDiffusionPrior

    classifier = _world_copy(tmp_path, "classifier")
    weights = _truncated(classifier / "model.safetensors")
    with pytest.raises(CorruptWeightsError) as caught:
        load_classifier(str(classifier))
    _names_the_bad_file(caught, weights, f"but the file has {weights.stat().st_size}", "delete it and rerun snakemake")
    weights.write_bytes(b"\x05\x00")  # not even the 8 bytes that give the header's size
    with pytest.raises(CorruptWeightsError, match="fewer than the 8"):
        load_classifier(str(classifier))
    clip = _world_copy(tmp_path, "clip")
    weights = _truncated(clip / "open_clip_model.safetensors", keep=0.9)
    with pytest.raises(CorruptWeightsError) as caught:
        load_clip(str(clip))
    _names_the_bad_file(caught, weights)
    prior = _world_copy(tmp_path, "prior")
    weights = _truncated(prior / "unet" / "diffusion_pytorch_model.safetensors")
    with pytest.raises(CorruptWeightsError) as caught:
        PixelDiffusionPrior.from_pretrained(prior)
    _names_the_bad_file(caught, weights)


def test_truncated_weights_of_real_models_say_how_to_download_them_again(tmp_path):
    model = _timm_model(num_classes=1000)
    snapshot = _hub_snapshot(tmp_path / "hf-cache", HUB_REPO)
    timm.models.save_for_hf(model, str(snapshot), safe_serialization=True)
    weights = _truncated(snapshot / "model.safetensors")
    for source in (f"hf-hub:{HUB_REPO}", ARCH):  # a Hub id, and a timm name whose weights are that repo's
        with pytest.raises(CorruptWeightsError) as caught:
            load_classifier(source)
        _names_the_bad_file(caught, weights, f"hf download {HUB_REPO}")
    torch.save(_timm_model(num_classes=5).state_dict(), tmp_path / "w.pth")
    pth = _truncated(tmp_path / "w.pth")
    with pytest.raises(CorruptWeightsError) as caught:
        load_classifier(ARCH, pretrained_file=pth)
    _names_the_bad_file(caught, pth)
    linear = tmp_path / "alex.pth"
    linear.write_bytes((Path(lpips.__file__).parent / "weights" / "v0.1" / "alex.pth").read_bytes())
    with pytest.raises(CorruptWeightsError) as caught:
        load_lpips("alex", linear_file=_truncated(linear), allow_random=True)
    assert "rerun snakemake" not in _names_the_bad_file(caught, linear, "pip install --force-reinstall lpips")


def test_a_sound_weights_file_passes_the_layout_check(tmp_path):
    path = tmp_path / "w.safetensors"
    safetensors.torch.save_file({"a": torch.zeros(3), "b": torch.ones(2, 2)}, str(path))
    assert safetensors_problem(path) is None
    path.write_bytes(path.read_bytes() + b"\0")
    assert "describes" in safetensors_problem(path)


def test_a_model_folder_without_its_config_file_is_refused_while_planning_and_by_the_loader(tmp_path):
    """The pipeline lists a real model's files while it plans a run: a folder its loader could not build from fails
    there, naming the config key, with the loader's own words."""
    from preimage.pipeline.models import model_files

    for kind, loader, layout in (("classifier", load_classifier, "config.json"),
                                 ("clip", load_clip, "open_clip_config.json")):
        folder = tmp_path / kind
        folder.mkdir()
        (folder / "model.safetensors").write_bytes(b"")
        with pytest.raises(ValueError, match=f"models.{kind}.source '{folder}': {folder} has no {layout}; expected"):
            model_files({"models": {kind: {"source": str(folder)}}}, kind)
        with pytest.raises(ValueError, match=f"source '{folder}': {folder} has no {layout}; expected"):
            loader(str(folder))
    (tmp_path / "prior").mkdir()
    with pytest.raises(ValueError, match="models.prior.source folder .*prior': no model_index.json"):
        model_files({"models": {"prior": {"source": str(tmp_path / "prior")}}}, "prior")
