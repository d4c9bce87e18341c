"""One loader for every model Lathe delivers, unpacked from its archive:

- an encoder classifier in fp32/bf16 safetensors (fine-tune, prune, distill, uploaded models);
- the int8 PyTorch classifier of `quantize` (quantization.json + int8 safetensors);
- the int8 ONNX classifier of `quantize` (model.int8.onnx, run by onnxruntime);
- a causal LM (chat fine-tune, merged) and its int8 variant.

`load_model(folder)` tells them apart by their files and returns a `LoadedModel` whose
`classify` / `reply` are what the callers use. A GPU serving engine (vLLM, TGI) would be
another `LoadedModel` behind the same two calls (docs/inference.md)."""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field

import torch

CLASSIFIER = "classifier"
CHAT = "chat"


def folder_bytes(folder: str) -> int:
    return sum(os.path.getsize(os.path.join(root, f)) for root, _d, files in os.walk(folder) for f in files)


@dataclass
class Classification:
    label: str
    score: float
    scores: dict[str, float]  # every label's probability, in the model's label order


@dataclass
class Reply:
    content: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str  # "stop" | "length" (OpenAI's words)


@dataclass
class LoadedModel:
    """A model ready to answer, with what it costs to keep (`size_bytes`, for the LRU)."""

    kind: str  # CLASSIFIER | CHAT
    variant: str  # fp32 | torch_int8 | onnx_int8
    model: object
    tokenizer: object
    labels: list[str] = field(default_factory=list)
    task: str = "text_classification"
    max_length: int = 128
    size_bytes: int = 0
    load_seconds: float = 0.0

    # --- classifiers ------------------------------------------------------------------------------

    def classify(self, inputs: list[dict], *, batch_size: int = 32) -> list[Classification]:
        """inputs: {"text"} (or {"text_a", "text_b"} for pairs) per row; sorted by length into batches."""
        if self.kind != CLASSIFIER:
            raise ValueError("This model generates text; send chat messages instead.")
        order = sorted(range(len(inputs)), key=lambda i: len(_text_of(inputs[i])))
        out: list[Classification | None] = [None] * len(inputs)
        with torch.inference_mode():
            for start in range(0, len(order), batch_size):
                chunk = order[start:start + batch_size]
                rows = [inputs[i] for i in chunk]
                if self.task == "text_pair_classification":
                    batch = self.tokenizer([r["text_a"] for r in rows], [r["text_b"] for r in rows], truncation=True,
                                           max_length=self.max_length, padding=True, return_tensors="pt")
                else:
                    batch = self.tokenizer([r["text"] for r in rows], truncation=True, max_length=self.max_length,
                                           padding=True, return_tensors="pt")
                logits = self.model(**dict(batch)).logits.float()
                probabilities = torch.softmax(logits, dim=-1).tolist()
                for i, row in zip(chunk, probabilities):
                    best = max(range(len(row)), key=row.__getitem__)
                    out[i] = Classification(label=self.labels[best], score=row[best],
                                            scores={label: p for label, p in zip(self.labels, row)})
        return out  # type: ignore[return-value]

    # --- chat models --------------------------------------------------------------------------------

    def reply(self, conversations: list[list[dict]], *, max_new_tokens: int = 128, temperature: float = 0.0,
              top_p: float = 1.0, seed: int | None = None, batch_size: int = 1) -> list[Reply]:
        """Each conversation (role/content messages, ending on a user turn) answered, in input order.

        Greedy (temperature 0) replies are generated `batch_size` at a time, length-sorted and left-padded
        (bench/chat_batched_replies.py measures what that buys). Sampled replies stay at batch 1, so a seed
        gives the same reply whichever conversations came with it."""
        if self.kind != CHAT:
            raise ValueError("This model is a classifier; send texts to classify instead.")
        from transformers import GenerationConfig

        base = self.model.generation_config
        pad_id = base.pad_token_id if base.pad_token_id is not None else self.tokenizer.pad_token_id
        config = GenerationConfig(
            max_new_tokens=max_new_tokens, do_sample=temperature > 0, eos_token_id=base.eos_token_id,
            pad_token_id=pad_id, **({"temperature": temperature, "top_p": top_p} if temperature > 0 else {}))
        stop = set(base.eos_token_id if isinstance(base.eos_token_id, list) else [base.eos_token_id]) - {None}
        if seed is not None:
            torch.manual_seed(seed)
        prompts = [self._prompt_ids(messages) for messages in conversations]
        size = max(1, batch_size) if temperature <= 0 else 1
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
        replies: list[Reply | None] = [None] * len(prompts)
        with torch.inference_mode():
            for start in range(0, len(order), size):
                chunk = order[start:start + size]
                longest = max(len(prompts[i]) for i in chunk)
                input_ids = torch.full((len(chunk), longest), pad_id, dtype=torch.long)
                attention_mask = torch.zeros((len(chunk), longest), dtype=torch.long)
                for row, i in enumerate(chunk):  # left padding: every prompt ends where generation starts
                    input_ids[row, longest - len(prompts[i]):] = torch.tensor(prompts[i])
                    attention_mask[row, longest - len(prompts[i]):] = 1
                output = self.model.generate(input_ids=input_ids, attention_mask=attention_mask,
                                             generation_config=config)[:, longest:].tolist()
                for row, i in enumerate(chunk):
                    replies[i] = self._reply_of(output[row], prompt_tokens=len(prompts[i]), stop=stop,
                                                max_new_tokens=max_new_tokens)
        return replies  # type: ignore[return-value]

    def _prompt_ids(self, messages: list[dict]) -> list[int]:
        ids = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
        if hasattr(ids, "keys"):  # newer transformers return a BatchEncoding
            ids = ids["input_ids"]
        return list(ids)[-self.max_length:]

    def _reply_of(self, tokens: list[int], *, prompt_tokens: int, stop: set, max_new_tokens: int) -> Reply:
        """One row of a batch's output: up to and including its first stop token (what follows is padding
        while the other rows went on)."""
        ended = next((n for n, token in enumerate(tokens) if token in stop), None)
        if ended is not None:
            tokens = tokens[:ended + 1]
        return Reply(content=self.tokenizer.decode(tokens, skip_special_tokens=True).strip(),
                     prompt_tokens=prompt_tokens, completion_tokens=len(tokens),
                     finish_reason="stop" if ended is not None or len(tokens) < max_new_tokens else "length")


