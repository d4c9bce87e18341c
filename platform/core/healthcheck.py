"""Container health checks (docker/Dockerfile, docker/Dockerfile.cuda, docker/compose.yaml), by role:

  python -m core.healthcheck web        GET /healthz on this container's gunicorn
  python -m core.healthcheck worker     `celery inspect ping` for this container's own node only
                                          (the node name is CELERY_NODE, default worker@<hostname>)
  python -m core.healthcheck scheduler  beat is alive: PID 1 is celery beat and the broker answers

Exit 0 healthy, 1 not. Only the standard library and celery (no Django import: it must stay cheap)."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import urllib.request

TIMEOUT = 10


def web() -> bool:
    port = os.environ.get("PORT", "8000")
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=TIMEOUT) as response:
        return response.status == 200


def worker() -> bool:
    node = os.environ.get("CELERY_NODE") or f"worker@{socket.gethostname()}"
    done = subprocess.run([sys.executable, "-m", "celery", "-A", "config", "inspect", "ping", "--destination", node, "--timeout", "5"],
                          capture_output=True, text=True, timeout=TIMEOUT + 20)
    return done.returncode == 0 and "pong" in done.stdout


def scheduler() -> bool:
    with open("/proc/1/cmdline", "rb") as f:
        if b"beat" not in f.read():
            return False
    from kombu import Connection

    with Connection(os.environ["REDIS_URL"], connect_timeout=5) as conn:
        conn.ensure_connection(max_retries=1, timeout=5)
    return True


if __name__ == "__main__":
    role = sys.argv[1] if len(sys.argv) > 1 else "web"
    try:
        ok = {"web": web, "worker": worker, "scheduler": scheduler}[role]()
    except Exception as exc:  # any failure is unhealthy
        print(f"{role} unhealthy: {type(exc).__name__}: {exc}", file=sys.stderr)
        ok = False
    sys.exit(0 if ok else 1)
