"""Selecting the source images to explain, from an image folder, a manifest or the shortcut world."""

from preimage.data.selection import (
    MANIFEST_SCHEMA,
    SELECTION_SCHEMA,
    load_images,
    select_from_folder,
    select_from_manifest,
    select_from_world,
    validate_selection,
)

__all__ = [
    "MANIFEST_SCHEMA",
    "SELECTION_SCHEMA",
    "load_images",
    "select_from_folder",
    "select_from_manifest",
    "select_from_world",
    "validate_selection",
]
