"""Global magnitude (unstructured) pruning of the encoder's Linear weights."""
from __future__ import annotations

import torch
from torch.nn.utils import prune


def prunable_linears(model: torch.nn.Module, *, include_head: bool = False):
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and (include_head or "classifier" not in name):
            yield name, module


def global_magnitude_prune(model: torch.nn.Module, sparsity: float) -> dict:
    """Zero the `sparsity` share of Linear weights with the smallest magnitude,
    ranked across all layers at once, and make it permanent."""
    if not 0.0 <= sparsity < 1.0:
        raise ValueError("sparsity must be in [0, 1)")
    targets = [(module, "weight") for _name, module in prunable_linears(model)]
    prune.global_unstructured(targets, pruning_method=prune.L1Unstructured, amount=sparsity)
    for module, name in targets:
        prune.remove(module, name)  # bake the mask into the weight
    return sparsity_of(model)


def sparsity_of(model: torch.nn.Module) -> dict:
    total = zeros = 0
    for _name, module in prunable_linears(model):
        total += module.weight.numel()
        zeros += int((module.weight == 0).sum())
    return {"prunable_weights": total, "zero_weights": zeros, "sparsity": round(zeros / total, 6) if total else 0.0}
