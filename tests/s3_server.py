"""A real S3-compatible server for tests and benchmarks: moto's standalone server in its own process.

`moto_server()` starts it on a free port; `S3Server.bucket()` creates a fresh bucket and gives the environment
variables that point Layercake's settings at it (S3_BUCKET, S3_ENDPOINT_URL, ...), and `storages_setting` the
STORAGES that webapp/settings.py builds from them, for `override_settings` in the test process.
"""

from __future__ import annotations

import os
import runpy
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

ROOT = Path(__file__).resolve().parent.parent
REGION = "us-east-1"
CREDENTIALS = {"S3_ACCESS_KEY_ID": "layercake-tests", "S3_SECRET_ACCESS_KEY": "layercake-tests"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class S3Server:
    endpoint: str
    process: subprocess.Popen

    def client(self) -> Any:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id=CREDENTIALS["S3_ACCESS_KEY_ID"],
            aws_secret_access_key=CREDENTIALS["S3_SECRET_ACCESS_KEY"],
        )

    def bucket(self, prefix: str = "") -> dict[str, str]:
        """A new empty bucket; the environment variables that make Layercake store its files there."""
        name = f"layercake-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return {"S3_BUCKET": name, "S3_ENDPOINT_URL": self.endpoint, "S3_REGION": REGION, "S3_PREFIX": prefix, **CREDENTIALS}


def storages_setting(environment: dict[str, str]) -> dict[str, Any]:
    """STORAGES exactly as webapp/settings.py builds it under these environment variables."""
    with mock.patch.dict(os.environ, environment):
        return dict(runpy.run_path(str(ROOT / "webapp" / "settings.py"))["STORAGES"])


@contextmanager
def moto_server(timeout: float = 30, nice: int = 0) -> Iterator[S3Server]:
    """moto's S3 server on a free port of 127.0.0.1, stopped on exit.

    `nice` lowers its CPU priority: a benchmark measuring this machine's training sets it, since a real bucket
    runs on other machines' CPUs.
    """
    port = free_port()
    process = subprocess.Popen(
        ["nice", "-n", str(nice), sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"moto's S3 server did not start on port {port}") from None
                time.sleep(0.05)
        yield S3Server(f"http://127.0.0.1:{port}", process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
