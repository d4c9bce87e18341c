import dataclasses
import re
from decimal import Decimal

from django import forms
from django.contrib.auth.forms import AuthenticationForm

from accounts.models import ApiKeyScope
from core.errors import ApplicationError
from jobs.submission import TEST_FRACTION_RANGE, numeric_options
from tenancy.models import Role
from workers import kinds


def apply_application_error(form: forms.Form, error: ApplicationError) -> None:
    """Show a service's error on the form: on its fields where it names them."""
    placed = False
    for field, messages in (error.fields or {}).items():
        target = field if field in form.fields else None
        for message in messages if isinstance(messages, list) else [messages]:
            form.add_error(target, message)
            placed = True
    if not placed:
        form.add_error(None, error.message)


class EmailAuthenticationForm(AuthenticationForm):
    username = forms.EmailField(label="E-mail", widget=forms.EmailInput(attrs={"autofocus": True, "autocomplete": "email"}))


class SignupForm(forms.Form):
    email = forms.EmailField(label="E-mail", max_length=254, widget=forms.EmailInput(attrs={"autocomplete": "email"}))
    full_name = forms.CharField(label="Your name", max_length=150, required=False)
    password = forms.CharField(label="Password", widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
                               help_text="At least 10 characters, not a common password.")
    organization_name = forms.CharField(label="Organization name", required=False,
                                        help_text="You can rename it or create more later.")


class OrganizationForm(forms.Form):
    # The service enforces the real limit so its message names it.
    name = forms.CharField(label="Organization name", max_length=100_000)


class InvitationForm(forms.Form):
    email = forms.CharField(label="E-mail", max_length=254)
    role = forms.ChoiceField(choices=Role.choices, initial=Role.MEMBER)


class RoleForm(forms.Form):
    role = forms.ChoiceField(choices=Role.choices)


SCOPE_CHOICES_EXPLAINED = [
    (ApiKeyScope.READ, "Read — list and download datasets, jobs, models, usage"),
    (ApiKeyScope.WRITE, "Write — also upload datasets and models, launch and cancel jobs"),
    (ApiKeyScope.ADMIN, "Admin — also members, invitations, keys, settings (only while you are an admin)"),
]


class ApiKeyForm(forms.Form):
    name = forms.CharField(label="Name", max_length=1000, help_text="What uses it, e.g. 'CI pipeline'.")
    # The common first key uploads data and launches jobs: read + write.
    scopes = forms.MultipleChoiceField(choices=SCOPE_CHOICES_EXPLAINED, widget=forms.CheckboxSelectMultiple,
                                       initial=[ApiKeyScope.READ, ApiKeyScope.WRITE],
                                       help_text="Admin includes write, write includes read.")
    expires_at = forms.DateTimeField(label="Expires (optional, UTC)", required=False,
                                     widget=forms.DateTimeInput(attrs={"type": "datetime-local"}))


# Encodings offered in the form's suggestion list (any Python codec is accepted).
ENCODING_SUGGESTIONS = [("utf-8", "UTF-8"), ("utf-8-sig", "UTF-8 with BOM"), ("cp1252", "Windows-1252 (Western)"),
                        ("latin-1", "Latin-1 / ISO-8859-1"), ("iso8859-15", "ISO-8859-15 (Western, with €)"),
                        ("utf-16", "UTF-16"), ("cp1250", "Windows-1250 (Central European)"),
                        ("cp1251", "Windows-1251 (Cyrillic)"), ("mac-roman", "Mac Roman"), ("shift_jis", "Shift JIS"),
                        ("gb18030", "GB18030 (Chinese)")]


