"""The invariant-set engine: the Python API, per-member artifacts, atomic writes and resuming."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import timm
import torch

import preimage
from preimage.engine.models import load_classifier, load_lpips
from preimage.engine.objectives import from_config, label, lowpass
from preimage.engine.priors import PixelDiffusionPrior
from preimage.engine.samplers import GuidedSampler, PooledRejectionSampler, RejectionSampler
from preimage.engine.samplers.spec import from_config as sampler_from_config
from preimage.engine.set_files import MEMBERS_FILE, SUMMARY_FILE
from preimage.engine.sets import draw_pool, generate_sets, is_complete, read_set, reference_set, write_set
from preimage.world.training.prior import build_scheduler, build_unet

TINY_PRIOR = {"block_out_channels": [8, 16], "layers_per_block": 1}


@pytest.fixture(scope="module")
def prior(tmp_path_factory) -> PixelDiffusionPrior:
    path = tmp_path_factory.mktemp("prior")
    torch.manual_seed(0)
    build_unet(16, TINY_PRIOR).save_pretrained(path / "unet")
    build_scheduler().save_pretrained(path / "scheduler")
    return PixelDiffusionPrior.from_pretrained(path)


@pytest.fixture(scope="module")
def classifier(tmp_path_factory) -> torch.nn.Module:
    path = tmp_path_factory.mktemp("classifier")
    torch.manual_seed(0)
    model = timm.create_model("resnet10t", pretrained=False, num_classes=3, channels=(8, 16, 32, 64))
    timm.models.save_for_hf(model, str(path), model_config={"label_names": ["circle", "square", "triangle"]},
                            model_args={"channels": [8, 16, 32, 64]}, data_config={"input_size": (3, 16, 16)},
                            safe_serialization=True)
    return load_classifier(str(path))


@pytest.fixture
def source() -> torch.Tensor:
    return torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(1))


def test_sample_records_every_member_and_summarises_the_set(prior, classifier, source):
    result = preimage.sample(label(classifier), source, prior, RejectionSampler(num_steps=2, batch_size=3), 5,
                             seed=0, perceptual=load_lpips("alex", allow_random=True))
    members = result.members
    assert len(members) == 5 and result.images.shape == (5, 3, 16, 16)
    assert members["accepted"].dtype == bool
    assert (members["objective_kind"] == "label").all() and not members["counterfactual"].any()
    source_class = int(classifier(source).argmax())
    assert json.loads(members["target"].iloc[0]) == source_class
    assert [json.loads(a) == source_class for a in members["achieved"]] == members["accepted"].tolist()
    assert (members["lpips_to_source"] >= 0).all() and (members["l2_to_source"] > 0).all()
    summary = result.summary
    assert summary["members"] == 5 and summary["accepted"] == int(members["accepted"].sum())
    assert summary["acceptance_rate"] == pytest.approx(members["accepted"].mean())
    assert summary["diversity_space"] == "lpips"


def test_same_seed_gives_the_same_set(prior, classifier, source):
    sampler = GuidedSampler(num_steps=2, guidance_scale=0.3, batch_size=2)
    first = preimage.sample(label(classifier), source, prior, sampler, 3, seed=4)
    second = preimage.sample(label(classifier), source, prior, sampler, 3, seed=4)
    assert torch.equal(first.images, second.images)
    assert first.members["seed"].tolist() == second.members["seed"].tolist()


def test_counterfactual_target_by_class_name(classifier):
    objective = from_config({"kind": "label", "target": "triangle"}, classifier)
    assert objective.describe()["target"] == 2
    with pytest.raises(ValueError, match="'hexagon': not a class of the model"):
        from_config({"kind": "label", "target": "hexagon"}, classifier)


def test_write_set_stores_pngs_members_and_summary(prior, source, tmp_path):
    result = preimage.sample(lowpass(4, tolerance=0.5), source, prior, RejectionSampler(num_steps=2), 3)
    write_set(result, tmp_path / "set", extra={"sampler_name": "rejection"})
    members = pd.read_parquet(tmp_path / "set" / MEMBERS_FILE)
    assert all((tmp_path / "set" / name).is_file() for name in members["image"])
    assert (tmp_path / "set" / "source.png").is_file()
    summary = pd.read_parquet(tmp_path / "set" / SUMMARY_FILE)
    assert summary.loc[0, "sampler_name"] == "rejection" and is_complete(tmp_path / "set")


def test_a_crash_mid_write_leaves_no_summary_and_a_rerun_resumes(prior, classifier, source, tmp_path, monkeypatch):
    samplers = {"rejection": RejectionSampler(num_steps=2), "guided": GuidedSampler(num_steps=2, batch_size=2)}
    row = {"image_id": "img-1", "class_name": "circle"}
    args = (source, row, "label", label(classifier), samplers, prior, 2, 0, None, tmp_path)

    import preimage.engine.sets as sets

    real_write_parquet = sets.write_parquet

    def crash_on_second_summary(table, path):
        if str(path).endswith(f"guided/{SUMMARY_FILE}"):
            raise RuntimeError("killed")
        real_write_parquet(table, path)

    monkeypatch.setattr(sets, "write_parquet", crash_on_second_summary)
    with pytest.raises(RuntimeError, match="killed"):
        generate_sets(*args)
    assert is_complete(tmp_path / "img-1__label__rejection")
    assert not is_complete(tmp_path / "img-1__label__guided")
    assert not list((tmp_path / "img-1__label__guided").glob(".*"))  # no temp file left behind
    finished = (tmp_path / "img-1__label__rejection" / SUMMARY_FILE).stat().st_mtime_ns

    monkeypatch.setattr(sets, "write_parquet", real_write_parquet)
    generate_sets(*args)
    assert is_complete(tmp_path / "img-1__label__guided")
    assert (tmp_path / "img-1__label__rejection" / SUMMARY_FILE).stat().st_mtime_ns == finished  # skipped


def test_each_set_draws_its_own_members(prior, classifier, source, tmp_path):
    """Sets share the run's seed but not their start noises, so pooling sets pools independent draws."""
    samplers = {"rejection": RejectionSampler(num_steps=2)}
    for image_id in ("img-1", "img-2"):
        generate_sets(source, {"image_id": image_id, "class_name": "circle"}, "label", label(classifier), samplers,
                      prior, 3, 0, None, tmp_path)
    seeds = [pd.read_parquet(tmp_path / f"{i}__label__rejection" / MEMBERS_FILE)["seed"].tolist() for i in ("img-1", "img-2")]
    assert not set(seeds[0]) & set(seeds[1])
    generate_sets(source, {"image_id": "img-3", "class_name": "circle"}, "label", label(classifier), samplers,
                  prior, 3, 0, None, tmp_path / "again")
    rerun = pd.read_parquet(tmp_path / "again" / "img-3__label__rejection" / MEMBERS_FILE)["seed"].tolist()
    generate_sets(source, {"image_id": "img-3", "class_name": "circle"}, "label", label(classifier), samplers,
                  prior, 3, 0, None, tmp_path)
    assert pd.read_parquet(tmp_path / "img-3__label__rejection" / MEMBERS_FILE)["seed"].tolist() == rerun


