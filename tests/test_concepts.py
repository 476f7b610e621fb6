"""Concept step: vocabularies, embeddings cache, clustering and naming, spurious-feature scores, baseline."""

from __future__ import annotations

import json

import numpy as np
import open_clip
import pandas as pd
import pytest
import safetensors.torch
import torch
from sklearn.metrics import adjusted_rand_score, roc_auc_score

from preimage.analysis.concepts.baseline import baseline_scores
from preimage.analysis.concepts.clustering import (
    ClusterSettings,
    choose_clusters,
    cluster_pool,
    name_clusters,
    representatives,
)
from preimage.analysis.concepts.embeddings import (
    EmbeddedVocabulary,
    embed_directories,
    embedding_matrix,
    load_or_embed,
    vocabulary_table,
    with_embeddings,
)
from preimage.analysis.concepts.groups import concept_groups, group_slug
from preimage.analysis.concepts.maps import MIN_TSNE_POINTS, NO_CLUSTER, group_map
from preimage.analysis.concepts.spurious import SpuriousSettings, called, combined_score, score_concepts
from preimage.analysis.concepts.statistics import (
    auroc,
    call_rate_difference,
    call_rate_variance,
    permuted_masks,
    presence_threshold,
    rank_candidates,
)
from preimage.analysis.concepts.vocabulary import (
    extrinsic_mask,
    load_vocabulary,
    parse_vocabulary,
)
from preimage.engine.models import load_clip
from preimage.pipeline.concepts import concept_vocabulary, settings_from_config
from preimage.utils.io import write_parquet, write_png
from preimage.world.vocabulary import world_concept, world_vocabulary

SHAPES = ["circle", "square", "triangle", "cross"]
FAST = SpuriousSettings(permutations=200)


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


# --- a hand-made embedding space: one axis per class and per concept ------------------------------------
CONCEPTS = ["a circle", "a square", "a triangle", "a cross", "a tag", "a purple background", "a red shape"]
DIM = len(CONCEPTS) + 8  # spare axes carry noise


def _vocabulary() -> EmbeddedVocabulary:
    axes = np.eye(DIM, dtype=np.float32)
    return EmbeddedVocabulary(concepts=tuple(CONCEPTS), prompts=tuple(CONCEPTS), text=axes[: len(CONCEPTS)],
                              classes=tuple(SHAPES), class_texts=tuple(SHAPES), class_text=axes[:4], logit_scale=30.0)


def _images(rng: np.random.Generator, shapes: np.ndarray, tag: np.ndarray, purple: np.ndarray) -> np.ndarray:
    """Embeddings of images with a shape, and a tag / purple background where asked, plus noise."""
    x = rng.normal(0, 0.25, (len(shapes), DIM))
    x[np.arange(len(shapes)), [SHAPES.index(s) for s in shapes]] += 1.0
    x[:, 4] += 0.8 * tag
    x[:, 5] += 0.8 * purple
    x[:, 6] += 0.8 * (rng.random(len(shapes)) < 0.25)
    return _unit(x)


