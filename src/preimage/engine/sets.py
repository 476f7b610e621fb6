"""Invariant sets: sample them, re-check every member, measure the set, and store it as artifacts.

`sample` is the Python entry point (no Snakemake needed); `write_set` stores a set so that a rerun skips
it: member PNGs and the members table are written first, the one-row summary last, each atomically, so
a summary on disk means the set is complete.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from preimage.engine.objectives import function
from preimage.engine.priors.base import DiffusionPrior
from preimage.engine.samplers.base import ObjectiveLike, SamplerLike
from preimage.engine.samplers.diversity import pairwise_sq_distances
from preimage.engine.samplers.rejection import DrawPool, RejectionSampler
from preimage.engine.set_files import MEMBERS_FILE, SOURCE_FILE, SUMMARY_FILE
from preimage.utils.hashing import stable_hash
from preimage.utils.images import read_rgb, to_tensor, to_uint8
from preimage.utils.io import write_parquet, write_png


@dataclass
class InvariantSet:
    """A sampled set: per-member rows, the member images (n, 3, H, W) in [0, 1], and a one-row summary."""

    members: pd.DataFrame
    images: Tensor
    source: Tensor
    summary: dict[str, Any]

    @property
    def accepted_images(self) -> Tensor:
        return self.images[torch.tensor(self.members["accepted"].to_numpy())]


def _per_member(value: Any, i: int) -> Any:
    """Member i's part of an objective value (a tensor, or a dict of tensors for a sum)."""
    if isinstance(value, dict):
        return {key: _per_member(part, i) for key, part in value.items()}
    return value[i].tolist()


def mean_pairwise(features: Tensor) -> float:
    """Mean distance over distinct pairs (squared Euclidean, which equals LPIPS for LPIPS embeddings)."""
    if len(features) < 2:
        return float("nan")
    distances = pairwise_sq_distances(features)
    n = len(features)
    return float(distances.sum() / (n * (n - 1)))


@torch.no_grad()
def _distances(images: Tensor, source: Tensor, perceptual: torch.nn.Module | None) -> tuple[np.ndarray, np.ndarray]:
    """Per-member L2 (root mean square over pixels) and LPIPS distance to the source, computed on the images'
    device."""
    l2 = (images - source).flatten(1).pow(2).mean(1).sqrt().cpu().numpy()
    if perceptual is None:
        return l2, np.full(len(images), np.nan)
    return l2, perceptual(images, source.expand_as(images)).cpu().numpy()


def sample(
    objective: ObjectiveLike,
    source: Tensor,
    prior: DiffusionPrior,
    sampler: SamplerLike,
    n: int,
    *,
    seed: int = 0,
    perceptual: torch.nn.Module | None = None,
    set_id: str = "set",
    source_id: str = "source",
    source_class: str = "",
) -> InvariantSet:
    """Sample n members of `objective`'s invariant (or counterfactual) set around `source` (1, 3, H, W).

    `objective` may be unbound: its source-relative targets are bound to `source` here. `perceptual`
    is an LPIPS module (`preimage.engine.models.load_lpips`): with it, distances and diversity are in LPIPS.
    The objective, LPIPS and the re-check run on the prior's device; the returned set is on the CPU.
    """
    source = source.to(prior.device)
    if perceptual is not None:
        perceptual.to(prior.device)
    bound = objective.bind(source)
    result = sampler.sample(prior, bound, source, n, torch.Generator().manual_seed(seed))
    images = result.images
    with torch.no_grad():
        achieved = bound.value(images)
        accepted = bound.accept(images).cpu().numpy().astype(bool)
    l2, lpips = _distances(images, source, perceptual)
    description = bound.describe()
    members = pd.DataFrame(
        {
            "set_id": set_id,
            "source_id": source_id,
            "source_class": source_class,
            "objective": json.dumps(description, sort_keys=True),
            "objective_kind": description["kind"],
            "counterfactual": description.get("target", "source") != "source",
            "target": json.dumps(description.get("bound_target")),
            "achieved": [json.dumps(_per_member(achieved, i)) for i in range(len(images))],
            "accepted": accepted,
            "loss": result.loss.numpy(),
            "l2_to_source": l2,
            "lpips_to_source": lpips,
            "seed": result.seeds.numpy(),
            "sampler": sampler.describe()["sampler"],
            "sampler_params": json.dumps(sampler.describe(), sort_keys=True),
            "prompt": prior.describe().get("prompt", ""),  # what a text-conditioned prior was prompted with
            "steps": result.steps.numpy(),
            "seconds": result.seconds.numpy(),
            "image": [f"members/{i:03d}.png" for i in range(len(images))],
        }
    )
    summary = summarise(members, images, perceptual)
    return InvariantSet(members, images.cpu(), source.cpu(), summary)


