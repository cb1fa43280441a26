"""Reliability suite (issue 10): a real `make run` (bin/run under supervisord) killed, loaded and cut off from Redis.

    .venv/bin/python bench/bench_reliability.py [all | kill-worker | web-under-kills | load | redis-restart ...]
        [--kills 5] [--load-clients 50] [--load-seconds 60] [--redis-jobs 100] [--out bench/out/reliability.json]

Each scenario starts its own Layercake exactly as `make run` does (migrate, ensure_login, `bin/run`) on a fresh
temporary LAYERCAKE_HOME and a free port, imports a tiny random Llama (jobs/training/tiny.py) through
`manage.py import_base_model <folder>` so that training takes seconds, drives it over HTTP only (the API with the
key of `manage.py api_token`, the pages with a logged-in session), then stops supervisord with SIGTERM and checks
that no process of that LAYERCAKE_HOME is left. It also checks that no program restarts by itself just after the
start, and counts Celery's 'Unrecoverable error' lines in run.log (a worker that cannot start, e.g. the
filesystem broker's corrupted exchange file: docs/benchmarks.md, Reliability).

Scenarios:
- kill-worker: N times, a training job (~110 s of training, checkpointed only by the 60 s timer: save_steps is set
  out of reach, as with a real model where 100 steps take minutes) is killed with SIGKILL of the training worker's
  main process some seconds after its first checkpoint; supervisord restarts the worker. Per kill: seconds from the
  kill to the job running again, the newest complete checkpoint on disk at the kill (step, age), the step the job
  resumed from, and whether it succeeded. Target: N of N succeed, resumed from a checkpoint at most 60 s old.
  The web app is polled all along (as in web-under-kills). This Layercake runs with OMP_NUM_THREADS=1 (a steadier
  step rate on a shared machine).
- web-under-kills: the login page and an API list polled every 100 ms while the training, checks and inference
  workers and beat are killed (SIGKILL) in turn. Target: 0 non-200 answers, 0 connection errors.
- load: C concurrent clients (threads, keep-alive http.client) for S seconds on a mix of pages (session) and API
  lists (token), on the embedded defaults and, when PostgreSQL and Redis answer, on both (a fresh database,
  created and dropped; an unused Redis database, flushed before and after). Target: 0 errors.
- redis-restart (only when Redis answers): the training worker is stopped, J jobs (max_steps 1) are queued,
  Redis is restarted as .ci/run starts it (it keeps nothing on disk: the queued messages are lost by design),
  then the worker is started. check_jobs re-sends waiting jobs whose message may be lost after
  LAYERCAKE_RESEND_AFTER_SECONDS (lowered to 15 s for this run). Target: 0 lost, 0 stuck. Each job costs a few
  seconds of a fresh worker process (imports, model load, evaluation): on 2 cores pass a smaller --redis-jobs.
Writes JSON to --out and prints a table.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / ".venv" / "bin"
PYTHON = str(BIN / "python")
PROGRAMS = {"web", "worker", "checks", "inference", "beat"}
PG = "postgres://postgres@127.0.0.1:5432"
REDIS_DB = 11  # not the suite's 15; checked empty before use
REDIS_START = ["redis-server", "--daemonize", "yes", "--bind", "127.0.0.1", "-::1", "--port", "6379", "--save", "",
               "--appendonly", "no", "--dir", "/tmp", "--logfile", "/tmp/redis-ci.log"]


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def percentile(values: list[float], share: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(share * (len(ordered) - 1))))]


def redis_up() -> bool:
    return subprocess.run(["redis-cli", "-p", "6379", "ping"], capture_output=True, text=True).stdout.strip() == "PONG"


def postgres_up() -> bool:
    return subprocess.run(["pg_isready", "-q", "-h", "127.0.0.1", "-p", "5432"]).returncode == 0


def tiny_model_folder() -> Path:
    """Built once per run (seeded: every build is the same model), imported by each Layercake."""
    folder = Path(tempfile.gettempdir()) / f"layercake-rel-tiny-{os.getpid()}"
    if not (folder / "config.json").exists():
        subprocess.run([PYTHON, "-c", "import sys; from jobs.training.tiny import build_tiny_causal_lm as b; b(sys.argv[1])",
                        str(folder)], cwd=ROOT, check=True, capture_output=True)
    return folder


def instruction_rows(count: int) -> bytes:
    words = ["cat", "dog", "red", "blue", "sun", "moon", "tree", "book", "green", "apple", "river", "house"]
    rows = [{"instruction": f"Repeat the word {words[i % len(words)]} three times.", "input": "",
             "output": " ".join([words[i % len(words)]] * 3)} for i in range(count)]
    return "\n".join(json.dumps(row) for row in rows).encode()


# --------------------------------------------------------------------------------------------------------- the app
class Layercake:
    """One `make run` on a fresh LAYERCAKE_HOME and port; stopped with SIGTERM to supervisord, leftovers checked."""

    def __init__(self, label: str, database_url: str | None = None, redis_url: str | None = None,
                 extra_env: dict[str, str] | None = None) -> None:
        self.label = label
        self.home = Path(tempfile.mkdtemp(prefix=f"layercake-rel-{label}-"))
        self.port = free_port()
        env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "PORT"}}
        env.update(LAYERCAKE_HOME=str(self.home), PORT=str(self.port), HF_HUB_OFFLINE="1",
                   # No automatic deployment profiling of each derived model: it would queue a job per result.
                   LAYERCAKE_PROFILE_DERIVED_MODELS="0", **(extra_env or {}))
        if database_url:
            env["DATABASE_URL"] = database_url
        if redis_url:
            env["REDIS_URL"] = redis_url
        self.env = env
        self.runner: subprocess.Popen[bytes] | None = None
        self.key = self.password = self.base_id = ""
        self.leftovers: list[str] = []
        self.crash_lines: list[str] = []

    # -- set-up, as the Makefile's `run` target does it
    def manage(self, *args: str) -> str:
        done = subprocess.run([PYTHON, "manage.py", *args], cwd=ROOT, env=self.env, capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
        return done.stdout

    def start(self) -> Layercake:
        started = time.monotonic()
        (self.home / "secret_key").write_text(uuid.uuid4().hex + uuid.uuid4().hex)
        self.manage("migrate", "--noinput", "-v0")
        imported = self.manage("import_base_model", str(tiny_model_folder()), "--name", "tiny-llama")
        self.base_id = re.search(r"\(([0-9a-f-]{36})\)", imported).group(1)  # type: ignore[union-attr]
        login = self.manage("ensure_login", "--url", self.url("/"))
        self.password = re.search(r" as admin / (\S+)", login).group(1)  # type: ignore[union-attr]
        self.key = self.manage("api_token", "admin").strip().splitlines()[-1]
        self.logfile = open(self.home / "run.log", "wb")
        self.runner = subprocess.Popen([str(ROOT / "bin/run")], cwd=ROOT, env=self.env, stdout=self.logfile,
                                       stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 180
        while True:
            states = self.status()
            if len(states) == len(PROGRAMS) and all(s == "RUNNING" for s, _ in states.values()) and self.ping() == 200:
                break
            if self.runner.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"Layercake did not come up: {states}; see {self.home / 'run.log'}")
            time.sleep(0.5)
        # RUNNING after startsecs (1 s) is not enough: a worker that dies at once (a crash loop) shows RUNNING too.
        pids = {name: pid for name, (_, pid) in states.items()}
        time.sleep(5)
        changed = {name: pid for name, (_, pid) in self.status().items() if pid != pids.get(name)}
        if changed:
            log(f"{self.label}: WARNING programs restarted on their own just after the start: {sorted(changed)}")
        log(f"{self.label}: up on port {self.port} in {time.monotonic() - started:.0f} s (home {self.home})")
        return self

    def crashes(self) -> list[str]:
        """Celery's 'Unrecoverable error' lines in supervisord's output (a worker that died by itself)."""
        try:
            text = (self.home / "run.log").read_text(errors="replace")
        except OSError:
            return []
        return [line[:200] for line in text.splitlines() if "Unrecoverable error" in line]

    def stop(self) -> list[str]:
        """SIGTERM to supervisord (bin/run execs it), then every process of this home must be gone."""
        if self.runner and self.runner.poll() is None:
            self.runner.send_signal(signal.SIGTERM)
            try:
                self.runner.wait(timeout=120)
            except subprocess.TimeoutExpired:
                self.leftovers.append("supervisord did not exit within 120 s of SIGTERM")
        time.sleep(1)
        for pid, args in self.processes().items():
            self.leftovers.append(f"pid {pid}: {args}")
        for pid in self.processes():  # leave nothing running behind us, but report it
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.logfile.close()
        return self.leftovers

    def __enter__(self) -> Layercake:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.crash_lines = self.crashes()
        if self.crash_lines:
            log(f"{self.label}: {len(self.crash_lines)} worker crashes in run.log, first: {self.crash_lines[0]}")
        leftovers = self.stop()
        if leftovers:
            log(f"{self.label}: PROCESSES LEFT BEHIND: {leftovers}")
        else:
            log(f"{self.label}: stopped, no process left behind")
        if not leftovers and not any(exc):
            shutil.rmtree(self.home, ignore_errors=True)

    # -- inspection
    def processes(self) -> dict[int, str]:
        """Every process (but this script) whose environment says LAYERCAKE_HOME=<our home>."""
        marker = f"LAYERCAKE_HOME={self.home}".encode()
        found = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                if marker in (entry / "environ").read_bytes().split(b"\0"):
                    found[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()[:160]
            except OSError:
                continue
        return found

    def orphans(self) -> dict[int, str]:
        """Processes of this home that supervisord does not own any more (not its descendants)."""
        if not self.runner:
            return {}
        mine = self.processes()
        parents = {}
        for pid in mine:
            try:
                parents[pid] = int((Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
        lost = {}
        for pid, args in mine.items():
            cursor, seen = pid, 0
            while cursor not in (self.runner.pid, 1, 0) and seen < 20:
                cursor, seen = parents.get(cursor, 1), seen + 1
            if cursor != self.runner.pid:
                lost[pid] = args
        return lost

    def supervisorctl(self, *args: str) -> str:
        return subprocess.run([str(BIN / "supervisorctl"), "-c", str(ROOT / "bin/supervisord.conf"), *args],
                              env=self.env, capture_output=True, text=True, cwd=ROOT).stdout

    def status(self) -> dict[str, tuple[str, int | None]]:
        found: dict[str, tuple[str, int | None]] = {}
        for line in self.supervisorctl("status").splitlines():
            match = re.match(r"(\S+)\s+(\S+)(?:\s+pid (\d+))?", line)
            if match and match.group(1) in PROGRAMS:
                found[match.group(1)] = (match.group(2), int(match.group(3)) if match.group(3) else None)
        return found

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def ping(self) -> int:
        try:
            return self.request("GET", "/login/", token=False)[0]
        except OSError:
            return 0

    # -- HTTP
    def request(self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None,
                token: bool = True, timeout: float = 30) -> tuple[int, bytes]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            sent = dict(headers or {})
            if token:
                sent["Authorization"] = f"Token {self.key}"
            connection.request(method, path, body=body, headers=sent)
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()

    def api(self, method: str, path: str, payload: Any = None) -> Any:
        body = json.dumps(payload).encode() if payload is not None else None
        status, data = self.request(method, path, body, {"Content-Type": "application/json"} if body else None)
        if status >= 400:
            raise RuntimeError(f"{method} {path}: {status} {data[:500]!r}")
        return json.loads(data) if data else None

    def upload_dataset(self, rows: int, name: str = "repeat") -> str:
        boundary = uuid.uuid4().hex
        body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\n{name}\r\n"
                f"--{boundary}\r\nContent-Disposition: form-data; name=\"task\"\r\n\r\nsft\r\n"
                f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}.jsonl\"\r\n"
                "Content-Type: application/octet-stream\r\n\r\n").encode() + instruction_rows(rows) + f"\r\n--{boundary}--\r\n".encode()
        status, data = self.request("POST", "/api/v1/datasets/", body, {"Content-Type": f"multipart/form-data; boundary={boundary}"})
        if status != 201:
            raise RuntimeError(f"dataset upload: {status} {data[:500]!r}")
        dataset = json.loads(data)["id"]
        deadline = time.monotonic() + 120
        while (state := self.api("GET", f"/api/v1/datasets/{dataset}/"))["status"] in {"uploaded", "validating"}:
            if time.monotonic() > deadline:
                raise RuntimeError(f"dataset {dataset} still {state['status']} after 120 s")
            time.sleep(0.5)
        if state["status"] != "ready":
            raise RuntimeError(f"dataset {dataset}: {state['status']} {state.get('errors')}")
        return dataset

    def submit(self, dataset: str, hyperparameters: dict[str, Any]) -> dict[str, Any]:
        return self.api("POST", "/api/v1/jobs/", {"base_model": self.base_id, "dataset": dataset, "method": "lora",
                                                  "hyperparameters": hyperparameters})

    def job(self, job_id: str) -> dict[str, Any]:
        return self.api("GET", f"/api/v1/jobs/{job_id}/")

    def session_cookie(self) -> str:
        """Logs in through the login form (CSRF and all) and returns the Cookie header of that session."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        connection.request("GET", "/login/")
        response = connection.getresponse()
        page = response.read().decode()
        csrf = re.search(r"csrftoken=([^;]+)", response.getheader("Set-Cookie") or "").group(1)  # type: ignore[union-attr]
        form_token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
        body = urllib.parse.urlencode({"csrfmiddlewaretoken": form_token, "username": "admin", "password": self.password})
        connection.request("POST", "/login/", body=body, headers={
            "Content-Type": "application/x-www-form-urlencoded", "Cookie": f"csrftoken={csrf}", "Referer": self.url("/login/")})
        response = connection.getresponse()
        response.read()
        cookies = response.getheader("Set-Cookie") or ""
        session = re.search(r"sessionid=([^;]+)", cookies)
        if response.status != 302 or not session:
            raise RuntimeError(f"login failed: {response.status} {cookies}")
        connection.close()
        return f"csrftoken={csrf}; sessionid={session.group(1)}"


