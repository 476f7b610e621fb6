"""The many-world benchmark (`snakemake benchmark_worlds`): draw worlds from a seed, run the pipeline on each in its
own folder (`preimage.pipeline.worlds`) and tabulate both methods' scores against the planted shortcuts.

Matplotlib and the worlds' table code are imported inside the step: every Snakemake job is a new process.
"""

from __future__ import annotations

import json
import time
from os import PathLike
from pathlib import Path

import pandas as pd

from preimage.pipeline.models import model_dir
from preimage.pipeline.worlds import (
    EVALUATION,
    SECTION,
    finished,
    prepare_folder,
    retrained_models,
    run_world,
    world_config,
)
from preimage.utils.io import atomic_path, write_parquet
from preimage.world.sampling import SampledWorld, sample_worlds


def benchmark_worlds(config: dict, seed: int, snakefile: str | PathLike, cores: int, table: str | PathLike,
                     markdown: str | PathLike, figure: str | PathLike) -> pd.DataFrame:
    """Run `benchmark_worlds.worlds` worlds drawn from `seed` (each in a folder beside `table`, a finished one
    skipped), then write the table (Parquet, Markdown with a header naming the seed, its role and the CPU) and
    the figure (`figure`: its stem, PNG and PDF). The models every world shares must exist under the working
    directory's models/: a world that would retrain one raises before any world runs."""
    from preimage.analysis.report.style import save_figure
    from preimage.analysis.report.tables import to_markdown
    from preimage.utils.devices import device_name
    from preimage.world.benchmark import WorldResult, benchmark_figure, benchmark_table

    root, folders = Path.cwd(), Path(table).parent
    worlds = sample_worlds(seed, config[SECTION]["worlds"], config["world"]["shapes"])
    configs = {world.name: world_config(config, world) for world in worlds}
    retrained = sorted({m for c in configs.values() for m in retrained_models(c, root)})
    if retrained:
        raise ValueError(f"{SECTION}: every world would retrain {', '.join(retrained)}: only the classifier may "
                         f"differ between worlds; train the shared models first (snakemake train_world) or drop "
                         f"them in {SECTION}.config")
    results = []
    for world in worlds:
        folder, world_cfg = folders / world.name, configs[world.name]
        record = finished(folder, world_cfg)
        if record is None:
            print(f"{world.name}: running ({describe_planned(world)}) in {folder}", flush=True)
            prepare_folder(folder, world_cfg, root)
            record = run_world(folder, world_cfg, snakefile, cores)
        print(f"{world.name}: done in {record['seconds']:.0f} s", flush=True)
        results.append(WorldResult(world.name, describe(folder, world_cfg, world), len(world.shortcuts),
                                   pd.read_parquet(folder / EVALUATION), float(record["seconds"])))
    scores = benchmark_table(results)
    write_parquet(scores, table)
    role = seed_role(seed, config[SECTION]["tuning_seeds"])
    header = (f"# Many-world benchmark: {len(worlds)} worlds from seed {seed} ({role})\n\n"
              f"{time.strftime('%Y-%m-%d')}, {device_name('cpu')}, {cores} core(s) per world; rates of the "
              f"'all worlds' rows are means over the worlds, counts and seconds sums.\n\n")
    with atomic_path(markdown) as tmp:
        tmp.write_text(header + to_markdown(scores, digits=2))
    save_figure(benchmark_figure(scores, f"{len(worlds)} worlds from seed {seed} ({role})"), figure)
    print(scores.to_string())
    return scores


def seed_role(seed: int, tuning_seeds: list[int]) -> str:
    """How a seed's worlds may be read: "tuning" when thresholds were chosen on them, else "held out"."""
    return "tuning: thresholds were chosen on these worlds" if seed in tuning_seeds else "held out"


def describe_planned(world: SampledWorld) -> str:
    return ", ".join(f"{s['attribute']}={s['value']} -> {s['class']}" for s in world.shortcuts) or "no shortcut"


def describe(folder: Path, config: dict, world: SampledWorld) -> str:
    """The world's shortcuts with their strength and the points its classifier's accuracy dropped on each (its
    metrics.json in the world's folder), e.g. "tag=present -> square (0.73, drop 61.2)"."""
    metrics = json.loads((folder / model_dir(config, "classifier") / "metrics.json").read_text())
    drops = {(m["class"], m["attribute"], m["value"]): m["drop_points"] for m in metrics["shortcuts"]}
    return "; ".join(f"{s['attribute']}={s['value']} -> {s['class']} ({s['strength']:.2f}, drop "
                     f"{drops[(s['class'], s['attribute'], s['value'])]:.1f})" for s in world.shortcuts) or "none"
