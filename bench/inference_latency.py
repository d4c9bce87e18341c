"""(issue 18) Try-it latency: a real all-MiniLM-L6-v2 with a fresh classification head, int8 ONNX, served by a
real inference worker behind a live server; p50/p95 of single-input predict requests end to end through the API
at 1 and 10 concurrent callers (after warm-up), and the model called directly in-process as the baseline.
The scenario is tests/serving/latency_scenario.py (it needs the test fixtures); this runs it and writes
bench/results/inference_latency.json. Set REDIS_URL (and DATABASE_URL) for the production path.

    .venv/bin/python bench/inference_latency.py [--threads 1] [--out FILE]
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
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime threads per call (worker and baseline)")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "inference_latency.json"))
    args = parser.parse_args()
    uptime = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    env = {**os.environ, "INFERENCE_BENCH_OUT": str(Path(args.out).resolve()), "INFERENCE_BENCH_THREADS": str(args.threads),
           "INFERENCE_BENCH_UPTIME": uptime}
    sys.exit(subprocess.call([sys.executable, "-m", "pytest", "tests/serving/latency_scenario.py", "-q", "-s",
                              "-p", "no:cacheprovider"], cwd=ROOT, env=env))


if __name__ == "__main__":
    main()
