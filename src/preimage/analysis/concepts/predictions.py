"""The explained models' outputs on images, as the tables the concept step's scorers read: the classifier's
predicted class names, and a regressor's output under a column of its own. No statistics here: the jobs that
predict import this module alone."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from preimage.utils.images import to_tensor

if TYPE_CHECKING:
    import torch


def output_column(model: str) -> str:
    """The column of the reference predictions that holds the output of the regressor named `model`."""
    return f"output:{model}"


def predictions_table(table: pd.DataFrame, images: np.ndarray, classifier: torch.nn.Module,
                      device: str | torch.device = "cpu", batch_size: int = 512) -> pd.DataFrame:
    """The classifier's predicted class name for real images: image_id, label (true name), prediction.

    `table` needs image_id and class_name (`preimage.pipeline.models.real_image_table`).
    """
    truth = table["class_name"]
    return pd.DataFrame({"image_id": table["image_id"].to_numpy(), "label": truth.astype(str).to_numpy(),
                         "prediction": predicted_names(classifier, to_tensor(images), device, batch_size)})


def predicted_names(classifier: torch.nn.Module, images: torch.Tensor, device: str | torch.device = "cpu",
                    batch_size: int = 512) -> np.ndarray:
    """(N,) the class name the classifier predicts for each of (N, 3, H, W) images in [0, 1]."""
    import torch

    from preimage.utils.devices import predict

    names = getattr(classifier, "label_names", None)
    if not names:
        raise ValueError("classifier has no label_names; predictions are compared by class name")
    logits = predict(classifier, images, torch.device(device), batch_size)
    return np.asarray(names)[logits.argmax(1).numpy()]
