"""Loaded with `-p tests.environment` before Django's settings: the test suite's environment.

Each run gets a fresh LAYERCAKE_HOME (database file, files, broker folders) so a real worker
process can share them; the conversion cache is kept across runs so real models convert once.
DATABASE_URL and REDIS_URL from the environment (CI) are kept: then the suite uses PostgreSQL
and Redis.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

if "LAYERCAKE_TEST_HOME" not in os.environ:
    home = tempfile.mkdtemp(prefix="layercake-test-")
    os.environ["LAYERCAKE_TEST_HOME"] = home
    atexit.register(shutil.rmtree, home, True)
# Under pytest-xdist each worker process gets a home of its own (database file, files, broker folders, worker
# logs) and a Redis database of its own, so their Celery workers never take each other's tasks.
_xdist_worker = os.environ.get("PYTEST_XDIST_WORKER", "")
if _xdist_worker:
    _home = Path(os.environ["LAYERCAKE_TEST_HOME"]) / _xdist_worker
    _home.mkdir(parents=True, exist_ok=True)
    os.environ["LAYERCAKE_HOME"] = str(_home)
    if os.environ.get("REDIS_URL"):
        _base, _, _db = os.environ["REDIS_URL"].rpartition("/")
        _index = int(_xdist_worker.removeprefix("gw") or 0)
        os.environ["REDIS_URL"] = f"{_base}/{max(int(_db or 15) - 1 - _index, 0)}"
else:
    os.environ["LAYERCAKE_HOME"] = os.environ["LAYERCAKE_TEST_HOME"]
os.environ.setdefault("LAYERCAKE_CACHE", str(ROOT / "var" / "cache"))
os.environ.setdefault("SECRET_KEY", "tests-only-secret-key-not-for-deployments-0123456789")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")
os.environ["LAYERCAKE_FAST_PASSWORD_HASHER"] = "1"
# Deployment profiling is tested on its own; after every test job it would only cost CPU.
os.environ.setdefault("LAYERCAKE_PROFILE_DERIVED_MODELS", "0")
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ.setdefault("PLAYWRIGHT_BROWSERS_PATH", "0")
