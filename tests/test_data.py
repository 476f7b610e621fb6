"""Source-image selection: per-class counts, seed determinism, the three sources, and named errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from preimage.pipeline.sources import (
    load_images,
    select_from_folder,
    select_from_manifest,
    select_from_world,
    validate_selection,
)
from preimage.world.generator import WorldSpec, make_split

CLASSES = {"cat": 6, "dog": 4, "emu": 3}


@pytest.fixture
def image_folder(tmp_path) -> Path:
    """root/<class>/<i>.png with non-square images whose pixels encode (class, index)."""
    root = tmp_path / "images"
    for c, (name, count) in enumerate(CLASSES.items()):
        (root / name).mkdir(parents=True)
        for i in range(count):
            pixels = np.full((24, 36, 3), (40 * c, 20 * i, 200), dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    (root / "cat" / "notes.txt").write_text("not an image")
    return root


def test_folder_selection_counts_and_labels(image_folder):
    table = select_from_folder(image_folder, per_class=3, seed=0)
    assert table["class_name"].value_counts().to_dict() == {"cat": 3, "dog": 3, "emu": 3}
    assert (table["label"] == table["class_name"].map({"cat": 0, "dog": 1, "emu": 2})).all()
    assert all(Path(s).parent.name == c for s, c in zip(table["source"], table["class_name"]))
    assert list(table.columns) == ["image_id", "label", "class_name", "source", "index"]
    everything = select_from_folder(image_folder, per_class=None, seed=0)
    assert len(everything) == sum(CLASSES.values())


def test_selection_is_seeded_per_class(image_folder):
    first = select_from_folder(image_folder, per_class=2, seed=5)
    assert first.equals(select_from_folder(image_folder, per_class=2, seed=5))
    seeds = {tuple(select_from_folder(image_folder, per_class=2, seed=s)["image_id"]) for s in range(6)}
    assert len(seeds) > 1
    more = select_from_folder(image_folder, per_class=3, seed=5)
    for name in CLASSES:  # raising per_class only appends
        assert list(more[more.class_name == name].image_id[:2]) == list(first[first.class_name == name].image_id)
    only_dog = select_from_folder(image_folder, per_class=2, seed=5, classes=["dog"])
    assert list(only_dog.image_id) == list(first[first.class_name == "dog"].image_id)


def test_folder_labels_follow_given_label_names(image_folder):
    names = ["ant", "emu", "dog", "cat"]
    table = select_from_folder(image_folder, per_class=1, seed=0, classes=["emu", "cat"], label_names=names)
    assert list(table.class_name) == ["emu", "cat"] and list(table.label) == [1, 3]
    with pytest.raises(ValueError, match=r"\['emu'\] are not among label_names"):
        select_from_folder(image_folder, per_class=1, seed=0, label_names=["cat", "dog"])


def test_folder_errors_name_the_problem(image_folder, tmp_path):
    with pytest.raises(FileNotFoundError, match="missing"):
        select_from_folder(tmp_path / "missing", per_class=1, seed=0)
    with pytest.raises(ValueError, match=r"unknown classes \['cow'\]"):
        select_from_folder(image_folder, per_class=1, seed=0, classes=["cat", "cow"])
    with pytest.raises(ValueError, match="class 'emu' has 3 images; per_class=4"):
        select_from_folder(image_folder, per_class=4, seed=0)
    with pytest.raises(ValueError, match="per_class=0"):
        select_from_folder(image_folder, per_class=0, seed=0)
    (tmp_path / "flat").mkdir()
    with pytest.raises(ValueError, match="no class sub-folders"):
        select_from_folder(tmp_path / "flat", per_class=1, seed=0)


def test_manifest_with_names_or_indices(image_folder):
    rows = [("cat/0.png", "cat"), ("cat/1.png", "cat"), ("dog/2.png", "dog"), ("emu/1.png", "emu")]
    manifest = image_folder / "list.csv"
    pd.DataFrame(rows, columns=["path", "label"]).to_csv(manifest, index=False)
    table = select_from_manifest(manifest, per_class=1, seed=0)
    assert list(table.class_name) == ["cat", "dog", "emu"] and list(table.label) == [0, 1, 2]
    assert all(Path(s).is_file() for s in table.source)
    indexed = image_folder / "list.parquet"
    pd.DataFrame({"path": [r[0] for r in rows], "label": [3, 3, 0, 1], "image_id": list("abcd")}).to_parquet(indexed)
    table = select_from_manifest(indexed, per_class=None, seed=0, label_names=["dog", "emu", "x", "cat"])
    assert sorted(table.image_id) == list("abcd")
    assert dict(zip(table.image_id, table.class_name)) == {"a": "cat", "b": "cat", "c": "dog", "d": "emu"}
    plain = select_from_manifest(indexed, per_class=1, seed=0, classes=["3"])
    assert list(plain.class_name) == ["3"] and list(plain.label) == [3]


def test_manifest_errors_name_the_column_or_file(image_folder):
    bad = image_folder / "bad.csv"
    pd.DataFrame({"file": ["cat/0.png"], "label": ["cat"]}).to_csv(bad, index=False)
    with pytest.raises(ValueError, match="'path'"):
        select_from_manifest(bad, per_class=1, seed=0)
    pd.DataFrame({"path": ["cat/0.png", "cat/1.png"], "label": [0.5, 1.0]}).to_csv(bad, index=False)
    with pytest.raises(ValueError, match="label must be all class names"):
        select_from_manifest(bad, per_class=1, seed=0)
    pd.DataFrame({"path": ["cat/0.png", "cat/1.png"], "label": ["cat", None]}).to_parquet(image_folder / "gap.parquet")
    with pytest.raises(ValueError, match="label"):
        select_from_manifest(image_folder / "gap.parquet", per_class=1, seed=0)
    pd.DataFrame({"path": ["cat/0.png", "cat/99.png"], "label": ["cat", "cat"]}).to_csv(bad, index=False)
    with pytest.raises(FileNotFoundError, match="99.png"):
        select_from_manifest(bad, per_class=1, seed=0)
    pd.DataFrame({"path": ["cat/0.png"], "label": ["cow"]}).to_csv(bad, index=False)
    with pytest.raises(ValueError, match="cow"):
        select_from_manifest(bad, per_class=1, seed=0, label_names=["cat"])
    with pytest.raises(ValueError, match=r"\.parquet or \.csv"):
        (image_folder / "list.json").write_text("[]")
        select_from_manifest(image_folder / "list.json", per_class=1, seed=0)


def test_load_images_gives_unit_range_tensors_in_row_order(image_folder, tmp_path):
    table = select_from_folder(image_folder, per_class=2, seed=3)
    images = load_images(table, 16)
    assert images.shape == (6, 3, 16, 16) and images.min() >= 0 and images.max() <= 1
    for image, name, source in zip(images, table.class_name, table.source):
        index = int(Path(source).stem)
        expected = np.array([40 * list(CLASSES).index(name), 20 * index, 200]) / 255
        assert np.allclose(image.mean((1, 2)).numpy(), expected, atol=1 / 255)
    table.to_parquet(tmp_path / "selection.parquet")  # what a Snakemake rule hands on
    again = load_images(validate_selection(pd.read_parquet(tmp_path / "selection.parquet")), 16)
    assert np.array_equal(images.numpy(), again.numpy())
    with pytest.raises(ValueError, match="label"):
        validate_selection(table.assign(label=-1))


def test_world_selection_loads_the_split_pixels(tiny_world):
    spec = WorldSpec.from_config(tiny_world)
    table = select_from_world(spec, "classifier_test", per_class=2, seed=0, classes=["square", "circle"])
    assert list(table.class_name) == ["square", "square", "circle", "circle"]
    assert list(table.label) == [spec.shapes.index("square")] * 2 + [spec.shapes.index("circle")] * 2
    attributes, pixels = make_split(spec, "classifier_test")
    assert list(attributes.image_id[table["index"]]) == list(table.image_id)
    images = load_images(table, spec.image_size, world=spec)
    assert np.array_equal((images.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8), pixels[table["index"]])
    assert load_images(table, 2 * spec.image_size, world=spec).shape[-1] == 2 * spec.image_size
    with pytest.raises(ValueError, match="pass world="):
        load_images(table, spec.image_size)
    other = WorldSpec.from_config(tiny_world | {"seed": tiny_world["seed"] + 1})
    with pytest.raises(ValueError, match="does not generate"):
        load_images(table, spec.image_size, world=other)
    with pytest.raises(ValueError, match="world split 'nope'"):
        select_from_world(spec, "nope", per_class=1, seed=0)
    with pytest.raises(ValueError, match=r"unknown classes \['hexagon'\]"):
        select_from_world(spec, "classifier_test", per_class=1, seed=0, classes=["hexagon"])
