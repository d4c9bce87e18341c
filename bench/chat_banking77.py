"""(issue 15) The price-war question on BANKING77: a chat model (LoRA SFT of SmolLM2-135M-Instruct, the
intent name as its reply) against the encoder fine-tune (all-MiniLM-L6-v2 with a classifier head) on the
same rows, both through the worker's real training paths, scored on the same held-back rows.

    nice -n 10 .venv/bin/python bench/chat_banking77.py [--examples-per-label 4] [--test-per-label 2]
                                                       [--epochs 2] [--threads N] [--out FILE]

Rows: per intent, seeded, `--test-per-label` held back (never trained or validated on), one for validation,
`--examples-per-label` for training. The chat frame is bench/chat_packing's: a system prompt, the query as the
user message, the intent name as the assistant reply (trained on the reply only).

Reported per model: held-back accuracy (chat: exact match of the greedy reply, after the worker's answer
normalization; encoder: argmax label), train seconds, tokens/s (chat: every token through the model, per the
worker), prediction seconds over the held-back rows (chat: greedy generation, batch 8; encoder: one forward,
batch 32), and the costs at the CPU rate of the seeded plans (billing/plans.py RATES["cpu"], USD per
device-second): training, and **per 1,000 correct answers** (prediction seconds × rate ÷ correct × 1,000) — what
serving the model costs for each right answer. `--examples-per-label 4` fits 2 CPU cores in about 15 minutes;
the full split (`--examples-per-label 1000`) is for a GPU.
"""
from __future__ import annotations

import argparse
import csv
import json
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "platform")]
from chat_packing import BANKING77, SYSTEM, smollm2_folder  # noqa: E402


def split_rows(examples_per_label: int, test_per_label: int, seed: int = 2077) -> dict[str, list[dict]]:
    by_label: dict[str, list[dict]] = {}
    for row in csv.DictReader(BANKING77.open(encoding="utf-8")):
        by_label.setdefault(row["category"], []).append({"text": row["text"], "label": row["category"]})
    rng = random.Random(seed)
    out = {"train": [], "validation": [], "test": []}
    for label in sorted(by_label):
        rows = by_label[label]
        rng.shuffle(rows)
        out["test"] += rows[:test_per_label]
        out["validation"] += rows[test_per_label:test_per_label + 1]
        out["train"] += rows[test_per_label + 1:test_per_label + 1 + examples_per_label]
    return out


def as_chat(row: dict) -> dict:
    return {"messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": row["text"]},
                         {"role": "assistant", "content": row["label"]}]}


