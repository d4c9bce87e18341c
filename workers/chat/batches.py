"""Batches of encoded conversations, in one of two layouts of the same conversations:

- padded (the default, measured faster here: docs/chat.md): one row per conversation, padded to the
  longest of the batch; the batches are length-grouped (workers/data.epoch_batches), so little is padding.
- packed: the batch's conversations laid end to end in rows of at most `max_length` tokens (first-fit
  decreasing), no padding but the rows' tails; position ids restart at 0 for each conversation and no
  attention mask is passed, so transformers builds a block-diagonal causal mask from the position ids
  (masking_utils.find_packed_sequence_indices, which it does only without a KV cache: the loss passes
  use_cache=False): a conversation attends to itself only, and its loss is the one it has alone
  (tests/workers/test_chat_data.py checks it).

Which conversations form a batch is the same in both (the order is a pure function of seed and epoch, so
a resumed run replays it), so a step trains on the same tokens either way.
"""
from __future__ import annotations

import torch

from ..data import epoch_batches
from .data import IGNORE_INDEX, EncodedConversation


def epoch_order(examples: list[EncodedConversation], batch_size: int, *, seed: int, epoch: int,
                group_by_length: bool) -> list[list[int]]:
    """The fine-tune's sampler (workers/data.epoch_batches): shuffled, length-grouped in mega-batches,
    a pure function of (seed, epoch)."""
    return epoch_batches([{"input_ids": e.input_ids} for e in examples], batch_size, seed=seed, epoch=epoch,
                         group_by_length=group_by_length)


def padded_batch(examples: list[EncodedConversation], indices: list[int], pad_token_id: int) -> dict[str, torch.Tensor]:
    longest = max(len(examples[i]) for i in indices)
    input_ids = torch.full((len(indices), longest), pad_token_id, dtype=torch.long)
    labels = torch.full((len(indices), longest), IGNORE_INDEX, dtype=torch.long)
    attention_mask = torch.zeros((len(indices), longest), dtype=torch.long)
    for row, i in enumerate(indices):
        n = len(examples[i])
        input_ids[row, :n] = torch.tensor(examples[i].input_ids)
        labels[row, :n] = torch.tensor(examples[i].labels)
        attention_mask[row, :n] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


def pack_rows(lengths: list[int], capacity: int) -> list[list[int]]:
    """First-fit decreasing: positions into `lengths`, grouped into rows of at most `capacity` tokens."""
    rows: list[list[int]] = []
    room: list[int] = []
    for position in sorted(range(len(lengths)), key=lambda p: -lengths[p]):
        for r, free in enumerate(room):
            if lengths[position] <= free:
                rows[r].append(position)
                room[r] -= lengths[position]
                break
        else:
            rows.append([position])
            room.append(capacity - lengths[position])
    return rows


def packed_batch(examples: list[EncodedConversation], indices: list[int], pad_token_id: int,
                 capacity: int) -> dict[str, torch.Tensor]:
    rows = [[indices[p] for p in row] for row in pack_rows([len(examples[i]) for i in indices], capacity)]
    width = max(sum(len(examples[i]) for i in row) for row in rows)
    input_ids = torch.full((len(rows), width), pad_token_id, dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
    position_ids = torch.zeros((len(rows), width), dtype=torch.long)
    for r, row in enumerate(rows):
        at = 0
        for i in row:
            n = len(examples[i])
            input_ids[r, at:at + n] = torch.tensor(examples[i].input_ids)
            labels[r, at:at + n] = torch.tensor(examples[i].labels)
            position_ids[r, at:at + n] = torch.arange(n)
            at += n
        position_ids[r, at:] = torch.arange(width - at)  # the tail: a segment of its own, never trained
    return {"input_ids": input_ids, "position_ids": position_ids, "labels": labels}


def make_batch(examples, indices, pad_token_id: int, *, packing: bool, capacity: int) -> dict[str, torch.Tensor]:
    if packing:
        return packed_batch(examples, indices, pad_token_id, capacity)
    return padded_batch(examples, indices, pad_token_id)
