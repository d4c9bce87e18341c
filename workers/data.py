"""Tokenized examples, length-grouped batches and dynamic padding."""
from __future__ import annotations

import json
import random

import torch


def read_jsonl(path: str) -> list[dict]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def encode(rows: list[dict], tokenizer, task: str, label_ids: dict[str, int], max_length: int) -> list[dict]:
    if not rows:  # the tokenizers refuse an empty batch
        return []
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


# The carved test split's own seed: a different draw from the validation split's (the dataset's seed),
# so the two carvings are independent, and the same rows for every job with the same fraction.
TEST_CARVE_SEED = 2077


def _text_key(row: dict) -> str:
    return json.dumps([row.get("text"), row.get("text_a"), row.get("text_b")], ensure_ascii=False)


def without_texts(rows: list[dict], held_out: list[dict]) -> list[dict]:
    """`rows` less every row whose text is one of `held_out`'s (the same key carve_test keeps on one side)."""
    texts = {_text_key(row) for row in held_out}
    return [row for row in rows if _text_key(row) not in texts]


def carve_test(rows: list[dict], fraction: float, *, seed: int = TEST_CARVE_SEED) -> tuple[list[dict], list[dict]]:
    """(rest, test): about `fraction` of each label's rows held out as a test split, a pure
    function of (rows, fraction, seed) so every attempt of a job carves the same rows. Rows with
    the same text stay on one side (a test text never appears in training); a label with a single
    distinct text stays in training. The order of `rest` is the input's."""
    groups: dict[str, list[int]] = {}
    for index, row in enumerate(rows):
        groups.setdefault(_text_key(row), []).append(index)
    by_label: dict[str, list[list[int]]] = {}
    for members in groups.values():
        by_label.setdefault(str(rows[members[0]]["label"]), []).append(members)
    rng = random.Random(seed)
    held: set[int] = set()
    for label in sorted(by_label):
        label_groups = by_label[label]
        if len(label_groups) < 2:
            continue
        rng.shuffle(label_groups)
        wanted = round(sum(len(g) for g in label_groups) * fraction)
        taken = 0
        for members in label_groups[:-1]:  # at least one text of the label stays in training
            if taken >= wanted:
                break
            held.update(members)
            taken += len(members)
    rest = [row for i, row in enumerate(rows) if i not in held]
    test = [row for i, row in enumerate(rows) if i in held]
    return rest, test
