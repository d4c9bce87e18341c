"""Prometheus metrics at /metrics, computed at scrape time from PostgreSQL.

Every value is a query over rows the platform already keeps (jobs, job events, ledger entries, Stripe
events): nothing is counted in a web process's memory, so every gunicorn process and every replica answers
the same numbers. Protected: a bearer token (LATHE_METRICS_TOKEN; unset → 404, not exposed by default) or
a staff session. docs/deployment.md lists the series.
"""
from __future__ import annotations

import hmac

from django.conf import settings
from django.db.models import Count, DurationField, ExpressionWrapper, F, Min, Q, Sum
from django.http import Http404, HttpResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, SummaryMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from billing.models import EventStatus, ExportStatus, LedgerEntry, StripeEvent

from . import fleet
from .models import TERMINAL_STATES, Job, JobEvent, JobState

# The reaper's JobEvent messages (jobs.lifecycle._take_over): "Worker lost (<why>). <outcome>…".
# <why> starts "no heartbeat" for an expired lease, "no progress" for the stall watchdog.
REAPER_PREFIX = "Worker lost ("
REAPER_OUTCOMES = (("requeued", "Re-queued"), ("failed", "Failed"), ("cancelled", "Cancelled"), ("paused", "Paused"))
LEASE_LOST_PREFIX = "Worker lost (no heartbeat"
STALLED_PREFIX = "Worker lost (no progress"


def _seconds(delta) -> float:
    return max(delta.total_seconds(), 0.0) if delta is not None else 0.0


