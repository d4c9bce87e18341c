"""The fleet (jobs/fleet.py): workers register their device class, jobs may ask for one, only such a worker
claims them, operators see queues per class and drain workers — in units, and with a real worker process."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from jobs import fleet, lifecycle
from jobs.models import Job, JobState, Worker
from tests.celery_worker import celery_worker
from workers import devices

from .worker_helpers import job_state, submit, wait_for, worker_env


@pytest.fixture
def operator(client, make_user):
    client.force_login(make_user(email="ops@lathe.dev", is_staff=True, is_superuser=True))
    return client


def register(name: str, device_class: str = "cpu", *, queues=("default",), seen_ago: float = 0, draining=False) -> Worker:
    worker = fleet.worker_register(name=name, device_class=device_class, device_count=1,
                                   queues=[*queues, *fleet.class_queues(list(queues), device_class)], pid=1)
    Worker.objects.filter(pk=worker.pk).update(last_seen_at=timezone.now() - timedelta(seconds=seen_ago),
                                               draining=draining)
    return Worker.objects.get(pk=worker.pk)


# --- device classes ---------------------------------------------------------------------------------

def test_device_class_override_is_checked(monkeypatch):
    monkeypatch.delenv("LATHE_DEVICE_CLASS", raising=False)
    monkeypatch.delenv("LATHE_DEVICE_COUNT", raising=False)
    assert devices.device_class() == devices.detected_device_class()
    monkeypatch.setenv("LATHE_DEVICE_CLASS", "NVIDIA-A10G")
    monkeypatch.setenv("LATHE_DEVICE_COUNT", "4")
    assert devices.device_class() == ("nvidia-a10g", 4)
    for bad in ("a10g", "nvidia-", "nvidia-a10g; rm -rf", "cpu gpu"):
        monkeypatch.setenv("LATHE_DEVICE_CLASS", bad)
        with pytest.raises(ValueError, match="LATHE_DEVICE_CLASS"):
            devices.device_class()
    monkeypatch.setenv("LATHE_DEVICE_CLASS", "cpu")
    for bad in ("0", "65", "two", "-1"):
        monkeypatch.setenv("LATHE_DEVICE_COUNT", bad)
        with pytest.raises(ValueError, match="LATHE_DEVICE_COUNT"):
            devices.device_class()


def test_class_queues_leave_housekeeping_and_serving_alone(settings):
    settings.LATHE_MAINTENANCE_QUEUE = "maintenance"
    settings.LATHE_INFERENCE_QUEUE = "inference"
    assert fleet.class_queues(["default", "priority", "maintenance", "inference", "default.cpu"], "nvidia-h100") == [
        "default.nvidia-h100", "priority.nvidia-h100"]
    job = Job(queue="priority", requested_device_class="nvidia-h100")
    assert fleet.routed_queue(job) == "priority.nvidia-h100"
    assert fleet.routed_queue(Job(queue="priority")) == "priority"


# --- submission -----------------------------------------------------------------------------------

@pytest.mark.django_db
@pytest.mark.parametrize("raw, message", [
    ('"nvidia-h100"', "No worker of class 'nvidia-h100'"),
    ('"cpu\\u0000"', "NUL"),
    ('"' + "x" * 41 + '"', "40"),
    ('["cpu"]', "Must be a string"),
    ('{"a": 1}', "Must be a string"),
    ("1e400", "device_class"),
    ("12", "Must be a string"),
])
def test_an_unknown_or_malformed_device_class_is_a_400_and_writes_nothing(tenant_a, api_for, dataset, tiny_bert, raw,
                                                                           message):
    register("w1@a", "cpu")
    client = api_for(tenant_a.key(scopes=["write"]))
    body = '{"dataset_id": %d, "base_model": "tiny-bert", "device_class": %s}' % (dataset.pk, raw)
    for url in ("/api/v1/jobs", "/api/v1/jobs/quote"):
        response = client.generic("POST", url, body, content_type="application/json")
        assert response.status_code == 400, response.content
        error = response.json()["error"]
        assert "device_class" in error["fields"] and message in str(error), error
    assert not Job.objects.exists()


@pytest.mark.django_db
def test_a_job_asks_for_a_known_class_and_its_quote_uses_it(tenant_a, api_for, dataset, tiny_bert):
    register("gpu@a", "nvidia-a10g")
    register("cpu@b", "cpu")
    client = api_for(tenant_a.key(scopes=["write"]))
    body = {"dataset_id": dataset.pk, "base_model": "tiny-bert", "device_class": "nvidia-a10g"}
    quote = client.post("/api/v1/jobs/quote", body, format="json").json()
    assert quote["device_class"] == "nvidia-a10g"
    assert client.post("/api/v1/jobs/quote", {**body, "device_class": ""}, format="json").json()["device_class"] == "cpu"
    created = client.post("/api/v1/jobs", body, format="json", HTTP_IDEMPOTENCY_KEY="k1")
    assert created.status_code == 201 and created.json()["requested_device_class"] == "nvidia-a10g"
    job = Job.objects.get(pk=created.json()["id"])
    assert fleet.routed_queue(job) == f"{job.queue}.nvidia-a10g"
    assert "asks for a nvidia-a10g worker" in job.events.first().message
    # The class is part of the request: the same key with another class is a different body.
    other = client.post("/api/v1/jobs", {**body, "device_class": "cpu"}, format="json", HTTP_IDEMPOTENCY_KEY="k1")
    assert other.status_code == 409


# --- claims ------------------------------------------------------------------------------------------

@pytest.mark.django_db
def test_only_a_worker_of_the_class_and_not_draining_claims(tenant_a, dataset, tiny_bert):
    register("cpu@a", "cpu")
    register("gpu@a", "nvidia-a10g")
    register("gpu@b", "nvidia-a10g", draining=True)
    job = Job.objects.create(organization=tenant_a.organization, dataset_version=dataset.latest_version,
                             base_model=tiny_bert, requested_device_class="nvidia-a10g", queued_at=timezone.now())
    assert lifecycle.job_claim(job_id=job.pk, worker="cpu@a", device_class="cpu") is None
    assert lifecycle.job_claim(job_id=job.pk, worker="gpu@b", device_class="nvidia-a10g") is None  # draining
    assert Job.objects.get(pk=job.pk).state == JobState.QUEUED
    claimed, _token = lifecycle.job_claim(job_id=job.pk, worker="gpu@a", device_class="nvidia-a10g")
    assert claimed.state == JobState.RUNNING and claimed.device_class == "nvidia-a10g" and claimed.worker == "gpu@a"
    anyone = Job.objects.create(organization=tenant_a.organization, dataset_version=dataset.latest_version,
                                base_model=tiny_bert, queued_at=timezone.now())
    assert lifecycle.job_claim(job_id=anyone.pk, worker="cpu@a", device_class="cpu") is not None


# --- the operators' view --------------------------------------------------------------------------------

@pytest.mark.django_db
def test_fleet_overview_counts_per_queue_and_class(tenant_a, dataset, tiny_bert, settings):
    settings.LATHE_WORKER_ONLINE_SECONDS = 90
    now = timezone.now()
    register("cpu@a", "cpu")
    register("gpu@a", "nvidia-a10g", draining=True)
    register("gone@a", "nvidia-a10g", seen_ago=3600)  # a lost host: not online, listed as stale
    common = dict(organization=tenant_a.organization, dataset_version=dataset.latest_version, base_model=tiny_bert,
                  queue="default")
    Job.objects.create(**common, queued_at=now - timedelta(seconds=300))
    Job.objects.create(**common, queued_at=now - timedelta(seconds=30))
    Job.objects.create(**common, requested_device_class="nvidia-a10g", queued_at=now - timedelta(seconds=120))
    running = Job.objects.create(**common, state=JobState.RUNNING, worker="cpu@a", device_class="cpu")
    rows = {(r["queue"], r["device_class"]): r for r in fleet.fleet_overview(now)}
    anyone, gpu, cpu = rows[("default", "any")], rows[("default", "nvidia-a10g")], rows[("default", "cpu")]
    assert anyone["depth"] == 2 and anyone["oldest_wait_seconds"] == pytest.approx(300, abs=1)
    assert gpu["depth"] == 1 and gpu["oldest_wait_seconds"] == pytest.approx(120, abs=1)
    assert [w["name"] for w in gpu["workers"]] == ["gpu@a"] and gpu["workers"][0]["draining"] is True
    assert cpu["depth"] == 0 and cpu["workers"][0]["current_job_id"] == running.pk and cpu["workers_busy"] == 1
    assert anyone["workers_online"] == 2  # every online worker of the queue serves jobs of any class
    assert [w.name for w in fleet.stale_workers(now)] == ["gone@a"]
    assert fleet.workers_online_by_class(now) == {"cpu": 1}  # the draining one does not count as capacity


@pytest.mark.django_db
def test_admin_queue_page_and_drain_actions(operator, tenant_a, dataset, tiny_bert):
    register("cpu@a", "cpu")
    worker = register("gpu@a", "nvidia-a10g")
    Job.objects.create(organization=tenant_a.organization, dataset_version=dataset.latest_version, base_model=tiny_bert,
                       requested_device_class="nvidia-a10g", queued_at=timezone.now())
    page = operator.get(reverse("admin:jobs_queues")).content.decode()
    assert 'data-device-class="nvidia-a10g"' in page and "gpu@a" in page
    url = reverse("admin:jobs_worker_changelist")
    listing = operator.get(url).content.decode()
    assert "gpu@a" in listing and "cpu@a" in listing
    operator.post(url, {"action": "drain", "_selected_action": [worker.pk]})
    worker.refresh_from_db()
    assert worker.draining and worker.drain_requested_at is not None
    assert "(draining)" in operator.get(reverse("admin:jobs_queues")).content.decode()
    operator.post(url, {"action": "undrain", "_selected_action": [worker.pk]})
    worker.refresh_from_db()
    assert not worker.draining and worker.drain_requested_at is None


@pytest.mark.django_db
def test_metrics_report_workers_online_per_class(client, settings):
    settings.LATHE_METRICS_TOKEN = "t0ken"
    register("cpu@a", "cpu")
    register("cpu@b", "cpu", draining=True)
    register("gpu@a", "nvidia-h100")
    body = client.get("/metrics", HTTP_AUTHORIZATION="Bearer t0ken").content.decode()
    assert 'lathe_workers_online{device_class="cpu",draining="false"} 1.0' in body
    assert 'lathe_workers_online{device_class="cpu",draining="true"} 1.0' in body
    assert 'lathe_workers_online{device_class="nvidia-h100",draining="false"} 1.0' in body


@pytest.mark.django_db
def test_a_heartbeat_does_not_revive_a_stopped_worker_but_a_restart_does():
    register("cpu@a", "cpu", seen_ago=5)
    fleet.worker_stopped(name="cpu@a")
    before = Worker.objects.get(name="cpu@a")
    assert fleet.worker_seen(name="cpu@a").stopped_at is not None  # the beat that raced the shutdown
    assert Worker.objects.get(name="cpu@a").last_seen_at == before.last_seen_at
    register("cpu@a", "cpu")
    assert fleet.worker_seen(name="cpu@a").stopped_at is None
    assert fleet.worker_seen(name="gone@a") is None


# --- a real worker ------------------------------------------------------------------------------------

@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_real_worker_registers_its_class_runs_what_asks_for_it_and_drains(tmp_path, fast_jobs, tenant_a, api_for,
                                                                           dataset, tiny_bert):
    client = api_for(tenant_a.key(scopes=["write"]))
    log = tmp_path / "worker.log"
    env = worker_env(fast_jobs, tmp_path, LATHE_DEVICE_CLASS="nvidia-test", LATHE_WORKER_HEARTBEAT_SECONDS="0.5")
    with celery_worker(log, extra_env=env) as (queue, _process):
        fast_jobs.LATHE_DEFAULT_QUEUE = queue
        worker = wait_for(lambda: next((w for w in Worker.objects.all() if queue in w.queues), None), timeout=120,
                          message="the worker to register")
        assert worker.device_class == "nvidia-test"
        assert sorted(worker.queues) == sorted([queue, f"{queue}.nvidia-test"])
        response = client.post("/api/v1/jobs", {"dataset_id": dataset.pk, "base_model": "tiny-bert",
                                                "device_class": "nvidia-test",
                                                "hyperparameters": {"batch_size": 8, "epochs": 1}}, format="json")
        assert response.status_code == 201, response.content
        job_id = response.json()["id"]
        job = wait_for(lambda: job_state(job_id).is_terminal and job_state(job_id), timeout=180,
                       message=f"the job to finish; log:\n{log}")
        assert job.state == JobState.SUCCEEDED, (job.failure_reason, log.read_text()[-3000:])
        assert job.device_class == "nvidia-test" and job.worker == worker.name

        # Drained: the worker takes no new job; once undrained, it takes the one that waited.
        fleet.worker_set_draining(workers=[worker], draining=True)
        waiting = submit(client, dataset, epochs=1)
        asked = Worker.objects.get(pk=worker.pk).drain_requested_at
        # Two heartbeats after the drain: the first read the flag and stopped consuming, the second proves it.
        first = wait_for(lambda: (w := Worker.objects.get(pk=worker.pk)).last_seen_at > asked and w.last_seen_at,
                         message="a heartbeat after the drain")
        wait_for(lambda: Worker.objects.get(pk=worker.pk).last_seen_at > first, message="a second heartbeat")
        assert job_state(waiting).state == JobState.QUEUED
        undrained_at = timezone.now()
        fleet.worker_set_draining(workers=[Worker.objects.get(pk=worker.pk)], draining=False)
        lifecycle.dispatch(job_id=waiting)  # the sweeper's ring, now rather than in 30 s
        done = wait_for(lambda: job_state(waiting).is_terminal and job_state(waiting), timeout=180,
                        message=f"the waiting job to run after the drain ended; log:\n{log}")
        assert done.state == JobState.SUCCEEDED, (done.failure_reason, log.read_text()[-3000:])
        assert done.started_at >= undrained_at  # it did not start while the worker was draining
    stopped = wait_for(lambda: Worker.objects.get(pk=worker.pk).stopped_at, timeout=60, message="a clean stop recorded")
    assert stopped is not None


@pytest.mark.django_db
def test_the_launch_form_offers_the_fleets_classes(client, tenant_a, dataset, tiny_bert):
    client.force_login(tenant_a.owner)
    register("cpu@a", "cpu")
    page = client.get("/o/acme/jobs").content.decode()
    assert 'name="device_class"' not in page  # one class: nothing to choose
    register("gpu@a", "nvidia-a10g")
    page = client.get("/o/acme/jobs").content.decode()
    assert 'name="device_class"' in page and 'value="nvidia-a10g"' in page
    response = client.post("/o/acme/jobs", {"dataset_id": dataset.pk, "base_model": "tiny-bert", "method": "full",
                                            "device_class": "nvidia-a10g"})
    assert response.status_code == 302
    assert Job.objects.get().requested_device_class == "nvidia-a10g"
    bad = client.post("/o/acme/jobs", {"dataset_id": dataset.pk, "base_model": "tiny-bert", "method": "full",
                                       "device_class": "nvidia-h100"})
    assert bad.status_code == 400 and Job.objects.count() == 1
