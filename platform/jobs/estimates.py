"""How long a job takes, and when it will be done — the quote's and the ETA's
one estimator.

A job's *work* is counted in tokens: the dataset version's real token lengths
(the preflight report's statistics, each row truncated at the job's
max_length) times the passes it makes (a fine-tune: epochs over the train
split; compression kinds: their evaluation passes, probes and training phases,
in training-token equivalents). Its *throughput* is what past jobs of the same
method (full, lora, int8, the prune method, distill) measured on the same
device class: token·parameters per second, the most recent weighted most
(the machine's load is part of what they measured), with a range from the
spread of those measurements. Until a method has run on a device class, a
stated default. Each finished attempt records what it measured on its result
(`throughput`: tokens, seconds, device, method; `record()` below), which is
the history the next estimate reads.

The ETA (`eta()`): a running job's remaining steps × its smoothed step time
(anchored at its last progress report, so it does not move with the clock), or
for a queued job the work ahead of it in its queue spread over the queue's
workers, plus its own estimate. Every estimate says what it rests on.
"""
from __future__ import annotations

import heapq
import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from workers.kinds import FineTuneHyperparameters, default_of

from .models import FINETUNE_KINDS, Job, JobKind, JobState

WORDS_TO_TOKENS = 1.3  # a report counted in words (no tokenizer chosen at upload)
DEFAULT_TOKENS_PER_ROW = 16  # a version without a length report
DEFAULT_TOKENS_PER_CONVERSATION = 256  # a chat version without token statistics
DEFAULT_PARAMETERS = 110_000_000
HISTORY_JOBS = 20  # the most recent measurements read per (device class, method)
HALF_LIFE_JOBS = 3  # a measurement's weight halves every 3 newer ones
INTERVAL_Z = 1.645  # the range: a 90 % interval of the measured throughput
MIN_LOG_SPREAD = 0.05  # identical measurements still leave ±5 %
DEFAULT_RANGE_FACTOR = 2.0  # no spread to go on (no or one measurement): ÷2 … ×2
STARTUP_SECONDS = 20.0  # loading, tokenizing, exporting, until a method's history says otherwise
EVAL_TOKEN = 1 / 3  # a forward pass costs about a third of a training step (forward + backward)
MEASURE_PASSES = 4  # compression's measure(): accuracy + 3 timed throughput passes over the evaluation rows
PRUNE_SEARCH_PROBES = 6  # sparsity "auto": bisection probes of one evaluation pass each
GENERATED_TOKEN = 8  # predict with a chat model: one decoding step at batch 1 costs about 8 prompt tokens' forward
ETA_QUEUE_LIMIT = 500  # jobs ahead read for a queued job's ETA

# Token·parameters per second until a device class has history for a method.
# Full fine-tune on CPU, measured here (bench/lora_vs_full.py, 2 cores, bf16, quiet):
# MiniLM-L6 (22.7 M parameters) at ~1,440 tokens/s ≈ 3.3e10; on a GPU, ~700 BANKING77
# rows/s of ~16 tokens on an H100 ≈ 2.5e11 (not measured by this benchmark). LoRA skips
# the frozen weights' gradients and optimizer state: 1.5–1.7× full's tokens/s here.
DEFAULT_RATE = {"cpu": 3.3e10, "gpu": 2.5e11}
# A causal LM's token costs more per parameter than an encoder's (a 49k-word output layer, longer sequences):
# SmolLM2-135M LoRA on 2 Zen 4 cores measured 1.3–1.45e10 token·parameters/s over four jobs of the newcomer walk
# (bench/results/newcomer_walk_chat_2core.json), 0.42 of the cpu default; full is put at LoRA's ÷1.5 as encoders'.
DEFAULT_METHOD_FACTOR = {"lora": 1.5, "chat-lora": 0.42, "chat-full": 0.28}
# Seconds outside the training loop before a method has history: a chat job also loads a larger model, writes
# the base model's and the fine-tune's replies and exports a merged model (about 85 s of each walk job above).
DEFAULT_METHOD_STARTUP = {"chat-lora": 80.0, "chat-full": 80.0}


