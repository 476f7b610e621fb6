"""Snakemake script: write one split of the shortcut world."""

from preimage.io import image_grid, write_npy, write_parquet, write_png
from preimage.workflow import redirect_output
from preimage.world.generator import WorldSpec, make_split

with redirect_output(snakemake.log[0]):
    spec = WorldSpec.from_config(snakemake.params.world)
    table, images = make_split(spec, snakemake.wildcards.split)
    write_parquet(table, snakemake.output.table)
    write_npy(images, snakemake.output.images)
    write_png(image_grid(images[:64], columns=8), snakemake.output.preview)
    print(f"{len(table)} images written")
