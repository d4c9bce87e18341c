"""One fine-tune across 2 processes with torch.distributed (gloo on CPU: the code path CUDA hosts take with
NCCL): the ranks' averaged gradients give exactly the model a single process gets by accumulating the same
two batches per step, rank 0's reports reach the worker's Reporter, a stop reaches every rank, and a rank
that cannot train fails the run with its log."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.tiny_model import slice_rows
from workers.distributed import DistributedRunError
from workers.finetune import run_finetune
from workers.reporting import MemoryReporter
from workers.spec import FineTuneSpec

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torchrun_group_at_a_time")]


@pytest.fixture(scope="module")
def no_dropout_bert(tmp_path_factory) -> Path:
    """The tiny BERT without dropout: the two runs compared below must not differ by random masks."""
    from transformers import BertConfig, BertModel

    from tests.tiny_model import build_tokenizer

    folder = tmp_path_factory.mktemp("bert-no-dropout")
    tokenizer = build_tokenizer(folder)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128, hidden_dropout_prob=0.0,
                        attention_probs_dropout_prob=0.0, classifier_dropout=0.0)
    BertModel(config).save_pretrained(folder, safe_serialization=True)
    return folder


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("data")
    rows = slice_rows()
    labels = sorted({r["label"] for r in rows})[:4]
    rows = [r for r in rows if r["label"] in labels]
    train, validation = folder / "train.jsonl", folder / "validation.jsonl"
    kept = [r for i, r in enumerate(rows) if i % 5]
    with train.open("w") as tr, validation.open("w") as va:
        for i, r in enumerate(rows):
            (va if i % 5 == 0 else tr).write(json.dumps(r) + "\n")
    # A batch size giving an even number of batches: every step of the accumulating run pairs two batches,
    # as the two ranks do (an odd last batch would step alone there and be dropped here).
    batch_size = next(b for b in range(8, 2, -1) if math.ceil(len(kept) / b) % 2 == 0)
    return train, validation, labels, batch_size


def spec_for(folder: Path, model: Path, data, **overrides) -> FineTuneSpec:
    train, validation, labels, batch_size = data
    values = dict(task="text_classification", base_model_path=str(model), train_file=str(train),
                  validation_file=str(validation), labels=labels, output_dir=str(folder / "out"),
                  checkpoint_dir=str(folder / "ckpt"), epochs=2, learning_rate=3e-3, batch_size=batch_size,
                  checkpoint_every_steps=1000, early_stopping_patience=None, torch_threads=1, device="cpu",
                  precision="fp32")
    values.update(overrides)
    return FineTuneSpec(**values)


def test_two_ranks_train_the_model_one_process_gets_by_accumulating_their_batches(tmp_path, no_dropout_bert, data):
    reporter = MemoryReporter()
    together = run_finetune(spec_for(tmp_path / "ddp", no_dropout_bert, data, world_size=2), reporter)
    alone = run_finetune(spec_for(tmp_path / "one", no_dropout_bert, data, gradient_accumulation_steps=2), MemoryReporter())

    assert together.status == alone.status == "succeeded"
    assert together.global_step == together.total_steps == alone.global_step
    shared = load_file(tmp_path / "ddp" / "out" / "model" / "model.safetensors")
    single = load_file(tmp_path / "one" / "out" / "model" / "model.safetensors")
    assert shared.keys() == single.keys()
    for name in shared:
        assert torch.allclose(shared[name], single[name], atol=1e-5), name
    base = load_file(no_dropout_bert / "model.safetensors")
    moved = [k for k in base if f"bert.{k}" in shared and not torch.allclose(base[k], shared[f"bert.{k}"])]
    assert moved  # it trained
    assert together.best_metrics["accuracy"] == pytest.approx(alone.best_metrics["accuracy"])
    # Rank 0 reported through the worker's reporter: progress, metrics, the artifacts; once each.
    steps = [step for step, _total, _epoch in reporter.progress_calls]
    assert steps == list(range(1, together.total_steps + 1))
    assert {a["name"] for a in reporter.artifacts} == {"model.zip", "eval_report.json", "README.md"}
    assert together.train_examples_seen == alone.train_examples_seen  # both ranks' examples counted


def test_a_stop_reaches_every_rank_at_the_same_step(tmp_path, no_dropout_bert, data):
    reporter = MemoryReporter(stop_after_steps=2)
    result = run_finetune(spec_for(tmp_path, no_dropout_bert, data, world_size=2, epochs=5), reporter)
    assert result.status == "stopped" and result.stop_reason == "cancelled" and result.global_step == 2
    assert [s for s, _t, _e in reporter.progress_calls] == [1, 2]  # no rank went on alone (it would hang or step)
    # The stop's checkpoint is rank 0's, written once.
    assert [c["step"] for c in reporter.checkpoints if not c["is_best"]] == [2]


def test_a_run_that_cannot_shard_fails_with_its_log(tmp_path, no_dropout_bert, data):
    train, validation, labels, _batch = data
    with pytest.raises(DistributedRunError, match="fewer batches"):
        run_finetune(spec_for(tmp_path, no_dropout_bert, data, world_size=2, batch_size=512), MemoryReporter())