def device_family(device_class: str) -> str:
    return "gpu" if device_class.startswith(("nvidia-", "cuda")) else "cpu"


def trained_max_length(job: Job | None) -> int | None:
    """The token limit the model in a chain was trained with (its fine-tune's,
    unless a later training phase set one; an uploaded model's own): the one
    rule for submission (a compression's training phase) and measurement.
    None when no job of the chain says."""
    while job is not None:
        length = job.spec.get("max_length") or job.spec.get("training", {}).get("max_length")
        if length:
            return int(length)
        if job.source_model_id:
            return job.source_model.max_length
        job = job.source_job
    return None


def model_max_length(job: Job) -> int:
    """trained_max_length, else the workers' default."""
    return trained_max_length(job) or default_of(FineTuneHyperparameters, "max_length")


def method_of(job: Job) -> str:
    """The method whose throughput this job shares: full | lora for classifier fine-tunes, chat-full | chat-lora
    for chat fine-tunes (a causal LM's token·parameters/s is not an encoder's: their histories stay apart);
    int8, the prune method or distill for compression jobs."""
    from .selectors import job_method

    method = job_method(job)
    return f"chat-{method}" if job.kind == JobKind.CHAT_FINETUNE else method


def parameters_of(job: Job) -> int:
    if job.base_model_id and job.base_model.parameter_count:
        return int(job.base_model.parameter_count)
    if job.source_model_id and job.source_model.parameter_count:
        return int(job.source_model.parameter_count)
    return DEFAULT_PARAMETERS


def tokens_per_row(report: dict, max_length: int) -> float:
    """The mean tokens a row feeds the model, each row truncated at
    `max_length`: the report's exact mean less what its length histogram puts
    beyond the limit (lengths spread evenly within a bin)."""
    lengths = (report or {}).get("lengths") or {}
    count, mean = lengths.get("count") or 0, float(lengths.get("mean") or 0)
    if not count or not mean:
        return float(min(DEFAULT_TOKENS_PER_ROW, max_length))
    scale = 1.0 if lengths.get("unit") == "tokens" else WORDS_TO_TOKENS
    limit = max_length / scale  # in the report's unit
    if (lengths.get("max") or 0) <= limit:
        return mean * scale
    histogram = lengths.get("histogram") or {}
    edges, counts = histogram.get("edges") or [], histogram.get("counts") or []
    if not edges:
        return max(1.0, min(mean, limit)) * scale
    excess = 0.0
    for low, high, n in zip(edges, edges[1:], counts):
        first, last = max(low, math.floor(limit) + 1), high - 1  # the whole lengths in this bin beyond the limit
        if n and first <= last:
            excess += n * ((first - limit) + (last - limit)) * (last - first + 1) / 2 / (high - low)
    return max(1.0, mean - excess / count) * scale


def chat_train_tokens(report: dict, max_length: int | None, train_count: int | None) -> float:
    """A chat dataset's train-split tokens under the chat template (the upload's
    statistics, measured with the catalog's default chat model), each
    conversation at most `max_length` tokens."""
    tokens = (report or {}).get("tokens") or {}
    count = train_count or (tokens.get("train") or {}).get("conversations") or 0
    mean = float(tokens.get("mean") or DEFAULT_TOKENS_PER_CONVERSATION)
    if max_length:
        mean = min(mean, float(max_length))
    return count * mean


# A test set's reply, as the worker generates it (workers/chat/evaluation.max_new_tokens_for: the longest
# reference + 16, within 16–256): a typical short answer's budget, each new token one decoding step.
TEST_REPLY_TOKENS = 32


