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
