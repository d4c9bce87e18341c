"""A Celery worker process joining the fleet (jobs/fleet.py): at start it adds its device class's queues
and registers; a daemon thread then heartbeats its row and applies a drain an operator asked for; a clean
shutdown marks it stopped. Connected in JobsConfig.ready: the signals fire in worker processes only."""
from __future__ import annotations

import os

from celery import signals

_state: dict = {}


@signals.celeryd_after_setup.connect
def add_device_class_queues(sender, instance, **_kwargs):
    """After -Q: also consume `<queue>.<class>` for each job queue, so jobs asking for this class reach it."""
    from workers.devices import device_class

    from . import fleet

    queues = instance.app.amqp.queues
    selected = list(queues.consume_from or {})
    klass, count = device_class()
    for name in fleet.class_queues(selected, klass):
        queues.select_add(name)
    _state.update(name=sender, device_class=klass, device_count=count, queues=list(queues.consume_from or {}))


@signals.worker_ready.connect
def register_and_heartbeat(sender=None, **_kwargs):
    if "name" not in _state:  # not started by `celery worker` (e.g. an embedded test worker): nothing to register
        return
    from django.conf import settings

    from core.heartbeat import Heartbeat

    # applied: the drain state this process last acted on; registered: the first beat registers
    _state["beats"] = {"applied": None, "registered": False, "app": sender.app}
    _state["heartbeat"] = Heartbeat(name="lathe-fleet-heartbeat", beat=_beat,
                                    interval=lambda: settings.LATHE_WORKER_HEARTBEAT_SECONDS).start()


@signals.worker_shutdown.connect
def mark_stopped(**_kwargs):
    if "heartbeat" in _state:
        from . import fleet

        _state["heartbeat"].stop(then=lambda: fleet.worker_stopped(name=_state["name"]))


def _beat() -> None:
    from . import fleet

    beats = _state["beats"]
    if not beats["registered"]:
        worker = fleet.worker_register(name=_state["name"], device_class=_state["device_class"],
                                       device_count=_state["device_count"], queues=_state["queues"], pid=os.getpid())
        beats["registered"] = True
    else:
        worker = fleet.worker_seen(name=_state["name"])
    if worker is not None and worker.draining != beats["applied"]:
        # Stop (or restart) consuming: the claim check already refuses; this keeps messages for others.
        app = beats["app"]
        for queue in fleet.job_queues_of(worker):
            if worker.draining:
                app.control.cancel_consumer(queue, destination=[worker.name])
            elif beats["applied"] is not None:  # at start nothing was cancelled: nothing to restart
                app.control.add_consumer(queue, destination=[worker.name])
        beats["applied"] = worker.draining
