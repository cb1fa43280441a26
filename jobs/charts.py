"""Figures for the job pages, computed server-side: loss charts as SVG, readable metric names, metrics before vs after."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from django.utils import timezone

from jobs.models import Job, JobEvent, Status
from webapp.lib.metrics import METRIC_NAMES, metric_label, metric_rows  # noqa: F401 (metric_rows: the job page's)

MAX_POINTS = 400
WIDTH, HEIGHT = 600, 240
# Room for the tick labels and the axis titles around the plot.
LEFT, RIGHT, TOP, BOTTOM = 56, 16, 12, 40
# TensorBoard's default: each smoothed point keeps 60% of the previous one.
SMOOTHING = 0.6

# The metric a run is judged by, best first; `higher` says which way is better.
MAIN_METRICS = (
    ("macro_f1", True), ("f1", True), ("accuracy", True), ("reward_accuracy", True), ("rougeL", True), ("loss", False)
)
def validation_loss(metrics: dict[str, Any]) -> float | None:
    """The validation loss of one evaluation: over all datasets when there are several, else the only one."""
    for key in ("eval_all_loss", "eval_d0_loss", "eval_loss"):
        value = metrics.get(key)
        if isinstance(value, int | float) and math.isfinite(value):
            return float(value)
    return None


def eval_loss(event: JobEvent) -> float | None:
    return validation_loss(event.metrics or {})


# --- the loss chart --------------------------------------------------------------------------


@dataclass(frozen=True)
class Tick:
    position: float
    label: str


@dataclass(frozen=True)
class Marker:
    x: float
    y: float
    title: str


@dataclass
class Line:
    """One run's curves: the raw training loss (drawn faint), its moving average, and validation points."""

    name: str
    css_class: str
    raw: str = ""
    smoothed: str = ""
    validation: str = ""
    markers: list[Marker] = field(default_factory=list)


@dataclass
class Chart:
    lines: list[Line]
    x_ticks: list[Tick]
    y_ticks: list[Tick]
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT
    right: int = WIDTH - RIGHT
    top: int = TOP
    bottom: int = HEIGHT - BOTTOM
    x_label: str = "step"
    y_label: str = "loss"

    @property
    def empty(self) -> bool:
        return not any(line.raw or line.markers for line in self.lines)

    @property
    def x_label_x(self) -> float:
        return (self.left + self.right) / 2

    @property
    def y_label_y(self) -> float:
        return (self.top + self.bottom) / 2


def smooth(values: Sequence[float], weight: float = SMOOTHING) -> list[float]:
    """Exponential moving average, debiased so that the first points are not pulled towards zero."""
    smoothed, average = [], 0.0
    for count, value in enumerate(values, start=1):
        average = average * weight + (1 - weight) * value
        smoothed.append(average / (1 - weight**count))
    return smoothed


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """About `count` round values (1, 2 or 5 times a power of ten apart) covering [low, high]."""
    if high <= low:
        high = low + (abs(low) or 1.0)
    raw_step = (high - low) / max(count - 1, 1)
    power = 10 ** math.floor(math.log10(raw_step))
    span = high - low
    step = min((m * power for m in (0.5, 1, 2, 5, 10)), key=lambda candidate: abs(span / candidate - (count - 1)))
    start = math.floor(low / step) * step
    ticks = [round(start, 10)]
    while ticks[-1] < high - step * 1e-9:
        ticks.append(round(start + len(ticks) * step, 10))
    return ticks


def tick_label(value: float) -> str:
    if value == int(value) and abs(value) >= 1:
        return str(int(value))
    return f"{value:.3g}"


@dataclass
class Run:
    """The events of one job, as the chart needs them."""

    name: str
    events: list[JobEvent]

    @property
    def train(self) -> list[tuple[int, float]]:
        return [(e.step, e.loss) for e in self.events if e.loss is not None and math.isfinite(e.loss)]

    @property
    def validation(self) -> list[tuple[int, float]]:
        return [(e.step, loss) for e in self.events if (loss := eval_loss(e)) is not None]


def loss_chart(events: list[JobEvent]) -> Chart:
    """Training loss (raw, faint, and smoothed) and validation loss against the step."""
    return runs_chart([Run("this run", events)])


def runs_chart(runs: list[Run]) -> Chart:
    """Several runs on shared axes: x is the step (0 to the longest run), y the loss."""
    values = [v for run in runs for _, v in run.train + run.validation]
    if not values:
        return Chart([Line(run.name, f"run-{i}") for i, run in enumerate(runs)], [], [])
    last_step = max(
        [max((e.total_steps for e in run.events), default=0) for run in runs]
        + [step for run in runs for step, _ in run.train + run.validation]
    ) or 1
    x_values = nice_ticks(0, last_step)
    x_values = [value for value in x_values if value <= last_step] or [0]
    y_values = nice_ticks(min(values), max(values))
    x_max, y_low, y_high = last_step, y_values[0], y_values[-1]
    chart = Chart([], [], [])

    def x_of(step: float) -> float:
        return chart.left + (chart.right - chart.left) * step / x_max

    def y_of(value: float) -> float:
        return chart.bottom - (chart.bottom - chart.top) * (value - y_low) / ((y_high - y_low) or 1.0)

    def points(pairs: Sequence[tuple[float, float]]) -> str:
        return " ".join(f"{x_of(step):.1f},{y_of(value):.1f}" for step, value in pairs)

    chart.x_ticks = [Tick(round(x_of(value), 1), tick_label(value)) for value in x_values]
    chart.y_ticks = [Tick(round(y_of(value), 1), tick_label(value)) for value in y_values]
    for index, run in enumerate(runs):
        train, validation = run.train, run.validation
        steps = [step for step, _ in train]
        chart.lines.append(
            Line(
                name=run.name,
                css_class=f"run-{index}",
                raw=points(train),
                smoothed=points(list(zip(steps, smooth([v for _, v in train]), strict=True))),
                validation=points(validation) if len(validation) > 1 else "",
                markers=[
                    Marker(round(x_of(step), 1), round(y_of(value), 1), f"step {step}: validation loss {value:.4f}")
                    for step, value in validation
                ],
            )
        )
    return chart


