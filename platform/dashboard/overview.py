"""The Overview page's content: what a returning user wants first (running and
recent jobs, spend this period against the included compute and the cap), and
for a new organization the next step (upload a dataset → launch a job → compare)."""
from __future__ import annotations

from django.views import View

from accounts import selectors as account_selectors
from billing import selectors as billing_selectors
from corpora.selectors import dataset_list
from jobs import selectors as job_selectors
from jobs.models import JobState
from tenancy import selectors as tenancy_selectors

from .billing import usage_meters
from .views import OrganizationPageMixin

ACTIVE_STATES = (JobState.QUEUED, JobState.RUNNING)
RECENT_SHOWN = 5


def _progress(job) -> float | None:
    return round(100 * job.step / job.total_steps, 1) if job.total_steps else None


def overview_context(*, organization) -> dict:
    jobs = job_selectors.job_list(organization=organization)
    active = list(jobs.filter(state__in=ACTIVE_STATES)[:20])
    recent = list(jobs.exclude(state__in=ACTIVE_STATES)[:RECENT_SHOWN])
    for job in active + recent:
        job.progress = _progress(job)
    usage = billing_selectors.usage_summary(organization=organization)
    has_dataset = dataset_list(organization=organization).exists()
    has_job = bool(active or recent)
    finished = jobs.filter(state=JobState.SUCCEEDED).count()
    steps = [
        {"title": "Upload a dataset", "done": has_dataset, "url_name": "dashboard:datasets",
         "text": "A CSV or JSONL of texts and labels; Lathe checks it and shows its labels and lengths."},
        {"title": "Launch a fine-tune", "done": has_job, "url_name": "dashboard:jobs",
         "text": "Pick a base model and the dataset; the Quote button estimates time and cost first."},
        {"title": "Compare", "done": finished >= 2, "url_name": "dashboard:jobs",
         "text": "Run another method or model on the same data and compare their accuracy below, "
                 "or compress a finished model and compare before and after on its page."},
    ]
    for step in steps:
        step["next"] = False
    upcoming = next((s for s in steps if not s["done"]), None)
    if upcoming is not None:
        upcoming["next"] = True
    return {"active_jobs": active, "recent_jobs": recent, "usage": usage, **usage_meters(usage),
            "steps": steps, "getting_started": upcoming is not None}


class OverviewView(OrganizationPageMixin, View):
    section = "overview"

    def get(self, request, slug):
        return self.render_page(request, "dashboard/overview.html", {
            **overview_context(organization=self.organization),
            "member_count": tenancy_selectors.membership_list(organization=self.organization).count(),
            "active_key_count": account_selectors.api_key_list(organization=self.organization, include_revoked=False).count(),
        })
