"""workers/serving/engine.LocalEngine (Django-free): loads through the LRU once, reports warm/cold and load time,
one call at a time per model while different models answer side by side, and what the heartbeat reports."""
from __future__ import annotations

import threading
import time

from workers.serving.engine import LocalEngine
from workers.serving.runtime import CLASSIFIER, Classification, LoadedModel


class SlowModel(LoadedModel):
    def __init__(self, name, gate, log):
        super().__init__(kind=CLASSIFIER, variant="fp32", model=None, tokenizer=None, labels=["a"], size_bytes=10)
        self.name, self.gate, self.log = name, gate, log

    def classify(self, inputs, *, batch_size=32):
        self.log.append(("start", self.name))
        self.gate.wait(30)
        self.log.append(("end", self.name))
        return [Classification(label="a", score=1.0, scores={"a": 1.0}) for _ in inputs]


def test_warm_cold_and_one_call_at_a_time_per_model():
    gates = {"m1": threading.Event(), "m2": threading.Event()}
    log, located = [], []
    engine = LocalEngine(max_models=4, max_bytes=10**6, loader=lambda folder: SlowModel(folder, gates[folder], log))

    def locate(name):
        return lambda: (located.append(name), name)[1]

    results = {}

    def ask(tag, name):
        results[tag] = engine.classify(key=name, locate=locate(name), inputs=[{"text": "x"}])

    gates["m1"].set()
    ask("first", "m1")
    assert results["first"].warm is False and results["first"].load_seconds >= 0 and located == ["m1"]
    gates["m1"].clear()
    threads = [threading.Thread(target=ask, args=(tag, name)) for tag, name in (("a", "m1"), ("b", "m1"), ("c", "m2"))]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 30
    while not (log.count(("start", "m1")) == 2 and ("start", "m2") in log) and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.2)  # room for a wrongly admitted third m1 call to show up (it must not)
    # m2 runs while one m1 call waits inside: the second m1 call has not started (the per-model lock)
    assert log.count(("start", "m1")) == 2 and ("start", "m2") in log  # the first call + one of the two
    gates["m1"].set()
    gates["m2"].set()
    for t in threads:
        t.join(30)
    assert log.count(("end", "m1")) == 3
    starts = [i for i, e in enumerate(log) if e == ("start", "m1")]
    ends = [i for i, e in enumerate(log) if e == ("end", "m1")]
    assert all(end < start for end, start in zip(ends, starts[1:]))  # never two m1 calls at once
    assert results["a"].warm and results["b"].warm and results["c"].warm is False
    assert located == ["m1", "m2"]
    assert engine.snapshot() == {"loaded": ["m1", "m2"], "loaded_bytes": 20, "evictions": 0}
