"""Choose the source images x0 to explain: a few per class, reproducibly, from a folder, a manifest or the world.

Every selector returns the same table (SELECTION_SCHEMA), one row per image:
- image_id: unique name (path relative to the folder / manifest entry / world image id);
- label: class index in the label vocabulary (the classifier's `label_names` when given);
- class_name: the class's name in that vocabulary;
- source: the image file's path, or "world:<spec fingerprint>/<split>" for shortcut-world images;
- index: position in the source listing (sorted folder listing, manifest row, or row of the world split).
`load_images` turns such a table into a [0, 1] tensor, so a Snakemake rule can pass the table on as
Parquet and a later rule (or a notebook) loads exactly the same pixels.

Picks are per class: each class's candidates (in listing order) are shuffled by a generator seeded with
(seed, class name) and the first `per_class` kept. So a class's picks do not depend on which other
classes are selected, and raising `per_class` only appends images.

Inputs are checked when selecting, before any pixel is read, so the pipeline refuses them while it plans:
- confinement: every image file (symbolic links and `..` resolved) must lie under the image root, by default
  the image folder itself or the manifest's folder (`image_root=`, config `sets.sources.image_root`); a manifest
  row outside it, or a linked file of a folder that leads outside it, is refused naming the manifest and row (or
  the folder and file) unless `allow_outside_root=True` (`sets.sources.allow_outside_root: true`);
- size: each picked file's header (not its pixels) gives its size, and one whose shorter side is below
  `min_side` (MIN_IMAGE_SIDE, `sets.sources.min_image_side`) is refused naming it. A file whose header cannot be
  read is named when `load_images` decodes it.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pandera.pandas as pa
from PIL import Image

from preimage.analysis.concepts.groups import SET_ID_SEPARATOR
from preimage.pipeline.config import schema_defaults
from preimage.pipeline.models import (
    WORLD,
    classifier_label_names,
    settings_with_defaults,
)
from preimage.utils.images import (
    BACKGROUND,
    MIN_IMAGE_SIDE,
    checked_min_side,
    fit_square,
    header_size,
    read_rgb,
    require_min_side,
    to_tensor,
)
from preimage.world.generator import (
    SPLIT_KINDS,
    WorldSpec,
    render_images,
    sample_attributes,
)

if TYPE_CHECKING:
    import torch

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
WORLD_PREFIX = "world:"
COLUMNS = ["image_id", "label", "class_name", "source", "index"]
SOURCE_KINDS = ("world", "folder", "manifest")
SOURCE_REQUIRED = ("kind", "per_class", "seed")
REAL_IMAGE_SIZE = 224  # the concept step's real images from files: ImageNet models' and CLIP's input size
OUTSIDE_ROOT_HINT = (
    "set sets.sources.image_root to a folder that holds the images, or sets.sources.allow_outside_root: true "
    "to accept files anywhere (in Python: image_root=... or allow_outside_root=True)"
)

SELECTION_SCHEMA = pa.DataFrameSchema(
    {
        "image_id": pa.Column(str, unique=True),
        "label": pa.Column(int, pa.Check.ge(0)),
        "class_name": pa.Column(str),
        "source": pa.Column(str),
        "index": pa.Column(int, pa.Check.ge(0)),
    },
    strict=True,
    ordered=True,
)


def _all_names_or_all_indices(labels: pd.Series) -> bool:
    if pd.api.types.is_integer_dtype(labels):
        return bool((labels >= 0).all())
    return bool(labels.map(lambda v: isinstance(v, str) and v != "").all())


MANIFEST_SCHEMA = pa.DataFrameSchema(
    {
        "path": pa.Column(str, pa.Check.str_length(min_value=1)),
        "label": pa.Column(
            checks=pa.Check(
                _all_names_or_all_indices, error="label must be all class names (text) or all class indices (int >= 0)"
            ),
        ),
        "image_id": pa.Column(str, unique=True, required=False),
    },
    strict=False,
)


def select_from_folder(
    root: str | Path,
    *,
    per_class: int | None,
    seed: int,
    classes: Sequence[str] | None = None,
    label_names: Sequence[str] | None = None,
    image_root: str | Path | None = None,
    allow_outside_root: bool = False,
    min_side: int | None = MIN_IMAGE_SIDE,
) -> pd.DataFrame:
    """Pick images from `root/<class name>/<image>` (the torchvision ImageFolder layout).

    `label_names` fixes the label indices (pass the classifier's, e.g. ImageNet synsets that name
    ImageNet's folders); by default they are the sorted sub-folder names. `classes` keeps some
    classes (default: every sub-folder); `per_class=None` keeps all images of each class.

    Listed files lie in `root` by construction, but a symbolic link (a file's or a class folder's) may lead
    elsewhere: every candidate must resolve to a file under `image_root` (default: `root` itself, resolved),
    else a ValueError names the file, unless `allow_outside_root`. Picked files whose shorter side is below
    `min_side` pixels (None: any size) are refused, naming them; only their headers are read.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {str(root)!r} does not exist")
    folders = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise ValueError(f"image folder {str(root)!r}: no class sub-folders; expected root/<class>/<image>")
    vocabulary = list(label_names) if label_names is not None else folders
    wanted = _wanted_classes(classes, folders, where=f"image folder {str(root)!r}")
    unknown = [name for name in wanted if name not in vocabulary]
    if unknown:
        raise ValueError(f"image folder {str(root)!r}: sub-folders {unknown} are not among label_names")
    lookup = {name: i for i, name in enumerate(vocabulary)}
    listing = [
        (name, path)
        for name in folders
        for path in sorted((root / name).iterdir())
        if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")
    ]
    kept = [(index, name, path) for index, (name, path) in enumerate(listing) if name in lookup]
    if not allow_outside_root:
        confine_to = _image_root(image_root, root, f"image folder {str(root)!r}")
        outside = _outside([path for _, _, path in kept], confine_to)
        if outside:
            position, resolved = outside[0]
            _, name, path = kept[position]
            raise ValueError(
                f"image folder {str(root)!r}: {name}/{path.name} resolves to {str(resolved)!r} (symbolic links "
                f"followed), outside the image root {str(confine_to)!r}{_more(outside, 'file')}; {OUTSIDE_ROOT_HINT}"
            )
    candidates = pd.DataFrame(
        {
            "image_id": [f"{name}/{path.name}" for _, name, path in kept],
            "label": np.array([lookup[name] for _, name, _ in kept], dtype=np.int64),
            "class_name": [name for _, name, _ in kept],
            "source": [str(path) for _, _, path in kept],
            "index": np.array([index for index, _, _ in kept], dtype=np.int64),
        }
    )
    return check_image_sizes(_pick(candidates, wanted, per_class, seed), min_side)


def select_from_manifest(
    manifest: str | Path,
    *,
    per_class: int | None,
    seed: int,
    classes: Sequence[str] | None = None,
    label_names: Sequence[str] | None = None,
    image_root: str | Path | None = None,
    allow_outside_root: bool = False,
    min_side: int | None = MIN_IMAGE_SIDE,
) -> pd.DataFrame:
    """Pick images listed in a Parquet or CSV manifest with columns `path`, `label` (and optional `image_id`).

    `path` is absolute or relative to the manifest's folder. `label` is either every row a class
    name or every row a class index (a CSV column of integers counts as indices). Names map to indices
    through `label_names` (default: the sorted distinct names); indices take their names from
    `label_names` (default: the index written as text). `image_id` defaults to `path` as written.

    Every row's path, symbolic links and `..` resolved, must lie under `image_root` (default: the manifest's
    folder), else a ValueError names the manifest, the row (counted from 0, as the selection's `index`) and
    the path as written, unless `allow_outside_root`. This is checked before any file is opened. Picked files
    whose shorter side is below `min_side` pixels (None: any size) are refused, naming them; only their
    headers are read.
    """
    manifest = Path(manifest)
    table = _read_manifest(manifest)
    where = f"manifest {str(manifest)!r}"
    try:
        table = MANIFEST_SCHEMA.validate(table)
    except pa.errors.SchemaError as error:
        raise ValueError(f"{where}: {error}") from error
    labels, names, vocabulary = _manifest_labels(table["label"], label_names, where)
    paths = [str(p if Path(p).is_absolute() else manifest.parent / p) for p in table["path"]]
    if not allow_outside_root:
        confine_to = _image_root(image_root, manifest.parent, where)
        outside = _outside([Path(p) for p in paths], confine_to)
        if outside:
            row, resolved = outside[0]
            raise ValueError(
                f"{where}: row {row} (path {table['path'].iloc[row]!r}) resolves to {str(resolved)!r}, outside the "
                f"image root {str(confine_to)!r}{_more(outside, 'row')}; manifest paths must lie under the image "
                f"root (the manifest's folder unless sets.sources.image_root names another): {OUTSIDE_ROOT_HINT}"
            )
    missing = [p for p in paths if not Path(p).is_file()]
    if missing:
        raise FileNotFoundError(f"{where}: {len(missing)} listed images do not exist, e.g. {missing[:3]}")
    candidates = pd.DataFrame(
        {
            "image_id": (table["image_id"] if "image_id" in table else table["path"]).to_numpy(),
            "label": labels,
            "class_name": names,
            "source": paths,
            "index": np.arange(len(table)),
        }
    )
    present = [name for name in vocabulary if name in set(names)]
    return check_image_sizes(_pick(candidates, _wanted_classes(classes, present, where), per_class, seed), min_side)


def select_from_world(
    spec: WorldSpec, split: str, *, per_class: int | None, seed: int, classes: Sequence[str] | None = None
) -> pd.DataFrame:
    """Pick images of a shortcut-world split; labels and class names are the world's shapes.

    Only the split's attribute table is drawn here (no rendering); `load_images` renders the picks.
    """
    if split not in dict(spec.split_sizes):
        raise ValueError(f"world split {split!r}: expected one of {[name for name, _ in spec.split_sizes]}")
    attributes = sample_attributes(spec, split)
    candidates = pd.DataFrame(
        {
            "image_id": attributes["image_id"],
            "label": attributes["label"].astype(np.int64),
            "class_name": attributes["shape"],
            "source": _world_source(spec, split),
            "index": np.arange(len(attributes)),
        }
    )
    return _pick(candidates, _wanted_classes(classes, list(spec.shapes), f"world {spec.name!r}"), per_class, seed)


def load_images(
    selection: pd.DataFrame,
    size: int,
    *,
    world: WorldSpec | None = None,
    min_side: int | None = MIN_IMAGE_SIDE,
    background: tuple[int, int, int] = BACKGROUND,
) -> torch.Tensor:
    """(N, 3, size, size) float images in [0, 1] for a selection table, in its row order.

    Files are converted to RGB as `read_rgb` does (transparent pixels composited on `background`, white by
    default), refused naming them if their shorter side is below `min_side` pixels, centre-cropped to a square
    and resized (bicubic); world rows are re-rendered from their split (pass the same `world` spec that
    selected them) and resized only if `size` differs.
    """
    if size < 1:
        raise ValueError(f"size={size}: expected a positive image size")
    selection = validate_selection(selection)
    arrays: list[np.ndarray | None] = [None] * len(selection)
    world_rows: dict[str, list[int]] = {}
    for position, (source, index) in enumerate(zip(selection["source"], selection["index"])):
        if source.startswith(WORLD_PREFIX):
            world_rows.setdefault(source, []).append(position)
        else:
            image = read_rgb(source, background=background)
            require_min_side(source, image.size, min_side)
            arrays[position] = fit_square(image, size)
    for source, positions in world_rows.items():
        rendered = _render_world(source, selection["index"].to_numpy()[positions], world)
        for position, pixels in zip(positions, rendered):
            arrays[position] = fit_square(Image.fromarray(pixels), size)
    if not arrays:
        return to_tensor(np.zeros((0, size, size, 3), dtype=np.uint8))
    return to_tensor(np.stack(arrays))


def validate_selection(selection: pd.DataFrame) -> pd.DataFrame:
    """Check a selection table (e.g. read back from Parquet) against SELECTION_SCHEMA."""
    try:
        return SELECTION_SCHEMA.validate(selection)
    except pa.errors.SchemaError as error:
        raise ValueError(f"selection table: {error}") from error


def check_image_sizes(selection: pd.DataFrame, min_side: int | None) -> pd.DataFrame:
    """The selection, once every file row's header shows a shorter side of at least `min_side` pixels (None:
    no minimum); a smaller file is refused naming it. No pixels are decoded; an unreadable header is left to
    `load_images`, which names the file when it decodes it."""
    if checked_min_side(min_side) is None:
        return selection
    for source in selection["source"]:
        if source.startswith(WORLD_PREFIX):
            continue
        size = header_size(source)
        if size is not None:
            require_min_side(source, size, min_side)
    return selection


def _image_root(image_root: str | Path | None, default: Path, where: str) -> Path:
    """The folder images must lie in, resolved: `image_root`, or `default` (the image folder or the manifest's)."""
    if image_root is None:
        return Path(os.path.realpath(default))
    if not Path(image_root).is_dir():
        raise ValueError(f"{where}: image root {str(image_root)!r} (sets.sources.image_root) is not a folder")
    return Path(os.path.realpath(image_root))


def _outside(paths: Sequence[Path], root: Path) -> list[tuple[int, Path]]:
    """(position, resolved path) of each path that resolves (symbolic links followed, `..` folded) outside `root`."""
    resolved = [Path(os.path.realpath(path)) for path in paths]
    return [(i, path) for i, path in enumerate(resolved) if not path.is_relative_to(root)]


def _more(outside: list, what: str) -> str:
    if len(outside) < 2:
        return ""
    return f" (and {len(outside) - 1} more {what}{'s' if len(outside) > 2 else ''} outside it)"


def _read_manifest(manifest: Path) -> pd.DataFrame:
    if not manifest.is_file():
        raise FileNotFoundError(f"manifest {str(manifest)!r} does not exist")
    suffix = manifest.suffix.lower()
    if suffix == ".parquet":
        return pd.read_parquet(manifest)
    if suffix == ".csv":
        return pd.read_csv(manifest, dtype={"path": str, "image_id": str})
    raise ValueError(f"manifest {str(manifest)!r}: expected a .parquet or .csv file")


def _manifest_labels(
    labels: pd.Series, label_names: Sequence[str] | None, where: str
) -> tuple[np.ndarray, list[str], list[str]]:
    """Label indices, class names and the vocabulary (names in label order) of a manifest's labels."""
    if pd.api.types.is_integer_dtype(labels):
        indices = labels.to_numpy(dtype=np.int64)
        if label_names is None:
            vocabulary = [str(i) for i in range(int(indices.max()) + 1)] if len(indices) else []
        else:
            vocabulary = list(label_names)
            if len(indices) and indices.max() >= len(vocabulary):
                raise ValueError(f"{where}: label index {int(indices.max())} >= {len(vocabulary)} label_names")
        return indices, [vocabulary[i] for i in indices], vocabulary
    names = [str(v) for v in labels]
    vocabulary = list(label_names) if label_names is not None else sorted(set(names))
    unknown = sorted(set(names) - set(vocabulary))
    if unknown:
        raise ValueError(f"{where}: labels {unknown[:5]} are not among label_names")
    lookup = {name: i for i, name in enumerate(vocabulary)}
    return np.array([lookup[n] for n in names], dtype=np.int64), names, vocabulary


def _wanted_classes(classes: Sequence[str] | None, available: Sequence[str], where: str) -> list[str]:
    if classes is None:
        return list(available)
    if isinstance(classes, str):
        raise ValueError(f"{where}: classes must be a list of class names, got the string {classes!r}")
    wanted = list(classes)
    if len(set(wanted)) != len(wanted) or not wanted:
        raise ValueError(f"{where}: classes {wanted} must be non-empty and distinct")
    unknown = [name for name in wanted if name not in available]
    if unknown:
        raise ValueError(f"{where}: unknown classes {unknown} (sets.sources.classes, or classes= in Python); "
                         f"available: {list(available)}")
    return wanted


def _class_rng(seed: int, class_name: str) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(seed), zlib.crc32(class_name.encode())]))


