from django.core.files.storage import default_storage
from django.http import FileResponse

from .models import Job, JobArtifact


def artifact_response(*, job: Job, artifact: JobArtifact) -> FileResponse:
    """The artifact streamed from storage, for the API and the dashboard alike."""
    response = FileResponse(default_storage.open(artifact.storage_name, "rb"), as_attachment=True,
                            filename=f"job-{job.pk}-{artifact.name}")
    response["Content-Length"] = str(artifact.size_bytes)
    response["X-Checksum-SHA256"] = artifact.sha256
    return response
