"""Chat fine-tuning end to end on a tiny LLaMA (workers/chat/train.py): it learns, both methods export
folders plain transformers loads and generates with, the card's code runs on the download, resume is
exact, cancel stops, packing trains the same weights, the stored spec is rebuilt strictly."""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.card_runner import check_named_files, code_blocks, run_card, unzip
from tests.tiny_model import CHATML_TEMPLATE, build_tiny_llama, chat_rows
from workers import kinds
from workers.chat.train import run_chat_finetune
from workers.reporting import MemoryReporter
from workers.spec import ChatFineTuneSpec


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory) -> Path:
    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="module")
def chats(tmp_path_factory):
    """The memorisable set: train on all facts, validate on the first six (the same questions)."""
    folder = tmp_path_factory.mktemp("chats")
    rows = chat_rows()
    train, validation = folder / "train.jsonl", folder / "validation.jsonl"
    train.write_text("".join(json.dumps(r) + "\n" for r in rows))
    validation.write_text("".join(json.dumps(r) + "\n" for r in rows[:6]))
    return train, validation


def spec_for(tmp_path, tiny_llama, chats, **overrides) -> ChatFineTuneSpec:
    train, validation = chats
    values = dict(base_model_path=str(tiny_llama), train_file=str(train), validation_file=str(validation),
                  output_dir=str(tmp_path / "out"), checkpoint_dir=str(tmp_path / "ckpt"), method="full", epochs=3,
                  batch_size=4, learning_rate=3e-2, max_length=64, checkpoint_every_steps=4, early_stopping_patience=None,
                  torch_threads=1, precision="fp32", card={"base_model": {"name": "tiny-llama"}, "user_set": ["epochs"]})
    values.update(overrides)
    return ChatFineTuneSpec(**values)


