"""Benchmark the samplers on the real architectures (SD-1.5, SD-Turbo, SDXL-Turbo, ResNet-50) with random weights.

No weights can be downloaded, so every network is built in-process from its real config (written out below as
diffusers / transformers config dicts), initialised from a fixed seed, saved with the diffusers pipeline's own
`save_pretrained` and loaded back through `LatentDiffusionPrior.from_pretrained` / `SdxlDiffusionPrior
.from_pretrained` and `preimage.engine.models.load_classifier`, so the project's real loading code is what runs. Random
weights cost the same arithmetic as trained ones: the timings and memory are those of the real models. Acceptance
is not (a random classifier's label and neuron say nothing about images), but it is measured and printed too.

How each architecture is sampled comes from its preset (presets/imagenet_sd15.yaml, presets/imagenet_sdxl_turbo.yaml;
SD-Turbo, which has none, as SDXL-Turbo): prompt, negative prompt, cfg_scale, timestep spacing, the samplers'
settings (the engine's defaults fill what a preset leaves out, as in a real run) and the label and neuron
objectives. SD-1.5's preset has no noise_opt sampler; it gets SD15_NOISE_OPT below.

For each (architecture, sampler, objective) it prints, per member:
- wall seconds of `Sampler.sample` per member, and that cost relative to a rejection draw of the same architecture;
- accepted members and accepted members per second;
- peak GPU memory (torch.cuda.max_memory_allocated, reset per case; weights included);
- UNet passes: rows through `prior.unet` per member, counted by a forward hook (classifier-free guidance sends two
  rows per step; noise_opt's gradient checkpointing runs every step's forward again in the backward pass), next to
  the denoiser calls the sampler itself reports (`SampleResult.steps`);
- where the time goes: forward plus backward seconds of the UNet, the VAE decoder and the classifier (its
  preprocessing included), from hooks that read a clock (after torch.cuda.synchronize on a GPU) when each module
  is entered and left and, in the backward pass, when the gradient of each module's input is complete; "other" is
  the rest (scheduler arithmetic, Adam, the source's encoding, the hooks' own synchronisation);
- the share of members whose images are finite (random fp16 weights could overflow).

Each case first runs untimed at the same batch size with at most 2 steps, so kernel selection and allocator growth
are not billed to it.

Usage: python benchmarks/real_models.py [--device cuda] [--archs sd15 sd-turbo sdxl-turbo] [--members 8]
       [--steps N] [--iterations N] [--samplers guided noise_opt rejection] [--objectives label neuron]
       [--json PATH] [--dtype float16] [--threads N] [--tiny]

--tiny shrinks every architecture (a UNet of widths 32 and 64, 64 px images, two-layer text encoders, ResNet-50 at
1/8 width on 32 px) and defaults to 2 members, 3 steps, 2 noise_opt iterations and 1 CPU thread: a smoke test of
the script on a CPU (tests/test_benchmark_real_models.py).
"""

from __future__ import annotations

import argparse
import copy
import datetime
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing here may reach the network

import diffusers  # noqa: E402
import timm  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
import yaml  # noqa: E402
from diffusers import (  # noqa: E402
    AutoencoderKL,
    DDIMScheduler,
    StableDiffusionPipeline,
    StableDiffusionXLPipeline,
    UNet2DConditionModel,
)
from torch import Tensor, nn  # noqa: E402
from transformers import (  # noqa: E402
    CLIPTextConfig,
    CLIPTextModel,
    CLIPTextModelWithProjection,
    CLIPTokenizer,
)

from preimage.engine.models import load_classifier  # noqa: E402
from preimage.engine.objectives import from_config as objective_from_config  # noqa: E402
from preimage.engine.priors import LatentDiffusionPrior, SdxlDiffusionPrior  # noqa: E402
from preimage.engine.samplers.spec import from_config as sampler_from_config  # noqa: E402
from preimage.utils.devices import device_name  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
PRESETS = REPO / "presets"
SEED = 0
PROMPT_LENGTH = 77  # CLIP's context length
SAMPLERS = ("guided", "noise_opt", "rejection")
OBJECTIVES = ("label", "neuron")
MODULES = ("unet", "vae", "classifier")  # what the time split measures

# --- the real configs ------------------------------------------------------------------------------------------

