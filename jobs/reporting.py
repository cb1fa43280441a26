"""The worker's Reporter: records progress on the job row and as throttled events, answers "should I stop?"."""

from __future__ import annotations

import logging
import math
import threading
import time
from typing import Any

from django.db import close_old_connections, connection

from jobs.models import Job, JobEvent, Status

logger = logging.getLogger(__name__)


class JobReporter:
    """Implements jobs.training.Reporter for one job.

    Writes are throttled: the job row at most every `row_interval` seconds, an event at most every
    `event_interval` seconds (plus every evaluation and the last step), so a long job does not
    write a row per step. The cancel flag is read at most once a second.
    """

    def __init__(self, job: Job, row_interval: float = 1.0, event_interval: float = 5.0) -> None:
        self.job_id = job.pk
        self.row_interval = row_interval
        self.event_interval = event_interval
        self.started = time.monotonic()
        self.first_step: tuple[int, float] | None = None
        self.last_row_write = 0.0
        self.last_event_write = 0.0
        self.last_stop_check = 0.0
        self.stop_requested = False

    def eta_seconds(self, step: int, total_steps: int) -> float | None:
        now = time.monotonic()
        if self.first_step is None:
            self.first_step = (step, now)
            return None
        done = step - self.first_step[0]
        if done <= 0 or total_steps <= 0:
            return None
        rate = (now - self.first_step[1]) / done
        return max(total_steps - step, 0) * rate

    def progress(
        self,
        step: int,
        total_steps: int,
        epoch: float,
        loss: float | None,
        learning_rate: float | None,
        metrics: dict[str, float],
    ) -> None:
        now = time.monotonic()
        eta = self.eta_seconds(step, total_steps)
        clean_loss = loss if loss is not None and math.isfinite(loss) else None
        last = total_steps > 0 and step >= total_steps
        if metrics or last or now - self.last_row_write >= self.row_interval:
            payload = {
                "step": step,
                "total_steps": total_steps,
                "epoch": round(epoch, 4) if epoch is not None else None,
                "loss": clean_loss,
                "learning_rate": learning_rate,
                "eta_seconds": round(eta) if eta is not None else None,
            }
            Job.objects.filter(pk=self.job_id, status=Status.RUNNING).update(progress=payload)
            self.last_row_write = now
        if metrics or last or now - self.last_event_write >= self.event_interval:
            JobEvent.objects.create(
                job_id=self.job_id,
                step=step,
                total_steps=total_steps,
                epoch=epoch,
                loss=clean_loss,
                learning_rate=learning_rate,
                metrics={k: v for k, v in metrics.items() if isinstance(v, int | float) and math.isfinite(v)},
            )
            self.last_event_write = now

    def should_stop(self) -> bool:
        now = time.monotonic()
        if not self.stop_requested and now - self.last_stop_check >= 1.0:
            self.stop_requested = Job.objects.filter(pk=self.job_id, cancel_requested=True).exists()
            self.last_stop_check = now
        return self.stop_requested


class Heartbeat:
    """Beats for a running job from a side thread, also while the model loads or evaluates."""

    def __init__(self, job: Job, interval: float) -> None:
        self.job_id = job.pk
        self.interval = interval
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self.run, name=f"heartbeat-{job.pk}", daemon=True)

    def run(self) -> None:
        try:
            job = Job.objects.get(pk=self.job_id)
            while not self.stopped.wait(self.interval):
                close_old_connections()
                job.heartbeat()
        except Exception:  # a heartbeat must never take the training down; staleness will show
            logger.exception("job %s: heartbeat failed", self.job_id)
        finally:
            connection.close()

    def __enter__(self) -> Heartbeat:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stopped.set()
        self.thread.join(timeout=self.interval + 5)
