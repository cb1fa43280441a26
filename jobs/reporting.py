"""The worker's Reporter: records progress on the job row and as throttled events, answers "should I stop?"."""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Any

from django.db import close_old_connections, connection

from jobs.models import Job, JobEvent, Status
from jobs.training.spec import PHASES, RunWork

logger = logging.getLogger(__name__)

# Saving the artifact and registering it (checksums, a copy into storage) are predicted from the time loading took:
# both move the model's files once.
SAVE_SHARE_OF_LOADING = 0.5
MIN_SAVE_SECONDS = 2.0
# What the live page and the log call each phase.
PHASE_LABELS = {
    "loading": "Loading the model and data",
    "evaluating_base": "Measuring the base model (before)",
    "training": "Training",
    "evaluating": "Final evaluation (after)",
    "saving": "Saving the model",
    "registering": "Registering the model in the catalog",
}


class PhaseClock:
    """The time left in a run, over every phase still to come: what is left of the current one, then the rest.

    Evaluation time is measured on the base evaluation (the final one reads the same sample, in as many batches),
    training time on the steps so far (before the first steps, predicted from the evaluation throughput), and
    saving from the loading time. `eta` is None while a phase it needs has not been measured yet, and never 0
    while work remains.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.started = clock()
        self.phase = "loading"
        self.phase_started = self.started
        self.work: RunWork | None = None
        self.loading_seconds: float | None = None
        self.eval_batch_seconds: float | None = None  # measured on the base evaluation, then the final one
        self.first_batch_done: float | None = None
        self.eval_done = 0
        self.eval_total = 0
        self.first_step: tuple[int, float] | None = None
        self.step_seconds: float | None = None
        self.step = 0
        self.total_steps = 0

    def enter(self, phase: str, done: int, total: int, work: RunWork | None) -> None:
        now = self.clock()
        if work is not None:
            self.work = work
        if phase != self.phase:
            if self.phase == "loading":
                self.loading_seconds = now - self.started
            self.phase, self.phase_started = phase, now
        if phase in ("evaluating_base", "evaluating"):
            self.eval_done, self.eval_total = done, total
            # The first batch also pages the weights in from disk (seconds to a minute on a busy CPU worker): the
            # rate is taken after it as soon as there is a second one.
            if done == 1:
                self.first_batch_done = now
                self.eval_batch_seconds = now - self.phase_started
            elif done > 1 and self.first_batch_done is not None:
                self.eval_batch_seconds = (now - self.first_batch_done) / (done - 1)

    def training_step(self, step: int, total_steps: int) -> None:
        now = self.clock()
        self.phase = "training" if self.phase in ("loading", "evaluating_base") else self.phase
        self.step, self.total_steps = step, total_steps
        if self.first_step is None:
            self.first_step = (step, now)
        elif step > self.first_step[0]:
            self.step_seconds = (now - self.first_step[1]) / (step - self.first_step[0])

    def _predicted_step_seconds(self) -> float | None:
        if self.step_seconds is not None:
            return self.step_seconds
        work = self.work
        if self.eval_batch_seconds is None or work is None or not work.eval_tokens or not work.eval_batches:
            return None
        seconds_per_token = self.eval_batch_seconds * work.eval_batches / work.eval_tokens
        # Until the first steps are timed, a step is predicted from the evaluation throughput (RunWork.train_cost).
        return seconds_per_token * work.tokens_per_step * work.train_cost

    def _save_seconds(self) -> float:
        return max(MIN_SAVE_SECONDS, SAVE_SHARE_OF_LOADING * (self.loading_seconds or 0.0))

    def eta(self) -> float | None:
        """Seconds left until the job is done, or None while it cannot be told yet (loading, first batches)."""
        work, now = self.work, self.clock()
        if self.phase not in PHASES or work is None:
            return None
        index = PHASES.index(self.phase)
        save = self._save_seconds()
        if self.phase in ("saving", "registering"):
            return max(save - (now - self.phase_started), 1.0)
        batch = self.eval_batch_seconds
        if batch is None:
            return None
        final_eval = work.eval_batches * batch
        if self.phase == "evaluating":
            return max((self.eval_total - self.eval_done) * batch, 0.0) + save
        step = self._predicted_step_seconds()
        if step is None:
            return None
        if index <= PHASES.index("evaluating_base"):
            base_left = max((self.eval_total or work.eval_batches) - self.eval_done, 0) * batch
            return base_left + work.train_steps * step + final_eval + save
        steps_left = max(self.total_steps - self.step, 0) if self.total_steps else work.train_steps
        return steps_left * step + final_eval + save


class JobReporter:
    """Implements jobs.training.PhaseReporter for one job.

    Writes are throttled: the job row at most every `row_interval` seconds (and on every change of phase), an
    event at most every `event_interval` seconds (plus every evaluation and the last step), so a long job does not
    write a row per step. The cancel flag is read at most once a second.
    """

    def __init__(self, job: Job, row_interval: float = 1.0, event_interval: float = 5.0) -> None:
        self.job_id = job.pk
        self.row_interval = row_interval
        self.event_interval = event_interval
        self.clock = PhaseClock()
        self.last_row_write = 0.0
        self.last_event_write = 0.0
        self.last_stop_check = 0.0
        self.stop_requested = False
        self.row: dict[str, Any] = {
            "step": 0, "total_steps": 0, "epoch": None, "loss": None, "learning_rate": None, "eta_seconds": None,
        }

    def _write_row(self, now: float, force: bool, **changes: Any) -> None:
        self.row.update(changes)
        eta = self.clock.eta()
        self.row.update(
            phase=self.clock.phase,
            phase_label=PHASE_LABELS.get(self.clock.phase, self.clock.phase),
            phase_done=self.clock.eval_done if self.clock.phase in ("evaluating_base", "evaluating") else None,
            phase_total=self.clock.eval_total if self.clock.phase in ("evaluating_base", "evaluating") else None,
            eta_seconds=round(eta) if eta is not None else None,
        )
        if force or now - self.last_row_write >= self.row_interval:
            Job.objects.filter(pk=self.job_id, status=Status.RUNNING).update(progress=dict(self.row))
            self.last_row_write = now

    def phase(self, name: str, done: int, total: int, work: RunWork | None) -> None:
        changed = name != self.clock.phase or not self.row.get("phase")
        self.clock.enter(name, done, total, work)
        self._write_row(time.monotonic(), force=changed or done == total)
        if changed:
            # A line in the job's log, so the time each phase took can be read afterwards.
            JobEvent.objects.create(
                job_id=self.job_id,
                step=self.row["step"],
                total_steps=self.row["total_steps"],
                epoch=self.row["epoch"] or 0.0,
                message=PHASE_LABELS.get(name, name),
            )

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
        clean_loss = loss if loss is not None and math.isfinite(loss) else None
        last = total_steps > 0 and step >= total_steps
        if loss is not None:
            self.clock.training_step(step, total_steps)
        changes: dict[str, Any] = {
            "step": step,
            "total_steps": total_steps,
            "epoch": round(epoch, 4) if epoch is not None else None,
            "learning_rate": learning_rate,
        }
        if loss is not None or not metrics:
            changes["loss"] = clean_loss  # an evaluation point keeps the last training loss on the row
        self._write_row(now, bool(metrics) or last, **changes)
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
