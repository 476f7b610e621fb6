"""The embedded shortcut world, a plug-in: procedural images with planted shortcuts and a known ground truth,
the training of its own models, its oracle, its concept vocabulary and the ground-truth evaluation.

It may use the engine and the analysis; only the pipeline glue imports it.
"""