def test_rejection_sets_can_test_the_reference_samples_draws(prior, classifier, source, tmp_path):
    """The reference written to disk and read back is a pool: a pooled set's members are reference draws, and
    a class-prompted reference gives each class's sets only the draws made under that class's prompt."""
    write_set(reference_set(prior, 8, seed=1, num_steps=2), tmp_path / "reference")
    reference = read_set(tmp_path / "reference")
    pool = draw_pool(reference)
    assert len(pool) == 8 and pool.num_steps == 2 and pool.serves(RejectionSampler(num_steps=2))
    generate_sets(source, {"image_id": "img-1", "class_name": "circle"}, "label", label(classifier),
                  {"rejection": PooledRejectionSampler(pool)}, prior, 5, 0, None, tmp_path / "sets")
    members = pd.read_parquet(tmp_path / "sets" / "img-1__label__rejection" / MEMBERS_FILE)
    assert set(members["seed"]) <= set(reference.members["seed"]) and members["seed"].is_unique
    assert json.loads(members["sampler_params"].iloc[0])["pool"] == 8
    stored = read_set(tmp_path / "sets" / "img-1__label__rejection")
    by_seed = dict(zip(reference.members["seed"], reference.images))
    for seed, image in zip(members["seed"], stored.images):
        torch.testing.assert_close(image, by_seed[seed])  # the very draw, through the same 8-bit PNG
    per_class = reference.members.assign(source_class=["circle"] * 4 + ["square"] * 4)
    squares = draw_pool(type(reference)(per_class, reference.images, reference.source, reference.summary), "square")
    assert squares.seeds.tolist() == reference.members["seed"].tolist()[4:]
    with pytest.raises(ValueError, match="no draws for class 'cross'"):
        draw_pool(reference, "cross")


def test_sampler_spec_errors_name_the_field():
    with pytest.raises(ValueError, match="unknown kind 'annealed'"):
        sampler_from_config({"kind": "annealed"})
    with pytest.raises(ValueError, match="field 'guidance_scale' is not allowed for kind 'rejection'"):
        sampler_from_config({"kind": "rejection", "guidance_scale": 1.0})
    with pytest.raises(ValueError, match="needs an LPIPS module"):
        sampler_from_config({"kind": "guided", "repulsion_space": "lpips"})
    assert isinstance(sampler_from_config({"kind": "guided", "num_steps": 3}), GuidedSampler)
