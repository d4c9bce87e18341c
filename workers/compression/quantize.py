"""int8 dynamic quantization of the Linear layers, saved as safetensors (the
packed int8 weights with their scale and zero point; never pickle) and loaded
back exactly with `load_int8`."""
from __future__ import annotations

import contextlib
import json
import os
import warnings

import torch
from safetensors.torch import load_file, save_file

QUANT_FILE = "model.int8.safetensors"
QUANT_CONFIG = "quantization.json"


@contextlib.contextmanager
def deprecation_quiet():
    """torch 2.13 deprecates torch.ao.quantization and its int8 tensors in favour of
    torchao, whose CPU int8 is slower than fp32 without torch.compile (docs/compression.md);
    these two notices only, the same filters the model card's code uses."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "torch.ao.quantization is deprecated", DeprecationWarning)
        warnings.filterwarnings("ignore", "torch.quantize_per_tensor, torch.quantize_per_channel", UserWarning)
        yield


def quantize_dynamic_int8(model: torch.nn.Module) -> torch.nn.Module:
    model = model.to("cpu").eval()
    with deprecation_quiet():
        return torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)


def _quantized_linears(model):
    for name, module in model.named_modules():
        if isinstance(module, torch.ao.nn.quantized.dynamic.Linear):
            yield name, module


def save_int8(model: torch.nn.Module, tokenizer, folder: str) -> str:
    """config.json + tokenizer + int8 Linear weights (int8, scale, zero point) +
    every other tensor in fp32, all in one safetensors file."""
    os.makedirs(folder, exist_ok=True)
    tensors, quantized = {}, []
    for name, module in _quantized_linears(model):
        w = module.weight()
        tensors[f"{name}.weight.int8"] = w.int_repr().contiguous()
        tensors[f"{name}.weight.scale"] = torch.tensor([w.q_scale()], dtype=torch.float64)
        tensors[f"{name}.weight.zero_point"] = torch.tensor([w.q_zero_point()], dtype=torch.int64)
        bias = module.bias()
        if bias is not None:
            tensors[f"{name}.bias"] = bias.detach().contiguous()
        quantized.append(name)
    prefixes = tuple(f"{n}." for n in quantized)
    stored = set()  # a tied tensor (an LM head sharing the embeddings) is stored once; loading ties it again
    for key, value in model.state_dict().items():
        if torch.is_tensor(value) and not key.startswith(prefixes) and (value.numel() == 0 or value.data_ptr() not in stored):
            stored.add(value.data_ptr())  # embeddings, norms, buffers
            tensors[key] = value.detach().contiguous().clone()
    save_file(tensors, os.path.join(folder, QUANT_FILE))
    model.config.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    with open(os.path.join(folder, QUANT_CONFIG), "w") as fh:
        json.dump({"method": "dynamic_int8", "layers": quantized, "torch": torch.__version__}, fh, indent=1)
    return folder


def load_int8(folder: str):
    """The int8 model saved by `save_int8`, ready for CPU inference."""
    from transformers import AutoConfig, AutoModelForSequenceClassification

    config = AutoConfig.from_pretrained(folder)
    tensors = load_file(os.path.join(folder, QUANT_FILE))
    with open(os.path.join(folder, QUANT_CONFIG)) as fh:
        layers = json.load(fh)["layers"]
    with deprecation_quiet():
        model = quantize_dynamic_int8(AutoModelForSequenceClassification.from_config(config))
        modules = dict(model.named_modules())
        for name in layers:
            # Public API only: the int8 values back to the floats they stand for, quantized again with
            # the same scale and zero point — exactly the same int8 values.
            ints = tensors.pop(f"{name}.weight.int8")
            scale, zero_point = float(tensors.pop(f"{name}.weight.scale")), int(tensors.pop(f"{name}.weight.zero_point"))
            q = torch.quantize_per_tensor((ints.float() - zero_point) * scale, scale, zero_point, torch.qint8)
            modules[name].set_weight_bias(q, tensors.pop(f"{name}.bias", None))
    # The rest (embeddings, norms, buffers, the fp32 head if any) are copied in place:
    # quantized modules' load_state_dict expects keys this format does not have.
    for key, value in tensors.items():
        owner, _, attribute = key.rpartition(".")
        target = getattr(model.get_submodule(owner), attribute)
        with torch.no_grad():
            target.copy_(value)
    return model
