"""The inference worker's engine, free of Django: the models it keeps loaded (cache.ModelCache: LRU by count
and bytes, one load per model even when asked twice at once) and the calls try-it makes on them.

`LocalEngine` runs a model in this process (runtime.load_model: PyTorch/transformers, onnxruntime for the
int8 ONNX variants), one call at a time per model: a fast tokenizer is not safe to call from two threads at
once ("Already borrowed"), and on CPU one call already uses every core torch is given, so requests for
the same model queue here while requests for different models run side by side.

The seam for a GPU serving engine (vLLM, TGI): another class with the same three methods
(`classify`, `reply`, `snapshot`), chosen by the platform when the worker starts (docs/inference.md).
Such an engine batches concurrent requests continuously and keeps the KV cache across them, which this
one does not."""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Callable, Protocol

from .cache import ModelCache
from .runtime import Classification, LoadedModel, Reply, load_model


@dataclass
class Answer:
    outputs: list  # Classification per input, or Reply per conversation
    warm: bool  # the model was already loaded
    load_seconds: float  # 0 when warm: unpacking + loading otherwise
    variant: str
    labels: list[str]


class Engine(Protocol):
    def classify(self, *, key: str, locate: Callable[[], str], inputs: list[dict], batch_size: int = 32) -> Answer: ...

    def reply(self, *, key: str, locate: Callable[[], str], conversations: list[list[dict]], **options) -> Answer: ...

    def snapshot(self) -> dict: ...


class LocalEngine:
    def __init__(self, *, max_models: int, max_bytes: int, threads: int | None = None,
                 loader: Callable[[str], LoadedModel] | None = None):
        self.cache = ModelCache(max_models=max_models, max_bytes=max_bytes)
        self.threads = threads or None
        self._loader = loader or (lambda folder: load_model(folder, threads=self.threads))
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def _model(self, key: str, locate: Callable[[], str]) -> tuple[LoadedModel, bool, float]:
        started = time.perf_counter()
        model, warm = self.cache.get(key, lambda: self._loader(locate()))
        return model, warm, 0.0 if warm else time.perf_counter() - started

    def _lock(self, key: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(key, threading.Lock())

    def classify(self, *, key: str, locate: Callable[[], str], inputs: list[dict], batch_size: int = 32) -> Answer:
        model, warm, load = self._model(key, locate)
        with self._lock(key):
            outputs: list[Classification] = model.classify(inputs, batch_size=batch_size)
        return Answer(outputs=outputs, warm=warm, load_seconds=load, variant=model.variant, labels=list(model.labels))

    def reply(self, *, key: str, locate: Callable[[], str], conversations: list[list[dict]], **options) -> Answer:
        model, warm, load = self._model(key, locate)
        with self._lock(key):
            outputs: list[Reply] = model.reply(conversations, **options)
        return Answer(outputs=outputs, warm=warm, load_seconds=load, variant=model.variant, labels=[])

    def kind_of(self, *, key: str, locate: Callable[[], str]) -> str:
        """CLASSIFIER or CHAT: what the model is (loading it if needed)."""
        return self._model(key, locate)[0].kind

    def snapshot(self) -> dict:
        """What the heartbeat reports: the loaded keys (least recently used first), their bytes, evictions so far."""
        return {"loaded": self.cache.keys(), "loaded_bytes": self.cache.bytes_used(), "evictions": self.cache.evictions}
