"""The test suite. Same services as the environment gives (SQLite or PostgreSQL/Redis)."""
import os
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

# Under `pytest -n N` (pytest-xdist, what `make test` runs) each test process gets its own var/ folder
# (media, checkpoints, the embedded broker, the SQLite file) and its own Redis database, and the worker
# processes its tests start inherit both: one process's cache.clear() (a FLUSHDB on Redis), broker
# messages and files never reach another's. pytest-django gives each its own test database.
_TEST_PROCESS = os.environ.get("PYTEST_XDIST_WORKER")  # gw0, gw1, …
if _TEST_PROCESS and os.environ.get("LATHE_TEST_PROCESS") != _TEST_PROCESS:
    os.environ["LATHE_TEST_PROCESS"] = _TEST_PROCESS  # once: a worker process reads these settings again
    _var = os.environ.get("LATHE_VAR_DIR") or str(Path(__file__).resolve().parents[3] / "var")
    os.environ["LATHE_VAR_DIR"] = os.path.join(_var, f"test-{_TEST_PROCESS}")
    if os.environ.get("REDIS_URL"):
        _index = 1 + int(_TEST_PROCESS.removeprefix("gw"))
        os.environ["REDIS_URL"] = urlunsplit(urlsplit(os.environ["REDIS_URL"])._replace(path=f"/{_index}"))

from .base import *  # noqa: E402,F401,F403
from .base import DATABASES, REST_FRAMEWORK, VAR_DIR, env  # noqa: E402

DEBUG = False
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # A file, not :memory:, so worker subprocesses and the live server can share it.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test-db.sqlite3")}
else:
    # Live-server and worker threads must not keep connections open past a
    # request, or the test database cannot be dropped at the end.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    # The test process runs each ordinary test inside one open transaction
    # (pytest-django), so a server-side idle-in-transaction limit would end its
    # session whenever slow work (building a model on a loaded CPU) falls between
    # two queries. Off for the test process; real worker processes
    # (tests/celery_worker.py) keep production's mechanism with a short limit, so
    # a frozen worker's locks are freed quickly in the fault tests.
    idle_seconds = env.int("LATHE_DB_IDLE_IN_TRANSACTION_SECONDS", default=0)
    DATABASES["default"]["OPTIONS"]["options"] = f"-c idle_in_transaction_session_timeout={1000 * idle_seconds}"
REST_FRAMEWORK = {
    **REST_FRAMEWORK,
    "DEFAULT_THROTTLE_RATES": {"organization": "10000/min", "anonymous": "10000/min"},
}