SD_DOWN = ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"]
SD_UP = ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"]

# stable-diffusion-v1-5 unet/config.json
SD15_UNET = {
    "sample_size": 64, "in_channels": 4, "out_channels": 4, "layers_per_block": 2,
    "block_out_channels": [320, 640, 1280, 1280], "down_block_types": SD_DOWN, "up_block_types": SD_UP,
    "cross_attention_dim": 768, "attention_head_dim": 8, "norm_num_groups": 32, "norm_eps": 1e-5,
    "act_fn": "silu", "flip_sin_to_cos": True, "freq_shift": 0, "downsample_padding": 1,
}
# stable-diffusion-2-1-base (= sd-turbo) unet/config.json
SD21_UNET = {
    **SD15_UNET, "cross_attention_dim": 1024, "attention_head_dim": [5, 10, 20, 20], "use_linear_projection": True,
}
# sdxl-turbo unet/config.json (512 px: sample_size 64)
SDXL_UNET = {
    "sample_size": 64, "in_channels": 4, "out_channels": 4, "layers_per_block": 2,
    "block_out_channels": [320, 640, 1280],
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
    "transformer_layers_per_block": [1, 2, 10], "cross_attention_dim": 2048, "attention_head_dim": [5, 10, 20],
    "use_linear_projection": True, "addition_embed_type": "text_time", "addition_embed_type_num_heads": 64,
    "addition_time_embed_dim": 256, "projection_class_embeddings_input_dim": 2816, "norm_num_groups": 32,
}
# the SD VAE (vae/config.json of SD 1.5 and 2.1); SDXL's has the same layout and another scale, and forces float32
# (SdxlDiffusionPrior keeps it in float32 under float16 weights, as the SDXL pipeline does)
SD_VAE = {
    "in_channels": 3, "out_channels": 3, "latent_channels": 4, "layers_per_block": 2,
    "block_out_channels": [128, 256, 512, 512], "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4, "norm_num_groups": 32, "act_fn": "silu", "sample_size": 512,
    "scaling_factor": 0.18215,
}
SDXL_VAE = {**SD_VAE, "sample_size": 1024, "scaling_factor": 0.13025, "force_upcast": True}
# text encoders: CLIP ViT-L/14, OpenCLIP ViT-H/14 (SD 2 uses 23 of its 24 layers), OpenCLIP ViT-bigG/14
CLIP_L_TEXT = {
    "vocab_size": 49408, "hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12,
    "num_attention_heads": 12, "max_position_embeddings": PROMPT_LENGTH, "hidden_act": "quick_gelu",
    "projection_dim": 768,
}
OPENCLIP_H_TEXT = {
    **CLIP_L_TEXT, "hidden_size": 1024, "intermediate_size": 4096, "num_hidden_layers": 23,
    "num_attention_heads": 16, "hidden_act": "gelu", "projection_dim": 512,
}
OPENCLIP_BIGG_TEXT = {
    **CLIP_L_TEXT, "hidden_size": 1280, "intermediate_size": 5120, "num_hidden_layers": 32,
    "num_attention_heads": 20, "hidden_act": "gelu", "projection_dim": 1280,
}
# SD's training schedule, as a DDIM scheduler (the prior builds its own DDIM from this config)
SD_SCHEDULER = {
    "num_train_timesteps": 1000, "beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012,
    "prediction_type": "epsilon", "clip_sample": False, "set_alpha_to_one": False, "steps_offset": 1,
}
# not in the SD-1.5 preset: the SDXL-Turbo preset's noise_opt with 4 steps, as SD-1.5 is not distilled for fewer
SD15_NOISE_OPT = {"kind": "noise_opt", "num_steps": 4, "iterations": 20, "lr": 0.05, "noise_weight": 1.0,
                  "batch_size": 4}
SOURCE_CLASS = "tench"  # fills the presets' "{class_name}" prompt template


@dataclass(frozen=True)
class Arch:
    """One prior architecture: its component configs, and the preset (presets/<name>.yaml) that says how to sample
    it (prompt, cfg_scale, timestep spacing, samplers, objectives)."""

    name: str
    unet: dict
    vae: dict
    text_encoders: tuple[dict, ...]  # SDXL: the second one gets a projection (CLIPTextModelWithProjection)
    preset: str
    extra_samplers: dict[str, dict] = field(default_factory=dict)  # samplers the preset lacks

    @property
    def sdxl(self) -> bool:
        return self.unet.get("addition_embed_type") == "text_time"


