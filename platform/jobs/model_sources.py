"""The models an organization can use (try it, predict with it, compare it): every model archive of its
succeeded jobs (model.zip, the int8 ONNX export, …) and every uploaded model — each a `ModelSource`
— and, on a worker, that archive unpacked into a bounded local cache keyed by its sha256.

One vocabulary for the API, the dashboard, batch predictions and the comparison:
a model is named by `{"job_id": 12}` (its model.zip), `{"job_id": 12, "artifact": "model-onnx-int8.zip"}`
or `{"uploaded_model_id": 3}`; `ModelSource.key` is the compact form ("job-12/model.zip", "upload-3")."""
from __future__ import annotations

import hashlib
import os
import shutil
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.core.files.storage import default_storage

from core.errors import NotFound, field_error

from .models import JobArtifact, JobKind, JobState

MODEL_ARTIFACT_KIND = "model"
CLASSIFIER = "classifier"  # workers.serving.runtime.CLASSIFIER
CHAT = "chat"  # workers.serving.runtime.CHAT
COMPLETE_MARKER = ".lathe-complete"
COPY_CHUNK_BYTES = 8 * 1024 * 1024


class ModelIntegrityError(Exception):
    """A model archive in storage whose bytes are not the ones recorded when it was made."""


@dataclass(frozen=True)
class ModelSource:
    organization_id: int
    key: str  # "job-12/model.zip" | "upload-3": stable, unique within the organization
    name: str  # for people: the job's name and the variant
    family: str  # CLASSIFIER | CHAT
    variant: str  # fp32 | torch_int8 | onnx_int8 (what the archive holds)
    storage_name: str
    sha256: str
    size_bytes: int
    labels: tuple[str, ...]
    task: str
    job_id: int | None = None
    job_kind: str | None = None
    artifact: str | None = None
    uploaded_model_id: int | None = None
    checked: bool = True  # the stored bytes are compared with sha256 before use (not for older uploads)

    def reference(self) -> dict:
        """The request form that names this model again."""
        if self.uploaded_model_id is not None:
            return {"uploaded_model_id": self.uploaded_model_id}
        return {"job_id": self.job_id, "artifact": self.artifact}


def _variant(job, artifact_name: str) -> str:
    if artifact_name.endswith("onnx-int8.zip"):
        return "onnx_int8"
    return "torch_int8" if job.kind == JobKind.QUANTIZE else "fp32"


def _family(job) -> str:
    source = job
    while source is not None and source.kind != JobKind.CHAT_FINETUNE and source.source_job_id:
        source = source.source_job
    return CHAT if source is not None and source.kind == JobKind.CHAT_FINETUNE else CLASSIFIER


def _job_source(job, artifact: JobArtifact) -> ModelSource:
    variant = _variant(job, artifact.name)
    label = {"fp32": "", "torch_int8": " · int8 (PyTorch)", "onnx_int8": " · int8 (ONNX)"}[variant]
    return ModelSource(
        organization_id=job.organization_id, key=f"job-{job.pk}/{artifact.name}",
        name=f"{job.name or f'Job {job.pk}'}{label}", family=_family(job), variant=variant,
        storage_name=artifact.storage_name, sha256=artifact.sha256, size_bytes=artifact.size_bytes,
        labels=tuple(job.labels or ()), task=job.dataset_version.task if job.dataset_version_id else "text_classification",
        job_id=job.pk, job_kind=job.kind, artifact=artifact.name)


def _upload_source(model) -> ModelSource:
    return ModelSource(
        organization_id=model.organization_id, key=f"upload-{model.pk}", name=model.name, family=CLASSIFIER,
        variant="fp32", storage_name=model.storage_name, sha256=model.stored_sha256 or model.sha256,
        size_bytes=model.size_bytes, labels=tuple(model.labels or ()), task=model.task, uploaded_model_id=model.pk,
        checked=bool(model.stored_sha256))


