"""Checkpoints in object storage (issue 17): stored whole (a manifest last, every file's SHA-256) before
they count, restored verified on a host that never saw the job — and the proof with real processes: two
workers with different checkpoint folders and media roots, sharing only the database, the broker and an
S3 server (moto's, on loopback: object storage is outside our walls), one killed with SIGKILL after a
checkpoint, the other resuming from the bucket and finishing, every second billed once."""
from __future__ import annotations

import json

import pytest
from django.core.files.storage import default_storage

from billing.models import UsageSegment
from jobs import checkpoint_store
from jobs.models import Job, JobCheckpoint, JobEvent, JobState
from tests.celery_worker import celery_worker
from tests.corpora.test_s3_storage import BUCKET, free_port

from .worker_helpers import job_state, kill_after_first_checkpoint, submit, wait_for, worker_env


def _fake_checkpoint(folder, name="step-0000120", payload=b"weights"):
    path = folder / name
    path.mkdir(parents=True)
    (path / "model.safetensors").write_bytes(payload)
    (path / "state.json").write_text(json.dumps({"global_step": 120}))
    return path


@pytest.mark.django_db
def test_stored_checkpoints_restore_verified_on_another_folder(settings, media, tenant_a, dataset, tiny_bert, tmp_path):
    settings.LATHE_CHECKPOINTS_IN_STORAGE = True
    job = Job.objects.create(organization=tenant_a.organization, dataset_version=dataset.versions.get(), base_model=tiny_bert)
    here = tmp_path / "host-a" / "checkpoints"
    step = _fake_checkpoint(here)
    best = _fake_checkpoint(here, "best", b"best weights")
    phase = here / "selection.json"
    phase.write_text(json.dumps({"epochs_run": 2}))
    for path, is_best in ((step, False), (best, True), (phase, False)):
        prefix = checkpoint_store.store(job, checkpoint_dir=str(here), path=str(path))
        JobCheckpoint.objects.create(job=job, attempt=1, step=120, path=prefix, is_best=is_best)
    assert default_storage.exists(f"checkpoints/{job.organization_id}/{job.pk}/step-0000120/manifest.json")

    there = tmp_path / "host-b" / "checkpoints"
    restored = checkpoint_store.restore(job, checkpoint_dir=there)
    assert sorted(restored) == ["best", "selection.json", "step-0000120"]
    assert (there / "step-0000120" / "model.safetensors").read_bytes() == b"weights"
    assert (there / "best" / "model.safetensors").read_bytes() == b"best weights"
    assert json.loads((there / "selection.json").read_text()) == {"epochs_run": 2}
    assert (there / "latest").read_text() == "step-0000120"
    assert checkpoint_store.restore(job, checkpoint_dir=there) == []  # present: nothing fetched twice

    # A stored file that no longer matches its manifest is refused, never trained from.
    name = f"checkpoints/{job.organization_id}/{job.pk}/step-0000120/model.safetensors"
    default_storage.delete(name)
    default_storage.save(name, __import__("io").BytesIO(b"tampered"))
    with pytest.raises(checkpoint_store.CheckpointStoreError, match="does not match its manifest"):
        checkpoint_store.restore(job, checkpoint_dir=tmp_path / "host-c")
    assert not (tmp_path / "host-c" / "step-0000120").exists()
    # A checkpoint whose manifest never arrived (the copy died half-way) is not a checkpoint.
    default_storage.delete(f"checkpoints/{job.organization_id}/{job.pk}/best/manifest.json")
    with pytest.raises(checkpoint_store.CheckpointStoreError, match="never completely stored"):
        checkpoint_store.restore(job, checkpoint_dir=tmp_path / "host-d")


