"""Fixtures shared by the whole suite: the standing users, API clients, a real Celery worker, browsers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection
from rest_framework.test import APIClient

from tests.s3_server import S3Server, moto_server, storages_setting
from webapp.accounts.services import api_token_for

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "correct horse battery staple"

# --- the order of files: the long ones first -------------------------------------------------

LONG_MARKERS = ("slow", "integration", "browser")


def pytest_configure(config: pytest.Config) -> None:
    # xdist would hand out the files with the most tests first, so a file of one or two long tests (the memory
    # calibration, `make run`'s supervision) started last and ended the run alone. It keeps the order below instead.
    if hasattr(config.option, "loadscopereorder"):
        config.option.loadscopereorder = False


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Files with a slow, integration or browser test run first; the quick files after them fill both processes
    to the end. Stable: each file stays whole and in its order."""
    long_files = {item.path for item in items if any(item.get_closest_marker(name) for name in LONG_MARKERS)}
    items.sort(key=lambda item: item.path not in long_files)


def make_user(django_user_model, username: str):  # type: ignore[no-untyped-def]
    return django_user_model.objects.create_user(username=username, password=PASSWORD, email=f"{username}@example.org")


@pytest.fixture(autouse=True)
def _no_token_guard_carried_over() -> Iterator[None]:
    """The wrong-token guard counts in the shared cache (Redis in CI): each test starts with a clean count."""
    from webapp.accounts.authentication import forget_token_failures

    for address in ("127.0.0.1", ""):
        forget_token_failures(address)
    yield


@pytest.fixture
def alice(django_user_model):  # the owner in most tests
    return make_user(django_user_model, "alice")


@pytest.fixture
def bob(django_user_model):
    return make_user(django_user_model, "bob")


@pytest.fixture
def charlie(django_user_model):  # the outsider
    return make_user(django_user_model, "charlie")


@pytest.fixture
def client_alice(client, alice):
    client.force_login(alice)
    return client


def api_client_for(user) -> APIClient:  # type: ignore[no-untyped-def]
    key, _ = api_token_for(user.username)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return api


@pytest.fixture
def api_alice(alice) -> APIClient:
    return api_client_for(alice)


@pytest.fixture
def api_bob(bob) -> APIClient:
    return api_client_for(bob)


@pytest.fixture
def api_charlie(charlie) -> APIClient:
    return api_client_for(charlie)


def tiny_model(builder_name: str, path: Path) -> Path:
    from jobs.training import tiny

    return getattr(tiny, builder_name)(path)


@pytest.fixture(scope="session")
def tiny_causal_lm_dir(tmp_path_factory) -> Path:
    return tiny_model("build_tiny_causal_lm", tmp_path_factory.mktemp("tiny-causal-lm"))


@pytest.fixture(scope="session")
def tiny_encoder_dir(tmp_path_factory) -> Path:
    return tiny_model("build_tiny_encoder", tmp_path_factory.mktemp("tiny-encoder"))


@pytest.fixture(scope="session")
def tiny_seq2seq_dir(tmp_path_factory) -> Path:
    return tiny_model("build_tiny_seq2seq", tmp_path_factory.mktemp("tiny-seq2seq"))


# --- a real S3 server (moto's) --------------------------------------------------------------


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    with moto_server() as server:
        yield server


@pytest.fixture
def s3_storage(s3: S3Server, settings) -> None:  # type: ignore[no-untyped-def]
    """Storage is a fresh S3 bucket, configured as webapp/settings.py does from S3_* variables."""
    settings.STORAGES = storages_setting(s3.bucket())


# --- a real Celery worker -------------------------------------------------------------------


def shared_database_url() -> str:
    """The URL of the test database pytest-django created, for a worker process to share."""
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    return f"postgres://{auth}@{db['HOST'] or 'localhost'}:{db['PORT'] or 5432}/{db['NAME']}"


