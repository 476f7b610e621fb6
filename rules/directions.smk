# Global counterfactual directions (GCD, Sobieski et al. 2024): for each class of `directions.targets`, one edit of
# the prior's latent found with the classifier's outputs alone, applied to held-out images of every other class and
# described with CLIP; with report.evaluate, the world's oracle reads what it changes (evaluation only).
# Needs rules/concepts.smk (the vocabulary) and rules/common.smk.

from preimage.pipeline.layout import direction_figure_stems, direction_files

DIRECTION_GPUS = gpus(config)


rule global_direction:
    """The direction towards one target class: DDIM inversion of the split's images, a black-box search
    (mean-difference start, evolution strategies), its flip rate, LPIPS and CLIP concept shift on held-out images."""
    input:
        **model_inputs("classifier", "prior", "clip"),
        **direction_images(),
        vocabulary=rules.concepts_vocabulary.output.table,
    output:
        **direction_files("{target}"),
    params:
        config=canonical(model_config(config, "classifier", "prior", "clip")
                         | {"directions": direction_settings(), "perceptual": config["perceptual"]}),
    wildcard_constraints:
        target="[^/]+",
    threads: 1
    priority: PRIORITY_START
    resources:
        gpu=DIRECTION_GPUS,
    log:
        "logs/directions/{target}.log",
    benchmark:
        "results/benchmarks/global_direction/{target}.tsv",
    script:
        "../scripts/global_direction.py"


if config["report"]["evaluate"]:  # a world run: the oracle and its world are there

    rule direction_evaluation:
        """What a direction changes according to the world's attribute oracle (evaluation only)."""
        input:
            reconstructed=direction_files("{target}")["reconstructed"],
            edited=direction_files("{target}")["edited"],
            oracle=f"{model_dir(config, 'oracle')}/model.safetensors",
        output:
            "results/directions/{target}/oracle.parquet",
        params:
            config=canonical({"world": shared_world(config), "training": {"oracle": config["training"]["oracle"]}}),
        wildcard_constraints:
            target="[^/]+",
        threads: 1
        log:
            "logs/directions/evaluation/{target}.log",
        benchmark:
            "results/benchmarks/direction_evaluation/{target}.tsv",
        script:
            "../scripts/direction_evaluation.py"


rule figures_direction:
    """A direction's figures: held-out images before and after the edit, flip rate per source class."""
    input:
        heldout=direction_files("{target}")["heldout"],
        summary=direction_files("{target}")["summary"],
        originals=direction_files("{target}")["originals"],
        edited=direction_files("{target}")["edited"],
    output:
        **{key: path for name, stem in direction_figure_stems("{target}").items()
           for key, path in figure_pair(name, stem, "direction", "Global directions", "{target}").items()},
    params:
        stems=lambda wildcards: direction_figure_stems(wildcards.target),
    wildcard_constraints:
        target="[^/]+",
    log:
        "logs/figures/directions/{target}.log",
    benchmark:
        "results/benchmarks/figures_direction/{target}.tsv",
    script:
        "../scripts/figures_direction.py"


rule directions:
    """Every global direction of the configuration, with its figures (and the oracle's reading)."""
    input:
        direction_report_inputs(),
