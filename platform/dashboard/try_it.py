"""The Try-it card of a succeeded job's page (pick the variant) and of an uploaded model's page: a form POST
answered on a page of its own, through serving.services (an inference worker; the web process never loads
a model). Refusals — no worker (503), a time-out, a model that is not ready — are shown inline."""
from __future__ import annotations

from django.urls import reverse
from django.views import View

from core.errors import ApplicationError
from jobs.model_sources import CHAT, source_get
from serving import services
from serving.models import Surface

from .views import OrganizationPageMixin

MAX_TEXT = 8000


def _percent(answer: dict) -> dict:
    for result in answer.get("results") or []:
        result["percent"] = 100 * result["score"]
        for row in result["scores"]:
            row["percent"] = 100 * row["score"]
    return answer


class TryItMixin(OrganizationPageMixin):
    def run(self, request, *, source_of, name: str, back: str, action: str, artifacts=(), selected=None):
        text, text_b = request.POST.get("text", "")[:MAX_TEXT + 1], request.POST.get("text_b", "")[:MAX_TEXT + 1]
        context = {"try_name": name, "back": back, "try_action": action, "try_artifacts": list(artifacts),
                   "try_selected": selected, "try_text": text, "try_text_b": text_b, "answer": None, "try_error": None}
        status = 200
        try:
            source = source_of()
            if source.family == CHAT:
                answer = services.chat(organization=self.organization, source=source,
                                       messages=[{"role": "user", "content": text}], surface=Surface.DASHBOARD)
            else:
                row = {"text_a": text, "text_b": text_b} if source.task == "text_pair_classification" else text
                answer = services.predict(organization=self.organization, source=source, inputs=[row],
                                          surface=Surface.DASHBOARD)
            context["answer"] = _percent(answer)
        except ApplicationError as error:
            if error.status_code == 404 and error.code == "not_found":
                raise  # a foreign or unknown model: the 404 page, like every other
            context["try_error"], status = error.message, error.status_code
        return self.render_page(request, "dashboard/try_it.html", context, status=status)


class JobTryView(TryItMixin, View):
    section = "jobs"

    def post(self, request, slug, job_id):
        from jobs.selectors import job_get

        job = job_get(organization=self.organization, job_id=job_id)
        names = sorted(job.artifacts.filter(kind="model").values_list("name", flat=True))
        artifact = request.POST.get("artifact") or "model.zip"
        if artifact not in names:
            artifact = "model.zip"
        return self.run(request, source_of=lambda: source_get(organization=self.organization, job_id=job.pk,
                                                              artifact=artifact, field="artifact"),
                        name=f"job {job.pk}" + (f" · {job.name}" if job.name else ""),
                        back=reverse("dashboard:job-detail", args=[slug, job.pk]),
                        action=reverse("dashboard:job-try", args=[slug, job.pk]), artifacts=names, selected=artifact)


class ModelTryView(TryItMixin, View):
    section = "models"

    def post(self, request, slug, model_id):
        from registry.selectors import uploaded_model_get

        model = uploaded_model_get(organization=self.organization, model_id=model_id)
        return self.run(request, source_of=lambda: source_get(organization=self.organization,
                                                              uploaded_model_id=model.pk),
                        name=model.name, back=reverse("dashboard:model-detail", args=[slug, model.pk]),
                        action=reverse("dashboard:model-try", args=[slug, model.pk]))
