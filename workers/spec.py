"""What a fine-tune job runs: one dataclass, resolved (no 'auto' left) by the
platform before the worker sees it (after peft's examples/sft/train.py)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from .kinds import ChatFineTuneHyperparameters, DistillOptions, FineTuneHyperparameters, default_of


@dataclass(kw_only=True)
class FineTuneSpec(FineTuneHyperparameters):
    """The hyperparameters (epochs … seed: their types, bounds and defaults)
    are declared once, in workers/kinds.py; the rest is the worker's."""

    task: str  # text_classification | text_pair_classification
    base_model_path: str
    train_file: str  # normalized JSONL (the dataset version's)
    validation_file: str
    labels: list[str]
    output_dir: str
    checkpoint_dir: str
    method: str = "full"  # full | lora
    # Normalized JSONL the final model is scored on once, after training and every choice
    # (epoch, checkpoint) was made: result test_metrics, eval_report.json "test".
    test_file: str | None = None
    # Or: this share of the train split carved as the test split before training (workers.data.carve_test:
    # seeded, stratified, duplicates on one side), the same rows for every attempt. 0: none.
    test_fraction: float = 0.0
    eval_batch_size: int = 64
    metric_for_best: str = "accuracy"  # accuracy | macro_f1
    # False: validation is scored each epoch but chooses nothing — no early stopping, the last epoch is the
    # model (a compression's training phase whose model starts from weights that trained on those rows).
    select_best: bool = True
    device: str = "auto"  # auto | cpu | cuda
    precision: str = "auto"  # auto | fp32 | bf16 | fp16
    checkpoint_every_steps: int = 200
    group_by_length: bool = True
    # LoRA: the modules trained in full with the classifier (None: the model's pooler /
    # pre_classifier, workers.finetune.HEAD_MODULES; [] reproduces the classifier alone).
    lora_head_modules: list[str] | None = None
    torch_threads: int | None = None
    # Processes (devices) of this host the fine-tune runs across with torch.distributed (workers/distributed.py);
    # 1: the single-device loop.
    world_size: int = 1
    # Recovery after unstructured pruning: weights that are zero when training
    # starts stay zero (re-masked after every optimizer step).
    keep_zero_weights: bool = False
    # Distillation: soft targets from this model's logits (computed once, before
    # training), loss = alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * CE.
    teacher_model_path: str | None = None
    distill_temperature: float = default_of(DistillOptions, "temperature")
    distill_alpha: float = default_of(DistillOptions, "alpha")
    # What the model card says that the worker cannot know (platform/jobs/cards.py):
    # {"base_model": {"name", "hub_id", "package", "license"}, "user_set": [names], "dataset": {...}}.
    card: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(kw_only=True)
class ChatFineTuneSpec(ChatFineTuneHyperparameters):
    """A chat fine-tune (workers/chat/train.run_chat_finetune). The hyperparameters (epochs … seed) are
    declared once, in workers/kinds.py ChatFineTuneHyperparameters, resolved (no 'auto' left) by the
    platform (workers/chat/hyperparameters.resolve_chat_hyperparameters); the rest is the worker's."""

    base_model_path: str  # a save_pretrained folder of a causal LM whose tokenizer has a chat template
    train_file: str  # normalized chat JSONL: {"messages": [{"role", "content", "weight"?}]} a line
    validation_file: str
    output_dir: str
    checkpoint_dir: str
    method: str = "lora"  # lora | full
    # The template to train and export with when the model folder has none (the catalog's documented
    # default, platform/catalog/chat_templates.py); None: the tokenizer's own, required then.
    chat_template: str | None = None
    eval_batch_size: int = 16
    device: str = "auto"  # auto | cpu | cuda
    precision: str = "auto"  # auto | fp32 | bf16 | fp16
    checkpoint_every_steps: int = 200
    # Batch layout (workers/chat/batches.py): length-grouped padding measured faster than packing here
    # (docs/chat.md); packing rows of max_length tokens is there for data of very mixed lengths.
    group_by_length: bool = True
    packing: bool = False
    gradient_checkpointing: bool = False  # recomputes activations in the backward pass: less memory, more compute
    # Generation (the base model before the first step, the fine-tuned one at the end, side by side in
    # generations.json): the first eval_generations validation conversations, greedy, at most
    # generation_max_new_tokens new tokens (None: the longest reference reply's tokens plus 16, within 16–256).
    eval_generations: int = 20
    generation_max_new_tokens: int | None = None
    # A held-out test set, scored once by the delivered model after every choice (ChatFineTuneResult.test_metrics):
    # a normalized chat JSONL, or this share of the train split carved before training (carve_test_conversations).
    test_file: str | None = None
    test_fraction: float = 0.0
    torch_threads: int | None = None
    # What the model card says that the worker cannot know (as FineTuneSpec.card):
    # {"base_model": {"name", "hub_id", "package", "license", "notes"}, "user_set": [names], "dataset": {...}}.
    card: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)
