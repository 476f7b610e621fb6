"""Objectives: what an invariant set keeps fixed (or a counterfactual moves), as value / loss / accept.

    from preimage.engine.objectives import label, neuron, lowpass, scale
    keep = (label(model) + 0.5 * lowpass(4)).bind(x0)          # invariant set of the label, coarse image kept
    more = neuron(model, "layer3", 5, target=scale(2.0)).bind(x0)  # counterfactual: that neuron doubled
"""

import lazy_loader

# Submodules load on first use: see preimage/__init__.py.
__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "base": ["Leaf", "Objective", "Sum", "ToleranceObjective"],
        "concept": ["Concept", "concept"],
        "image": ["Function", "Lowpass", "Masked", "box_mask", "function", "lowpass", "masked"],
        "internal": ["Channel", "Features", "Neuron", "channel", "features", "neuron"],
        "layers": ["find_layer", "read_layer"],
        "output": ["Label", "Logits", "Probs", "Regression", "label", "logits", "probs", "regression"],
        "spec": ["from_config"],
        "targets": ["RelativeTarget", "scale", "shift"],
    },
)
