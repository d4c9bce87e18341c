"""The models an inference worker keeps loaded: least recently used out first, bounded by count and by
bytes on disk (a fair stand-in for memory: fp32 weights load at their file size, int8 ones at theirs).
Thread-safe: a worker's threads share one cache, and one model loads once even when asked for twice."""
from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Callable

from .runtime import LoadedModel


class ModelCache:
    def __init__(self, *, max_models: int, max_bytes: int):
        self.max_models, self.max_bytes = max(1, max_models), max_bytes
        self._models: OrderedDict[str, LoadedModel] = OrderedDict()
        self._lock = threading.Lock()
        self._loading: dict[str, threading.Lock] = {}
        self.evictions = 0

    def keys(self) -> list[str]:
        with self._lock:
            return list(self._models)

    def bytes_used(self) -> int:
        with self._lock:
            return sum(m.size_bytes for m in self._models.values())

    def get(self, key: str, load: Callable[[], LoadedModel]) -> tuple[LoadedModel, bool]:
        """(the model, whether it was already loaded). `load` runs at most once per key at a time."""
        with self._lock:
            if key in self._models:
                self._models.move_to_end(key)
                return self._models[key], True
            gate = self._loading.setdefault(key, threading.Lock())
        with gate:
            with self._lock:
                if key in self._models:  # another thread loaded it while this one waited
                    self._models.move_to_end(key)
                    return self._models[key], True
            model = load()
            with self._lock:
                self._models[key] = model
                self._models.move_to_end(key)
                self._evict(keep=key)
                self._loading.pop(key, None)
            return model, False

    def _evict(self, *, keep: str) -> None:
        def over() -> bool:
            return (len(self._models) > self.max_models
                    or sum(m.size_bytes for m in self._models.values()) > self.max_bytes)

        while over() and len(self._models) > 1:
            oldest = next(iter(self._models))
            if oldest == keep:
                break
            del self._models[oldest]
            self.evictions += 1
