"""Global counterfactual directions on the shortcut world: one per target class, found and measured as the
`global_direction` step does, with the oracle's reading (evaluation).

For each target class this runs the step's own functions (`preimage.pipeline.steps.directions`) on the config's
`directions` split and settings, in a temporary folder, and prints per target:

- flip rate: the share of held-out images of each other class the classifier calls the target after the edit,
  and after the reconstruction alone (the control);
- LPIPS from each held-out image to its edit;
- the CLIP concepts whose similarity rises most, and the oracle's attribute that changes most;
- the step's wall and CPU seconds (the search and everything after it; not the process start) and the CPU it ran
  on; on a shared machine the CPU seconds are the steadier figure.

Usage: python benchmarks/directions.py [--config config.yaml] [--targets square circle] [--threads 2]
       [--magnitudes 0.2 0.25 0.3] [--markdown table.md]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

import pandas as pd
import torch

from preimage.pipeline.config import load_config
from preimage.pipeline.layout import DIRECTION_FILES
from preimage.pipeline.steps.concepts import embed_vocabulary
from preimage.pipeline.steps.directions import ALL, evaluate_direction, find_global_direction
from preimage.pipeline.steps.world import write_world_split
from preimage.utils.devices import device_name, native_bfloat16, resolve_device

REPO = Path(__file__).resolve().parents[1]


def measure(target: str, config: dict, split: dict[str, Path], vocabulary: Path, folder: Path, threads: int) -> dict:
    """One target's direction found and evaluated in `folder`: its row of the printed table."""
    outputs = {name: folder / file for name, file in DIRECTION_FILES.items()}
    summary = find_global_direction(target, split["table"], split["images"], vocabulary, config, outputs, threads)
    oracle = evaluate_direction(outputs["reconstructed"], outputs["edited"], config, folder / "oracle.parquet", threads)
    concepts = pd.read_parquet(outputs["concepts"])
    search = json.loads(outputs["search"].read_text())
    by_class = summary.set_index("source_class")
    top = oracle.iloc[0]
    return {"target": target, "magnitude": config["directions"]["magnitude"],
            **{f"flip {name}": by_class.loc[name, "flip_rate"] for name in by_class.index},
            "control": by_class.loc[ALL, "reconstruction_flip_rate"], "train flip": search["train_flip_rate"],
            "LPIPS": by_class.loc[ALL, "lpips_to_original"],
            "oracle": f"{top['attribute']} {top['changed']:.2f} ({top['value']} {top['before']:.2f}->{top['after']:.2f})",
            "CLIP": ", ".join(concepts["concept"].head(3)), "search s": search["search_seconds"],
            "step s": search["seconds"], "step CPU s": search["cpu_seconds"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(REPO / "config.yaml"))
    parser.add_argument("--targets", nargs="+", help="target classes (default: every class of the world)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--magnitudes", type=float, nargs="+", help="default: the config's directions.magnitude")
    parser.add_argument("--markdown", type=Path, help="also write the table here")
    args = parser.parse_args()
    config = load_config(args.config)
    os.chdir(REPO)  # model folders are relative to the repository, as in the workflow
    device = resolve_device(config["device"])
    torch.set_num_threads(args.threads)
    print(f"device {device} ({device_name(device)}, bf16 arithmetic: {native_bfloat16(device)}); {args.threads} "
          f"threads; directions {config['directions']}")
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        split = {"table": root / "split.parquet", "images": root / "split.npy"}
        write_world_split(config["world"], config["directions"]["split"], split["table"], split["images"],
                          root / "split.png")
        concepts = config["concepts"]
        embed_vocabulary(concepts["vocabulary"], concepts["prompt_template"], concepts["class_template"],
                         config["world"]["shapes"], config, config["device"], root / "vocabulary.parquet",
                         root / "vocabulary.txt", args.threads)
        for magnitude in args.magnitudes or [config["directions"]["magnitude"]]:
            for target in args.targets or config["world"]["shapes"]:
                run = {**config, "directions": {**config["directions"], "magnitude": magnitude}}
                rows.append(measure(target, run, split, root / "vocabulary.parquet", root / f"{target}-{magnitude}",
                                    args.threads))
    table = pd.DataFrame(rows).to_markdown(index=False, floatfmt=".2f")
    print(table)
    if args.markdown is not None:
        args.markdown.write_text(table + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
