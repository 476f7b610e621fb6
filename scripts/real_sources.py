"""Snakemake script: the run's own labelled real images (sets.sources' folder or manifest) as a table and
uint8 pixels, for the concept step's baseline and embedding maps."""

from preimage.io import write_npy, write_parquet
from preimage.registry import REAL_IMAGE_SIZE, load_source_images, select_real_images
from preimage.training.common import to_uint8
from preimage.workflow import redirect_output

with redirect_output(snakemake.log[0]):
    config = snakemake.params.config
    selection = select_real_images(config)
    write_npy(to_uint8(load_source_images(config, selection, REAL_IMAGE_SIZE)), snakemake.output.images)
    write_parquet(selection, snakemake.output.table)
    print(f"{len(selection)} images of {selection['class_name'].nunique()} classes")