def chat_finetune_work(job: Job, spec: dict, train_rows: int) -> float:
    """Trained tokens × epochs — less a carved test split, which leaves the train split before training
    (workers.chat.data.carve_test_conversations) — plus the test set scored once: a forward pass over its
    tokens and a greedy reply to each conversation."""
    max_length = spec.get("max_length")
    train = chat_train_tokens(job.dataset_version.report, max_length, train_rows)
    fraction = float(job.test_fraction or 0.0)
    test_version = job.test_dataset_version
    if test_version is not None:
        conversations = (test_version.train_count or 0) + (test_version.validation_count or 0)
        test = chat_train_tokens(test_version.report, max_length, conversations)
    else:
        conversations, test = train_rows * fraction, train * fraction
    replies = conversations * (TEST_REPLY_TOKENS if test_version is not None or fraction else 0)
    return int(spec.get("epochs") or 3) * (train - train * fraction) + (test + replies * GENERATED_TOKEN) * EVAL_TOKEN


def work_tokens(job: Job) -> float:
    """The job's work in training-token equivalents (what `throughput` divides).
    A fine-tune: the train split's real tokens × epochs (all of them: early
    stopping can only end it sooner). Compression: its evaluation passes and
    probes at a third of a training token each, plus its training phases."""
    spec = job.spec or {}
    if job.kind == JobKind.PREDICT and job.dataset_version_id is None and job.prediction_input_id:
        # An uploaded input file has no length report: its rows at the default length (or a default
        # conversation and every reply at max_new_tokens, as for a chat dataset below).
        inputs = job.prediction_input
        if inputs.task != "chat":
            return inputs.rows * tokens_per_row({}, model_max_length(job)) * EVAL_TOKEN
        new = int(spec.get("max_new_tokens") or 128)
        return inputs.rows * (DEFAULT_TOKENS_PER_CONVERSATION + new * GENERATED_TOKEN) * EVAL_TOKEN
    version = job.dataset_version
    # A fine-tune validated on a set of its own trains on every row of its version (staging.fetch_dataset).
    separate = job.validation_dataset_version if job.kind in FINETUNE_KINDS else None
    train_rows = (version.train_count or 0) + ((version.validation_count or 0) if separate is not None else 0)
    if job.kind == JobKind.CHAT_FINETUNE:
        return chat_finetune_work(job, spec, train_rows)
    per_row = tokens_per_row(version.report, model_max_length(job))
    if job.kind == JobKind.FINETUNE:
        # A carved test split leaves the train split before training (workers.data.carve_test);
        # a refit trains again on train + validation for (at most) as many epochs.
        train = train_rows * (1.0 - float(job.test_fraction or 0.0)) * per_row
        evaluation = ((separate.train_count or 0) + (separate.validation_count or 0)) * tokens_per_row(
            separate.report, model_max_length(job)) if separate is not None else (version.validation_count or 0) * per_row
        return int(spec.get("epochs") or 3) * (train + ((train + evaluation) if spec.get("refit") else 0))
    train, evaluation = (version.train_count or 0) * per_row, (version.validation_count or 0) * per_row
    if job.kind == JobKind.EVALUATE:  # every row, each model: its scored pass + 3 timed ones (workers/serving/evaluate.py)
        held_out_of = job.source_job  # held_out_of_job_id: only the test split that fine-tune carved
        carved = held_out_of is not None and not held_out_of.test_dataset_version_id and held_out_of.test_fraction
        scored = train * held_out_of.test_fraction if carved else train + evaluation
        return len(spec.get("models") or ()) * MEASURE_PASSES * scored * EVAL_TOKEN
    if job.kind == JobKind.PREDICT:  # every row once, forward only (workers/serving/predict.py)
        rows = (version.train_count or 0) + (version.validation_count or 0)
        if version.task != "chat":
            return rows * per_row * EVAL_TOKEN
        # A reply: its prompt once, then each new token one decoding step at batch 1 (memory-bound: worth
        # GENERATED_TOKEN prompt tokens); every reply counted at max_new_tokens, so this is an upper bound.
        prompt = chat_train_tokens(version.report, None, 1) or DEFAULT_TOKENS_PER_CONVERSATION
        new = int(spec.get("max_new_tokens") or 128)
        return rows * (prompt + new * GENERATED_TOKEN) * EVAL_TOKEN
    passes = 2 * MEASURE_PASSES  # the source model measured, and the result
    training = 0.0
    if job.kind == JobKind.QUANTIZE:
        passes += MEASURE_PASSES  # the ONNX variant is measured too
    elif job.kind == JobKind.PRUNE:
        passes += PRUNE_SEARCH_PROBES if spec.get("sparsity") is None else 0
        epochs = int(spec.get("recovery_epochs") or 0)
        training = epochs * train + (epochs + 1) * evaluation * EVAL_TOKEN if epochs else 0.0
    elif job.kind == JobKind.DISTILL:
        epochs = int((spec.get("training") or {}).get("epochs") or 3)
        training = train * EVAL_TOKEN + epochs * train + epochs * evaluation * EVAL_TOKEN  # the teacher's logits, then training
    return passes * evaluation * EVAL_TOKEN + training


