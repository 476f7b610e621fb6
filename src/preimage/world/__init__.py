"""The embedded shortcut world: procedural images with planted shortcuts and a known ground truth."""
