"""(issue 17) The fleet load run: N queued jobs of a tiny model across W real worker processes — each runs
exactly once — then submit → running latency for an idle worker (p50/p95). The scenario is
tests/jobs/fleet_load_scenario.py (it needs the test fixtures: a fresh test database, the tiny model);
this runs it and prints its report. Set REDIS_URL and DATABASE_URL for the production path.

    .venv/bin/python bench/fleet_load.py [--jobs 200] [--workers 3] [--out FILE]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--out")
    args = parser.parse_args()
    env = {**os.environ, "FLEET_JOBS": str(args.jobs), "FLEET_WORKERS": str(args.workers)}
    if args.out:
        env["FLEET_OUT"] = str(Path(args.out).resolve())
    sys.exit(subprocess.call([sys.executable, "-m", "pytest", "tests/jobs/fleet_load_scenario.py", "-q", "-s",
                              "-p", "no:cacheprovider"], cwd=ROOT, env=env))


if __name__ == "__main__":
    main()