@dataclass(frozen=True)
class Estimate:
    seconds: float
    low_seconds: float
    high_seconds: float
    device_class: str
    method: str
    tokens: int  # work_tokens()
    history_jobs: int  # measurements it rests on (0: the default)
    basis: str


@dataclass(frozen=True)
class Throughput:
    rate: float  # token·parameters per second (weighted geometric mean)
    factor: float  # the range: rate ÷ factor … × factor
    overhead: float  # seconds outside the measured work (startup, export)
    jobs: int
    basis: str


class Estimator:
    """Estimates with their history read once per (device class, method), and
    the device class of each queue read once: one per request or page."""

    def __init__(self):
        self._throughput: dict[tuple[str, str], Throughput] = {}
        self._device: dict[str, str] = {}

    def device_class(self, queue: str) -> str:
        """Where jobs of this queue ran lately; CPU when nothing has run yet."""
        if queue not in self._device:
            last = (Job.objects.filter(queue=queue).exclude(device_class="").order_by("-started_at", "-id")
                    .values_list("device_class", flat=True).first())
            self._device[queue] = last or "cpu"
        return self._device[queue]

    def throughput(self, device_class: str, method: str) -> Throughput:
        key = (device_class, method)
        if key not in self._throughput:
            self._throughput[key] = measured_throughput(device_class=device_class, method=method)
        return self._throughput[key]

    def estimate(self, job: Job) -> Estimate:
        # Where it ran, else the class it asked for, else where its queue's jobs ran lately.
        device_class = job.device_class or job.requested_device_class or self.device_class(job.queue)
        method = method_of(job)
        tokens = work_tokens(job)
        measured = self.throughput(device_class, method)
        work = tokens * parameters_of(job)
        central = measured.overhead + work / measured.rate
        return Estimate(seconds=central, low_seconds=measured.overhead + work / (measured.rate * measured.factor),
                        high_seconds=measured.overhead + work * measured.factor / measured.rate,
                        device_class=device_class, method=method, tokens=round(tokens), history_jobs=measured.jobs,
                        basis=f"{tokens:,.0f} tokens; {measured.basis}")


def estimate(job: Job) -> Estimate:
    """`job` may be unsaved (a quote)."""
    return Estimator().estimate(job)


