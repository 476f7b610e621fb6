# Training of the world's own models. The committed weights under models/ were made by these rules.
# Training scripts regenerate their (deterministic) data in-process rather than reading results/world,
# so committed weights stay up to date in a fresh clone; `snakemake --forceall train_world` retrains.

TRAIN_GPUS = 1 if config["device"] == "cuda" else 0
CLASSIFIER_DIR = model_dir(config, "classifier")
PRIOR_DIR = model_dir(config, "prior")
CLIP_DIR = model_dir(config, "clip")
ORACLE_DIR = model_dir(config, "oracle")


rule train_prior:
    """Pixel-space diffusion prior (diffusers UNet2DModel, v-prediction) on the unbiased split."""
    output:
        unet=f"{PRIOR_DIR}/unet/diffusion_pytorch_model.safetensors",
        scheduler=f"{PRIOR_DIR}/scheduler/scheduler_config.json",
        metrics=f"{PRIOR_DIR}/metrics.json",
    params:
        world=config["world"],
        training=config["training"]["prior"],
        device=config["device"],
    threads: workflow.cores
    resources:
        gpu=TRAIN_GPUS,
    log:
        "logs/train_prior.log",
    script:
        "../scripts/train_prior.py"


rule train_classifier:
    """timm classifier on the biased split; its metrics show whether the shortcuts were learned."""
    output:
        weights=f"{CLASSIFIER_DIR}/model.safetensors",
        config=f"{CLASSIFIER_DIR}/config.json",
        metrics=f"{CLASSIFIER_DIR}/metrics.json",
    params:
        world=config["world"],
        training=config["training"]["classifier"],
        device=config["device"],
    threads: workflow.cores
    resources:
        gpu=TRAIN_GPUS,
    log:
        "logs/train_classifier.log",
    script:
        "../scripts/train_model.py"


use rule train_classifier as train_oracle with:
    output:
        weights=f"{ORACLE_DIR}/model.safetensors",
        config=f"{ORACLE_DIR}/config.json",
        metrics=f"{ORACLE_DIR}/metrics.json",
    params:
        world=config["world"],
        training=config["training"]["oracle"],
        device=config["device"],
    log:
        "logs/train_oracle.log",


use rule train_classifier as train_clip with:
    output:
        weights=f"{CLIP_DIR}/open_clip_model.safetensors",
        config=f"{CLIP_DIR}/open_clip_config.json",
        metrics=f"{CLIP_DIR}/metrics.json",
    params:
        world=config["world"],
        training=config["training"]["clip"],
        device=config["device"],
    log:
        "logs/train_clip.log",


rule evaluate_prior:
    """Score unconditional prior samples with the oracle: validity and attribute frequencies."""
    input:
        prior=rules.train_prior.output.unet,
        oracle=rules.train_oracle.output.weights,
    output:
        metrics=f"{PRIOR_DIR}/evaluation.json",
        samples=f"{PRIOR_DIR}/samples.png",
    params:
        world=config["world"],
        evaluation=config["evaluation"],
        device=config["device"],
    threads: workflow.cores
    resources:
        gpu=TRAIN_GPUS,
    log:
        "logs/evaluate_prior.log",
    script:
        "../scripts/evaluate_prior.py"


rule train_world:
    """Every model of the world with its metrics."""
    input:
        rules.train_prior.output,
        rules.train_classifier.output,
        rules.train_oracle.output,
        rules.train_clip.output,
        rules.evaluate_prior.output,
