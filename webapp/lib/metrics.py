"""What the engine's metric keys mean to people, and the before/after rows the job and model pages show (one place:
the catalog and the jobs pages read the same names)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

# One mapping from the engine's and Trainer's keys to the names people read, used by the log, the metric
# tables and the charts alike. Trainer prefixes evaluation logs with `eval_<set>_`, where the set is d0, d1,
# ... (one per dataset, in order) or `all` (every validation split together).
METRIC_NAMES = {
    "loss": "Validation loss",
    "perplexity": "Perplexity",
    "accuracy": "Accuracy",
    "macro_f1": "Macro F1",
    "f1": "Entity F1",
    "tag_accuracy": "Tag accuracy",
    "majority_baseline_accuracy": "Majority-class accuracy",
    "mse": "Mean squared error",
    "mae": "Mean absolute error",
    "rmse": "Root mean squared error",
    "r2": "R² (1 is perfect, 0 no better than the mean)",
    "spearman": "Spearman rank correlation",
    "rouge1": "ROUGE-1",
    "rouge2": "ROUGE-2",
    "rougeL": "ROUGE-L",
    "reward_accuracy": "Pair accuracy (prefers chosen)",
    "reward_margin": "Mean log-prob margin, chosen − rejected",
    "desirable_log_prob": "Mean log-prob of desirable answers",
    "undesirable_log_prob": "Mean log-prob of undesirable answers",
    "pairs_scored": "Held-out pairs scored (an answer token within max_length)",
    "rows_scored": "Held-out rows scored (an answer token within max_length)",
    "runtime": "Evaluation time (s)",
    "samples_per_second": "Evaluation samples/s",
    "steps_per_second": "Evaluation steps/s",
    "model_preparation_time": "Model preparation time (s)",
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
