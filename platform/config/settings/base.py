"""Settings shared by every environment, read from the environment (django-environ).

With no variables at all the platform runs embedded: SQLite under var/, media under
var/media/, Celery on the filesystem transport, console e-mail, Stripe off.
DATABASE_URL / REDIS_URL switch to PostgreSQL (psycopg 3) and Redis.

Importing settings has no side effects: the folders named here are created at
start-up by core.runtime_folders (CoreConfig.ready), in every process that runs
Django (web, manage.py, Celery worker and beat, tests).
"""
from datetime import timedelta
from pathlib import Path

import environ

REPO_ROOT = Path(__file__).resolve().parents[3]
PLATFORM_ROOT = REPO_ROOT / "platform"

env = environ.Env()
# A .env file at the repository root is optional; real environment variables win.
environ.Env.read_env(REPO_ROOT / ".env", overwrite=False)

VAR_DIR = Path(env.str("LATHE_VAR_DIR", default=str(REPO_ROOT / "var")))

SECRET_KEY = env.str("DJANGO_SECRET_KEY", default="dev-only-insecure-key-change-me-in-production-0123456789")
DEBUG = env.bool("DJANGO_DEBUG", default=False)
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])
# The address e-mailed links and Stripe redirects use. Defaults to the port
# `make up` serves on (LATHE_PORT), so links keep working when the port changes.
LATHE_PORT = env.int("LATHE_PORT", default=8000)
SITE_URL = env.str("LATHE_SITE_URL", default=f"http://localhost:{LATHE_PORT}")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "axes",
    # Lathe
    "core",
    "accounts",
    "tenancy",
    "catalog",
    "corpora",
    "jobs",
    "serving",
    "registry",
    "audit",
    "billing",
    "openai_compat",
    "dashboard",
]

MIDDLEWARE = [
    "core.middleware.RequestIDMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Content-Security-Policy on HTML pages: scripts and styles from this origin only (core.csp).
    "core.csp.ContentSecurityPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "core.middleware.ApiTrailingSlashMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, per django-axes: it turns lockouts raised by the backend into responses.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [REPO_ROOT / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "dashboard.context_processors.organizations",
            ],
        },
    },
]

# --- Database ---------------------------------------------------------------
SQLITE_PATH = VAR_DIR / "db.sqlite3"
DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{SQLITE_PATH}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Web, worker and scheduler share one file: wait for locks instead of failing,
    # and take the write lock up front so two writers never deadlock on upgrade.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "timeout": 30,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )
else:
    DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("DATABASE_CONN_MAX_AGE", default=60))
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
    # A process frozen inside a transaction (SIGSTOP, a long GC pause, a hung
    # host) would hold its row locks for ever and block the lease reaper: the
    # server ends such sessions. Every transaction here is short.
    DATABASES["default"].setdefault("OPTIONS", {})["options"] = (
        f"-c idle_in_transaction_session_timeout={1000 * env.int('LATHE_DB_IDLE_IN_TRANSACTION_SECONDS', default=30)}")
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis, cache, Celery ---------------------------------------------------
REDIS_URL = env.str("REDIS_URL", default="")
if REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "lathe"}}

CELERY_BROKER_DIR = VAR_DIR / "celery" / "broker"
CELERY_RESULTS_DIR = VAR_DIR / "celery" / "results"
if REDIS_URL:
    CELERY_BROKER_URL = REDIS_URL
    CELERY_RESULT_BACKEND = REDIS_URL
    # Long GPU jobs: never let Redis hand an unacked message to a second worker
    # within a job's lifetime; the database lease decides who runs a job anyway.
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 12 * 3600}
else:
    CELERY_CONTROL_DIR = VAR_DIR / "celery" / "control"
    CELERY_BROKER_URL = "filesystem://localhost/"  # the host is ignored; naming one silences kombu
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(CELERY_BROKER_DIR),
        "data_folder_out": str(CELERY_BROKER_DIR),
        "processed_folder": str(VAR_DIR / "celery" / "processed"),
        # Exchange tables (broadcasts): under var/, not a `control/` folder in the working directory.
        "control_folder": str(CELERY_CONTROL_DIR),
        "store_processed": False,
    }
    CELERY_RESULT_BACKEND = f"file://{CELERY_RESULTS_DIR}"
