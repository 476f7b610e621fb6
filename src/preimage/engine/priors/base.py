"""The diffusion-prior interface shared by pixel-space and latent-space models.

A prior is a denoiser over a space z (pixels in [-1, 1], or a VAE latent) plus a DDIM scheduler that walks it
(and, for unguided chains, DPM-Solver++ or UniPC on the same schedule, `solve`).
Samplers only ever talk to this interface, so one sampler works on every prior. The scheduler does scheduler
things (timestep spacing, the DDIM update, forward noising); the prior adds what samplers need on top: moving
between images and z, the Tweedie estimate of the clean sample from any prediction type, re-noising, and
drawing the noise the denoiser was trained on (white, or with an offset per channel).
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from diffusers import DDIMScheduler, DPMSolverMultistepScheduler, UniPCMultistepScheduler
from diffusers.utils.torch_utils import randn_tensor
from torch import Tensor

Generators = torch.Generator | list[torch.Generator]

PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")
TIMESTEP_SPACINGS = ("leading", "trailing", "linspace")
# multistep solver -> its diffusers scheduler and settings (`multistep_solver_from`)
MULTISTEP_SOLVERS = {
    "dpmsolver++": (DPMSolverMultistepScheduler, {"algorithm_type": "dpmsolver++", "solver_order": 2}),
    "unipc": (UniPCMultistepScheduler, {"solver_order": 3, "solver_type": "bh2", "predict_x0": True}),
}
SOLVERS = ("ddim", *MULTISTEP_SOLVERS)  # how `DiffusionPrior.solve` walks an unguided chain
NOISE_OFFSET_KEY = "noise_offset"  # our addition to a scheduler config: the training noise's per-channel shift


def ddim_from_config(config: dict, timestep_spacing: str) -> DDIMScheduler:
    """A DDIM scheduler sharing the training schedule in `config` (any diffusers scheduler's config).

    The spacing is the sampler's choice, not the model's: "trailing" starts at the last training step, which
    few-step sampling from pure noise needs (Lin et al. 2024, "Common diffusion noise schedules are flawed").
    """
    if timestep_spacing not in TIMESTEP_SPACINGS:
        raise ValueError(f"timestep_spacing must be one of {TIMESTEP_SPACINGS}, got {timestep_spacing!r}")
    config = {key: value for key, value in config.items() if key != NOISE_OFFSET_KEY}
    scheduler = DDIMScheduler.from_config(config, timestep_spacing=timestep_spacing)
    if scheduler.config.prediction_type not in PREDICTION_TYPES:
        raise ValueError(
            f"scheduler prediction_type must be one of {PREDICTION_TYPES}, got {scheduler.config.prediction_type!r}"
        )
    return scheduler


def multistep_solver_from(scheduler: DDIMScheduler,
                          solver: str) -> DPMSolverMultistepScheduler | UniPCMultistepScheduler:
    """A multistep ODE solver on the training schedule and timestep spacing of a prior's DDIM scheduler:
    "dpmsolver++" is DPM-Solver++(2M) (Lu et al. 2022), "unipc" is UniPC-3 with the B2 corrector (Zhao et al.
    2023, the order its authors give for unconditional sampling).

    Its timesteps are the DDIM scheduler's, so a chain can start late at any of them; the last step lands on the
    clean estimate itself (final sigma zero). A DDIM clip_sample becomes thresholding with its clip range as the
    ceiling: for a range of 1 (pixel priors in [-1, 1]) that clips the clean estimate at every step as DDIM does.
    """
    if solver not in MULTISTEP_SOLVERS:
        raise ValueError(f"a multistep solver is one of {list(MULTISTEP_SOLVERS)}, got {solver!r}")
    solver_class, settings = MULTISTEP_SOLVERS[solver]
    config = scheduler.config
    clip = bool(config.clip_sample)
    return solver_class.from_config(
        config, **settings, final_sigmas_type="zero", lower_order_final=True, thresholding=clip,
        dynamic_thresholding_ratio=1.0, sample_max_value=config.clip_sample_range if clip else 1.0)


def check_solver(solver: str, eta: float) -> str:
    """`solver` if it is one of SOLVERS and can walk a chain with `eta` (only DDIM's chains can be stochastic)."""
    if solver not in SOLVERS:
        raise ValueError(f"solver must be one of {list(SOLVERS)}, got {solver!r}")
    if solver != "ddim" and eta != 0:
        raise ValueError(f"solver {solver!r} is deterministic; eta must be 0, got {eta}")
    return solver


def noise_offset_from_config(config: dict) -> float:
    """The std of the per-channel shift in a denoiser's training noise; 0 (white noise) when not recorded."""
    offset = config.get(NOISE_OFFSET_KEY, 0.0)
    if isinstance(offset, bool) or not isinstance(offset, int | float) or offset < 0:
        raise ValueError(f"scheduler config {NOISE_OFFSET_KEY} must be a number >= 0, got {offset!r}")
    return float(offset)


def offset_noise(shape: tuple[int, ...], offset: float, generator: Generators | None,
                 device: torch.device | None = None, dtype: torch.dtype | None = None) -> Tensor:
    """White noise plus `offset` times one normal draw per member and channel (offset noise, Guttenberg 2023).

    Training and sampling both draw through here, so a prior samples exactly the noise it was trained on.
    Shifting whole channels noises an image's mean colour as fast as its pixels: with white noise alone the
    mean is legible from averaging H x W pixels at a pixel SNR of 1e-3, where few sampling steps fall and the
    model is least trained.
    """
    white = randn_tensor(shape, generator=generator, device=device, dtype=dtype)
    if not offset:
        return white
    return white + offset * randn_tensor((*shape[:2], 1, 1), generator=generator, device=device, dtype=dtype)


class DiffusionPrior(ABC):
    """A denoiser over z plus its DDIM scheduler; images outside are (B, 3, H, W) floats in [0, 1].

    `noise_offset` > 0 for a denoiser trained on offset noise: white noise plus that std times one normal
    draw per member and channel. Sampling then starts from, and injects, that same noise.
    """

    def __init__(self, scheduler: DDIMScheduler, noise_offset: float = 0.0) -> None:
        if noise_offset < 0:
            raise ValueError(f"noise_offset must be >= 0, got {noise_offset}")
        self.scheduler = scheduler
        self.noise_offset = noise_offset

    # --- what each kind of prior defines -------------------------------------------------------------------

    @property
    @abstractmethod
    def image_size(self) -> int:
        """Side of the square images the prior generates."""

    @property
    @abstractmethod
    def latent_shape(self) -> tuple[int, int, int]:
        """Shape (C, h, w) of one member of z."""

    @property
    @abstractmethod
    def device(self) -> torch.device: ...

    @property
    @abstractmethod
    def dtype(self) -> torch.dtype: ...

    @property
    def condition(self) -> Tensor | None:
        """The conditioning the denoiser sees by default (a prompt embedding), or None when unconditional."""
        return None

    @abstractmethod
    def encode(self, images: Tensor) -> Tensor:
        """Map images in [0, 1] to z (deterministically)."""

    @abstractmethod
    def decode(self, z: Tensor) -> Tensor:
        """Map z to images in [0, 1]; differentiable so losses on images can guide z."""

    @abstractmethod
    def predict(self, z_t: Tensor, t: int | Tensor, condition: Tensor | None = None) -> Tensor:
        """The denoiser's raw output at step t (its prediction type: epsilon, v or sample)."""

    @abstractmethod
    def to(self, device: str | torch.device) -> DiffusionPrior:
        """Move the networks to `device`; returns self."""

    # --- shared scheduler logic ----------------------------------------------------------------------------

    @property
    def prediction_type(self) -> str:
        return self.scheduler.config.prediction_type

    def describe(self) -> dict:
        """The prior's kind, sizes and schedule, for provenance records."""
        return {
            "prior": type(self).__name__,
            "image_size": self.image_size,
            "latent_shape": list(self.latent_shape),
            "prediction_type": self.prediction_type,
            "timestep_spacing": self.scheduler.config.timestep_spacing,
            "num_train_timesteps": self.scheduler.config.num_train_timesteps,
            "noise_offset": self.noise_offset,
        }

    def sample_noise(self, n: int, generator: Generators) -> Tensor:
        """n members of z drawn from the training noise; a list of n generators seeds each member on its own."""
        if isinstance(generator, list) and len(generator) != n:
            raise ValueError(f"got {len(generator)} generators for n={n} members; pass one per member")
        return offset_noise((n, *self.latent_shape), self.noise_offset, generator, self.device, self.dtype)

    def timesteps(self, num_steps: int, strength: float = 1.0) -> Tensor:
        """The descending DDIM timesteps of a `num_steps` schedule, keeping its last `strength` fraction.

        strength < 1 is a late start (SDEdit / DVCE): sampling begins from the source noised to the first kept
        step. Also fixes the step size that `step` uses, as diffusers' set_timesteps does.
        """
        total = self.scheduler.config.num_train_timesteps
        if not isinstance(num_steps, int) or not 1 <= num_steps <= total:
            raise ValueError(f"num_steps must be an int in [1, {total}], got {num_steps!r}")
        if not 0.0 < strength <= 1.0:
            raise ValueError(f"strength must be in (0, 1], got {strength!r}")
        kept = round(num_steps * strength)
        if kept < 1:
            raise ValueError(f"strength={strength} keeps no step of a {num_steps}-step schedule; raise either")
        self.scheduler.set_timesteps(num_steps)
        return self.scheduler.timesteps[num_steps - kept :].clone()

    def previous_timestep(self, t: int | Tensor) -> int:
        """The step that a DDIM step from t lands on (negative means the clean end of the chain)."""
        if self.scheduler.num_inference_steps is None:
            raise RuntimeError("call timesteps(num_steps) before stepping: it fixes the step size")
        return int(t) - self.scheduler.config.num_train_timesteps // self.scheduler.num_inference_steps

    def alpha_bar(self, t: int | Tensor) -> Tensor:
        """Cumulative signal fraction at step t; 1-ish (the scheduler's final value) for t < 0."""
        t = int(t)
        value = self.scheduler.alphas_cumprod[t] if t >= 0 else self.scheduler.final_alpha_cumprod
        return torch.as_tensor(value, device=self.device, dtype=torch.float32)

    def noise_to(self, z0: Tensor, t: int | Tensor, noise: Tensor) -> Tensor:
        """Forward-diffuse clean z0 to step t: sqrt(a) z0 + sqrt(1 - a) noise."""
        timesteps = torch.full((z0.shape[0],), int(t), dtype=torch.long, device=z0.device)
        return self.scheduler.add_noise(z0, noise, timesteps)

    def renoise(self, z_s: Tensor, s: int | Tensor, t: int | Tensor, noise: Tensor) -> Tensor:
        """Forward-diffuse z_s from step s to a noisier step t (used to repeat a step: recurrence)."""
        ratio = self.alpha_bar(t) / self.alpha_bar(s)
        if ratio > 1:
            raise ValueError(f"renoise goes from a cleaner step to a noisier one; got s={int(s)}, t={int(t)}")
        return ratio.sqrt() * z_s + (1 - ratio).sqrt() * noise

    def tweedie(self, z_t: Tensor, t: int | Tensor, output: Tensor | None = None) -> Tensor:
        """Tweedie's estimate E[z0 | z_t] from the denoiser's output (computed when not given)."""
        if output is None:
            output = self.predict(z_t, t)
        return self._clean_and_noise(z_t, self.alpha_bar(t), output)[0]

    def _clean_and_noise(self, z: Tensor, a: Tensor, output: Tensor) -> tuple[Tensor, Tensor]:
        """The clean sample and the noise that a denoiser `output` implies for z at signal fraction `a`."""
        if self.prediction_type == "epsilon":
            return (z - (1 - a).sqrt() * output) / a.sqrt(), output
        if self.prediction_type == "v_prediction":
            return a.sqrt() * z - (1 - a).sqrt() * output, a.sqrt() * output + (1 - a).sqrt() * z
        return output, (z - a.sqrt() * output) / (1 - a).sqrt()

    def invert_step(self, z_s: Tensor, t: int | Tensor) -> Tensor:
        """One deterministic DDIM inversion step: z at `previous_timestep(t)` to step t, the inverse of an eta=0
        `step` from t (Song et al. 2021; diffusers' DDIMInverseScheduler).

        The exact inverse needs the denoiser's output at z_t, which is unknown; as usual it is read at z_s instead
        (the two differ by one small step), so a round trip is close, not exact, and closer with more steps.
        """
        output = self.predict(z_s, t)
        return self._ddim_move(z_s, self.alpha_bar(self.previous_timestep(t)), self.alpha_bar(t), output)

    def step_to(self, z_t: Tensor, t: int | Tensor, s: int | Tensor, output: Tensor | None = None) -> Tensor:
        """One deterministic DDIM step from t to any cleaner step s: `step` at eta=0 when s is
        `previous_timestep(t)`, a longer jump otherwise (a sampler's unguided approach to its first guided step)."""
        if not int(t) > int(s) >= 0:
            raise ValueError(f"step_to goes from a noisier step to a cleaner one; got t={int(t)}, s={int(s)}")
        if output is None:
            output = self.predict(z_t, t)
        return self._ddim_move(z_t, self.alpha_bar(t), self.alpha_bar(s), output)

    def _ddim_move(self, z: Tensor, a_here: Tensor, a_there: Tensor, output: Tensor) -> Tensor:
        """The DDIM move of z from signal fraction `a_here` to `a_there` along the denoiser's clean estimate and
        noise, the clean estimate clipped as the scheduler's step clips it."""
        clean, noise = self._clean_and_noise(z, a_here, output)
        if self.scheduler.config.clip_sample:
            limit = self.scheduler.config.clip_sample_range
            clean = clean.clamp(-limit, limit)
        return a_there.sqrt() * clean + (1 - a_there).sqrt() * noise

    def solve(self, z: Tensor, timesteps: Tensor, solver: str = "ddim", eta: float = 0.0,
              generator: Generators | None = None) -> Tensor:
        """Walk z from `timesteps[0]` down `timesteps` (the last call of `timesteps(num_steps, strength)`) to the
        clean end, unguided.

        "ddim" takes one `step` per timestep (stochastic with eta > 0); "dpmsolver++" and "unipc" take multistep
        solver steps on the same timesteps (deterministic, `multistep_solver_from`), which reach the prior's
        samples in fewer steps: on the world's prior 8 UniPC or 12 DPM-Solver++ steps come as close to the
        sampling ODE's solution as each other, 25 DDIM steps a little closer (docs/samplers.md).
        """
        if check_solver(solver, eta) == "ddim":
            for t in timesteps:
                z = self.step(z, t, eta=eta, generator=generator)
            return z
        multistep = multistep_solver_from(self.scheduler, solver)
        total = self.scheduler.num_inference_steps
        multistep.set_timesteps(total, device=z.device)
        begin = total - len(timesteps)
        if not torch.equal(multistep.timesteps[begin:].cpu(), timesteps.cpu()):
            raise ValueError("timesteps must be the tail of the schedule `timesteps(num_steps, strength)` returned")
        multistep.set_begin_index(begin)
        for t in timesteps:
            z = multistep.step(self.predict(z, t), t, z).prev_sample
        return z

    def step(
        self,
        z_t: Tensor,
        t: int | Tensor,
        output: Tensor | None = None,
        eta: float = 0.0,
        generator: Generators | None = None,
    ) -> Tensor:
        """One DDIM step from t to `previous_timestep(t)`: deterministic at eta=0, DDPM-like at eta=1."""
        if eta < 0:
            raise ValueError(f"eta must be >= 0, got {eta}")
        if output is None:
            output = self.predict(z_t, t)
        variance_noise = None
        if eta > 0:
            if generator is None:
                raise ValueError("a stochastic step (eta > 0) needs a generator, for reproducibility")
            variance_noise = self.sample_noise(len(z_t), generator).to(z_t.device, z_t.dtype)
        return self.scheduler.step(output, int(t), z_t, eta=eta, variance_noise=variance_noise).prev_sample
