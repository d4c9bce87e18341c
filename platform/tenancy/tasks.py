from celery import shared_task

from . import services


@shared_task(name="tenancy.tasks.purge_stale_invitations")
def purge_stale_invitations() -> int:
    return services.purge_stale_invitations()