CELERY_TASK_DEFAULT_QUEUE = env.str("CELERY_DEFAULT_QUEUE", default="default")
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = False  # our own attempt counter decides re-runs
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_RESULT_EXPIRES = timedelta(days=1)
CELERY_TIMEZONE = "UTC"
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
# The one schedule (Procfile `scheduler`); every entry runs on the maintenance queue (CELERY_TASK_ROUTES).
CELERY_BEAT_SCHEDULE = {
    "purge-expired-invitations": {"task": "tenancy.tasks.purge_stale_invitations", "schedule": timedelta(hours=6)},
    "purge-stale-login-attempts": {"task": "accounts.tasks.purge_stale_login_attempts", "schedule": timedelta(hours=1)},
    "billing-rollup-and-export": {"task": "billing.tasks.rollup_and_export", "schedule": timedelta(seconds=30)},
    "billing-sweep-stripe-events": {"task": "billing.tasks.sweep_stripe_events", "schedule": timedelta(seconds=60)},
    "billing-reconcile": {"task": "billing.tasks.reconcile_closed_periods", "schedule": timedelta(hours=1)},
    "reap-expired-leases": {"task": "jobs.tasks.reap_expired_leases", "schedule": timedelta(seconds=15)},
    "sweep-lost-doorbells": {"task": "jobs.tasks.sweep_lost_doorbells", "schedule": timedelta(seconds=30)},
}

# --- Auth -------------------------------------------------------------------
AUTH_USER_MODEL = "accounts.User"
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 10}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard:home"
LOGOUT_REDIRECT_URL = "login"
PASSWORD_RESET_TIMEOUT = 60 * 60 * 3

# Brute-force protection (django-axes): lock a (username, IP) pair after 5
# failures; the lock expires by itself (axes' default cool-off is forever).
AXES_VERBOSE = False
AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("AXES_COOLOFF_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/lockout.html"
AXES_USERNAME_FORM_FIELD = "username"
# The same identity the log-in uses (case-folded e-mail) and the one client-IP
# rule (core.client_ip, driven by NUM_PROXIES) that throttles and logs use too.
AXES_USERNAME_CALLABLE = "accounts.lockout.lockout_username"
AXES_CLIENT_IP_CALLABLE = "core.client_ip.client_ip"

# How many trusted reverse proxies stand in front of the web process (0: none,
# X-Forwarded-For is ignored). One setting for lock-out, throttles, logs and audit.
NUM_PROXIES = env.int("NUM_PROXIES", default=0)

# Live (unrevoked, unexpired) API keys one organization may hold.
LATHE_MAX_LIVE_API_KEYS = env.int("LATHE_MAX_LIVE_API_KEYS", default=50)

INVITATION_TTL = timedelta(days=env.int("LATHE_INVITATION_TTL_DAYS", default=7))

# --- REST API ---------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accounts.authentication.ApiKeyAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "core.pagination.CreatedCursorPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_THROTTLE_CLASSES": [],
    "DEFAULT_THROTTLE_RATES": {
        "organization": env.str("LATHE_API_RATE", default="1200/min"),
        "anonymous": env.str("LATHE_ANON_API_RATE", default="60/min"),
    },
    # DRF trusts X-Forwarded-For unless told how many proxies stand in front.
    "NUM_PROXIES": NUM_PROXIES,
    "EXCEPTION_HANDLER": "core.exceptions.api_exception_handler",
    "DEFAULT_SCHEMA_CLASS": "core.schema.LatheAutoSchema",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["core.parsers.JSONParser"],  # depth, number and NUL limits
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Lathe API",
    "DESCRIPTION": "Fine-tune and compress transformer models. Authenticate with `Authorization: Bearer lth_...`.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    # No badge from validator.swagger.io: it would send the schema's URL out (and the CSP blocks its image).
    "SWAGGER_UI_SETTINGS": {"deepLinking": True, "validatorUrl": None},
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {
        "RoleEnum": "tenancy.models.Role",
        "JobKindEnum": "jobs.models.JobKind",
        "TrainingMethodEnum": "jobs.models.Method",
        "PlanKindEnum": "billing.models.PlanKind",
        "EncodingConfidenceEnum": "corpora.parsing.CONFIDENCE_LEVELS",
    },
}

