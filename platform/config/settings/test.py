"""The test suite. Same services as the environment gives (SQLite or PostgreSQL/Redis)."""
from .base import *  # noqa: F401,F403
from .base import DATABASES, REST_FRAMEWORK, VAR_DIR

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
    # Fault tests freeze workers with short leases: end their stuck transactions sooner.
    DATABASES["default"]["OPTIONS"]["options"] = "-c idle_in_transaction_session_timeout=8000"
REST_FRAMEWORK = {
    **REST_FRAMEWORK,
    "DEFAULT_THROTTLE_RATES": {"organization": "10000/min", "anonymous": "10000/min"},
}
