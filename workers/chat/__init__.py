"""Supervised fine-tuning of chat models (causal LMs), free of Django: data.py (chat template, labels on
the assistant tokens), batches.py (padded or packed), evaluation.py (loss, perplexity, generations scored
by exact match and token-F1), hyperparameters.py ('auto'), card.py (the model card), train.py (the loop,
`run_chat_finetune`). See docs/chat.md."""
