from __future__ import annotations

from django.db import models


class FineTuningRequest(models.Model):
    """What an OpenAI-style create carried beyond a Lathe chat fine-tune: the suffix, metadata and seed the job
    object reports back, and the learning rate a `learning_rate_multiplier` multiplies. Jobs submitted through
    the native API have none; they are shown with defaults."""

    job = models.OneToOneField("jobs.Job", on_delete=models.CASCADE, related_name="openai_request")
    suffix = models.CharField(max_length=40, blank=True)
    metadata = models.JSONField(null=True, blank=True)
    seed = models.BigIntegerField(null=True, blank=True)
    requested_hyperparameters = models.JSONField(default=dict, help_text="As sent: n_epochs, batch_size, "
                                                                         "learning_rate_multiplier ('auto' or a value).")
    learning_rate_base = models.FloatField(null=True, blank=True,
                                           help_text="The learning rate 'auto' resolves to; the multiplier's base.")
    integrations = models.JSONField(default=list, help_text="As sent; not run (reported unsupported).")
    model_deleted_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
