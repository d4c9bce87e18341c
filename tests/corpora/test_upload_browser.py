"""The dataset upload in a real browser (Debian's chromium, see
tests/dashboard/test_browser.py): "Validating…" while the request runs, a refusal
that keeps the chosen file and options and speaks the form's labels, a guessed
encoding shown with its preview before anything is kept, then the next step."""
from __future__ import annotations

import pytest
from django.db import connections

from corpora.models import DatasetVersion
from tests.dashboard.test_browser import page  # noqa: F401  (the chromium fixture)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

DESSERTS = "text,label\n" + "".join(f"une crème brûlée au café {i},{'sweet' if i % 2 else 'bitter'}\n" for i in range(20))


def test_refused_then_checked_then_kept_then_fine_tuned(page, live_server, tenant_a, tmp_path):  # noqa: F811
    from django.conf import settings
    from django.test import Client

    client = Client()
    client.force_login(tenant_a.owner)
    page.context.add_cookies([{"name": settings.SESSION_COOKIE_NAME, "value": client.cookies[settings.SESSION_COOKIE_NAME].value,
                               "url": live_server.url}])
    desserts = tmp_path / "desserts.csv"
    desserts.write_bytes(DESSERTS.encode("cp1252"))
    page.goto(f"{live_server.url}/o/acme/datasets")
    page.set_input_files("#id_file", str(desserts))
    page.select_option("#id_task", "text_pair_classification")  # no text_a column in this file: refused

    # The request is held at the network until the page has shown that it is validating.
    held = []
    page.route("**/o/acme/datasets", lambda route: held.append(route) if route.request.method == "POST" else route.continue_())
    page.click("[data-testid=upload-button]")
    page.locator("[data-testid=validating]").wait_for(state="visible")
    assert page.locator("[data-testid=upload-button]").is_disabled()
    held.pop().continue_()
    page.unroute("**/o/acme/datasets")

    error = page.locator('p.error[data-field="text_a_column"]')
    error.wait_for()
    assert "“First text column (pairs)”" in error.inner_text() and "_column" not in error.inner_text()
    assert page.locator("[data-testid=validating]").is_hidden()
    assert "You chose desserts.csv (still selected)" in page.locator("[data-testid=chosen-file]").inner_text()
    assert page.evaluate("document.querySelector('#id_file').files[0].name") == "desserts.csv"
    assert page.input_value("#id_task") == "text_pair_classification"

    # Sent again as it is detected: a guessed encoding is shown before anything is kept.
    page.select_option("#id_task", "")
    page.click("[data-testid=upload-button]")
    check = page.locator("[data-testid=upload-check]")
    check.wait_for()
    assert "medium confidence" in page.locator("[data-testid=encoding-confidence]").inner_text()
    assert page.locator("[data-testid=check-preview] td", has_text="une crème brûlée au café 0").count() == 1
    assert page.input_value("#id_encoding") == "cp1252" and DatasetVersion.objects.count() == 0

    page.click("button:has-text('Keep this version')")
    page.wait_for_url("**/datasets/*")
    assert "cp1252 (certain confidence, as named)" in page.locator("[data-testid=encoding]").inner_text()
    dataset_id = DatasetVersion.objects.get().dataset_id
    page.click("[data-testid=fine-tune]")
    page.wait_for_url(f"**/jobs?dataset={dataset_id}")
    assert page.input_value("#id_dataset_id") == str(dataset_id)
    connections.close_all()
