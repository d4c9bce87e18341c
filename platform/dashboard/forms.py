import dataclasses
import re
from decimal import Decimal

from django import forms
from django.contrib.auth.forms import AuthenticationForm

from accounts.models import ApiKeyScope
from core.errors import ApplicationError
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
    file = forms.FileField(label="File", help_text="CSV, TSV or JSONL, optionally .gz. Columns like text,label are recognised.",
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

    def __init__(self, *args, base_models=(), **kwargs):
        from corpora.models import Task

        super().__init__(*args, **kwargs)
        self.fields["base_model"].choices = [("", "— words, no tokenizer —")] + [(m.slug, m.name) for m in base_models]
        self.fields["task"].choices = [("", "Detect from the columns")] + list(Task.choices)
        if base_models:
            self.fields["base_model"].initial = base_models[0].slug

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
    """The launch form: every hyperparameter left blank means 'auto'. The
    hyperparameter fields are generated from their declaration (workers/kinds.py)."""

    dataset_id = forms.TypedChoiceField(label="Dataset", coerce=int)
    base_model = forms.ChoiceField(label="Base model")
    method = forms.ChoiceField(label="Method", choices=[("full", "Full fine-tune"), ("lora", "LoRA")])
    name = forms.CharField(label="Name", required=False, max_length=1000)
    max_cost = forms.DecimalField(label="Budget (USD)", required=False, min_value=Decimal("0.01"), decimal_places=4,
                                  help_text="optional: the job stops there and keeps its best checkpoint")

    # The hyperparameters the form offers (the API takes every declared one).
    HYPERPARAMETERS = ("epochs", "learning_rate", "batch_size", "max_length", "early_stopping_patience", "lora_r", "seed")

    def __init__(self, *args, datasets=(), base_models=(), **kwargs):
        super().__init__(*args, **kwargs)
        declared = kinds.options_of(kinds.FineTuneHyperparameters)
        max_cost = self.fields.pop("max_cost")
        for name in self.HYPERPARAMETERS:
            self.fields[name] = declared_field(declared[name])
        self.fields["max_cost"] = max_cost
        self.fields["dataset_id"].choices = [(d.pk, d.name) for d in datasets]
        self.fields["base_model"].choices = [(m.slug, m.name) for m in base_models]

    def service_kwargs(self) -> dict:
        data = self.cleaned_data
        return {"dataset_id": data["dataset_id"], "base_model": data["base_model"], "method": data["method"],
                "name": data["name"], "max_cost": data.get("max_cost"),
                "hyperparameters_in": {k: data[k] for k in self.HYPERPARAMETERS if data.get(k) is not None}}
