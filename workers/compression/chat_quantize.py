"""int8 quantization of a chat model (a causal LM from a chat fine-tune), free of Django.

The path: PyTorch's `torch.ao.quantization.quantize_dynamic` on every `nn.Linear` of the decoder (the attention
and MLP projections; the LM head too unless it is tied to the embeddings, which then stay fp32 and tied). The
weights are stored as int8 with their scale and zero point (`quantize.save_int8`, safetensors, never pickle);
activations are quantized on the fly per batch by the int8 kernels, so memory and disk hold int8 weights and
the matmuls run in int8. Why this path and not torchao: docs/chat.md ("int8 chat models").

One harness measures the source and the int8 model on the same machine and settings: size on disk,
parameters, validation loss and perplexity on the trained (assistant) tokens (workers/chat/evaluation.py),
greedy replies to up to `generation_prompts` held-back prompts scored by exact match and token F1, and
generation speed in new tokens/s at batch 1 and 8 (a fixed number of new tokens per reply, median of
`repeats` timed passes after an untimed one).

The guard, for chat models: `max_accuracy_drop` is the largest acceptable perplexity increase in percent of the
source's validation perplexity; when every reference reply is short (at most SHORT_REFERENCE_TOKENS tokens: a
label, a short answer) the exact-match drop, in points, must be within the same number too.
"""
from __future__ import annotations

import json
import os
import shutil
import statistics
import time

import torch

from ..archive import zip_folder
from ..cards import archive_files
from ..chat.data import ChatEncoder, encode_conversations, read_conversations
from ..chat.evaluation import generate_replies, generation_prompts, max_new_tokens_for, score_replies, validation_loss
from ..chat.train import pad_token_id_of
from ..reporting import Reporter
from .chat_card import chat_int8_card
from .measure import folder_size, parameter_counts
from .quantize import deprecation_quiet, save_int8

SHORT_REFERENCE_TOKENS = 32
SPEED_BATCHES = (1, 8)


def quantizable_linears(model) -> list[str]:
    """Every nn.Linear but an LM head tied to the input embeddings (quantizing it would untie them and store the
    embedding matrix twice)."""
    head = model.get_output_embeddings()
    tied = head is not None and head.weight is model.get_input_embeddings().weight
    return [name for name, module in model.named_modules()
            if isinstance(module, torch.nn.Linear) and not (tied and module is head)]


def quantize_chat_int8(model, layers: list[str]):
    """The model with `layers` (module names) replaced by dynamic int8 Linear layers (in place)."""
    model = model.to("cpu").eval()
    with deprecation_quiet():
        qconfig = torch.ao.quantization.default_dynamic_qconfig
        return torch.ao.quantization.quantize_dynamic(model, {name: qconfig for name in layers}, dtype=torch.qint8)


def load_chat_int8(folder: str):
    """The int8 chat model saved by `save_int8` (the same steps as the model card's code)."""
    from safetensors.torch import load_file
    from transformers import AutoConfig, AutoModelForCausalLM, GenerationConfig

    from .quantize import QUANT_CONFIG, QUANT_FILE

    config = AutoConfig.from_pretrained(folder)
    with open(os.path.join(folder, QUANT_CONFIG)) as fh:
        layers = json.load(fh)["layers"]
    tensors = load_file(os.path.join(folder, QUANT_FILE))
    model = quantize_chat_int8(AutoModelForCausalLM.from_config(config).eval(), layers)
    modules = dict(model.named_modules())
    with deprecation_quiet():
        for name in layers:
            ints = tensors.pop(f"{name}.weight.int8")
            scale, zero_point = float(tensors.pop(f"{name}.weight.scale")), int(tensors.pop(f"{name}.weight.zero_point"))
            weight = torch.quantize_per_tensor((ints.float() - zero_point) * scale, scale, zero_point, torch.qint8)
            modules[name].set_weight_bias(weight, tensors.pop(f"{name}.bias", None))
    with torch.no_grad():
        for key, value in tensors.items():
            owner, _, attribute = key.rpartition(".")
            getattr(model.get_submodule(owner), attribute).copy_(value)
    model.generation_config = GenerationConfig.from_pretrained(folder)
    return model


# --- the harness ----------------------------------------------------------------------------------------

def _left_padded(prompts: list[dict], count: int, pad_token_id: int) -> dict:
    """`count` prompts (cycled when there are fewer), left-padded into one batch."""
    chosen = [prompts[i % len(prompts)]["prompt_ids"] for i in range(count)]
    longest = max(len(ids) for ids in chosen)
    input_ids = torch.full((count, longest), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((count, longest), dtype=torch.long)
    for row, ids in enumerate(chosen):
        input_ids[row, longest - len(ids):] = torch.tensor(ids)
        attention_mask[row, longest - len(ids):] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask}


