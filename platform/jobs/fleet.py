"""The fleet: worker processes register what they run on, heartbeat, and can be drained; jobs that ask
for a device class go to that class's queue and only such a worker claims them.

Queues: a plan's queue (`default`, `priority`, …) is consumed by every job worker; each worker also
consumes `<queue>.<its device class>` (e.g. `default.nvidia-h100`), added at start (celeryd_after_setup,
jobs/worker_signals.py). A job with `requested_device_class` is rung on that class queue, a job without on
the plan's queue. The database still decides: a claim by a worker of another class, or by a draining
worker, is refused (`claim_refusal`), and the sweeper rings again."""
from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.db.models import Count, Min, Q
from django.utils import timezone

from core.errors import field_error

from .models import Job, JobState, Worker

logger = logging.getLogger(__name__)

CLASS_QUEUE_SEPARATOR = "."


def class_queue(queue: str, device_class: str) -> str:
    return f"{queue}{CLASS_QUEUE_SEPARATOR}{device_class}"


def routed_queue(job: Job) -> str:
    """Where the job's doorbell rings: its class's queue when it asked for one."""
    return class_queue(job.queue, job.requested_device_class) if job.requested_device_class else job.queue


def class_queues(queues: list[str], device_class: str) -> list[str]:
    """The class queues a job worker consuming `queues` adds (none for housekeeping or serving queues)."""
    skip = {settings.LATHE_MAINTENANCE_QUEUE, getattr(settings, "LATHE_INFERENCE_QUEUE", "inference")}
    return [class_queue(q, device_class) for q in queues
            if q not in skip and CLASS_QUEUE_SEPARATOR not in q]


def online_cutoff(now=None):
    return (now or timezone.now()) - timedelta(seconds=settings.LATHE_WORKER_ONLINE_SECONDS)


def online_workers(now=None):
    return Worker.objects.filter(stopped_at__isnull=True, last_seen_at__gte=online_cutoff(now))


# --- worker side ----------------------------------------------------------------------------------

def worker_register(*, name: str, device_class: str, device_count: int, queues: list[str], pid: int | None) -> Worker:
    """A worker starting: its row created or refreshed. A drain survives a restart under the same name (the
    operator's decision stands until they undo it in admin)."""
    now = timezone.now()
    worker, _ = Worker.objects.update_or_create(name=name[:200], defaults=dict(
        device_class=device_class, device_count=device_count, queues=sorted(queues), pid=pid, started_at=now,
        last_seen_at=now, stopped_at=None))
    return worker


def worker_seen(*, name: str) -> Worker | None:
    """A heartbeat; the row (its `draining` flag is what the worker acts on), None if an operator deleted it.
    A row marked stopped stays stopped (a beat racing the shutdown must not revive it; a restart registers)."""
    Worker.objects.filter(name=name, stopped_at__isnull=True).update(last_seen_at=timezone.now())
    return Worker.objects.filter(name=name).first()


def worker_stopped(*, name: str) -> None:
    Worker.objects.filter(name=name).update(stopped_at=timezone.now())


def claim_refusal(*, job: Job, worker: str, device_class: str) -> str | None:
    """Why this worker must not claim this job (None: it may). Read inside the claim's transaction."""
    if job.requested_device_class and job.requested_device_class != device_class:
        return f"asks for a {job.requested_device_class} worker; {worker} is {device_class}"
    if Worker.objects.filter(name=worker, draining=True).exists():
        return f"{worker} is draining"
    return None


# --- operators ---------------------------------------------------------------------------------------

def worker_set_draining(*, workers, draining: bool) -> int:
    """Drain (finish the current job, claim no new one) or undo it. The claim check makes it hold at once;
    the worker's heartbeat then also stops (or restarts) consuming its queues, so messages go to others."""
    now = timezone.now()
    ids = [w.pk for w in workers]
    updated = Worker.objects.filter(pk__in=ids).update(draining=draining, drain_requested_at=now if draining else None)
    for worker in Worker.objects.filter(pk__in=ids):
        try:
            apply_drain(worker)  # best effort, now; the worker's own heartbeat applies it too
        except Exception:
            logger.warning("Could not reach %s to %s it now; its heartbeat will.", worker.name,
                           "drain" if draining else "resume", exc_info=True)
    return updated


