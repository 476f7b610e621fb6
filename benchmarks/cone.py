"""Benchmark DVCE's cone projection on the shortcut world: label counterfactuals with and without the cone.

For a few test sources per class and every other class as the target (objective `{kind: label, target: <class>}`),
the guided sampler draws the same members (same seeds) without a cone and with cones of the given angles around the
world's adversarially robust classifier (`models.robust: {source: world}`), in two settings: the default
counterfactual (from pure noise) and DVCE's late start from the noised source (`--strength`, `--distance-weight`).
Per setting and sampler it prints:

- acceptance: the share of members the explained classifier calls the target;
- oracle agreement: the share of accepted members the world's oracle calls the target shape (and valid), and the
  share of all members that are accepted and of the target shape;
- shortcut share: the share of accepted members of a target with a planted shortcut (a tag on squares, a purple
  background on triangles) that show it;
- the robust classifier's acceptance of the accepted members;
- mean L1 and LPIPS distance of the members to their source;
- seconds per member, accepted members and members of the target shape per second;
- per target class: acceptance, oracle agreement and shortcut share.

It also measures, on `classifier_test`, the clean and PGD accuracy of the explained and the robust classifier under
the robust model's training attack (its epsilon, or each of `--epsilons`; `eval_steps` steps).

Usage: python benchmarks/cone.py [--per-class 2] [--members 16] [--angles 30 60] [--strength 0.6]
       [--distance-weight 0.1] [--threads 2] [--epsilons 0.25 0.5 1 2] [--skip-attack | --skip-sets]

The samplers of one set run back to back (no cone, then each cone), so a slow minute on a shared machine slows
them alike.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

import preimage
from preimage.engine.objectives import label
from preimage.engine.samplers.spec import from_config as sampler_from_config
from preimage.pipeline.config import load_config
from preimage.pipeline.models import model_dir, resolve_classifier, resolve_perceptual, resolve_prior, resolve_robust
from preimage.pipeline.sources import load_images
from preimage.pipeline.workflow import select_sources
from preimage.utils.devices import device_name, resolve_device
from preimage.world.generator import WorldSpec
from preimage.world.oracle import load_oracle, read_attributes
from preimage.world.training.robust import robust_accuracy

REPO = Path(__file__).resolve().parents[1]


def attack_rows(models: dict[str, torch.nn.Module], spec: WorldSpec, attack: dict, epsilons: list[float],
                device: torch.device) -> None:
    """Clean and PGD accuracy of each model on classifier_test, at each epsilon."""
    print(f"accuracy on classifier_test, clean and under PGD ({attack['norm']}, {attack['eval_steps']} steps):")
    for epsilon in epsilons:
        for name, model in models.items():
            torch.manual_seed(0)  # the attacks' random starts
            start = time.perf_counter()
            result = robust_accuracy(model, spec, attack | {"epsilon": epsilon}, device)
            print(f"  epsilon {epsilon:<5g} {name:<10} clean {result['clean_accuracy']:.1%}  adversarial "
                  f"{result['adversarial_accuracy']:.1%}  ({time.perf_counter() - start:.0f} s)", flush=True)


def shortcut_values(spec: WorldSpec) -> dict[str, tuple[str, str]]:
    """class -> (attribute, value) of the shortcut planted on it."""
    return {s.cls: (s.attribute, s.value) for s in spec.shortcuts}


def draw(samplers: dict[str, dict], sources: pd.DataFrame, images: torch.Tensor, shapes: tuple[str, ...], models: dict,
         n: int) -> dict[str, list[dict]]:
    """Every source's counterfactual set to every other class, for each sampler (same seeds)."""
    built = {name: sampler_from_config(spec, models["perceptual"], robust=models["robust"])
             for name, spec in samplers.items()}
    rows: dict[str, list[dict]] = {name: [] for name in samplers}
    for i, source in enumerate(sources.itertuples()):
        for target in shapes:
            if target == source.class_name:
                continue
            for name, sampler in built.items():
                result = preimage.sample(label(models["classifier"], target=target), images[i : i + 1],
                                         models["prior"], sampler, n, seed=i, perceptual=models["perceptual"])
                rows[name].append({"target": target, "result": result, "source": images[i : i + 1].cpu()})
    return rows


