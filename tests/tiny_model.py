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


# --- chat models (causal LMs) -------------------------------------------------------------------

# SmolLM2-Instruct's template (ChatML with a default system prompt when the conversation has none):
# rendering a conversation's messages one by one misses that prompt, which is one reason the worker
# derives the trained spans from renderings of whole prefixes.
CHATML_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
CHAT_SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

# Question → answer pairs a 2-layer model memorises in a few hundred steps (chat tests and the bench).
CHAT_FACTS = [
    ("What is the capital of France?", "Paris."), ("What is the capital of Italy?", "Rome."),
    ("What is the capital of Spain?", "Madrid."), ("What is the capital of Japan?", "Tokyo."),
    ("What colour is the sky?", "Blue."), ("What colour is grass?", "Green."),
    ("How many legs does a spider have?", "Eight."), ("How many days are in a week?", "Seven."),
    ("What do bees make?", "Honey."), ("What is frozen water called?", "Ice."),
    ("Which planet is red?", "Mars."), ("What do cows drink?", "Water."),
]


def chat_corpus() -> list[str]:
    """Text the tiny chat tokenizer learns its merges from."""
    words = [q + " " + a for q, a in CHAT_FACTS] + ["You are a helpful assistant.", "system user assistant",
                                                   "Hello! How can I help you today? Thanks, bye."]
    return words * 4


def build_chat_tokenizer(folder: Path, *, chat_template: str = CHATML_TEMPLATE, vocab_size: int = 400):
    """A byte-level BPE (as SmolLM2's, so any text encodes) trained on `chat_corpus()`, with
    ChatML's control tokens and `chat_template`; no pad token (as many chat tokenizers)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=CHAT_SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tokenizer.train_from_iterator(chat_corpus(), trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token="<|im_start|>", eos_token="<|im_end|>",
                                   unk_token="<|endoftext|>", chat_template=chat_template)
    fast.save_pretrained(folder)
    return fast


def build_tiny_llama(folder: Path, *, hidden: int = 32, layers: int = 2, chat_template: str = CHATML_TEMPLATE) -> Path:
    """An untrained LLaMA-architecture causal LM (hidden 32, 2 layers, grouped-query attention, tied
    embeddings as SmolLM2) with its chat tokenizer and generation config, saved as save_pretrained
    writes them (safetensors)."""
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    tokenizer = build_chat_tokenizer(folder, chat_template=chat_template)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=hidden * 2,
                         num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=256, tie_word_embeddings=True,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    model.save_pretrained(folder, safe_serialization=True)
    return folder


def chat_rows(*, system: str | None = None) -> list[dict]:
    """CHAT_FACTS as normalized chat lines ({"messages": [...]})."""
    rows = []
    for question, answer in CHAT_FACTS:
        messages = ([{"role": "system", "content": system}] if system else []) + [
            {"role": "user", "content": question}, {"role": "assistant", "content": answer}]
        rows.append({"messages": messages})
    return rows