# --- Files ------------------------------------------------------------------
STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STATICFILES_DIRS = [REPO_ROOT / "static"]
MEDIA_URL = "media/"
MEDIA_ROOT = Path(env.str("LATHE_MEDIA_ROOT", default=str(VAR_DIR / "media")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
# S3-compatible object storage for uploads and artifacts when a bucket is named
# (AWS S3, MinIO, Ceph, R2...); local disk otherwise.
LATHE_S3_BUCKET = env.str("LATHE_S3_BUCKET", default="")
if LATHE_S3_BUCKET:
    STORAGES["default"] = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": LATHE_S3_BUCKET,
            "endpoint_url": env.str("LATHE_S3_ENDPOINT_URL", default="") or None,
            "region_name": env.str("LATHE_S3_REGION", default="") or None,
            "access_key": env.str("LATHE_S3_ACCESS_KEY_ID", default="") or None,
            "secret_key": env.str("LATHE_S3_SECRET_ACCESS_KEY", default="") or None,
            "location": env.str("LATHE_S3_PREFIX", default=""),
            "default_acl": "private",
            "querystring_auth": True,
            "file_overwrite": False,
        },
    }

# --- E-mail -----------------------------------------------------------------
EMAIL_CONFIG = env.email_url("EMAIL_URL", default="consolemail://")
vars().update(EMAIL_CONFIG)
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="Lathe <no-reply@lathe.local>")
# Operators e-mailed on billing alerts (reconciliation mismatches): "Name <a@b>, c@d".
ADMINS = [(a.split("<")[0].strip() or a, a.split("<")[-1].rstrip(">").strip())
          for a in env.list("LATHE_OPERATOR_EMAILS", default=[])]

# --- Stripe (off unless keys are given; the ledger works without it) ---------
STRIPE_SECRET_KEY = env.str("STRIPE_SECRET_KEY", default="")
STRIPE_WEBHOOK_SECRET = env.str("STRIPE_WEBHOOK_SECRET", default="")
# Stripe is on exactly when STRIPE_SECRET_KEY is set: billing.gateway.enabled() is the one test of that.
# Another API host (a Stripe stand-in in tests, stripe-mock); empty: Stripe's own.
STRIPE_API_BASE = env.str("STRIPE_API_BASE", default="")
STRIPE_TIMEOUT_SECONDS = env.float("STRIPE_TIMEOUT_SECONDS", default=20)
STRIPE_WEBHOOK_TOLERANCE_SECONDS = env.int("STRIPE_WEBHOOK_TOLERANCE_SECONDS", default=300)
# Stripe takes meter events up to 35 days old; older ledger rows are flagged for manual handling.
STRIPE_METER_EVENT_MAX_AGE_DAYS = env.int("STRIPE_METER_EVENT_MAX_AGE_DAYS", default=34)

