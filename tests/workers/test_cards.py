"""Model cards on the worker's real outputs (tiny models): each archive's card
names only files the archive holds, its code runs from the unzipped folder
without warnings, offline; LoRA adapters name their base publicly and load on
it; hyperparameter tables show the method's settings and who chose them; the
int8 recommendation does not claim a winner within the measurement noise."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.card_runner import check_named_files, code_blocks, run_card, unzip
from tests.tiny_model import build_tiny_classifier, slice_rows
from workers.cards import labels_line
from workers.compression.measure import compare, measure
from workers.compression.run import CompressionSpec, recommend, run_compression
from workers.finetune import run_finetune
from workers.reporting import MemoryReporter

from .test_finetune import data, spec_for, tiny_bert  # noqa: F401  (fixtures)

BASE = {"name": "Tiny BERT", "slug": "tiny-bert", "hub_id": "lathe-tests/tiny-bert", "package": "", "module": "",
        "license": "mit"}
CARD = {"base_model": BASE, "user_set": ["epochs", "lora_r"], "dataset": {"name": "slice", "version": 1}}
LOGITS = "\nresult['logits'] = model(**inputs).logits[0].tolist()\n"


def test_lora_adapter_names_its_base_publicly_and_loads_on_it_with_its_card(tmp_path, tiny_bert, data):  # noqa: F811
    reporter = MemoryReporter()
    run_finetune(spec_for(tmp_path, tiny_bert, data, method="lora", epochs=1, lora_r=4, card=CARD), reporter)
    archives = {a["name"]: Path(a["path"]).read_bytes() for a in reporter.artifacts if a["name"].endswith(".zip")}
    adapter, members = unzip(archives["adapter.zip"], tmp_path / "adapter")
    settings = json.loads((adapter / "adapter_config.json").read_text())
    assert settings["base_model_name_or_path"] == "lathe-tests/tiny-bert"  # not a path on the server
    assert str(tmp_path) not in (adapter / "adapter_config.json").read_text()
    card = (adapter / "README.md").read_text()
    assert "[More Information Needed]" not in card  # peft's unfilled template is replaced
    for fact in ("Text classification", "4 labels", "training rows", "validation rows", "| accuracy |",
                 "| lora_r | 4 | you |", "| learning_rate |", "Licence of the base model: mit", "lathe-tests/tiny-bert",
                 "PeftModel.from_pretrained"):
        assert fact in card, fact
    check_named_files(card, members, downloads=set(archives) | {"README.md"})
    (code,) = code_blocks(card)
    # The base from a local folder instead of the Hub id, as the card's comment says.
    on_base = run_card(code, adapter, replace={"base": str(tiny_bert)}, after=LOGITS)
    merged, merged_members = unzip(archives["model.zip"], tmp_path / "merged")
    (merged_code,) = code_blocks((merged / "README.md").read_text())
    check_named_files((merged / "README.md").read_text(), merged_members, downloads=set(archives))
    alone = run_card(merged_code, merged, after=LOGITS)
    assert on_base["label"] == alone["label"] and on_base["label"] in data[2]
    assert on_base["logits"] == pytest.approx(alone["logits"], abs=1e-4)  # adapter + head = the merged model


def test_full_finetune_card_shows_the_method_settings_and_who_chose_them(tmp_path, tiny_bert, data):  # noqa: F811
    run_finetune(spec_for(tmp_path, tiny_bert, data, epochs=1, card={**CARD, "user_set": ["epochs", "batch_size"]}),
                 MemoryReporter())
    card = (tmp_path / "out" / "model" / "README.md").read_text()
    table = card.split("## Hyperparameters", 1)[1].split("##", 1)[0]
    for absent in ("lora_", "distill_", "teacher_model_path", "keep_zero_weights", "labels", "torch_threads",
                   "checkpoint_every_steps", "output_dir"):
        assert absent not in table, absent
    assert "| epochs | 1 | you |" in table and "| batch_size | 8 | you |" in table
    assert "| learning_rate | 0.003 | auto |" in table  # resolved from auto by the platform
    report = json.loads((tmp_path / "out" / "eval_report.json").read_text())
    assert "lora_r" not in report["hyperparameters"] and report["hyperparameters_set_by_user"] == ["epochs", "batch_size"]


def test_labels_are_a_count_and_a_short_list():
    labels = [f"label_{i}" for i in range(77)]
    line = labels_line(labels)
    assert line.startswith("77 labels: `label_0`") and "and 69 more" in line and "`label_9`" not in line
    assert "`config.json`" in line


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    folder = tmp_path_factory.mktemp("small-bert")
    rows = slice_rows(96)
    labels = sorted({r["label"] for r in rows})
    build_tiny_classifier(folder, labels, layers=2, hidden=128, heads=2, intermediate=512)
    eval_file = folder.parent / "eval.jsonl"
    eval_file.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder, eval_file, labels


def test_each_int8_archive_has_its_own_card_that_runs_without_warnings(tmp_path, small):
    folder, eval_file, labels = small
    reporter = MemoryReporter()
    report = run_compression(CompressionSpec(kind="quantize", source_model_dir=str(folder), eval_file=str(eval_file),
                                             output_dir=str(tmp_path / "out"), task="text_classification",
                                             max_accuracy_drop=100, max_length=24, latency_samples=5), reporter)
    downloads = {a["name"] for a in reporter.artifacts}
    for archive, variant in (("model.zip", "torch_int8"), ("model-onnx-int8.zip", "onnx_int8")):
        unzipped, members = unzip(Path(next(a["path"] for a in reporter.artifacts if a["name"] == archive)).read_bytes(),
                                  tmp_path / archive)
        card = (unzipped / "README.md").read_text()
        check_named_files(card, members, downloads)
        (code,) = code_blocks(card)  # this archive's code only
        assert "max_length=24" in code and "truncation=True" in code  # as measured
        assert "torch._" not in code  # public API only
        assert ("import torch" in code) == (variant == "torch_int8")
        assert f"| throughput, batch 32 (examples/s, median of the passes) | {report['before']['throughput_batch32']} | " \
               f"{report['variants'][variant]['after']['throughput_batch32']} |" in card  # its own numbers
        assert run_card(code, unzipped)["label"] in labels
    assert report["recommendation"]["message"] in (tmp_path / "out" / "README.md").read_text()


def test_measurement_reports_the_spread_of_its_passes(small):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    folder, eval_file, labels = small
    rows = [json.loads(line) for line in eval_file.read_text().splitlines()]
    model = AutoModelForSequenceClassification.from_pretrained(folder, use_safetensors=True)
    m = measure(model, AutoTokenizer.from_pretrained(folder), rows, task="text_classification", labels=labels,
                max_length=24, saved_folder=str(folder), latency_samples=5)
    assert m["throughput_passes"] == 3
    assert m["throughput_batch32_min"] <= m["throughput_batch32"] <= m["throughput_batch32_max"]
    low, high = compare(m, m)["throughput_speedup_range"]
    assert low <= 1.0 <= high


def _variant(artifact, median, low, high, size, drop=0.0):
    return {"artifact": artifact, "ratios": {"accuracy_change_points": -drop},
            "after": {"throughput_batch32": median, "throughput_batch32_min": low, "throughput_batch32_max": high,
                      "throughput_passes": 3, "size_bytes": size}}


def test_a_recommendation_within_the_noise_says_so():
    # The two measurements of the issue: the faster median flips, the passes overlap.
    overlapping = {"torch_int8": _variant("model.zip", 148, 120, 160, 650),
                   "onnx_int8": _variant("model-onnx-int8.zip", 129, 118, 152, 260)}
    verdict = recommend(overlapping, max_drop=1.0)
    assert verdict["within_noise"] is True and verdict["variant"] == "onnx_int8"  # the smaller download, not "the faster"
    assert verdict["message"].startswith("Within the noise:") and "120–160" in verdict["message"]
    apart = {"torch_int8": _variant("model.zip", 148, 145, 150, 650),
             "onnx_int8": _variant("model-onnx-int8.zip", 129, 127, 131, 260)}
    verdict = recommend(apart, max_drop=1.0)
    assert verdict == {"variant": "torch_int8", "within_noise": False, "message": verdict["message"]}
    assert "faster on this worker in every pass" in verdict["message"]
    # A variant beyond the guard is never recommended, however fast.
    verdict = recommend({**apart, "torch_int8": _variant("model.zip", 148, 145, 150, 650, drop=3.0)}, max_drop=1.0)
    assert verdict["variant"] == "onnx_int8" and "only variant within the accuracy guard" in verdict["message"]
