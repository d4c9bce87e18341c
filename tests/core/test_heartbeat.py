"""core.heartbeat: beats until stopped, a failing beat does not end it, and stop() waits for a beat in flight
(the caller's "stopped" mark comes after it, or the beat would write the row back to alive)."""
from __future__ import annotations

import threading

from core.heartbeat import Heartbeat


def test_stop_waits_for_the_beat_in_flight_and_no_beat_follows():
    entered, release, calls = threading.Event(), threading.Event(), []

    def beat():
        calls.append("start")
        entered.set()
        release.wait()
        calls.append("done")

    heartbeat = Heartbeat(name="test-heartbeat", beat=beat, interval=lambda: 0.001).start()
    assert entered.wait(30)
    stopper = threading.Thread(target=heartbeat.stop, kwargs={"timeout": 60})
    stopper.start()
    assert heartbeat._stop.wait(30)  # stop() has been asked for ...
    assert stopper.is_alive()  # ... and is held by the beat, which has not returned
    release.set()
    stopper.join(60)
    assert not stopper.is_alive() and calls == ["start", "done"]


def test_a_failing_beat_is_retried_on_the_next_one():
    calls, twice = [], threading.Event()

    def beat():
        calls.append(len(calls))
        if len(calls) == 1:
            raise RuntimeError("the database is away")
        twice.set()

    heartbeat = Heartbeat(name="test-heartbeat", beat=beat, interval=lambda: 0.001).start()
    assert twice.wait(30)
    heartbeat.stop()
    count = len(calls)
    assert count >= 2 and calls[:2] == [0, 1]
    heartbeat.stop()  # stopping twice is harmless
    assert len(calls) == count


def test_the_stopped_mark_runs_after_the_last_beat_and_its_failure_is_logged(caplog):
    order, beaten = [], threading.Event()

    def beat():
        order.append("beat")
        beaten.set()

    def mark():
        order.append("mark")
        raise RuntimeError("the database is away")

    heartbeat = Heartbeat(name="test-heartbeat", beat=beat, interval=lambda: 0.001).start()
    assert beaten.wait(30)
    heartbeat.stop(then=mark)  # does not raise: the process is shutting down
    assert order[-1] == "mark" and order.count("mark") == 1 and set(order[:-1]) == {"beat"}
    assert "could not mark the worker stopped" in caplog.text
