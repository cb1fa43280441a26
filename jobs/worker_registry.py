"""Workers describe themselves (host, devices, queues) when they start and heartbeat while they live."""

from __future__ import annotations

import logging
import os
import platform
import threading
from typing import Any

from celery.signals import worker_ready, worker_shutdown
from django.conf import settings
from django.db import close_old_connections, connection
from django.utils import timezone

from jobs.models import Job, Worker

logger = logging.getLogger(__name__)
_stop = threading.Event()


def detect_devices() -> list[dict[str, Any]]:
    """CUDA devices with their memory, or the CPU with the machine's memory."""
    devices: list[dict[str, Any]] = []
    try:
        import torch

        from jobs.training.execution import local_capabilities

        for index in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(index)
            devices.append(
                {
                    "kind": "cuda",
                    "name": props.name,
                    "memory_bytes": int(props.total_memory),
                    # What the planner needs to predict this worker's runs: bf16, flash-attn, Liger, bitsandbytes.
                    "capabilities": local_capabilities().to_dict(),
                }
            )
    except Exception:  # no torch CUDA runtime: a CPU worker
        logger.debug("no CUDA devices", exc_info=True)
    if not devices:
        import psutil

        name = platform.processor() or platform.machine()
        devices.append(
            {"kind": "cpu", "name": f"{name} ({os.cpu_count()} cores)", "memory_bytes": int(psutil.virtual_memory().total)}
        )
    return devices


def register(hostname: str, queues: list[str]) -> Worker:
    worker, _ = Worker.objects.update_or_create(
        hostname=hostname,
        defaults={
            "queues": queues,
            "devices": detect_devices(),
            "started_at": timezone.now(),
            "last_heartbeat": timezone.now(),
            "stopped_at": None,
            "current_job": None,
        },
    )
    return worker


def set_current_job(hostname: str, job: Job | None) -> None:
    Worker.objects.filter(hostname=hostname).update(current_job=job, last_heartbeat=timezone.now())


def beat_forever(hostname: str) -> None:
    while not _stop.wait(settings.LAYERCAKE_HEARTBEAT_SECONDS):
        try:
            close_old_connections()
            Worker.objects.filter(hostname=hostname).update(last_heartbeat=timezone.now(), stopped_at=None)
        except Exception:
            logger.exception("worker heartbeat failed")
    connection.close()


@worker_ready.connect
def on_worker_ready(sender: Any = None, **_: Any) -> None:
    hostname = sender.hostname
    queues = sorted(queue.name for queue in sender.app.amqp.queues.consume_from.values())
    register(hostname, queues)
    try:
        from jobs.services import recover_jobs_of_restarted_worker

        recover_jobs_of_restarted_worker(hostname)
    except Exception:  # recovery must never keep a worker from starting; the stale check still runs
        logger.exception("worker %s: could not recover its previous jobs", hostname)
    # The main process forks pool children: give them no open connection to share.
    connection.close()
    threading.Thread(target=beat_forever, args=(hostname,), name="worker-heartbeat", daemon=True).start()
    logger.info("worker %s registered (queues %s)", hostname, ", ".join(queues))


@worker_shutdown.connect
def on_worker_shutdown(sender: Any = None, **_: Any) -> None:
    _stop.set()
    try:
        Worker.objects.filter(hostname=sender.hostname).update(stopped_at=timezone.now(), current_job=None)
    except Exception:
        logger.exception("could not record the worker's shutdown")
