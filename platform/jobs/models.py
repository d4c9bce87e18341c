"""Jobs: the state machine, its events, metrics, checkpoints and artifacts.
Usage is billing's: a heartbeat records it through billing.metering.record_segment.

    queued → running → succeeded | failed | cancelled
               ↘ queued (lease expired or no progress, attempts left: the reaper re-queues)
               ↘ cancelled (the reaper, when a cancel was pending: it is never re-queued)
    queued → paused (at once);  running → paused (pause requested: the worker stops at its next step,
             checkpoints, releases the lease; billing stops);  paused → queued (resume: from the last checkpoint)
             | cancelled.  A paused job is not terminal; the reaper and the sweeper leave it alone.
"""
from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

from core.models import TimeStampedModel


class JobState(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"
    PAUSED = "paused", "Paused"


TERMINAL_STATES = (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)


class JobKind(models.TextChoices):
    FINETUNE = "finetune", "Fine-tune"
    QUANTIZE = "quantize", "Quantize (int8)"
    PRUNE = "prune", "Prune"
    DISTILL = "distill", "Distill"
    CHAT_FINETUNE = "chat_finetune", "Chat fine-tune"
    PREDICT = "predict", "Batch predictions"
    EVALUATE = "evaluate", "Compare models"


COMPRESSION_KINDS = (JobKind.QUANTIZE, JobKind.PRUNE, JobKind.DISTILL)
# The kinds that fine-tune a catalog model on a dataset (method full | lora; steps from the first second).
FINETUNE_KINDS = (JobKind.FINETUNE, JobKind.CHAT_FINETUNE)


class Method(models.TextChoices):
    FULL = "full", "Full fine-tune"
    LORA = "lora", "LoRA"


class Job(TimeStampedModel):
    organization = models.ForeignKey("tenancy.Organization", on_delete=models.CASCADE, related_name="jobs")
    kind = models.CharField(max_length=20, choices=JobKind.choices, default=JobKind.FINETUNE)
    state = models.CharField(max_length=12, choices=JobState.choices, default=JobState.QUEUED, db_index=True)
    name = models.CharField(max_length=100, blank=True)
    dataset_version = models.ForeignKey("corpora.DatasetVersion", null=True, blank=True, on_delete=models.PROTECT,
                                        related_name="jobs", help_text=(
                                            "The data (every kind but a predict job over an uploaded input file)."))
    prediction_input = models.ForeignKey("jobs.PredictionInput", null=True, blank=True, on_delete=models.PROTECT,
                                         related_name="jobs", help_text="Predict jobs: an uploaded file of inputs.")
    base_model = models.ForeignKey("catalog.BaseModel", null=True, blank=True, on_delete=models.PROTECT, related_name="jobs",
                                   help_text="Fine-tunes: the catalog model. Compression: the source's (none for an uploaded model).")
    method = models.CharField(max_length=10, choices=Method.choices, default=Method.FULL)
    source_job = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT, related_name="derived_jobs",
                                   help_text=("Compression jobs: the job whose model they compress. Comparisons (evaluate): the "
                                             "fine-tune whose held-out rows they score (held_out_of_job_id)."))
    source_model = models.ForeignKey("registry.UploadedModel", null=True, blank=True, on_delete=models.PROTECT,
                                     related_name="jobs", help_text="Compression jobs: an uploaded model to compress.")
    max_accuracy_drop = models.FloatField(null=True, blank=True,
                                          help_text="Compression jobs: the largest acceptable accuracy drop, in points.")
    test_dataset_version = models.ForeignKey(
        "corpora.DatasetVersion", null=True, blank=True, on_delete=models.PROTECT, related_name="test_jobs",
        help_text="Fine-tunes: a dataset version of the same task scored once by the final model (every row of it), "
                  "never used for training or selection.")
    validation_dataset_version = models.ForeignKey(
        "corpora.DatasetVersion", null=True, blank=True, on_delete=models.PROTECT, related_name="validation_jobs",
        help_text="Fine-tunes: a dataset version whose every row is the validation split; the training dataset "
                  "version is then trained on whole (its own validation split included).")
    test_fraction = models.FloatField(null=True, blank=True, help_text=(
        "Fine-tunes: the share of the train split carved (seeded, stratified) as a test split before training."))
    max_cost = models.DecimalField(max_digits=12, decimal_places=4, null=True, blank=True,
                                   help_text="Budget in USD: the job stops when its billed compute reaches it.")
    requested = models.JSONField(default=dict, help_text="Hyperparameters as submitted ('auto' allowed).")
    spec = models.JSONField(default=dict, help_text="Hyperparameters as resolved for the worker.")
    labels = models.JSONField(default=list)
    queue = models.CharField(max_length=40, default="default")
    priority = models.PositiveSmallIntegerField(default=5, help_text="0 (highest) … 9")
    attempts = models.PositiveSmallIntegerField(default=0)
    max_attempts = models.PositiveSmallIntegerField(default=3)
    lease_token = models.UUIDField(null=True, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True, db_index=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    worker = models.CharField(max_length=200, blank=True)
    device_class = models.CharField(max_length=40, blank=True, help_text="The class of the worker that ran the attempt.")
    requested_device_class = models.CharField(max_length=40, blank=True, help_text=(
        "The device class the job asked for (only such a worker claims it); blank: any worker of its queue."))
    cancel_requested_at = models.DateTimeField(null=True, blank=True)
    pause_requested_at = models.DateTimeField(null=True, blank=True, help_text=(
        "A pause asked of the running attempt: it stops at its next step, keeps a checkpoint and the job becomes paused."))
    queued_at = models.DateTimeField(null=True, blank=True)
    last_dispatched_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    failure_reason = models.TextField(blank=True)
    step = models.PositiveIntegerField(default=0)
    progress_at = models.DateTimeField(null=True, blank=True,
                                       help_text="When this attempt last reported its step (the no-progress watchdog reads it).")
    step_seconds = models.FloatField(null=True, blank=True,
                                     help_text="This attempt's measured time per step (median of its recent steps).")
    total_steps = models.PositiveIntegerField(default=0)
    epoch = models.FloatField(default=0)
    latest_metrics = models.JSONField(default=dict)
    result = models.JSONField(default=dict)
    quote = models.JSONField(default=dict, blank=True, help_text=(
        "The quote (time, cost) at submission, kept to compare with what the job really took."))
    idempotency_key = models.CharField(max_length=200, null=True, blank=True)
    request_fingerprint = models.CharField(max_length=64, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_by_key = models.ForeignKey("accounts.ApiKey", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")

    class Meta:
        ordering = ("-created_at", "-id")
        indexes = [models.Index(fields=["organization", "-created_at"]), models.Index(fields=["state", "queue", "priority"])]
        constraints = [
            models.UniqueConstraint(fields=["organization", "idempotency_key"], condition=Q(idempotency_key__isnull=False),
                                    name="jobs_job_idempotency_key_unique"),
        ]

    def __str__(self) -> str:
        return f"job {self.pk} ({self.kind}, {self.state})"

    @property
    def is_terminal(self) -> bool:
        return self.state in TERMINAL_STATES

    @property
    def pausable(self) -> bool:
        """What lifecycle.job_pause accepts: a queued or running fine-tune, no cancel or pause pending."""
        return (self.kind in FINETUNE_KINDS and self.cancel_requested_at is None
                and (self.state == JobState.QUEUED or self.state == JobState.RUNNING and self.pause_requested_at is None))


class PredictionInput(TimeStampedModel):
    """A file of inputs uploaded for batch predictions (CSV or JSONL; labels optional, ids optional), checked
    row by row at upload (workers/serving/predict.read_inputs) and kept as uploaded."""

    organization = models.ForeignKey("tenancy.Organization", on_delete=models.CASCADE, related_name="prediction_inputs")
    name = models.CharField(max_length=200)
    file_format = models.CharField(max_length=10, help_text="csv | jsonl")
    task = models.CharField(max_length=40, help_text="text_classification | text_pair_classification | chat")
    rows = models.PositiveIntegerField()
    labelled_rows = models.PositiveIntegerField(default=0, help_text="Rows with a label (or a reference reply).")
    storage_name = models.CharField(max_length=300)
    size_bytes = models.BigIntegerField()
    sha256 = models.CharField(max_length=64)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")

    class Meta:
        ordering = ("-created_at", "-id")
        indexes = [models.Index(fields=["organization", "-created_at"])]

    def __str__(self) -> str:
        return f"prediction input {self.pk} ({self.name})"


class Worker(models.Model):
    """A worker process of the fleet, as it registered itself (jobs/fleet.py): what it runs on, which queues it
    consumes, when it was last seen. An operator drains one from admin: it finishes its job and takes no more."""

    name = models.CharField(max_length=200, unique=True, help_text="Celery's hostname, e.g. worker@gpu-host-3")
    device_class = models.CharField(max_length=40)
    device_count = models.PositiveSmallIntegerField(default=1)
    queues = models.JSONField(default=list, help_text="The queues it consumes (its class's queues included).")
    pid = models.PositiveIntegerField(null=True, blank=True)
    started_at = models.DateTimeField()
    last_seen_at = models.DateTimeField(db_index=True)
    stopped_at = models.DateTimeField(null=True, blank=True, help_text="Set on a clean shutdown.")
    draining = models.BooleanField(default=False, help_text="Finish the current job, claim no new one.")
    drain_requested_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("device_class", "name")

    def __str__(self) -> str:
        return f"{self.name} ({self.device_class})"


class EventLevel(models.TextChoices):
    INFO = "info", "Info"
    WARNING = "warning", "Warning"
    ERROR = "error", "Error"


class JobEvent(models.Model):
    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="events")
    attempt = models.PositiveSmallIntegerField(default=0)
    level = models.CharField(max_length=10, choices=EventLevel.choices, default=EventLevel.INFO)
    message = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ("id",)


class JobMetric(models.Model):
    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="metrics")
    step = models.PositiveIntegerField()
    epoch = models.FloatField()
    values = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ("id",)


class JobCheckpoint(models.Model):
    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="checkpoints")
    attempt = models.PositiveSmallIntegerField()
    step = models.PositiveIntegerField()
    path = models.CharField(max_length=500)
    is_best = models.BooleanField(default=False)
    metrics = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ("id",)


class JobArtifact(models.Model):
    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="artifacts")
    organization = models.ForeignKey("tenancy.Organization", on_delete=models.CASCADE, related_name="+")
    name = models.CharField(max_length=100)
    kind = models.CharField(max_length=20)
    storage_name = models.CharField(max_length=300)
    size_bytes = models.BigIntegerField()
    sha256 = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ("id",)
        constraints = [models.UniqueConstraint(fields=["job", "name"], name="jobs_artifact_name_unique")]