def chat(folder: Path, question: str) -> str:
    """What a customer does with model.zip: plain transformers, the saved chat template and generation config."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, use_safetensors=True).eval()
    inputs = tokenizer.apply_chat_template([{"role": "user", "content": question}], add_generation_prompt=True,
                                           return_tensors="pt", return_dict=True)
    with torch.inference_mode():
        output = model.generate(**inputs, max_new_tokens=12, do_sample=False)
    return tokenizer.decode(output[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True).strip()


def test_full_fine_tune_learns_the_replies_and_the_download_says_them(tmp_path, tiny_llama, chats):
    reporter = MemoryReporter()
    result = run_chat_finetune(spec_for(tmp_path, tiny_llama, chats, epochs=60), reporter)
    assert result.status == "succeeded" and result.global_step == result.total_steps == 60 * 3
    losses = [h["eval_loss"] for h in result.history]
    assert len(losses) == 60 and losses[-1] < losses[0] / 5  # it memorises
    assert result.best_metrics["perplexity"] == pytest.approx(2.718281828 ** result.best_metrics["eval_loss"])
    per_epoch = result.data["train"]["trained_tokens"]
    assert result.train_tokens == 60 * per_epoch  # trained (label != -100) tokens, every epoch
    assert result.input_tokens == 60 * result.data["train"]["tokens"]
    assert any("tokens_per_second" in m and "trained_tokens" in m for m in reporter.metric_calls)
    # Generations: the base model (before the first step) and the fine-tuned one, side by side.
    assert result.generation["prompts"] == 6 and result.generation["base"]["exact_match"] == 0.0
    assert result.generation["finetuned"]["exact_match"] >= 0.5
    out = tmp_path / "out"
    assert {a["name"] for a in reporter.artifacts} == {"model.zip", "eval_report.json", "generations.json", "README.md"}
    generations = json.loads((out / "generations.json").read_text())
    assert set(generations[0]) >= {"prompt", "reference", "base", "generated", "exact_match", "token_f1"}
    # The download, loaded by plain transformers, says what the worker's evaluation heard.
    model_dir = out / "model"
    assert (model_dir / "model.safetensors").exists() and (model_dir / "chat_template.jinja").exists()
    for example in generations[:3]:
        assert chat(model_dir, example["prompt"][-1]["content"]) == example["generated"]
    report = json.loads((out / "eval_report.json").read_text())
    best = next(h for h in result.history if h["step"] == report["best"]["step"])
    assert report["best"]["metrics"]["eval_loss"] == best["eval_loss"] <= min(losses) * 1.001
    assert report["trained_tokens"] == result.train_tokens


def test_lora_exports_the_adapter_and_a_merged_model_whose_cards_run(tmp_path, tiny_llama, chats):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    reporter = MemoryReporter()
    spec = spec_for(tmp_path, tiny_llama, chats, method="lora", epochs=4, lora_r=4, lora_alpha=8,
                    lora_targets=["q_proj", "v_proj", "gate_proj"], eval_generations=2)
    result = run_chat_finetune(spec, reporter)
    assert result.status == "succeeded"
    losses = [h["eval_loss"] for h in result.history]
    assert min(losses[1:]) < losses[0]
    downloads = {a["name"] for a in reporter.artifacts}
    assert downloads >= {"adapter.zip", "model.zip"}
    out = tmp_path / "out"
    settings = json.loads((out / "adapter" / "adapter_config.json").read_text())
    assert settings["base_model_name_or_path"] == "tiny-llama" and settings["task_type"] == "CAUSAL_LM"
    merged = AutoModelForCausalLM.from_pretrained(out / "model", use_safetensors=True).eval()
    assert not any("lora" in name for name, _ in merged.named_parameters())
    # The merged model is the adapter on its base.
    base = AutoModelForCausalLM.from_pretrained(tiny_llama, use_safetensors=True)
    with warnings.catch_warnings():  # peft 0.21 on transformers 5: its deprecation notice
        warnings.filterwarnings("ignore", "`is_gradient_checkpointing` is deprecated", FutureWarning)
        adapted = PeftModel.from_pretrained(base, out / "adapter").eval()
    ids = torch.tensor([[1, 5, 9, 12, 2]])
    with torch.no_grad():
        assert torch.allclose(merged(ids).logits, adapted(ids).logits, atol=1e-5)
    # Each card's code, run as a customer would on the unzipped archive (offline, warnings are errors).
    for archive, replace in (("model.zip", None), ("adapter.zip", {"base": str(tiny_llama)})):
        folder, members = unzip((out / archive).read_bytes(), tmp_path / archive.removesuffix(".zip"))
        card = (folder / "README.md").read_text()
        check_named_files(card, members, downloads)
        assert "pipeline_tag: text-generation" in card and "| epochs | 4 | you |" in card
        (code,) = code_blocks(card)
        outcome = run_card(code + "\nlabel = reply\n", folder, replace=replace)
        assert isinstance(outcome["label"], str)


def test_stop_then_resume_equals_an_uninterrupted_run(tmp_path, tiny_llama, chats):
    """LoRA with dropout: the resumed run needs the checkpoint's weights, optimizer, schedule, RNG and
    position in the epoch to end on the same weights."""
    options = dict(method="lora", epochs=2, lora_r=4, lora_dropout=0.1, eval_generations=0, checkpoint_every_steps=2)
    straight = run_chat_finetune(spec_for(tmp_path / "straight", tiny_llama, chats, **options), MemoryReporter())
    stopper = MemoryReporter(stop_after_steps=4)  # mid-way through the second epoch
    stopped = run_chat_finetune(spec_for(tmp_path / "resumed", tiny_llama, chats, **options), stopper)
    assert stopped.status == "stopped" and stopped.stop_reason == "cancelled" and stopped.global_step == 4
    assert stopper.checkpoints[-1]["step"] == 4
    resumer = MemoryReporter()
    resumed = run_chat_finetune(spec_for(tmp_path / "resumed", tiny_llama, chats, **options), resumer)
    assert any("Resumed from checkpoint at step 4" in message for _, message in resumer.events)
    assert [p[0] for p in resumer.progress_calls] == [5, 6]  # no step repeated, none skipped
    assert resumed.global_step == straight.global_step == 6
    assert resumed.best_metrics == straight.best_metrics
    ws = load_file(tmp_path / "straight" / "out" / "adapter" / "adapter_model.safetensors")
    wr = load_file(tmp_path / "resumed" / "out" / "adapter" / "adapter_model.safetensors")
    assert ws.keys() == wr.keys() and all(torch.equal(ws[k], wr[k]) for k in ws)


def test_packing_trains_the_same_weights_as_padding(tmp_path, tiny_llama, chats):
    """Same conversations per step, another layout: with gradient accumulation too, the weights agree (a
    small learning rate: Adam turns a float-rounding difference in a near-zero gradient into a full step)."""
    options = dict(epochs=1, batch_size=3, gradient_accumulation_steps=2, eval_generations=0, max_length=96,
                   learning_rate=1e-3)
    padded = run_chat_finetune(spec_for(tmp_path / "padded", tiny_llama, chats, **options), MemoryReporter())
    packed = run_chat_finetune(spec_for(tmp_path / "packed", tiny_llama, chats, packing=True, **options), MemoryReporter())
    assert padded.total_steps == packed.total_steps == 2  # 4 batches, 2 per optimizer step
    wa = load_file(tmp_path / "padded" / "out" / "model" / "model.safetensors")
    wb = load_file(tmp_path / "packed" / "out" / "model" / "model.safetensors")
    assert all(torch.allclose(wa[k], wb[k], atol=1e-5) for k in wa)
    assert padded.best_metrics["eval_loss"] == pytest.approx(packed.best_metrics["eval_loss"], rel=1e-6)


def test_early_stopping_on_the_validation_loss(tmp_path, tiny_llama, chats):
    reporter = MemoryReporter()
    result = run_chat_finetune(spec_for(tmp_path, tiny_llama, chats, epochs=6, learning_rate=1e-7,
                                        early_stopping_patience=1, eval_generations=0, warmup_ratio=0.5), reporter)
    assert result.status == "succeeded" and len(result.history) < 6
    assert any("Early stop" in message for _, message in reporter.events)


def test_unusable_data_is_an_error_naming_why(tmp_path, tiny_llama):
    train = tmp_path / "train.jsonl"
    train.write_text(json.dumps({"messages": [{"role": "user", "content": "Hi"},
                                              {"role": "assistant", "content": "Hello", "weight": 0}]}) + "\n")
    with pytest.raises(ValueError, match="no assistant message with weight 1"):
        run_chat_finetune(spec_for(tmp_path, tiny_llama, (train, train)), MemoryReporter())


def test_a_model_without_a_chat_template_trains_with_the_one_the_spec_gives(tmp_path, chats):
    bare = build_tiny_llama(tmp_path / "bare", chat_template=None)
    with pytest.raises(ValueError, match="no chat template"):
        run_chat_finetune(spec_for(tmp_path, bare, chats), MemoryReporter())
    result = run_chat_finetune(spec_for(tmp_path, bare, chats, epochs=1, eval_generations=0,
                                        chat_template=CHATML_TEMPLATE), MemoryReporter())
    assert result.status == "succeeded"
    assert (tmp_path / "out" / "model" / "chat_template.jinja").read_text() == CHATML_TEMPLATE


def test_the_stored_spec_is_rebuilt_strictly(tmp_path):
    fixed = dict(base_model_path="m", train_file="t", validation_file="v", output_dir="o", checkpoint_dir="c")
    with pytest.raises(ValueError, match="epoch.*accepted: .*epochs"):
        kinds.strict(ChatFineTuneSpec, {"epoch": 2}, **fixed)
    spec = kinds.strict(ChatFineTuneSpec, {"epochs": 2, "lora_targets": ["q_proj"]}, **fixed)
    assert spec.epochs == 2 and spec.method == "lora"
    declared = kinds.defaults(kinds.ChatFineTuneHyperparameters)
    assert {name: getattr(spec, name) for name in declared if name not in ("epochs", "lora_targets")} == {
        name: value for name, value in declared.items() if name not in ("epochs", "lora_targets")}
    assert kinds.KINDS["chat_finetune"] is kinds.ChatFineTuneHyperparameters


def test_a_test_set_is_scored_once_by_the_delivered_model(tmp_path, tiny_llama, chats):
    """Scored with the best checkpoint (the delivered model): with the validation rows as the test file, its loss
    is the best epoch's validation loss and its exact match the side-by-side generations' — and the download,
    run by plain transformers, gives the same replies."""
    from workers.chat.evaluation import exact_match

    _, validation = chats
    reporter = MemoryReporter()
    result = run_chat_finetune(spec_for(tmp_path, tiny_llama, chats, epochs=40, test_file=str(validation),
                                        generation_max_new_tokens=12), reporter)
    test = result.test_metrics
    assert test["conversations"] == test["replies_scored"] == 6
    best = next(h for h in result.history if h["eval_loss"] == result.best_metrics["eval_loss"])
    assert test["eval_loss"] == pytest.approx(best["eval_loss"], rel=1e-6)
    assert test["exact_match"] == result.generation["finetuned"]["exact_match"] > 0
    rows = [json.loads(line) for line in validation.read_text().splitlines()]
    heard = [chat(tmp_path / "out" / "model", r["messages"][0]["content"]) for r in rows]
    assert test["exact_match"] == pytest.approx(sum(exact_match(h, r["messages"][-1]["content"])
                                                    for h, r in zip(heard, rows)) / len(rows))
    report = json.loads((tmp_path / "out" / "eval_report.json").read_text())
    assert report["test"] == test and report["data"]["test"]["used"] == 6
    assert "## Test set (6 conversations" in (tmp_path / "out" / "model" / "README.md").read_text()
    assert any(message.startswith("Test set (6 conversations") for _, message in reporter.events)


def test_a_carved_test_split_is_never_trained_on(tmp_path, tiny_llama, chats):
    from workers.chat.data import carve_test_conversations, read_conversations

    train, _ = chats
    rest, held = carve_test_conversations(read_conversations(str(train)), 0.25)
    result = run_chat_finetune(spec_for(tmp_path, tiny_llama, chats, epochs=2, test_fraction=0.25), MemoryReporter())
    assert result.data["train"]["conversations"] == len(rest) and result.data["test"]["conversations"] == len(held) > 0
    assert result.test_metrics["conversations"] == len(held)
    assert result.train_tokens == 2 * result.data["train"]["trained_tokens"]  # two epochs over the rest only


def test_carving_conversations_is_seeded_whole_and_keeps_duplicates_together():
    from workers.chat.data import carve_test_conversations

    conversations = [[{"role": "user", "content": f"q{i % 15}"}, {"role": "assistant", "content": f"a{i % 15}"}]
                     for i in range(40)]  # 15 distinct, most of them twice or three times
    rest, held = carve_test_conversations(conversations, 0.2)
    assert (rest, held) == carve_test_conversations(conversations, 0.2)  # the same rows every attempt
    assert len(rest) + len(held) == 40 and 6 <= len(held) <= 10
    assert not {json.dumps(c) for c in rest} & {json.dumps(c) for c in held}  # a duplicate never crosses
    assert rest == [c for c in conversations if c in rest]  # input order kept
    assert carve_test_conversations(conversations, 0.2, seed=1) != (rest, held)
    alone = [conversations[0]] * 3
    assert carve_test_conversations(alone, 0.5) == (alone, [])  # one distinct conversation stays in training
