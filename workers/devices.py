"""Which device a worker runs on, as billing names it."""
from __future__ import annotations

import re


def device_class() -> tuple[str, int]:
    """('cpu', 1) or e.g. ('nvidia-h100', 1): the class and how many devices."""
    import torch

    if not torch.cuda.is_available():
        return "cpu", 1
    name = torch.cuda.get_device_name(0).lower()
    match = re.search(r"\b([a-z]\d{2,4}[a-z]?)\b", name.replace("nvidia", ""))
    return f"nvidia-{match.group(1) if match else 'gpu'}", 1