ARCHS = {
    "sd15": Arch("sd15", SD15_UNET, SD_VAE, (CLIP_L_TEXT,), "imagenet_sd15", {"noise_opt": SD15_NOISE_OPT}),
    # SD-Turbo has no preset; it is sampled as SDXL-Turbo is (few steps, no classifier-free guidance, trailing)
    "sd-turbo": Arch("sd-turbo", SD21_UNET, SD_VAE, (OPENCLIP_H_TEXT,), "imagenet_sdxl_turbo"),
    "sdxl-turbo": Arch("sdxl-turbo", SDXL_UNET, SDXL_VAE, (CLIP_L_TEXT, OPENCLIP_BIGG_TEXT), "imagenet_sdxl_turbo"),
}


@dataclass(frozen=True)
class Preset:
    """What a preset file says about sampling: the prior's prompting, the samplers and the objectives."""

    prompt: str
    negative_prompt: str
    cfg_scale: float
    timestep_spacing: str
    samplers: dict[str, dict]
    objectives: dict[str, dict]


def load_preset(arch: Arch) -> Preset:
    """The architecture's preset file, read as the workflow would merge it (only the keys used here)."""
    config = yaml.safe_load((PRESETS / f"{arch.preset}.yaml").read_text())
    prior, sets = config["models"]["prior"], config["sets"]
    return Preset(
        prompt=prior["prompt"].format(class_name=SOURCE_CLASS), negative_prompt=prior["negative_prompt"],
        cfg_scale=float(prior["cfg_scale"]), timestep_spacing=prior["timestep_spacing"],
        samplers={**arch.extra_samplers, **sets["samplers"]},
        objectives={name: sets["objectives"][name] for name in OBJECTIVES},
    )


# --- --tiny: the same architectures shrunk -----------------------------------------------------------------------

TINY_SIZE = 64  # image side
TINY_TEXT = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
             "projection_dim": 16}
TINY_TIME_EMBED = 8
TINY_CLASSIFIER = {"channels": [8, 16, 32, 64]}  # ResNet-50's bottlenecks at 1/8 width
TINY_CLASSIFIER_INPUT = 32


def ends(blocks: list[str]) -> list[str]:
    """The first and last block type: two blocks that keep the architecture's cross-attention pattern."""
    return [blocks[0], blocks[-1]]


def shrink(arch: Arch) -> Arch:
    """The architecture with a UNet of widths 32/64, a VAE of the same 8x downsampling at widths 8-32, two-layer
    text encoders and 64 px images: the same block kinds and conditioning at a tiny cost."""
    texts = tuple({**text, **TINY_TEXT} for text in arch.text_encoders)
    vae = {**arch.vae, "block_out_channels": [8, 16, 32, 32], "layers_per_block": 1, "norm_num_groups": 8,
           "sample_size": TINY_SIZE}
    unet = {**arch.unet, "block_out_channels": [32, 64], "layers_per_block": 1, "attention_head_dim": 2,
            "down_block_types": ends(arch.unet["down_block_types"]),
            "up_block_types": ends(arch.unet["up_block_types"]),
            "sample_size": TINY_SIZE // vae_factor(vae), "cross_attention_dim": sum(t["hidden_size"] for t in texts)}
    if arch.sdxl:
        unet |= {"transformer_layers_per_block": 1, "addition_time_embed_dim": TINY_TIME_EMBED,
                 "projection_class_embeddings_input_dim": 6 * TINY_TIME_EMBED + texts[-1]["projection_dim"]}
    return replace(arch, unet=unet, vae=vae, text_encoders=texts)


def vae_factor(vae: dict) -> int:
    return 2 ** (len(vae["block_out_channels"]) - 1)


# --- building and loading ------------------------------------------------------------------------------------


def char_tokenizer() -> CLIPTokenizer:
    """A character-level CLIP BPE tokenizer (no download): its ids are a subset of the text models' vocabulary."""
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for suffix in ("", "</w>"):
        for char in "abcdefghijklmnopqrstuvwxyz":
            vocab[char + suffix] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=PROMPT_LENGTH)


