"""ONNX int8 export that runs without PyTorch: export the fp32 model to ONNX,
quantize its weights to int8 with onnxruntime's dynamic quantization, and
serve it with onnxruntime alone. On CPUs this path is usually faster than
PyTorch's own dynamic int8 kernels (docs/compression.md has the figures)."""
from __future__ import annotations

import logging
import os
import warnings

import numpy as np
import torch

ONNX_FILE = "model.int8.onnx"


def available() -> bool:
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def export_int8(model, tokenizer, folder: str, *, task: str) -> str:
    """fp32 model → ONNX (dynamic batch and sequence axes) → int8 weights.
    The folder also gets the tokenizer and config (labels)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    os.makedirs(folder, exist_ok=True)
    model = model.to("cpu").eval()
    text = ["a sample", "another sample text"]
    sample = tokenizer(text, text if task == "text_pair_classification" else None, return_tensors="pt", padding=True)
    names = [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in sample]
    axes = {n: {0: "batch", 1: "sequence"} for n in names} | {"logits": {0: "batch"}}
    fp32_path = os.path.join(folder, "model.fp32.onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(model, tuple(sample[n] for n in names), fp32_path, input_names=names, output_names=["logits"],
                          dynamic_axes=axes, opset_version=17, dynamo=False)
    root = logging.getLogger()
    level = root.level
    root.setLevel(max(level, logging.WARNING))  # the quantizer logs one INFO line per tensor on the root logger
    try:
        quantize_dynamic(fp32_path, os.path.join(folder, ONNX_FILE), weight_type=QuantType.QInt8)
    finally:
        root.setLevel(level)
    os.remove(fp32_path)
    model.config.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


class OnnxClassifier:
    """An onnxruntime session behind the call the measurement harness makes
    (`model(**batch).logits`), with parameter counts read from the graph."""

    def __init__(self, folder: str, *, threads: int | None = None):
        import onnx
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        path = os.path.join(folder, ONNX_FILE)
        self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        self.inputs = {i.name for i in self.session.get_inputs()}
        graph = onnx.load(path).graph
        arrays = [onnx.numpy_helper.to_array(t) for t in graph.initializer]
        # Weights only (matrices, vectors); scales and zero points are scalars.
        weights = [a for a in arrays if a.ndim >= 1 and a.size > 1]
        self.parameter_counts = {"total": int(sum(a.size for a in weights)),
                                 "nonzero": int(sum(np.count_nonzero(a) for a in weights))}

    def eval(self):
        return self

    def __call__(self, **batch):
        feed = {k: v.numpy() for k, v in batch.items() if k in self.inputs}
        logits = self.session.run(["logits"], feed)[0]

        class Output:
            pass

        out = Output()
        out.logits = torch.from_numpy(logits)
        return out
