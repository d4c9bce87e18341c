"""Settings come from the environment: embedded defaults with none, the
production path with DATABASE_URL / REDIS_URL, and a clean `check --deploy`."""
from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
PROBE = (
    "import json, manage; manage.bootstrap_paths(); import django; django.setup(); "
    "from django.conf import settings as s; from billing import gateway; "
    "print(json.dumps({'engine': s.DATABASES['default']['ENGINE'], 'name': str(s.DATABASES['default']['NAME']),"
    " 'media': str(s.MEDIA_ROOT), 'broker': s.CELERY_BROKER_URL, 'cache': s.CACHES['default']['BACKEND'],"
    " 'email': s.EMAIL_BACKEND, 'stripe': gateway.enabled(), 'var': str(s.VAR_DIR),"
    " 'storage': s.STORAGES['default']['BACKEND'], 'storage_options': s.STORAGES['default'].get('OPTIONS', {}),"
    " 'site_url': s.SITE_URL}))"
)
SERVICE_VARIABLES = ("DATABASE_URL", "REDIS_URL", "STRIPE_SECRET_KEY", "EMAIL_URL", "LATHE_VAR_DIR", "LATHE_MEDIA_ROOT",
                     "LATHE_S3_BUCKET", "LATHE_S3_ENDPOINT_URL", "LATHE_PORT", "LATHE_SITE_URL")


def run_manage(args: list[str] | None, env_extra: dict, settings_module: str, code: str | None = None):
    env = {k: v for k, v in os.environ.items() if k not in SERVICE_VARIABLES and not k.startswith("DJANGO_")}
    env.update(env_extra, DJANGO_SETTINGS_MODULE=settings_module)
    command = [sys.executable, "-c", code] if code else [sys.executable, "manage.py", *args]
    return subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)


def probe(settings_module: str, env_extra: dict) -> dict:
    result = run_manage(None, env_extra, settings_module, code=PROBE)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_embedded_default_needs_no_services(tmp_path):
    values = probe("config.settings.dev", {"LATHE_VAR_DIR": str(tmp_path)})
    assert values["engine"] == "django.db.backends.sqlite3"
    assert values["name"] == str(tmp_path / "db.sqlite3")
    assert values["media"] == str(tmp_path / "media")
    assert values["broker"].startswith("filesystem://")
    assert values["email"] == "django.core.mail.backends.console.EmailBackend"
    assert values["stripe"] is False
    assert values["storage"] == "django.core.files.storage.FileSystemStorage"


def test_importing_settings_creates_no_folder_and_start_up_creates_them(tmp_path):
    """Settings are read, not acted on: importing them leaves a fresh LATHE_VAR_DIR
    absent. django.setup() (every process's start-up: web, manage.py, Celery
    worker and beat) creates var/, the static root and the embedded broker's folders."""
    var = tmp_path / "fresh-var"
    code = (
        "import json, manage; manage.bootstrap_paths(); from pathlib import Path; "
        f"var = Path({str(var)!r}); "
        "import config.settings.dev; after_import = var.exists(); "
        "import django; django.setup(); from django.conf import settings as s; "
        "options = s.CELERY_BROKER_TRANSPORT_OPTIONS; "
        "print(json.dumps({'after_import': after_import, 'started': {str(p): Path(p).is_dir() for p in ("
        "s.VAR_DIR, s.STATIC_ROOT, options['data_folder_in'], options['control_folder'], "
        "s.CELERY_RESULT_BACKEND.removeprefix('file://'))}}))"
    )
    result = run_manage(None, {"LATHE_VAR_DIR": str(var)}, "config.settings.dev", code=code)
    assert result.returncode == 0, result.stderr
    values = json.loads(result.stdout.strip().splitlines()[-1])
    assert values["after_import"] is False, "importing settings created LATHE_VAR_DIR"
    assert values["started"] and all(values["started"].values()), values["started"]
    assert all(path.startswith(str(var)) for path in values["started"])


def test_links_follow_the_port_make_up_serves_on(tmp_path):
    assert probe("config.settings.dev", {"LATHE_VAR_DIR": str(tmp_path)})["site_url"] == "http://localhost:8000"
    moved = probe("config.settings.dev", {"LATHE_VAR_DIR": str(tmp_path), "LATHE_PORT": "8123"})
    assert moved["site_url"] == "http://localhost:8123"
    named = probe("config.settings.dev", {"LATHE_VAR_DIR": str(tmp_path), "LATHE_PORT": "8123",
                                          "LATHE_SITE_URL": "https://lathe.example.com"})
    assert named["site_url"] == "https://lathe.example.com"


def test_default_var_dir_is_under_the_repository():
    values = probe("config.settings.dev", {})
    assert values["var"] == str(REPO_ROOT / "var")
    assert values["name"] == str(REPO_ROOT / "var" / "db.sqlite3")


def test_production_path_from_environment():
    values = probe("config.settings.dev", {
        "DATABASE_URL": "postgres://lathe:pw@db.internal:5432/lathe",
        "REDIS_URL": "redis://cache.internal:6379/0",
        "STRIPE_SECRET_KEY": "sk_test_123",
    })
    assert values["engine"] == "django.db.backends.postgresql"
    assert values["name"] == "lathe"
    assert values["broker"] == "redis://cache.internal:6379/0"
    assert values["cache"] == "django.core.cache.backends.redis.RedisCache"
    assert values["stripe"] is True


def test_object_storage_when_a_bucket_is_named():
    values = probe("config.settings.dev", {"LATHE_S3_BUCKET": "lathe-data", "LATHE_S3_ENDPOINT_URL": "http://minio:9000"})
    assert values["storage"] == "storages.backends.s3.S3Storage"
    assert values["storage_options"]["bucket_name"] == "lathe-data"
    assert values["storage_options"]["endpoint_url"] == "http://minio:9000"


def test_postgres_goes_through_psycopg3():
    import psycopg
    from django.db.backends.postgresql import base

    assert base.is_psycopg3
    assert psycopg.__version__.startswith("3.")


def prod_env() -> dict:
    return {
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "DJANGO_ALLOWED_HOSTS": "lathe.example.com",
        "DATABASE_URL": "postgres://lathe@127.0.0.1:5432/lathe",
        "REDIS_URL": "redis://127.0.0.1:6379/0",
    }


def test_check_deploy_is_clean_on_production_settings():
    result = run_manage(["check", "--deploy", "--fail-level", "WARNING"], prod_env(), "config.settings.prod")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_production_refuses_to_start_without_its_secret():
    env = prod_env()
    del env["DJANGO_SECRET_KEY"]
    result = run_manage(["check"], env, "config.settings.prod")
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY" in result.stderr


def test_one_beat_schedule_declared_once():
    """The schedule is one literal in one place: no settings module assigns it
    twice, extends it (`.update`, `|=`, item assignment) or redefines it."""
    import ast

    places = []
    for path in sorted((REPO_ROOT / "platform" / "config" / "settings").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            targets = (node.targets if isinstance(node, ast.Assign)
                       else [node.target] if isinstance(node, (ast.AugAssign, ast.AnnAssign)) else [])
            for target in targets:
                base = target.value if isinstance(target, ast.Subscript) else target
                if isinstance(base, ast.Name) and base.id == "CELERY_BEAT_SCHEDULE":
                    places.append(f"{path.name}:{node.lineno}")
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                    and node.value.id == "CELERY_BEAT_SCHEDULE"):
                places.append(f"{path.name}:{node.lineno} .{node.attr}")
    assert len(places) == 1 and places[0].startswith("base.py:"), places
