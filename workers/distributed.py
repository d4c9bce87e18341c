"""One fine-tune across several devices of a host with torch.distributed (DistributedDataParallel).

Why torchrun (`python -m torch.distributed.run`) rather than Accelerate or torch.multiprocessing: a Celery
prefork child is a daemonic process, which may not fork multiprocessing children, so the ranks must be a
separate program; torchrun is that program, ships with torch (no new dependency), sets RANK/WORLD_SIZE/
LOCAL_RANK and the rendezvous (`--standalone`: one host), and takes a whole group down when one rank dies.
Accelerate would add a config layer over the same launcher for a loop we already own.

    worker (Celery child)  ──torchrun──▶  rank 0 ─┐  DDP all-reduce (gloo on CPU, NCCL on CUDA)
        │  Reporter (the lease, the database)      rank 1 ─┘
        ◀── calls from rank 0 over a local socket (multiprocessing.connection, random authkey)
    (each rank: workers/distributed_rank.py)

Rank 0 reports through `RemoteReporter`: every Reporter call goes to the worker, which makes it on its own
thread (so the platform's fenced, lease-checked writes stay where they are). The other ranks report nothing
and never write checkpoints; every rank asks rank 0 whether to stop after each optimizer step
(`agree_stop`), so a cancel, a pause or a lost lease stops all of them at the same step. If the worker dies
(kill -9), rank 0's connection breaks: it answers "lease lost" and the group stops without writing.

The training loop (workers/finetune.py) is the single-device one with four hooks: `wrap` (DDP), `shard`
(each rank its share of each epoch's batches), `agree_stop`, and `is_main` for what only rank 0 writes."""
from __future__ import annotations

import dataclasses
import json
import os
import queue
import secrets
import subprocess
import sys
import threading
from multiprocessing.connection import Listener
from pathlib import Path

ADDRESS_ENV, AUTHKEY_ENV = "LATHE_DIST_REPORTER_ADDRESS", "LATHE_DIST_REPORTER_AUTHKEY"
REPORTER_METHODS = ("progress", "metrics", "event", "checkpoint_saved", "artifact", "should_stop", "confirm_lease")


# --- inside a rank --------------------------------------------------------------------------------------

def world() -> tuple[int, int]:
    """(rank, world size) of this process; (0, 1) outside torch.distributed."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main() -> bool:
    return world()[0] == 0


def wrap(model, device):
    """The model as the training step calls it: DDP across the ranks (the same object when alone)."""
    if world()[1] == 1:
        return model
    from torch.nn.parallel import DistributedDataParallel

    # find_unused_parameters: LoRA and frozen embeddings leave parameters without gradients.
    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None,
                                   find_unused_parameters=True)


def batches_per_rank(batches: int) -> int:
    _rank, size = world()
    return batches // size if size > 1 else batches


def shard(batches: list) -> list:
    """This rank's batches of an epoch: every size-th one from its rank, the same count on every rank (the
    fewer than `size` left over are dropped, so no rank waits at an all-reduce the others never reach)."""
    rank, size = world()
    if size == 1:
        return batches
    return batches[rank::size][:len(batches) // size]


def agree_stop(local: str | None) -> str | None:
    """Rank 0's answer to should_stop, on every rank (a collective: every rank calls it at the same step)."""
    import torch.distributed as dist

    if world()[1] == 1:
        return local
    answer = [local]
    dist.broadcast_object_list(answer, src=0)
    return answer[0]


def barrier() -> None:
    import torch.distributed as dist

    if world()[1] > 1:
        dist.barrier()


class FollowerReporter:
    """Ranks above 0: they say nothing and own no files (confirm_lease False: no checkpoint is theirs)."""

    def progress(self, **_):
        pass

    def metrics(self, **_):
        pass

    def event(self, **_):
        pass

    def checkpoint_saved(self, **_):
        pass

    def artifact(self, **_):
        pass

    def should_stop(self):
        return None

    def confirm_lease(self):
        return False


