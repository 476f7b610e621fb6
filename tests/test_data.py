"""Source-image selection: per-class counts, seed determinism, the three sources, named errors, and the input
rules: manifest paths confined to a root, links leading outside refused, a minimum size, deliberate conversion."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from preimage.pipeline.config import schema_defaults
from preimage.pipeline.sources import (
    load_images,
    select_from_folder,
    select_from_manifest,
    select_from_world,
    select_sources_from_config,
    source_settings,
    validate_selection,
)
from preimage.utils.images import BACKGROUND, MIN_IMAGE_SIDE, load_image, read_rgb
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


# --- input rules: manifest paths confined to a root, folder links, a minimum size ------------------------------


def save_png(path: Path, height: int = 24, width: int = 24, value: int = 90) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((height, width, 3), value, dtype=np.uint8)).save(path)
    return path


def write_manifest(folder: Path, paths: list[str], labels: list[str], name: str = "list.csv") -> Path:
    manifest = folder / name
    pd.DataFrame({"path": paths, "label": labels}).to_csv(manifest, index=False)
    return manifest


def test_a_manifest_row_outside_its_folder_is_refused_naming_manifest_and_row(image_folder, tmp_path):
    outside = save_png(tmp_path / "outside.png")
    manifest = write_manifest(image_folder, ["cat/0.png", "../outside.png"], ["cat", "dog"])
    with pytest.raises(ValueError) as caught:
        select_from_manifest(manifest, per_class=1, seed=0)
    message = str(caught.value)
    row = f"manifest {str(manifest)!r}: row 1 (path '../outside.png') resolves to {str(outside.resolve())!r}"
    assert row in message
    assert f"outside the image root {str(image_folder.resolve())!r}" in message
    assert "sets.sources.image_root" in message and "sets.sources.allow_outside_root: true" in message
    allowed = select_from_manifest(manifest, per_class=1, seed=0, allow_outside_root=True)
    assert Path(allowed.set_index("class_name").loc["dog", "source"]).resolve() == outside.resolve()
    # '..' that stays inside the folder is normalised and accepted
    inside = write_manifest(image_folder, ["cat/../dog/1.png"], ["dog"], name="inside.csv")
    assert select_from_manifest(inside, per_class=1, seed=0)["image_id"].tolist() == ["cat/../dog/1.png"]


def test_an_absolute_manifest_path_outside_its_folder_is_refused(image_folder, tmp_path):
    outside = save_png(tmp_path / "elsewhere" / "far.png")
    rows = [str((image_folder / "cat" / "0.png").resolve()), "dog/1.png", str(outside)]
    manifest = write_manifest(image_folder, rows, ["cat", "dog", "emu"], name="absolute.csv")
    with pytest.raises(ValueError, match=rf"row 2 \(path '{re.escape(str(outside))}'\)") as caught:
        select_from_manifest(manifest, per_class=1, seed=0)
    assert str(manifest) in str(caught.value)
    rows[1] = str(tmp_path / "elsewhere" / ".." / "elsewhere" / "far.png")  # two rows outside: the first is named
    manifest = write_manifest(image_folder, rows, ["cat", "dog", "emu"], name="two.csv")
    with pytest.raises(ValueError, match=r"row 1 .*\(and 1 more row outside it\)"):
        select_from_manifest(manifest, per_class=1, seed=0)
    only_inside = write_manifest(image_folder, rows[:1], ["cat"], name="one.csv")  # absolute but inside: fine
    assert len(select_from_manifest(only_inside, per_class=1, seed=0)) == 1


def test_a_symbolic_link_leading_outside_is_refused(image_folder, tmp_path):
    outside = save_png(tmp_path / "outside.png")
    (image_folder / "cat" / "link.png").symlink_to(outside)
    with pytest.raises(ValueError) as caught:
        select_from_folder(image_folder, per_class=1, seed=0)
    message = str(caught.value)
    assert f"image folder {str(image_folder)!r}: cat/link.png resolves to {str(outside.resolve())!r}" in message
    assert "allow_outside_root" in message
    everything = select_from_folder(image_folder, per_class=None, seed=0, allow_outside_root=True)
    assert "cat/link.png" in everything["image_id"].tolist()
    manifest = write_manifest(image_folder, ["cat/0.png", "cat/link.png"], ["cat", "cat"])
    with pytest.raises(ValueError, match=r"row 1 \(path 'cat/link.png'\) resolves to .*outside.png"):
        select_from_manifest(manifest, per_class=1, seed=0)
    (image_folder / "cat" / "link.png").unlink()
    # a linked class folder leading outside is refused too; a link that stays inside is fine
    save_png(tmp_path / "external" / "0.png")
    (image_folder / "ext").symlink_to(tmp_path / "external", target_is_directory=True)
    with pytest.raises(ValueError, match="ext/0.png resolves to .*external"):
        select_from_folder(image_folder, per_class=1, seed=0)
    (image_folder / "ext").unlink()
    (image_folder / "dog" / "alias.png").symlink_to(image_folder / "cat" / "0.png")
    assert "dog/alias.png" in select_from_folder(image_folder, per_class=None, seed=0)["image_id"].tolist()


def test_a_configured_image_root_confines_folder_and_manifest(image_folder, tmp_path):
    save_png(tmp_path / "outside.png")
    manifest = write_manifest(image_folder, ["cat/0.png", "../outside.png"], ["cat", "dog"])
    assert len(select_from_manifest(manifest, per_class=1, seed=0, image_root=tmp_path)) == 2
    cat_root = re.escape(str((image_folder / "cat").resolve()))
    with pytest.raises(ValueError, match=rf"outside the image root '{cat_root}'"):
        select_from_manifest(manifest, per_class=1, seed=0, image_root=image_folder / "cat")
    with pytest.raises(ValueError, match=r"image root '.*nowhere' \(sets.sources.image_root\) is not a folder"):
        select_from_manifest(manifest, per_class=1, seed=0, image_root=tmp_path / "nowhere")
    (image_folder / "cat" / "link.png").symlink_to(tmp_path / "outside.png")
    linked = select_from_folder(image_folder, per_class=None, seed=0, image_root=tmp_path)
    assert "cat/link.png" in linked["image_id"].tolist()
    (tmp_path / "elsewhere").mkdir()
    with pytest.raises(ValueError, match="cat/0.png resolves to .* outside the image root"):  # the folder is outside
        select_from_folder(image_folder, per_class=None, seed=0, image_root=tmp_path / "elsewhere")


def test_the_config_states_the_input_rules(image_folder, tmp_path, tiny_world):
    save_png(tmp_path / "outside.png")
    manifest = image_folder / "list.csv"  # ids of their own: the pipeline refuses an id starting with '.'
    pd.DataFrame({"path": ["cat/0.png", "../outside.png"], "label": ["circle", "square"], "image_id": ["a", "b"]}
                 ).to_csv(manifest, index=False)
    sources = {"kind": "manifest", "path": str(manifest), "per_class": 1, "seed": 0, "classes": None}
    config = {"models": {"classifier": {"source": "world"}}, "world": tiny_world, "sets": {"sources": sources}}
    settings = source_settings(config)
    assert (settings["image_root"], settings["allow_outside_root"], settings["min_image_side"]) == (None, False, 4)
    assert schema_defaults("sets", "sources")["min_image_side"] == MIN_IMAGE_SIDE
    with pytest.raises(ValueError, match=r"row 1 \(path '../outside.png'\)"):
        select_sources_from_config(config)
    for allowance in ({"allow_outside_root": True}, {"image_root": str(tmp_path)}):
        config["sets"]["sources"] = sources | allowance
        assert select_sources_from_config(config)["class_name"].tolist() == ["circle", "square"]
    save_png(image_folder / "tiny.png", 3, 40)
    config["sets"]["sources"] = sources | {"path": str(write_manifest(image_folder, ["tiny.png"], ["circle"], "t.csv"))}
    with pytest.raises(ValueError, match="tiny.png' is 40x3 pixels; source images need at least 4 pixels"):
        select_sources_from_config(config)
    config["sets"]["sources"]["min_image_side"] = 3
    assert len(select_sources_from_config(config)) == 1


def test_a_tiny_image_is_refused_at_selection_naming_it(image_folder, monkeypatch):
    tiny = save_png(image_folder / "emu" / "tiny.png", 1, 1)
    expected = rf"image file '{re.escape(str(tiny))}' is 1x1 pixels; source images need at least {MIN_IMAGE_SIDE} "
    monkeypatch.setattr(Image.Image, "load", lambda self: pytest.fail("selection decoded pixels"))
    with pytest.raises(ValueError, match=expected):
        select_from_folder(image_folder, per_class=None, seed=0)
    manifest = write_manifest(image_folder, ["emu/0.png", "emu/tiny.png"], ["emu", "emu"])
    with pytest.raises(ValueError, match=expected):
        select_from_manifest(manifest, per_class=None, seed=0)
    picked = select_from_manifest(manifest, per_class=None, seed=0, min_side=None)  # no minimum: selected
    monkeypatch.undo()
    with pytest.raises(ValueError, match=expected):  # and refused when loaded, by load_images and load_image
        load_images(picked, 8)
    with pytest.raises(ValueError, match=expected):
        load_image(tiny, 8)
    assert load_image(tiny, 8, min_side=1).shape == (1, 3, 8, 8)
    with pytest.raises(ValueError, match="min_side=0"):
        select_from_manifest(manifest, per_class=None, seed=0, min_side=0)


def test_an_unreadable_header_is_named_when_loaded_not_when_selected(image_folder):
    broken = image_folder / "cat" / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    manifest = write_manifest(image_folder, ["cat/broken.png"], ["cat"])
    picked = select_from_manifest(manifest, per_class=1, seed=0)
    with pytest.raises(ValueError, match=rf"image file '{re.escape(str(broken))}' cannot be read as an image"):
        load_images(picked, 8)


def test_modes_are_converted_deliberately(tmp_path):
    grey = np.arange(0, 256, 16, dtype=np.uint8).reshape(4, 4)
    rgb_of_grey = np.repeat(grey[..., None], 3, axis=2)
    Image.fromarray(grey).save(tmp_path / "grey.png")
    Image.fromarray(grey).convert("P").save(tmp_path / "palette.png")
    Image.fromarray(grey.astype(np.uint16) * 257 + 100).save(tmp_path / "grey16.png")  # 16-bit: v * 257 + 100 -> v
    assert Image.open(tmp_path / "grey16.png").mode.startswith("I")
    for name in ("grey.png", "palette.png", "grey16.png"):
        image = read_rgb(tmp_path / name)
        assert image.mode == "RGB" and np.array_equal(np.array(image), rgb_of_grey), name
    rgba = np.zeros((4, 4, 4), dtype=np.uint8)
    rgba[..., :3] = (200, 0, 0)
    rgba[0, :, 3] = 0  # transparent row: the background
    rgba[1:, :, 3] = 255  # opaque red
    rgba[3, :, 3] = 128  # half transparent: halfway
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    Image.fromarray(rgba[..., [0, 3]]).save(tmp_path / "la.png")  # greyscale with alpha
    assert BACKGROUND == (255, 255, 255)
    for background in (BACKGROUND, (10, 20, 250)):
        pixels = np.array(read_rgb(tmp_path / "rgba.png", background=background)).astype(int)
        assert (pixels[0] == background).all() and (pixels[1] == (200, 0, 0)).all()
        assert np.abs(pixels[3] - (np.array(background) * 127 + np.array([200, 0, 0]) * 128) / 255).max() <= 1
        loaded = load_image(tmp_path / "rgba.png", 4, background=background)[0].permute(1, 2, 0).numpy()
        assert np.allclose(loaded[0] * 255, background, atol=1e-4)
        la = np.array(read_rgb(tmp_path / "la.png", background=background))
        assert (la[0] == background).all() and (la[1] == 200).all()
    with pytest.raises(ValueError, match=r"background=\(0, 0\)"):
        read_rgb(tmp_path / "rgba.png", background=(0, 0))
    table = pd.DataFrame({"image_id": ["a"], "label": [0], "class_name": ["x"], "source": [str(tmp_path / "rgba.png")],
                          "index": [0]})
    assert np.allclose(load_images(table, 4, background=(0, 0, 0))[0, :, 0].numpy(), 0)  # on black