# --- Misc -------------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
SESSION_COOKIE_AGE = 60 * 60 * 24 * 14
X_FRAME_OPTIONS = "DENY"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_id": {"()": "core.logging.RequestIDFilter"}},
    "formatters": {
        "default": {"format": "%(asctime)s %(levelname)s [%(request_id)s %(client_ip)s] %(name)s: %(message)s"},
        "json": {"()": "core.logging.JsonFormatter"},
    },
    "handlers": {
        # LATHE_LOG_FORMAT=json: one JSON object a line (core.logging.JsonFormatter) for log shippers.
        "console": {"class": "logging.StreamHandler", "filters": ["request_id"],
                    "formatter": "json" if env.str("LATHE_LOG_FORMAT", default="text") == "json" else "default"},
    },
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
    },
}

# --- Datasets (defaults until plans set them per organization) -------------
# Installation-wide ceilings; each plan sets its own limits below them (billing.Plan).
LATHE_DATASET_MAX_FILE_BYTES = env.int("LATHE_DATASET_MAX_FILE_BYTES", default=2 * 1000 * 1000 * 1000)
LATHE_STORAGE_QUOTA_BYTES = env.int("LATHE_STORAGE_QUOTA_BYTES", default=1000 * 1000 * 1000 * 1000)
# Uploaded models (zipped safetensors folders), counted against the same storage quota.
LATHE_MODEL_MAX_FILE_BYTES = env.int("LATHE_MODEL_MAX_FILE_BYTES", default=2 * 1000 * 1000 * 1000)
# Uploads above this go to a temporary file rather than memory.
FILE_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024

# --- Metrics ----------------------------------------------------------------
# Prometheus scrapes /metrics with "Authorization: Bearer <token>" (jobs/metrics.py); staff sessions may
# read it too. Unset: /metrics answers 404 to everyone else (not exposed by default).
LATHE_METRICS_TOKEN = env.str("LATHE_METRICS_TOKEN", default="")