def _pick(candidates: pd.DataFrame, classes: list[str], per_class: int | None, seed: int) -> pd.DataFrame:
    """The first `per_class` of each class's seeded shuffle, classes in the order asked for."""
    if per_class is not None and per_class < 1:
        raise ValueError(f"per_class={per_class}: expected a positive count or None for all images")
    parts = []
    for name in classes:
        rows = candidates[candidates["class_name"] == name]
        need = per_class if per_class is not None else 1
        if len(rows) < need:
            raise ValueError(f"class {name!r} has {len(rows)} images; per_class={per_class} needs {need}")
        order = _class_rng(seed, name).permutation(len(rows))
        parts.append(rows.iloc[order[:per_class]])
    picked = pd.concat(parts, ignore_index=True)[COLUMNS]
    picked["label"] = picked["label"].astype(np.int64)
    picked["index"] = picked["index"].astype(np.int64)
    return validate_selection(picked)


def _world_source(spec: WorldSpec, split: str) -> str:
    """Tag naming a split and a hash of everything that decides its pixels, so a wrong spec is caught."""
    fingerprint = spec.data_fingerprint(biased=SPLIT_KINDS[split] != "unbiased")
    return f"{WORLD_PREFIX}{fingerprint}/{split}"


def _render_world(source: str, indices: np.ndarray, world: WorldSpec | None) -> np.ndarray:
    split = source.partition("/")[2]
    if world is None:
        raise ValueError(f"selection rows come from the shortcut world ({source!r}); pass world=<its WorldSpec>")
    if split not in SPLIT_KINDS or _world_source(world, split) != source:
        raise ValueError(
            f"selection rows come from {source!r}, which world={world.name!r} does not generate; "
            "pass the spec they were selected from"
        )
    attributes = sample_attributes(world, split)
    return render_images(attributes.iloc[indices], world.image_size)


