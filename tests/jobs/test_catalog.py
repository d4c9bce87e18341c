import pytest

from jobs.hyperparameters import resolve

pytestmark = pytest.mark.django_db


def test_catalog_defaults_come_before_heuristics(tiny_bert, dataset):
    version = dataset.versions.get()
    assert resolve({}, method="full", version=version, base_model=tiny_bert)["learning_rate"] == 5e-5
    tiny_bert.parameter_count = 1_000_000
    assert resolve({}, method="full", version=version, base_model=tiny_bert)["learning_rate"] == 2e-4
    assert resolve({}, method="full", version=version, base_model=tiny_bert)["epochs"] == 8  # 12 rows per label
    tiny_bert.default_hyperparameters = {"learning_rate": 1e-4, "epochs": 7}
    resolved = resolve({"epochs": 2}, method="full", version=version, base_model=tiny_bert)
    assert resolved["learning_rate"] == 1e-4 and resolved["epochs"] == 2  # explicit beats the catalog


def test_minilm_is_seeded_and_loads_offline():
    from catalog.models import BaseModel

    minilm = BaseModel.objects.get(slug="all-minilm-l6-v2")
    assert minilm.source_kind == "package" and minilm.parameter_count == 22_713_216
    tokenizer = minilm.load_tokenizer()
    assert tokenizer("hello world")["input_ids"] == [101, 7592, 2088, 102]