class DatasetUploadForm(forms.Form):
    file = forms.FileField(label="File", help_text="CSV, TSV or JSONL, optionally .gz. Columns like text,label are recognised; "
                                                  "chat: JSONL with messages (or prompt and completion) per line.",
                           allow_empty_file=True, widget=forms.FileInput(attrs={"hx-preserve": "true"}))
    name = forms.CharField(label="Name", required=False, max_length=10_000, help_text="Defaults to the file name.")
    base_model = forms.ChoiceField(label="Base model (its tokenizer measures lengths)", required=False)
    task = forms.ChoiceField(label="Task", required=False)
    encoding = forms.CharField(label="Encoding", required=False, max_length=64,
                               help_text="Blank = detect. Name it (utf-8, cp1252, latin-1, utf-16, …) when the preview "
                                         "shows wrong accents.",
                               widget=forms.TextInput(attrs={"list": "encoding-choices", "autocomplete": "off",
                                                             "spellcheck": "false"}))
    max_length = forms.IntegerField(label="Max length (tokens)", required=False, min_value=8, max_value=8192)
    validation_fraction = forms.FloatField(label="Validation share", initial=0.1, min_value=0.01, max_value=0.49,
                                           help_text="Used when the file has no split column.")
    seed = forms.IntegerField(label="Split seed", initial=13)
    text_column = forms.CharField(label="Text column", required=False)
    label_column = forms.CharField(label="Label column", required=False)
    text_a_column = forms.CharField(label="First text column (pairs)", required=False)
    text_b_column = forms.CharField(label="Second text column (pairs)", required=False)
    tokens_column = forms.CharField(label="Tokens column", required=False)
    tags_column = forms.CharField(label="Tags column", required=False)
    split_column = forms.CharField(label="Split column", required=False)

    MAPPING_FIELDS = ("text", "label", "text_a", "text_b", "tokens", "tags", "split")
    MAIN_FIELDS = ("file", "name", "base_model", "task", "encoding")
    encoding_suggestions = ENCODING_SUGGESTIONS

    def __init__(self, *args, base_models=(), initial_base_model=None, **kwargs):
        from corpora.models import Task

        super().__init__(*args, **kwargs)
        self.fields["base_model"].choices = [("", "— words, no tokenizer —")] + [(m.slug, m.name) for m in base_models]
        self.fields["task"].choices = [("", "Detect from the file")] + list(Task.choices)
        if base_models:  # the default model of the page's family (a chat file is measured with a chat model anyway)
            self.fields["base_model"].initial = (initial_base_model or base_models[0]).slug

    @classmethod
    def in_form_words(cls, message: str) -> str:
        """A service message with the API's field names (label_column,
        validation_fraction) replaced by this form's labels (“Label column”)."""
        return _API_NAMES.sub(lambda m: f"“{cls.base_fields[m.group(0)].label}”", message)

    def add_error(self, field, error):
        # Every message placed on the form passes here: services speak the API's field names.
        if isinstance(error, str):
            error = self.in_form_words(error)
        super().add_error(field, error)

    @property
    def main_fields(self):
        return [self[name] for name in self.MAIN_FIELDS]

    @property
    def more_fields(self):
        return [self[name] for name in self.fields if name not in self.MAIN_FIELDS]

    @property
    def chosen_file_name(self) -> str:
        """The name of the file sent with this (bound) form: a browser cannot put it back in the file input."""
        uploaded = self.files.get("file") if self.is_bound else None
        return getattr(uploaded, "name", "") or ""

    def service_kwargs(self) -> dict:
        from catalog.selectors import base_model_get

        data = dict(self.cleaned_data)
        data["column_mapping"] = {f: data.pop(f"{f}_column") for f in self.MAPPING_FIELDS if data.get(f"{f}_column")}
        for f in self.MAPPING_FIELDS:
            data.pop(f"{f}_column", None)
        data["uploaded"] = data.pop("file")
        slug = data.pop("base_model")
        data["base_model"] = base_model_get(slug=slug) if slug else None
        data["task"] = data["task"] or None
        data["encoding"] = data["encoding"] or None
        # "Check file" keeps nothing; a guessed encoding is shown for confirmation before the version is kept.
        data["dry_run"] = self.data.get("action") == "check"
        data["hold_guessed_encoding"] = True
        return data


# The API's names of the form's fields, as services write them in messages.
_API_NAMES = re.compile(r"\b(?:" + "|".join(sorted((n for n in DatasetUploadForm.base_fields if "_" in n), key=len,
                                                      reverse=True)) + r")\b")


def declared_field(f, *, blank_means: str = "auto") -> forms.Field:
    """A form field for one declared option (workers/kinds.py): its type, bounds
    (with the API's message), label and help; blank means `blank_means`."""
    meta = f.metadata
    field_class = forms.IntegerField if meta["type"] is int else forms.FloatField
    bounds = f"must be between {meta['min']} and {meta['max']}"
    default = f.default_factory() if f.default is dataclasses.MISSING else f.default
    help_text = meta["help"] + (". LoRA only" if meta["methods"] == ("lora",) else "") + f"; blank = {blank_means}"
    return field_class(required=False, label=meta["label"] or f.name.replace("_", " ").capitalize(), help_text=help_text,
                       min_value=meta["min"], max_value=meta["max"],
                       error_messages={"min_value": bounds, "max_value": bounds},
                       widget=field_class.widget(attrs={"placeholder": "auto" if meta["auto"] or default is None
                                                        else f"auto ({default})"}))