# -------------------------------------------------------------------------------------------------- web poller
class Poller(threading.Thread):
    """The login page and an API list, each every 100 ms, new connection each time (as a browser after a restart)."""

    def __init__(self, app: Layercake) -> None:
        super().__init__(daemon=True)
        self.app, self.stopped = app, threading.Event()
        self.requests = self.non_200 = self.connection_errors = 0
        self.failures: list[str] = []
        self.slowest_ms = 0.0

    def run(self) -> None:
        paths = [("/login/", False), ("/api/v1/jobs/", True)]
        turn = 0
        while not self.stopped.is_set():
            path, token = paths[turn % 2]
            turn += 1
            t0 = time.perf_counter()
            try:
                status, _ = self.app.request("GET", path, token=token, timeout=10)
                if status != 200:
                    self.non_200 += 1
                    self.failures.append(f"{time.strftime('%H:%M:%S')} {path} {status}")
            except OSError as error:
                self.connection_errors += 1
                self.failures.append(f"{time.strftime('%H:%M:%S')} {path} {type(error).__name__}: {error}")
            self.requests += 1
            elapsed = time.perf_counter() - t0
            self.slowest_ms = max(self.slowest_ms, elapsed * 1000)
            self.stopped.wait(max(0.0, 0.1 - elapsed))

    def result(self) -> dict[str, Any]:
        self.stopped.set()
        self.join(timeout=15)
        return {"requests": self.requests, "non_200": self.non_200, "connection_errors": self.connection_errors,
                "slowest_ms": round(self.slowest_ms), "failures": self.failures[:20]}


