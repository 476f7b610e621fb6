"""Steps that write the shortcut world's data: one split's images and attributes, and its planted shortcuts."""

from __future__ import annotations

from os import PathLike

import numpy as np
import pandas as pd

from preimage.utils.io import image_grid, write_npy, write_parquet, write_png
from preimage.world.generator import WorldSpec, ground_truth, make_split


def write_world_split(world: dict, split: str, table: str | PathLike, images: str | PathLike,
                      preview: str | PathLike) -> tuple[pd.DataFrame, np.ndarray]:
    """Render one split of the world (`world`: the config's world section): its attributes as Parquet, its
    pixels as a uint8 .npy array and a PNG grid of its first 64 images to look at."""
    spec = WorldSpec.from_config(world)
    attributes, pixels = make_split(spec, split)
    write_parquet(attributes, table)
    write_npy(pixels, images)
    write_png(image_grid(pixels[:64], columns=8), preview)
    print(f"{len(attributes)} images written")
    return attributes, pixels


def write_ground_truth(world: dict, output: str | PathLike) -> pd.DataFrame:
    """Write the world's planted shortcuts as Parquet; only evaluation reads them, never an explanation."""
    table = ground_truth(WorldSpec.from_config(world))
    write_parquet(table, output)
    return table
