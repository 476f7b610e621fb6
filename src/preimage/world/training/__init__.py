"""Training of the shortcut world's own models: classifier, diffusion prior, CLIP-style model and oracle."""


def prior_first_stage(prior: dict) -> dict:
    """The prior's training settings without its `refine` stage: what the first stage trains (and is named) by."""
    return {key: value for key, value in prior.items() if key != "refine"}