# ------------------------------------------------------------------------------------------------ kill-worker
def newest_checkpoint(app: Layercake, job_id: str) -> tuple[int, float] | None:
    """(step, age in s) of the newest complete checkpoint (trainer_state.json written last) of the job."""
    best = None
    for path in (app.home / "files" / "jobs" / job_id / "checkpoints").glob("checkpoint-*"):
        state = path / "trainer_state.json"
        suffix = path.name.rsplit("-", 1)[-1]
        if suffix.isdigit() and state.exists():
            try:
                mtime = state.stat().st_mtime
            except OSError:
                continue
            if best is None or int(suffix) > best[0]:
                best = (int(suffix), time.time() - mtime)
    return best


def kill_worker(args: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(args.seed)
    results: list[dict[str, Any]] = []
    # One torch thread: on this shared 2-core machine OpenMP's spinning threads made the step rate swing 15-fold
    # with the neighbours' load, and with it the length of each run; the kill and the recovery do not depend on it.
    with Layercake("kill-worker", extra_env={"OMP_NUM_THREADS": "1"}) as app:
        dataset = app.upload_dataset(args.kill_rows)
        poller = Poller(app)
        poller.start()
        for attempt in range(1, args.kills + 1):
            record: dict[str, Any] = {"run": attempt}
            results.append(record)
            job = app.submit(dataset, {"epochs": 100, "max_steps": args.kill_steps, "batch_size": 2, "max_length": 64,
                                       "save_steps": 1_000_000})
            job_id = record["job"] = job["id"]
            # The first timed checkpoint (60 s of training), then a random few seconds more of training.
            deadline = time.monotonic() + 240
            while newest_checkpoint(app, job_id) is None:
                state = app.job(job_id)
                if state["status"] in {"succeeded", "failed", "cancelled"} or time.monotonic() > deadline:
                    record["error"] = f"no checkpoint before the kill: job {state['status']} {state.get('error')}"
                    break
                time.sleep(0.5)
            if "error" in record:
                continue
            # A random few seconds more of training, but never past 85 % of the steps: the kill must land mid-run.
            delay = rng.uniform(args.kill_delay_min, args.kill_delay_max)
            waited = time.monotonic()
            while time.monotonic() - waited < delay:
                progress = app.job(job_id)["progress"]
                if progress["total_steps"] and progress["step"] >= 0.85 * progress["total_steps"]:
                    break
                time.sleep(0.5)
            delay = time.monotonic() - waited
            _, pid = app.status()["worker"]
            checkpoint = newest_checkpoint(app, job_id)
            before = app.job(job_id)
            os.kill(pid, signal.SIGKILL)  # type: ignore[arg-type]
            killed = time.monotonic()
            record.update(delay_after_first_checkpoint_s=round(delay, 1), killed_pid=pid,
                          step_at_kill=before["progress"]["step"], total_steps=before["progress"]["total_steps"],
                          checkpoint_step=checkpoint[0] if checkpoint else None,
                          checkpoint_age_s=round(checkpoint[1], 1) if checkpoint else None,
                          attempt_before=before["attempt"])
            # Back to running under a new attempt: a restarted worker hands its jobs back at once.
            restarted = running = None
            seen_states: list[str] = []
            orphans: dict[int, str] = {}
            while time.monotonic() - killed < 180:
                states = app.status()
                if restarted is None and states["worker"][0] == "RUNNING" and states["worker"][1] != pid:
                    restarted = time.monotonic() - killed
                if time.monotonic() - killed > 2 and not orphans:
                    orphans = app.orphans()
                current = app.job(job_id)
                if not seen_states or seen_states[-1] != current["status"]:
                    seen_states.append(current["status"])
                if current["status"] == "running" and current["attempt"] > before["attempt"]:
                    running = time.monotonic() - killed
                    break
                if current["status"] in {"succeeded", "failed", "cancelled"}:
                    break
                time.sleep(0.2)
            record.update(worker_restarted_s=round(restarted, 1) if restarted else None,
                          kill_to_running_s=round(running, 1) if running else None, states_after_kill=seen_states,
                          orphans_after_kill=[f"{p}: {a}" for p, a in orphans.items()])
            deadline = time.monotonic() + 300
            while (final := app.job(job_id))["status"] not in {"succeeded", "failed", "cancelled"}:
                if time.monotonic() > deadline:
                    break
                time.sleep(1)
            summary = final.get("summary") or {}
            record.update(status=final["status"], attempt=final["attempt"], error=final.get("error"),
                          resumed_from_step=summary.get("resumed_from_step"), global_step=summary.get("global_step"))
            record["resumed_from_newest_checkpoint"] = (record["resumed_from_step"] == record["checkpoint_step"])
            log(f"kill {attempt}: {json.dumps({k: v for k, v in record.items() if k != 'states_after_kill'})}")
        web = poller.result()
    ok = [r for r in results if r.get("status") == "succeeded" and r.get("resumed_from_newest_checkpoint")
          and (r.get("checkpoint_age_s") or 999) <= 60]
    return {"runs": results, "succeeded": sum(r.get("status") == "succeeded" for r in results),
            "met": len(ok) == args.kills, "web_during_kills": web, "leftovers": app.leftovers,
            "worker_crashes": len(app.crash_lines), "first_crash": app.crash_lines[:1]}


# ----------------------------------------------------------------------------------------------- web-under-kills
def web_under_kills(args: argparse.Namespace) -> dict[str, Any]:
    kills: list[dict[str, Any]] = []
    with Layercake("web-under-kills") as app:
        poller = Poller(app)
        poller.start()
        time.sleep(3)
        for round_ in range(args.web_rounds):
            for program in ("worker", "checks", "inference", "beat"):
                state, pid = app.status()[program]
                os.kill(pid, signal.SIGKILL)  # type: ignore[arg-type]
                killed = time.monotonic()
                back = None
                while time.monotonic() - killed < 30:
                    now_state, now_pid = app.status()[program]
                    if now_state == "RUNNING" and now_pid != pid:
                        back = round(time.monotonic() - killed, 1)
                        break
                    time.sleep(0.2)
                kills.append({"round": round_ + 1, "program": program, "pid": pid, "back_in_s": back})
                time.sleep(2)
        time.sleep(3)
        web = poller.result()
        beats = [a for a in app.processes().values() if " beat " in a]
        orphans = app.orphans()
    result = {"kills": kills, "web": web, "beats_at_end": len(beats), "orphans_at_end": list(orphans.values()),
              "leftovers": app.leftovers}
    result["met"] = web["non_200"] == 0 and web["connection_errors"] == 0 and all(k["back_in_s"] for k in kills)
    log(f"web-under-kills: {json.dumps({k: v for k, v in result.items() if k != 'kills'})}")
    return result


# ----------------------------------------------------------------------------------------------------- load
def load_once(app: Layercake, clients: int, seconds: float) -> dict[str, Any]:
    dataset = app.upload_dataset(40, "load")
    job = app.submit(dataset, {"max_steps": 1, "batch_size": 2, "max_length": 64})
    cookie = app.session_cookie()
    pages = [("/login/", None), ("/playground/", "session"), ("/jobs/", "session"), ("/datasets/", "session"),
             ("/models/", "session"), (f"/jobs/{job['id']}/", "session"), ("/api/v1/jobs/", "token"),
             ("/api/v1/datasets/", "token"), ("/api/v1/models/", "token"), (f"/api/v1/jobs/{job['id']}/", "token")]
    for path, auth in pages:  # every page answers 200 before the clock starts
        headers = {"Cookie": cookie} if auth == "session" else {}
        status, body = app.request("GET", path, headers=headers, token=auth == "token")
        if status != 200:
            raise RuntimeError(f"{path}: {status} {body[:300]!r}")
    latencies: list[float] = []
    errors: dict[str, int] = {}
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds
    start_gate = threading.Barrier(clients + 1)

    def client(number: int) -> None:
        rng = random.Random(number)
        connection = http.client.HTTPConnection("127.0.0.1", app.port, timeout=60)
        start_gate.wait()
        mine: list[float] = []
        while time.monotonic() < stop_at:
            path, auth = rng.choice(pages)
            headers = {"Cookie": cookie} if auth == "session" else {}
            if auth == "token":
                headers["Authorization"] = f"Token {app.key}"
            t0 = time.perf_counter()
            try:
                connection.request("GET", path, headers=headers)
                response = connection.getresponse()
                response.read()
                mine.append((time.perf_counter() - t0) * 1000)
                if response.status != 200:
                    with lock:
                        errors[f"{response.status} {path}"] = errors.get(f"{response.status} {path}", 0) + 1
                if (response.getheader("Connection") or "").lower() == "close":
                    connection.close()
                    connection = http.client.HTTPConnection("127.0.0.1", app.port, timeout=60)
            except (OSError, http.client.HTTPException) as error:
                with lock:
                    errors[f"{type(error).__name__} {path}"] = errors.get(f"{type(error).__name__} {path}", 0) + 1
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", app.port, timeout=60)
        connection.close()
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(clients)]
    for thread in threads:
        thread.start()
    start_gate.wait()
    began = time.monotonic()
    for thread in threads:
        thread.join(timeout=seconds + 120)
    elapsed = time.monotonic() - began
    answered = len(latencies)
    return {"clients": clients, "seconds": round(elapsed, 1), "requests": answered + sum(
        v for k, v in errors.items() if not k[0].isdigit()), "errors": sum(errors.values()), "error_kinds": errors,
        "p50_ms": round(percentile(latencies, 0.5) or 0, 1), "p95_ms": round(percentile(latencies, 0.95) or 0, 1),
        "p99_ms": round(percentile(latencies, 0.99) or 0, 1), "requests_per_s": round(answered / elapsed, 1),
        "pages": [p for p, _ in pages]}