@pytest.fixture
def s3_everything(settings):
    """Every stored file (datasets, checkpoints, artifacts) in one bucket of a moto S3 server on loopback,
    for this process and for the worker processes (their env)."""
    boto3 = pytest.importorskip("boto3")
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    client = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="test", aws_secret_access_key="test",
                          region_name="us-east-1")
    client.create_bucket(Bucket=BUCKET)
    settings.STORAGES = {**settings.STORAGES, "default": {"BACKEND": "storages.backends.s3.S3Storage", "OPTIONS": {
        "bucket_name": BUCKET, "endpoint_url": endpoint, "access_key": "test", "secret_key": "test",
        "region_name": "us-east-1", "file_overwrite": False, "default_acl": "private"}}}
    settings.LATHE_CHECKPOINTS_IN_STORAGE = True
    env = {"LATHE_S3_BUCKET": BUCKET, "LATHE_S3_ENDPOINT_URL": endpoint, "LATHE_S3_REGION": "us-east-1",
           "LATHE_S3_ACCESS_KEY_ID": "test", "LATHE_S3_SECRET_ACCESS_KEY": "test", "LATHE_CHECKPOINTS_IN_STORAGE": "true"}
    try:
        yield client, env
    finally:
        server.stop()


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_job_killed_on_one_host_resumes_on_another_from_object_storage(tmp_path, fast_jobs, s3_everything, tenant_a,
                                                                         api_for, long_dataset, tiny_bert):
    bucket, s3_env = s3_everything
    client = api_for(tenant_a.key(scopes=["write"]))

    def host(name: str) -> dict:
        """Its own job folders and media root: no job state on a disk the two workers share. (The embedded
        broker's folder is the broker, as Redis is in CI; the tiny catalog model is read where it was built.)"""
        env = worker_env(fast_jobs, tmp_path, **s3_env)
        env.update(LATHE_CHECKPOINT_ROOT=str(tmp_path / name / "checkpoints"), LATHE_MEDIA_ROOT=str(tmp_path / name / "media"))
        return env

    with celery_worker(tmp_path / "a.log", extra_env=host("host-a")) as (queue, first):
        fast_jobs.LATHE_DEFAULT_QUEUE = queue
        job_id = submit(client, long_dataset, epochs=8, batch_size=4, early_stopping_patience=0)
        checkpoint, killed_at = kill_after_first_checkpoint(job_id, first)
    assert checkpoint.path.startswith(f"checkpoints/{tenant_a.organization.pk}/{job_id}/step-")
    stored = {o["Key"] for o in bucket.list_objects_v2(Bucket=BUCKET, Prefix=checkpoint.path).get("Contents", [])}
    assert f"{checkpoint.path}/manifest.json" in stored

    from .test_worker_faults import reap_when_expired

    reap_when_expired(job_id)
    with celery_worker(tmp_path / "b.log", queue=queue, extra_env=host("host-b")):
        job = wait_for(lambda: (j := job_state(job_id)).is_terminal and j, timeout=300, message="the resumed job to finish")
    assert job.state == JobState.SUCCEEDED and job.attempts == 2, job.failure_reason
    assert not (tmp_path / "host-a" / "media").exists()  # nothing went through a local disk of the hosts
    events = list(JobEvent.objects.filter(job_id=job_id, attempt=2).values_list("message", flat=True))
    assert any(m.startswith("Restored from object storage:") for m in events), events
    resumed = next(m for m in events if m.startswith("Resumed from checkpoint at step"))
    assert int(resumed.split("step ")[1].split(" ")[0]) >= checkpoint.step
    assert job.artifacts.filter(name="model.zip").exists()
    # Each second billed once: the dead attempt nothing after the kill, the second attempt its own.
    first_attempt = UsageSegment.objects.filter(job_id=job_id, attempt=1)
    assert first_attempt.exists() and all(s.ended_at <= killed_at for s in first_attempt)
    assert UsageSegment.objects.filter(job_id=job_id, attempt=2).exists()
    segments = list(UsageSegment.objects.filter(job_id=job_id).order_by("started_at"))
    assert all(a.ended_at <= b.started_at for a, b in zip(segments, segments[1:]))  # no second counted twice
