"""Lathe's default chat template, for a causal LM whose tokenizer has none (the
operator opts in, in admin; docs/datasets.md): ChatML, without a default system
prompt. An assistant turn renders as "<|im_start|>assistant\n{content}<|im_end|>\n"."""

DEFAULT_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
