from celery import shared_task
from django.db import connection


@shared_task(name="core.tasks.ping")
def ping(payload: str = "ping") -> dict:
    """A round trip through broker, worker and database, for probes and tests."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        (db_ok,) = cursor.fetchone()
    return {"reply": f"pong:{payload}", "database": db_ok == 1, "database_name": str(connection.settings_dict["NAME"])}
