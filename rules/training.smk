# Training of the world's own models. The committed weights under models/ were made by these rules.
# Training scripts regenerate their (deterministic) data in-process rather than reading results/world,
# so committed weights stay up to date in a fresh clone; `snakemake --forceall train_world` retrains.

TRAIN_GPUS = gpus(config)
CLASSIFIER_DIR = model_dir(config, "classifier")
PRIOR_DIR = model_dir(config, "prior")  # the prior every later rule samples from
PRIOR_BASE_DIR = base_model_dir(config, "prior")  # its first stage; the same directory unless training.prior has `refine`
PRIOR_UNET = f"{PRIOR_DIR}/unet/diffusion_pytorch_model.safetensors"
CLIP_DIR = model_dir(config, "clip")
ORACLE_DIR = model_dir(config, "oracle")
ROBUST_DIR = model_dir(config, "robust")
LATENT_DIR = model_dir(config, "latent") if "latent" in config["training"] else None  # presets/world_latent.yaml
LATENT_BASE_DIR = base_model_dir(config, "latent") if LATENT_DIR else None  # its first stage, as PRIOR_BASE_DIR
REGRESSOR_DIR = (model_dir(config, "regressor") if "regression" in config["world"] and "regressor" in config["training"]
                 else None)  # the optional regression task's regressor


rule train_prior:
    """Pixel-space diffusion prior (diffusers UNet2DModel, v-prediction) on the unbiased split."""
    output:
        unet=f"{PRIOR_BASE_DIR}/unet/diffusion_pytorch_model.safetensors",
        scheduler=f"{PRIOR_BASE_DIR}/scheduler/scheduler_config.json",
        metrics=f"{PRIOR_BASE_DIR}/metrics.json",
    params:
        world=canonical(shared_world(config)),
        training=canonical(first_stage(config["training"]["prior"])),
        device=config["device"],
    threads: workflow.cores
    resources:
        gpu=TRAIN_GPUS,
    log:
        "logs/train_prior.log",
    benchmark:
        "results/benchmarks/train_prior.tsv",
    script:
        "../scripts/train_prior.py"


rule train_classifier:
    """timm classifier on the biased split; its metrics show whether the shortcuts were learned."""
    output:
        weights=f"{CLASSIFIER_DIR}/model.safetensors",
        config=f"{CLASSIFIER_DIR}/config.json",
        metrics=f"{CLASSIFIER_DIR}/metrics.json",
    params:
        world=canonical(shared_world(config)),
        training=canonical(config["training"]["classifier"]),
        device=config["device"],
    threads: workflow.cores
    resources:
        gpu=TRAIN_GPUS,
    log:
        "logs/train_classifier.log",
    benchmark:
        "results/benchmarks/train_classifier.tsv",
    script:
        "../scripts/train_model.py"


use rule train_classifier as train_oracle with:
    output:
        weights=f"{ORACLE_DIR}/model.safetensors",
        config=f"{ORACLE_DIR}/config.json",
        metrics=f"{ORACLE_DIR}/metrics.json",
    params:
        world=canonical(shared_world(config)),
        training=canonical(config["training"]["oracle"]),
        device=config["device"],
    log:
        "logs/train_oracle.log",
    benchmark:
        "results/benchmarks/train_oracle.tsv",


use rule train_classifier as train_robust with:
    output:
        weights=f"{ROBUST_DIR}/model.safetensors",
        config=f"{ROBUST_DIR}/config.json",
        metrics=f"{ROBUST_DIR}/metrics.json",
    params:
        world=canonical(shared_world(config)),
        training=canonical(config["training"]["robust"]),
        device=config["device"],
    log:
        "logs/train_robust.log",
    benchmark:
        "results/benchmarks/train_robust.tsv",


if REGRESSOR_DIR:

    use rule train_classifier as train_regressor with:
        output:
            weights=f"{REGRESSOR_DIR}/model.safetensors",
            config=f"{REGRESSOR_DIR}/config.json",
            metrics=f"{REGRESSOR_DIR}/metrics.json",
        params:
            world=canonical(config["world"]),  # the regression task with its shortcut and splits
            training=canonical(config["training"]["regressor"]),
            device=config["device"],
        log:
            "logs/train_regressor.log",
        benchmark:
            "results/benchmarks/train_regressor.tsv",


use rule train_classifier as train_clip with:
    output:
        weights=f"{CLIP_DIR}/open_clip_model.safetensors",
        config=f"{CLIP_DIR}/open_clip_config.json",
        metrics=f"{CLIP_DIR}/metrics.json",
    params:
        world=canonical(shared_world(config)),
        training=canonical(config["training"]["clip"]),
        device=config["device"],
    log:
        "logs/train_clip.log",
    benchmark:
        "results/benchmarks/train_clip.tsv",


