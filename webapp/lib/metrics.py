"""What the engine's metric keys mean to people, and the before/after rows the job and model pages show (one place:
the catalog and the jobs pages read the same names)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from jobs.training import tasks

# One mapping from the engine's and Trainer's keys to the names people read, used by the log, the metric
# tables and the charts alike. Trainer prefixes evaluation logs with `eval_<set>_`, where the set is d0, d1,
# ... (one per dataset, in order) or `all` (every validation split together).
METRIC_NAMES = {
    "loss": "Validation loss",
    "runtime": "Evaluation time (s)",
    "samples_per_second": "Evaluation samples/s",
    "steps_per_second": "Evaluation steps/s",
    "model_preparation_time": "Model preparation time (s)",
    # Each task's own metrics, from its hooks (jobs.training.tasks).
    **tasks.metric_names(),
}
EVAL_KEY = re.compile(r"^eval_(?:(d\d+|all)_)?(.+)$")


def metric_label(key: str, dataset_names: Sequence[str] = ()) -> str:
    """`eval_d0_loss` -> "Validation loss"; with several datasets, "Validation loss (name)"."""
    match = EVAL_KEY.match(key)
    name = match.group(2) if match else key
    label = METRIC_NAMES.get(name, name.replace("_", " ").capitalize())
    which = match.group(1) if match else None
    if which and len(dataset_names) > 1:
        if which == "all":
            return f"{label} (all datasets)"
        index = int(which[1:])
        return f"{label} ({dataset_names[index] if index < len(dataset_names) else which})"
    return label


def metric_rows(metrics: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Rows of (dataset, metric, label, before, after) from {"base": {...}, "tuned": {...}}, nested by dataset
    (a training job's) or flat (an imported model's)."""
    metrics = metrics or {}
    base, tuned = metrics.get("base") or {}, metrics.get("tuned") or {}
    rows = []
    for dataset in sorted(set(base) | set(tuned), key=lambda key: (not isinstance(tuned.get(key, base.get(key)), dict), key)):
        before, after = base.get(dataset), tuned.get(dataset)
        if isinstance(before, dict) or isinstance(after, dict):
            before, after = before if isinstance(before, dict) else {}, after if isinstance(after, dict) else {}
            for name in sorted(set(before) | set(after)):
                rows.append(
                    {"dataset": dataset, "metric": name, "label": metric_label(name), "before": before.get(name),
                     "after": after.get(name)}
                )
        else:
            rows.append({"dataset": "", "metric": dataset, "label": metric_label(dataset), "before": before, "after": after})
    return rows
