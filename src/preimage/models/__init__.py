"""Loaders for the models preimage explains or measures with, from local files or the Hugging Face cache."""

from preimage.models.classifier import load_classifier
from preimage.models.clip import ClipModel, load_clip
from preimage.models.errors import MissingWeightsError
from preimage.models.perceptual import Lpips, load_lpips

__all__ = ["ClipModel", "Lpips", "MissingWeightsError", "load_classifier", "load_clip", "load_lpips"]
