"""core.healthcheck, the containers' HEALTHCHECK (docker/): each role healthy when its process answers,
unhealthy when not — run as the image runs it (`python -m core.healthcheck <role>`), against a real
server and a real Celery worker."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from urllib.parse import urlsplit

import pytest

from tests.celery_worker import REPO_ROOT, celery_worker


def check(role: str, **env) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings.test",
                "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), str(REPO_ROOT / "platform")]), **env}
    return subprocess.run([sys.executable, "-m", "core.healthcheck", role], cwd=REPO_ROOT, env=full_env,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.django_db
def test_web_healthy_while_the_server_answers(live_server):
    port = str(urlsplit(live_server.url).port)
    assert check("web", PORT=port).returncode == 0


def test_web_unhealthy_without_a_server():
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    done = check("web", PORT=str(port))
    assert done.returncode == 1 and "web unhealthy" in done.stderr


def test_scheduler_unhealthy_when_pid_1_is_not_beat():
    with open("/proc/1/cmdline", "rb") as f:
        assert b"beat" not in f.read()
    assert check("scheduler", REDIS_URL="redis://127.0.0.1:1/0").returncode == 1


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_worker_healthy_only_for_its_own_node(tmp_path):
    log = tmp_path / "worker.log"
    with celery_worker(log) as (_queue, _process):
        node, deadline = None, time.monotonic() + 90
        while node is None and time.monotonic() < deadline:
            found = re.search(r"(\S+@\S+) ready\.", log.read_text())
            node = found.group(1) if found else time.sleep(0.5)
        assert node, log.read_text()[-2000:]
        healthy = check("worker", CELERY_NODE=node)
        assert healthy.returncode == 0, healthy.stderr
        other = check("worker", CELERY_NODE=f"nobody-{node}")
        assert other.returncode == 1
