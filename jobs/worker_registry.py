"""Workers describe themselves (host, devices, queues) when they start and heartbeat while they live."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
from typing import Any

from celery.signals import celeryd_after_setup, worker_ready, worker_shutdown
from django.conf import settings
from django.db import close_old_connections, connection
from django.utils import timezone

from jobs.models import Job, Worker, gpu_queue
from jobs.training.execution import cpu_device

logger = logging.getLogger(__name__)
_stop = threading.Event()


def detect_devices() -> list[dict[str, Any]]:
    """CUDA devices with their memory, or the CPU with the machine's memory, read in a child process.

    Reading a device's properties initialises CUDA, and a prefork worker forks a new pool child after every job
    (--max-tasks-per-child 1): a child forked from a parent that initialised CUDA cannot use CUDA at all. So the
    Celery parent never touches CUDA itself.
    """
    command = [sys.executable, "-c", "import json; from jobs.training.execution import local_devices; print(json.dumps(local_devices()))"]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=True, cwd=settings.BASE_DIR)
        devices: list[dict[str, Any]] = json.loads(done.stdout.strip().splitlines()[-1])
        return devices
    except (OSError, ValueError, IndexError, subprocess.SubprocessError) as error:
        logger.warning("could not read this worker's devices in a child process (%s): registering its CPU", error)
        return [cpu_device()]


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


@celeryd_after_setup.connect
def consume_multi_gpu_queues(sender: Any = None, instance: Any = None, **_: Any) -> None:
    """A worker on the `gpu` queue also takes the jobs that need up to all of its GPUs (gpu-x2 ... gpu-xN).

    Before `worker_ready`, so the worker registers these queues with the others and the planner sees them.
    """
    queues = instance.app.amqp.queues
    if "gpu" not in queues.consume_from:
        return
    import torch

    # Counted through NVML, without initialising CUDA in this process: the pool's children are forked from it.
    for processes in range(2, torch.cuda.device_count() + 1):
        queues.select_add(gpu_queue(processes))


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