def load(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {}
    with Layercake("load-embedded") as app:
        results["embedded"] = load_once(app, args.load_clients, args.load_seconds)
    results["embedded"]["leftovers"] = app.leftovers
    log(f"load embedded: {json.dumps(results['embedded'])}")
    if postgres_up() and redis_up():
        with fresh_postgres() as database_url, fresh_redis_db() as redis_url:
            with Layercake("load-pg-redis", database_url=database_url, redis_url=redis_url) as app:
                results["postgres_redis"] = load_once(app, args.load_clients, args.load_seconds)
            results["postgres_redis"]["leftovers"] = app.leftovers
        log(f"load postgres+redis: {json.dumps(results['postgres_redis'])}")
    else:
        results["postgres_redis"] = {"skipped": "PostgreSQL or Redis not answering"}
    results["met"] = all(r.get("errors", 0) == 0 and not r.get("leftovers") for r in results.values() if isinstance(r, dict))
    return results


class fresh_postgres:
    def __enter__(self) -> str:
        self.name = f"layercake_rel_{os.getpid()}"
        subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-q", "-c", f"CREATE DATABASE {self.name}"], check=True)
        return f"{PG}/{self.name}"

    def __exit__(self, *exc: object) -> None:
        subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-q", "-c", f"DROP DATABASE IF EXISTS {self.name} WITH (FORCE)"],
                       check=False)