# --- Jobs -------------------------------------------------------------------
LATHE_DEFAULT_QUEUE = env.str("LATHE_DEFAULT_QUEUE", default=CELERY_TASK_DEFAULT_QUEUE)
LATHE_MAX_CONCURRENT_JOBS = env.int("LATHE_MAX_CONCURRENT_JOBS", default=16)  # ceiling; plans set theirs
LATHE_JOB_MAX_ATTEMPTS = env.int("LATHE_JOB_MAX_ATTEMPTS", default=3)
# Workers per job queue, for queued jobs' ETAs, e.g. "default=2,gpu=4"; a queue
# not named counts as many workers as it runs jobs now (at least one).
LATHE_QUEUE_CONCURRENCY = {queue: int(n) for queue, n in env.dict("LATHE_QUEUE_CONCURRENCY", default={}).items()}
# A worker heartbeats every HEARTBEAT seconds; a job whose lease (LEASE seconds
# past its last heartbeat) expired is re-queued by the reaper.
LATHE_JOB_LEASE_SECONDS = env.int("LATHE_JOB_LEASE_SECONDS", default=60)
LATHE_JOB_HEARTBEAT_SECONDS = env.float("LATHE_JOB_HEARTBEAT_SECONDS", default=10)
# The fleet (jobs/fleet.py): each worker process re-registers this often; one not seen within the online
# window is shown as offline (generous: a loaded host may be late by a beat or two, never by six).
LATHE_WORKER_HEARTBEAT_SECONDS = env.float("LATHE_WORKER_HEARTBEAT_SECONDS", default=15)
LATHE_WORKER_ONLINE_SECONDS = env.float("LATHE_WORKER_ONLINE_SECONDS", default=90)
LATHE_REDISPATCH_AFTER_SECONDS = env.int("LATHE_REDISPATCH_AFTER_SECONDS", default=120)
# No-progress watchdog: a running attempt whose step has not advanced for
# max(STALL_STEP_MULTIPLE × its median step time, STALL_MIN_SECONDS) is taken over by the reaper.
LATHE_JOB_STALL_STEP_MULTIPLE = env.int("LATHE_JOB_STALL_STEP_MULTIPLE", default=100)
LATHE_JOB_STALL_MIN_SECONDS = env.int("LATHE_JOB_STALL_MIN_SECONDS", default=20 * 60)
# Reaper, sweeper, billing and other housekeeping run on their own queue and
# worker (Procfile `maintenance`), so a fleet busy with jobs still reaps; the
# job queues carry job runs only (dispatch names the job's queue).
LATHE_MAINTENANCE_QUEUE = env.str("LATHE_MAINTENANCE_QUEUE", default="maintenance")
# Try-it and /v1/chat/completions (serving/): answered by inference workers (Procfile `inference`: a thread
# pool sharing one LRU of loaded models), never by the web process, which waits for the answer.
LATHE_INFERENCE_QUEUE = env.str("LATHE_INFERENCE_QUEUE", default="inference")
LATHE_INFERENCE_TIMEOUT_S = env.float("LATHE_INFERENCE_TIMEOUT_S", default=30)
LATHE_INFERENCE_MAX_MODELS = env.int("LATHE_INFERENCE_MAX_MODELS", default=4)
LATHE_INFERENCE_MAX_BYTES = env.int("LATHE_INFERENCE_MAX_BYTES", default=4 * 1000 * 1000 * 1000)
LATHE_INFERENCE_MAX_INPUTS = env.int("LATHE_INFERENCE_MAX_INPUTS", default=32)
LATHE_INFERENCE_MAX_CHARS = env.int("LATHE_INFERENCE_MAX_CHARS", default=8000)
LATHE_INFERENCE_THREADS = env.int("LATHE_INFERENCE_THREADS", default=0)  # torch/onnxruntime threads; 0: library default
# A worker heartbeats every HEARTBEAT seconds; one seen within WORKER_TTL counts as up (else: 503 at once).
LATHE_INFERENCE_HEARTBEAT_S = env.float("LATHE_INFERENCE_HEARTBEAT_S", default=10)
LATHE_INFERENCE_WORKER_TTL_S = env.float("LATHE_INFERENCE_WORKER_TTL_S", default=60)
CELERY_TASK_ROUTES = {
    "jobs.tasks.run_job": {"queue": LATHE_DEFAULT_QUEUE},
    "serving.tasks.run_inference": {"queue": LATHE_INFERENCE_QUEUE},
    "*": {"queue": LATHE_MAINTENANCE_QUEUE},
}
# Where workers keep checkpoints: a folder every worker host can reach.
LATHE_CHECKPOINT_ROOT = Path(env.str("LATHE_CHECKPOINT_ROOT", default=str(VAR_DIR / "checkpoints")))
# Every checkpoint also copied to the storage API (jobs/checkpoint_store.py), so another host can resume
# the job: on by default with an S3 bucket (hosts share nothing else); off on one machine's local disk.
LATHE_CHECKPOINTS_IN_STORAGE = env.bool("LATHE_CHECKPOINTS_IN_STORAGE", default=bool(LATHE_S3_BUCKET))
# Serving (try-it, batch predictions, comparisons): model archives unpacked on a worker, keyed by sha256,
# least recently used removed beyond this many bytes (jobs/model_sources.py).
LATHE_SERVING_CACHE_DIR = env.str("LATHE_SERVING_CACHE_DIR", default=str(VAR_DIR / "serving-cache"))
LATHE_SERVING_CACHE_BYTES = env.int("LATHE_SERVING_CACHE_BYTES", default=20 * 1000 * 1000 * 1000)
LATHE_WORKER_THREADS = env.int("LATHE_WORKER_THREADS", default=0)
# A fine-tune across this many devices of the worker's host (torch.distributed, workers/distributed.py): the
# host's GPUs with NCCL, or CPU processes with gloo. Metered as that many devices × seconds. 1: one device.
LATHE_DISTRIBUTED_PROCESSES = env.int("LATHE_DISTRIBUTED_PROCESSES", default=1)
LATHE_CHECKPOINT_EVERY_STEPS = env.int("LATHE_CHECKPOINT_EVERY_STEPS", default=200)