def _model_artifacts(organization):
    return (JobArtifact.objects.filter(organization=organization, kind=MODEL_ARTIFACT_KIND, job__state=JobState.SUCCEEDED)
            .select_related("job", "job__dataset_version", "job__source_job").order_by("job_id", "id"))


def source_list(*, organization) -> list[ModelSource]:
    """Every model the organization can use, newest job first, then uploads."""
    from registry.selectors import uploaded_model_list

    jobs = [_job_source(a.job, a) for a in _model_artifacts(organization)]
    jobs.sort(key=lambda s: -(s.job_id or 0))
    return jobs + [_upload_source(m) for m in uploaded_model_list(organization=organization)]


def variants_of(*, organization, job_id) -> list[ModelSource]:
    """A model and all its variants: the job's model archives, those of every job derived from it (its
    compressions, theirs in turn) and of the job it was derived from, back to the fine-tune."""
    from .selectors import job_get

    job = job_get(organization=organization, job_id=job_id)
    root = job
    while root.source_job_id:
        root = root.source_job
    family, frontier = {root.pk}, [root.pk]
    while frontier:
        children = list(job.__class__.objects.filter(organization=organization, source_job_id__in=frontier)
                        .values_list("pk", flat=True))
        frontier = [c for c in children if c not in family]
        family.update(frontier)
    return [_job_source(a.job, a) for a in _model_artifacts(organization).filter(job_id__in=family)]


def source_get(*, organization, job_id=None, artifact: str | None = None, uploaded_model_id=None,
               field: str = "model") -> ModelSource:
    """The model a request names; a foreign or unknown one is a 404, a malformed reference a 400 naming `field`."""
    from registry.selectors import uploaded_model_get

    from .selectors import job_get

    if (job_id is None) == (uploaded_model_id is None):
        raise field_error(field, f"{field}: give job_id (optionally with artifact) or uploaded_model_id, not both.")
    if uploaded_model_id is not None:
        if artifact is not None:
            raise field_error(field, f"{field}: artifact applies to job_id only.")
        return _upload_source(uploaded_model_get(organization=organization, model_id=uploaded_model_id))
    name = artifact if artifact is not None else "model.zip"
    if isinstance(name, str) and 0 < len(name) <= 100:
        # The common case in one query (try-it runs this on every call); anything else goes the long way
        # below, for the error that says what is wrong.
        found = (JobArtifact.objects.filter(job_id=job_id, job__organization=organization, job__state=JobState.SUCCEEDED,
                                            name=name, kind=MODEL_ARTIFACT_KIND)
                 .select_related("job", "job__dataset_version", "job__source_job").first())
        if found is not None:
            return _job_source(found.job, found)
    job = job_get(organization=organization, job_id=job_id)
    if job.state != JobState.SUCCEEDED:
        raise field_error(field, f"{field}: job {job.pk} is {job.state}; only a succeeded job has a model to use.",
                          code="model_not_ready")
    if not isinstance(name, str) or not name or len(name) > 100:
        raise field_error(field, f"{field}: artifact must be the name of one of the job's model archives.")
    found = job.artifacts.filter(name=name, kind=MODEL_ARTIFACT_KIND).first()
    if found is None:
        names = sorted(job.artifacts.filter(kind=MODEL_ARTIFACT_KIND).values_list("name", flat=True))
        raise NotFound(f"{field}: job {job.pk} has no model archive named {name!r}"
                       + (f" (it has {', '.join(names)})." if names else "."))
    return _job_source(job, found)


