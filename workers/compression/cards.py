"""The model cards of compression jobs (the rules are workers/cards.py's): one
card per archive, whose numbers, loading code and file list are that archive's
own; the README.md artifact covers every download of the job."""
from __future__ import annotations

from .. import cards
from .measure import spread

ONNX_FILE, INT8_FILE, INT8_CONFIG = "model.int8.onnx", "model.int8.safetensors", "quantization.json"


def onnx_code(*, task: str, max_length: int) -> str:
    return f'''import numpy as np
import onnxruntime as ort
from transformers import AutoConfig, AutoTokenizer  # tokenizer and labels only: no PyTorch needed

folder = "."  # the folder model-onnx-int8.zip was unzipped into ({ONNX_FILE} is at its top level)
session = ort.InferenceSession(f"{{folder}}/{ONNX_FILE}", providers=["CPUExecutionProvider"])
tokenizer = AutoTokenizer.from_pretrained(folder)
id2label = AutoConfig.from_pretrained(folder).id2label
inputs = {cards.tokenize_call(task, max_length, "np")}
names = {{i.name for i in session.get_inputs()}}
logits = session.run(["logits"], {{k: v.astype(np.int64) for k, v in inputs.items() if k in names}})[0]
label = id2label[int(logits.argmax(-1)[0])]
'''


def torch_int8_code(*, task: str, max_length: int) -> str:
    return f'''import json
import warnings

import torch
from safetensors.torch import load_file
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

folder = "."  # the folder model.zip was unzipped into ({INT8_FILE} is at its top level)
config = AutoConfig.from_pretrained(folder)
with open(f"{{folder}}/{INT8_CONFIG}") as fh:
    layers = json.load(fh)["layers"]
tensors = load_file(f"{{folder}}/{INT8_FILE}")
with warnings.catch_warnings():
    # torch 2.13 deprecates its int8 tensors (torch.ao.quantization) in favour of torchao, whose CPU int8
    # is slower than fp32 without torch.compile; these public calls work until torch removes them.
    warnings.filterwarnings("ignore", "torch.ao.quantization is deprecated", DeprecationWarning)
    warnings.filterwarnings("ignore", "torch.quantize_per_tensor, torch.quantize_per_channel", UserWarning)
    model = torch.ao.quantization.quantize_dynamic(
        AutoModelForSequenceClassification.from_config(config).eval(), {{torch.nn.Linear}}, dtype=torch.qint8)
    modules = dict(model.named_modules())
    for name in layers:  # int8 values, scale and zero point of each Linear layer
        ints = tensors.pop(f"{{name}}.weight.int8")
        scale, zero_point = float(tensors.pop(f"{{name}}.weight.scale")), int(tensors.pop(f"{{name}}.weight.zero_point"))
        weight = torch.quantize_per_tensor((ints.float() - zero_point) * scale, scale, zero_point, torch.qint8)
        modules[name].set_weight_bias(weight, tensors.pop(f"{{name}}.bias", None))
with torch.no_grad():  # the rest (embeddings, norms, buffers) in fp32
    for key, value in tensors.items():
        owner, _, attribute = key.rpartition(".")
        getattr(model.get_submodule(owner), attribute).copy_(value)
tokenizer = AutoTokenizer.from_pretrained(folder)
inputs = {cards.tokenize_call(task, max_length, "pt")}
with torch.inference_mode():
    label = model.config.id2label[int(model(**inputs).logits.argmax(-1))]
'''


TITLES = {
    "quantize": ("int8 quantization", "the Linear layers quantized to int8 (dynamic activations)", "int8"),
    "prune": ("pruning", "pruned", "pruned"),
    "distill": ("distillation", "a smaller student trained on the teacher's softened logits and the labels", "student"),
}
PRUNE_WHAT = {
    "magnitude": "the smallest-magnitude encoder Linear weights set to zero (global, unstructured)",
    "heads": "the least important attention heads zeroed (ranked across layers)",
    "neurons": "the least important feed-forward neurons removed from every layer",
    "layers": "whole encoder layers removed (the ones whose loss cost the least accuracy)",
}
VARIANT_OF_ARCHIVE = {"model.zip": "torch_int8", "model-onnx-int8.zip": "onnx_int8"}
VARIANT_TITLES = {"torch_int8": ("PyTorch int8", "torch, safetensors and transformers"),
                  "onnx_int8": ("ONNX int8", "onnxruntime and transformers for the tokenizer; no PyTorch")}


def _details(report: dict) -> list[str]:
    lines = []
    pruning = report.get("pruning")
    if pruning:
        lines.append(f"Removed {pruning['amount']:.1%} ({pruning['method']}); zero share of the encoder's Linear weights "
                     f"{pruning['sparsity']:.1%}.")
        if pruning["method"] == "layers":
            lines.append(f"Layers kept: {pruning['layers_kept']} of {pruning['layers_before']}.")
        if pruning["method"] == "neurons":
            lines.append(f"Feed-forward width {pruning['intermediate_size_before']} → {pruning['intermediate_size_after']}.")
    if report.get("search"):
        points = ", ".join(f"{p['amount']:.0%}: {p['accuracy_drop_points']:+.2f} pts" for p in report["search"]["curve"])
        lines.append(f"Searched for the largest amount within the guard (one-shot accuracy drop per amount: {points}).")
    if report.get("recovery"):
        lines.append(f"Recovery fine-tune: {report['recovery']['epochs']} epoch(s), zeros kept; one-shot accuracy was "
                     f"{report['recovery']['accuracy_one_shot']}.")
    distillation = report.get("distillation")
    if distillation:
        student = (f"{distillation['student_layers']} of the teacher's {distillation['teacher_layers']} layers "
                   f"({distillation['layers_kept']})" if distillation["student"] == "teacher layers"
                   else distillation["student_model"])
        lines.append(f"Student: {student}; temperature {distillation['temperature']}, alpha {distillation['alpha']}.")
    for name, variant in (report.get("variants") or {}).items():
        v = variant["after"]
        lines.append(f"Variant `{variant['artifact']}` ({VARIANT_TITLES[name][0]}): {spread(v)}, accuracy {v['accuracy']}, "
                     f"size {v['size_bytes']} bytes.")
    if report.get("recommendation"):
        lines.append(report["recommendation"]["message"])
    return lines


