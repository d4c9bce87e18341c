"""PostgreSQL goes away mid-job, for a real worker process: its DATABASE_URL
points at a loopback TCP proxy this test owns, which is cut for several seconds
(every connection closed, new ones refused). The attempt retries its
write-backs and the job ends succeeded (or, had the attempt died, re-queued by
the reaper and then succeeded) — it never hangs `running` with a heartbeat
extending the lease and billing while its step is frozen.

PostgreSQL only (DATABASE_URL set); on SQLite there is no connection to cut —
tests/jobs/test_lifecycle.py covers the mechanism there."""
from __future__ import annotations

import socket
import threading
import time
from urllib.parse import urlsplit, urlunsplit

import pytest
from django.conf import settings as django_settings
from django.db import connection

from billing.models import UsageSegment
from jobs import lifecycle
from jobs.models import JobState
from tests.celery_worker import celery_worker, database_url_for_current_connection

from .worker_helpers import job_state, submit, wait_for, worker_env

pytestmark = [
    pytest.mark.skipif(django_settings.DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql",
                       reason="needs PostgreSQL (DATABASE_URL): on SQLite there is no database connection to cut"),
    pytest.mark.worker, pytest.mark.django_db(transaction=True),
]

OUTAGE_SECONDS = 6
LEASE_SECONDS = 60  # 10× the outage: the attempt is expected to ride it out


class CuttableProxy:
    """127.0.0.1:<port> → the database server, byte for byte, until `cut()`:
    then every proxied connection is closed and the port refuses connections
    until `restore()` listens on it again."""

    def __init__(self, host: str, port: int):
        self.target = (host, port)
        self.port = 0
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._listener: socket.socket | None = None
        self._accepting: threading.Thread | None = None
        self.restore()

    def restore(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        listener.settimeout(0.2)
        self.port = listener.getsockname()[1]
        self._listener = listener
        self._accepting = threading.Thread(target=self._accept, args=(listener,), daemon=True, name="proxy-accept")
        self._accepting.start()

    def cut(self) -> None:
        listener, self._listener = self._listener, None
        listener.close()  # the accept loop sees it and ends: the port refuses from now on
        self._accepting.join(timeout=5)
        with self._lock:
            doomed, self._sockets = self._sockets, set()
        for sock in doomed:
            self._close(sock)

    def close(self) -> None:
        if self._listener is not None:
            self.cut()

    @staticmethod
    def _close(sock: socket.socket) -> None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        sock.close()

    def _accept(self, listener: socket.socket) -> None:
        while self._listener is listener:
            try:
                client, _ = listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            client.settimeout(None)
            upstream.settimeout(None)
            with self._lock:
                if self._listener is not listener:  # cut meanwhile
                    self._close(client)
                    self._close(upstream)
                    return
                self._sockets |= {client, upstream}
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True, name="proxy-pump").start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while chunk := source.recv(65536):
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            with self._lock:
                self._sockets -= {source, sink}
            self._close(source)
            self._close(sink)


def through(url: str, port: int) -> str:
    parts = urlsplit(url)
    credentials = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
    return urlunsplit(parts._replace(netloc=f"{credentials}127.0.0.1:{port}"))


@pytest.fixture
def proxy():
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL (DATABASE_URL): on SQLite there is no database connection to cut")
    settings_dict = connection.settings_dict
    proxy = CuttableProxy(settings_dict["HOST"] or "127.0.0.1", int(settings_dict["PORT"] or 5432))
    yield proxy
    proxy.close()


def test_a_worker_rides_out_a_database_outage_mid_job(tmp_path, proxy, fast_jobs, tenant_a, api_for, long_dataset, tiny_bert):
    fast_jobs.LATHE_JOB_LEASE_SECONDS = LEASE_SECONDS
    client = api_for(tenant_a.key(scopes=["write"]))
    env = worker_env(fast_jobs, tmp_path, DATABASE_URL=through(database_url_for_current_connection(), proxy.port))
    with celery_worker(tmp_path / "worker.log", extra_env=env) as (queue, process):
        fast_jobs.LATHE_DEFAULT_QUEUE = queue
        job_id = submit(client, long_dataset, epochs=6, batch_size=4, early_stopping_patience=0)
        wait_for(lambda: job_state(job_id).step >= 15, timeout=180, message="the job to train a little")
        proxy.cut()
        cut_at_step = job_state(job_id).step  # (this test reaches the server directly, not through the proxy)
        time.sleep(OUTAGE_SECONDS)  # the outage itself, not a race: nothing here waits on a lease
        proxy.restore()

        def finished():
            lifecycle.reap_expired_leases()  # had the attempt died, its lease runs out and it is re-queued
            job = job_state(job_id)
            return job if job.is_terminal else None
        try:
            job = wait_for(finished, timeout=300, interval=1, message="the job to finish after the outage")
        except AssertionError:
            pytest.fail(f"the job hung after the outage (step {job_state(job_id).step}, cut at {cut_at_step}); "
                        f"worker log:\n{(tmp_path / 'worker.log').read_text()[-6000:]}")
        assert process.poll() is None, "the worker died"
    log = (tmp_path / "worker.log").read_text()
    assert job.state == JobState.SUCCEEDED, f"{job.failure_reason}\n{log[-6000:]}"
    assert job.step == job.total_steps and job.step > cut_at_step
    assert "failed on a database error" in log  # it did meet the outage
    # Billing stayed sound: no interval metered twice, nothing after the end.
    segments = list(UsageSegment.objects.filter(job_id=job_id).order_by("started_at"))
    assert all(b.started_at >= a.ended_at for a, b in zip(segments, segments[1:]))
    assert all(s.ended_at <= job.finished_at for s in segments)
    if job.attempts == 1:  # the expected path: retried inside the attempt, with a lease 10× the outage
        assert not UsageSegment.objects.filter(job_id=job_id, exclusion__isnull=False).exists()
