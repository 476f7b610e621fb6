"""Training of the shortcut world's own models: classifier, diffusion prior, CLIP-style model and oracle."""