class JobLaunchForm(forms.Form):
    """The launch form of a fine-tune kind (finetune: encoder classifiers;
    chat_finetune: causal LMs): every hyperparameter left blank means 'auto'. The
    hyperparameter fields are generated from the kind's declaration (workers/kinds.py)."""

    DECLARATIONS = {"finetune": kinds.FineTuneHyperparameters, "chat_finetune": kinds.ChatFineTuneHyperparameters}
    DEFAULT_METHOD = {"finetune": "full", "chat_finetune": "lora"}

    kind = forms.ChoiceField(choices=[(k, k) for k in DECLARATIONS], widget=forms.HiddenInput, required=False)

    dataset_id = forms.TypedChoiceField(label="Dataset", coerce=int)
    base_model = forms.ChoiceField(label="Base model")
    method = forms.ChoiceField(label="Method", choices=[("full", "Full fine-tune"), ("lora", "LoRA")])
    name = forms.CharField(label="Name", required=False, max_length=1000)
    max_cost = forms.DecimalField(label="Budget (USD)", required=False, min_value=Decimal("0.01"), decimal_places=4,
                                  help_text="optional: the job stops there and keeps its best checkpoint")

    # The hyperparameters the form offers (the API takes every declared one).
    HYPERPARAMETERS = ("epochs", "learning_rate", "batch_size", "max_length", "early_stopping_patience", "lora_r", "seed")

    def __init__(self, *args, datasets=(), base_models=(), kind: str = "finetune", device_classes=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.kind = kind
        self.fields["kind"].initial = kind
        self.fields["method"].initial = self.DEFAULT_METHOD[kind]
        declared = kinds.options_of(self.DECLARATIONS[kind])
        max_cost = self.fields.pop("max_cost")
        for name in self.HYPERPARAMETERS:
            self.fields[name] = declared_field(declared[name])
        self.fields["max_cost"] = max_cost
        self.fields["dataset_id"].choices = [(d.pk, d.name) for d in datasets]
        self.fields["base_model"].choices = [(m.slug, m.name) for m in base_models]
        self.fields["validation_dataset_id"] = forms.TypedChoiceField(
            label="Validation set", coerce=int, required=False, empty_value=None,
            choices=[("", "— carved from the dataset —"), *((d.pk, d.name) for d in datasets)],
            help_text="optional: another dataset whose every row validates (the dataset is then trained on whole)")
        if device_classes and len(device_classes) > 1:  # a choice only where the fleet offers one (jobs/fleet.py)
            self.fields["device_class"] = forms.ChoiceField(
                label="Device class", required=False, choices=[("", "any worker"), *((c, c) for c in device_classes)],
                help_text="optional: run only on a worker of this class (priced at your plan's rate for it)")
        # A held-out test set, scored once by the delivered model (jobs.submission._test_set): accuracy and
        # macro-F1 for classifiers, exact match and token-F1 of the replies for chat models.
        self.fields["test_dataset_id"] = forms.TypedChoiceField(
            label="Test set", coerce=int, required=False, empty_value=None,
            choices=[("", "— none —"), *((d.pk, d.name) for d in datasets)],
            help_text="optional: another dataset the final model is scored on once (never trained or selected on)")
        low, high = TEST_FRACTION_RANGE
        self.fields["test_fraction"] = forms.DecimalField(
            label="or carve a test split (%)", required=False, min_value=Decimal(str(low * 100)),
            max_value=Decimal(str(high * 100)), decimal_places=2,
            help_text=(f"optional: this share of the training {'conversations' if kind == 'chat_finetune' else 'data'} "
                       f"held out as a test set ({low:.0%}–{high:.0%})"),
            widget=forms.NumberInput(attrs={"size": 5, "placeholder": "e.g. 10"}))

    def service_kwargs(self) -> dict:
        data = self.cleaned_data
        kwargs = {"dataset_id": data["dataset_id"], "base_model": data["base_model"],
                  "method": data["method"] or self.DEFAULT_METHOD[self.kind], "name": data["name"],
                  "max_cost": data.get("max_cost"),
                  "hyperparameters_in": {k: data[k] for k in self.HYPERPARAMETERS if data.get(k) is not None},
                  "validation_dataset_id": data.get("validation_dataset_id"),
                  "device_class": data.get("device_class") or ""}
        fraction = data.get("test_fraction")
        kwargs.update(test_dataset_id=data.get("test_dataset_id"),
                      test_fraction=float(fraction) / 100 if fraction is not None else None)
        return kwargs


class AutoOrNumberField(forms.CharField):
    """A declared number that also takes the word "auto" (e.g. prune's sparsity: the search)."""

    def __init__(self, *, number: forms.Field, **kwargs):
        self.number = number
        super().__init__(**kwargs)

    def clean(self, value):
        value = (value or "").strip()
        if value == "auto" or not value:
            return value or None
        return self.number.clean(value)


class CompareForm(forms.Form):
    """A comparison of models of the organization's choosing (kind evaluate, docs/comparison.md): the models
    (2–10, one family), the labelled dataset every one is scored on, and the tolerance that picks the
    recommended one; the service checks the rest (same family, task and labels)."""

    HELD_OUT = "held-out-of-"  # a dataset_id choice: the rows fine-tune <id> held out

    models = forms.MultipleChoiceField(label="Models (2 to 10)", widget=forms.CheckboxSelectMultiple)
    dataset_id = forms.ChoiceField(label="Scored on", help_text=(
        "A labelled dataset (every row of its latest version), or the rows a fine-tune held out (its test set, "
        "attached or carved): rows none of its variants trained on."))
    name = forms.CharField(label="Name", required=False, max_length=100,
                           widget=forms.TextInput(attrs={"placeholder": "optional", "size": 30}))

    def __init__(self, *args, sources=(), datasets=(), held_out_by=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.sources = {s.key: s for s in sources}
        self.fields["models"].choices = [(s.key, f"{s.name} ({s.variant}, {s.family})") for s in sources]
        self.fields["dataset_id"].choices = [(str(d.pk), d.name) for d in datasets] + [
            (f"{self.HELD_OUT}{job.pk}", f"The rows job {job.pk}{f' ({job.name})' if job.name else ''} held out")
            for job in held_out_by]
        for name in ("accuracy_tolerance", "latency_samples"):
            self.fields[name] = declared_field(kinds.options_of(kinds.EvaluateOptions)[name],
                                               blank_means="the declared default")

    def service_kwargs(self) -> dict:
        data = self.cleaned_data
        scored = data["dataset_id"]
        on = ({"held_out_of_job_id": int(scored.removeprefix(self.HELD_OUT))} if scored.startswith(self.HELD_OUT)
              else {"dataset_id": int(scored)})
        return {"models": [self.sources[key].reference() for key in data["models"]], **on,
                "name": data.get("name") or "",
                "options": {n: data[n] for n in ("accuracy_tolerance", "latency_samples") if data.get(n) is not None}}


def compression_field(f, *, base_models=()) -> forms.Field:
    """The compress form's field for one declared compression option."""
    meta = f.metadata
    label = meta["label"] or f.name.replace("_", " ").capitalize()
    default = f.default_factory() if f.default is dataclasses.MISSING else f.default
    if meta["refers_to"] == "base_model":
        return forms.ChoiceField(label=label, required=False, help_text=meta["help"],
                                 choices=[("", "— cut from the teacher —"), *((m.slug, m.name) for m in base_models)])
    if meta["choices"]:
        return forms.ChoiceField(label=label, required=False, initial=default, help_text=meta["help"],
                                 choices=[(c, meta["choice_labels"].get(c, c)) for c in meta["choices"]])
    blank = "the declared default" if default is not None else "auto" if meta["auto"] else "the default"
    number = declared_field(f, blank_means=blank)
    if meta["auto"]:
        return AutoOrNumberField(number=number, label=number.label, required=False, help_text=(
            number.help_text.replace(f"; blank = {blank}", "") + '; or "auto"'),
            initial=meta["suggested"], widget=forms.TextInput(attrs={"size": 5}))
    number.initial = default if default is not None else meta["suggested"]
    number.widget.attrs.update({"size": 5, "placeholder": number.widget.attrs.get("placeholder", "")
                                if default is None else str(default)})
    return number


class CompressForm(forms.Form):
    """'Compress this model': generated from the compression kinds' declarations
    (workers/kinds.py) — their titles, each option's field, label, help, bounds,
    choices and default. Only the chosen kind's options count (without JS the
    page shows, and posts, every kind's)."""

    # The training hyperparameters a kind's form offers (the API takes every declared one).
    TRAINING = {"distill": ("epochs",)}

    kind = forms.ChoiceField(label="How", choices=[(k, kinds.KINDS[k].title) for k in kinds.COMPRESSION_KINDS],
                             widget=forms.Select(attrs={"data-kind-select": ""}))
    name = forms.CharField(label="Name", required=False, max_length=100, help_text=(
        "default: what and of which model, e.g. “int8 of sentiment”"),
        widget=forms.TextInput(attrs={"placeholder": "optional", "size": 30}))
    dataset_id = forms.TypedChoiceField(label="Data (evaluation: its validation split; recovery and distillation: its "
                                              "train split)", coerce=int, required=False, empty_value=None)

    def __init__(self, *args, datasets=None, dataset_required=False, base_models=(), chat=False, **kwargs):
        super().__init__(*args, **kwargs)
        guard = kinds.options_of(kinds.CompressionOptions)["max_accuracy_drop"]
        self.fields["max_accuracy_drop"] = compression_field(guard)
        self.fields["max_accuracy_drop"].label = "Largest acceptable accuracy drop (points)"
        offered = ("quantize",) if chat else kinds.COMPRESSION_KINDS  # chat models: int8 only (docs/chat.md)
        if chat:
            self.fields["kind"].choices = [("quantize", "Quantize to int8 (PyTorch)")]
            self.fields["max_accuracy_drop"].label = (
                "Largest acceptable perplexity increase (%; also exact-match drop in points when replies are short)")
        if datasets is None:
            del self.fields["dataset_id"]
        else:
            self.fields["dataset_id"].choices = ([] if dataset_required else [("", "— the source job's —")]) + [
                (d.pk, d.name) for d in datasets]
        self.per_kind: dict[str, list[str]] = {}
        hyperparameters = kinds.options_of(kinds.FineTuneHyperparameters)
        for kind in offered:
            names = [n for n in kinds.options_of(kinds.KINDS[kind]) if n not in kinds.options_of(kinds.CompressionOptions)]
            for name in names:
                self.fields[name] = compression_field(kinds.options_of(kinds.KINDS[kind])[name], base_models=base_models)
            for name in self.TRAINING.get(kind, ()):
                self.fields[name] = declared_field(hyperparameters[name])
            self.per_kind[kind] = names + list(self.TRAINING.get(kind, ()))

    def common(self) -> list:
        """The fields every compression kind takes, in order."""
        return [self[n] for n in ("kind", "name", "max_accuracy_drop", "dataset_id") if n in self.fields]

    def fieldsets(self) -> list[dict]:
        """Per kind with options: its title and its bound fields (the template's fieldsets)."""
        return [{"kind": kind, "title": kinds.KINDS[kind].title, "fields": [self[n] for n in names]}
                for kind, names in self.per_kind.items() if names]

    def full_clean(self):
        super().full_clean()
        if not self.is_bound or not hasattr(self, "cleaned_data"):
            return
        chosen = self.cleaned_data.get("kind")
        others = {n for kind, names in self.per_kind.items() if kind != chosen for n in names} - set(self.per_kind.get(chosen, ()))
        for name in others:  # another kind's field: neither checked nor passed on
            self.errors.pop(name, None)
            self.cleaned_data.pop(name, None)

    def service_kwargs(self) -> dict:
        data, kind = self.cleaned_data, self.cleaned_data["kind"]
        chosen = self.per_kind.get(kind, [])
        options = {n: data[n] for n in chosen if n in numeric_options() and data.get(n) not in (None, "")}
        training = {n: data[n] for n in self.TRAINING.get(kind, ()) if data.get(n) is not None}
        return {"kind": kind, "name": data.get("name") or "", "dataset_id": data.get("dataset_id"),
                "max_accuracy_drop": data.get("max_accuracy_drop"),  # None: the declared default
                "prune_method": (data.get("prune_method") or None) if "prune_method" in chosen else None,
                "student_base_model": (data.get("student_base_model") or None) if "student_base_model" in chosen else None,
                "options": options, "hyperparameters_in": training or None}