# --- the run's sources, from the config ----------------------------------------------------------------------


def source_settings(config: dict) -> dict[str, Any]:
    """`sets.sources` with defaults filled in (kind: world), checked for the keys its kind needs."""
    given = config["sets"]["sources"]
    missing = [key for key in SOURCE_REQUIRED if key not in given]
    if missing:
        raise ValueError(f"sets.sources: missing key(s) {missing}")
    defaults = schema_defaults("sets", "sources") | {key: None for key in SOURCE_REQUIRED}
    settings = settings_with_defaults(given, defaults, "sets.sources")
    if settings["kind"] not in SOURCE_KINDS:
        raise ValueError(f"sets.sources.kind: {settings['kind']!r}; expected one of {list(SOURCE_KINDS)}")
    needed = "split" if settings["kind"] == WORLD else "path"
    if settings[needed] is None:
        raise ValueError(f"sets.sources.{needed}: required for kind {settings['kind']!r}")
    return settings


def select_sources_from_config(config: dict) -> pd.DataFrame:
    """The source images (`preimage.data` selection table), labelled in the classifier's vocabulary.

    Image ids name result folders ('<image_id>__<objective>__<sampler>'), so the '/' of folder and manifest
    paths becomes '.', and an id containing '__' is refused.
    """
    settings = source_settings(config)
    picks = {"per_class": settings["per_class"], "seed": settings["seed"], "classes": settings["classes"]}
    if settings["kind"] == WORLD:
        return select_from_world(WorldSpec.from_config(config["world"]), settings["split"], **picks)
    select = select_from_folder if settings["kind"] == "folder" else select_from_manifest
    return path_safe_ids(select(settings["path"], label_names=classifier_label_names(config), **picks,
                                **_input_rules(settings)))