def write_jsonl(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def cpu_rate() -> float:
    from billing.plans import RATES

    return float(RATES["cpu"])


def run_chat(rows, workdir: Path, args) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from workers.chat.data import ChatEncoder
    from workers.chat.evaluation import exact_match, generate_replies
    from workers.chat.train import pad_token_id_of, run_chat_finetune
    from workers.reporting import MemoryReporter
    from workers.spec import ChatFineTuneSpec

    spec = ChatFineTuneSpec(
        base_model_path=str(smollm2_folder()), train_file=write_jsonl(workdir / "chat-train.jsonl", [as_chat(r) for r in rows["train"]]),
        validation_file=write_jsonl(workdir / "chat-validation.jsonl", [as_chat(r) for r in rows["validation"]]),
        output_dir=str(workdir / "chat-out"), checkpoint_dir=str(workdir / "chat-ckpt"), method="lora",
        epochs=args.epochs, learning_rate=2e-4, batch_size=8, max_length=128, eval_generations=0,
        early_stopping_patience=0, torch_threads=args.threads, device="cpu")
    result = run_chat_finetune(spec, MemoryReporter())
    folder = workdir / "chat-out" / "model"
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    encoder = ChatEncoder(tokenizer, max_length=128)
    prompts = [{"prompt_ids": encoder.prompt_ids(as_chat(r)["messages"]), "reference": r["label"]} for r in rows["test"]]
    started = time.perf_counter()
    replies = generate_replies(model, tokenizer, prompts, max_new_tokens=16, stop_ids=encoder.end_of_turn_ids(),
                               pad_token_id=pad_token_id_of(tokenizer), device=torch.device("cpu"),
                               precision=result.precision, batch_size=8)
    predict_seconds = time.perf_counter() - started
    correct = sum(exact_match(reply, p["reference"]) for reply, p in zip(replies, prompts))
    return {"model": "SmolLM2-135M-Instruct, LoRA (all projections), greedy reply", "precision": result.precision,
            "train_seconds": round(result.train_seconds, 1), "tokens_per_second": round(result.input_tokens / result.train_seconds, 1),
            "trained_tokens": result.train_tokens, "validation": result.best_metrics,
            "correct": int(correct), "test_rows": len(prompts), "accuracy": round(correct / len(prompts), 4),
            "predict_seconds": round(predict_seconds, 2),
            "examples": [{"reference": p["reference"], "reply": r} for p, r in list(zip(prompts, replies))[:8]]}


def run_encoder(rows, workdir: Path, args) -> dict:
    import torch
    from _banking77 import minilm_path
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from workers.finetune import run_finetune
    from workers.reporting import MemoryReporter
    from workers.spec import FineTuneSpec

    labels = sorted({r["label"] for r in rows["train"]})
    spec = FineTuneSpec(
        task="text_classification", base_model_path=minilm_path(), labels=labels,
        train_file=write_jsonl(workdir / "enc-train.jsonl", rows["train"]),
        validation_file=write_jsonl(workdir / "enc-validation.jsonl", rows["validation"]),
        test_file=write_jsonl(workdir / "enc-test.jsonl", rows["test"]), output_dir=str(workdir / "enc-out"),
        checkpoint_dir=str(workdir / "enc-ckpt"), epochs=max(8, args.epochs), learning_rate=2e-4,
        batch_size=16, max_length=64, refit=False, torch_threads=args.threads, device="cpu")
    result = run_finetune(spec, MemoryReporter())
    folder = workdir / "enc-out" / "model"
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    started = time.perf_counter()
    predicted = []
    with torch.inference_mode():
        for start in range(0, len(rows["test"]), 32):
            chunk = rows["test"][start:start + 32]
            batch = tokenizer([r["text"] for r in chunk], truncation=True, max_length=64, padding=True, return_tensors="pt")
            predicted += model(**batch).logits.argmax(-1).tolist()
    predict_seconds = time.perf_counter() - started
    id2label = model.config.id2label
    correct = sum(id2label[p] == r["label"] for p, r in zip(predicted, rows["test"]))
    return {"model": "all-MiniLM-L6-v2 + classifier, full fine-tune", "precision": result.precision,
            "train_seconds": round(result.train_seconds, 1),
            "examples_per_second": round(result.train_examples_seen / result.train_seconds, 1),
            "validation": result.best_metrics, "worker_test_accuracy": result.test_metrics["accuracy"],
            "correct": int(correct), "test_rows": len(rows["test"]), "accuracy": round(correct / len(rows["test"]), 4),
            "predict_seconds": round(predict_seconds, 2)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--examples-per-label", type=int, default=4)
    parser.add_argument("--test-per-label", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=2, help="chat epochs (the encoder trains at least 8)")
    parser.add_argument("--threads", type=int)
    parser.add_argument("--models", default="encoder,chat")
    parser.add_argument("--out")
    args = parser.parse_args()
    rows = split_rows(args.examples_per_label, args.test_per_label)
    rate = cpu_rate()
    out = {"rows": {k: len(v) for k, v in rows.items()}, "usd_per_cpu_second": rate, "models": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            started = time.perf_counter()
            figures = (run_chat if name == "chat" else run_encoder)(rows, Path(tmp), args)
            figures["wall_seconds"] = round(time.perf_counter() - started, 1)
            figures["train_cost_usd"] = round(figures["train_seconds"] * rate, 6)
            figures["usd_per_1000_correct"] = (round(figures["predict_seconds"] * rate / figures["correct"] * 1000, 6)
                                               if figures["correct"] else None)
            out["models"][name] = figures
            print(name, json.dumps(figures), flush=True)
    print("\n| model | held-back accuracy | train | tokens/s or examples/s | predict (held-back) | train cost | cost per 1,000 correct |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, f in out["models"].items():
        speed = f.get("tokens_per_second") or f.get("examples_per_second")
        print(f"| {name} | {100 * f['accuracy']:.1f} % ({f['correct']}/{f['test_rows']}) | {f['train_seconds']} s | {speed} | "
              f"{f['predict_seconds']} s | ${f['train_cost_usd']:.4f} | "
              f"{'$%.6f' % f['usd_per_1000_correct'] if f['usd_per_1000_correct'] else '—'} |")
    if {"chat", "encoder"} <= set(out["models"]):
        chat, encoder = out["models"]["chat"], out["models"]["encoder"]
        if chat["usd_per_1000_correct"] and encoder["usd_per_1000_correct"]:
            out["chat_over_encoder_cost_per_correct"] = round(chat["usd_per_1000_correct"] / encoder["usd_per_1000_correct"], 1)
            print(f"\nchat / encoder cost per correct answer: {out['chat_over_encoder_cost_per_correct']}×")
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
