"""The model card of an int8 chat model (kind quantize on a chat fine-tune), by workers/cards.py's rules:
the code starts from `folder = "."`, needs torch, safetensors and transformers only, runs offline on the
unzipped archive (the tests run it) and generates a reply with the chat template the model was trained with."""
from __future__ import annotations

from .. import cards
from ..chat.card import _chat_lines
from .cards import INT8_CONFIG, INT8_FILE


def chat_int8_code(max_new_tokens: int) -> str:
    return f'''import json
import warnings

import torch
from safetensors.torch import load_file
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, GenerationConfig

folder = "."  # the folder model.zip was unzipped into ({INT8_FILE} is at its top level)
config = AutoConfig.from_pretrained(folder)
with open(f"{{folder}}/{INT8_CONFIG}") as fh:
    layers = json.load(fh)["layers"]  # the Linear layers stored in int8
tensors = load_file(f"{{folder}}/{INT8_FILE}")
with warnings.catch_warnings():
    # torch 2.13 deprecates its int8 tensors (torch.ao.quantization) in favour of torchao; these public calls
    # work until torch removes them (docs: "int8 chat models").
    warnings.filterwarnings("ignore", "torch.ao.quantization is deprecated", DeprecationWarning)
    warnings.filterwarnings("ignore", "torch.quantize_per_tensor, torch.quantize_per_channel", UserWarning)
    qconfig = torch.ao.quantization.default_dynamic_qconfig
    model = torch.ao.quantization.quantize_dynamic(
        AutoModelForCausalLM.from_config(config).eval(), {{name: qconfig for name in layers}}, dtype=torch.qint8)
    modules = dict(model.named_modules())
    for name in layers:  # int8 values, scale and zero point of each Linear layer
        ints = tensors.pop(f"{{name}}.weight.int8")
        scale, zero_point = float(tensors.pop(f"{{name}}.weight.scale")), int(tensors.pop(f"{{name}}.weight.zero_point"))
        weight = torch.quantize_per_tensor((ints.float() - zero_point) * scale, scale, zero_point, torch.qint8)
        modules[name].set_weight_bias(weight, tensors.pop(f"{{name}}.bias", None))
with torch.no_grad():  # the rest (embeddings, norms) in fp32
    for key, value in tensors.items():
        owner, _, attribute = key.rpartition(".")
        getattr(model.get_submodule(owner), attribute).copy_(value)
model.generation_config = GenerationConfig.from_pretrained(folder)  # stops at the end-of-turn token
tokenizer = AutoTokenizer.from_pretrained(folder)  # with the chat template the model was trained with
{_chat_lines(max_new_tokens)}'''


ROWS = (("size on disk (bytes)", "size_bytes"), ("validation loss (per trained token)", "eval_loss"),
        ("perplexity", "perplexity"), ("exact match", "exact_match"), ("token F1", "token_f1"),
        ("new tokens/s, batch 1", "tokens_per_second_batch1"), ("new tokens/s, batch 8", "tokens_per_second_batch8"))


def _table(report: dict) -> str:
    before, after = report["before"], report["after"]
    lines = ["| measure | source | int8 |", "| --- | --- | --- |"]
    lines += [f"| {label} | {before[key]} | {after[key]} |" for label, key in ROWS if key in before and key in after]
    return "\n".join(lines)


def chat_int8_card(*, report: dict, archive: str | None, files: list[str] | None, max_new_tokens: int,
                   facts: dict | None) -> str:
    facts = facts or {}
    base = facts.get("base_model")
    guard = report["guard"]
    verdict = "passed" if guard["passed"] else "FAILED"
    base_section = "\n".join(f"- {line}" for line in cards.base_model_lines(base)) or "- Base model: not recorded."
    tail = cards.files_section(archive, files) if archive else (
        "## Downloads\n\n`model.zip`: the int8 model with its tokenizer, chat template and generation config; "
        "`compression_report.json`: every number above; `generations.json`: the replies of both models.\n")
    license_line = f"license: {base['license']}\n" if base and base.get("license") else ""
    return f"""---
{license_line}library_name: transformers
pipeline_tag: text-generation
tags:
- lathe
- chat
- int8
---

# Chat model: int8 quantization

The fine-tuned chat model with its {report['layers_quantized']} Linear layers stored in int8 (per-tensor scale and
zero point; activations quantized on the fly, PyTorch dynamic int8, CPU); embeddings and norms in fp32; LM head
{report['lm_head']}.

{base_section}

## Measured (same machine, same settings, {report['before']['threads']} threads)

{_table(report)}

Perplexity on the validation split's assistant tokens; replies to {report['generation']['prompts']} held-back
prompts, greedy, at most {report['generation']['max_new_tokens']} new tokens; tokens/s generating
{report['generation']['speed_new_tokens']} new tokens per reply. Guard ({guard['measure']}, at most
{guard['max_accuracy_drop']}): perplexity +{guard['perplexity_increase_percent']}% — {verdict}.

## Use (needs torch, safetensors and transformers; CPU)

```python
{chat_int8_code(max_new_tokens)}```

`reply` is the model's answer.

{tail}"""
