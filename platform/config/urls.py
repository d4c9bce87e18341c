from django.conf import settings
from django.contrib import admin
from django.urls import include, path

from billing.views import stripe_webhook
from core.health import healthz, readyz
from jobs.metrics import metrics_view

admin.site.site_header = "Lathe operations"
admin.site.site_title = "Lathe admin"

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("stripe/webhook", stripe_webhook, name="stripe-webhook"),
    path("readyz", readyz, name="readyz"),
    path("metrics", metrics_view, name="metrics"),  # Prometheus (jobs/metrics.py; LATHE_METRICS_TOKEN)
    path("admin/", admin.site.urls),
    path("api/v1/", include("config.api_urls")),
    path("v1/", include("openai_compat.urls")),  # the OpenAI-compatible surface (docs/openai-compatible.md)
    path("", include("dashboard.urls")),
]

if settings.DEBUG:
    from django.conf.urls.static import static

    urlpatterns += static(settings.MEDIA_URL, document_root=settings.MEDIA_ROOT)

handler400 = "core.views.bad_request"
handler403 = "core.views.permission_denied"
handler404 = "core.views.page_not_found"
handler500 = "core.views.server_error"
