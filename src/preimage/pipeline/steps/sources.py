"""Steps that choose the source images: their table, and the run's own labelled real images for the concept step.

No torch is imported here: the selection is the first job of a run, and every set job waits for it.
"""

from __future__ import annotations

from os import PathLike

import numpy as np
import pandas as pd

from preimage.pipeline.sources import REAL_IMAGE_SIZE, load_source_images, select_real_images
from preimage.pipeline.workflow import select_sources
from preimage.utils.images import to_uint8
from preimage.utils.io import write_npy, write_parquet


def write_sources(config: dict, output: str | PathLike) -> pd.DataFrame:
    """Record the source images `sets.sources` selects (`preimage.pipeline.workflow.select_sources`) as Parquet,
    so every later job reads the same table."""
    selection = select_sources(config)
    write_parquet(selection, output)
    return selection


def write_real_sources(config: dict, table: str | PathLike, images: str | PathLike) -> tuple[pd.DataFrame, np.ndarray]:
    """The run's own labelled real images (`select_real_images`: sets.sources' folder or manifest) for the
    concept step: their uint8 pixels at REAL_IMAGE_SIZE as .npy and their table as Parquet."""
    selection = select_real_images(config)
    pixels = to_uint8(load_source_images(config, selection, REAL_IMAGE_SIZE))
    write_npy(pixels, images)
    write_parquet(selection, table)
    print(f"{len(selection)} images of {selection['class_name'].nunique()} classes")
    return selection, pixels
