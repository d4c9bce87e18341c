"""How a chat fine-tune is measured: validation loss and perplexity on the trained tokens, and what the
model says — greedy replies to held-back prompts scored by exact match and token-F1 against the reference
reply, with SQuAD's normalisation (lower case, no punctuation, no articles, single spaces)."""
from __future__ import annotations

import contextlib
import math
import re
import string
from collections import Counter

import torch
import torch.nn.functional as F

from .batches import make_batch
from .data import IGNORE_INDEX, ChatEncoder, EncodedConversation, SkipConversation

# Architectures whose logits are exactly lm_head(decoder output) (no soft-capping, no scaling): the loss then
# runs the head on the trained positions only (on SmolLM2-135M the head is a fifth of the model's compute).
PLAIN_HEAD_MODEL_TYPES = frozenset({"llama", "mistral", "qwen2", "qwen3", "smollm3", "olmo2", "phi3"})


def autocast(device: torch.device, precision: str):
    if precision in ("bf16", "fp16"):
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)
    return contextlib.nullcontext()


def causal_lm(model):
    """The transformers model under a peft wrapper (LoRA layers injected), or the model itself."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def summed_token_loss(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Cross-entropy summed over the trained tokens (labels != -100, each predicted from the token
    before it), in float32. The caller divides by the tokens of the whole optimizer step, so every trained
    token weighs the same whatever the batch, accumulation or layout (TRL's and transformers'
    `num_items_in_batch` normalisation)."""
    # use_cache=False: with a cache transformers ignores the packed layout of the position ids (and
    # packed conversations would attend to each other); training never needs one anyway.
    inputs = {**{k: v for k, v in batch.items() if k != "labels"}, "use_cache": False}
    targets = batch["labels"][:, 1:]
    keep = targets != IGNORE_INDEX
    lm = causal_lm(model)
    if lm.config.model_type in PLAIN_HEAD_MODEL_TYPES:
        hidden = lm.get_decoder()(**inputs).last_hidden_state[:, :-1]
        logits = lm.get_output_embeddings()(hidden[keep])
    else:
        logits = model(**inputs).logits[:, :-1][keep]
    return F.cross_entropy(logits.float(), targets[keep], reduction="sum")


def validation_loss(model, examples: list[EncodedConversation], *, batch_size: int, pad_token_id: int, device,
                    precision: str) -> dict[str, float]:
    """Mean loss per trained token over the validation conversations, and its perplexity."""
    if not examples:
        return {}
    was_training = model.training
    model.eval()
    order = sorted(range(len(examples)), key=lambda i: len(examples[i]))
    total, tokens = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(order), batch_size):
            chunk = order[start:start + batch_size]
            batch = {k: v.to(device) for k, v in make_batch(examples, chunk, pad_token_id, packing=False, capacity=0).items()}
            with autocast(device, precision):
                total += float(summed_token_loss(model, batch))
            tokens += sum(examples[i].trained_tokens for i in chunk)
    model.train(was_training)
    loss = total / max(1, tokens)
    return {"eval_loss": loss, "perplexity": math.exp(min(loss, 50.0)), "eval_tokens": float(tokens)}


# --- what the model says ------------------------------------------------------------------------------

def normalize_answer(text: str) -> str:
    """SQuAD v1.1's normalisation."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def exact_match(prediction: str, reference: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(reference))


def token_f1(prediction: str, reference: str) -> float:
    predicted, expected = normalize_answer(prediction).split(), normalize_answer(reference).split()
    if not predicted or not expected:
        return float(predicted == expected)
    common = sum((Counter(predicted) & Counter(expected)).values())
    if not common:
        return 0.0
    precision, recall = common / len(predicted), common / len(expected)
    return 2 * precision * recall / (precision + recall)


def generation_prompts(conversations: list[list[dict]], encoder: ChatEncoder, limit: int) -> list[dict]:
    """Up to `limit` conversations (file order) as {"index", "prompt" (turns before the last assistant
    message), "reference" (that message), "prompt_ids"}."""
    out = []
    for index, messages in enumerate(conversations):
        if len(out) >= limit:
            break
        assistants = [i for i, m in enumerate(messages) if m["role"] == "assistant"]
        if not assistants or assistants[-1] == 0:
            continue
        last = assistants[-1]
        try:
            prompt_ids = encoder.prompt_ids(messages)
        except SkipConversation:  # a conversation the template refuses has no prompt either (counted when encoding)
            continue
        out.append({"index": index, "prompt": messages[:last], "reference": messages[last]["content"],
                    "prompt_ids": prompt_ids})
    return out


def max_new_tokens_for(prompts: list[dict], tokenizer, requested: int | None) -> int:
    if requested:
        return requested
    longest = max((len(tokenizer(p["reference"], add_special_tokens=False)["input_ids"]) for p in prompts), default=0)
    return max(16, min(256, longest + 16))


def generate_replies(model, tokenizer, prompts: list[dict], *, max_new_tokens: int, stop_ids: list[int],
                     pad_token_id: int, device, precision: str, batch_size: int) -> list[str]:
    """Greedy replies, batched with left padding, decoded without special tokens."""
    from transformers import GenerationConfig

    config = GenerationConfig(do_sample=False, max_new_tokens=max_new_tokens, eos_token_id=stop_ids or None,
                              pad_token_id=pad_token_id)
    was_training = model.training
    model.eval()
    replies = [""] * len(prompts)
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]["prompt_ids"]))
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            chunk = order[start:start + batch_size]
            longest = max(len(prompts[i]["prompt_ids"]) for i in chunk)
            input_ids = torch.full((len(chunk), longest), pad_token_id, dtype=torch.long)
            attention_mask = torch.zeros((len(chunk), longest), dtype=torch.long)
            for row, i in enumerate(chunk):
                ids = prompts[i]["prompt_ids"]
                input_ids[row, longest - len(ids):] = torch.tensor(ids)
                attention_mask[row, longest - len(ids):] = 1
            with autocast(device, precision):
                output = model.generate(input_ids=input_ids.to(device), attention_mask=attention_mask.to(device),
                                        generation_config=config)
            for row, i in enumerate(chunk):
                replies[i] = tokenizer.decode(output[row, longest:], skip_special_tokens=True).strip()
    model.train(was_training)
    return replies


def score_replies(replies: list[str], prompts: list[dict]) -> dict[str, float]:
    if not prompts:
        return {}
    return {"exact_match": sum(exact_match(r, p["reference"]) for r, p in zip(replies, prompts)) / len(prompts),
            "token_f1": sum(token_f1(r, p["reference"]) for r, p in zip(replies, prompts)) / len(prompts)}
