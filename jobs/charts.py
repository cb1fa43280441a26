"""Figures for the job page, computed server-side: the loss chart as SVG points, metrics before vs after."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from jobs.models import Job, JobEvent, Status

MAX_POINTS = 400
WIDTH, HEIGHT, PAD = 600, 200, 30


@dataclass
class Chart:
    train_points: str
    eval_points: str
    y_max: float
    y_min: float
    last_step: int
    width: int = WIDTH
    height: int = HEIGHT
    pad: int = PAD

    @property
    def empty(self) -> bool:
        return not self.train_points and not self.eval_points


def eval_loss(event: JobEvent) -> float | None:
    for key, value in (event.metrics or {}).items():
        if key.endswith("loss") and isinstance(value, int | float):
            return float(value)
    return None


def loss_chart(events: list[JobEvent]) -> Chart:
    """Training loss and validation loss against the step, scaled into a fixed SVG box."""
    train = [(e.step, e.loss) for e in events if e.loss is not None]
    evals = [(e.step, loss) for e in events if (loss := eval_loss(e)) is not None]
    values = [v for _, v in train + evals]
    if not values:
        return Chart("", "", 0.0, 0.0, 0)
    total = max((e.total_steps for e in events), default=0) or max(step for step, _ in train + evals) or 1
    low, high = min(values), max(values)
    span = (high - low) or 1.0

    def scale(points: list[tuple[int, float]]) -> str:
        return " ".join(
            f"{PAD + (WIDTH - 2 * PAD) * step / total:.1f},{HEIGHT - PAD - (HEIGHT - 2 * PAD) * (value - low) / span:.1f}"
            for step, value in points
        )

    return Chart(scale(train), scale(evals), round(high, 4), round(low, 4), events[-1].step)


def metric_rows(metrics: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows of (dataset, metric, before, after) from {"base": {dataset: {...}}, "tuned": {...}}."""
    base, tuned = metrics.get("base") or {}, metrics.get("tuned") or {}
    rows = []
    for dataset in sorted(set(base) | set(tuned)):
        before: dict[str, Any] = base[dataset] if isinstance(base.get(dataset), dict) else {}
        after: dict[str, Any] = tuned[dataset] if isinstance(tuned.get(dataset), dict) else {}
        for name in sorted(set(before) | set(after)):
            rows.append({"dataset": dataset, "metric": name, "before": before.get(name), "after": after.get(name)})
    return rows


def percent_done(job: Job) -> int:
    if job.status == Status.SUCCEEDED:
        return 100
    progress = job.progress or {}
    total = progress.get("total_steps") or 0
    return int(100 * (progress.get("step") or 0) / total) if total else 0