def summarise(members: pd.DataFrame, images: Tensor, perceptual: torch.nn.Module | None) -> dict[str, Any]:
    """Acceptance, speed, diversity and closeness of a set, over its accepted members (diversity is computed
    on the images' device)."""
    accepted = members["accepted"].to_numpy()
    seconds = float(members["seconds"].sum())
    kept = images[torch.tensor(accepted, device=images.device)]
    with torch.no_grad():
        features = perceptual.embed(kept) if perceptual is not None and len(kept) else kept.flatten(1)
    first = members.iloc[0]
    return {
        "set_id": first["set_id"],
        "source_id": first["source_id"],
        "source_class": first["source_class"],
        "objective_kind": first["objective_kind"],
        "sampler": first["sampler"],
        "counterfactual": bool(first["counterfactual"]),
        "members": len(members),
        "accepted": int(accepted.sum()),
        "acceptance_rate": float(accepted.mean()),
        "accepted_per_second": float(accepted.sum() / seconds) if seconds > 0 else float("nan"),
        "diversity": mean_pairwise(features.cpu()),
        "diversity_space": "lpips" if perceptual is not None else "pixels",
        "mean_l2_to_source": float(members.loc[accepted, "l2_to_source"].mean()) if accepted.any() else float("nan"),
        "mean_lpips_to_source": float(members.loc[accepted, "lpips_to_source"].mean()) if accepted.any() else float("nan"),
        "seconds": seconds,
    }


def write_set(invariant_set: InvariantSet, out_dir: str | Path, extra: dict[str, Any] | None = None) -> None:
    """Store a set: source and member PNGs, members table, then the summary (which marks completion).

    `extra` adds columns to the summary (e.g. the objective's and sampler's names from the config).
    """
    out = Path(out_dir)
    write_png(to_uint8(invariant_set.source)[0], out / SOURCE_FILE)
    for image, name in zip(to_uint8(invariant_set.images), invariant_set.members["image"]):
        write_png(image, out / name)
    write_parquet(invariant_set.members, out / MEMBERS_FILE)
    write_parquet(pd.DataFrame([invariant_set.summary | (extra or {})]), out / SUMMARY_FILE)


def is_complete(out_dir: str | Path) -> bool:
    """A set is complete once its summary exists; a rerun skips it."""
    return (Path(out_dir) / SUMMARY_FILE).is_file()


def read_set(out_dir: str | Path) -> InvariantSet:
    """A set `write_set` stored, back in memory: members table, member images and source (from their 8-bit
    PNGs), and the summary with `write_set`'s extra columns."""
    folder = Path(out_dir)
    if not is_complete(folder):
        raise FileNotFoundError(f"invariant set folder {str(folder)!r} is not a complete set: it has no {SUMMARY_FILE}, "
                                "which write_set writes last")
    members = pd.read_parquet(folder / MEMBERS_FILE)
    images = to_tensor(np.stack([np.array(read_rgb(folder / name)) for name in members["image"]]))
    source = to_tensor(np.array(read_rgb(folder / SOURCE_FILE))[None])
    summary = pd.read_parquet(folder / SUMMARY_FILE).to_dict("records")[0]
    return InvariantSet(members, images, source, summary)


def unconstrained() -> ObjectiveLike:
    """An objective every image satisfies: drawing with it gives plain prior samples (the reference set)."""
    return function(lambda images: images.new_zeros(len(images)), tolerance=1.0, name="none")


