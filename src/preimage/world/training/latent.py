"""Train the world's latent diffusion model: a Stable-Diffusion-class pipeline at the world's scale.

An AutoencoderKL maps 32x32 images to small latents; a UNet2DConditionModel learns those latents (scaled to unit
variance) conditioned, through cross-attention, on a CLIPTextModel that trains with it on the world's captions:
full ones, partial ones and the empty prompt (dropped in for classifier-free guidance). The folder is written by
`StableDiffusionPipeline.save_pretrained`, so the engine loads it with the code that loads Stable Diffusion.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from diffusers.training_utils import EMAModel
from tqdm import tqdm
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from preimage.engine.priors import LatentDiffusionPrior
from preimage.engine.sets import reference_set
from preimage.utils.devices import autocast, resolve_device, resolve_dtype, seed_everything
from preimage.utils.images import to_tensor, to_uint8
from preimage.world.attributes import CATEGORICAL, TEXTURE_ADJECTIVE, caption
from preimage.world.generator import WorldSpec
from preimage.world.oracle import load_oracle, read_attributes
from preimage.world.training.common import Stopwatch, warmup_cosine
from preimage.world.training.prior import build_scheduler, min_snr_weights, oracle_scores

START, END = "<|startoftext|>", "<|endoftext|>"
MENTIONABLE = ("shape", *CATEGORICAL)  # the attributes a caption may mention


def caption_words(shapes: tuple[str, ...]) -> list[str]:
    """Every word a caption of the world can contain, sorted."""
    words = {"a", "shape", "with", "without", "tag", "on", "background", *shapes, *TEXTURE_ADJECTIVE.values()}
    words |= set(CATEGORICAL["fg_colour"]) | set(CATEGORICAL["bg_colour"])
    return sorted(words)


def build_tokenizer(words: list[str], max_length: int) -> CLIPTokenizer:
    """A word-level CLIP tokenizer: each word of `words` comes out as one token; any other word as its letters.

    BPE merges join each word's letters left to right; where an earlier merge of another word cuts in (the "pl"
    of "plain" inside "purple"), merges that join the pieces it leaves are appended, until every word is whole.
    """
    vocab: dict[str, int] = {}
    merges: list[tuple[str, str]] = []
    for word in words:
        for piece in [*word[:-1], word[-1] + "</w>", *word]:
            vocab.setdefault(piece, len(vocab))
    vocab[START], vocab[END] = len(vocab), len(vocab) + 1
    for word in words:
        add_chain(list(word[:-1]) + [word[-1] + "</w>"], vocab, merges)
    for _ in range(max(map(len, words))):
        tokenizer = CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=max_length)
        split = {word: tokenizer.tokenize(word) for word in words}
        split = {word: pieces for word, pieces in split.items() if len(pieces) != 1}
        if not split:
            return tokenizer
        for pieces in split.values():
            add_chain(pieces, vocab, merges)
    raise ValueError(f"the word-level tokenizer still splits caption words {sorted(split)}")


def add_chain(pieces: list[str], vocab: dict[str, int], merges: list[tuple[str, str]]) -> None:
    """Append the merges that join `pieces` left to right, and the tokens they make."""
    joined = pieces[0]
    for piece in pieces[1:]:
        if (joined, piece) not in merges:
            merges.append((joined, piece))
        joined += piece
        vocab.setdefault(joined, len(vocab))


def build_vae(cfg: dict) -> AutoencoderKL:
    """A small KL autoencoder: each of the len(block_out_channels) - 1 downsamplings halves the side."""
    levels = len(cfg["block_out_channels"])
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        latent_channels=cfg["latent_channels"],
        block_out_channels=tuple(cfg["block_out_channels"]),
        layers_per_block=cfg["layers_per_block"],
        norm_num_groups=8,
        down_block_types=("DownEncoderBlock2D",) * levels,
        up_block_types=("UpDecoderBlock2D",) * levels,
        mid_block_add_attention=False,
    )


def build_text_encoder(cfg: dict, tokenizer: CLIPTokenizer) -> CLIPTextModel:
    """A small CLIP text transformer over the tokenizer's vocabulary."""
    return CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tokenizer.get_vocab()),
        hidden_size=cfg["width"],
        intermediate_size=4 * cfg["width"],
        num_hidden_layers=cfg["layers"],
        num_attention_heads=cfg["heads"],
        max_position_embeddings=tokenizer.model_max_length,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    ))