@dataclass
class WorkerProcess:
    process: subprocess.Popen
    log: Path
    name: str

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Kill the whole process group: the main worker and its pool children."""
        try:
            os.killpg(self.process.pid, sig)
        except ProcessLookupError:
            pass

    def stop(self) -> None:
        """End the worker once its test is over. Killed, not asked: nothing is checked after the test, and a warm
        shutdown costs about 7 s a worker (a last broker poll, the pool's join, the interpreter's exit). The next
        test's worker starts on purged queues (purge_queues)."""
        self.kill(signal.SIGKILL)
        self.process.wait(timeout=10)


@pytest.fixture
def start_worker(transactional_db, tmp_path) -> Iterator[Callable[..., WorkerProcess]]:
    """Start real `celery worker` processes on the configured broker (filesystem, or Redis in CI)."""
    started: list[WorkerProcess] = []

    def start(queues: str = "cpu,gpu,checks", extra_env: dict[str, str] | None = None, timeout: float = 90) -> WorkerProcess:
        name = f"test-{uuid.uuid4().hex[:8]}"
        log = tmp_path / f"{name}.log"
        env = {**os.environ, "DATABASE_URL": shared_database_url(), "PYTHONUNBUFFERED": "1", **(extra_env or {})}
        command = [
            sys.executable, "-m", "celery", "-A", "webapp", "worker", "--queues", queues,
            "--concurrency", "1", "--max-tasks-per-child", "1", "--hostname", f"{name}@%h",
            "--without-gossip", "--without-mingle", "--loglevel", "INFO",
        ]
        with log.open("w") as handle:
            process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)
        worker = WorkerProcess(process, log, name)
        started.append(worker)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if " ready." in worker.output():
                return worker
            if process.poll() is not None:
                raise AssertionError(f"worker exited with {process.returncode}:\n{worker.output()}")
            time.sleep(0.2)
        raise AssertionError(f"worker not ready after {timeout}s:\n{worker.output()}")

    purge_queues()
    yield start
    for worker in started:
        worker.stop()


@pytest.fixture
def celery_worker(start_worker) -> WorkerProcess:
    return start_worker()


def purge_queues() -> None:
    """Drop messages a previous run left behind, so a test's worker sees only its own."""
    from webapp.celery import app

    if settings.CELERY_BROKER_URL.startswith("filesystem://"):
        for key in ("data_folder_in", "control_folder"):
            os.makedirs(settings.CELERY_BROKER_TRANSPORT_OPTIONS[key], exist_ok=True)
    with app.connection_for_write() as conn:
        for queue in ("cpu", "gpu", "checks", "inference"):
            try:
                conn.default_channel.queue_purge(queue)
            except Exception:  # the queue may not exist yet
                pass


def wait_for(predicate: Callable[[], object], timeout: float = 60, interval: float = 0.25, message: str = "") -> object:
    """Poll until predicate() is truthy; fail the test with `message` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(interval)
    raise AssertionError(message or f"condition not met within {timeout}s")


# --- the browser ---------------------------------------------------------------------------

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


@pytest.fixture(scope="session")
def browser():  # type: ignore[no-untyped-def]
    if not Path(CHROMIUM).exists():
        pytest.fail("Debian's chromium is missing: `make browser` installs it (apt-get install chromium).")
    from playwright.sync_api import sync_playwright

    os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")  # Playwright's sync API runs an event loop
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, live_server):  # type: ignore[no-untyped-def]
    context = browser.new_context(base_url=live_server.url, viewport={"width": 1280, "height": 800})
    context.set_default_timeout(20_000)
    page = context.new_page()
    yield page
    context.close()


def log_in(page, username: str, password: str = PASSWORD) -> None:  # type: ignore[no-untyped-def]
    page.goto("/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_url(lambda url: "/login/" not in url)


@pytest.fixture
def page_alice(page, alice):  # type: ignore[no-untyped-def]
    log_in(page, "alice")
    return page