class LatheCollector:
    """A prometheus_client custom collector: each collect() reads the database."""

    def describe(self):
        return []  # no describe-time queries (registering must not touch the database)

    def collect(self):
        now = timezone.now()
        yield from self._queues(now)
        yield from self._jobs()
        yield from self._reaper()
        yield from self._meter_export(now)
        yield from self._webhooks()

    def _queues(self, now):
        depth = GaugeMetricFamily("lathe_queue_depth", "Jobs waiting (state queued) per queue.", labels=["queue"])
        oldest = GaugeMetricFamily("lathe_queue_oldest_age_seconds",
                                   "Age of the oldest queued job per queue (since it was queued).", labels=["queue"])
        rows = (Job.objects.filter(state=JobState.QUEUED).values("queue")
                .annotate(n=Count("id"), oldest_queued=Min("queued_at"), oldest_created=Min("created_at"))
                .order_by("queue"))
        for row in rows:
            depth.add_metric([row["queue"]], row["n"])
            since = row["oldest_queued"] or row["oldest_created"]
            oldest.add_metric([row["queue"]], _seconds(now - since) if since else 0.0)
        yield depth
        yield oldest
        workers = GaugeMetricFamily("lathe_workers_online", "Job and inference workers seen within the online window, "
                                    "per device class (draining ones apart).", labels=["device_class", "draining"])
        for row in (fleet.online_workers(now).values("device_class", "draining").annotate(n=Count("id"))
                    .order_by("device_class", "draining")):
            workers.add_metric([row["device_class"], str(row["draining"]).lower()], row["n"])
        yield workers

    def _jobs(self):
        by_state = GaugeMetricFamily("lathe_jobs", "Jobs by state and kind.", labels=["state", "kind"])
        for row in Job.objects.values("state", "kind").annotate(n=Count("id")).order_by("state", "kind"):
            by_state.add_metric([row["state"], row["kind"]], row["n"])
        yield by_state
        running = GaugeMetricFamily("lathe_jobs_running", "Running jobs per device class and queue.",
                                    labels=["device_class", "queue"])
        for row in (Job.objects.filter(state=JobState.RUNNING).values("device_class", "queue")
                    .annotate(n=Count("id")).order_by("device_class", "queue")):
            running.add_metric([row["device_class"] or "unknown", row["queue"]], row["n"])
        yield running
        duration = SummaryMetricFamily("lathe_job_duration_seconds",
                                       "Finished jobs' wall time (started → finished), by kind and final state.",
                                       labels=["kind", "state"])
        wall = ExpressionWrapper(F("finished_at") - F("started_at"), output_field=DurationField())
        for row in (Job.objects.filter(state__in=TERMINAL_STATES, started_at__isnull=False, finished_at__isnull=False)
                    .values("kind", "state").annotate(n=Count("id"), total=Sum(wall)).order_by("kind", "state")):
            duration.add_metric([row["kind"], row["state"]], count_value=row["n"], sum_value=_seconds(row["total"]))
        yield duration

    def _reaper(self):
        counts = JobEvent.objects.filter(message__startswith=REAPER_PREFIX).aggregate(
            lease=Count("id", filter=Q(message__startswith=LEASE_LOST_PREFIX)),
            stalled=Count("id", filter=Q(message__startswith=STALLED_PREFIX)),
            **{kind: Count("id", filter=Q(message__contains=f"). {text}")) for kind, text in REAPER_OUTCOMES})
        losses = CounterMetricFamily("lathe_lease_losses", "Attempts taken over by the reaper, by cause "
                                     "(lease expired: no heartbeat; stalled: no progress).", labels=["cause"])
        losses.add_metric(["lease_expired"], counts["lease"])
        losses.add_metric(["stalled"], counts["stalled"])
        yield losses
        actions = CounterMetricFamily("lathe_reaper_actions", "What the reaper did with jobs taken from lost "
                                      "attempts.", labels=["action"])
        for kind, _text in REAPER_OUTCOMES:
            actions.add_metric([kind], counts[kind])
        yield actions

    def _meter_export(self, now):
        pending = LedgerEntry.objects.filter(export_status=ExportStatus.PENDING)
        stats = pending.aggregate(n=Count("id"), oldest=Min("created_at"),
                                  failing=Count("id", filter=Q(export_attempts__gt=0) & ~Q(export_error="")))
        yield GaugeMetricFamily("lathe_meter_export_pending", "Ledger entries whose Stripe meter event is not sent yet.",
                                value=stats["n"])
        yield GaugeMetricFamily("lathe_meter_export_lag_seconds",
                                "Age of the oldest ledger entry still waiting for its meter event (0: none).",
                                value=_seconds(now - stats["oldest"]) if stats["oldest"] else 0.0)
        yield GaugeMetricFamily("lathe_meter_export_failing", "Pending ledger entries whose last export attempt failed.",
                                value=stats["failing"])
        by_status = GaugeMetricFamily("lathe_ledger_entries", "Ledger entries by meter-export status.",
                                      labels=["export_status"])
        counts = dict(LedgerEntry.objects.values_list("export_status").annotate(n=Count("id")).order_by())
        for status in ExportStatus.values:
            by_status.add_metric([status], counts.get(status, 0))
        yield by_status

    def _webhooks(self):
        family = GaugeMetricFamily("lathe_stripe_events", "Stripe webhook events by processing status.",
                                   labels=["status"])
        counts = dict(StripeEvent.objects.values_list("status").annotate(n=Count("id")).order_by())
        for status in EventStatus.values:
            family.add_metric([status], counts.get(status, 0))
        yield family


def exposition() -> bytes:
    """The metrics text, from a registry built for this scrape (no process-global state)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(LatheCollector())
    return generate_latest(registry)


def _allowed(request) -> bool | None:
    """True: serve. False: refuse (wrong or missing token). None: hide (404)."""
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated and user.is_staff and user.is_active:
        return True
    token = settings.LATHE_METRICS_TOKEN
    if not token:
        return None
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


@never_cache
@require_GET
def metrics_view(request):
    allowed = _allowed(request)
    if allowed is None:
        raise Http404
    if not allowed:
        status = 403 if request.headers.get("Authorization") else 401
        response = HttpResponse("Forbidden\n" if status == 403 else "Unauthorized\n", status=status,
                                content_type="text/plain")
        if status == 401:
            response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    return HttpResponse(exposition(), content_type=CONTENT_TYPE_LATEST)
