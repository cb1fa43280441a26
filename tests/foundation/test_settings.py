"""The one settings module resolves on the embedded defaults and on production services."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROBE = (
    "import json; from django.conf import settings; "
    "print(json.dumps({'engine': settings.DATABASES['default']['ENGINE'], "
    "'db_name': str(settings.DATABASES['default']['NAME']), "
    "'broker': settings.CELERY_BROKER_URL, 'cache': settings.CACHES['default']['BACKEND'], "
    "'storage': settings.STORAGES['default']['BACKEND'], 'debug': settings.DEBUG, "
    "'visibility_timeout': settings.CELERY_BROKER_TRANSPORT_OPTIONS.get('visibility_timeout'), "
    "'longest_job': settings.LONGEST_JOB_SECONDS}))"
)


def settings_under(env: dict[str, str], tmp_path: Path) -> dict:
    base = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "S3_BUCKET", "DEBUG"}}
    base.update({"LAYERCAKE_HOME": str(tmp_path), "DJANGO_SETTINGS_MODULE": "webapp.settings"}, **env)
    script = f"import django; django.setup(); {PROBE}"
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=base, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_embedded_defaults_need_no_services(tmp_path):
    resolved = settings_under({}, tmp_path)
    assert resolved["engine"] == "django.db.backends.sqlite3"
    assert resolved["db_name"] == str(tmp_path / "db.sqlite3")
    assert resolved["broker"] == "filesystem://"
    assert resolved["storage"] == "django.core.files.storage.FileSystemStorage"
    assert resolved["debug"] is False


def test_environment_switches_to_postgres_redis_and_s3(tmp_path):
    resolved = settings_under(
        {
            "DATABASE_URL": "postgres://layercake@db.internal:5432/layercake",
            "REDIS_URL": "redis://cache.internal:6379/0",
            "S3_BUCKET": "layercake-files",
        },
        tmp_path,
    )
    assert resolved["engine"] == "django.db.backends.postgresql"
    assert resolved["db_name"] == "layercake"
    assert resolved["broker"] == "redis://cache.internal:6379/0"
    assert resolved["cache"] == "django.core.cache.backends.redis.RedisCache"
    assert resolved["storage"] == "storages.backends.s3.S3Storage"
    # Redis must not hand a long job to a second worker while the first still runs it.
    assert resolved["visibility_timeout"] > resolved["longest_job"]


def test_missing_secret_key_is_refused_with_a_hint(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "SECRET_KEY"}
    env.update(LAYERCAKE_HOME=str(tmp_path), DJANGO_SETTINGS_MODULE="webapp.settings")
    out = subprocess.run([sys.executable, "-c", "import django; django.setup()"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert out.returncode != 0
    assert "SECRET_KEY is not set" in out.stderr and "make setup" in out.stderr


def test_deploy_check_is_clean_with_production_settings(tmp_path):
    # The browser fixture allows async-unsafe calls in this process; a deployment never does.
    env = {k: v for k, v in os.environ.items() if k not in {"DEBUG", "DJANGO_ALLOW_ASYNC_UNSAFE"}}
    env.update(
        LAYERCAKE_HOME=str(tmp_path),
        SECRET_KEY="x7-" + "production-secret-key-with-enough-entropy-" * 2,
        LAYERCAKE_HTTPS="1",
        ALLOWED_HOSTS="layercake.example.org",
        DATABASE_URL="postgres://layercake@db.internal:5432/layercake",
        REDIS_URL="redis://cache.internal:6379/0",
    )
    out = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT, env=env, capture_output=True, text=True,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "no issues" in out.stdout


def test_every_variable_documented_in_env_example_is_read_somewhere():
    import re

    documented = set(re.findall(r"^#? ?([A-Z][A-Z0-9_]+)=", (ROOT / ".env.example").read_text(), re.MULTILINE))
    readers = "".join((ROOT / name).read_text() for name in ("webapp/settings.py", "bin/run", "bin/supervisord.conf", "Makefile"))
    unread = sorted(name for name in documented if name not in readers)
    assert not unread, f".env.example documents variables nothing reads: {unread}"
