"""Benchmark: a large JSONL upload through a real web process, then its checks + profiling.

    .venv/bin/python bench/bench_upload.py            # 1 GB (1024 MB), the issue's figure
    .venv/bin/python bench/bench_upload.py --size-mb 100

Measures (1) the RSS growth of the gunicorn worker that receives the upload (the target: at most
64 MB for 1 GB), and (2) the throughput of `checking.check_file` on the same file, the whole
background check: read, detect, check rows, profile (with a tiny model's tokenizer for the token
lengths of a 1,000-row sample and the chat-template preview), split 5% off for validation, write
the normalized Parquet copy (the target: at least 50 MB/s). The file is generated into /tmp and deleted afterwards.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
WORDS = (
    "the of and to in is was for on that with as by at from this be are it an or have which not has "
    "model data train token layer learning rate batch epoch loss validation adapter dataset weights gradient "
    "attention encoder decoder sequence label text instruction output input answer question context"
).split()


def generate_jsonl(path: Path, size_bytes: int, seed: int = 7) -> int:
    """Instruction rows of varied length (about 1 kB on average) until the file reaches size_bytes."""
    rng = random.Random(seed)
    vocabulary = [" ".join(rng.choice(WORDS) for _ in range(n)) for n in range(5, 150, 5)]
    rows = 0
    written = 0
    with path.open("w", encoding="utf-8") as handle:
        while written < size_bytes:
            lines = []
            for _ in range(1000):
                row = {
                    "instruction": f"{rng.choice(vocabulary)} #{rows}",
                    "input": rng.choice(("", rng.choice(vocabulary))),
                    "output": f"{rng.choice(vocabulary)} {rng.choice(vocabulary)}",
                }
                lines.append(json.dumps(row))
                rows += 1
            block = "\n".join(lines) + "\n"
            handle.write(block)
            written += len(block.encode())
    return rows


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def multipart_stream(path: Path, boundary: str) -> tuple[int, Iterator[bytes]]:
    head = (
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"bench.jsonl\"\r\n"
        "Content-Type: application/jsonl\r\n\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    size = len(head) + path.stat().st_size + len(tail)

    def body() -> Iterator[bytes]:
        yield head
        with path.open("rb") as handle:
            while chunk := handle.read(1024 * 1024):
                yield chunk
        yield tail

    return size, body()


class PeakRss:
    """Samples the RSS of a process every 50 ms in a thread and keeps the highest value."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.peak = self.process.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, self.process.memory_info().rss)
            except psutil.Error:
                return
            time.sleep(0.05)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def bench_upload(path: Path, home: Path) -> dict[str, float]:
    env = {
        **os.environ,
        "LAYERCAKE_HOME": str(home),
        "SECRET_KEY": "bench-only-secret-key-0123456789-0123456789-0123456789",
        "DJANGO_SETTINGS_MODULE": "webapp.settings",
        "LAYERCAKE_MAX_UPLOAD_MB": "2048",
    }
    manage = [sys.executable, "manage.py"]
    subprocess.run([*manage, "migrate", "--noinput", "-v0"], cwd=ROOT, env=env, check=True)
    # A worker creates the filesystem broker's folders when it starts; there is no worker here.
    make_folders = "import django; django.setup(); from webapp.celery import make_broker_folders; make_broker_folders()"
    subprocess.run([sys.executable, "-c", make_folders], cwd=ROOT, env=env, check=True)
    token_output = subprocess.run([*manage, "api_token", "bench"], cwd=ROOT, env=env, check=True, capture_output=True, text=True)
    token = token_output.stdout.strip().splitlines()[-1].strip()
    port = free_port()
    log = (home / "gunicorn.log").open("w")
    gunicorn = Path(sys.executable).parent / "gunicorn"
    server = subprocess.Popen(
        [str(gunicorn), "webapp.wsgi", "--bind", f"127.0.0.1:{port}", "--workers", "1", "--timeout", "600"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=log, start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                connection.request("GET", "/api/v1/datasets/", headers={"Authorization": f"Token {token}"})
                connection.getresponse().read()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)
        worker = psutil.Process(server.pid).children()[0]
        before = worker.memory_info().rss
        boundary = "benchboundary7c1f"
        size, body = multipart_stream(path, boundary)
        started = time.monotonic()
        with PeakRss(worker.pid) as peak:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
            connection.putrequest("POST", "/api/v1/datasets/")
            connection.putheader("Authorization", f"Token {token}")
            connection.putheader("Content-Type", f"multipart/form-data; boundary={boundary}")
            connection.putheader("Content-Length", str(size))
            connection.endheaders()
            for chunk in body:
                connection.send(chunk)
            response = connection.getresponse()
            answer = response.read()
        elapsed = time.monotonic() - started
        if response.status != 201:
            log.flush()
            server_log = (home / "gunicorn.log").read_text()[-3000:]
            raise SystemExit(f"upload failed: {response.status} {answer[:500]!r}\n{server_log}")
        return {
            "upload_seconds": round(elapsed, 1),
            "upload_mb_per_s": round(size / 1e6 / elapsed, 1),
            "rss_before_mb": round(before / 2**20, 1),
            "rss_peak_mb": round(peak.peak / 2**20, 1),
            "rss_growth_mb": round((peak.peak - before) / 2**20, 1),
        }
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=30)