def parse_reference(value, *, field: str = "model") -> dict:
    """A model reference from a request body ({"job_id", "artifact"?} | {"uploaded_model_id"}), checked for
    shape only (source_get checks that it exists)."""
    if not isinstance(value, dict):
        raise field_error(field, f'{field} must be an object: {{"job_id": 12}}, {{"job_id": 12, "artifact": '
                                 f'"model-onnx-int8.zip"}} or {{"uploaded_model_id": 3}}.')
    unknown = sorted(set(value) - {"job_id", "artifact", "uploaded_model_id"})
    if unknown:
        raise field_error(field, f"{field}: unknown key(s) {', '.join(unknown)}.")
    out = {}
    for key in ("job_id", "uploaded_model_id"):
        if key in value and value[key] is not None:
            v = value[key]
            if isinstance(v, bool) or not isinstance(v, int) or not 0 < v < 2**63:
                raise field_error(field, f"{field}.{key} must be a positive integer id.")
            out[key] = v
    if "artifact" in value and value["artifact"] is not None:
        if not isinstance(value["artifact"], str) or not value["artifact"] or len(value["artifact"]) > 100 \
                or "\x00" in value["artifact"]:
            raise field_error(field, f"{field}.artifact must be an artifact name such as model-onnx-int8.zip.")
        out["artifact"] = value["artifact"]
    return out


# --- on a worker: the archive unpacked, once, in a bounded cache ------------------------------------------

_unpack_lock = threading.Lock()


def cache_dir() -> Path:
    return Path(getattr(settings, "LATHE_SERVING_CACHE_DIR", None) or Path(settings.VAR_DIR) / "serving-cache")


def unpacked(source: ModelSource) -> Path:
    """The model's files in a local folder named by the archive's sha256 (content-addressed, so a folder
    is never stale), after checking the stored bytes against that sha256, unpacked with the upload's safety
    checks into a temporary folder renamed into place.
    The cache keeps at most LATHE_SERVING_CACHE_BYTES on disk: the least recently used folders go first."""
    from registry.validation import safe_extract

    target = cache_dir() / source.sha256
    if (target / COMPLETE_MARKER).exists():
        os.utime(target / COMPLETE_MARKER)  # recently used
        return target
    with _unpack_lock:
        if (target / COMPLETE_MARKER).exists():
            return target
        tmp = cache_dir() / f".tmp-{uuid.uuid4().hex}"
        tmp.mkdir(parents=True)
        try:
            archive = tmp / "archive.zip"
            digest = hashlib.sha256()
            with default_storage.open(source.storage_name, "rb") as src, open(archive, "wb") as dst:
                for chunk in iter(lambda: src.read(COPY_CHUNK_BYTES), b""):
                    digest.update(chunk)
                    dst.write(chunk)
            # What storage holds must be what the job (or the upload, of its repacked archive) recorded.
            if source.checked and digest.hexdigest() != source.sha256:
                raise ModelIntegrityError(f"{source.key}: the stored archive's sha256 is {digest.hexdigest()}, "
                                          f"not the recorded {source.sha256}; not used.")
            with open(archive, "rb") as fh:
                folder = safe_extract(fh, tmp / "files", max_unpacked_bytes=10 * settings.LATHE_MODEL_MAX_FILE_BYTES)
            if source.task == "text_pair_classification":
                (folder / "lathe.json").write_text('{"task": "text_pair_classification"}')
            (folder / COMPLETE_MARKER).write_text(source.sha256)
            shutil.rmtree(target, ignore_errors=True)
            os.replace(folder, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        _evict(keep=target)
    return target


def _evict(*, keep: Path) -> None:
    limit = getattr(settings, "LATHE_SERVING_CACHE_BYTES", 20 * 1000 * 1000 * 1000)
    folders = []
    for entry in cache_dir().iterdir():
        marker = entry / COMPLETE_MARKER
        if entry.is_dir() and marker.exists():
            size = sum(f.stat().st_size for f in entry.rglob("*") if f.is_file())
            folders.append((marker.stat().st_mtime, entry, size))
    total = sum(size for _t, _e, size in folders)
    for _mtime, entry, size in sorted(folders):
        if total <= limit:
            break
        if entry != keep:
            shutil.rmtree(entry, ignore_errors=True)
            total -= size
