from django.urls import path, re_path

from . import api, openapi

app_name = "openai"

urlpatterns = [
    path("files", api.FileListApi.as_view(), name="file-list"),
    path("files/<str:file_id>", api.FileDetailApi.as_view(), name="file-detail"),
    path("files/<str:file_id>/content", api.FileContentApi.as_view(), name="file-content"),
    path("fine_tuning/jobs", api.FineTuningJobListApi.as_view(), name="job-list"),
    path("fine_tuning/jobs/<str:job_id>", api.FineTuningJobDetailApi.as_view(), name="job-detail"),
    path("fine_tuning/jobs/<str:job_id>/cancel", api.FineTuningJobCancelApi.as_view(), name="job-cancel"),
    path("fine_tuning/jobs/<str:job_id>/pause", api.FineTuningJobPauseApi.as_view(), name="job-pause"),
    path("fine_tuning/jobs/<str:job_id>/resume", api.FineTuningJobResumeApi.as_view(), name="job-resume"),
    path("fine_tuning/jobs/<str:job_id>/events", api.FineTuningJobEventListApi.as_view(), name="job-events"),
    path("fine_tuning/jobs/<str:job_id>/checkpoints", api.FineTuningJobCheckpointListApi.as_view(), name="job-checkpoints"),
    path("models", api.ModelListApi.as_view(), name="model-list"),
    path("models/<str:model_id>", api.ModelDetailApi.as_view(), name="model-detail"),
    path("chat/completions", api.ChatCompletionsApi.as_view(), name="chat-completions"),
    path("openapi.json", openapi.openapi_json, name="openapi"),  # public: the schema of this surface
    # Anything else OpenAI serves (embeddings, batches, ...): an OpenAI-shaped 404 naming what is here.
    # Unnamed and public: it reads nothing and says the same to everyone.
    re_path(r"^.*$", api.unsupported_endpoint),
]