def bench_check(path: Path, workdir: Path) -> dict[str, float]:
    from transformers import AutoTokenizer

    from jobs.training.tiny import build_tiny_causal_lm
    from webapp.datasets.checking import CheckOptions, check_file

    # The token-length profile and chat-template previews run too, with a tiny model's tokenizer.
    tokenizer = AutoTokenizer.from_pretrained(str(build_tiny_causal_lm(workdir / "tiny-causal-lm")))
    options = CheckOptions(fmt="jsonl", validation_fraction=0.05, tokenizer=tokenizer, model_name="tiny", max_length=256)
    before = psutil.Process().memory_info().rss
    started, cpu_started = time.monotonic(), time.process_time()
    with PeakRss(os.getpid()) as peak:
        result = check_file(path, options, workdir)
    elapsed, cpu = time.monotonic() - started, time.process_time() - cpu_started
    if not result.ok:
        raise SystemExit(f"the generated file did not check as valid: {result.error}")
    return {
        "check_seconds": round(elapsed, 1),
        "check_mb_per_s": round(path.stat().st_size / 1e6 / elapsed, 1),
        # CPU seconds of all the process's threads: steadier than wall time on a shared machine.
        "check_cpu_seconds": round(cpu, 1),
        "check_mb_per_cpu_s": round(path.stat().st_size / 1e6 / cpu, 1),
        "rows": result.rows,
        "validation_rows": result.profile["splits"].get("validation", 0),
        "token_rows_sampled": result.profile["tokens"]["sampled_rows"],
        "check_rss_before_mb": round(before / 2**20, 1),
        "check_rss_peak_mb": round(peak.peak / 2**20, 1),
        "load_average_1min": round(os.getloadavg()[0], 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--skip-upload", action="store_true")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")
    scratch = Path(tempfile.mkdtemp(prefix="bench-datasets-", dir="/tmp"))
    try:
        path = scratch / "bench.jsonl"
        started = time.monotonic()
        rows = generate_jsonl(path, args.size_mb * 1024 * 1024)
        print(f"generated {path.stat().st_size / 1e6:.0f} MB, {rows} rows in {time.monotonic() - started:.0f}s", flush=True)
        figures: dict[str, object] = {"file_mb": round(path.stat().st_size / 1e6, 1), "file_rows": rows, "cpus": os.cpu_count()}
        if not args.skip_upload:
            figures.update(bench_upload(path, scratch / "home"))
            print(json.dumps(figures), flush=True)
        # The upload left gigabytes of dirty pages (temporary file, stored copy): drop the copy and
        # flush, so the check is not timed against the disk writing back the upload.
        shutil.rmtree(scratch / "home", ignore_errors=True)
        os.sync()
        workdir = scratch / "check"
        workdir.mkdir()
        figures.update(bench_check(path, workdir))
        print(json.dumps(figures, indent=2))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
