"""Structured pruning of BERT-family encoders (BERT, RoBERTa, MiniLM, …):
attention heads, feed-forward neurons or whole layers.

Feed-forward neurons and layers are cut out of the matrices, so the saved
model is smaller and faster on any runtime and loads with the standard
`from_pretrained` (config.intermediate_size / num_hidden_layers change).
Attention heads are zeroed in place: transformers 5 dropped per-layer head
pruning and a config cannot express a different head count per layer, so a
pruned head keeps its (zero) slots; the report shows fewer non-zero
parameters, not more speed.
"""
from __future__ import annotations

from typing import Callable

import torch

STRUCTURED_METHODS = ("heads", "neurons", "layers")


def encoder_layers(model) -> torch.nn.ModuleList:
    encoder = getattr(model.base_model, "encoder", None)
    layers = getattr(encoder, "layer", None)
    if not isinstance(layers, torch.nn.ModuleList) or not hasattr(layers[0], "intermediate"):
        raise ValueError(f"Structured pruning supports BERT-family encoders; {type(model).__name__} is not one.")
    return layers


# --- heads ----------------------------------------------------------------------

def _head_size(model) -> int:
    return model.config.hidden_size // model.config.num_attention_heads


def head_importance(model) -> list[tuple[float, int, int]]:
    """(score, layer, head): the norm of the head's value rows times the norm of
    its columns in the output projection, a bound on what it adds to the residual."""
    size, scores = _head_size(model), []
    for li, layer in enumerate(encoder_layers(model)):
        value, out = layer.attention.self.value.weight.detach(), layer.attention.output.dense.weight.detach()
        for h in range(model.config.num_attention_heads):
            part = slice(h * size, (h + 1) * size)
            if float(value[part].abs().sum()) == 0.0:
                continue  # already pruned
            scores.append((float(value[part].norm() * out[:, part].norm()), li, h))
    return scores


def prune_heads(model, amount: float) -> dict:
    """Zero the `amount` share of all heads with the least importance, ranked
    across layers; every layer keeps at least one head."""
    heads_per_layer = model.config.num_attention_heads
    layers = encoder_layers(model)
    total = heads_per_layer * len(layers)
    target = min(int(round(amount * total)), total - len(layers))
    left = {li: heads_per_layer for li in range(len(layers))}
    removed: dict[int, list[int]] = {}
    for _score, li, h in sorted(head_importance(model)):
        if sum(len(v) for v in removed.values()) >= target:
            break
        if left[li] <= 1:
            continue
        removed.setdefault(li, []).append(h)
        left[li] -= 1
    size = _head_size(model)
    with torch.no_grad():
        for li, heads in removed.items():
            attention = layers[li].attention
            for h in heads:
                part = slice(h * size, (h + 1) * size)
                for linear in (attention.self.query, attention.self.key, attention.self.value):
                    linear.weight[part] = 0
                    linear.bias[part] = 0
                attention.output.dense.weight[:, part] = 0
    count = sum(len(v) for v in removed.values())
    return {"method": "heads", "heads_removed": count, "heads_total": total, "amount": round(count / total, 6),
            "removed": {str(li): sorted(v) for li, v in sorted(removed.items())}}


# --- feed-forward neurons -----------------------------------------------------------

def _slice_linear(linear: torch.nn.Linear, keep: torch.Tensor, *, dim: int) -> torch.nn.Linear:
    weight = linear.weight.index_select(dim, keep)
    new = torch.nn.Linear(weight.shape[1], weight.shape[0], bias=linear.bias is not None)
    with torch.no_grad():
        new.weight.copy_(weight)
        if linear.bias is not None:
            new.bias.copy_(linear.bias if dim == 1 else linear.bias.index_select(0, keep))
    return new


def prune_neurons(model, amount: float) -> dict:
    """Remove the `amount` share of each layer's feed-forward neurons (the same
    number in every layer, so config.intermediate_size describes the result),
    ranked by ‖input row‖·‖output column‖."""
    before = model.config.intermediate_size
    keep_count = max(1, int(round((1 - amount) * before)))
    for layer in encoder_layers(model):
        w_in, w_out = layer.intermediate.dense.weight.detach(), layer.output.dense.weight.detach()
        score = w_in.norm(dim=1) * w_out.norm(dim=0)
        keep = torch.sort(torch.topk(score, keep_count).indices).values
        layer.intermediate.dense = _slice_linear(layer.intermediate.dense, keep, dim=0)
        layer.output.dense = _slice_linear(layer.output.dense, keep, dim=1)
    model.config.intermediate_size = keep_count
    return {"method": "neurons", "intermediate_size_before": before, "intermediate_size_after": keep_count,
            "amount": round(1 - keep_count / before, 6)}


# --- layers ----------------------------------------------------------------------

def keep_layers(model, indices: list[int]) -> None:
    """Keep only these encoder layers, in order (also how a distillation
    student is cut from its teacher)."""
    layers = encoder_layers(model)
    kept = torch.nn.ModuleList([layers[i] for i in indices])
    for position, layer in enumerate(kept):
        for module in layer.modules():  # attention caches index layers by position
            if hasattr(module, "layer_idx"):
                module.layer_idx = position
    model.base_model.encoder.layer = kept
    model.config.num_hidden_layers = len(indices)


def evenly_spaced(total: int, keep: int) -> list[int]:
    """`keep` of `total` layers, spread out and ending with the last one
    (6 → 3: layers 1, 3, 5), as DistilBERT-style students are initialised."""
    if not 1 <= keep <= total:
        raise ValueError(f"keep between 1 and {total} layers")
    return sorted({round((i + 1) * total / keep) - 1 for i in range(keep)})


def layer_drop_order(model, evaluate: Callable[[torch.nn.Module], float] | None, count: int) -> list[int]:
    """Which layers to drop first. With data: greedily the one whose removal
    costs the least accuracy, then the next given that; without: every other
    layer from the top (evenly spaced survivors)."""
    import copy

    total = len(encoder_layers(model))
    if evaluate is None:
        survivors = evenly_spaced(total, total - count)
        return [i for i in reversed(range(total)) if i not in survivors]
    dropped: list[int] = []
    for _ in range(count):
        best = None
        for candidate in (i for i in range(total) if i not in dropped):
            trial = copy.deepcopy(model)
            keep_layers(trial, [i for i in range(total) if i not in (*dropped, candidate)])
            score = evaluate(trial)
            if best is None or score > best[0]:
                best = (score, candidate)
        dropped.append(best[1])
    return dropped


def prune_layers(model, amount: float, *, drop_order: list[int] | None = None) -> dict:
    total = len(encoder_layers(model))
    count = min(total - 1, int(round(amount * total)))
    order = (drop_order or layer_drop_order(model, None, count))[:count]
    kept = [i for i in range(total) if i not in order]
    keep_layers(model, kept)
    return {"method": "layers", "layers_before": total, "layers_kept": kept, "layers_removed": sorted(order),
            "amount": round(count / total, 6)}


def amount_grid(model, method: str) -> list[float]:
    """The amounts a search may try for this method, ascending (5 % steps for
    weights and neurons; whole layers; about 20 steps of heads)."""
    if method == "layers":
        total = len(encoder_layers(model))
        return [k / total for k in range(1, total)]
    if method == "heads":
        layers = len(encoder_layers(model))
        total = layers * model.config.num_attention_heads
        step = max(1, total // 20)
        return [k / total for k in range(step, total - layers + 1, step)]
    return [round(0.05 * k, 2) for k in range(1, 20)]
