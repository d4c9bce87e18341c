"""LATHE_LOG_FORMAT=json: the settings' console handler writes one JSON object a line with the request id,
and organization / job id when a record carries them; the default stays the text format."""
from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.celery_worker import REPO_ROOT

PROGRAM = """
import logging, django
django.setup()
from core.request_id import set_request_id
log = logging.getLogger("lathe.test")
log.info("outside a request")
set_request_id("req-123")
log.warning("job %s stalled", 7, extra={"organization": "acme", "job_id": 7})
try:
    1 / 0
except ZeroDivisionError:
    log.exception("boom")
from core.logging import job_log_context
with job_log_context(organization_id=3, job_id=41):
    log.info("inside a run")
    log.info("named", extra={"job_id": 5})
log.info("after the run")
"""


def run(log_format: str | None) -> list[str]:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings.test",
           "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), str(REPO_ROOT / "platform")])}
    env.pop("LATHE_LOG_FORMAT", None)
    if log_format:
        env["LATHE_LOG_FORMAT"] = log_format
    done = subprocess.run([sys.executable, "-c", PROGRAM], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    return [line for line in done.stderr.splitlines() if "lathe.test" in line or line.startswith("{")]


def test_json_lines_carry_request_organization_and_job():
    lines = run("json")
    entries = [json.loads(line) for line in lines if line.startswith("{")]
    ours = [e for e in entries if e["logger"] == "lathe.test"]
    assert [e["message"] for e in ours] == ["outside a request", "job 7 stalled", "boom", "inside a run", "named",
                                            "after the run"]
    outside, stalled, boom, inside, named, after = ours
    # A job's run (jobs.runner) puts its organization and job on every line; a record naming one keeps it.
    assert (inside["organization"], inside["job_id"]) == (3, 41)
    assert (named["organization"], named["job_id"]) == (3, 5)
    assert "job_id" not in after and "organization" not in after
    assert "request_id" not in outside and "job_id" not in outside
    assert stalled["request_id"] == "req-123" and stalled["organization"] == "acme" and stalled["job_id"] == 7
    assert stalled["level"] == "WARNING" and stalled["time"].endswith("Z")
    assert "ZeroDivisionError" in boom["exception"] and boom["level"] == "ERROR"


def test_text_is_the_default():
    lines = run(None)
    assert lines and not any(line.startswith("{") for line in lines)
    assert any("[req-123 -] lathe.test: job 7 stalled" in line for line in lines)
