"""Guided sets of the default run's sources along several guided chains, from the same seeds.

Each chain is a JSON overlay on the guided sampler spec that draws an objective's sets in the config (the
objective's `sets.sampler_overrides` applied), e.g. '{}' (the config's own) and '{"approach_steps": null}' (the
schedule's own approach to the first guided step). Every objective of `sets.objectives` (or `--objectives`) is bound
to each of the run's sources as the set jobs bind it, and each chain draws `--members` members per source from the
same seeds, so each member's acceptance is paired across the chains. The script prints each objective's guided
acceptance per chain, after the first chain with its paired difference from the first and that difference's
standard error over the members, then each chain's denoiser passes per member and CPU seconds.

Usage: python benchmarks/guided_chains.py [--config config.yaml] [--members 64] [--objectives label neuron]
       [--threads 1] --chains '{}' '{"approach_steps": null}' ...
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

from preimage.engine.samplers.spec import from_config as sampler_from_config
from preimage.pipeline.config import load_config, objective_samplers
from preimage.pipeline.models import resolve_prior
from preimage.utils.devices import device_name

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling script, however this one is loaded
from unguided_solvers import bound_objectives, column_width, print_acceptance, run_sources  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SEED = 7  # the members' seeds: source k's set draws from a generator seeded SEED + k


def parse_chain(text: str) -> dict:
    try:
        overlay = json.loads(text)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(f"a chain is a JSON object of guided sampler fields, got {text!r}: "
                                         f"{error}") from None
    if not isinstance(overlay, dict):
        raise argparse.ArgumentTypeError(f"a chain is a JSON object of guided sampler fields, got {text!r}")
    return overlay


def guided_spec(config: dict, objective: str, overlay: dict) -> dict:
    """The spec of the guided sampler that draws `objective`'s sets in `config`, with `overlay` on top."""
    specs = [spec for spec in objective_samplers(config["sets"], objective).values() if spec["kind"] == "guided"]
    if not specs:
        raise SystemExit(f"sets.samplers: no guided sampler draws objective {objective!r}")
    return {**specs[0], **overlay}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(REPO / "config.yaml"))
    parser.add_argument("--members", type=int, default=64, help="members per source and objective")
    parser.add_argument("--objectives", nargs="+", help="objectives of sets.objectives (default: all)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (a set job runs on one core)")
    parser.add_argument("--chains", type=parse_chain, nargs="+", required=True, metavar="JSON")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = load_config(args.config)
    os.chdir(REPO)  # model folders are relative to the repository, as in the workflow
    names = args.objectives or list(config["sets"]["objectives"])
    unknown = sorted(set(names) - set(config["sets"]["objectives"]))
    if unknown:
        parser.error(f"--objectives {unknown} are not in sets.objectives {list(config['sets']['objectives'])}")
    prior = resolve_prior(config, "cpu")
    sources = run_sources(config, prior.image_size)
    bound = {name: objectives for name, objectives in bound_objectives(config, sources).items() if name in names}
    print(f"CPU: {device_name('cpu')}; {args.threads} thread(s); UNet in {prior.compute_dtype}; {len(sources)} "
          f"sources x {args.members} members per objective and chain (seeds {SEED} + source)")
    chains = [json.dumps(overlay) for overlay in args.chains]
    accepted, costs = [], {name: [] for name in bound}  # costs: (passes per member, CPU s) per chain
    for overlay, chain in zip(args.chains, chains):
        accepted.append({})
        for name, objectives in bound.items():
            sampler = sampler_from_config(guided_spec(config, name, overlay), where=f"chain {chain}, {name}")
            start, results = time.process_time(), []
            for k, (objective, source) in enumerate(zip(objectives, sources)):
                generator = torch.Generator().manual_seed(SEED + k)
                results.append(sampler.sample(prior, objective, source[None], args.members, generator))
            accepted[-1][name] = torch.cat([result.accepted for result in results]).float().numpy()
            passes = torch.cat([result.steps for result in results]).float().mean().item()
            costs[name].append((passes, time.process_time() - start))
            print(f"{chain:32s} {name:16s} {100 * accepted[-1][name].mean():5.1f} %  {passes:5.2f} passes per member  "
                  f"{costs[name][-1][1]:6.1f} CPU s", flush=True)
    print_acceptance(chains, accepted, f"guided acceptance (%) over {len(sources)} sources x {args.members} members")
    width = column_width(chains)
    print("\npasses per member / CPU s")
    print(f"{'objective':16s}" + "".join(chain.rjust(width) for chain in chains))
    for name, chain_costs in costs.items():
        print(f"{name:16s}" + "".join(f"{passes:.2f} / {seconds:.0f}".rjust(width) for passes, seconds in chain_costs))


if __name__ == "__main__":
    main()