def generation_speed(model, prompts: list[dict], *, batch_size: int, new_tokens: int, pad_token_id: int,
                     repeats: int = 3) -> dict:
    """New tokens per second generating exactly `new_tokens` greedy tokens for each of `batch_size` prompts:
    one untimed pass, then the median (and min–max) of `repeats` timed ones."""
    from transformers import GenerationConfig

    config = GenerationConfig(do_sample=False, max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                              pad_token_id=pad_token_id, eos_token_id=None)
    batch = _left_padded(prompts, batch_size, pad_token_id)
    passes = []
    with torch.inference_mode():
        for attempt in range(max(1, repeats) + 1):
            started = time.perf_counter()
            output = model.generate(**batch, generation_config=config)
            seconds = time.perf_counter() - started
            if attempt:
                passes.append((output.shape[1] - batch["input_ids"].shape[1]) * batch_size / seconds)
    return {"tokens_per_second": round(statistics.median(passes), 2), "min": round(min(passes), 2),
            "max": round(max(passes), 2), "passes": len(passes)}


def measure_chat(model, tokenizer, *, validation, prompts, stop_ids, pad_token_id, saved_folder, max_new_tokens,
                 speed_tokens, repeats, eval_batch_size: int = 8) -> dict:
    """Every measure of the report, for one model (the source or the int8 one)."""
    device = torch.device("cpu")
    model.eval()
    losses = validation_loss(model, validation, batch_size=eval_batch_size, pad_token_id=pad_token_id, device=device,
                             precision="fp32")
    replies = generate_replies(model, tokenizer, prompts, max_new_tokens=max_new_tokens, stop_ids=stop_ids,
                               pad_token_id=pad_token_id, device=device, precision="fp32", batch_size=eval_batch_size)
    counts = parameter_counts(model)
    speeds = {b: generation_speed(model, prompts, batch_size=b, new_tokens=speed_tokens, pad_token_id=pad_token_id,
                                  repeats=repeats) for b in SPEED_BATCHES} if prompts else {}
    out = {"size_bytes": folder_size(saved_folder), "parameters": counts["total"],
           "eval_loss": round(losses["eval_loss"], 5), "perplexity": round(losses["perplexity"], 5),
           "eval_tokens": int(losses["eval_tokens"]), **{k: round(v, 5) for k, v in score_replies(replies, prompts).items()},
           "prompts": len(prompts), "threads": torch.get_num_threads()}
    for b, speed in speeds.items():
        out[f"tokens_per_second_batch{b}"] = speed["tokens_per_second"]
        out[f"tokens_per_second_batch{b}_range"] = [speed["min"], speed["max"]]
    return out, replies


def chat_compare(before: dict, after: dict) -> dict:
    def ratio(a, b):
        return round(a / b, 4) if a and b else None

    out = {"size_ratio": ratio(after["size_bytes"], before["size_bytes"]),
           "perplexity_increase_percent": round(100 * (after["perplexity"] / before["perplexity"] - 1), 3),
           "eval_loss_change": round(after["eval_loss"] - before["eval_loss"], 5)}
    for b in SPEED_BATCHES:
        key = f"tokens_per_second_batch{b}"
        if key in before:
            out[f"speedup_batch{b}"] = ratio(after[key], before[key])
    if "exact_match" in before:
        out["exact_match_change_points"] = round(100 * (after["exact_match"] - before["exact_match"]), 3)
        out["token_f1_change_points"] = round(100 * (after["token_f1"] - before["token_f1"]), 3)
    return out


def chat_guard(ratios: dict, *, max_drop: float, short_references: bool) -> dict:
    """max_drop read for chat: the largest perplexity increase in percent; with short references, also the
    largest exact-match drop in points."""
    increase = ratios["perplexity_increase_percent"]
    em_drop = -ratios["exact_match_change_points"] if short_references and "exact_match_change_points" in ratios else None
    passed = increase <= max_drop and (em_drop is None or em_drop <= max_drop)
    guard = {"measure": "perplexity increase (%)" + (" and exact-match drop (points)" if em_drop is not None else ""),
             "max_accuracy_drop": max_drop, "perplexity_increase_percent": increase,
             "exact_match_drop_points": None if em_drop is None else round(em_drop, 3), "passed": passed}
    if not passed:
        parts = []
        if increase > max_drop:
            parts.append(f"validation perplexity rose {increase}%")
        if em_drop is not None and em_drop > max_drop:
            parts.append(f"exact match dropped {round(em_drop, 3)} points")
        guard["failure"] = (f"Accuracy guard failed (chat model): {' and '.join(parts)}, more than the {max_drop} "
                            "allowed (max_accuracy_drop is the largest perplexity increase in percent for chat models, "
                            "and the largest exact-match drop in points when the reference replies are short). "
                            "The int8 model is kept for inspection.")
    return guard


# --- the job ----------------------------------------------------------------------------------------------