def apply_drain(worker: Worker) -> None:
    """Tell the worker's consumer to stop (drain) or restart consuming its job queues (Celery remote control)."""
    from celery import current_app

    control = current_app.control
    for queue in job_queues_of(worker):
        if worker.draining:
            control.cancel_consumer(queue, destination=[worker.name])
        else:
            control.add_consumer(queue, destination=[worker.name])


def job_queues_of(worker: Worker) -> list[str]:
    skip = {settings.LATHE_MAINTENANCE_QUEUE, getattr(settings, "LATHE_INFERENCE_QUEUE", "inference")}
    return [q for q in worker.queues if q not in skip]


def known_device_classes() -> list[str]:
    """Every class a worker of this installation has registered with (what a job may ask for)."""
    return sorted(set(Worker.objects.values_list("device_class", flat=True)))


def checked_device_class(value) -> str:
    """A submission's `device_class`: blank (any worker), or a class this fleet has had a worker of."""
    if value in (None, "", "any"):
        return ""
    if not isinstance(value, str) or len(value) > 40 or "\x00" in value:
        raise field_error("device_class", "device_class must be a device class name such as cpu or nvidia-h100.")
    known = known_device_classes()
    if value not in known:
        raise field_error("device_class", f"No worker of class {value!r} has joined this installation"
                                          + (f"; known: {', '.join(known)}." if known else " yet.")
                                          + " Leave device_class out to run on any worker.")
    return value


def fleet_overview(now=None) -> list[dict]:
    """Per (queue, device class): queued jobs, the oldest one's wait, workers online (busy with which job,
    draining). The class of a queued job is the one it asked for ('any' when none)."""
    now = now or timezone.now()
    rows: dict[tuple[str, str], dict] = {}

    def row(queue: str, device_class: str) -> dict:
        return rows.setdefault((queue, device_class), {
            "queue": queue, "device_class": device_class, "depth": 0, "oldest_queued_at": None,
            "oldest_wait_seconds": None, "workers": []})

    waiting = (Job.objects.filter(state=JobState.QUEUED).values("queue", "requested_device_class")
               .annotate(depth=Count("id"), oldest=Min("queued_at")))
    for group in waiting:
        r = row(group["queue"], group["requested_device_class"] or "any")
        r["depth"], r["oldest_queued_at"] = group["depth"], group["oldest"]
        if group["oldest"]:
            r["oldest_wait_seconds"] = round((now - group["oldest"]).total_seconds(), 1)
    running = {j["worker"]: j for j in Job.objects.filter(state=JobState.RUNNING).values("pk", "worker", "kind")}
    for worker in online_workers(now).order_by("name"):
        for queue in job_queues_of(worker):
            base = queue.split(CLASS_QUEUE_SEPARATOR, 1)[0]
            if CLASS_QUEUE_SEPARATOR in queue:
                continue  # listed once, under its plan queue and its class
            current = running.get(worker.name)
            entry = {"name": worker.name, "draining": worker.draining, "device_count": worker.device_count,
                     "current_job_id": current["pk"] if current else None,
                     "last_seen_seconds": round((now - worker.last_seen_at).total_seconds(), 1)}
            row(base, worker.device_class)["workers"].append(entry)
            if (base, "any") in rows:
                rows[(base, "any")]["workers"].append(entry)
    for r in rows.values():
        r["workers_online"] = len(r["workers"])
        r["workers_busy"] = sum(1 for w in r["workers"] if w["current_job_id"])
    return sorted(rows.values(), key=lambda r: (r["queue"], r["device_class"] != "any", r["device_class"]))


def workers_online_by_class(now=None) -> dict[str, int]:
    counts = online_workers(now).filter(draining=False).values("device_class").annotate(n=Count("id"))
    return {c["device_class"]: c["n"] for c in counts}


def stale_workers(now=None):
    """Registered, not stopped cleanly, not seen within the online window: lost hosts."""
    return Worker.objects.filter(stopped_at__isnull=True).filter(~Q(last_seen_at__gte=online_cutoff(now)))
