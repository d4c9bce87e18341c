"""Tokenized examples, length-grouped batches and dynamic padding."""
from __future__ import annotations

import json
import random

import torch


def read_jsonl(path: str) -> list[dict]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def encode(rows: list[dict], tokenizer, task: str, label_ids: dict[str, int], max_length: int) -> list[dict]:
    if task == "text_pair_classification":
        enc = tokenizer([r["text_a"] for r in rows], [r["text_b"] for r in rows], truncation=True, max_length=max_length)
    else:
        enc = tokenizer([r["text"] for r in rows], truncation=True, max_length=max_length)
    out = []
    for i, row in enumerate(rows):
        example = {key: enc[key][i] for key in enc.keys()}
        example["labels"] = label_ids[row["label"]]
        out.append(example)
    return out


def epoch_batches(examples: list[dict], batch_size: int, *, seed: int, epoch: int, group_by_length: bool) -> list[list[int]]:
    """The batches of one epoch, a pure function of (seed, epoch), so a resumed
    run replays exactly the same order. Length grouping (as transformers'
    LengthGroupedSampler): shuffle, cut into mega-batches of 50 batches, sort each
    by length, split, then shuffle the batch order."""
    rng = random.Random(seed * 1_000_003 + epoch)
    indices = list(range(len(examples)))
    rng.shuffle(indices)
    if group_by_length:
        mega = batch_size * 50
        ordered = []
        for start in range(0, len(indices), mega):
            chunk = indices[start:start + mega]
            chunk.sort(key=lambda i: len(examples[i]["input_ids"]), reverse=True)
            ordered.extend(chunk)
        indices = ordered
    batches = [indices[i:i + batch_size] for i in range(0, len(indices), batch_size)]
    if group_by_length:
        rng.shuffle(batches)
    return batches


def collate(examples: list[dict], indices: list[int], pad_token_id: int) -> dict[str, torch.Tensor]:
    """Pad to the longest example in the batch (dynamic padding)."""
    longest = max(len(examples[i]["input_ids"]) for i in indices)
    batch = {}
    keys = [k for k in examples[indices[0]] if k != "labels"]
    for key in keys:
        pad = pad_token_id if key == "input_ids" else 0
        batch[key] = torch.tensor([examples[i][key] + [pad] * (longest - len(examples[i][key])) for i in indices],
                                  dtype=torch.long)
    batch["labels"] = torch.tensor([examples[i]["labels"] for i in indices], dtype=torch.long)
    return batch