class fresh_redis_db:
    def __enter__(self) -> str:
        keys = subprocess.run(["redis-cli", "-n", str(REDIS_DB), "dbsize"], capture_output=True, text=True).stdout.strip()
        if keys not in {"", "0"}:
            raise RuntimeError(f"Redis database {REDIS_DB} is not empty ({keys} keys): somebody uses it")
        subprocess.run(["redis-cli", "-n", str(REDIS_DB), "flushdb"], check=True, capture_output=True)
        return f"redis://127.0.0.1:6379/{REDIS_DB}"

    def __exit__(self, *exc: object) -> None:
        subprocess.run(["redis-cli", "-n", str(REDIS_DB), "flushdb"], check=False, capture_output=True)


# ----------------------------------------------------------------------------------------------- redis-restart
def redis_restart(args: argparse.Namespace) -> dict[str, Any]:
    if not redis_up():
        return {"skipped": "Redis is not answering (redis-cli ping)"}
    if not postgres_up():
        return {"skipped": "PostgreSQL is not answering"}
    result: dict[str, Any] = {"jobs": args.redis_jobs, "resend_after_s": args.resend_after}
    with fresh_postgres() as database_url, fresh_redis_db() as redis_url:
        app = Layercake("redis-restart", database_url=database_url, redis_url=redis_url,
                        extra_env={"LAYERCAKE_RESEND_AFTER_SECONDS": str(args.resend_after)})
        with app:
            dataset = app.upload_dataset(40, "redis")
            app.supervisorctl("stop", "worker")
            assert app.status()["worker"][0] == "STOPPED"
            ids = [app.submit(dataset, {"max_steps": 1, "batch_size": 2, "max_length": 64, "eval_max_rows": 8})["id"]
                   for _ in range(args.redis_jobs)]
            time.sleep(2)
            queued = subprocess.run(["redis-cli", "-n", str(REDIS_DB), "llen", "cpu"], capture_output=True, text=True).stdout.strip()
            result["messages_in_redis_before_restart"] = int(queued or 0)
            clients = subprocess.run(["redis-cli", "info", "clients"], capture_output=True, text=True).stdout
            result["redis_clients_before"] = int(re.search(r"connected_clients:(\d+)", clients).group(1))  # type: ignore[union-attr]
            t0 = time.monotonic()
            subprocess.run(["redis-cli", "-p", "6379", "shutdown", "nosave"], capture_output=True)
            while redis_up():
                time.sleep(0.1)
            subprocess.run(REDIS_START, check=True, capture_output=True)
            while not redis_up():
                time.sleep(0.1)
            result["redis_down_s"] = round(time.monotonic() - t0, 1)
            result["messages_in_redis_after_restart"] = int(subprocess.run(
                ["redis-cli", "-n", str(REDIS_DB), "llen", "cpu"], capture_output=True, text=True).stdout.strip() or 0)
            app.supervisorctl("start", "worker")
            started = time.monotonic()
            deadline = started + args.redis_deadline
            finished: dict[str, float] = {}
            last: dict[str, str] = {}
            while len(finished) < len(ids) and time.monotonic() < deadline:
                listing = job_statuses(app)
                for job_id in ids:
                    status = listing.get(job_id, "missing")
                    last[job_id] = status
                    if status in {"succeeded", "failed", "cancelled"} and job_id not in finished:
                        finished[job_id] = time.monotonic() - started
                time.sleep(2)
            statuses: dict[str, int] = {}
            for status in last.values():
                statuses[status] = statuses.get(status, 0) + 1
            result.update(
                final_statuses=statuses, all_ran_s=round(max(finished.values()), 1) if len(finished) == len(ids) else None,
                first_finished_s=round(min(finished.values()), 1) if finished else None,
                lost=sum(1 for j in ids if last.get(j) in {"queued", "retrying", "missing"}),
                stuck=sum(1 for j in ids if last.get(j) == "running"),
                failed=sum(1 for j in ids if last.get(j) == "failed"),
                states=app.status(), web_ok=app.ping() == 200)
        result["leftovers"] = app.leftovers
    result["met"] = result["lost"] == 0 and result["stuck"] == 0 and result["failed"] == 0 and not result["leftovers"]
    log(f"redis-restart: {json.dumps(result)}")
    return result


