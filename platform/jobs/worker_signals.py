"""A Celery worker process joining the fleet (jobs/fleet.py): at start it adds its device class's queues
and registers; a daemon thread then heartbeats its row and applies a drain an operator asked for; a clean
shutdown marks it stopped. Connected in JobsConfig.ready: the signals fire in worker processes only."""
from __future__ import annotations

import logging
import os
import threading

from celery import signals

logger = logging.getLogger(__name__)
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
    stop = threading.Event()
    thread = threading.Thread(target=_heartbeat, args=(stop, sender.app), name="lathe-fleet-heartbeat", daemon=True)
    _state.update(stop=stop, thread=thread)
    thread.start()


@signals.worker_shutdown.connect
def mark_stopped(**_kwargs):
    if "stop" in _state:
        _state["stop"].set()  # and a beat in flight finishes before the mark, which it would otherwise undo
        _state["thread"].join(timeout=10)
    if "name" in _state:
        from django.db import close_old_connections

        from . import fleet

        try:
            fleet.worker_stopped(name=_state["name"])
        except Exception:
            logger.warning("Could not mark %s stopped", _state["name"], exc_info=True)
        finally:
            close_old_connections()


def _heartbeat(stop: threading.Event, app) -> None:
    from django.conf import settings
    from django.db import close_old_connections

    from . import fleet

    applied = None  # the drain state this process last acted on
    registered = False
    while True:
        try:
            if not registered:
                worker = fleet.worker_register(name=_state["name"], device_class=_state["device_class"],
                                               device_count=_state["device_count"], queues=_state["queues"],
                                               pid=os.getpid())
                registered = True
            else:
                worker = fleet.worker_seen(name=_state["name"])
            if worker is not None and worker.draining != applied:
                # Stop (or restart) consuming: the claim check already refuses; this keeps messages for others.
                consumer_queues = fleet.job_queues_of(worker)
                for queue in consumer_queues:
                    if worker.draining:
                        app.control.cancel_consumer(queue, destination=[worker.name])
                    elif applied is not None:  # at start nothing was cancelled: nothing to restart
                        app.control.add_consumer(queue, destination=[worker.name])
                applied = worker.draining
        except Exception:  # the database away for a while: try again next beat
            logger.warning("Fleet heartbeat of %s failed", _state.get("name"), exc_info=True)
        finally:
            close_old_connections()
        if stop.wait(settings.LATHE_WORKER_HEARTBEAT_SECONDS):
            return
