"""Run a command (the test suite) while every core is kept busy, several times in a row.

    .venv/bin/python bench/cpu_hog.py --procs 2 --runs 3 -- .venv/bin/python -m pytest

Starts `--procs` busy-loop processes (default: one per core), runs the command
`--runs` times while they spin, stops them by PID, and exits non-zero if any run
failed. Each run's wall time and exit code are printed at the end. This is how a
loaded CI host is reproduced: a test that passes only on a quiet machine fails here.
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import subprocess
import sys
import time


def _spin() -> None:
    while True:
        pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--procs", type=int, default=os.cpu_count() or 2, help="busy-loop processes (default: one per core)")
    parser.add_argument("--runs", type=int, default=3, help="how many times to run the command")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="the command, after --")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command to run after --")
    hogs = [multiprocessing.Process(target=_spin, daemon=True) for _ in range(args.procs)]
    for hog in hogs:
        hog.start()
    print(f"cpu_hog: {args.procs} busy processes (pids {', '.join(str(h.pid) for h in hogs)}), "
          f"{args.runs} run(s) of: {' '.join(command)}", flush=True)
    results = []
    try:
        for run in range(1, args.runs + 1):
            started = time.monotonic()
            code = subprocess.call(command)
            results.append((run, code, time.monotonic() - started))
            print(f"cpu_hog: run {run}/{args.runs} exit {code} in {results[-1][2]:.0f} s", flush=True)
    finally:
        for hog in hogs:
            hog.terminate()
        for hog in hogs:
            hog.join(timeout=5)
    for run, code, seconds in results:
        print(f"cpu_hog: run {run}: {'passed' if code == 0 else f'FAILED (exit {code})'} in {seconds:.0f} s")
    return 0 if results and all(code == 0 for _, code, _ in results) else 1


if __name__ == "__main__":
    sys.exit(main())