def seeded(build: Callable[[], nn.Module], device: torch.device, dtype: torch.dtype) -> nn.Module:
    """`build()` from the fixed seed, its parameters created on `device` (a GPU initialises billions of
    parameters in seconds) and cast to `dtype`."""
    torch.manual_seed(SEED)
    with torch.device(device):
        module = build()
    return module if dtype == torch.float32 else module.to(dtype)


def save_pipeline(arch: Arch, preset: Preset, folder: Path, device: torch.device, dtype: torch.dtype) -> None:
    """Write a randomly initialised pipeline of `arch` as diffusers' save_pretrained lays it out."""
    tokenizer = char_tokenizer()
    special = {"bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id,
               "pad_token_id": tokenizer.pad_token_id}
    parts = {
        "unet": seeded(lambda: UNet2DConditionModel(**arch.unet), device, dtype),
        "vae": seeded(lambda: AutoencoderKL(**arch.vae), device, dtype),
        "scheduler": DDIMScheduler(**SD_SCHEDULER, timestep_spacing=preset.timestep_spacing),
        "tokenizer": tokenizer,
        "text_encoder": seeded(lambda: CLIPTextModel(CLIPTextConfig(**arch.text_encoders[0], **special)), device,
                               dtype),
    }
    if arch.sdxl:
        second = CLIPTextConfig(**arch.text_encoders[1], **special)
        parts["text_encoder_2"] = seeded(lambda: CLIPTextModelWithProjection(second), device, dtype)
        parts["tokenizer_2"] = char_tokenizer()
        pipeline = StableDiffusionXLPipeline(**parts, add_watermarker=False)
    else:
        pipeline = StableDiffusionPipeline(**parts, safety_checker=None, feature_extractor=None,
                                           requires_safety_checker=False)
    pipeline.save_pretrained(folder)


def build_prior(arch: Arch, preset: Preset, device: torch.device, dtype: torch.dtype) -> LatentDiffusionPrior:
    """Save a random pipeline, then load it through the project's own offline loader, as a real run does."""
    with tempfile.TemporaryDirectory(prefix=f"bench-{arch.name}-") as folder:
        save_pipeline(arch, preset, Path(folder), device, dtype)
        empty_cache(device)  # the built copies are gone; only the loaded prior stays on the device
        cls = SdxlDiffusionPrior if arch.sdxl else LatentDiffusionPrior
        prior = cls.from_pretrained(folder, prompt=preset.prompt, negative_prompt=preset.negative_prompt,
                                    cfg_scale=preset.cfg_scale, timestep_spacing=preset.timestep_spacing,
                                    dtype=dtype)
    return prior.to(device)


def build_classifier(tiny: bool, device: torch.device) -> nn.Module:
    """timm resnet50 (1000 classes, random weights) saved as a timm folder and loaded with load_classifier, which
    attaches the preprocessing (resize to the model's input size, ImageNet normalisation)."""
    model_args = TINY_CLASSIFIER if tiny else {}
    data_config = {"input_size": (3, TINY_CLASSIFIER_INPUT, TINY_CLASSIFIER_INPUT)} if tiny else None
    torch.manual_seed(SEED)
    model = timm.create_model("resnet50", pretrained=False, num_classes=1000, **model_args)
    with tempfile.TemporaryDirectory(prefix="bench-resnet50-") as folder:
        timm.models.save_for_hf(model, folder, model_args=model_args, data_config=data_config,
                                safe_serialization=True)
        return load_classifier(folder, device=device)


def source_image(size: int, device: torch.device) -> Tensor:
    """A smooth random image in [0, 1] (8 x 8 colour blocks, bilinearly upsampled), the set's source."""
    coarse = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(SEED))
    return nn.functional.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False).to(device)