class RemoteReporter:
    """Rank 0's reporter: each call made by the worker that launched the group. A broken connection (the
    worker is gone) reads as a lost lease: stop, write nothing."""

    def __init__(self, connection):
        self.connection, self.broken = connection, False

    def _call(self, method: str, **kwargs):
        if self.broken:
            return None
        try:
            self.connection.send((method, kwargs))
            return self.connection.recv()
        except (EOFError, OSError, BrokenPipeError):
            self.broken = True
            return None

    def progress(self, **kwargs):
        self._call("progress", **kwargs)

    def metrics(self, **kwargs):
        self._call("metrics", **kwargs)

    def event(self, **kwargs):
        self._call("event", **kwargs)

    def checkpoint_saved(self, **kwargs):
        self._call("checkpoint_saved", **kwargs)

    def artifact(self, **kwargs):
        self._call("artifact", **kwargs)

    def should_stop(self):
        answer = self._call("should_stop")
        return "lease lost" if self.broken else answer

    def confirm_lease(self):
        return bool(self._call("confirm_lease")) and not self.broken

    def send_result(self, result) -> None:
        self._send_final("result", dataclasses.asdict(result))

    def send_error(self, message: str) -> None:
        self._send_final("error", {"message": message})

    def _send_final(self, kind: str, payload: dict) -> None:
        if not self.broken:
            try:
                self.connection.send((kind, payload))
            except (OSError, BrokenPipeError):
                self.broken = True


# --- in the worker ----------------------------------------------------------------------------------------

class DistributedRunError(RuntimeError):
    pass


def launch(spec, reporter, *, processes: int) -> dict:
    """Run `spec` (a FineTuneSpec with world_size == processes) on `processes` ranks of this host and
    return rank 0's FineTuneResult as a dict; the Reporter calls happen on this thread."""
    os.makedirs(spec.output_dir, exist_ok=True)
    spec_path = os.path.join(spec.output_dir, "distributed-spec.json")
    with open(spec_path, "w") as fh:
        json.dump(spec.to_dict(), fh)
    authkey = secrets.token_bytes(32)
    listener = Listener(("127.0.0.1", 0), authkey=authkey)
    source_root = str(Path(__file__).resolve().parents[1])
    host, port = listener.address
    env = {**os.environ, ADDRESS_ENV: f"{host}:{port}", AUTHKEY_ENV: authkey.hex(),
           "PYTHONPATH": os.pathsep.join(p for p in (source_root, os.environ.get("PYTHONPATH", "")) if p),
           "OMP_NUM_THREADS": str(spec.torch_threads or 1)}
    log_path = os.path.join(spec.output_dir, "distributed.log")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}",
               "--max-restarts=0", "-m", "workers.distributed_rank", spec_path]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    accepted: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: _accept(listener, accepted), daemon=True, name="lathe-dist-accept").start()
    result, failure = None, None
    try:
        connection = None
        while connection is None and process.poll() is None:
            try:
                connection = accepted.get(timeout=1.0)
            except queue.Empty:
                continue
        if isinstance(connection, BaseException):
            raise DistributedRunError(f"rank 0 could not connect: {connection}")
        while connection is not None:
            if not connection.poll(1.0):
                if process.poll() is not None:
                    break
                continue
            try:
                method, kwargs = connection.recv()
            except (EOFError, OSError):
                break
            if method == "result":
                result = kwargs
                break
            if method == "error":
                failure = kwargs["message"]
                break
            if method not in REPORTER_METHODS:
                raise DistributedRunError(f"rank 0 asked for an unknown call {method!r}")
            connection.send(getattr(reporter, method)(**kwargs))
        code = process.wait()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        listener.close()
    if failure is not None:
        raise DistributedRunError(failure)
    if result is None or code != 0:
        raise DistributedRunError(f"The {processes}-process run failed (exit {code}); the last lines of its log:\n"
                                  + _tail(log_path))
    return result


def _accept(listener, into: queue.Queue) -> None:
    try:
        into.put(listener.accept())
    except BaseException as exc:  # the listener closed: the run ended before rank 0 connected
        into.put(exc)


def _tail(path: str, lines: int = 30) -> str:
    try:
        with open(path, errors="replace") as fh:
            return "".join(fh.readlines()[-lines:])
    except OSError:
        return "(no log)"


def parse_address(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    return host, int(port)

