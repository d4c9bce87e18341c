"""An inference worker process (one consuming LATHE_INFERENCE_QUEUE, Procfile `inference`): it registers at
start, a daemon thread heartbeats its row with the models it holds (the web's "is a worker up?" reads
these rows, so a 503 is decided without waiting), and a clean shutdown marks it stopped. Other workers
(jobs, maintenance) are left alone. Connected in ServingConfig.ready."""
from __future__ import annotations

import logging
import os

from celery import signals

logger = logging.getLogger(__name__)
_state: dict = {}


@signals.celeryd_after_setup.connect
def note_inference_worker(sender, instance, **_kwargs):
    from django.conf import settings

    queue = settings.LATHE_INFERENCE_QUEUE
    if queue not in (instance.app.amqp.queues.consume_from or {}):
        return
    _state.update(name=str(sender), queue=queue, concurrency=int(getattr(instance, "concurrency", 1) or 1))
    options = dict(instance.app.conf.broker_transport_options or {})
    if str(instance.app.conf.broker_url or "").startswith("filesystem"):
        # The filesystem transport polls its folder (1 s by default): a try-it answer should not wait for that.
        options.setdefault("polling_interval", 0.02)
        instance.app.conf.broker_transport_options = options
        _patient_filesystem_reads()
    from . import runner

    runner._identity["name"] = str(sender)


@signals.worker_ready.connect
def start_heartbeat(sender=None, **_kwargs):
    if "queue" not in _state:
        return
    from django.conf import settings

    from core.heartbeat import Heartbeat

    _state["beats"] = {"first": True}
    _state["heartbeat"] = Heartbeat(name="lathe-inference-heartbeat", beat=_beat,
                                    interval=lambda: settings.LATHE_INFERENCE_HEARTBEAT_S).start()


@signals.worker_shutdown.connect
def mark_stopped(**_kwargs):
    if "heartbeat" in _state:
        from . import services

        _state["heartbeat"].stop(then=lambda: services.worker_stopped(name=_state["name"]))


def _beat() -> None:
    from . import runner, services

    me = runner.identity()
    services.worker_beat(name=_state["name"], queue=_state["queue"], device_class=me["device_class"],
                         device_count=me["device_count"], pid=os.getpid(), concurrency=_state["concurrency"],
                         snapshot=runner.engine().snapshot(), starting=_state["beats"]["first"])
    _state["beats"]["first"] = False


def _patient_filesystem_reads() -> None:
    """kombu's filesystem transport (the embedded broker) can take a message file between the sender's open()
    and its write(): it reads b"" and the worker dies on the JSON error. Polled often, as here, that race
    is hit. In this process only: a message read empty is read again (the sender's write lands in the moved
    file, its descriptor still open) for up to 2 s before it counts as lost."""
    import json
    import time

    from kombu.transport import filesystem

    channel = filesystem.Channel
    if getattr(channel, "_lathe_patient", False):
        return
    original_loads = filesystem.loads

    def patient_get(self, queue):
        import os
        import shutil
        import tempfile

        queue_find = f"{queue}.msg"
        for filename in sorted(os.listdir(self.data_folder_in)):
            if filename.partition(".")[2] != queue_find:
                continue
            processed = self.processed_folder if self.store_processed else tempfile.gettempdir()
            try:
                shutil.move(os.path.join(self.data_folder_in, filename), processed)
            except OSError:
                continue
            path = os.path.join(processed, filename)
            deadline = time.monotonic() + 2
            while True:
                with open(path, "rb") as fh:
                    payload = fh.read()
                try:
                    message = original_loads(filesystem.bytes_to_str(payload))
                    break
                except (ValueError, json.JSONDecodeError):
                    if time.monotonic() > deadline:
                        logger.error("Dropped an unreadable broker message %s", filename)
                        message = None
                        break
                    time.sleep(0.005)
            if not self.store_processed:
                os.remove(path)
            if message is not None:
                return message
        raise filesystem.Empty()

    channel._get = patient_get
    channel._lathe_patient = True
