"""A tiny chat tokenizer built by the tests: one token per word or punctuation
mark (so the expected counts can be written by hand), ChatML-like control
tokens, and a chat template; saved like a model's tokenizer. Also a tiny
LLaMA-architecture causal LM folder built on it (admin validation tests)."""
from __future__ import annotations

from pathlib import Path

START, END = "<|im_start|>", "<|im_end|>"
# Every message: "<|im_start|> ROLE CONTENT <|im_end|>"; the generation prompt: "<|im_start|> assistant".
# So a message costs 3 tokens + its words, and an assistant message trains on its words + <|im_end|>.
WORD_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|> ' + message['role'] + ' ' + message['content'] + ' <|im_end|> ' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|> assistant ' }}{% endif %}"
)
# Refuses conversations whose roles do not alternate (as Mistral's template does).
STRICT_TEMPLATE = (
    "{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant') }}{% endif %}"
    "{{ '<|im_start|> ' + message['role'] + ' ' + message['content'] + ' <|im_end|> ' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|> assistant ' }}{% endif %}"
)
WORDS = ["system", "user", "assistant", "hello", "there", "general", "kenobi", "what", "is", "the", "capital", "of",
         "france", "paris", "you", "are", "helpful", "yes", "no", "thanks"]


def build_word_chat_tokenizer(folder: Path, *, chat_template: str | None = WORD_TEMPLATE):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(["<unk>", START, END, *WORDS])}
    tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="<unk>", bos_token=START, eos_token=END,
                                   additional_special_tokens=[START, END])
    if chat_template:
        fast.chat_template = chat_template
    Path(folder).mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(folder)
    return fast


def build_tiny_causal_lm(folder: Path, *, chat_template: str | None = WORD_TEMPLATE, architecture: str = "llama") -> Path:
    """An untrained LLaMA (or Qwen2) causal LM, hidden 16, 1 layer, saved as save_pretrained writes it."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    tokenizer = build_word_chat_tokenizer(folder, chat_template=chat_template)
    torch.manual_seed(0)
    config_class, model_class = {"llama": (LlamaConfig, LlamaForCausalLM), "qwen2": (Qwen2Config, Qwen2ForCausalLM)}[architecture]
    config = config_class(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                          num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=64,
                          tie_word_embeddings=True)
    model_class(config).save_pretrained(folder, safe_serialization=True)
    return Path(folder)
