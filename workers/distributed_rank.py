"""One rank of a distributed fine-tune, as torchrun runs it (`python -m workers.distributed_rank spec.json`;
workers/distributed.py launches it): join the group, train, rank 0 hands the result back to the worker."""
from __future__ import annotations

import json
import os
import sys
from multiprocessing.connection import Client
from pathlib import Path

from .distributed import ADDRESS_ENV, AUTHKEY_ENV, FollowerReporter, RemoteReporter, parse_address


def main(argv: list[str] | None = None) -> int:
    """One rank (run by torchrun): join the group, train, rank 0 hands the result back."""
    import torch
    import torch.distributed as dist

    from .finetune import run_finetune
    from .spec import FineTuneSpec

    spec_path = (argv or sys.argv[1:])[0]
    spec = FineTuneSpec(**json.loads(Path(spec_path).read_text()))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = spec.device != "cpu" and torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend="nccl" if cuda else "gloo")
    try:
        if dist.get_rank() == 0:
            reporter = RemoteReporter(Client(parse_address(os.environ[ADDRESS_ENV]), authkey=bytes.fromhex(os.environ[AUTHKEY_ENV])))
        else:
            reporter = FollowerReporter()
        try:
            result = run_finetune(spec, reporter)
        except Exception as exc:
            if dist.get_rank() == 0:  # the worker reports what went wrong, not torchrun's summary of it
                reporter.send_error(f"{type(exc).__name__}: {exc}")
            raise
        if dist.get_rank() == 0:
            reporter.send_result(result)
    finally:
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