def job_statuses(app: Layercake) -> dict[str, str]:
    """Every job's status from the API's job list (a JSON array, `?limit=` up to 1000)."""
    return {item["id"]: item["status"] for item in app.api("GET", "/api/v1/jobs/?limit=1000")}


# ----------------------------------------------------------------------------------------------------- report
def table(results: dict[str, Any]) -> str:
    lines = ["| scenario | figure | target | met |", "|---|---|---|---|"]
    if "kill-worker" in results:
        r = results["kill-worker"]
        for run in r["runs"]:
            lines.append(
                f"| kill-worker #{run['run']} | killed at step {run.get('step_at_kill')}/{run.get('total_steps')}, "
                f"newest checkpoint step {run.get('checkpoint_step')} ({run.get('checkpoint_age_s')} s old); worker back in "
                f"{run.get('worker_restarted_s')} s, job running again {run.get('kill_to_running_s')} s after the kill; "
                f"resumed from step {run.get('resumed_from_step')}; {run.get('status')} (attempt {run.get('attempt')}) "
                f"| succeeds, checkpoint ≤ 60 s old | {'yes' if run.get('status') == 'succeeded' and run.get('resumed_from_newest_checkpoint') and (run.get('checkpoint_age_s') or 999) <= 60 else 'NO'} |")
        w = r["web_during_kills"]
        lines.append(f"| kill-worker: web polled meanwhile | {w['requests']} requests, {w['non_200']} non-200, "
                     f"{w['connection_errors']} connection errors, slowest {w['slowest_ms']} ms | 0 errors | "
                     f"{'yes' if w['non_200'] + w['connection_errors'] == 0 else 'NO'} |")
    if "web-under-kills" in results:
        r = results["web-under-kills"]
        w = r["web"]
        backs = [k["back_in_s"] for k in r["kills"] if k["back_in_s"] is not None]
        lines.append(f"| web-under-kills | {len(r['kills'])} SIGKILLs (worker, checks, inference, beat), each back in "
                     f"{min(backs, default=0)}–{max(backs, default=0)} s; {w['requests']} polls: {w['non_200']} non-200, "
                     f"{w['connection_errors']} connection errors, slowest {w['slowest_ms']} ms; beats at end: {r['beats_at_end']} "
                     f"| 0 errors | {'yes' if r['met'] else 'NO'} |")
    if "load" in results:
        for name, r in results["load"].items():
            if not isinstance(r, dict):
                continue
            if "skipped" in r:
                lines.append(f"| load ({name}) | skipped: {r['skipped']} | | |")
                continue
            lines.append(f"| load ({name}) | {r['clients']} clients × {r['seconds']} s: {r['requests']} requests, "
                         f"{r['errors']} errors, p50 {r['p50_ms']} ms, p95 {r['p95_ms']} ms, p99 {r['p99_ms']} ms, "
                         f"{r['requests_per_s']} req/s | 0 errors | {'yes' if r['errors'] == 0 else 'NO'} |")
    if "redis-restart" in results:
        r = results["redis-restart"]
        if "skipped" in r:
            lines.append(f"| redis-restart | skipped: {r['skipped']} | | |")
        else:
            lines.append(f"| redis-restart | {r['jobs']} jobs queued ({r['messages_in_redis_before_restart']} messages in Redis, "
                         f"{r['messages_in_redis_after_restart']} after the restart); lost {r['lost']}, stuck {r['stuck']}, "
                         f"failed {r['failed']}; all ran {r['all_ran_s']} s after the worker started (first {r['first_finished_s']} s) "
                         f"| 0 lost, 0 stuck | {'yes' if r['met'] else 'NO'} |")
    leftovers = {name: r.get("leftovers") for name, r in results.items() if isinstance(r, dict) and r.get("leftovers")}
    lines.append(f"| teardown | processes left behind: {leftovers or 'none'} | none | {'yes' if not leftovers else 'NO'} |")
    return "\n".join(lines)


