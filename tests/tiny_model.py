"""A tiny BERT (2 layers, hidden 32) and WordPiece tokenizer built from the
BANKING77 slice's words and saved like a real model folder (safetensors), so
tests exercise the real loading code without any download; and small
sequence classifiers of any shape (compression and upload tests)."""
from __future__ import annotations

import re
from pathlib import Path

FIXTURES = Path(__file__).resolve().parent / "fixtures"
SLICE = FIXTURES / "banking77_slice.csv"


def build_tokenizer(folder: Path):
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    words = sorted({w for w in re.findall(r"[a-z]+", SLICE.read_text().lower())})
    vocab = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words])}
    tokenizer = Tokenizer(models.WordPiece(vocab=vocab, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.post_processor = processors.BertProcessing(("[SEP]", vocab["[SEP]"]), ("[CLS]", vocab["[CLS]"]))
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="[UNK]", pad_token="[PAD]",
                                   cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")
    fast.save_pretrained(folder)
    return fast


def build_tiny_bert(folder: Path) -> Path:
    import torch
    from transformers import BertConfig, BertModel

    tokenizer = build_tokenizer(folder)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128)
    BertModel(config).save_pretrained(folder, safe_serialization=True)
    return folder


def slice_rows(limit: int | None = None) -> list[dict]:
    """The slice as normalized rows ({"text", "label"})."""
    import csv

    rows = [{"text": r["text"], "label": r["category"]} for r in csv.DictReader(SLICE.open(encoding="utf-8"))]
    return rows[:limit] if limit else rows


def build_tiny_classifier(folder: Path, labels, *, layers: int = 2, hidden: int = 32, heads: int = 2,
                          intermediate: int = 64):
    """An untrained BertForSequenceClassification with its tokenizer, saved in
    `folder` as save_pretrained writes it; returns (tokenizer, model)."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    tokenizer = build_tokenizer(folder)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                        intermediate_size=intermediate, max_position_embeddings=64, num_labels=len(labels),
                        id2label=dict(enumerate(labels)), label2id={label: i for i, label in enumerate(labels)})
    model = BertForSequenceClassification(config).eval()
    model.save_pretrained(folder, safe_serialization=True)
    return tokenizer, model