def _input_rules(settings: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments of a folder or manifest selection that `sets.sources` sets (confinement, size)."""
    return {"image_root": settings["image_root"], "allow_outside_root": settings["allow_outside_root"],
            "min_side": settings["min_image_side"]}


def path_safe_ids(selection: pd.DataFrame) -> pd.DataFrame:
    """The selection with ids usable as one folder name: '/' and '\\' become '.'."""
    ids = selection["image_id"].str.replace("/", ".", regex=False).str.replace("\\", ".", regex=False)
    clashing = [image_id for image_id in ids if SET_ID_SEPARATOR in image_id or image_id.startswith(".")]
    if clashing:
        raise ValueError(f"source image ids {clashing[:3]}: ids may not contain {SET_ID_SEPARATOR!r} or start with '.'")
    if ids.duplicated().any():
        raise ValueError(f"source image ids {sorted(ids[ids.duplicated()])[:3]} clash once '/' becomes '.'")
    return selection.assign(image_id=ids)


def select_real_images(config: dict) -> pd.DataFrame:
    """The run's own labelled real images for the concept step (`concepts.baseline_split` or `real_split`
    `sources`): every image of `sets.sources`' folder or manifest of its classes, at most `concepts.real_images`
    drawn evenly over the classes with `sets.sources.seed`."""
    settings = source_settings(config)
    if settings["kind"] == WORLD:
        raise ValueError("concepts.baseline_split / real_split 'sources': sets.sources.kind must be 'folder' or "
                         "'manifest' (for the world, name a world split)")
    select = select_from_folder if settings["kind"] == "folder" else select_from_manifest
    rules = _input_rules(settings)
    every = select(settings["path"], label_names=classifier_label_names(config), per_class=None,
                   seed=settings["seed"], classes=settings["classes"], **(rules | {"min_side": None}))
    per_class = -(-config["concepts"]["real_images"] // every["class_name"].nunique())
    taken = every.groupby("class_name", sort=False).head(per_class).reset_index(drop=True)
    return path_safe_ids(check_image_sizes(taken, rules["min_side"]))  # headers of the images taken, not all


def real_image_table(table: pd.DataFrame) -> pd.DataFrame:
    """image_id and class_name of a real-image table: a world split's (class = its `shape`) or a selection's."""
    names = table["shape"] if "shape" in table else table["class_name"]
    return pd.DataFrame({"image_id": table["image_id"].to_numpy(), "class_name": names.astype(str).to_numpy()})


def load_source_images(config: dict, selection: pd.DataFrame, image_size: int) -> torch.Tensor:
    """(N, 3, image_size, image_size) images in [0, 1] for selected rows; pass the prior's `image_size`."""
    world = WorldSpec.from_config(config["world"]) if "world" in config else None
    min_side = config.get("sets", {}).get("sources", {}).get("min_image_side", MIN_IMAGE_SIDE)
    return load_images(selection, image_size, world=world, min_side=min_side)
