"""Training of the shortcut world's own models: classifier, diffusion prior, CLIP-style model and oracle."""


def first_stage(settings: dict) -> dict:
    """A model's training settings without its `refine` stage: what the first stage trains (and is named) by."""
    return {key: value for key, value in settings.items() if key != "refine"}
