"""Charts get their data through json_script (static/js/charts.js draws them),
every HTML page carries the Content-Security-Policy, no template holds inline
script or style, and the Overview shows jobs, spend and the next step."""
from __future__ import annotations

import calendar
import re
from pathlib import Path

import pytest
from django.utils import timezone

from billing.models import BillingAccount, Plan
from billing.services import account_for
from tests.dashboard.chart_data import chart_data
from tests.dashboard.chart_pages import chart_jobs

pytestmark = pytest.mark.django_db

TEMPLATES = Path(__file__).resolve().parents[2] / "templates"
INLINE = [
    (re.compile(r"<script(?![^>]*\bsrc=)(?![^>]*type=\"application/json\")[^>]*>", re.I), "an inline <script>"),
    (re.compile(r"<style\b", re.I), "a <style> element"),
    (re.compile(r"\sstyle=", re.I), "a style= attribute"),
    (re.compile(r"\son[a-z]+=", re.I), "an on*= handler"),
    (re.compile(r"javascript:", re.I), "a javascript: URL"),
    (re.compile(r"\bhx-on", re.I), "an hx-on handler (needs eval)"),
]


def csp(response) -> dict[str, list[str]]:
    header = response["Content-Security-Policy"]
    return {d.split()[0]: d.split()[1:] for d in header.split(";") if d.strip()}


def test_no_template_has_inline_script_style_or_handlers():
    found = []
    for path in TEMPLATES.rglob("*.html"):
        text = re.sub(r"{#.*?#}|{% comment %}.*?{% endcomment %}", "", path.read_text(encoding="utf-8"), flags=re.S)
        for pattern, what in INLINE:
            for match in pattern.finditer(text):
                found.append(f"{path.relative_to(TEMPLATES)}: {what}: {match.group(0)}")
    assert found == []


def test_every_dashboard_page_carries_the_policy(client, tenant_a, dataset, tiny_bert):
    running, pruned = chart_jobs(tenant_a, dataset, tiny_bert)
    anonymous = client.get("/login")
    assert csp(anonymous)["script-src"] == ["'self'"]
    client.force_login(tenant_a.owner)
    for url in ["/o/acme/", "/o/acme/billing", f"/o/acme/jobs/{running.pk}", f"/o/acme/jobs/{pruned.pk}",
                f"/o/acme/datasets/{dataset.pk}", "/o/acme/members", "/o/acme/api-keys", "/o/acme/settings", "/o/acme/jobs"]:
        response = client.get(url)
        assert response.status_code == 200, url
        policy = csp(response)
        assert policy["default-src"] == ["'self'"] and policy["script-src"] == ["'self'"], url
        assert policy["style-src"] == ["'self'"] and policy["img-src"] == ["'self'", "data:"], url
        assert policy["frame-ancestors"] == ["'none'"] and policy["form-action"][0] == "'self'", url
        page = response.content.decode()
        for pattern, what in INLINE:
            assert not pattern.search(page), f"{url}: {what}"
    # The live part htmx swaps in carries the chart's data too.
    partial = client.get(f"/o/acme/jobs/{running.pk}", HTTP_HX_REQUEST="true").content.decode()
    assert chart_data(partial, "job-chart-data")["x_max"] == 30
    # JSON is not a page: no policy needed.
    assert "Content-Security-Policy" not in client.get("/api/v1/schema")


def test_api_reference_works_under_the_policy(client):
    docs = client.get("/api/v1/docs")
    assert docs.status_code == 200 and csp(docs)["script-src"] == ["'self'"]
    page = docs.content.decode()
    assert not re.search(r"<script(?![^>]*\bsrc=)", page) and "<style" not in page
    start = re.search(r'<script src="([^"]*script=[^"]*)"', page).group(1)
    script = client.get(start.replace("&amp;", "&"))
    assert script.status_code == 200 and b"SwaggerUIBundle" in script.content
    redoc = client.get("/api/v1/redoc")
    policy = csp(redoc)
    assert policy["script-src"] == ["'self'"] and "'unsafe-inline'" in policy["style-src"]
    assert "fonts.googleapis.com" not in redoc.content.decode() and "<style" not in redoc.content.decode()


