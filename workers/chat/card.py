"""The model card (README.md) of a chat fine-tune's downloads, by workers/cards.py's rules: it names only
files its own archive holds, its code starts from `folder = "."`, runs offline without warnings (the tests
run it on the unzipped archive) and uses plain transformers for the merged model (peft only for the
adapter); the hyperparameter table holds the method's settings, each marked as chosen by the user or auto.
It quotes no customer data: the sample message is fixed."""
from __future__ import annotations

from .. import cards

HYPERPARAMETERS = ("epochs", "learning_rate", "batch_size", "gradient_accumulation_steps", "max_length", "warmup_ratio",
                   "weight_decay", "early_stopping_patience", "seed")
LORA_HYPERPARAMETERS = ("lora_r", "lora_alpha", "lora_dropout", "lora_targets")
SAMPLE_MESSAGE = "Hello! What can you help me with?"


def method_hyperparameters(values: dict, method: str) -> dict:
    names = HYPERPARAMETERS + (LORA_HYPERPARAMETERS if method == "lora" else ())
    return {name: values[name] for name in names if name in values}


def _front_matter(base: dict | None, library: str, tags: list[str]) -> str:
    lines = ["---"]
    if base and base.get("license"):
        lines.append(f"license: {base['license']}")
    if base and base.get("hub_id"):
        lines.append(f"base_model: {base['hub_id']}")
    lines += [f"library_name: {library}", "pipeline_tag: text-generation", "tags:"]
    lines += [f"- {tag}" for tag in ["lathe", "chat", "sft", *tags]]
    return "\n".join([*lines, "---", ""])


def _chat_lines(max_new_tokens: int) -> str:
    return f'''messages = [{{"role": "user", "content": "{SAMPLE_MESSAGE}"}}]  # system / user / assistant turns, as in training
inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
with torch.inference_mode():
    output = model.generate(**inputs, max_new_tokens={max_new_tokens}, do_sample=False)  # stops at the end-of-turn token
reply = tokenizer.decode(output[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
'''


def merged_code(max_new_tokens: int) -> str:
    return f'''import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

folder = "."  # the folder model.zip was unzipped into (config.json is at its top level)
tokenizer = AutoTokenizer.from_pretrained(folder)  # with the chat template the model was trained with
model = AutoModelForCausalLM.from_pretrained(folder, use_safetensors=True).eval()
{_chat_lines(max_new_tokens)}'''


def adapter_code(base: dict | None, max_new_tokens: int) -> str:
    hub_id = (base or {}).get("hub_id")
    name = (base or {}).get("name") or "the base model"
    if hub_id:
        where = f'base = "{hub_id}"  # the Hugging Face id, or a local folder holding the same files'
    else:
        where = f'base = "{name}"  # a local folder holding {name} (it is not on the Hugging Face Hub)'
    return f'''import warnings

import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

adapter = "."  # the folder adapter.zip was unzipped into (adapter_config.json is at its top level)
{where}
tokenizer = AutoTokenizer.from_pretrained(adapter)  # the base's tokenizer and chat template
model = AutoModelForCausalLM.from_pretrained(base, use_safetensors=True)
model.generation_config = GenerationConfig.from_pretrained(adapter)  # stops at the template's end-of-turn token
with warnings.catch_warnings():  # peft 0.21 reads a property transformers 5 deprecated: its notice, not yours
    warnings.filterwarnings("ignore", "`is_gradient_checkpointing` is deprecated", FutureWarning)
    model = PeftModel.from_pretrained(model, adapter).eval()
{_chat_lines(max_new_tokens)}# One model without peft at run time: model = model.merge_and_unload() (model.zip is that, already merged).
'''


def _metrics_table(report: dict) -> str:
    best = report["best"]["metrics"]
    rows = [("validation loss (per trained token)", best.get("eval_loss")), ("perplexity", best.get("perplexity"))]
    generation = report.get("generation") or {}
    for key, label in (("exact_match", "exact match"), ("token_f1", "token F1")):
        if key in generation.get("finetuned", {}):
            rows.append((f"{label} (fine-tuned)", generation["finetuned"][key]))
            rows.append((f"{label} (base model)", generation["base"].get(key)))
    return "| metric | value |\n| --- | --- |\n" + "\n".join(f"| {k} | {v:.4f} |" for k, v in rows if v is not None)


