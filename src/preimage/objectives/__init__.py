"""Objectives: what an invariant set keeps fixed (or a counterfactual moves), as value / loss / accept.

    from preimage.objectives import label, neuron, lowpass, scale
    keep = (label(model) + 0.5 * lowpass(4)).bind(x0)          # invariant set of the label, coarse image kept
    more = neuron(model, "layer3", 5, target=scale(2.0)).bind(x0)  # counterfactual: that neuron doubled
"""

from preimage.objectives.base import Leaf, Objective, Sum, ToleranceObjective
from preimage.objectives.image import Function, Lowpass, Masked, box_mask, function, lowpass, masked
from preimage.objectives.internal import Channel, Features, Neuron, channel, features, neuron
from preimage.objectives.layers import find_layer, read_layer
from preimage.objectives.output import Label, Logits, Probs, Regression, label, logits, probs, regression
from preimage.objectives.spec import from_spec
from preimage.objectives.targets import RelativeTarget, scale, shift

__all__ = [
    "Channel", "Features", "Function", "Label", "Leaf", "Logits", "Lowpass", "Masked", "Neuron", "Objective",
    "Probs", "Regression", "RelativeTarget", "Sum", "box_mask", "channel", "features", "find_layer", "from_spec",
    "function", "label", "logits", "lowpass", "masked", "neuron", "probs", "read_layer", "regression", "scale",
    "shift", "ToleranceObjective",
]