def _use(report: dict, variant: str | None, *, task: str, max_length: int) -> str:
    if report["kind"] != "quantize":
        code = cards.dense_code(archive="model.zip", task=task, max_length=max_length)
        return f"Needs torch and transformers.\n\n```python\n{code}```\n"
    shown = [variant] if variant else [n for n in ("onnx_int8", "torch_int8") if n in report["variants"]]
    blocks = []
    for name in shown:
        title, needs = VARIANT_TITLES[name]
        code = (onnx_code if name == "onnx_int8" else torch_int8_code)(task=task, max_length=max_length)
        blocks.append(f"### {title} (`{report['variants'][name]['artifact']}`; needs {needs})\n\n```python\n{code}```\n")
    return "\n".join(blocks)


def compression_card(report: dict, *, archive: str | None, files: list[str] | None, task: str, max_length: int,
                     labels: list[str], facts: dict | None = None, training: dict | None = None,
                     train_rows: int | None = None) -> str:
    """The card of `archive` (its files listed), or with archive None the job's README.md (every download)."""
    facts = facts or {}
    variant = VARIANT_OF_ARCHIVE.get(archive) if report["kind"] == "quantize" else None
    b = report["before"]
    a, r = (report["variants"][variant]["after"], report["variants"][variant]["ratios"]) if variant else (report["after"], report["ratios"])
    title, what, after_label = TITLES[report["kind"]]
    if report["kind"] == "prune":
        what = PRUNE_WHAT[report["pruning"]["method"]]
    if variant:
        after_label = VARIANT_TITLES[variant][0]
    def row(label, key):
        return f"| {label} | {b[key]} | {a[key]} |"

    rows = "\n".join([
        row("size on disk (bytes)", "size_bytes"), row("parameters (non-zero)", "nonzero_parameters"),
        row("latency p50, batch 1 (ms)", "latency_ms_p50"), row("latency p95, batch 1 (ms)", "latency_ms_p95"),
        row("throughput, batch 32 (examples/s, median of the passes)", "throughput_batch32"),
        f"| throughput, slowest–fastest pass | {b['throughput_batch32_min']}–{b['throughput_batch32_max']} | "
        f"{a['throughput_batch32_min']}–{a['throughput_batch32_max']} |",
        row("accuracy", "accuracy"), row("macro-F1", "macro_f1")])
    low, high = r["throughput_speedup_range"]
    guard = report["guard"]
    base = facts.get("base_model")
    lines = [*cards.base_model_lines(base)]
    if base:
        lines[0] = lines[0].replace("Base model:", "Derived from the base model", 1)
    lines.append(f"Task: {task.replace('_', ' ')}. {cards.labels_line(labels)}")
    measured = (report.get("measured_on") or {}).get("what") or "validation split"
    lines.append(f"Data: {b['eval_rows']} evaluation rows ({measured})"
                 + (f", {train_rows} training rows" if train_rows else "")
                 + (f" — dataset “{facts['dataset']['name']}” v{facts['dataset']['version']}" if facts.get("dataset") else "")
                 + ".")
    lines += _details(report)
    if variant and report.get("primary"):
        lines.append("This archive is the recommended download." if report["primary"] == variant else
                     f"The recommended download is `{report['variants'][report['primary']]['artifact']}`.")
    hyper = ""
    if training:
        user_set = facts.get("user_set") if "user_set" in facts else None
        hyper = (f"\n## Training hyperparameters ({'recovery fine-tune' if report['kind'] == 'prune' else 'distillation'})\n\n"
                 f"{cards.hyperparameter_table(cards.method_hyperparameters(training, 'full'), user_set)}\n")
    listing = f"\n{cards.files_section(archive, files)}" if archive and files else ""
    body = "\n".join(f"- {line}" for line in lines)
    return f"""{cards.front_matter(base=base, task=task, library='onnx' if variant == 'onnx_int8' else 'transformers', tags=[report['kind']])}
# {title[0].upper() + title[1:]}

{what[0].upper() + what[1:]}, measured by one harness on the same CPU
({b['threads']} threads, {b['eval_rows']} evaluation rows; throughput is the median of {b['throughput_passes']} timed passes,
each after an untimed one).

{body}

| | before | after ({after_label}) |
| --- | --- | --- |
{rows}

Size ×{r['size_ratio']}, throughput ×{r['throughput_speedup']} (×{low}–×{high} between the passes), accuracy change
{r['accuracy_change_points']:+} points. Accuracy guard: at most {guard['max_accuracy_drop_points']} points lost —
**{'passed' if guard['passed'] else 'failed'}**.
{hyper}
## Use (CPU)

{_use(report, variant, task=task, max_length=max_length)}{listing}"""
