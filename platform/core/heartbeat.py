"""A worker process's heartbeat: a daemon thread that calls `beat` every `interval()` seconds until stopped.
Used by the job fleet (jobs/worker_signals.py) and the inference workers (serving/worker_signals.py), which both
heartbeat a row the web reads and mark it stopped at a clean shutdown."""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable

logger = logging.getLogger(__name__)


class Heartbeat:
    def __init__(self, *, name: str, beat: Callable[[], None], interval: Callable[[], float]):
        self.name = name
        self._beat = beat
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> Heartbeat:
        self._thread.start()
        return self

    def stop(self, *, then: Callable[[], None] | None = None, timeout: float = 10) -> None:
        """Stop, let a beat in flight finish, then run `then` (the "stopped" mark): the mark must come after the
        last beat, or the beat would write the row back to alive. A failing mark is logged, not raised (the
        process is shutting down)."""
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=timeout)
        if then is None:
            return
        from django.db import close_old_connections

        try:
            then()
        except Exception:
            logger.warning("Heartbeat %s: could not mark the worker stopped", self.name, exc_info=True)
        finally:
            close_old_connections()

    def _run(self) -> None:
        from django.db import close_old_connections

        while True:
            try:
                self._beat()
            except Exception:  # the database away for a while: try again next beat
                logger.warning("Heartbeat %s failed", self.name, exc_info=True)
            finally:
                close_old_connections()
            if self._stop.wait(self._interval()):
                return
