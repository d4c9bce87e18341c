"""Which device a worker runs on, as billing and the fleet name it."""
from __future__ import annotations

import os
import re

DEVICE_CLASS_PATTERN = re.compile(r"^(cpu|nvidia-[a-z0-9]{1,20}(-[a-z0-9]{1,20})?)$")


def detected_device_class() -> tuple[str, int]:
    """('cpu', 1), or e.g. ('nvidia-h100', 1): the class of GPU 0, and 1 — a job runs on one device (a job
    across several GPUs is not built yet; LATHE_DEVICE_COUNT says so for billing where a host is set up for it)."""
    import torch

    if not torch.cuda.is_available():
        return "cpu", 1
    name = torch.cuda.get_device_name(0).lower()
    match = re.search(r"\b([a-z]\d{2,4}[a-z]?)\b", name.replace("nvidia", ""))
    return f"nvidia-{match.group(1) if match else 'gpu'}", 1


def device_class() -> tuple[str, int]:
    """The detected class, unless the operator names it: LATHE_DEVICE_CLASS (e.g. nvidia-a10g, when the card's
    name does not say what the price list calls it) and LATHE_DEVICE_COUNT. A malformed override is an error
    at start, not a worker that bills under a made-up name."""
    detected, count = detected_device_class()
    override = os.environ.get("LATHE_DEVICE_CLASS", "").strip().lower()
    if override and not DEVICE_CLASS_PATTERN.match(override):
        raise ValueError(f"LATHE_DEVICE_CLASS={override!r}: expected cpu or nvidia-<model>, e.g. nvidia-a10g.")
    count_override = os.environ.get("LATHE_DEVICE_COUNT", "").strip()
    if count_override and not (count_override.isdigit() and 1 <= int(count_override) <= 64):
        raise ValueError(f"LATHE_DEVICE_COUNT={count_override!r}: expected a whole number from 1 to 64.")
    return override or detected, int(count_override) if count_override else count