def build_unet(latent_side: int, latent_channels: int, cfg: dict, cross_attention_dim: int) -> UNet2DConditionModel:
    """A small UNet with self- and cross-attention (to the prompt) at the levels `cfg["attention"]` marks, highest
    resolution first; absent: at every level."""
    attention = cfg.get("attention", [True] * len(cfg["block_out_channels"]))
    return UNet2DConditionModel(
        sample_size=latent_side,
        in_channels=latent_channels,
        out_channels=latent_channels,
        block_out_channels=tuple(cfg["block_out_channels"]),
        layers_per_block=cfg["layers_per_block"],
        norm_num_groups=8,
        cross_attention_dim=cross_attention_dim,
        attention_head_dim=cfg["attention_heads"],
        down_block_types=tuple("CrossAttnDownBlock2D" if on else "DownBlock2D" for on in attention),
        up_block_types=tuple("CrossAttnUpBlock2D" if on else "UpBlock2D" for on in reversed(attention)),
    )


def train_vae(images: np.ndarray, cfg: dict, device: torch.device, generator: torch.Generator) -> tuple[AutoencoderKL, dict]:
    """Fit the autoencoder on (N, H, W, 3) uint8 images: L1 + MSE reconstruction and a small KL term."""
    data = to_tensor(images).mul_(2).sub_(1)
    vae = build_vae(cfg).to(device).train()
    optimizer = torch.optim.AdamW(vae.parameters(), lr=cfg["learning_rate"], weight_decay=0.0)
    dtype = resolve_dtype("training.latent.vae.dtype", cfg.get("dtype", "float32"), device)
    losses = []
    for step in tqdm(range(cfg["steps"]), desc="train vae", mininterval=10):
        for group in optimizer.param_groups:
            group["lr"] = warmup_cosine(step, cfg["steps"], cfg["learning_rate"])
        batch = data[torch.randint(len(data), (cfg["batch_size"],), generator=generator)].to(device)
        with autocast(device, dtype):
            posterior = vae.encode(batch).latent_dist
            reconstruction = vae.decode(posterior.sample()).sample.float()
        error = (reconstruction - batch).abs().mean() + F.mse_loss(reconstruction, batch)
        loss = error + cfg["kl_weight"] * posterior.kl().float().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        optimizer.step()
        losses.append(error.item())
    vae.eval().requires_grad_(False)
    return vae, {"steps": cfg["steps"], "final_reconstruction_loss": float(np.mean(losses[-100:]))}


