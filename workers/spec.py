"""What a fine-tune job runs: one dataclass, resolved (no 'auto' left) by the
platform before the worker sees it (after peft's examples/sft/train.py)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from .kinds import DistillOptions, FineTuneHyperparameters, default_of


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
    eval_batch_size: int = 64
    metric_for_best: str = "accuracy"  # accuracy | macro_f1
    device: str = "auto"  # auto | cpu | cuda
    precision: str = "auto"  # auto | fp32 | bf16 | fp16
    checkpoint_every_steps: int = 200
    group_by_length: bool = True
    torch_threads: int | None = None
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