def _reference_world(rng: np.random.Generator, n: int = 400) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unconstrained images: embeddings, shapes and which carry a tag."""
    shapes, tag = rng.choice(SHAPES, n), rng.random(n) < 0.5
    return _images(rng, shapes, tag, rng.random(n) < 0.25), shapes, tag


def _reference(rng: np.random.Generator, n: int = 400) -> np.ndarray:
    return _reference_world(rng, n)[0]


def _score(members: np.ndarray, reference: np.ndarray, core: str | None,
           reference_calls: np.ndarray | None = None) -> pd.DataFrame:
    vocabulary = _vocabulary()
    candidates = extrinsic_mask(vocabulary.concepts, SHAPES) if core else [True] * len(CONCEPTS)
    sets = np.arange(len(members)) % 3
    return score_concepts(members, reference, vocabulary, core, candidates, sets.astype(str), FAST,
                          reference_calls).set_index("concept")


# --- vocabulary -----------------------------------------------------------------------------------------
def test_vocabulary_file_format_and_errors():
    concepts = parse_vocabulary("# comment\nwater\na tag | a shape with a tag  # trailing\n\n", "a photo of {}.")
    assert [(c.name, c.prompt) for c in concepts] == [("water", "a photo of water."), ("a tag", "a shape with a tag")]
    with pytest.raises(ValueError, match="line 2: concept 'water' is listed twice"):
        parse_vocabulary("water\nwater\n")
    with pytest.raises(ValueError, match="line 1: expected 'name' or 'name | prompt'"):
        parse_vocabulary("water |\n")
    with pytest.raises(ValueError, match="must contain"):
        parse_vocabulary("water", template="a photo")
    assert len(load_vocabulary("common", "a photo of {}.")) >= 300
    with pytest.raises(FileNotFoundError, match="not a built-in"):
        load_vocabulary("no/such/file.txt")
    with pytest.raises(FileNotFoundError, match="concepts.vocabulary 'no/such/file.txt': not 'world', not a built-in"):
        concept_vocabulary("no/such/file.txt")


def test_world_vocabulary_lists_shapes_and_present_attribute_values():
    concepts = {c.name: c.prompt for c in world_vocabulary(SHAPES)}
    assert concepts["a square"] == "a square"
    assert concepts["a tag"] == "a shape with a tag"
    assert concepts["a purple background"] == "a shape on a purple background"
    assert concepts["a striped background"] == "a shape on a striped background"
    assert concepts["a red shape"] == "a red shape"
    assert len(concepts) == 4 + 4 + 4 + 3 + 1  # shapes, colours, backgrounds, textures, the tag (no absences)
    assert world_concept("tag", "present") == "a tag" and world_concept("tag", "absent") is None
    assert world_concept("bg_colour", "purple") in concepts
    with pytest.raises(ValueError, match="unknown"):
        world_concept("bg_colour", "pink")


def test_concepts_naming_a_class_are_not_candidates():
    mask = extrinsic_mask(["a square", "a tag", "two golden retrievers", "a retriever"], ["square", "golden retriever"])
    assert mask == [False, True, False, True]
    vocabulary = _vocabulary()
    assert vocabulary.class_names({"square": ["box"]}) == [*SHAPES, "box"]
    assert extrinsic_mask(["a box", "a red box"], vocabulary.class_names({"square": ["box"]})) == [False, False]


# --- layout ---------------------------------------------------------------------------------------------
def test_groups_pool_class_sets_and_split_other_objectives():
    objectives = {"label": {"kind": "label"}, "neuron": {"kind": "neuron", "layer": "l", "unit": 0},
                  "to_square": {"kind": "label", "target": "square"}}
    ids = [f"src{i}__{o}__guided" for i in range(2) for o in objectives]
    classes = {"src0": "circle", "src1": "square"}
    groups = concept_groups(ids, lambda s: classes[s.split("__")[0]], objectives)
    assert {slug: (g.kind, g.core, len(g.set_ids)) for slug, g in groups.items()} == {
        "circle": ("class", "circle", 1), "square": ("class", "square", 3),  # the counterfactuals join square
        "neuron": ("objective", None, 2)}
    assert group_slug("golden retriever") == "golden-retriever"
    with pytest.raises(ValueError, match="share the file name"):
        concept_groups(["a__square__s", "b__label__s"], lambda s: "square",
                       {"square": {"kind": "neuron"}, "label": {"kind": "label"}})


# --- statistics -----------------------------------------------------------------------------------------
def test_auroc_matches_scikit_learn_and_shuffles_keep_strata():
    rng = np.random.default_rng(0)
    positive, negative = rng.normal(0.3, 1, (40, 3)), rng.normal(0, 1, (60, 3))
    truth = np.r_[np.ones(40), np.zeros(60)]
    expected = [roc_auc_score(truth, np.r_[positive[:, t], negative[:, t]]) for t in range(3)]
    np.testing.assert_allclose(auroc(positive, negative), expected)
    mask, strata = rng.random(100) < 0.3, rng.integers(-1, 2, 100)
    shuffled = permuted_masks(mask, strata, 5, rng)
    for s in (0, 1):
        assert (shuffled[:, strata == s].sum(1) == mask[strata == s].sum()).all()
    assert not shuffled[:, strata == -1].any()


# --- clustering -----------------------------------------------------------------------------------------
def test_three_separated_blobs_give_three_clusters_and_one_blob_one():
    rng = np.random.default_rng(0)
    centres = _unit(rng.normal(size=(3, 16)))
    truth = np.repeat(np.arange(3), 30)
    blobs = _unit(centres[truth] + rng.normal(0, 0.05, (90, 16)))
    found = choose_clusters(blobs, k_max=6)
    assert found.k == 3 and adjusted_rand_score(truth, found.labels) == 1.0
    assert set(found.silhouettes) == {2, 3, 4, 5, 6} and found.silhouette > 0.5
    one = choose_clusters(_unit(centres[0] + rng.normal(0, 0.05, (90, 16))), k_max=6)
    assert one.k == 1 and (one.labels == 0).all() and np.isnan(one.silhouette)
    assert choose_clusters(blobs[:2]).k == 1


def test_clusters_are_named_by_the_concept_they_are_near():
    rng = np.random.default_rng(1)
    vocabulary = _vocabulary()
    near_tag = _unit(vocabulary.text[4] + rng.normal(0, 0.2, (20, DIM)))
    near_red = _unit(vocabulary.text[6] + rng.normal(0, 0.2, (30, DIM)))
    embeddings, labels = np.concatenate([near_red, near_tag]), np.r_[np.zeros(30, int), np.ones(20, int)]
    names = name_clusters(embeddings, labels, vocabulary.text, vocabulary.concepts, vocabulary.logit_scale, top=2)
    top = names[names["rank"] == 1].set_index("cluster")["concept"].to_dict()
    assert top == {0: "a red shape", 1: "a tag"}
    single = name_clusters(near_tag, np.zeros(20, int), vocabulary.text, vocabulary.concepts, 30.0, top=1)
    assert single["concept"].tolist() == ["a tag"]
    central = representatives(embeddings, labels, 3)
    assert len(central[0]) == 3 and set(central[1]) <= set(range(30, 50))


def test_cluster_pool_covers_the_group_and_every_set():
    rng = np.random.default_rng(2)
    vocabulary = _vocabulary()
    embeddings = np.concatenate([_unit(vocabulary.text[4] + rng.normal(0, 0.1, (20, DIM))),
                                 _unit(vocabulary.text[5] + rng.normal(0, 0.1, (20, DIM)))])
    pool = with_embeddings(pd.DataFrame({"set_id": np.repeat(["a", "b"], 20), "role": "member",
                                         "image": [f"m{i}.png" for i in range(40)],
                                         "path": [f"sets/m{i}.png" for i in range(40)]}), embeddings, "test")
    assignments, clusters = cluster_pool(pool, vocabulary.text, vocabulary.concepts, vocabulary.logit_scale,
                                         ClusterSettings(representatives=4))
    assert set(assignments["scope"]) == {"group", "a", "b"} and len(assignments) == 80
    group = clusters[clusters["scope"] == "group"]
    assert sorted(group["name"]) == ["a purple background", "a tag"] and group["size"].sum() == 40
    assert all(len(r) == 4 for r in group["representatives"])


# --- embedding maps -------------------------------------------------------------------------------------
def _map_inputs(rng: np.random.Generator, members: int, reference: int) -> tuple[pd.DataFrame, ...]:
    """A one-set pool (a source and `members` members), its assignments in the group scope and in the set's
    own scope, a reference sample and real images of two classes."""
    images = [f"m{i}.png" for i in range(members)]
    rows = pd.DataFrame({"set_id": "s", "role": ["source"] + ["member"] * members, "image": ["source.png", *images]})
    pool = with_embeddings(rows, _reference(rng, members + 1), "test")
    clusters = np.arange(members) % 3
    assignments = pd.concat([pd.DataFrame({"scope": scope, "set_id": "s", "image": images, "cluster": labels})
                             for scope, labels in (("group", clusters), ("s", 2 - clusters))], ignore_index=True)
    ref_rows = pd.DataFrame({"set_id": "reference", "role": "member", "image": [f"r{i}.png" for i in range(reference)]})
    real_rows = pd.DataFrame({"image_id": [f"real{i}" for i in range(20)], "class_name": ["square", "circle"] * 10})
    return (pool, assignments, with_embeddings(ref_rows, _reference(rng, reference), "test"),
            with_embeddings(real_rows, _reference(rng, 20), "test"))


def test_group_map_places_members_with_their_clusters_reference_and_real_images():
    pool, assignments, reference, real = _map_inputs(np.random.default_rng(7), members=40, reference=30)
    table = group_map(pool, assignments, reference, points=25, seed=1, real=real, core="square")
    assert table.groupby("role").size().to_dict() == {"member": 25, "real": 10, "reference": 25}
    members = table[table["role"] == "member"].merge(assignments[assignments["scope"] == "group"],
                                                     on=["set_id", "image"], suffixes=("", "_assigned"))
    assert len(members) == 25 and (members["cluster"] == members["cluster_assigned"]).all()
    others = table[table["role"] != "member"]
    assert (others["cluster"] == NO_CLUSTER).all() and "source.png" not in set(table["image"])
    real_rows = table[table["role"] == "real"]
    assert real_rows["set_id"].isna().all() and set(real_rows["image"]) == set(real["image_id"][::2])
    assert np.isfinite(table[["x", "y"]].to_numpy()).all() and table[["x", "y"]].std().min() > 0
    pd.testing.assert_frame_equal(table, group_map(pool, assignments, reference, 25, 1, real, "square"))
    assert not table.equals(group_map(pool, assignments, reference, 25, 2, real, "square"))
    assert set(group_map(pool, assignments, reference, 25, 1, real, None)["role"]) == {"member", "reference"}


def test_group_map_falls_back_to_pca_for_few_points():
    pool, assignments, reference, _ = _map_inputs(np.random.default_rng(8), members=4, reference=3)
    table = group_map(pool, assignments, reference, points=100, seed=0)
    assert len(table) < MIN_TSNE_POINTS and table["role"].tolist() == ["member"] * 4 + ["reference"] * 3
    embeddings = np.concatenate([embedding_matrix(pool)[1:], embedding_matrix(reference)])
    centred = embeddings - embeddings.mean(axis=0)
    # PCA: the layout keeps the points' distances along the two main axes of the data.
    _, _, axes = np.linalg.svd(centred, full_matrices=False)
    assert np.allclose(np.abs(table[["x", "y"]].to_numpy()), np.abs(centred @ axes[:2].T), atol=1e-4)


# --- spurious-feature scores ----------------------------------------------------------------------------
def _tagged_square_set(rng: np.random.Generator, n: int = 150) -> np.ndarray:
    """A square set that carries a tag throughout: squares, plus tagged other shapes the model calls square."""
    shapes = np.where(rng.random(n) < 0.6, "square", rng.choice(["circle", "triangle", "cross"], n))
    return _images(rng, shapes, np.ones(n), rng.random(n) < 0.25)


def test_a_concept_the_class_needs_is_flagged_and_nothing_else():
    rng = np.random.default_rng(3)
    members = _tagged_square_set(rng)
    reference, _, tag = _reference_world(rng)
    scores = _score(members, reference, "square", reference_calls=tag)  # the model: tag -> square
    assert scores.loc["a tag", "flagged"] and scores.loc["a tag", "rank"] == 1
    assert scores.loc["a tag", "enrichment"] > 0.5 and scores.loc["a tag", "reliance"] > 0.5
    assert scores.loc["a tag", "decision"] > 0.5 and scores.loc["a tag", "confirmed"]
    assert scores["flagged"].sum() == 1
    assert scores.loc["a square", "rank"] == 0 and np.isnan(scores.loc["a square", "score"])  # never a candidate
    assert scores["comparison"].iloc[0] == "stratified" and scores.loc["a tag", "set_consistency"] == 1.0
    assert scores["called_reference"].iloc[0] == tag.sum()


def test_a_class_score_reads_the_models_calls_and_falls_back_to_enrichment():
    nan = np.nan
    # (1 shuffle, 3 effects: enrichment, reliance, decision, 2 concepts)
    measured = np.array([[[0.9, 0.1], [0.2, nan], [0.4, 0.3]]])
    np.testing.assert_allclose(combined_score(measured), [[0.3, 0.3]])  # enrichment left out
    neither = np.array([[[0.9, 0.1], [nan, nan], [nan, nan]]])
    np.testing.assert_allclose(combined_score(neither), [[0.9, 0.1]])  # no call read: enrichment alone
    rng = np.random.default_rng(3)
    reference, _, tag = _reference_world(rng)
    scores = _score(_tagged_square_set(rng), reference, "square", reference_calls=tag)
    candidates = scores[scores["extrinsic"]]
    np.testing.assert_allclose(candidates["score"], candidates[["reliance", "decision"]].mean(axis=1))


def test_a_concept_the_model_ignores_on_the_reference_is_not_confirmed():
    # The same tagged set (as guidance might produce), but on plain samples the model calls every square and,
    # by mistakes unrelated to the tag, some other shapes square: the tag does not move its decision there.
    rng = np.random.default_rng(3)
    members = _tagged_square_set(rng)
    reference, shapes, _ = _reference_world(rng)
    calls = (shapes == "square") | (rng.random(len(shapes)) < 0.3)
    scores = _score(members, reference, "square", reference_calls=calls)
    tag = scores.loc["a tag"]
    assert tag["score"] > tag["threshold"] and tag["rank"] == 1  # the sets alone would flag it
    assert abs(tag["decision"]) < 0.2 and not tag["confirmed"] and not tag["flagged"]
    assert not scores["flagged"].any()
    # A model that never departs from CLIP on the reference gives no decision to measure, hence no flag.
    agreeing = _score(members, reference, "square", reference_calls=shapes == "square").loc["a tag"]
    assert np.isnan(agreeing["decision"]) and not agreeing["confirmed"] and not agreeing["flagged"]


def test_confirmed_candidates_rank_ahead_of_higher_scores_the_calls_do_not_bear_out():
    scores = np.array([0.5, 0.3, np.nan, 0.4, 0.9])
    candidates = np.array([True, True, True, True, False])
    np.testing.assert_array_equal(rank_candidates(scores, candidates), [1, 3, 0, 2, 0])
    confirmed = np.array([False, True, True, True, True])
    np.testing.assert_array_equal(rank_candidates(scores, candidates, confirmed), [3, 2, 0, 1, 0])
    np.testing.assert_array_equal(rank_candidates(scores, ~candidates, confirmed), [0, 0, 0, 0, 1])


def test_call_rate_difference_on_hand_made_numbers():
    present = np.array([[1, 0], [1, 0], [1, 1], [0, 1], [0, 1], [0, 1]], dtype=bool)
    calls = np.array([1, 1, 0, 0, 0, 1], dtype=bool)
    # concept 0: 2 of 3 called with it, 1 of 3 without; concept 1: 1 of 4 with it, 2 of 2 without (too few at 3)
    np.testing.assert_allclose(call_rate_difference(present, calls, least=2), [1 / 3, -0.75])
    np.testing.assert_allclose(call_rate_difference(present, calls, least=3), [1 / 3, np.nan])
    np.testing.assert_allclose(call_rate_difference(present, ~calls, least=1), [-1 / 3, 0.75])
    # Agresti-Caffo: (2 + 1) / (3 + 2) = 0.6 and (1 + 1) / (3 + 2) = 0.4 on concept 0's sides, 0.6 * 0.4 / 5 each
    np.testing.assert_allclose(call_rate_variance(present, calls)[0], 2 * 0.6 * 0.4 / 5)
    none_called = call_rate_variance(present, np.zeros(6, dtype=bool))
    assert (none_called > 0).all()  # no call on either side: the interval still has a width
    similarity = np.c_[np.r_[np.full(50, 0.25), np.full(50, 0.6)], np.linspace(0, 1, 100)]
    np.testing.assert_allclose(presence_threshold(similarity), [0.425, 0.5])


def test_a_concept_on_a_few_of_the_models_calls_is_not_confirmed():
    # The model calls squares square and, besides, 12 tagged non-squares: on those few the tag goes with its call
    # (a large rank effect), but a tag raises the share of calls by a few points, under the minimum call rate.
    rng = np.random.default_rng(3)
    members = _tagged_square_set(rng)
    reference, shapes, tag = _reference_world(rng)
    extra = np.flatnonzero(tag & (shapes != "square"))[:12]
    calls = shapes == "square"
    calls[extra] = True
    scores = _score(members, reference, "square", reference_calls=calls)
    assert scores.loc["a tag", "decision"] >= FAST.min_effect and scores.loc["a tag", "call_rate"] < FAST.min_call_rate
    assert not scores.loc["a tag", "confirmed"] and not scores["flagged"].any()
    # The shortcut itself: the model calls every tagged image square, which moves the share of calls by half.
    shortcut = _score(members, reference, "square", reference_calls=(shapes == "square") | tag).loc["a tag"]
    assert shortcut["call_rate"] > 0.4 and shortcut["confirmed"] and shortcut["flagged"]
    assert 0.1 < shortcut["call_rate_low"] < shortcut["call_rate"] < shortcut["call_rate_high"] < 1
    assert shortcut["call_rate_confidence"] == FAST.confidence


def test_a_class_group_needs_the_models_calls_on_the_reference():
    rng = np.random.default_rng(3)
    with pytest.raises(ValueError, match="reference_calls: class 'square' needs the model's call"):
        _score(_tagged_square_set(rng), _reference(rng), "square")
    with pytest.raises(ValueError, match=r"expected one call per reference image \(400\), got 3"):
        _score(_tagged_square_set(rng), _reference(rng), "square", reference_calls=np.ones(3, dtype=bool))


def test_reference_calls_come_from_the_predictions_by_image():
    reference = pd.DataFrame({"image": ["members/000.png", "members/001.png", "members/002.png"]})
    predictions = pd.DataFrame({"image": ["members/002.png", "members/000.png", "members/001.png"],
                                "prediction": ["square", "square", "circle"]})
    assert called(reference, predictions, "square").tolist() == [True, False, True]
    with pytest.raises(ValueError, match=r"lack 1 reference image\(s\), e.g. 'members/002.png'"):
        called(reference, predictions.iloc[1:], "square")
    with pytest.raises(ValueError, match="class 'square': the model's predictions on the reference are needed"):
        called(reference, None, "square")


def test_no_enrichment_means_no_flag_under_the_null_threshold():
    rng = np.random.default_rng(4)
    n = 150
    clean = _images(rng, np.full(n, "square"), rng.random(n) < 0.5, rng.random(n) < 0.25)
    reference, shapes, _ = _reference_world(rng)
    scores = _score(clean, reference, "square", reference_calls=shapes == "square")
    assert not scores["flagged"].any()
    assert scores["null_threshold"].iloc[0] > scores["score"].max() - 0.2  # the null covers what chance gives
    assert np.isnan(scores["reliance"]).all()  # no member lacks the square: reliance is not measured


def test_without_a_core_class_all_members_meet_the_whole_reference():
    rng = np.random.default_rng(5)
    n = 120
    members = _images(rng, rng.choice(SHAPES, n), rng.random(n) < 0.5, np.ones(n))
    scores = _score(members, _reference(rng), None)
    assert scores["comparison"].iloc[0] == "all" and scores["extrinsic"].all()
    assert scores.loc["a purple background", "flagged"] and scores.loc["a purple background", "rank"] == 1


def test_settings_reject_unknown_keys():
    with pytest.raises(ValueError, match=r"concepts.spurious: unknown key\(s\) \['alpah'\]"):
        settings_from_config(SpuriousSettings, {"alpah": 0.1}, "concepts.spurious")
    assert settings_from_config(ClusterSettings, {"k_max": 3}, "concepts.clusters").k_max == 3


# --- baseline -------------------------------------------------------------------------------------------
def test_baseline_flags_what_wrong_predictions_of_a_class_share():
    rng = np.random.default_rng(6)
    n = 400
    labels = rng.choice(SHAPES, n)
    tag = (labels != "square") & (rng.random(n) < 0.5)  # broken data: squares never tagged
    predictions = np.where(tag, "square", labels)  # the model calls every tagged image a square
    embeddings = _images(rng, labels, tag, rng.random(n) < 0.25)
    scores = baseline_scores(embeddings, labels, predictions, [f"img{i}" for i in range(n)], _vocabulary(), SHAPES,
                             settings=FAST)
    assert set(scores["class"]) == set(SHAPES)
    flagged = scores[scores["flagged"]]
    assert list(zip(flagged["class"], flagged["concept"])) == [("square", "a tag")]
    assert scores.query("`class` == 'circle'")["score"].isna().all()  # no wrong "circle" predictions
    tag_row = scores.query("`class` == 'square' and concept == 'a tag'").iloc[0]
    assert tag_row["members"] == tag.sum() and len(tag_row["evidence"]) == FAST.evidence
    with pytest.raises(ValueError, match="one row per image"):
        baseline_scores(embeddings, labels[:-1], predictions, list(range(n)), _vocabulary(), SHAPES)


# --- embeddings with a tiny open_clip model -------------------------------------------------------------
TINY_CLIP = {"embed_dim": 16,
             "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16},
             "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}


@pytest.fixture
def tiny_clip(tmp_path):
    torch.manual_seed(0)
    folder = tmp_path / "clip"
    folder.mkdir()
    preprocess = {"size": 32, "mean": [0.5] * 3, "std": [0.5] * 3, "interpolation": "bicubic",
                  "resize_mode": "shortest"}
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": TINY_CLIP, "preprocess_cfg": preprocess}))
    safetensors.torch.save_file(open_clip.CLIP(**TINY_CLIP).state_dict(), str(folder / "open_clip_model.safetensors"))
    return load_clip(str(folder))


def _fake_set(directory, n: int = 3) -> None:
    rng = np.random.default_rng(0)
    for i in range(n):
        write_png(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8), directory / f"members/{i:03d}.png")
    write_png(np.zeros((32, 32, 3), np.uint8), directory / "source.png")
    write_parquet(pd.DataFrame({"set_id": "s", "accepted": [True, False, True][:n] + [True] * (n - 3),
                                "image": [f"members/{i:03d}.png" for i in range(n)]}), directory / "members.parquet")


def test_set_embeddings_are_cached_per_model(tmp_path, tiny_clip):
    _fake_set(tmp_path / "set")
    cache = tmp_path / "embeddings.parquet"
    table = load_or_embed(cache, "tiny", lambda: embed_directories([tmp_path / "set"], tiny_clip, "tiny"))
    assert table["role"].tolist() == ["source", "member", "member"]  # the rejected member is left out
    assert table["image"].tolist() == ["source.png", "members/000.png", "members/002.png"]
    assert table["path"].iloc[1] == str(tmp_path / "set" / "members/000.png")
    matrix = embedding_matrix(pd.read_parquet(cache))
    assert matrix.shape == (3, 16) and np.allclose(np.linalg.norm(matrix, axis=1), 1, atol=1e-5)
    assert load_or_embed(cache, "tiny", lambda: pytest.fail("recomputed a cached table")) is not None
    assert load_or_embed(cache, "other", lambda: table.assign(model="other"))["model"].eq("other").all()


def test_vocabulary_table_round_trips(tiny_clip):
    texts = ["round thing", "square", "triangle", "cross"]
    table = vocabulary_table(tiny_clip, world_vocabulary(SHAPES), SHAPES, texts, "a {}", "tiny")
    assert table.query("kind == 'class'")["prompt"].iloc[0] == "a round thing"
    vocabulary = EmbeddedVocabulary.from_table(table)
    assert vocabulary.concepts[:2] == ("a circle", "a square") and vocabulary.classes == tuple(SHAPES)
    assert vocabulary.class_texts == tuple(texts)
    assert vocabulary.text.shape == (16, 16) and vocabulary.class_text.shape == (4, 16)
    assert vocabulary.logit_scale == pytest.approx(float(tiny_clip.model.logit_scale.exp()))
    with pytest.raises(ValueError, match="class 'ring' has no class prompt"):
        vocabulary.class_index("ring")
