"""The world prior's UNet on a CPU: one batch run whole or in chunks, as `PixelDiffusionPrior.predict` chunks it.

For a batch of `--batch` noisy images (the samplers' batch is 64) and each chunk size, prints the median
milliseconds per image over `--rounds` interleaved rounds (CPU time of this process, the steadier figure on a
shared machine; wall time beside it) and how far the outputs are from the whole batch's ("bitwise" when equal;
oneDNN may pick other kernels for other batch sizes, which round differently). The chunk the
prior picks (`cpu_chunk`) is marked.

Usage: python benchmarks/unet_chunks.py [--config config.yaml] [--batch 64] [--chunks 64 48 32 16 8] [--rounds 7]
       [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import torch

from preimage.engine.priors import PixelDiffusionPrior
from preimage.pipeline.config import load_config
from preimage.pipeline.models import resolve_prior
from preimage.utils.devices import device_name

REPO = Path(__file__).resolve().parents[1]
TIMESTEPS = (900, 500, 100)


def predict_in_chunks(prior: PixelDiffusionPrior, z: torch.Tensor, chunk: int) -> torch.Tensor:
    """Every timestep of TIMESTEPS predicted with the UNet on chunks of at most `chunk` images."""
    prior.cpu_chunk = chunk
    with torch.inference_mode():
        return torch.stack([prior.predict(z, t) for t in TIMESTEPS])


def time_chunks(prior: PixelDiffusionPrior, z: torch.Tensor, chunks: list[int], rounds: int) -> dict:
    """CPU and wall milliseconds per image and UNet pass for each chunk size, one warm-up round left out."""
    passes = len(TIMESTEPS) * len(z)
    times: dict[int, list[tuple[float, float]]] = {chunk: [] for chunk in chunks}
    for round_ in range(rounds + 1):
        for chunk in chunks:
            cpu, wall = time.process_time(), time.perf_counter()
            predict_in_chunks(prior, z, chunk)
            if round_:
                times[chunk].append((1e3 * (time.process_time() - cpu) / passes,
                                     1e3 * (time.perf_counter() - wall) / passes))
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(REPO / "config.yaml"))
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--chunks", type=int, nargs="+", default=[64, 48, 32, 16, 8])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (a set job runs on one core)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = load_config(args.config)
    os.chdir(REPO)  # model folders are relative to the repository, as in the workflow
    prior = resolve_prior(config, "cpu")
    if not isinstance(prior, PixelDiffusionPrior):
        parser.error(f"{args.config}: models.prior is not a pixel prior; this benchmark times the world's UNet")
    chosen = prior.cpu_chunk
    z = torch.randn(args.batch, *prior.latent_shape, generator=torch.Generator().manual_seed(0))
    whole = predict_in_chunks(prior, z, args.batch)
    differences = {chunk: (predict_in_chunks(prior, z, chunk) - whole).abs().max().item() for chunk in args.chunks}
    times = time_chunks(prior, z, args.chunks, args.rounds)
    print(f"CPU: {device_name('cpu')}; {args.threads} thread(s); UNet in {prior.compute_dtype}; a batch of "
          f"{args.batch}, {len(TIMESTEPS)} timesteps, {args.rounds} rounds; the prior's chunk: {chosen}")
    print("chunk  ms/image (CPU, median)  ms/image (wall, median)  largest difference from the whole batch's outputs")
    for chunk in args.chunks:
        cpu = statistics.median(c for c, _ in times[chunk])
        wall = statistics.median(w for _, w in times[chunk])
        mark = " (the prior's)" if chunk == chosen else ""
        difference = f"{differences[chunk]:.1e}" if differences[chunk] else "bitwise"
        print(f"{chunk:5d}  {cpu:22.2f}  {wall:23.2f}  {difference}{mark}")


if __name__ == "__main__":
    main()
