"""Checkpoints that resume exactly, written with safetensors only (never
pickle: torch.load of an untrusted file can run code).

Layout under the job's checkpoint folder:
    step-000120/  model.safetensors  optimizer.safetensors  state.json
    best/         model.safetensors  state.json
    latest        name of the newest complete step folder (replaced atomically)
    selection.json  the selection phase's outcome, once it is over (a run that refits)
    refit/        the refit phase's own step folders and `latest`, the same layout
"""
from __future__ import annotations

import json
import os
import shutil

import torch
from safetensors.torch import load_file, save_file

LATEST = "latest"


def trainable_state(model) -> dict[str, torch.Tensor]:
    """Full fine-tune: every weight. LoRA: only what trains (adapters + head)."""
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    state = model.state_dict()
    if len(names) < len(list(model.parameters())):
        state = {k: v for k, v in state.items() if k in names}
    # safetensors refuses shared or non-contiguous storage: store plain copies.
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in state.items()}


def _optimizer_tensors(optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    sd = optimizer.state_dict()
    tensors = {}
    for index, slots in sd["state"].items():
        for key, value in slots.items():
            tensors[f"{index}.{key}"] = (value if torch.is_tensor(value) else torch.tensor(value)).detach().cpu().contiguous()
    return tensors, {"param_groups": sd["param_groups"]}


def _load_optimizer(optimizer, tensors: dict[str, torch.Tensor], meta: dict, device) -> None:
    state: dict[int, dict] = {}
    for name, value in tensors.items():
        index, key = name.split(".", 1)
        state.setdefault(int(index), {})[key] = value if key == "step" else value.to(device)
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def save_checkpoint(folder: str, *, model, optimizer, scheduler, state: dict, extra: dict[str, torch.Tensor] | None = None) -> str:
    os.makedirs(folder, exist_ok=True)
    name = f"step-{state['global_step']:07d}"
    final, tmp = os.path.join(folder, name), os.path.join(folder, f".{name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    save_file(trainable_state(model), os.path.join(tmp, "model.safetensors"))
    tensors, meta = _optimizer_tensors(optimizer)
    tensors["rng.cpu"] = torch.get_rng_state()
    if torch.cuda.is_available():
        tensors["rng.cuda"] = torch.cuda.get_rng_state()
    save_file(tensors, os.path.join(tmp, "optimizer.safetensors"))
    if extra:  # e.g. the running sum of a weight average
        save_file({k: v.detach().cpu().contiguous() for k, v in extra.items()}, os.path.join(tmp, "extra.safetensors"))
    with open(os.path.join(tmp, "state.json"), "w") as fh:
        json.dump({**state, "optimizer": meta, "scheduler": scheduler.state_dict()}, fh)
    shutil.rmtree(final, ignore_errors=True)
    os.rename(tmp, final)
    _point_latest(folder, name)
    for other in os.listdir(folder):  # keep the newest step folder only (best/ is separate)
        if other.startswith("step-") and other != name:
            shutil.rmtree(os.path.join(folder, other), ignore_errors=True)
    return final


def _point_latest(folder: str, name: str) -> None:
    tmp = os.path.join(folder, f".{LATEST}.tmp")
    with open(tmp, "w") as fh:
        fh.write(name)
    os.replace(tmp, os.path.join(folder, LATEST))


def latest_checkpoint(folder: str) -> str | None:
    try:
        with open(os.path.join(folder, LATEST)) as fh:
            path = os.path.join(folder, fh.read().strip())
    except FileNotFoundError:
        return None
    return path if os.path.exists(os.path.join(path, "state.json")) else None


def load_checkpoint(path: str, *, model, optimizer, scheduler, device) -> dict:
    model.load_state_dict(load_file(os.path.join(path, "model.safetensors"), device=str(device)), strict=False)
    with open(os.path.join(path, "state.json")) as fh:
        state = json.load(fh)
    tensors = load_file(os.path.join(path, "optimizer.safetensors"))
    rng_cpu, rng_cuda = tensors.pop("rng.cpu"), tensors.pop("rng.cuda", None)
    _load_optimizer(optimizer, tensors, state.pop("optimizer"), device)
    scheduler.load_state_dict(state.pop("scheduler"))
    torch.set_rng_state(rng_cpu)
    if rng_cuda is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state(rng_cuda)
    return state


def load_extra(path: str) -> dict[str, torch.Tensor]:
    extra = os.path.join(path, "extra.safetensors")
    return load_file(extra) if os.path.exists(extra) else {}


def save_best(folder: str, *, model, metrics: dict, step: int, epoch: int | None = None) -> str:
    best, tmp = os.path.join(folder, "best"), os.path.join(folder, ".best.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    save_file(trainable_state(model), os.path.join(tmp, "model.safetensors"))
    with open(os.path.join(tmp, "state.json"), "w") as fh:
        json.dump({"step": step, "epoch": epoch, "metrics": metrics}, fh)
    shutil.rmtree(best, ignore_errors=True)
    os.rename(tmp, best)
    return best


def load_best(folder: str, model, device) -> dict | None:
    best = os.path.join(folder, "best")
    if not os.path.exists(os.path.join(best, "state.json")):
        return None
    model.load_state_dict(load_file(os.path.join(best, "model.safetensors"), device=str(device)), strict=False)
    with open(os.path.join(best, "state.json")) as fh:
        return json.load(fh)


def read_best(folder: str) -> dict | None:
    """best/'s step, epoch and metrics, without loading its weights."""
    try:
        with open(os.path.join(folder, "best", "state.json")) as fh:
            return json.load(fh)
    except FileNotFoundError:
        return None


def write_phase_done(folder: str, phase: str, state: dict) -> str:
    """A finished phase's state (history, best epoch, steps), so a resumed run goes straight to the next phase."""
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f".{phase}.json.tmp")
    with open(tmp, "w") as fh:
        json.dump(state, fh)
    os.replace(tmp, os.path.join(folder, f"{phase}.json"))
    return os.path.join(folder, f"{phase}.json")


def read_phase_done(folder: str, phase: str) -> dict | None:
    try:
        with open(os.path.join(folder, f"{phase}.json")) as fh:
            return json.load(fh)
    except FileNotFoundError:
        return None
