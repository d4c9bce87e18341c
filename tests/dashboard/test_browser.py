"""Real browser: headless Debian `chromium` (installed by `make test` when
missing; never a test tool's own download) signs up, creates an API key, sees it
listed, and uses it against the API."""
from __future__ import annotations

import json
import os
import shutil
import urllib.request

import pytest
from django.db import connections

from accounts.models import ApiKey

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CHROMIUM_FLAGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


@pytest.fixture
def page(tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.fail("Debian's chromium is not installed; `make test` installs it (apt-get install chromium)")
    # Playwright's sync API runs an event loop in this thread; the ORM calls the
    # test makes in between are synchronous and safe.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS, headless=True)
        context = browser.new_context()
        page = context.new_page()
        page.set_default_timeout(20_000)
        try:
            yield page
        finally:
            page.screenshot(path=str(tmp_path / "last-page.png"))
            context.close()
            browser.close()
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)


def test_sign_up_create_key_and_use_it(page, live_server):
    page.goto(f"{live_server.url}/signup")
    # A weak password is refused inline first.
    page.fill("#id_email", "grace@example.com")
    page.fill("#id_password", "short")
    page.fill("#id_organization_name", "Compilers Inc")
    page.click("button[type=submit]")
    assert page.locator('p.error[data-field="password"]').is_visible()

    page.fill("#id_password", "a-long-and-unusual-passphrase")
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server.url}/o/compilers-inc/")
    assert page.locator("h1").inner_text() == "Compilers Inc"

    page.click("nav.sections >> text=API keys")
    page.wait_for_url("**/api-keys")
    page.fill("#id_name", "Browser key")
    page.check("input[name=scopes][value=write]")
    page.click("button:has-text('Create key')")
    full_key = page.locator("#new-key-value").inner_text().strip()
    assert full_key.startswith("lth_")

    row = page.locator("table[data-testid=api-keys] tbody tr", has_text="Browser key")
    assert row.count() == 1
    assert "active" in row.inner_text() and "read, write" in row.inner_text()
    assert full_key not in row.inner_text()  # the table shows only the prefix

    # A reload never shows the key again.
    page.reload()
    assert page.locator("#new-key-value").count() == 0

    request = urllib.request.Request(f"{live_server.url}/api/v1/organization", headers={"Authorization": f"Bearer {full_key}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200
        body = json.loads(response.read())
    assert body["slug"] == "compilers-inc" and body["name"] == "Compilers Inc"

    keys_created = ApiKey.objects.filter(organization__slug="compilers-inc").count()
    # Under Playwright's event loop Django keeps this connection in a context-local
    # that test teardown never sees; close it or the test database cannot be dropped.
    connections.close_all()
    assert keys_created == 1  # the reload created nothing
    page.reload()
    last_used = page.locator("table[data-testid=api-keys] tbody tr", has_text="Browser key").locator("[data-col=last-used]")
    assert last_used.inner_text() != "never"


def test_quote_a_job_and_cap_spending_in_the_browser(page, live_server):
    """htmx in a real browser: the launch form's Quote button swaps in the
    estimate; the Billing page sets a spend cap and shows the plan."""
    from tests.tiny_model import SLICE

    page.goto(f"{live_server.url}/signup")
    page.fill("#id_email", "ada@example.com")
    page.fill("#id_password", "a-long-and-unusual-passphrase")
    page.fill("#id_organization_name", "Analytical Engines")
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server.url}/o/analytical-engines/")

    page.click("nav.sections >> text=Datasets")
    page.set_input_files("form[data-testid=upload-form] input[type=file]", str(SLICE))
    page.click("button:has-text('Upload and validate')")
    page.wait_for_url("**/datasets/*")

    page.click("nav.sections >> text=Jobs")
    page.fill("#id_epochs", "3")
    page.click("[data-testid=quote-button]")
    page.locator("#quote > *").first.wait_for()
    quote = page.locator("[data-testid=quote]")
    assert quote.count() == 1, page.locator("#quote").inner_text()
    text = quote.inner_text()
    assert "on cpu" in text and "free plan" in text and "$" in text

    page.click("nav.sections >> text=Billing")
    assert "Plan: Free" in page.locator("[data-testid=billing-plan]").inner_text()
    page.fill("input[name=spend_cap_usd]", "5")
    page.click("form[data-testid=spend-cap-form] button")
    assert page.locator("text=Spend cap set to $5.00 a month.").is_visible()
    connections.close_all()


# Every chart as the browser draws it (static/js/charts.js over the vendored Chart.js), under
# the Content-Security-Policy: scales with ticks and titles, a drawn canvas, no console errors
# and no CSP violation; the running job's chart follows the htmx refresh.
RECORD_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation",
  (e) => window.__cspViolations.push(e.violatedDirective + " " + (e.blockedURI || "inline") + " " + (e.sourceFile || "")));
