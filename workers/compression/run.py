"""A compression job from start to finish, free of Django: measure the source
model, compress (int8 quantization or magnitude pruning), save, measure again
with the same harness, judge against the accuracy guard, and write the report
and a model card whose loading code is tested."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass

from ..archive import zip_folder
from ..data import read_jsonl
from ..reporting import Reporter
from .measure import compare, measure
from .prune import global_magnitude_prune
from .quantize import quantize_dynamic_int8, save_int8

DENSE_LOADING_CODE = '''import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

folder = "model"  # the unzipped model.zip
model = AutoModelForSequenceClassification.from_pretrained(folder, use_safetensors=True).eval()
tokenizer = AutoTokenizer.from_pretrained(folder)
inputs = tokenizer(["I am still waiting on my card?"], return_tensors="pt")
with torch.inference_mode():
    label = model.config.id2label[int(model(**inputs).logits.argmax(-1))]
'''

LOADING_CODE = '''import json
import torch
from safetensors.torch import load_file
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

folder = "model"  # the unzipped model.zip
config = AutoConfig.from_pretrained(folder)
model = torch.ao.quantization.quantize_dynamic(
    AutoModelForSequenceClassification.from_config(config).eval(), {torch.nn.Linear}, dtype=torch.qint8)
tensors = load_file(f"{folder}/model.int8.safetensors")
modules = dict(model.named_modules())
for name in json.load(open(f"{folder}/quantization.json"))["layers"]:
    weight = torch._make_per_tensor_quantized_tensor(
        tensors.pop(f"{name}.weight.int8"), float(tensors.pop(f"{name}.weight.scale")),
        int(tensors.pop(f"{name}.weight.zero_point")))
    modules[name].set_weight_bias(weight, tensors.pop(f"{name}.bias", None))
with torch.no_grad():
    for key, value in tensors.items():
        owner, _, attribute = key.rpartition(".")
        getattr(model.get_submodule(owner), attribute).copy_(value)
tokenizer = AutoTokenizer.from_pretrained(folder)
inputs = tokenizer(["I am still waiting on my card?"], return_tensors="pt")
with torch.inference_mode():
    label = model.config.id2label[int(model(**inputs).logits.argmax(-1))]
'''


@dataclass
class CompressionSpec:
    kind: str  # quantize | prune
    source_model_dir: str
    eval_file: str
    output_dir: str
    task: str
    max_accuracy_drop: float  # points
    max_length: int = 128
    latency_samples: int = 50
    threads: int | None = None
    sparsity: float = 0.5  # prune: the share of encoder Linear weights set to zero




TITLES = {"quantize": ("int8 dynamic quantization", "Linear layers quantized to int8 (dynamic activations)", "int8"),
          "prune": ("global magnitude pruning", "the smallest-magnitude encoder Linear weights set to zero", "pruned")}


def model_card(report: dict) -> str:
    b, a, r = report["before"], report["after"], report["ratios"]
    title, what, after_label = TITLES[report["kind"]]
    code = LOADING_CODE if report["kind"] == "quantize" else DENSE_LOADING_CODE
    rows = "\n".join(f"| {label} | {b[key]} | {a[key]} |" for label, key in [
        ("size on disk (bytes)", "size_bytes"), ("parameters (non-zero)", "nonzero_parameters"),
        ("latency p50, batch 1 (ms)", "latency_ms_p50"), ("latency p95, batch 1 (ms)", "latency_ms_p95"),
        ("throughput, batch 32 (examples/s)", "throughput_batch32"), ("accuracy", "accuracy"), ("macro-F1", "macro_f1")])
    guard = report["guard"]
    detail = f" Sparsity {report['sparsity']['sparsity']:.1%} of {report['sparsity']['prunable_weights']} weights." \
        if report["kind"] == "prune" else ""
    return f"""# {title}

{what[0].upper() + what[1:]}, measured by one harness on the same CPU
({b['threads']} threads, {b['eval_rows']} evaluation rows).{detail}

| | before (fp32) | after ({after_label}) |
| --- | --- | --- |
{rows}

Size ×{r['size_ratio']}, throughput ×{r['throughput_speedup']}, accuracy change {r['accuracy_change_points']:+} points.
Accuracy guard: at most {guard['max_accuracy_drop_points']} points lost — **{'passed' if guard['passed'] else 'failed'}**.

## Use (CPU; needs torch, safetensors and transformers)

```python
{code}```
"""


def run_compression(spec: CompressionSpec, reporter: Reporter) -> dict:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    if spec.threads:
        torch.set_num_threads(spec.threads)
    tokenizer = AutoTokenizer.from_pretrained(spec.source_model_dir)
    fp32 = AutoModelForSequenceClassification.from_pretrained(spec.source_model_dir, use_safetensors=True).eval()
    labels = [fp32.config.id2label[i] for i in range(fp32.config.num_labels)]
    rows = [r for r in read_jsonl(spec.eval_file) if r.get("label") in set(labels)]
    if not rows:
        raise ValueError("The evaluation split has no rows with the model's labels.")
    common = dict(task=spec.task, labels=labels, max_length=spec.max_length, latency_samples=spec.latency_samples)
    reporter.progress(step=0, total_steps=3, epoch=0.0)
    before = measure(fp32, tokenizer, rows, saved_folder=spec.source_model_dir, **common)
    reporter.progress(step=1, total_steps=3, epoch=0.33)
    if reporter.should_stop():
        return {"stopped": reporter.should_stop()}
    model_dir = os.path.join(spec.output_dir, "model")
    extra = {}
    if spec.kind == "quantize":
        compressed = quantize_dynamic_int8(fp32)
        save_int8(compressed, tokenizer, model_dir)
        extra["method"] = "dynamic_int8"
    elif spec.kind == "prune":
        compressed = fp32
        extra = {"method": "global_magnitude_unstructured", "sparsity": global_magnitude_prune(compressed, spec.sparsity)}
        compressed.save_pretrained(model_dir, safe_serialization=True)
        tokenizer.save_pretrained(model_dir)
    else:
        raise ValueError(f"unknown compression kind {spec.kind!r}")
    reporter.progress(step=2, total_steps=3, epoch=0.66)
    after = measure(compressed, tokenizer, rows, saved_folder=model_dir, **common)
    ratios = compare(before, after)
    drop = round(-ratios["accuracy_change_points"], 3)
    report = {"kind": spec.kind, **extra, "before": before, "after": after, "ratios": ratios,
              "guard": {"max_accuracy_drop_points": spec.max_accuracy_drop, "accuracy_drop_points": drop,
                        "passed": drop <= spec.max_accuracy_drop}}
    card = model_card(report)
    for path in (os.path.join(model_dir, "README.md"), os.path.join(spec.output_dir, "README.md")):
        with open(path, "w") as fh:
            fh.write(card)
    report_path = os.path.join(spec.output_dir, "compression_report.json")
    with open(report_path, "w") as fh:
        json.dump(report, fh, indent=1)
    reporter.metrics(step=3, epoch=1.0, values={"accuracy": after["accuracy"], "macro_f1": after["macro_f1"],
                                                "accuracy_before": before["accuracy"]})
    reporter.artifact(name="model.zip", path=zip_folder(model_dir, os.path.join(spec.output_dir, "model.zip")), kind="model")
    reporter.artifact(name="compression_report.json", path=report_path, kind="report")
    reporter.artifact(name="README.md", path=os.path.join(spec.output_dir, "README.md"), kind="model_card")
    reporter.progress(step=3, total_steps=3, epoch=1.0)
    return report