def measured_throughput(*, device_class: str, method: str) -> Throughput:
    """From the last HISTORY_JOBS jobs of this method that recorded a
    measurement on this device class, newest weighted most: the weighted
    geometric mean of their token·parameters per second, a 90 % range from the
    weighted spread of their logarithms (a prediction interval: wider with
    fewer jobs), and the mean of their seconds outside the measured work."""
    rows = (Job.objects.filter(device_class=device_class, result__throughput__method=method)
            .exclude(finished_at__isnull=True).order_by("-finished_at", "-id")
            .values_list("result__throughput", flat=True)[:HISTORY_JOBS])
    samples = []
    for record in rows:
        try:
            tokens, seconds = float(record["tokens"]), float(record["work_seconds"])
            parameters, overhead = float(record["parameters"]), max(0.0, float(record["seconds"]) - seconds)
        except (KeyError, TypeError, ValueError):
            continue
        if tokens > 0 and seconds > 0 and parameters > 0:
            samples.append((tokens * parameters / seconds, overhead))
    what = f"{method} on {device_class}"
    if not samples:
        rate = DEFAULT_RATE[device_family(device_class)] * DEFAULT_METHOD_FACTOR.get(method, 1.0)
        return Throughput(rate=rate, factor=DEFAULT_RANGE_FACTOR, overhead=DEFAULT_METHOD_STARTUP.get(method, STARTUP_SECONDS), jobs=0,
                          basis=f"default throughput for {what} ({rate:.2g} token·parameters/s; no measured jobs yet), "
                                f"range ÷{DEFAULT_RANGE_FACTOR:g}–×{DEFAULT_RANGE_FACTOR:g}")
    weights = [0.5 ** (i / HALF_LIFE_JOBS) for i in range(len(samples))]
    total = sum(weights)
    logs = [math.log(rate) for rate, _ in samples]
    mean = sum(w * x for w, x in zip(weights, logs)) / total
    overhead = sum(w * o for w, (_, o) in zip(weights, samples)) / total
    if len(samples) == 1:
        factor, spread = DEFAULT_RANGE_FACTOR, f"one job, no spread yet: range ÷{DEFAULT_RANGE_FACTOR:g}–×{DEFAULT_RANGE_FACTOR:g}"
    else:
        squares = sum(w * w for w in weights)
        variance = sum(w * (x - mean) ** 2 for w, x in zip(weights, logs)) / (total - squares / total)
        effective = total * total / squares
        sd = max(math.sqrt(variance), MIN_LOG_SPREAD)
        factor = math.exp(INTERVAL_Z * sd * math.sqrt(1 + 1 / effective))
        spread = f"range from their spread (±{sd:.0%} a job)"
    rate = math.exp(mean)
    return Throughput(rate=rate, factor=factor, overhead=overhead, jobs=len(samples),
                      basis=f"throughput measured on the last {len(samples)} {what} job(s), newest weighted most "
                            f"({rate:.2g} token·parameters/s, + {overhead:.0f} s startup); {spread}")


def record(*, job: Job, result: dict, seconds: float, device_class: str) -> dict | None:
    """What an attempt measured, for the estimates of the jobs after it (the
    result's `throughput`), or None when it measured nothing usable. A fine-tune:
    the tokens its training loop processed and the loop's seconds (the worker
    counts them); compression: its work_tokens() over the attempt's seconds,
    for a first attempt that ran to a report (a resumed one did less)."""
    base = {"method": method_of(job), "device_class": device_class, "parameters": parameters_of(job),
            "seconds": round(seconds, 3)}
    if job.kind in FINETUNE_KINDS:
        # Chat: every token through the model (input_tokens); its train_tokens are the trained (assistant) ones.
        tokens = result.get("input_tokens") if job.kind == JobKind.CHAT_FINETUNE else result.get("train_tokens")
        loop = result.get("train_seconds")
        if not tokens or not loop:
            return None
        return {**base, "tokens": int(tokens), "work_seconds": round(min(float(loop), seconds), 3)}
    if job.kind == JobKind.PREDICT:  # the rows this attempt predicted (a resumed one did fewer) over its loop's seconds
        report = result.get("predictions") or {}
        done, rows, loop = report.get("predicted_rows"), report.get("rows"), report.get("predict_seconds")
        if not done or not rows or not loop:
            return None
        return {**base, "tokens": round(work_tokens(job) * done / rows), "work_seconds": round(min(float(loop), seconds), 3)}
    if not ("compression" in result or "leaderboard" in result) or job.attempts != 1 or seconds <= 0:
        return None  # (a comparison's "leaderboard": its work_tokens over its seconds, as compression's)
    return {**base, "tokens": round(work_tokens(job)), "work_seconds": round(seconds, 3)}