"""
INSPECT_CHARTS = """() => [...document.querySelectorAll("canvas[data-chart]")].map((canvas) => {
  const chart = Chart.getChart(canvas);
  const pixels = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
  let painted = 0;
  for (let i = 3; i < pixels.length; i += 4) if (pixels[i] > 0) painted += 1;
  const scales = Object.values(chart.scales).filter((s) => s.options.display !== false).map((s) => ({
    id: s.id, ticks: s.ticks.length, title: s.options.title.display ? s.options.title.text : ""}));
  return {testid: canvas.dataset.testid, kind: canvas.dataset.chart, width: canvas.clientWidth, height: canvas.clientHeight,
          painted, scales, points: chart.data.datasets.reduce((n, d) => n + d.data.length, 0),
          tooltip: chart.options.plugins.tooltip.enabled !== false};
})"""
TITLED = {"job-metrics": {"x", "loss", "score"}, "cost-per-day": {"x", "y"}, "label-counts": {"x", "y"},
          "length-histogram": {"x", "y"}, "compression-bars": {"x"}, "search-curve": {"x", "y"}}


def test_every_chart_is_drawn_with_axes_under_the_csp(page, live_server, tenant_a, dataset, tiny_bert):
    from django.conf import settings
    from django.test import Client

    from tests.dashboard.chart_pages import add_loss, chart_jobs

    running, pruned = chart_jobs(tenant_a, dataset, tiny_bert)
    client = Client()
    client.force_login(tenant_a.owner)
    page.context.add_cookies([{"name": settings.SESSION_COOKIE_NAME, "value": client.cookies[settings.SESSION_COOKIE_NAME].value,
                               "url": live_server.url}])
    errors = []
    # Redoc's footer logo comes from cdn.redoc.ly, which this sandbox cannot reach (the CSP allows it on /api/v1/redoc).
    page.on("console", lambda message: errors.append(f"{page.url}: {message.text} {message.location.get('url', '')}")
            if message.type == "error" and "cdn.redoc.ly" not in message.location.get("url", "") else None)
    page.on("pageerror", lambda error: errors.append(f"{page.url}: {error}"))
    page.add_init_script(RECORD_VIOLATIONS)

    expected = {f"/o/acme/jobs/{running.pk}": {"job-chart"}, f"/o/acme/jobs/{pruned.pk}": {"compression-chart", "search-curve"},
                "/o/acme/billing": {"usage-chart"}, f"/o/acme/datasets/{dataset.pk}": {"label-chart", "length-histogram"},
                "/o/acme/": set()}
    seen = set()
    for path, testids in expected.items():
        response = page.goto(live_server.url + path)
        assert response.status == 200 and "script-src 'self'" in response.headers["content-security-policy"]
        page.wait_for_function("() => [...document.querySelectorAll('canvas[data-chart]')].every((c) => Chart.getChart(c))"
                               if testids else "() => document.readyState === 'complete'")
        charts = page.evaluate(INSPECT_CHARTS) if testids else []
        assert {c["testid"] for c in charts} == testids, path
        for c in charts:
            seen.add(c["kind"])
            assert c["width"] > 300 and c["height"] > 100 and c["painted"] > 2000 and c["points"] > 0, c
            assert all(s["ticks"] >= 2 for s in c["scales"]), c
            assert TITLED[c["kind"]] <= {s["id"] for s in c["scales"] if s["title"]}, c
            assert c["tooltip"], c
        assert page.evaluate("window.__cspViolations") == [], path
    assert seen == set(TITLED)

    # The running job's page refreshes its live part every 2 s: the chart follows.
    page.goto(f"{live_server.url}/o/acme/jobs/{running.pk}")
    page.wait_for_function("() => Chart.getChart(document.querySelector('[data-testid=job-chart]'))")
    add_loss(running, 22, 0.55)
    running.step = 22
    running.save(update_fields=["step"])
    page.wait_for_function("""() => {
      const chart = Chart.getChart(document.querySelector('[data-testid=job-chart]'));
      return chart && chart.data.datasets[0].data.length === 11 && chart.data.datasets[0].data[10].x === 22;
    }""")
    assert page.locator("canvas[data-chart]").count() == 1  # redrawn in place, not stacked

    # Confirmations moved from onsubmit= to <form data-confirm> (lathe.js): declining keeps the dataset.
    page.goto(f"{live_server.url}/o/acme/datasets/{dataset.pk}")
    asked = []
    page.once("dialog", lambda dialog: (asked.append(dialog.message), dialog.dismiss()))
    page.click("button:has-text('Delete dataset')")
    page.wait_for_load_state()
    assert asked == ["Delete slice and all its versions?"] and page.url.endswith(f"/datasets/{dataset.pk}")

    # The API reference (Swagger UI and Redoc from the sidecar) works under the policy too.
    page.goto(f"{live_server.url}/api/v1/docs")
    page.locator(".swagger-ui .info .title").first.wait_for()
    assert "Lathe API" in page.locator(".swagger-ui .info .title").first.inner_text()
    page.goto(f"{live_server.url}/api/v1/redoc")
    page.locator("h1", has_text="Lathe API").first.wait_for()
    assert page.evaluate("window.__cspViolations") == []
    connections.close_all()
    assert errors == []
