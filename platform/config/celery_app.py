"""The Celery application (cookiecutter-django placement).

Broker: Redis when REDIS_URL is set, otherwise Kombu's filesystem transport under
var/ — a broker that needs no server. Redis is only a doorbell: the database decides
who runs what (see docs/architecture.md).
"""
import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.dev")

app = Celery("lathe")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