if PRIOR_DIR != PRIOR_BASE_DIR:

    rule refine_prior:
        """Second stage of the prior: the first stage fine-tuned on offset noise (training.prior.refine)."""
        input:
            # ancient: a clone checks the committed stages out in path order, which says nothing of which came first
            ancient(rules.train_prior.output.unet),
        output:
            unet=PRIOR_UNET,
            scheduler=f"{PRIOR_DIR}/scheduler/scheduler_config.json",
            metrics=f"{PRIOR_DIR}/metrics.json",
        params:
            world=canonical(shared_world(config)),
            training=canonical(config["training"]["prior"]),
            device=config["device"],
        threads: workflow.cores
        resources:
            gpu=TRAIN_GPUS,
        log:
            "logs/refine_prior.log",
        benchmark:
            "results/benchmarks/refine_prior.tsv",
        script:
            "../scripts/refine_prior.py"


if LATENT_DIR:

    rule train_latent:
        """The latent world model's first stage: a StableDiffusionPipeline folder (VAE, UNet2DConditionModel, CLIP
        text encoder and tokenizer, DDIM scheduler) trained on the unbiased split and its captions. Not part of `all`
        or `train_world`."""
        output:
            unet=f"{LATENT_BASE_DIR}/unet/diffusion_pytorch_model.safetensors",
            index=f"{LATENT_BASE_DIR}/model_index.json",
            metrics=f"{LATENT_BASE_DIR}/metrics.json",
        params:
            world=canonical(shared_world(config)),
            training=canonical(first_stage(config["training"]["latent"])),
            device=config["device"],
        threads: 1  # one thread: the budget it was sized for (docs/world.md)
        resources:
            gpu=TRAIN_GPUS,
        log:
            "logs/train_latent.log",
        benchmark:
            "results/benchmarks/train_latent.tsv",
        script:
            "../scripts/train_latent.py"


    if LATENT_DIR != LATENT_BASE_DIR:

        rule refine_latent:
            """Second stage of the latent model: its UNet and text encoder trained further (training.latent.refine)."""
            input:
                ancient(rules.train_latent.output.unet),  # as refine_prior's
            output:
                unet=f"{LATENT_DIR}/unet/diffusion_pytorch_model.safetensors",
                index=f"{LATENT_DIR}/model_index.json",
                metrics=f"{LATENT_DIR}/metrics.json",
            params:
                world=canonical(shared_world(config)),
                training=canonical(config["training"]["latent"]),
                device=config["device"],
            threads: 1
            resources:
                gpu=TRAIN_GPUS,
            log:
                "logs/refine_latent.log",
            benchmark:
                "results/benchmarks/refine_latent.tsv",
            script:
                "../scripts/refine_latent.py"


    rule evaluate_latent:
        """Oracle check of the latent world model (either stage): unconditional validity and attribute frequencies,
        prompt adherence with and without classifier-free guidance."""
        input:
            latent="{latent}/unet/diffusion_pytorch_model.safetensors",
            oracle=rules.train_oracle.output.weights,
        output:
            metrics="{latent}/evaluation.json",
            samples="{latent}/samples.png",
        wildcard_constraints:
            latent=r"models/[^/]+/latent-[0-9a-f]+",
        params:
            world=canonical(shared_world(config)),
            evaluation=canonical(config["evaluation"]),
            device=config["device"],
        threads: workflow.cores
        resources:
            gpu=TRAIN_GPUS,
        log:
            "logs/evaluate_latent/{latent}.log",
        benchmark:
            "results/benchmarks/evaluate_latent/{latent}.tsv",
        script:
            "../scripts/evaluate_latent.py"

    rule latent_world:
        """The latent world model with its evaluation: `snakemake --cores 2 latent_world`."""
        input:
            f"{LATENT_DIR}/metrics.json",
            expand("{latent}/{file}", latent={LATENT_BASE_DIR, LATENT_DIR}, file=["evaluation.json", "samples.png"]),


rule evaluate_prior:
    """Score unconditional samples of a prior (either stage) with the oracle: validity and attribute frequencies."""
    input:
        prior="{prior}/unet/diffusion_pytorch_model.safetensors",
        oracle=rules.train_oracle.output.weights,
    output:
        metrics="{prior}/evaluation.json",
        samples="{prior}/samples.png",
    wildcard_constraints:
        prior=r"models/[^/]+/prior-[0-9a-f]+",
    params:
        world=canonical(shared_world(config)),
        evaluation=canonical(config["evaluation"]),
        device=config["device"],
    threads: workflow.cores
    resources:
        gpu=TRAIN_GPUS,
    log:
        "logs/evaluate_prior/{prior}.log",
    benchmark:
        "results/benchmarks/evaluate_prior/{prior}.tsv",
    script:
        "../scripts/evaluate_prior.py"


rule train_world:
    """Every model of the world with its metrics."""
    input:
        PRIOR_UNET,
        rules.train_classifier.output,
        rules.train_oracle.output,
        rules.train_clip.output,
        rules.train_robust.output,
        rules.train_regressor.output if REGRESSOR_DIR else [],
        expand("{prior}/{file}", prior={PRIOR_BASE_DIR, PRIOR_DIR}, file=["evaluation.json", "samples.png"]),
