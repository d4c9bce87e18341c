"""Thin Celery tasks: take an id, call a service. The database claim, not the
broker, decides who runs a job (a doubled doorbell runs it once)."""
from celery import shared_task

from . import lifecycle, runner


@shared_task(name="jobs.tasks.run_job", bind=True, acks_late=True)
def run_job(self, job_id: int) -> str:
    from workers.devices import device_class

    claim = lifecycle.job_claim(job_id=job_id, worker=self.request.hostname or "worker", device_class=device_class()[0])
    if claim is None:
        return "not claimed"
    return runner.run_claimed_job(*claim)


@shared_task(name="jobs.tasks.reap_expired_leases")
def reap_expired_leases() -> dict:
    return lifecycle.reap_expired_leases()


@shared_task(name="jobs.tasks.sweep_lost_doorbells")
def sweep_lost_doorbells() -> list:
    return lifecycle.sweep_lost_doorbells()