def reference_set(prior: DiffusionPrior, n: int, seed: int, num_steps: int,
                  prompts: Mapping[str, tuple[str, str]] | None = None, set_id: str = "reference",
                  solver: str = "ddim") -> InvariantSet:
    """Unconstrained prior samples: the matched reference that concept enrichment compares sets with.

    `prompts` maps a class name to the (prompt, negative prompt) of that class's sets, for a latent prior whose
    prompt names the class: the one prior is re-prompted per class (`set_prompt`), so the reference shares each
    set's prompt and enrichment does not merely detect the prompt. The `n` members are split evenly over the
    classes; without `prompts` every member is drawn with the prior as it is (source_class ""). `set_id` names
    the sample in its members table (the shared rejection pool is drawn the same way); `num_steps` and `solver`
    walk each chain (`DiffusionPrior.solve`).
    """
    sampler = RejectionSampler(num_steps=num_steps, batch_size=32, solver=solver)
    classes = dict(prompts) if prompts else {"": None}
    per_class = -(-n // len(classes))
    blank = torch.zeros(1, 3, prior.image_size, prior.image_size, device=prior.device)
    parts = []
    for i, (class_name, prompt) in enumerate(classes.items()):
        if prompt is not None:
            prior.set_prompt(*prompt)
        parts.append(sample(unconstrained(), blank, prior, sampler, per_class, seed=seed + i, set_id=set_id,
                            source_id="none", source_class=class_name))
    table = pd.concat([part.members for part in parts], ignore_index=True)
    table["image"] = [f"members/{i:03d}.png" for i in range(len(table))]
    table["objective_kind"] = "none"
    images = torch.cat([part.images for part in parts])
    return InvariantSet(table, images, parts[0].source, summarise(table, images, None))


def draw_pool(reference: InvariantSet, source_class: str = "") -> DrawPool:
    """The reference sample's draws as a `DrawPool` for rejection sets: those drawn for `source_class` (the
    class whose prompt a latent prior was given; "" for a prior without a class prompt)."""
    rows = (reference.members["source_class"] == source_class).to_numpy()
    if not rows.any():
        found = sorted(reference.members["source_class"].unique())
        raise ValueError(f"the reference sample has no draws for class {source_class!r}; it has {found}")
    chain = ("num_steps", "eta", "strength", "solver")
    params = {json.dumps({key: value for key, value in json.loads(text).items() if key in chain},
                         sort_keys=True) for text in reference.members.loc[rows, "sampler_params"]}
    if len(params) != 1 or json.loads(next(iter(params))).get("strength") != 1.0:
        raise ValueError(f"the reference draws are not one pool of pure-noise draws: their settings are {sorted(params)}")
    settings = json.loads(next(iter(params)))
    table = reference.members.loc[rows]
    return DrawPool(
        images=reference.images[torch.from_numpy(rows.copy())],
        seeds=torch.tensor(table["seed"].to_numpy(), dtype=torch.long),
        steps=torch.tensor(table["steps"].to_numpy(), dtype=torch.long),
        seconds=torch.tensor(table["seconds"].to_numpy(), dtype=torch.float32),
        num_steps=int(settings["num_steps"]),
        eta=float(settings["eta"]),
        solver=settings["solver"],
    )


def set_seed(seed: int, set_id: str) -> int:
    """A set's own seed, from the run's seed and the set's id: stable across runs, machines and job order."""
    return int(stable_hash([seed, set_id]), 16)


def generate_sets(
    source: Tensor,
    source_row: dict[str, Any],
    objective_name: str,
    objective: ObjectiveLike,
    samplers: dict[str, SamplerLike],
    prior: DiffusionPrior,
    n: int,
    seed: int,
    perceptual: torch.nn.Module | None,
    out_root: str | Path,
) -> list[Path]:
    """Sample and store one set per sampler for one (source, objective); complete sets are skipped.

    Each set draws its members from its own seed (`set_seed`), so the sets of a class pool independent
    draws rather than the same start noises again and again.
    """
    written = []
    for sampler_name, sampler in samplers.items():
        set_id = f"{source_row['image_id']}__{objective_name}__{sampler_name}"
        out = Path(out_root) / set_id
        written.append(out)
        if is_complete(out):
            continue
        result = sample(objective, source, prior, sampler, n, seed=set_seed(seed, set_id), perceptual=perceptual,
                        set_id=set_id, source_id=source_row["image_id"], source_class=source_row["class_name"])
        extra = {"objective_name": objective_name, "sampler_name": sampler_name,
                 "guidance_scale": getattr(sampler, "guidance_scale", float("nan"))}
        write_set(result, out, extra)
    return written
