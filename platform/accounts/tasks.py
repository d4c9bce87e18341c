from celery import shared_task

from . import services


@shared_task(name="accounts.tasks.purge_stale_login_attempts")
def purge_stale_login_attempts() -> int:
    return services.purge_stale_login_attempts()