def run_chat_quantize(spec, reporter: Reporter) -> dict:
    """`spec`: run.CompressionSpec with task "chat" and kind "quantize"."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    if spec.kind != "quantize":
        raise ValueError(f"{spec.kind} is not supported for chat models yet; quantize is.")
    if spec.threads:
        torch.set_num_threads(spec.threads)
    source = spec.source_model_dir
    tokenizer = AutoTokenizer.from_pretrained(source)
    model = AutoModelForCausalLM.from_pretrained(source, use_safetensors=True, dtype=torch.float32).eval()
    try:
        generation_config = GenerationConfig.from_pretrained(source)
    except OSError:
        generation_config = GenerationConfig.from_model_config(model.config)
    encoder = ChatEncoder(tokenizer, max_length=spec.max_length)
    conversations = read_conversations(spec.eval_file)
    encoded = encode_conversations(conversations, encoder)
    if not encoded.examples:
        raise ValueError("The evaluation split has no usable conversation (none with a trained assistant reply).")
    prompts = generation_prompts(conversations, encoder, spec.generation_prompts)
    max_new_tokens = max_new_tokens_for(prompts, tokenizer, None)
    reference_tokens = [len(tokenizer(p["reference"], add_special_tokens=False)["input_ids"]) for p in prompts]
    short_references = bool(prompts) and max(reference_tokens) <= SHORT_REFERENCE_TOKENS
    pad_id = pad_token_id_of(tokenizer)
    stop_ids = sorted({*encoder.end_of_turn_ids(), *([tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else [])})
    common = dict(validation=encoded.examples, prompts=prompts, stop_ids=stop_ids, pad_token_id=pad_id,
                  max_new_tokens=max_new_tokens, speed_tokens=spec.speed_tokens, repeats=3)

    reporter.progress(step=0, total_steps=3, epoch=0.0)
    before, before_replies = measure_chat(model, tokenizer, saved_folder=source, **common)
    reporter.event(level="info", message=f"Measured the source model: perplexity {before['perplexity']:.4g}"
                   + (f", {before.get('tokens_per_second_batch1')} tokens/s at batch 1." if prompts else "."))
    if reporter.should_stop():
        return {"stopped": reporter.should_stop()}
    reporter.progress(step=1, total_steps=3, epoch=0.33)

    layers = quantizable_linears(model)
    quantized = quantize_chat_int8(model, layers)
    model_dir = os.path.join(spec.output_dir, "model")
    shutil.rmtree(model_dir, ignore_errors=True)
    quantized.config.use_cache = True
    save_int8(quantized, tokenizer, model_dir)  # config, tokenizer with its chat template, int8 weights
    generation_config.save_pretrained(model_dir)
    reloaded = load_chat_int8(model_dir)  # measured as downloaded: the saved files, loaded back
    after, after_replies = measure_chat(reloaded, tokenizer, saved_folder=model_dir, **common)
    reporter.progress(step=2, total_steps=3, epoch=0.66)

    ratios = chat_compare(before, after)
    guard = chat_guard(ratios, max_drop=spec.max_accuracy_drop, short_references=short_references)
    examples = [{"index": p["index"], "prompt": p["prompt"], "reference": p["reference"], "source": b, "int8": a}
                for p, b, a in zip(prompts, before_replies, after_replies)]
    report = {"kind": "quantize", "task": "chat", "method": "dynamic_int8", "layers_quantized": len(layers),
              "lm_head": "int8" if "lm_head" in layers else "fp32 (tied to the embeddings)",
              "before": before, "after": after, "ratios": ratios, "guard": guard,
              "generation": {"prompts": len(prompts), "max_new_tokens": max_new_tokens, "decoding": "greedy",
                             "short_references": short_references, "speed_new_tokens": spec.speed_tokens},
              "data": encoded.summary()}
    card_context = dict(report=report, max_new_tokens=max_new_tokens, facts=spec.card)
    with open(os.path.join(model_dir, "README.md"), "w") as fh:
        fh.write(chat_int8_card(archive="model.zip", files=archive_files(model_dir), **card_context))
    with open(os.path.join(spec.output_dir, "README.md"), "w") as fh:
        fh.write(chat_int8_card(archive=None, files=None, **card_context))
    report_path = os.path.join(spec.output_dir, "compression_report.json")
    with open(report_path, "w") as fh:
        json.dump(report, fh, indent=1)
    generations_path = os.path.join(spec.output_dir, "generations.json")
    with open(generations_path, "w") as fh:
        json.dump(examples, fh, indent=1, ensure_ascii=False)
    reporter.metrics(step=3, epoch=1.0, values={
        "perplexity": after["perplexity"], "perplexity_before": before["perplexity"], "eval_loss": after["eval_loss"],
        **({"exact_match": after["exact_match"], "exact_match_before": before["exact_match"]} if prompts else {})})
    reporter.artifact(name="model.zip", path=zip_folder(model_dir, os.path.join(spec.output_dir, "model.zip")), kind="model")
    reporter.artifact(name="compression_report.json", path=report_path, kind="report")
    reporter.artifact(name="generations.json", path=generations_path, kind="report")
    reporter.artifact(name="README.md", path=os.path.join(spec.output_dir, "README.md"), kind="model_card")
    reporter.progress(step=3, total_steps=3, epoch=1.0)
    return report