# --- ETA ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Eta:
    at: datetime | None
    basis: str | None


def _minutes(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def finish_of_running(job: Job, estimator: Estimator) -> tuple[datetime, str]:
    """When a running job should finish and why: its remaining steps × its
    step time (the median of its recent steps, as the worker measured it),
    from its last progress report; before that (or for compression, whose
    steps are phases of unequal length), its start + its estimate."""
    if ((job.kind in FINETUNE_KINDS or job.kind == JobKind.PREDICT) and job.step_seconds and job.total_steps
            and job.progress_at and job.step < job.total_steps):
        left = job.total_steps - job.step
        unit = "row" if job.kind == JobKind.PREDICT else "step"  # a predict job's steps are its rows
        return (job.progress_at + timedelta(seconds=left * job.step_seconds),
                f"{left} {unit}s left × {job.step_seconds:{'.3g' if unit == 'row' else '.2f'}} s a {unit} "
                f"(median of its recent {unit}s)")
    own = estimator.estimate(job)
    started = job.started_at or timezone.now()
    return started + timedelta(seconds=own.seconds), f"started + its estimate of {_minutes(own.seconds)} ({own.basis})"


def queue_concurrency(queue: str, running: int) -> tuple[int, str]:
    configured = (getattr(settings, "LATHE_QUEUE_CONCURRENCY", None) or {}).get(queue)
    if configured:
        return max(int(configured), running), f"{configured} worker(s) (LATHE_QUEUE_CONCURRENCY)"
    return max(1, running), f"{max(1, running)} worker(s) (as many as run now)"


def eta(*, job: Job, now: datetime | None = None, estimator: Estimator | None = None) -> Eta:
    """When the job should finish, and what that rests on; None when it is done
    (or a running job is past its estimate with no step to go by)."""
    now = now or timezone.now()
    estimator = estimator or Estimator()
    if job.state == JobState.RUNNING:
        finish, basis = finish_of_running(job, estimator)
        if finish <= now:
            return Eta(None, f"past its estimate: {basis}")
        return Eta(finish, basis)
    if job.state != JobState.QUEUED:
        return Eta(None, None)
    same_queue = Job.objects.filter(queue=job.queue).exclude(pk=job.pk).select_related(
        "base_model", "source_model", "dataset_version", "source_job")
    running = list(same_queue.filter(state=JobState.RUNNING))
    ahead = list(same_queue.filter(state=JobState.QUEUED).filter(
        Q(priority__lt=job.priority) | Q(priority=job.priority, queued_at__lt=job.queued_at)
        | Q(priority=job.priority, queued_at=job.queued_at, pk__lt=job.pk)).order_by("priority", "queued_at", "id")[:ETA_QUEUE_LIMIT])
    workers, workers_basis = queue_concurrency(job.queue, len(running))
    free_at = [max(0.0, (finish_of_running(r, estimator)[0] - now).total_seconds()) for r in running]
    free_at += [0.0] * (workers - len(free_at))
    heapq.heapify(free_at)
    for other in ahead:
        heapq.heapreplace(free_at, free_at[0] + estimator.estimate(other).seconds)
    wait = free_at[0]
    own = estimator.estimate(job)
    queue = (f"starts in {_minutes(wait)}: {len(running)} running and {len(ahead)} queued ahead on '{job.queue}', "
             f"{workers_basis}" if running or ahead else f"next on '{job.queue}'")
    return Eta(now + timedelta(seconds=wait + own.seconds), f"{queue}; then {_minutes(own.seconds)}: {own.basis}")
