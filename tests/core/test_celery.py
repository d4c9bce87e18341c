"""A task goes through a real worker process on the configured broker."""
import pytest
from django.conf import settings
from django.db import connection

from config.celery_app import app
from core.tasks import ping
from tests.celery_worker import celery_worker

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def test_task_round_trip_through_a_real_worker(tmp_path):
    log = tmp_path / "worker.log"
    with celery_worker(log) as (queue, process):
        result = ping.apply_async(args=["hello"], queue=queue)
        try:
            reply = result.get(timeout=90)
        except Exception:
            pytest.fail(f"no reply from the worker; its log:\n{log.read_text()[-4000:]}")
        assert process.poll() is None, "worker died"
    assert reply["reply"] == "pong:hello"
    assert reply["database"] is True
    # The worker used the very database this test uses (the test database).
    assert reply["database_name"] == str(connection.settings_dict["NAME"])
    expected_broker = "redis" if settings.REDIS_URL else "filesystem"
    assert f"transport:   {expected_broker}" in log.read_text() or expected_broker in log.read_text()


def test_beat_schedule_names_registered_tasks():
    app.loader.import_default_modules()
    for entry in settings.CELERY_BEAT_SCHEDULE.values():
        assert entry["task"] in app.tasks, f"{entry['task']} is scheduled but not registered"


def test_tasks_rung_by_name_are_registered():
    """Services ring tasks by name (send_task), so they never import tasks: a
    misspelled name would queue a message no worker runs. Every literal name
    passed to send_task in the source is a registered task."""
    import ast
    from pathlib import Path

    from tests.test_import_graph import discover

    app.loader.import_default_modules()
    rung = {}
    for module, path in discover().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "send_task"
                    and node.args and isinstance(node.args[0], ast.Constant)):
                rung[node.args[0].value] = f"{Path(path).name}:{node.lineno}"
    assert {"jobs.tasks.run_job", "billing.tasks.process_stripe_event"} <= set(rung)
    unknown = {name: where for name, where in rung.items() if name not in app.tasks}
    assert not unknown, f"rung by name but not registered: {unknown}"


def test_celery_runs_with_safe_long_job_settings():
    assert app.conf.task_acks_late is True
    assert app.conf.worker_prefetch_multiplier == 1
    if settings.REDIS_URL:
        assert app.conf.broker_transport_options["visibility_timeout"] >= 6 * 3600
