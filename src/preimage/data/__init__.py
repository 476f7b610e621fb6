"""Selecting the source images to explain, from an image folder, a manifest or the shortcut world."""

import lazy_loader

# Submodules load on first use: see preimage/__init__.py.
__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "images": ["fit_square", "load_image", "read_rgb"],
        "selection": [
            "MANIFEST_SCHEMA",
            "SELECTION_SCHEMA",
            "load_images",
            "select_from_folder",
            "select_from_manifest",
            "select_from_world",
            "validate_selection",
        ],
    },
)
