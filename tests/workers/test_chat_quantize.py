"""int8 quantization of a chat model (workers/compression/chat_quantize.py) on a tiny LLaMA fine-tuned by the
real chat loop: the report is measured (size, perplexity, replies, tokens/s at batch 1 and 8), the archive
carries tokenizer, chat template and generation config, the card's code generates on the unzipped archive,
and an impossible guard fails with the chat reading of max_accuracy_drop."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.card_runner import check_named_files, code_blocks, run_card, unzip
from tests.tiny_model import build_tiny_llama, chat_rows
from workers.chat.train import run_chat_finetune
from workers.compression.chat_quantize import load_chat_int8
from workers.compression.run import CompressionSpec, run_compression
from workers.reporting import MemoryReporter
from workers.spec import ChatFineTuneSpec


@pytest.fixture(scope="module")
def fine_tuned(tmp_path_factory) -> tuple[Path, Path]:
    """A chat fine-tune's model folder (the real loop) and its validation file."""
    folder = tmp_path_factory.mktemp("chat-source")
    base = build_tiny_llama(folder / "base")
    rows = chat_rows()
    train, validation = folder / "train.jsonl", folder / "validation.jsonl"
    train.write_text("".join(json.dumps(r) + "\n" for r in rows))
    validation.write_text("".join(json.dumps(r) + "\n" for r in rows[:6]))
    spec = ChatFineTuneSpec(base_model_path=str(base), train_file=str(train), validation_file=str(validation),
                            output_dir=str(folder / "out"), checkpoint_dir=str(folder / "ckpt"), method="full", epochs=60,
                            batch_size=4, learning_rate=3e-2, max_length=64, early_stopping_patience=None,
                            torch_threads=1, precision="fp32")
    assert run_chat_finetune(spec, MemoryReporter()).status == "succeeded"
    return folder / "out" / "model", validation


def spec_for(tmp_path, fine_tuned, **overrides) -> CompressionSpec:
    model_dir, validation = fine_tuned
    values = dict(kind="quantize", source_model_dir=str(model_dir), eval_file=str(validation),
                  output_dir=str(tmp_path / "out"), task="chat", max_length=64, threads=1, max_accuracy_drop=100.0,
                  speed_tokens=8)
    values.update(overrides)
    return CompressionSpec(**values)


def test_a_chat_model_quantizes_to_int8_measured_and_its_card_generates(tmp_path, fine_tuned):
    reporter = MemoryReporter()
    report = run_compression(spec_for(tmp_path, fine_tuned), reporter)
    before, after = report["before"], report["after"]
    assert report["task"] == "chat" and report["method"] == "dynamic_int8"
    assert report["layers_quantized"] == 2 * 7 and report["lm_head"].startswith("fp32")  # tied head stays fp32
    assert after["size_bytes"] < before["size_bytes"] and report["ratios"]["size_ratio"] < 1
    assert after["parameters"] == before["parameters"]
    for measured in (before, after):
        assert measured["perplexity"] > 1 and measured["prompts"] == 6
        assert measured["tokens_per_second_batch1"] > 0 and measured["tokens_per_second_batch8"] > 0
    assert before["exact_match"] >= 0.5  # the fine-tune memorised the facts: the guard has something to judge
    increase = 100 * (after["perplexity"] / before["perplexity"] - 1)
    assert report["ratios"]["perplexity_increase_percent"] == pytest.approx(increase, abs=1e-2)
    assert report["guard"]["passed"] is True and report["generation"]["short_references"] is True
    assert {a["name"] for a in reporter.artifacts} == {"model.zip", "compression_report.json", "generations.json", "README.md"}

    archive = next(a["path"] for a in reporter.artifacts if a["name"] == "model.zip")
    folder, members = unzip(Path(archive).read_bytes(), tmp_path / "downloaded")
    assert {"config.json", "generation_config.json", "chat_template.jinja", "tokenizer.json",
            "model.int8.safetensors", "quantization.json", "README.md"} <= set(members)
    card = (folder / "README.md").read_text()
    check_named_files(card, members, {"model.zip", "compression_report.json", "generations.json", "README.md"})
    (code,) = code_blocks(card)
    reply = run_card(code + "\nlabel = reply\n", folder)["label"]
    # The card's code says what the worker's int8 model said to the same message (greedy, same files).
    import torch

    from workers.chat.card import SAMPLE_MESSAGE
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = load_chat_int8(str(folder))
    inputs = tokenizer.apply_chat_template([{"role": "user", "content": SAMPLE_MESSAGE}], add_generation_prompt=True,
                                           return_tensors="pt", return_dict=True)
    with torch.inference_mode():
        output = model.generate(**inputs, max_new_tokens=report["generation"]["max_new_tokens"], do_sample=False)
    assert reply == tokenizer.decode(output[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)


def test_an_impossible_guard_fails_with_the_chat_reading_of_the_threshold(tmp_path, fine_tuned):
    report = run_compression(spec_for(tmp_path, fine_tuned, max_accuracy_drop=-50.0), MemoryReporter())
    guard = report["guard"]
    assert guard["passed"] is False and guard["perplexity_increase_percent"] > -50
    assert guard["failure"].startswith("Accuracy guard failed (chat model): validation perplexity rose")
    assert "perplexity increase in percent" in guard["failure"]


def test_prune_of_a_chat_model_is_refused_by_the_worker(tmp_path, fine_tuned):
    with pytest.raises(ValueError, match="prune is not supported for chat models yet"):
        run_compression(spec_for(tmp_path, fine_tuned, kind="prune"), MemoryReporter())