def _text_of(row: dict) -> str:
    return row.get("text") or (row.get("text_a", "") + row.get("text_b", ""))


def _is_causal_lm(config) -> bool:
    return any(a.endswith("ForCausalLM") for a in (getattr(config, "architectures", None) or []))


def load_model(folder: str, *, threads: int | None = None) -> LoadedModel:
    """The model unpacked in `folder` (a model archive's files), on CPU, in eval mode."""
    from transformers import AutoConfig, AutoTokenizer

    from ..compression.onnx_export import ONNX_FILE
    from ..compression.quantize import QUANT_CONFIG

    if threads:
        torch.set_num_threads(threads)
    started = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    config = AutoConfig.from_pretrained(folder)
    int8 = os.path.exists(os.path.join(folder, QUANT_CONFIG))
    if _is_causal_lm(config):
        from transformers import AutoModelForCausalLM, GenerationConfig

        if int8:
            from ..compression.chat_quantize import load_chat_int8

            model = load_chat_int8(folder)
        else:
            model = AutoModelForCausalLM.from_pretrained(folder, use_safetensors=True, torch_dtype=torch.float32).eval()
            if os.path.exists(os.path.join(folder, "generation_config.json")):
                model.generation_config = GenerationConfig.from_pretrained(folder)
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        loaded = LoadedModel(kind=CHAT, variant="torch_int8" if int8 else "fp32", model=model, tokenizer=tokenizer,
                             max_length=int(getattr(config, "max_position_embeddings", 2048) or 2048))
    else:
        labels = [config.id2label[i] for i in range(config.num_labels)]
        if os.path.exists(os.path.join(folder, ONNX_FILE)):
            from ..compression.onnx_export import OnnxClassifier

            model, variant = OnnxClassifier(folder, threads=threads), "onnx_int8"
        elif int8:
            from ..compression.quantize import load_int8

            model, variant = load_int8(folder), "torch_int8"
        else:
            from transformers import AutoModelForSequenceClassification

            model = AutoModelForSequenceClassification.from_pretrained(folder, use_safetensors=True).float().eval()
            variant = "fp32"
        loaded = LoadedModel(kind=CLASSIFIER, variant=variant, model=model, tokenizer=tokenizer, labels=labels,
                             task=_task_of(folder),
                             max_length=min(512, int(getattr(config, "max_position_embeddings", 512) or 512)))
    loaded.size_bytes = folder_bytes(folder)
    loaded.load_seconds = time.perf_counter() - started
    return loaded


def _task_of(folder: str) -> str:
    """A pair classifier says so in lathe.json (written by the platform when it unpacks); text otherwise."""
    path = os.path.join(folder, "lathe.json")
    if os.path.exists(path):
        with open(path) as fh:
            return json.load(fh).get("task", "text_classification")
    return "text_classification"
