"""The comparison's result (an `evaluate` job, docs/comparison.md) for the API, the CSV and the dashboard:
the rows the worker measured, priced when the job finished (jobs/kind_runners.evaluate_outcome), and the
cost-vs-accuracy chart drawn server-side as SVG (no script: the CSP allows none inline)."""
from __future__ import annotations

import math

from core.errors import Conflict, NotFound

from .models import Job, JobKind, JobState

COLUMNS = ("rank", "name", "key", "variant", "metric", "accuracy", "macro_f1", "exact_match", "token_f1",
           "points_behind_best", "within_tolerance", "latency_ms_p50", "latency_ms_p95", "throughput_batch32",
           "size_bytes", "cost_per_1m_usd", "recommended")


def evaluate_job_get(*, organization, job_id) -> Job:
    """The organization's comparison job; another tenant's (or another kind's) is not found."""
    from .selectors import job_get

    job = job_get(organization=organization, job_id=job_id)
    if job.kind != JobKind.EVALUATE:
        raise NotFound(f"Job {job.pk} is a {job.kind} job; only comparisons (kind evaluate) have a leaderboard.")
    return job


def board_of(job: Job) -> dict:
    """The leaderboard as the API answers it: empty rows until the job succeeded."""
    stored = (job.result or {}).get("leaderboard") or {}
    rows = stored.get("rows") or []
    ranked = sorted(rows, key=_rank_key(stored.get("metric") or "accuracy"))
    return {
        "job_id": job.pk, "state": job.state, "metric": stored.get("metric"),
        "accuracy_tolerance": stored.get("accuracy_tolerance", (job.spec or {}).get("accuracy_tolerance")),
        "dataset": {"id": job.dataset_version.dataset_id, "version": job.dataset_version.number},
        "held_out_of_job_id": job.source_job_id,
        "scored_on": scored_rows_description(version=job.dataset_version, held_out_of=job.source_job),
        "dataset_rows": stored.get("dataset_rows"), "device_class": stored.get("device_class"),
        "device_count": stored.get("device_count"), "usd_per_second": stored.get("usd_per_second"),
        "plan": stored.get("plan"), "batch_size": stored.get("batch_size"),
        "latency_samples": stored.get("latency_samples"), "threads": stored.get("threads"),
        "recommended": next((r["key"] for r in rows if r.get("recommended")), None),
        "rows": [{"rank": i + 1, **r} for i, r in enumerate(ranked)],
    }


def scored_rows_description(*, version, held_out_of: Job | None) -> str:
    """What a comparison scores, in words (its queued event, its page)."""
    if held_out_of is None:
        return f"every row of {version.dataset.name} v{version.number}"
    if held_out_of.test_dataset_version_id:
        return (f"every row of {version.dataset.name} v{version.number}, the test set job {held_out_of.pk} held out")
    return (f"the {held_out_of.test_fraction:.0%} test split job {held_out_of.pk} carved from "
            f"{version.dataset.name} v{version.number} (rows it and the compressions of its model never trained on)")


def _rank_key(metric: str):
    """Best quality first; equal quality: cheaper first."""
    def key(row):
        cost = row.get("cost_per_1m_usd")
        return (-(row.get(metric) or 0.0), cost if cost is not None else math.inf)
    return key


def csv_rows(job: Job) -> tuple[str, list[str], list[list]]:
    board = board_of(job)
    if job.state != JobState.SUCCEEDED or not board["rows"]:
        raise Conflict(f"Job {job.pk} is {job.state}; its leaderboard is written when it succeeds.",
                       code="leaderboard_not_ready")
    rows = [[row.get(column) for column in COLUMNS] for row in board["rows"]]
    return f"leaderboard-job-{job.pk}.csv", list(COLUMNS), rows


# --- the chart: cost per 1M predictions (x) against the quality metric (y), server-rendered SVG --------------

WIDTH, HEIGHT, LEFT, RIGHT, TOP, BOTTOM = 560, 300, 64, 16, 16, 44


def _ticks(low: float, high: float, count: int = 4) -> list[float]:
    if high <= low:
        return [low]
    return [low + (high - low) * i / count for i in range(count + 1)]


def scatter(board: dict) -> dict | None:
    """Points and axes for templates/dashboard/partials/leaderboard_chart.html, in SVG user units."""
    rows = [r for r in board["rows"] if r.get("cost_per_1m_usd") is not None]
    metric = board.get("metric") or "accuracy"
    if not rows:
        return None
    costs = [r["cost_per_1m_usd"] for r in rows]
    values = [100 * (r.get(metric) or 0.0) for r in rows]
    x_low, x_high = 0.0, max(costs) * 1.1 or 1.0
    y_low = max(0.0, math.floor(min(values) / 5) * 5 - 5)
    y_high = min(100.0, math.ceil(max(values) / 5) * 5 + 5) if max(values) < 100 else 100.0
    if y_high <= y_low:
        y_low, y_high = max(0.0, y_low - 5), y_low + 5

    def x(v):
        return round(LEFT + (v - x_low) / (x_high - x_low) * (WIDTH - LEFT - RIGHT), 2)

    def y(v):
        return round(HEIGHT - BOTTOM - (v - y_low) / (y_high - y_low) * (HEIGHT - TOP - BOTTOM), 2)

    points = [{"x": x(c), "y": y(v), "label_x": x(c) + 8, "label_y": y(v) + 4, "rank": r["rank"], "name": r["name"],
               "cost": c, "value": round(v, 2), "recommended": bool(r.get("recommended"))}
              for r, c, v in zip(rows, costs, values)]
    return {
        "width": WIDTH, "height": HEIGHT, "left": LEFT, "right": WIDTH - RIGHT, "top": TOP, "bottom": HEIGHT - BOTTOM,
        "metric": "exact match" if metric == "exact_match" else "accuracy",
        "x_ticks": [{"at": x(t), "label": f"${t:,.4g}"} for t in _ticks(x_low, x_high)],
        "y_ticks": [{"at": y(t), "label": f"{t:.0f} %"} for t in _ticks(y_low, y_high)],
        "x_label_x": (LEFT + WIDTH - RIGHT) / 2, "x_label_y": HEIGHT - 6, "points": points,
    }
