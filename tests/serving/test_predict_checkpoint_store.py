"""Predict chunks in object storage (LATHE_CHECKPOINTS_IN_STORAGE): each chunk file stored whole and restored
verified on a host that never saw the job, where the next attempt resumes after the last of them."""
from __future__ import annotations

import json

import pytest

from jobs import checkpoint_store
from jobs.models import Job, JobCheckpoint, JobKind
from tests.model_archives import tiny_classifier_folder
from workers.reporting import MemoryReporter
from workers.serving.predict import PredictSpec, run_predict

pytestmark = pytest.mark.django_db


class StopAfterChunks(MemoryReporter):
    def __init__(self, chunks: int):
        super().__init__()
        self.chunks = chunks

    def should_stop(self):
        return "cancelled" if len(self.checkpoints) >= self.chunks else None


def test_chunks_restored_from_storage_are_resumed_on_another_host(settings, media, tenant_a, dataset, tmp_path):
    settings.LATHE_CHECKPOINTS_IN_STORAGE = True
    folder = tiny_classifier_folder(tmp_path / "model")
    inputs = tmp_path / "in.jsonl"
    inputs.write_text("\n".join(json.dumps({"id": f"r{i}", "text": f"card {i}"}) for i in range(10)))
    job = Job.objects.create(organization=tenant_a.organization, kind=JobKind.PREDICT,
                             dataset_version=dataset.latest_version)

    def spec(host):
        return PredictSpec(model_folder=str(folder), input_file=str(inputs), output_dir=str(tmp_path / host / "out"),
                           checkpoint_dir=str(tmp_path / host / "checkpoints"), task="text_classification",
                           chunk_rows=3)

    first = StopAfterChunks(2)
    assert run_predict(spec("a"), first)["stopped"] == "cancelled"
    for saved in first.checkpoints:  # what JobReporter.checkpoint_saved does with storage on
        prefix = checkpoint_store.store(job, checkpoint_dir=str(tmp_path / "a" / "checkpoints"), path=saved["path"])
        JobCheckpoint.objects.create(job=job, attempt=1, step=saved["step"], path=prefix)

    restored = checkpoint_store.restore(job, checkpoint_dir=tmp_path / "b" / "checkpoints")
    assert sorted(restored) == ["predict/chunk-000000.json", "predict/chunk-000001.json"]
    assert checkpoint_store.restore(job, checkpoint_dir=tmp_path / "b" / "checkpoints") == []  # present: not again
    report = run_predict(spec("b"), MemoryReporter())
    assert report["resumed_rows"] == 6 and report["predicted_rows"] == 4
    ids = [json.loads(line)["id"] for line in (tmp_path / "b" / "out" / "predictions.jsonl").read_text().splitlines()]
    assert ids == [f"r{i}" for i in range(10)]
