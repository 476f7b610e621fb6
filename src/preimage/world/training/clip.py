"""Train the world's CLIP-style model: open_clip with a small custom config, contrastive on captions.

Captions name a random subset of an image's attributes ("a red square", "a shape on a purple
background"), so the partial prompts of zero-shot classification are in-distribution. A partial caption
fits many images of a batch, so the loss treats every image that satisfies a caption as a positive
instead of assuming the diagonal is the only match.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import open_clip
import pandas as pd
import torch
from safetensors.torch import save_file
from tqdm import tqdm

from preimage.utils.devices import resolve_device, seed_everything
from preimage.utils.images import to_tensor
from preimage.world.attributes import CATEGORICAL, caption
from preimage.world.generator import WorldSpec, make_split
from preimage.world.training.common import Stopwatch, warmup_cosine

DESCRIBED = ("shape", *CATEGORICAL)
CONTEXT_LENGTH = 32


def model_config(cfg: dict, image_size: int) -> dict:
    """open_clip model_cfg: a small ModifiedResNet image tower (shape is learned faster by a CNN than
    by a tiny ViT) and a 2-layer text transformer."""
    return {
        "embed_dim": cfg["embed_dim"],
        "vision_cfg": {"image_size": image_size, "layers": [1, 1, 1, 1], "width": cfg["vision_width"]},
        "text_cfg": {"context_length": CONTEXT_LENGTH, "vocab_size": 49408, "width": cfg["text_width"],
                     "heads": cfg["text_width"] // 16, "layers": cfg["text_layers"]},
    }


def preprocess_config(image_size: int) -> dict:
    return {"size": image_size, "mean": list(open_clip.OPENAI_DATASET_MEAN), "std": list(open_clip.OPENAI_DATASET_STD),
            "interpolation": "bicubic", "resize_mode": "shortest"}


def _normalise(images: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(open_clip.OPENAI_DATASET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(open_clip.OPENAI_DATASET_STD).view(1, 3, 1, 1)
    return (images - mean) / std


def _codes(table: pd.DataFrame) -> np.ndarray:
    """Integer code per described attribute, to test which images satisfy which caption."""
    return np.stack([pd.factorize(table[name], sort=True)[0] for name in DESCRIBED], axis=1)


def _mentions(n: int, rng: np.random.Generator) -> np.ndarray:
    """Which attributes each caption names: half full captions, half random non-empty subsets."""
    mention = rng.random((n, len(DESCRIBED))) < 0.5
    mention[rng.random(n) < 0.5] = True
    mention[~mention.any(1), rng.integers(0, len(DESCRIBED))] = True
    return mention


def _multi_positive_loss(logits: torch.Tensor, match: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE with every satisfying (image, caption) pair counted as a positive."""
    to_text = match / match.sum(1, keepdim=True)
    to_image = match / match.sum(0, keepdim=True)
    return 0.5 * (-(to_text * logits.log_softmax(1)).sum(1).mean() - (to_image * logits.log_softmax(0)).sum(0).mean())


def train_clip(spec: WorldSpec, cfg: dict, device_name: str, out_dir: str | Path) -> dict:
    """Train contrastively on the unbiased split, save in open_clip's local-dir layout, return metrics."""
    generator = seed_everything(cfg["seed"])
    rng = np.random.default_rng(cfg["seed"])
    device = resolve_device(device_name)
    clock = Stopwatch()
    table, images = make_split(spec, "prior_train")
    records, codes = table.to_dict("records"), torch.tensor(_codes(table))
    inputs = _normalise(to_tensor(images))
    config = model_config(cfg, spec.image_size)
    model = open_clip.CLIP(**config).to(device).train()
    tokenizer = open_clip.SimpleTokenizer(context_length=CONTEXT_LENGTH)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg["learning_rate"], weight_decay=0.1)
    losses = []
    for step in (progress := tqdm(range(cfg["steps"]), desc="train clip", mininterval=5)):
        for group in optimizer.param_groups:
            group["lr"] = warmup_cosine(step, cfg["steps"], cfg["learning_rate"])
        index = torch.randint(len(inputs), (cfg["batch_size"],), generator=generator)
        mention = _mentions(len(index), rng)
        texts = [caption(records[i], frozenset(np.asarray(DESCRIBED)[m])) for i, m in zip(index.tolist(), mention)]
        batch_codes = codes[index]
        match = ((batch_codes[:, None, :] == batch_codes[None, :, :]) | ~torch.tensor(mention)[None]).all(-1).float()
        image_features, text_features, scale = model(inputs[index].to(device), tokenizer(texts).to(device))
        loss = _multi_positive_loss(scale * image_features @ text_features.T, match.to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        if step % 50 == 0:
            progress.set_postfix(loss=f"{np.mean(losses[-50:]):.3f}")
    seconds = clock.seconds()
    model.eval()
    metrics = zero_shot_metrics(model, tokenizer, spec, device)
    save_open_clip(model, config, spec.image_size, out_dir)
    return {"final_loss": float(np.mean(losses[-50:])), "seconds": seconds, "device": str(device),
            "parameters": sum(p.numel() for p in model.parameters()), **metrics}


def save_open_clip(model: torch.nn.Module, config: dict, image_size: int, out_dir: str | Path) -> None:
    """open_clip's Hugging Face layout, in half precision to keep the committed file small."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "open_clip_config.json").write_text(
        json.dumps({"model_cfg": config, "preprocess_cfg": preprocess_config(image_size)}, indent=2) + "\n"
    )
    save_file({k: v.detach().half().cpu().contiguous() for k, v in model.state_dict().items()},
              str(out / "open_clip_model.safetensors"))


def zero_shot_prompts(attribute: str, shapes: tuple[str, ...]) -> dict[str, str]:
    """One prompt per value of an attribute, naming that attribute alone ("a red shape")."""
    values = shapes if attribute == "shape" else CATEGORICAL[attribute]
    return {v: caption({attribute: v}, frozenset({attribute})) for v in values}


@torch.no_grad()
def zero_shot_metrics(model: torch.nn.Module, tokenizer, spec: WorldSpec, device: torch.device) -> dict:
    """Zero-shot accuracy per attribute on the unbiased test split."""
    table, images = make_split(spec, "unbiased_test")
    features = torch.cat([model.encode_image(b.to(device), normalize=True).cpu() for b in _normalise(to_tensor(images)).split(512)])
    metrics = {}
    for attribute in DESCRIBED:
        prompts = zero_shot_prompts(attribute, spec.shapes)
        text = model.encode_text(tokenizer(list(prompts.values())).to(device), normalize=True).cpu()
        predicted = np.asarray(list(prompts))[(features @ text.T).argmax(1).numpy()]
        metrics[f"zero_shot_{attribute}_accuracy"] = float((predicted == table[attribute].to_numpy()).mean())
    return metrics
