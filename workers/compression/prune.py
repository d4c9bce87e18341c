"""Global magnitude (unstructured) pruning of the encoder's Linear weights."""
from __future__ import annotations

import torch
from torch.nn.utils import prune

from ..kinds import PRUNE_METHODS


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


def apply_pruning(model: torch.nn.Module, method: str, amount: float, *, drop_order: list[int] | None = None) -> dict:
    """Prune in place; what was done, and the resulting zero share of the
    encoder's Linear weights."""
    from . import structured

    if method == "magnitude":
        details = {"method": "magnitude", "amount": amount}
        global_magnitude_prune(model, amount)
    elif method == "heads":
        details = structured.prune_heads(model, amount)
    elif method == "neurons":
        details = structured.prune_neurons(model, amount)
    elif method == "layers":
        details = structured.prune_layers(model, amount, drop_order=drop_order)
    else:
        raise ValueError(f"unknown pruning method {method!r}; one of {', '.join(PRUNE_METHODS)}")
    return {**details, **sparsity_of(model)}


def search_amount(source: torch.nn.Module, method: str, *, evaluate, baseline_accuracy: float, max_drop_points: float,
                  grid: list[float], drop_order: list[int] | None = None, should_stop=lambda: None) -> dict:
    """The largest amount on `grid` whose one-shot accuracy stays within the
    guard, by bisection (accuracy falls as more is pruned); every probe goes on
    the curve. A recovery fine-tune afterwards usually wins back more."""
    import copy

    curve: dict[float, dict] = {}

    def probe(index: int) -> bool:
        amount = grid[index]
        if amount not in curve:
            trial = copy.deepcopy(source)
            apply_pruning(trial, method, amount, drop_order=drop_order)
            accuracy = evaluate(trial)
            drop = round(100 * (baseline_accuracy - accuracy), 3)
            curve[amount] = {"amount": round(amount, 6), "accuracy": round(accuracy, 5), "accuracy_drop_points": drop,
                             "passed": drop <= max_drop_points}
        return curve[amount]["passed"]

    low, high = -1, len(grid) - 1  # invariant: grid[low] passes (-1: nothing pruned), grid[high+1:] fail
    if probe(high):
        low = high
    else:
        while high - low > 1 and not should_stop():
            middle = (low + high) // 2
            if probe(middle):
                low = middle
            else:
                high = middle
    return {"chosen": grid[low] if low >= 0 else None, "curve": [curve[a] for a in sorted(curve)],
            "max_accuracy_drop_points": max_drop_points}