def empty_cache(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


# --- measuring -----------------------------------------------------------------------------------------------


class Meter:
    """Counts rows through, and times the forward and backward passes of, named modules during one case.

    Forward: clock on entering and leaving the module (a forward pre-hook and an always-called forward hook, so a
    classifier stopped early by a layer objective is still timed). Backward: the objective's loss marks the
    start of each backward pass; a hook on each module's input marks when its gradient is complete, and the time
    since the previous mark, less any forward run in between (checkpointing recomputes them there), is that
    module's backward. On a GPU every clock reading synchronises first, so each reading covers finished work.
    """

    def __init__(self, modules: dict[str, nn.Module], device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.modules = modules
        self.forward = dict.fromkeys(modules, 0.0)
        self.backward = dict.fromkeys(modules, 0.0)
        self.rows = dict.fromkeys(modules, 0)
        self._entered: dict[str, float] = {}
        self._mark: float | None = None  # clock at the last backward mark
        self._forward_since_mark = 0.0
        self._handles: list = []

    def __enter__(self) -> Meter:
        for name, module in self.modules.items():
            self._handles.append(module.register_forward_pre_hook(partial(self._enter, name), prepend=True))
            self._handles.append(module.register_forward_hook(partial(self._leave, name), always_call=True))
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self._handles:
            handle.remove()

    def now(self) -> float:
        if self.cuda:
            torch.cuda.synchronize()
        return time.perf_counter()

    def _enter(self, name: str, module: nn.Module, args: tuple) -> None:
        self._entered[name] = self.now()
        first = args[0] if args else None  # UNet: z_t; decoder: the latent; classifier: the images
        if not isinstance(first, Tensor):
            return
        self.rows[name] += first.shape[0]
        # mark the end of this module's backward once; a checkpoint recompute sees the same input again
        if torch.is_grad_enabled() and first.requires_grad and not getattr(first, "_meter_hooked", False):
            first._meter_hooked = True
            first.register_hook(partial(self._backward_done, name))

    def _leave(self, name: str, module: nn.Module, args: tuple, output: object) -> None:
        spent = self.now() - self._entered.pop(name)
        self.forward[name] += spent
        self._forward_since_mark += spent

    def backward_starts(self, grad: Tensor) -> None:
        self._mark, self._forward_since_mark = self.now(), 0.0

    def _backward_done(self, name: str, grad: Tensor) -> None:
        now = self.now()
        if self._mark is not None:
            self.backward[name] += now - self._mark - self._forward_since_mark
        self._mark, self._forward_since_mark = now, 0.0


class MeteredObjective:
    """A bound objective whose loss marks the start of the backward pass that follows it."""

    def __init__(self, objective: Any, meter: Meter) -> None:
        self.objective, self.meter = objective, meter

    def loss(self, images: Tensor) -> Tensor:
        loss = self.objective.loss(images)
        if loss.requires_grad:
            loss.register_hook(self.meter.backward_starts)
        return loss

    def __getattr__(self, name: str) -> Any:
        return getattr(self.objective, name)


def warmup_spec(spec: dict) -> dict:
    """The case's sampler at the same batch size with at most 2 steps (1 noise_opt iteration): it selects kernels
    and grows the allocator for the case's shapes without being billed to the case."""
    cheap = {"num_steps": min(spec["num_steps"], 2)}
    if spec["kind"] == "noise_opt":
        cheap["iterations"] = 1
    return spec | cheap


@dataclass
class Case:
    """One (architecture, sampler, objective) on a loaded prior and classifier."""

    arch: str
    sampler: str
    spec: dict
    objective: str
    bound: Any  # the objective bound to the source
    cfg_scale: float


def run_case(case: Case, prior: LatentDiffusionPrior, classifier: nn.Module, source: Tensor, members: int,
             device: torch.device) -> dict:
    """Draw `members` members once cheaply untimed, then measured; returns the case's figures."""
    warm = warmup_spec(case.spec)
    sampler_from_config(warm).sample(prior, case.bound, source, min(members, warm["batch_size"]),
                                   torch.Generator().manual_seed(SEED + 1))
    sampler = sampler_from_config(case.spec)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats(device)
    modules = {"unet": prior.unet, "vae": prior.vae.decoder, "classifier": classifier}
    with Meter(modules, device) as meter:
        start = meter.now()
        result = sampler.sample(prior, MeteredObjective(case.bound, meter), source, members,
                                torch.Generator().manual_seed(SEED))
        seconds = meter.now() - start
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    images = result.images.detach().float().cpu()  # the result may stay on the prior's device
    accepted = int(result.accepted.cpu().sum())
    spent = {name: meter.forward[name] + meter.backward[name] for name in MODULES}
    return {
        "arch": case.arch, "sampler": case.sampler, "objective": case.objective, "members": members,
        "batch_size": case.spec["batch_size"], "num_steps": case.spec["num_steps"], "cfg_scale": case.cfg_scale,
        "seconds_per_member": seconds / members,
        "accepted": accepted, "acceptance_rate": accepted / members, "accepted_per_second": accepted / seconds,
        "peak_gib": peak,
        "unet_passes_per_member": meter.rows["unet"] / members,
        "sampler_steps_per_member": float(result.steps.cpu().float().mean()),
        **{f"{name}_s_per_member": spent[name] / members for name in MODULES},
        **{f"{name}_forward_s_per_member": meter.forward[name] / members for name in MODULES},
        **{f"{name}_backward_s_per_member": meter.backward[name] / members for name in MODULES},
        "other_s_per_member": (seconds - sum(spent.values())) / members,
        "finite_fraction": float(torch.isfinite(images).flatten(1).all(1).float().mean()),
        "sampler_params": sampler.describe(),
        "objective_params": case.bound.describe(),
    }


def add_cost_ratios(rows: list[dict]) -> None:
    """Seconds per member relative to a rejection draw of the same architecture and objective."""
    for row in rows:
        draw = next((r["seconds_per_member"] for r in rows if r["sampler"] == "rejection"
                     and (r["arch"], r["objective"]) == (row["arch"], row["objective"])), None)
        row["cost_vs_rejection"] = row["seconds_per_member"] / draw if draw else None


# --- reporting -----------------------------------------------------------------------------------------------


def git_commit() -> str:
    """The short commit, marked when the working tree differs from it."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()
    try:
        commit = git("rev-parse", "--short", "HEAD")
        return commit + (" (with uncommitted changes)" if git("status", "--porcelain", "--untracked-files=no") else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def header(device: torch.device, dtype: torch.dtype, tiny: bool) -> dict:
    """What the figures depend on: the device, the dtype, the library versions, the commit, the date."""
    n = torch.get_num_threads()
    threads = "" if device.type == "cuda" else f", {n} thread{'' if n == 1 else 's'}"
    return {
        "device": f"{device.type} ({device_name(device)}{threads})", "dtype": str(dtype).removeprefix("torch."),
        "torch": torch.__version__, "diffusers": diffusers.__version__, "transformers": transformers.__version__,
        "timm": timm.__version__, "commit": git_commit(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "weights": "random (seed 0)" + (", --tiny architectures" if tiny else ", real architectures"),
    }


COLUMNS = (  # (heading, row key, format)
    ("arch", "arch", "{}"), ("sampler", "sampler", "{}"), ("objective", "objective", "{}"),
    ("members", "members", "{}"), ("steps", "num_steps", "{}"), ("s/member", "seconds_per_member", "{:.3f}"),
    ("vs rejection", "cost_vs_rejection", "{:.2f}x"), ("accepted", "accepted", "{}"),
    ("accepted/s", "accepted_per_second", "{:.3f}"), ("peak GiB", "peak_gib", "{:.2f}"),
    ("UNet passes/member", "unet_passes_per_member", "{:.1f}"),
    ("sampler steps/member", "sampler_steps_per_member", "{:.1f}"),
    ("UNet s", "unet_s_per_member", "{:.3f}"), ("VAE decode s", "vae_s_per_member", "{:.3f}"),
    ("classifier s", "classifier_s_per_member", "{:.3f}"), ("other s", "other_s_per_member", "{:.3f}"),
    ("finite", "finite_fraction", "{:.0%}"),
)


def markdown_table(rows: list[dict]) -> str:
    def cell(row: dict, key: str, fmt: str) -> str:
        return "n/a" if row.get(key) is None else fmt.format(row[key])
    lines = ["| " + " | ".join(heading for heading, _, _ in COLUMNS) + " |",
             "| " + " | ".join("---" for _ in COLUMNS) + " |"]
    lines += ["| " + " | ".join(cell(row, key, fmt) for _, key, fmt in COLUMNS) + " |" for row in rows]
    return "\n".join(lines)


def report(info: dict, rows: list[dict]) -> str:
    """The header as a Markdown list, then the table."""
    lines = ["# preimage samplers on real architectures (random weights)", ""]
    lines += [f"- {key}: {value}" for key, value in info.items()]
    lines += ["- time columns are seconds per member (forward + backward); acceptance of random models is not "
              "meaningful, only measured", "", markdown_table(rows)]
    return "\n".join(lines)


# --- main ----------------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", choices=("float16", "bfloat16", "float32"),
                        help="weights' dtype (default: float16 on a GPU, float32 on a CPU)")
    parser.add_argument("--archs", nargs="+", choices=list(ARCHS), default=list(ARCHS))
    parser.add_argument("--samplers", nargs="+", choices=SAMPLERS, default=list(SAMPLERS))
    parser.add_argument("--objectives", nargs="+", choices=OBJECTIVES, default=list(OBJECTIVES))
    parser.add_argument("--members", type=int, help="members per case (default 8; 2 with --tiny)")
    parser.add_argument("--steps", type=int, help="every sampler's num_steps (default: the presets'; 3 with --tiny)")
    parser.add_argument("--iterations", type=int, help="noise_opt iterations (default: the presets' 20; 2 with --tiny)")
    parser.add_argument("--tiny", action="store_true", help="tiny architectures: a CPU smoke test of the script")
    parser.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's; 1 with --tiny, where "
                        "tiny layers gain nothing from more and a second thread contending for a busy core costs "
                        "several times the run)")
    parser.add_argument("--json", type=Path, help="also write the header and rows to this JSON file")
    args = parser.parse_args(argv)
    args.members = args.members or (2 if args.tiny else 8)
    args.steps = args.steps or (3 if args.tiny else None)  # 3 trailing steps: one guided step (noise level 0.67)
    args.iterations = args.iterations or (2 if args.tiny else None)
    args.threads = args.threads or (1 if args.tiny else None)
    return args


def sampler_spec(preset: Preset, name: str, steps: int | None, iterations: int | None) -> dict:
    """The preset's sampler, with the command line's step and iteration counts where given. noise_opt runs all its
    iterations (no `stop_when_accepted`): the benchmark measures what an iteration costs, which stopping would
    leave unmeasured for members that pass at once, as random weights make many do."""
    spec = copy.deepcopy(preset.samplers[name])
    if steps is not None:
        spec["num_steps"] = steps
    if spec["kind"] == "noise_opt":
        spec["stop_when_accepted"] = False
        if iterations is not None:
            spec["iterations"] = iterations
    return spec


def run_arch(arch: Arch, args: argparse.Namespace, classifier: nn.Module, device: torch.device,
             dtype: torch.dtype) -> list[dict]:
    """Every requested (sampler, objective) case of one architecture; its prior is freed afterwards."""
    preset = load_preset(arch)
    start = time.perf_counter()
    prior = build_prior(shrink(arch) if args.tiny else arch, preset, device, dtype)
    print(f"{arch.name}: built, saved and loaded in {time.perf_counter() - start:.1f} s ({prior.image_size} px)",
          file=sys.stderr, flush=True)
    source = source_image(prior.image_size, device)
    rows = []
    for objective_name in args.objectives:
        bound = objective_from_config(preset.objectives[objective_name], classifier).bind(source)
        for sampler_name in args.samplers:
            spec = sampler_spec(preset, sampler_name, args.steps, args.iterations)
            case = Case(arch.name, sampler_name, spec, objective_name, bound, preset.cfg_scale)
            rows.append(run_case(case, prior, classifier, source, args.members, device))
            print(f"  {sampler_name} / {objective_name}: {rows[-1]['seconds_per_member']:.3f} s per member",
                  file=sys.stderr, flush=True)
    del prior, source
    empty_cache(device)
    return rows


def main(argv: list[str] | None = None) -> list[dict]:
    """Run every requested case, print the report to stdout (progress to stderr), and return the rows."""
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype) if args.dtype else torch.float16 if device.type == "cuda" else torch.float32
    info = header(device, dtype, args.tiny)
    classifier = build_classifier(args.tiny, device)
    rows = [row for name in args.archs for row in run_arch(ARCHS[name], args, classifier, device, dtype)]
    add_cost_ratios(rows)
    print(report(info, rows), flush=True)
    if args.json:
        args.json.write_text(json.dumps({"header": info, "cases": rows}, indent=2, default=str))
    return rows


if __name__ == "__main__":
    main()