@torch.no_grad()
def encode_latents(vae: AutoencoderKL, images: np.ndarray, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Posterior means and standard deviations of every image, in batches."""
    means, stds = [], []
    for batch in to_tensor(images).mul_(2).sub_(1).split(256):
        posterior = vae.encode(batch.to(device)).latent_dist
        means.append(posterior.mean.cpu())
        stds.append(posterior.std.cpu())
    return torch.cat(means), torch.cat(stds)


def latent_scaling(latents: tuple[torch.Tensor, torch.Tensor], generator: torch.Generator) -> float:
    """The VAE's scaling_factor: one over the standard deviation of posterior samples, so the UNet sees unit
    variance (Stable Diffusion's 0.18215 was measured the same way)."""
    means, stds = latents
    return float(1 / (means + stds * torch.randn(means.shape, generator=generator)).std())


def random_captions(table: pd.DataFrame, index: torch.Tensor, cfg: dict, rng: np.random.Generator) -> list[str]:
    """A caption per row: empty with probability `empty_prompt`, partial (each attribute mentioned with
    probability 1/2) with probability `partial_prompt`, else full."""
    captions = []
    for row in table.iloc[index.numpy()].to_dict("records"):
        draw = rng.random()
        if draw < cfg["empty_prompt"]:
            captions.append("")
        elif draw < cfg["empty_prompt"] + cfg["partial_prompt"]:
            captions.append(caption(row, frozenset(a for a in MENTIONABLE if rng.random() < 0.5)))
        else:
            captions.append(caption(row))
    return captions


def train_unet(latents: tuple[torch.Tensor, torch.Tensor], table: pd.DataFrame, tokenizer: CLIPTokenizer,
               cfg: dict, device: torch.device, generator: torch.Generator) -> tuple[UNet2DConditionModel, CLIPTextModel, dict]:
    """Build UNet and text encoder and fit them together on the scaled latents (`fit_unet`)."""
    text_encoder = build_text_encoder(cfg["text_encoder"], tokenizer)
    unet = build_unet(latents[0].shape[-1], latents[0].shape[1], cfg, cfg["text_encoder"]["width"])
    return fit_unet(unet, text_encoder, latents, table, tokenizer, cfg, device, generator, "train unet")


def fit_unet(unet: UNet2DConditionModel, text_encoder: CLIPTextModel, latents: tuple[torch.Tensor, torch.Tensor],
             table: pd.DataFrame, tokenizer: CLIPTokenizer, cfg: dict, device: torch.device, generator: torch.Generator,
             desc: str) -> tuple[UNet2DConditionModel, CLIPTextModel, dict]:
    """One training stage of UNet and text encoder together on the v-prediction loss (Min-SNR weighted) of scaled
    latent samples, `cfg["steps"]` steps up to `cfg["learning_rate"]`; the EMA weights are what is returned."""
    means, stds = latents
    unet.to(device).train().requires_grad_(True)
    text_encoder.to(device).train().requires_grad_(True)
    parameters = [*unet.parameters(), *text_encoder.parameters()]
    ema = EMAModel(parameters, decay=cfg["ema_decay"], use_ema_warmup=True)
    optimizer = torch.optim.AdamW(parameters, lr=cfg["learning_rate"], weight_decay=0.0)
    scheduler = build_scheduler()
    dtype = resolve_dtype("training.latent.unet.dtype", cfg.get("dtype", "float32"), device)
    rng = np.random.default_rng(cfg["seed"])
    losses = []
    progress = tqdm(range(cfg["steps"]), desc=desc, mininterval=10)
    for step in progress:
        for group in optimizer.param_groups:
            group["lr"] = warmup_cosine(step, cfg["steps"], cfg["learning_rate"])
        index = torch.randint(len(means), (cfg["batch_size"],), generator=generator)
        clean = (means[index] + stds[index] * torch.randn(means[index].shape, generator=generator)) * cfg["scaling_factor"]
        clean = clean.to(device)
        ids = tokenizer(random_captions(table, index, cfg, rng), padding="max_length", truncation=True,
                        max_length=tokenizer.model_max_length, return_tensors="pt").input_ids.to(device)
        noise = torch.randn(clean.shape, generator=generator).to(device)
        t = torch.randint(0, scheduler.config.num_train_timesteps, (len(clean),), generator=generator).to(device)
        with autocast(device, dtype):
            condition = text_encoder(ids)[0]
            prediction = unet(scheduler.add_noise(clean, noise, t), t, encoder_hidden_states=condition).sample
        error = F.mse_loss(prediction.float(), scheduler.get_velocity(clean, noise, t), reduction="none").mean((1, 2, 3))
        loss = (error * min_snr_weights(scheduler, t, cfg["min_snr_gamma"])).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(parameters, 1.0)
        optimizer.step()
        ema.step(parameters)
        losses.append(loss.item())
        if step % 100 == 0:
            progress.set_postfix(loss=f"{np.mean(losses[-100:]):.4f}")
    ema.copy_to(parameters)
    unet.eval().requires_grad_(False)
    text_encoder.eval().requires_grad_(False)
    return unet, text_encoder, {"steps": cfg["steps"], "final_loss": float(np.mean(losses[-100:]))}


def train_latent_model(table: pd.DataFrame, images: np.ndarray, shapes: tuple[str, ...], cfg: dict,
                       device_name: str, out_dir: str | Path) -> dict:
    """Train VAE, then UNet and text encoder on its latents; save the pipeline folder; return its metrics."""
    clock = Stopwatch()
    generator = seed_everything(cfg["seed"])
    device = resolve_device(device_name)
    out = Path(out_dir)
    tokenizer = build_tokenizer(caption_words(shapes), cfg["unet"]["text_encoder"]["max_length"])
    vae, vae_metrics = train_vae(images, cfg["vae"], device, generator)
    vae_seconds = clock.seconds()
    latents = encode_latents(vae, images, device)
    scaling = latent_scaling(latents, generator)
    vae.register_to_config(scaling_factor=scaling)
    unet, text_encoder, unet_metrics = train_unet(latents, table, tokenizer, {**cfg["unet"], "seed": cfg["seed"],
                                                  "scaling_factor": scaling}, device, generator)
    save_pipeline(vae, text_encoder, tokenizer, unet, DDIMScheduler.from_config(build_scheduler().config, clip_sample=False), out)
    return {
        "vae": {**vae_metrics, "seconds": vae_seconds, "scaling_factor": scaling,
                "parameters": sum(p.numel() for p in vae.parameters())},
        "unet": {**unet_metrics, "seconds": round(clock.seconds() - vae_seconds, 2),
                 "parameters": sum(p.numel() for p in unet.parameters())},
        "text_encoder": {"parameters": sum(p.numel() for p in text_encoder.parameters())},
        "seconds": clock.seconds(),
        "device": str(device),
        "dtype": cfg["unet"].get("dtype", "float32"),
    }


def refine_latent_model(table: pd.DataFrame, images: np.ndarray, base_dir: str | Path, cfg: dict, device_name: str,
                        out_dir: str | Path) -> dict:
    """Second stage: UNet and text encoder of the trained pipeline in `base_dir` trained further with
    `cfg["refine"]`'s steps, peak learning rate and seed (batch size, captions, loss weighting, EMA and dtype from
    `cfg["unet"]`); VAE, tokenizer and scheduler are kept. Saves the pipeline folder; returns its metrics."""
    clock = Stopwatch()
    stage = {**cfg["unet"], **cfg["refine"]}
    generator = seed_everything(stage["seed"])
    device = resolve_device(device_name)
    base = Path(base_dir)
    vae = AutoencoderKL.from_pretrained(base / "vae", torch_dtype=torch.float32).to(device)
    unet = UNet2DConditionModel.from_pretrained(base / "unet", torch_dtype=torch.float32)
    text_encoder = CLIPTextModel.from_pretrained(base / "text_encoder", torch_dtype=torch.float32)
    tokenizer = CLIPTokenizer.from_pretrained(base / "tokenizer")
    latents = encode_latents(vae, images, device)
    unet, text_encoder, metrics = fit_unet(unet, text_encoder, latents, table, tokenizer,
                                           {**stage, "scaling_factor": vae.config.scaling_factor}, device, generator,
                                           "refine unet")
    save_pipeline(vae, text_encoder, tokenizer, unet, DDIMScheduler.from_pretrained(base / "scheduler"), Path(out_dir))
    seconds = clock.seconds()
    return {"base": base.name, "unet": {**metrics, "seconds": seconds}, "seconds": seconds,
            "device": str(device), "dtype": stage.get("dtype", "float32")}


def save_pipeline(vae: AutoencoderKL, text_encoder: CLIPTextModel, tokenizer: CLIPTokenizer,
                  unet: UNet2DConditionModel, scheduler: DDIMScheduler, out: Path) -> None:
    """Save the parts as the folder `StableDiffusionPipeline.save_pretrained` writes, weights in float16."""
    pipeline = StableDiffusionPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    save_half_precision(pipeline, out)


def save_half_precision(pipeline: StableDiffusionPipeline, out: Path) -> None:
    """Save the pipeline with its weights in float16, which keeps the committed folder small (the UNet 9.6 -> 4.8 MB);
    the engine loads it in its own dtype. Each module is cast itself: `DiffusionPipeline.to` has renamed its dtype
    argument across diffusers versions and ignores a name it does not know."""
    for name in ("vae", "unet", "text_encoder"):
        getattr(pipeline, name).to(torch.float16)
    pipeline.save_pretrained(out, safe_serialization=True)


def attribute_prompts(shapes: tuple[str, ...]) -> dict[str, dict[str, str]]:
    """attribute -> value -> the partial caption that names only that value ("a red shape", "a square")."""
    values = {"shape": shapes, **CATEGORICAL}
    return {name: {value: caption({name: value}, frozenset({name})) for value in options}
            for name, options in values.items()}


def prompted_samples(prior: LatentDiffusionPrior, prompt: str, n: int, num_steps: int, seed: int) -> np.ndarray:
    """`n` samples of `prompt`, (n, H, W, 3) uint8, drawn as the pipeline draws its reference set."""
    prior.set_prompt(prompt)
    return to_uint8(reference_set(prior, n, seed, num_steps).images)


def evaluate_latent(latent_dir: str | Path, oracle_dir: str | Path, spec: WorldSpec, n: int, per_prompt: int,
                    num_steps: int, cfg_scale: float, device_name: str = "auto") -> tuple[dict, np.ndarray]:
    """The oracle's reading of the latent model through the engine's LatentDiffusionPrior.

    Unconditional samples (the empty prompt, no guidance): validity and attribute total variation, as for the
    pixel prior. Prompt adherence: for each attribute value, `per_prompt` samples of the caption naming only it;
    the fraction the oracle reads that value in, without classifier-free guidance and with `cfg_scale`.
    Returns the metrics and the unconditional samples.
    """
    device = resolve_device(device_name)
    prior = LatentDiffusionPrior.from_pretrained(latent_dir).to(device)
    oracle = load_oracle(oracle_dir)
    samples = prompted_samples(prior, "", n, num_steps, seed=0)
    metrics = {"samples": n, "sampling_steps": num_steps, **oracle_scores(samples, oracle, spec)}
    adherence = {}
    for scale in (0.0, cfg_scale):
        prior.cfg_scale = scale
        per_attribute = {}
        for attribute, prompts in attribute_prompts(spec.shapes).items():
            agreement = {}
            for i, (value, prompt) in enumerate(prompts.items()):
                images = prompted_samples(prior, prompt, per_prompt, num_steps, seed=1 + i)
                read = read_attributes(oracle, to_tensor(images), spec.shapes)[attribute]
                agreement[value] = float((read == value).mean())
            per_attribute[attribute] = {"mean": float(np.mean(list(agreement.values()))), "per_value": agreement}
        adherence[f"cfg_{scale:g}"] = per_attribute
    metrics.update(prompt_samples=per_prompt, cfg_scale=cfg_scale, prompt_adherence=adherence)
    return metrics, samples
