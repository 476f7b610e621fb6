"""Counterfactuals from pure noise against minimal edits of the source, on the shortcut world.

A label counterfactual asks for images the classifier calls the target class. Drawn from pure noise
(strength 1), its members are any images of the target the prior and the guidance find, and rarely resemble the
source. A minimal edit (DVCE, DiME) starts late, from the source noised to noise level `strength`, and pulls
towards the source with an L1 distance term of weight `distance_weight`, so that the members change only what
the decision needs. For each setting, over the same sources and seeds, this prints:

- acceptance: the share of members the classifier calls the target, and accepted members per second;
- LPIPS to the source of the accepted members (lower: closer to the source);
- kept attributes: the share of the oracle's readings of colour, background, texture, tag and the other
  attributes (shape aside) that equal its reading of the source, over accepted members;
- target shape: the share of accepted members the oracle calls the target shape (a real change of shape,
  against a shortcut such as the tag that flips the classifier alone);
- diversity: mean pairwise LPIPS within a set.

Usage: python benchmarks/counterfactuals.py [--config config.yaml] [--objective counterfactual]
       [--per-class 2] [--members 16] [--strengths 1 0.7 0.6 0.5] [--distance-weights 0 0.3 1]
       [--guided '{"eta": 1}'] [--cone-angle 30] [--rejection] [--markdown table.md]
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import pandas as pd
import torch

import preimage
from preimage.engine.models import load_classifier, load_lpips
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


def settings(base: dict, strengths: list[float], weights: list[float], rejection: bool,
             cone_angle: float | None = None) -> dict[str, dict]:
    """Sampler specs by name: the guided sampler at every strength and distance weight (a weight only below
    strength 1, where there is a source to stay close to), with `cone_angle` each also with DVCE's cone, and with
    `rejection` the rejection sampler at every strength (SDEdit with a filter)."""
    specs = {}
    for strength in strengths:
        for weight in weights if strength < 1 else [0.0]:
            name, spec = f"guided s={strength:g} d={weight:g}", base | {"strength": strength, "distance_weight": weight}
            specs[name] = spec
            if cone_angle is not None:
                specs[f"{name} cone={cone_angle:g}"] = spec | {"cone_angle": cone_angle}
        if rejection:
            specs[f"rejection s={strength:g}"] = {"kind": "rejection", "strength": strength}
    return specs


def changed_attributes(members: pd.DataFrame, source: pd.Series, shapes: tuple[str, ...]) -> pd.DataFrame:
    """(members, attributes) booleans: where the oracle's reading of a categorical attribute, shape and
    validity aside, differs from its reading of the source."""
    names = [name for name, _ in head_layout(shapes) if name not in ("shape", "valid")]
    return members[names] != source[names]


def measure(name: str, sampler_spec: dict, objective_spec: dict, target: str, sources: pd.DataFrame,
            images: torch.Tensor, classifier, prior, perceptual, oracle, shapes: tuple[str, ...], n: int,
            robust: torch.nn.Module | None = None) -> dict:
    """One setting's sets, one per source with the source's index as seed, and their figures; `robust` spans the
    cone of a spec with `cone_angle`."""
    sampler = sampler_from_config(sampler_spec, perceptual, robust=robust)
    source_attributes = read_attributes(oracle, images, shapes)
    summaries, changed, on_target = [], [], []
    for i, row in enumerate(sources.itertuples()):
        objective = objective_from_config(objective_spec, classifier)
        result = preimage.sample(objective, images[i : i + 1], prior, sampler, n, seed=i, perceptual=perceptual,
                                 set_id=row.image_id, source_id=row.image_id, source_class=row.class_name)
        summaries.append(result.summary)
        accepted = result.members["accepted"].to_numpy(dtype=bool, copy=True)
        if accepted.any():
            attributes = read_attributes(oracle, result.images[accepted].to(images.device), shapes)
            changed.append(changed_attributes(attributes, source_attributes.iloc[i], shapes))
            on_target.append(float((attributes["shape"] == target).sum()))
    frame = pd.DataFrame(summaries)
    changed = pd.concat(changed) if changed else pd.DataFrame()
    accepted, seconds = int(frame["accepted"].sum()), float(frame["seconds"].sum())
    row = {"setting": name, "members": int(frame["members"].sum()), "acceptance": accepted / frame["members"].sum(),
           "accepted_per_s": accepted / seconds,
           "lpips_to_source": float((frame["mean_lpips_to_source"] * frame["accepted"]).sum() / max(accepted, 1)),
           "kept_attributes": float(1 - changed.to_numpy().mean()) if accepted else float("nan"),
           "target_shape": sum(on_target) / accepted if accepted else float("nan"),
           "diversity": float(frame["diversity"].mean()), "seconds": seconds}
    print("  " + "  ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()),
          flush=True)
    if accepted:
        print("    changed by the oracle, share of accepted members: "
              + ", ".join(f"{k} {v:.2f}" for k, v in changed.mean().sort_values(ascending=False).head(4).items()))
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(REPO / "config.yaml"))
    parser.add_argument("--objective", default="counterfactual", help="a label objective with a target class")
    parser.add_argument("--per-class", type=int, default=2, help="sources of each class other than the target")
    parser.add_argument("--members", type=int, default=16, help="members per set")
    parser.add_argument("--strengths", type=float, nargs="+", default=[1.0, 0.7, 0.6, 0.5])
    parser.add_argument("--distance-weights", type=float, nargs="+", default=[0.0, 0.3, 1.0])
    parser.add_argument("--guided", type=json.loads, default={},
                        help="JSON keyword arguments of the guided sampler over the config's (e.g. eta)")
    parser.add_argument("--cone-angle", type=float,
                        help="also each guided setting with DVCE's cone around the world's robust classifier")
    parser.add_argument("--rejection", action="store_true", help="also the rejection sampler at each strength")
    parser.add_argument("--markdown", type=Path, help="also write the table here")
    args = parser.parse_args()
    config = load_config(args.config)
    os.chdir(REPO)  # model folders are relative to the repository, as in the workflow
    objective_spec = config["sets"]["objectives"][args.objective]
    target = objective_spec.get("target")
    if objective_spec.get("kind") != "label" or not isinstance(target, str):
        raise SystemExit(f"sets.objectives.{args.objective}: expected a label objective with a target class name, "
                         f"got {objective_spec}")
    device = resolve_device(config["device"])
    world = WorldSpec.from_config(config["world"])
    classifier, prior = resolve_classifier(config, device), resolve_prior(config, device)
    oracle = load_oracle(model_dir(config, "oracle")).to(device)
    perceptual = load_lpips(**config["perceptual"], device=device)
    robust = None if args.cone_angle is None else load_classifier(model_dir(config, "robust")).to(device)
    sources = select_sources(config)
    sources = sources[sources["class_name"] != target].groupby("class_name", sort=False).head(args.per_class)
    sources = sources.reset_index(drop=True)
    images = load_images(sources, world.image_size, world=world).to(device)
    guided = {"kind": "guided"} | config["sets"]["samplers"].get("guided", {}) | args.guided
    print(f"device {device} ({device_name(device)}, bf16 arithmetic: {native_bfloat16(device)}); prior UNet in "
          f"{prior.compute_dtype}; objective {objective_spec}; {len(sources)} sources "
          f"({', '.join(sources['class_name'].unique())}), {args.members} members each; guided base {guided}")
    grid = settings(guided, args.strengths, args.distance_weights, args.rejection, args.cone_angle)
    rows = [measure(name, spec, objective_spec, target, sources, images, classifier, prior, perceptual, oracle,
                    world.shapes, args.members, robust)
            for name, spec in grid.items()]
    table = pd.DataFrame(rows).to_markdown(index=False, floatfmt=".3f")
    print(table)
    if args.markdown is not None:
        args.markdown.write_text(table + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
