"""preimage: explain vision models by sampling their invariant sets with a diffusion prior."""
