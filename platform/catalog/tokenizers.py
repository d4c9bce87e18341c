"""Tokenizers of catalog models, loaded offline and kept in a small LRU cache.

A dataset upload measures its rows with a base model's tokenizer and a chat job's
submission measures its conversations again: loading a tokenizer costs from
milliseconds to seconds, so each process keeps the last few. The key holds the
row's source and its last change, so an operator's edit in admin is a new entry.
Loading never reaches a hub (local_files_only)."""
from __future__ import annotations

import threading
from collections import OrderedDict

MAX_CACHED_TOKENIZERS = 4
_cache: OrderedDict = OrderedDict()
_lock = threading.Lock()


def _key(base_model) -> tuple:
    return (base_model.pk, base_model.slug, base_model.source_kind, base_model.source,
            base_model.chat_template_source, base_model.updated_at)


def load_tokenizer(base_model):
    """The model's tokenizer (shared between callers: read-only). Raises what
    transformers raises when the files are missing or broken."""
    key = _key(base_model)
    with _lock:  # one load at a time: two requests for the same model load it once
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(base_model.local_path(), use_fast=True, local_files_only=True)
        if base_model.chat_template_source == "default":
            from .chat_templates import DEFAULT_CHAT_TEMPLATE

            tokenizer.chat_template = DEFAULT_CHAT_TEMPLATE
        _cache[key] = tokenizer
        while len(_cache) > MAX_CACHED_TOKENIZERS:
            _cache.popitem(last=False)
        return tokenizer


def clear_tokenizer_cache() -> None:
    with _lock:
        _cache.clear()


def cached_tokenizer_count() -> int:
    return len(_cache)