SCENARIOS = {"kill-worker": kill_worker, "web-under-kills": web_under_kills, "load": load, "redis-restart": redis_restart}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenarios", nargs="*", default=["all"], choices=["all", *SCENARIOS])
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--kill-rows", type=int, default=400, help="dataset rows of the killed jobs (epochs are capped at 100)")
    parser.add_argument("--kill-steps", type=int, default=8000, help="max_steps: ~110 s of training on the tiny model here (about 75 steps/s)")
    parser.add_argument("--kill-delay-min", type=float, default=2.0, help="s after the first checkpoint")
    parser.add_argument("--kill-delay-max", type=float, default=20.0)
    parser.add_argument("--web-rounds", type=int, default=3)
    parser.add_argument("--load-clients", type=int, default=50)
    parser.add_argument("--load-seconds", type=float, default=60)
    parser.add_argument("--redis-jobs", type=int, default=100)
    parser.add_argument("--redis-deadline", type=float, default=600)
    parser.add_argument("--resend-after", type=int, default=15)
    parser.add_argument("--seed", type=int, default=10)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "reliability.json")
    args = parser.parse_args()
    chosen = list(SCENARIOS) if "all" in args.scenarios else args.scenarios
    results: dict[str, Any] = {"command": " ".join([".venv/bin/python", "bench/bench_reliability.py", *sys.argv[1:]]),
                               "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                               "machine": {"cpus": os.cpu_count(), "load_average_at_start": os.getloadavg()}}
    began = time.monotonic()
    try:
        for name in chosen:
            log(f"scenario {name}")
            t0 = time.monotonic()
            try:
                results[name] = SCENARIOS[name](args)
            except Exception as error:  # one broken scenario must not hide the others' figures
                results[name] = {"error": f"{type(error).__name__}: {error}", "met": False}
                log(f"{name} FAILED: {error}")
            results[name]["wall_s"] = round(time.monotonic() - t0)
    finally:
        tiny = Path(tempfile.gettempdir()) / f"layercake-rel-tiny-{os.getpid()}"
        shutil.rmtree(tiny, ignore_errors=True)
    results["wall_s"] = round(time.monotonic() - began)
    results["load_average_at_end"] = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, default=str))
    printable = {k: v for k, v in results.items() if not (isinstance(v, dict) and "error" in v)}
    print(table(printable))
    for name, value in results.items():
        if isinstance(value, dict) and "error" in value:
            print(f"{name}: ERROR {value['error']}")
    print(f"JSON: {args.out}")
    return 0 if all(r.get("met") for n, r in results.items() if n in SCENARIOS and not r.get("skipped")) else 1


if __name__ == "__main__":
    sys.exit(main())