def test_job_chart_data_has_steps_epochs_and_both_scales(client, tenant_a, dataset, tiny_bert):
    running, pruned = chart_jobs(tenant_a, dataset, tiny_bert)
    client.force_login(tenant_a.owner)
    page = client.get(f"/o/acme/jobs/{running.pk}").content.decode()
    chart = chart_data(page, "job-chart-data")
    series = {s["key"]: s for s in chart["series"]}
    assert set(series) == {"train_loss", "eval_loss", "accuracy", "macro_f1"}
    assert series["train_loss"]["axis"] == "loss" and series["accuracy"]["axis"] == "score"
    assert [p[0] for p in series["train_loss"]["points"]] == list(range(2, 21, 2))
    assert chart["epochs"] == [{"epoch": 1, "step": 10}, {"epoch": 2, "step": 20}] and chart["x_max"] == 30
    assert 'data-testid="job-evaluations"' in page  # the same numbers as a table
    report = client.get(f"/o/acme/jobs/{pruned.pk}").content.decode()
    bars = chart_data(report, "compression-chart-data")
    assert [b["label"] for b in bars][:2] == ["size on disk", "non-zero parameters"] and bars[1]["after_pct"] == 59.1
    curve = chart_data(report, "search-curve-data")
    assert curve["guard"] == 2.0 and curve["chosen"] == 0.5 and [p["passed"] for p in curve["points"]] == [True, True, True, False]


def test_cost_per_day_spans_the_period_so_one_job_is_one_bar(client, tenant_a, dataset, tiny_bert):
    chart_jobs(tenant_a, dataset, tiny_bert)
    client.force_login(tenant_a.owner)
    page = client.get("/o/acme/billing").content.decode()
    days = chart_data(page, "usage-chart-data")["days"]
    today = timezone.now()
    assert len(days) == calendar.monthrange(today.year, today.month)[1] and days[0]["date"].endswith("-01")
    spent = [d for d in days if d["usd"] > 0]
    assert len(spent) == 1 and spent[0]["seconds"] == 600.0 and spent[0]["date"] == today.date().isoformat()
    assert 'data-testid="usage-per-day"' in page and 'data-testid="included-meter"' in page


def test_overview_for_a_new_organization_shows_the_next_step(client, tenant_a):
    client.force_login(tenant_a.owner)
    page = client.get("/o/acme/").content.decode()
    steps = re.search(r'data-testid="next-steps".*?</section>', page, re.S).group(0)
    assert 'aria-current="step"' in steps and 'href="/o/acme/datasets">Upload a dataset' in steps
    assert "Nothing running" in page and "No finished jobs yet" in page


def test_overview_shows_running_jobs_and_spend_against_allowance_and_cap(client, tenant_a, dataset, tiny_bert):
    running, pruned = chart_jobs(tenant_a, dataset, tiny_bert)
    BillingAccount.objects.filter(pk=account_for(organization=tenant_a.organization).pk).update(
        plan=Plan.objects.get(slug="pro"), spend_cap_cents=500)
    client.force_login(tenant_a.owner)
    page = client.get("/o/acme/").content.decode()
    active = re.search(r'data-testid="active-jobs".*?</section>', page, re.S).group(0)
    assert f'/o/acme/jobs/{running.pk}"' in active and "running" in active
    assert re.search(r'<progress max="100" value="66.7"', active) and "20/30" in active and "accuracy 0.8000" in active
    recent = re.search(r'data-testid="recent-jobs".*?</section>', page, re.S).group(0)
    assert f'/o/acme/jobs/{pruned.pk}"' in recent and "succeeded" in recent
    spend = re.search(r'data-testid="overview-spend".*?</section>', page, re.S).group(0)
    assert 'data-testid="included-meter"' in spend and 'data-testid="cap-meter"' in spend and "cap $5.0000" in spend
    # A dataset and a job exist, two succeeded jobs do not: the next step is to compare.
    steps = re.search(r'data-testid="next-steps".*?</section>', page, re.S).group(0)
    assert steps.count('class="done"') == 2 and re.search(r'aria-current="step">\s*<strong><a href="/o/acme/jobs">Compare', steps)
