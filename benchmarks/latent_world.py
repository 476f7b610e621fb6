"""Where the latent path spends its time per member: UNet, VAE decode, classifier (issue 23).

Samples one label set and one neuron set (or `--objectives`' sets) of a source of each class with each sampler
the preset draws that objective with (guided, noise_opt, rejection; `sets.sampler_overrides` applied, then
`--guided` on the guided sampler) through the world's latent prior, and times the forward passes of the UNet, the VAE
decoder and the classifier with hooks; "rest" is everything else (backward passes through classifier, decoder and,
for noise_opt, the UNet; the scheduler; bookkeeping). Prints per sampler and objective: acceptance, accepted members
per second, diversity, and milliseconds per member in each part, with the CPU or GPU named.

Usage: python benchmarks/latent_world.py [--preset presets/world_latent.yaml] [--members 32] [--per-class 1]
       [--objectives label neuron] [--guided '{"guidance_scale": 0.32}']
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import pandas as pd
import torch

import preimage
from preimage.engine.objectives import from_config as objective_from_config
from preimage.engine.samplers.spec import from_config as sampler_from_config
from preimage.pipeline.config import objective_samplers, read_yaml, validate_config
from preimage.pipeline.models import class_text, resolve_classifier, resolve_perceptual, resolve_prior
from preimage.pipeline.worlds import merge_overlay
from preimage.utils.devices import device_name, resolve_device
from preimage.utils.images import to_tensor
from preimage.world.generator import WorldSpec, make_split

REPO = Path(__file__).resolve().parents[1]


class ForwardTimer:
    """Accumulated forward wall time of named modules, by forward pre- and post-hooks; on a GPU each hook first
    waits for the queued kernels, so a module is billed for its own kernels, not for their launch."""

    def __init__(self, modules: dict[str, torch.nn.Module], device: torch.device) -> None:
        # every module has an entry: one that never runs (a low-pass set's classifier) is billed 0
        self.seconds: dict[str, float] = dict.fromkeys(modules, 0.0)
        self._started: dict[str, float] = {}
        self.synchronize = torch.cuda.synchronize if device.type == "cuda" else lambda: None
        for name, module in modules.items():
            module.register_forward_pre_hook(self._start(name))
            module.register_forward_hook(self._stop(name), always_call=True)  # also when a neuron read stops the pass

    def _start(self, name: str):
        def hook(*_):
            self.synchronize()
            self._started[name] = time.perf_counter()
        return hook

    def _stop(self, name: str):
        def hook(*_):
            self.synchronize()
            self.seconds[name] += time.perf_counter() - self._started.pop(name)
        return hook

    def reset(self) -> None:
        self.seconds = dict.fromkeys(self.seconds, 0.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default=str(REPO / "presets/world_latent.yaml"))
    parser.add_argument("--members", type=int, default=32)
    parser.add_argument("--per-class", type=int, default=1)
    parser.add_argument("--objectives", nargs="+", default=["label", "neuron"])
    parser.add_argument("--guided", type=json.loads, default={},
                        help="JSON keyword arguments that override the guided sampler's, "
                             "e.g. '{\"guidance_scale\": 0.32}'")
    args = parser.parse_args()
    torch.manual_seed(0)
    config = validate_config(merge_overlay(read_yaml(REPO / "config.yaml"), read_yaml(args.preset)), args.preset)
    device = resolve_device(config["device"])
    classifier = resolve_classifier(config, device)
    prior = resolve_prior(config, device, class_name=config["world"]["shapes"][0])
    perceptual = resolve_perceptual(config, device)  # diversity as the report measures it (mean pairwise LPIPS)
    spec = WorldSpec.from_config(config["world"])
    table, images = make_split(spec, "classifier_test")
    sources = table.groupby("shape", sort=False).head(args.per_class)
    timer = ForwardTimer({"unet": prior.unet, "vae_decode": prior.vae.decoder, "classifier": classifier}, device)
    print(f"device: {device_name(device)}, torch threads {torch.get_num_threads()}, prior {config['models']['prior']}")
    rows = []
    for objective_name in args.objectives:
        for sampler_name, spec_ in objective_samplers(config["sets"], objective_name).items():
            sampler = sampler_from_config({**spec_, **args.guided} if sampler_name == "guided" else spec_, perceptual)
            for index, row in sources.iterrows():
                prior.set_prompt(config["models"]["prior"]["prompt"].replace("{class_name}", class_text(classifier, row["shape"])))
                objective = objective_from_config(config["sets"]["objectives"][objective_name], classifier)
                timer.reset()
                start = time.perf_counter()
                result = preimage.sample(objective, to_tensor(images[index : index + 1]).to(device), prior, sampler,
                                         args.members, seed=int(index), perceptual=perceptual)
                timer.synchronize()
                wall = time.perf_counter() - start
                parts = {name: seconds for name, seconds in timer.seconds.items()}
                rows.append({"objective": objective_name, "sampler": sampler_name, "class": row["shape"],
                             "members": result.summary["members"], "accepted": result.summary["accepted"],
                             "diversity": result.summary["diversity"], "seconds": wall,
                             **parts, "rest": wall - sum(parts.values())})
    frame = pd.DataFrame(rows)
    totals = frame.groupby(["objective", "sampler"], sort=False).sum(numeric_only=True)
    out = pd.DataFrame({
        "acceptance": totals["accepted"] / totals["members"],
        "accepted_per_s": totals["accepted"] / totals["seconds"],
        "diversity": frame.groupby(["objective", "sampler"], sort=False)["diversity"].mean(),
        **{f"ms_per_member_{part}": 1000 * totals[part] / totals["members"]
           for part in ("unet", "vae_decode", "classifier", "rest")},
    })
    print(out.to_markdown(floatfmt=".3f"))


if __name__ == "__main__":
    main()