# --- tables and figures ----------------------------------------------------------------------


def log_line(event: JobEvent, dataset_names: Sequence[str] = ()) -> str:
    """One event as a log line, with readable metric names."""
    parts = [f"step {event.step}/{event.total_steps}"]
    if event.loss is not None:
        parts.append(f"loss {event.loss:.4f}")
    if event.learning_rate:
        parts.append(f"lr {event.learning_rate:.2e}")
    for key, value in (event.metrics or {}).items():
        if isinstance(value, int | float):
            parts.append(f"{metric_label(key, dataset_names)} {value:.4f}")
    if event.message:
        parts.append(event.message)
    return " · ".join(parts)


@dataclass(frozen=True)
class MainMetric:
    name: str
    label: str
    value: float
    before: float | None
    higher_is_better: bool

    @property
    def improved(self) -> bool | None:
        if self.before is None:
            return None
        return self.value > self.before if self.higher_is_better else self.value < self.before


def main_metric(metrics: dict[str, Any]) -> MainMetric | None:
    """The figure a run is judged by (F1 or accuracy for classifiers, validation loss for language models),
    averaged over its datasets when it has several."""
    tuned, base = metrics.get("tuned") or {}, metrics.get("base") or {}
    tuned_sets = [values for values in tuned.values() if isinstance(values, dict)]
    for name, higher in MAIN_METRICS:
        after = [float(values[name]) for values in tuned_sets if isinstance(values.get(name), int | float)]
        if not after:
            continue
        before = [float(values[name]) for values in base.values() if isinstance(values, dict) and isinstance(values.get(name), int | float)]
        return MainMetric(
            name, METRIC_NAMES.get(name, name), sum(after) / len(after), sum(before) / len(before) if before else None, higher
        )
    return None


def percent_done(job: Job) -> int:
    """How far the whole run is: by steps while it trains, by time (spent against left) in the other phases.

    Steps alone read 100% through the final evaluation and the saving; a running job never shows 100%.
    """
    if job.status == Status.SUCCEEDED:
        return 100
    progress = job.progress or {}
    total = progress.get("total_steps") or 0
    by_steps = int(100 * (progress.get("step") or 0) / total) if total else 0
    if job.status != Status.RUNNING:
        return by_steps
    eta = progress.get("eta_seconds")
    outside_training = progress.get("phase") not in (None, "training")
    if outside_training and eta is not None and job.started_at is not None:
        # Loading and evaluating have no steps: time spent against time left.
        elapsed = max((timezone.now() - job.started_at).total_seconds(), 0.0)
        return min(99, int(100 * elapsed / max(elapsed + eta, 1.0)))
    return min(99, by_steps)


def describe_duration(seconds: float | None) -> str:
    """"1 h 02 min", "3 min 05 s", "42 s"; "–" when it never ran."""
    if seconds is None:
        return "–"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    if minutes:
        return f"{minutes} min {secs:02d} s"
    return f"{secs} s"


def compare_runs(jobs: Sequence[Job]) -> dict[str, Any]:
    """Two (or more) runs side by side: their loss curves on shared axes and one table of their metrics."""
    runs = [Run(f"{job.method} · {str(job.pk)[:8]}", list(job.events.order_by("-id")[:MAX_POINTS])[::-1]) for job in jobs]
    flattened = [flat_metrics(job.metrics) for job in jobs]
    # Per dataset and metric, the tuned figure first, then the base model's for reference.
    names = sorted({name for values in flattened for name in values}, key=lambda key: (*key.split("/", 2)[1:], key[0] != "t"))
    rows = [{"name": name, "label": _flat_label(name), "values": [values.get(name) for values in flattened]} for name in names]
    return {
        "chart": runs_chart(runs),
        "metric_table": rows,
        "main_metrics": [main_metric(job.metrics or {}) for job in jobs],
        "durations": [describe_duration(job.duration.total_seconds() if job.duration else None) for job in jobs],
        "hyperparameter_rows": [
            {"name": name, "values": values, "differs": len({repr(value) for value in values}) > 1}
            for name in sorted({name for job in jobs for name in (job.hyperparameters or {})})
            if (values := [(job.hyperparameters or {}).get(name) for job in jobs]) is not None
        ],
    }


def flat_metrics(metrics: dict[str, Any] | None) -> dict[str, float]:
    """{"tuned/<dataset>/<metric>": value, "base/...": value}: one row per figure, across datasets."""
    flat: dict[str, float] = {}
    for stage in ("base", "tuned"):
        for dataset, values in ((metrics or {}).get(stage) or {}).items():
            if isinstance(values, dict):
                for name, value in values.items():
                    if isinstance(value, int | float):
                        flat[f"{stage}/{dataset}/{name}"] = float(value)
    return flat


def _flat_label(key: str) -> str:
    stage, dataset, name = key.split("/", 2)
    return f"{metric_label(name)} ({'tuned' if stage == 'tuned' else 'base'}, {dataset})"