def measure(sets: list[dict], oracle: torch.nn.Module, robust: torch.nn.Module, spec: WorldSpec,
            device: torch.device) -> dict:
    """One sampler's figures over its sets (see the module docstring)."""
    members, oracle_ok, robust_ok, shortcut, l1 = 0, [], [], [], []
    accepted = seconds = lpips = 0.0
    planted = shortcut_values(spec)
    for item in sets:
        result, target = item["result"], item["target"]
        table, images = result.members, result.images
        kept = np.array(table["accepted"], dtype=bool)
        members += len(table)
        accepted += kept.sum()
        seconds += table["seconds"].sum()
        lpips += table["lpips_to_source"].sum()
        l1 += (images - item["source"]).abs().flatten(1).mean(1).tolist()
        attributes = read_attributes(oracle, images.to(device), spec.shapes)
        is_target = ((attributes["shape"] == target) & (attributes["valid"] == "valid")).to_numpy()
        oracle_ok += is_target[kept].tolist()
        if kept.any():
            with torch.no_grad():
                calls = robust(images[kept].to(device)).argmax(1).cpu()
            robust_ok += (calls == spec.shapes.index(target)).tolist()
        if target in planted:
            attribute, value = planted[target]
            shortcut += (attributes[attribute] == value).to_numpy()[kept].tolist()
    on_target = sum(oracle_ok)
    return {"members": members, "acceptance": accepted / members,
            "oracle_agreement": float(np.mean(oracle_ok)) if oracle_ok else float("nan"),
            "target_shape_rate": on_target / members,
            "shortcut_share": float(np.mean(shortcut)) if shortcut else float("nan"),
            "robust_acceptance": float(np.mean(robust_ok)) if robust_ok else float("nan"),
            "l1_to_source": float(np.mean(l1)), "lpips_to_source": lpips / members,
            "seconds_per_member": seconds / members, "accepted_per_s": accepted / seconds,
            "target_shape_per_s": on_target / seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(REPO / "config.yaml"))
    parser.add_argument("--per-class", type=int, default=2, help="sources of each class (classifier_test)")
    parser.add_argument("--members", type=int, default=16, help="members per set")
    parser.add_argument("--angles", type=float, nargs="+", default=[30.0, 60.0], help="cone half-angles, degrees")
    parser.add_argument("--strength", type=float, default=0.6, help="the late start's strength")
    parser.add_argument("--distance-weight", type=float, default=0.1, help="the late start's L1 weight")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--epsilons", type=float, nargs="+",
                        help="PGD radii of the accuracy check (default: the robust model's training epsilon)")
    parser.add_argument("--skip-attack", action="store_true", help="leave out the clean / PGD accuracies")
    parser.add_argument("--skip-sets", action="store_true", help="only the clean / PGD accuracies")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = load_config(args.config)
    config["models"]["robust"] = {"source": "world", "pretrained_file": None}
    os.chdir(REPO)  # model folders are relative to the repository, as in the workflow
    device = resolve_device(config["device"])
    spec = WorldSpec.from_config(config["world"])
    models = {"classifier": resolve_classifier(config, device), "robust": resolve_robust(config, device).eval(),
              "prior": resolve_prior(config, device), "perceptual": resolve_perceptual(config, device)}
    oracle = load_oracle(model_dir(config, "oracle")).to(device)
    print(f"device {device} ({device_name(device)}), {args.threads} threads; robust model {model_dir(config, 'robust')}")
    if not args.skip_attack:
        attack = config["training"]["robust"]["attack"]
        attack_rows({"classifier": models["classifier"], "robust": models["robust"]}, spec, attack,
                    args.epsilons or [attack["epsilon"]], device)
    if args.skip_sets:
        return
    sources = select_sources(config).groupby("class_name", sort=False).head(args.per_class).reset_index(drop=True)
    images = load_images(sources, spec.image_size, world=spec).to(device)
    settings = {"pure noise": {"kind": "guided"},
                f"late start {args.strength:g}, L1 {args.distance_weight:g}":
                    {"kind": "guided", "strength": args.strength, "distance_weight": args.distance_weight}}
    print(f"{len(sources)} sources, every other class as the target, {args.members} members per set")
    rows, by_target = [], []
    for setting, base in settings.items():
        samplers = {"no cone": base} | {f"cone {angle:g}°": base | {"cone_angle": angle} for angle in args.angles}
        start = time.perf_counter()
        sets = draw(samplers, sources, images, spec.shapes, models, args.members)
        for name, drawn in sets.items():
            rows.append({"start": setting, "sampler": name, **measure(drawn, oracle, models["robust"], spec, device)})
            for target in spec.shapes:
                part = measure([item for item in drawn if item["target"] == target], oracle, models["robust"], spec,
                               device)
                by_target.append({"start": setting, "sampler": name, "target": target, **part})
        print(f"  {setting}: {time.perf_counter() - start:.0f} s", flush=True)
    print(pd.DataFrame(rows).to_markdown(index=False, floatfmt=".3f"))
    print("per target: acceptance / oracle agreement of the accepted members / shortcut share")
    per_target = pd.DataFrame(by_target)
    cells = per_target.apply(lambda r: f"{r.acceptance:.2f} / {r.oracle_agreement:.2f}"
                             + ("" if np.isnan(r.shortcut_share) else f" / {r.shortcut_share:.2f}"), axis=1)
    order = pd.MultiIndex.from_frame(per_target[["start", "sampler"]].drop_duplicates())
    print(per_target.assign(cell=cells).pivot(index=["start", "sampler"], columns="target", values="cell")
          .reindex(index=order, columns=list(spec.shapes)).to_markdown())


if __name__ == "__main__":
    main()