def _test_section(report: dict) -> str:
    """The delivered model on the held-out test set (attached or carved), when the job had one."""
    test = report.get("test")
    if not test:
        return ""
    rows = [("test loss (per trained token)", test.get("eval_loss")), ("perplexity", test.get("perplexity")),
            ("exact match", test.get("exact_match")), ("token F1", test.get("token_f1"))]
    table = "\n".join(f"| {k} | {v:.4f} |" for k, v in rows if v is not None)
    return (f"\n## Test set ({test.get('conversations')} conversations never trained on or chosen by)\n\n"
            "Scored once by this model after training; the validation figures above chose the epoch, so these are "
            f"the ones to expect on new conversations.\n\n| metric | value |\n| --- | --- |\n{table}\n")


def chat_card(spec, report: dict, *, archive: str, files: list[str]) -> str:
    """The card of `model.zip` (the full model: merged LoRA or full fine-tune) or `adapter.zip`."""
    facts = spec.card or {}
    base = facts.get("base_model")
    adapter = archive == "adapter.zip"
    method = "LoRA fine-tune" if spec.method == "lora" else "full fine-tune"
    base_name = base["name"] if base else "a base model"
    data = report.get("data") or {}
    train, validation = data.get("train") or {}, data.get("validation") or {}
    dataset = facts.get("dataset")
    generation = report.get("generation") or {}
    max_new_tokens = generation.get("max_new_tokens") or 128
    if adapter:
        title = f"Chat model: LoRA adapter of {base_name}"
        targets = spec.lora_targets if isinstance(spec.lora_targets, str) else ", ".join(spec.lora_targets)
        what = (f"The LoRA adapter on its own (rank {spec.lora_r}, alpha {spec.lora_alpha}, on `{targets}`): load it "
                "on the base model. `model.zip` is the same model merged into one, which runs without peft.")
        code, library, tags, needs = adapter_code(base, max_new_tokens), "peft", ["lora"], "torch, transformers and peft"
    else:
        title = f"Chat model: {method} of {base_name}"
        what = ("The fine-tuned chat model, ready to load with plain transformers"
                + (" (the LoRA adapter merged into the base; `adapter.zip` has the adapter on its own)"
                   if spec.method == "lora" else "") + ".")
        code, library, tags, needs = merged_code(max_new_tokens), "transformers", [], "torch and transformers"
    base_section = "\n".join(f"- {line}" for line in cards.base_model_lines(base)) or "- Base model: not recorded."
    if base and base.get("notes"):
        base_section += f"\n- {base['notes']}"
    user_set = facts.get("user_set") if "user_set" in facts else None
    data_line = (f"{train.get('used', '?')} training conversations ({train.get('trained_tokens', '?')} trained tokens), "
                 f"{validation.get('used', '?')} validation conversations"
                 + (f", {data['test'].get('used', '?')} test conversations" if data.get("test") else "")
                 + (f" (dataset “{dataset['name']}” v{dataset['version']})" if dataset else "") + ". "
                 "The loss is on the assistant replies only (weight 1), with the base model's chat template; "
                 f"conversations longer than {spec.max_length} tokens kept their start.")
    judged = (f"Replies to {generation.get('prompts', 0)} validation prompts (greedy, at most {max_new_tokens} new "
              "tokens) are scored against the reference reply, after lower-casing and removing punctuation and "
              "articles: exact match, and token F1 (the overlap of words).") if generation.get("prompts") else ""
    return f"""{_front_matter(base, library, tags)}
# {title}

{what} Trained by Lathe ({method}, {report['precision']} on {report['device']}).

{base_section}

## Data

{data_line}

## Evaluation (validation split, best epoch at step {report['best']['step']})

{_metrics_table(report)}

{judged}
{_test_section(report)}
## Hyperparameters ({method})

{cards.hyperparameter_table(method_hyperparameters(report['hyperparameters'], spec.method), user_set)}

## Use (needs {needs})

```python
{code}```

`reply` is the model's answer. The chat template (`chat_template.jinja`) is the one the model was trained with;
`generation_config.json` stops generation at the end-of-turn token.

{cards.files_section(archive, files)}"""
