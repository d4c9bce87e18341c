"""'auto' for a chat fine-tune's hyperparameters, Django-free: the platform calls
`resolve_chat_hyperparameters` with the base model's facts (parameters, architecture, context) and the
dataset's token statistics (workers/chat/data.token_statistics) before queueing the job, so the worker
only ever sees concrete values."""
from __future__ import annotations

from ..kinds import ChatFineTuneHyperparameters, defaults, options_of

DECLARATION = ChatFineTuneHyperparameters

ATTENTION = ["q_proj", "k_proj", "v_proj", "o_proj"]
LLAMA_MLP = ["gate_proj", "up_proj", "down_proj"]
# config.model_type → the modules LoRA adapts by default (attention and MLP projections, as QLoRA found
# best; measured on SmolLM2 in docs/chat.md). Architectures not listed: every Linear but the head
# (peft's "all-linear").
LORA_TARGETS: dict[str, list[str]] = {
    **{t: ATTENTION + LLAMA_MLP for t in ("llama", "mistral", "mixtral", "qwen2", "qwen3", "smollm3", "gemma",
                                          "gemma2", "gemma3_text", "olmo", "olmo2", "granite")},
    "phi3": ["qkv_proj", "o_proj", "gate_up_proj", "down_proj"],
    "gpt2": ["c_attn", "c_proj", "c_fc"],
    "gpt_neox": ["query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"],
}
ALL_LINEAR = ["all-linear"]  # peft's shorthand

MAX_AUTO_LENGTH = 4096
# OpenAI's default for n_epochs (its data-preparation cookbook): 3, raised so that at least 100
# conversations are trained on in all (at most 25 passes), lowered so that at most 25,000 are.
MIN_TARGET_EXAMPLES, MAX_TARGET_EXAMPLES, MAX_AUTO_EPOCHS = 100, 25_000, 25


def lora_targets_for(model_type: str | None) -> list[str]:
    return list(LORA_TARGETS.get(model_type or "", ALL_LINEAR))


def auto_epochs(train_conversations: int) -> int:
    n = max(1, train_conversations)
    if n * 3 < MIN_TARGET_EXAMPLES:
        return min(MAX_AUTO_EPOCHS, -(-MIN_TARGET_EXAMPLES // n))
    if n * 3 > MAX_TARGET_EXAMPLES:
        return max(1, MAX_TARGET_EXAMPLES // n)
    return 3


def auto_learning_rate(parameter_count: int | None, method: str) -> float:
    params = parameter_count or 1_000_000_000
    if method == "lora":
        return 2e-4 if params <= 1_000_000_000 else 1e-4
    return 5e-5 if params <= 500_000_000 else 2e-5 if params <= 3_000_000_000 else 1e-5


def auto_max_length(longest_conversation: int | None, context_length: int | None) -> int:
    """The longest conversation (nothing truncated), on a multiple of 8, within the context and 4,096: with
    length-grouped dynamic padding a longer limit costs nothing unless a conversation is that long."""
    declared = options_of(DECLARATION)["max_length"].metadata
    ceiling = min(MAX_AUTO_LENGTH, context_length or MAX_AUTO_LENGTH, declared["max"])
    if not longest_conversation:
        return min(ceiling, defaults(DECLARATION)["max_length"])
    return max(declared["min"], min(ceiling, -(-longest_conversation // 8) * 8))


def resolve_chat_hyperparameters(requested: dict, *, method: str, parameter_count: int | None, model_type: str | None,
                                 context_length: int | None, train_conversations: int,
                                 token_stats: dict | None = None, catalog_defaults: dict | None = None) -> dict:
    """Concrete values for every hyperparameter of a chat fine-tune.

    requested: the checked values ("auto" or absent = decide); method: lora | full; parameter_count,
    model_type (config.json's), context_length (max_position_embeddings): the base model's;
    train_conversations: rows in the train split; token_stats: `token_statistics(...)` of the train split
    (its "max" is used); catalog_defaults: the catalog's per-model defaults, which come before the rules.
    A user's max_length above the context is lowered to the context. LoRA's options are dropped for full.
    """
    auto = defaults(DECLARATION)
    auto.update({
        "epochs": auto_epochs(train_conversations),
        "learning_rate": auto_learning_rate(parameter_count, method),
        "max_length": auto_max_length((token_stats or {}).get("max"), context_length),
        "lora_targets": lora_targets_for(model_type),
    })
    auto.update({k: v for k, v in (catalog_defaults or {}).items() if k in auto})
    resolved = {name: (auto[name] if requested.get(name, "auto") in ("auto", None) else requested[name]) for name in auto}
    if context_length:
        resolved["max_length"] = min(resolved["max_length"], context_length)
    if method != "lora":
        for name, f in options_of(DECLARATION).items():
            if f.metadata["methods"] == ("lora",):
                resolved.pop(name)
    return resolved
