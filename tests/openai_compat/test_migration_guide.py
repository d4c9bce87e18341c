"""docs/openai-migration.md's runnable example, run as it is written: the block after `<!-- runnable-example -->`
is executed by a separate Python process (the pinned `openai` SDK and the standard library) against a live test server, with a
real Celery worker training the jobs on the tiny causal LM. It uploads, is refused a malformed file, follows a job
to success, downloads its weights, cancels a second job and pauses and resumes a third."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from jobs.models import Job, JobEvent, JobState
from tests.celery_worker import celery_worker
from tests.jobs.worker_helpers import worker_env

from .conftest import chat_jsonl

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]
GUIDE = Path(__file__).resolve().parents[2] / "docs" / "openai-migration.md"


def runnable_example() -> str:
    match = re.search(r"<!-- runnable-example -->\s*```python\n(.*?)\n```", GUIDE.read_text(encoding="utf-8"), re.S)
    assert match, "docs/openai-migration.md has no runnable example block"
    return match.group(1)


def test_the_migration_guide_example_runs_against_a_live_server(live_server, tenant_a, media, chat_model, settings,
                                                                tmp_path):
    settings.LATHE_JOB_HEARTBEAT_SECONDS = 0.5  # a pause is read within a beat
    script = tmp_path / "migrate.py"
    script.write_text(runnable_example(), encoding="utf-8")
    training = tmp_path / "train.jsonl"
    training.write_bytes(chat_jsonl())
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
    env.update(LATHE_BASE_URL=live_server.url, LATHE_API_KEY=tenant_a.key(), LATHE_MODEL="tiny-llama",
               TRAINING_FILE=str(training))
    log = tmp_path / "worker.log"
    with celery_worker(log, extra_env=worker_env(settings, tmp_path)) as (queue, _process):
        settings.LATHE_DEFAULT_QUEUE = queue
        run = subprocess.run([sys.executable, str(script)], env=env, cwd=tmp_path, capture_output=True, text=True,
                             timeout=900)
    output = run.stdout
    print(output)  # shown with -s or on failure
    assert run.returncode == 0, f"{output}\n{run.stderr[-4000:]}\nworker:\n{log.read_text()[-3000:]}"
    assert "base models: ['tiny-llama']" in output
    assert re.search(r"refused: .*line 1", output), output
    first, second, third = Job.objects.order_by("pk")
    assert f"finished succeeded ft:tiny-llama:acme:support-bot:{first.pk}" in output
    assert "downloaded model.zip:" in output and "config.json present" in output
    assert "second cancelled" in output and second.state == JobState.CANCELLED
    assert "third paused\nthird resumed: True\n" in output and f"third succeeded ft:tiny-llama:acme::{third.pk}" in output
    assert first.state == third.state == JobState.SUCCEEDED
    # The third job really paused and came back: its events say so, in that order.
    messages = list(JobEvent.objects.filter(job=third).order_by("pk").values_list("message", flat=True))
    paused = next(i for i, m in enumerate(messages) if m.startswith(("Paused before it started", "Job paused.")))
    resumed = next(i for i, m in enumerate(messages) if m.startswith("Resumed"))
    assert paused < resumed < messages.index("Job succeeded."), messages
