"""Benchmark the invariant-set engine on the shortcut world and print the figures issue 4 asks for.

Figures (all on CPU unless a GPU is visible):
- guided acceptance for the label objective and for a neuron objective (10 % tolerance);
- accepted members per second, guided vs rejection from pure noise, for the neuron objective;
- total variation between the oracle's attribute distribution of accepted guided members and of accepted
  rejection members (the reference), for the label objective, per class;
- diversity (mean pairwise LPIPS) with and without the repulsion term, with their acceptance and the share of
  members the oracle calls valid images;
- with --compare-samplers (and nothing else): `guided`, `rejection` and `noise_opt` (DiG-IN's noise optimisation)
  side by side on the label objective (or `--objective`), same sources, members and seeds: acceptance, accepted
  members per second, diversity, LPIPS to the source and denoiser (UNet) passes per member, as a table and the
  report's sampler figure;
- with --pipeline, the wall time of the whole default pipeline in a fresh clone.

Usage: python benchmarks/invariant_sets.py [--config config.yaml] [--members 64] [--guided '{"guidance_interval": [0, 1]}']
       [--repeats 2] [--pipeline]
       python benchmarks/invariant_sets.py --compare-samplers [--per-class 1] [--members 32] [--contenders guided,rejection]
       [--noise-opt '{"num_steps": 4, "iterations": 20}'] [--objective neuron] [--figure samplers.png]

This machine's CPU time is shared, so one timing can be 30 % off the next; the speed comparison therefore
interleaves the two samplers source by source (each source's guided set, then its rejection set), so a slow
minute slows both alike, and pools `--repeats` such rounds.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

import preimage
from preimage.analysis.report.figures import sampler_figure
from preimage.analysis.report.tables import sampler_table
from preimage.engine.models import load_lpips
from preimage.engine.objectives import from_config as objective_from_config
from preimage.engine.samplers.spec import from_config as sampler_from_config
from preimage.pipeline.config import load_config
from preimage.pipeline.models import model_dir, resolve_classifier, resolve_prior
from preimage.pipeline.sources import load_images
from preimage.pipeline.workflow import select_sources
from preimage.utils.devices import device_name, native_bfloat16, resolve_device
from preimage.world.generator import WorldSpec
from preimage.world.oracle import head_layout, load_oracle, read_attributes

REPO = Path(__file__).resolve().parents[1]


def total_variation(a: pd.Series, b: pd.Series, values: tuple[str, ...]) -> float:
    p = a.value_counts(normalize=True).reindex(values, fill_value=0.0)
    q = b.value_counts(normalize=True).reindex(values, fill_value=0.0)
    return float(0.5 * (p - q).abs().sum())


def attribute_distances(a: pd.DataFrame, b: pd.DataFrame, shapes: tuple[str, ...]) -> dict[str, float]:
    """Total variation per categorical attribute (the shape is the label, so it is left out)."""
    return {name: total_variation(a[name], b[name], values) for name, values in head_layout(shapes)
            if name not in ("valid", "shape")}


def run_sets(objective_spec, sampler_spec, sources, images, classifier, prior, perceptual, n, seed=0):
    """Sample one set per source; return the concatenated members with images and the summaries."""
    sampler = sampler_from_config(sampler_spec, perceptual)
    members, kept, summaries = [], [], []
    for i, row in enumerate(sources.itertuples()):
        objective = objective_from_config(objective_spec, classifier)
        result = preimage.sample(objective, images[i : i + 1], prior, sampler, n, seed=seed + i, perceptual=perceptual,
                                 set_id=row.image_id, source_id=row.image_id, source_class=row.class_name)
        members.append(result.members)
        kept.append(result.images)
        summaries.append(result.summary)
    return pd.concat(members, ignore_index=True), torch.cat(kept), pd.DataFrame(summaries)


def describe(name: str, summaries: pd.DataFrame) -> dict:
    accepted, seconds = summaries["accepted"].sum(), summaries["seconds"].sum()
    row = {"run": name, "members": int(summaries["members"].sum()), "accepted": int(accepted),
           "acceptance": accepted / summaries["members"].sum(), "accepted_per_s": accepted / seconds,
           "diversity_lpips": summaries["diversity"].mean(), "seconds": seconds}
    print(f"  {name:<28} acceptance {row['acceptance']:6.1%}  accepted/s {row['accepted_per_s']:7.3f}  "
          f"diversity {row['diversity_lpips']:.4f}  ({row['members']} members, {seconds:.1f} s)", flush=True)
    return row


def compare_samplers(samplers: dict[str, dict], name: str, objective: dict, sources: pd.DataFrame,
                     images: torch.Tensor, classifier, prior, perceptual, n: int, figure: Path | None) -> pd.DataFrame:
    """Each sampler's sets of objective `name` for the same sources, members and seeds; one row per sampler."""
    summaries, passes = [], {}
    for sampler, spec in samplers.items():
        members, _, summary = run_sets(objective, spec, sources, images, classifier, prior, perceptual, n)
        describe(f"{name} / {sampler}", summary)
        summaries.append(summary.assign(sampler=sampler))
        passes[sampler] = float(members["steps"].mean())
    every = pd.concat(summaries, ignore_index=True)
    table = sampler_table(every)
    totals = every.groupby("sampler")[["accepted", "seconds"]].sum()
    table["accepted_per_s"] = table["sampler"].map(totals["accepted"] / totals["seconds"])
    table["unet_passes_per_member"] = table["sampler"].map(passes)
    print(table.to_markdown(index=False, floatfmt=".3f"))
    if figure is not None:
        sampler_figure(table).savefig(figure, dpi=150)
        print(f"figure: {figure}")
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(REPO / "config.yaml"))
    parser.add_argument("--members", type=int, default=64, help="members per guided set")
    parser.add_argument("--rejection-members", type=int, default=128, help="draws per rejection set")
    parser.add_argument("--guided", type=json.loads, default={},
                        help="JSON keyword arguments that override the guided sampler's (sets.samplers.guided), e.g. "
                             "'{\"num_steps\": 15}' or '{\"guidance_interval\": [0, 1]}'")
    parser.add_argument("--repulsion-weight", type=float, default=2.0,
                        help="repulsion_weight of the diversity comparison (LPIPS space)")
    parser.add_argument("--repeats", type=int, default=2,
                        help="rounds of the interleaved neuron timing; their seconds are pooled")
    parser.add_argument("--pipeline", action="store_true", help="also time the default pipeline in a fresh clone")
    parser.add_argument("--compare-samplers", action="store_true",
                        help="only the side-by-side comparison of guided, rejection and noise_opt")
    parser.add_argument("--per-class", type=int, help="use this many sources of each class (default: all)")
    parser.add_argument("--noise-opt", type=json.loads, default={},
                        help="JSON keyword arguments of the noise_opt sampler (its defaults otherwise)")
    parser.add_argument("--figure", type=Path, help="--compare-samplers: write the sampler figure here")
    parser.add_argument("--objective", default="label", help="--compare-samplers: the objective of sets.objectives")
    parser.add_argument("--contenders", default="guided,rejection,noise_opt",
                        help="--compare-samplers: the samplers to compare, comma-separated")
    args = parser.parse_args()
    config = load_config(args.config)
    os.chdir(REPO)  # model folders are relative to the repository, as in the workflow
    device = resolve_device(config["device"])
    spec = WorldSpec.from_config(config["world"])
    classifier, prior = resolve_classifier(config, device), resolve_prior(config, device)
    oracle = load_oracle(model_dir(config, "oracle")).to(device)
    perceptual = load_lpips(**config["perceptual"], device=device)
    sources = select_sources(config)
    if args.per_class is not None:
        sources = sources.groupby("class_name", sort=False).head(args.per_class).reset_index(drop=True)
    images = load_images(sources, spec.image_size, world=spec).to(device)
    objectives, samplers = config["sets"]["objectives"], config["sets"]["samplers"]
    samplers["guided"].update(args.guided)
    rejection = samplers["rejection"]
    print(f"device {device} ({device_name(device)}, bf16 arithmetic: {native_bfloat16(device)}); prior UNet in "
          f"{prior.compute_dtype}; {len(sources)} sources; guided sampler {samplers['guided']}")

    if args.compare_samplers:
        known = {"guided": samplers["guided"], "rejection": rejection, "noise_opt": {"kind": "noise_opt", **args.noise_opt}}
        names = args.contenders.split(",")
        if unknown := sorted(set(names) - set(known)):
            parser.error(f"--contenders: {unknown} are not samplers here; choose from {sorted(known)}")
        compare_samplers({name: known[name] for name in names}, args.objective, objectives[args.objective], sources,
                         images, classifier, prior, perceptual, args.members, args.figure)
        return

    rows = []
    print("label objective")
    guided_label, guided_images, summary = run_sets(objectives["label"], samplers["guided"], sources, images,
                                                    classifier, prior, perceptual, args.members)
    rows.append(describe("label / guided", summary))
    reject_label, reject_images, summary = run_sets(objectives["label"], rejection, sources, images,
                                                    classifier, prior, perceptual, args.rejection_members)
    rows.append(describe("label / rejection", summary))
    guided_attributes = read_attributes(oracle, guided_images.to(device), spec.shapes)
    reject_attributes = read_attributes(oracle, reject_images.to(device), spec.shapes)
    guided_attributes["source_class"] = guided_label["source_class"].to_numpy()
    reject_attributes["source_class"] = reject_label["source_class"].to_numpy()
    guided_kept = guided_attributes[guided_label["accepted"].to_numpy()]
    reject_kept = reject_attributes[reject_label["accepted"].to_numpy()]
    halves = np.random.default_rng(0).permutation(len(reject_kept)) % 2 == 0
    print("  total variation of oracle attributes, accepted guided vs accepted rejection (the reference);")
    print("  'noise floor' is the distance between two random halves of the reference, i.e. sampling noise:")
    attribute_rows = [("all classes", guided_kept, reject_kept)] + [
        (cls, guided_kept[guided_kept["source_class"] == cls], reject_kept[reject_kept["source_class"] == cls])
        for cls in spec.shapes]
    for name, g, r in attribute_rows:
        distances = attribute_distances(g, r, spec.shapes)
        print(f"    {name:<11} guided n={len(g):3d} rejection n={len(r):3d}  "
              + "  ".join(f"{k} {v:.3f}" for k, v in distances.items()) + f"  max {max(distances.values()):.3f}")
    floor = attribute_distances(reject_kept[halves], reject_kept[~halves], spec.shapes)
    print(f"    noise floor (all classes, halves of the reference): max {max(floor.values()):.3f}")

    print("neuron objective", objectives["neuron"], f"({args.repeats} rounds; in each, every source's guided set is "
          "followed by its rejection set, so both samplers share the machine's load)")
    contenders = {"guided": (samplers["guided"], args.members), "rejection": (rejection, args.rejection_members)}
    rounds = {name: [] for name in contenders}
    for r in range(args.repeats):
        parts = {name: [] for name in contenders}
        for i in range(len(sources)):
            for name, (sampler_spec, n) in contenders.items():
                parts[name].append(run_sets(objectives["neuron"], sampler_spec, sources.iloc[i : i + 1],
                                            images[i : i + 1], classifier, prior, perceptual, n, seed=i)[2])
        for name in contenders:
            rounds[name].append(pd.concat(parts[name]))
        row = {name: describe(f"neuron / {name}, round {r + 1}", rounds[name][-1]) for name in contenders}
        print(f"    round {r + 1}: guided / rejection accepted per second "
              f"{row['guided']['accepted_per_s'] / row['rejection']['accepted_per_s']:.1f}x")
    pooled = {name: describe(f"neuron / {name}, all rounds", pd.concat(parts)) for name, parts in rounds.items()}
    rows += [pooled["guided"], pooled["rejection"]]
    ratio = pooled["guided"]["accepted_per_s"] / max(pooled["rejection"]["accepted_per_s"], 1e-12)
    print(f"  guided / rejection accepted per second, all rounds: {ratio:.1f}x "
          f"({pooled['guided']['accepted_per_s']:.2f} against {pooled['rejection']['accepted_per_s']:.2f})")
    cost = {name: row["seconds"] / row["members"] for name, row in pooled.items()}
    print(f"  a guided member costs {cost['guided'] / cost['rejection']:.2f} rejection draws "
          f"({cost['guided'] * 1e3:.0f} ms against {cost['rejection'] * 1e3:.0f} ms)")

    print(f"diversity: repulsion (weight {args.repulsion_weight:g}) in LPIPS space vs none (label objective)")
    repelled = samplers["guided"] | {"repulsion_weight": args.repulsion_weight, "repulsion_space": "lpips"}
    plain = samplers["guided"] | {"repulsion_weight": 0.0}
    for name, sampler_spec in (("label / guided, no repulsion", plain), ("label / guided, repulsion", repelled)):
        _, kept, summary = run_sets(objectives["label"], sampler_spec, sources, images, classifier, prior, perceptual,
                                    args.members)
        rows.append(describe(name, summary))
        valid = read_attributes(oracle, kept.to(device), spec.shapes)["valid"] == "valid"
        print(f"    the oracle calls {valid.mean():.1%} of its members valid images (repulsion can buy diversity "
              "with broken images)")
    print(f"  diversity ratio: {rows[-1]['diversity_lpips'] / rows[-2]['diversity_lpips']:.2f}x")

    if args.pipeline:
        with tempfile.TemporaryDirectory() as clone:
            subprocess.run(["git", "clone", "-q", str(REPO), clone], check=True)
            start = time.perf_counter()
            subprocess.run(["snakemake", "--cores", "2", "--quiet"], cwd=clone, check=True)
            print(f"default pipeline wall time (fresh clone, 2 cores): {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
