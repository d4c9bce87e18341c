"""`make up` stopped by SIGTERM (a supervisor, `docker stop`, `kill`) or Ctrl-C ends
cleanly: honcho stops every process and make reports no error."""
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def _log_so_far(make) -> str:
    """What make printed until now (non-blocking read of what is buffered)."""
    os.set_blocking(make.stdout.fileno(), False)
    chunk = make.stdout.read() or ""
    make.seen = getattr(make, "seen", "") + chunk
    return make.seen


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_make_up_stops_without_a_make_error(tmp_path, stop_signal):
    procfile = tmp_path / "Procfile"
    procfile.write_text("a: sleep 600\nb: sleep 600\n")
    # `-o seed`: take installing, migrating and seeding as done; only the run step is under test.
    make = subprocess.Popen(["make", "-s", "-o", "seed", "up", f"PROCFILE={procfile}"], cwd=REPO_ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        honcho = None
        while honcho is None and time.monotonic() < deadline:
            # `$` so the recipe's shell (whose command line goes on after the Procfile) is not taken for honcho.
            found = subprocess.run(["pgrep", "-f", f"honcho start -f {procfile}$"], capture_output=True, text=True)
            honcho = int(found.stdout.split()[0]) if found.stdout.strip() else None
            time.sleep(0.2)
        assert honcho is not None, "honcho never started"
        while "b.1 started" not in _log_so_far(make) and time.monotonic() < deadline:
            time.sleep(0.2)
        os.kill(honcho, stop_signal)
        os.set_blocking(make.stdout.fileno(), True)
        rest, _ = make.communicate(timeout=60)
        output = getattr(make, "seen", "") + rest
    finally:
        if make.poll() is None:
            os.killpg(make.pid, signal.SIGKILL)
    assert make.returncode == 0, output
    assert "Error" not in output and "***" not in output, output
    assert "stopped" in output  # honcho stopped its processes
