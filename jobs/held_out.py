"""The held-out rows a run was evaluated on, as prompts to try in the playground (base and tuned side by side)."""

from __future__ import annotations

from typing import Any

from jobs.models import Job, Kind, Status
from jobs.training.spec import Hyperparameters, SpecError
from webapp.catalog.models import CatalogModel

PROMPTS_SHOWN = 5


def _prompt_of(row: dict[str, Any]) -> str:
    """The input a row gives the model: the last user turn of a conversation, else its text or source."""
    conversation = row.get("prompt") or row.get("messages")
    if conversation:
        users = [turn["content"] for turn in conversation if turn.get("role") == "user" and turn.get("content")]
        return users[-1] if users else ""
    if row.get("instruction"):
        return "\n\n".join(part for part in (row["instruction"], row.get("input") or "") if part)
    if row.get("tokens"):
        return " ".join(row["tokens"])
    return str(row.get("text") or row.get("source") or "")


def held_out_prompts(model: CatalogModel, limit: int = PROMPTS_SHOWN) -> list[str]:
    """Prompts from the rows the model's own training job held out and evaluated on (never trained on): the same
    split and sample as the engine's (`load_splits`, `evaluation_sample`, same seed). Empty for bases and imports."""
    # Imported here: the datasets and TRL libraries the engine's data module needs cost a web process seconds.
    from jobs.runner import dataset_files
    from jobs.training import data as data_module

    job = Job.objects.filter(result_model=model, status=Status.SUCCEEDED).order_by("-finished_at").first()
    if job is None or job.kind != Kind.TRAIN:
        return []
    hp = Hyperparameters(**job.hyperparameters)
    try:
        splits = data_module.load_splits(job.task, dataset_files(job.datasets.order_by("created_at")), hp.eval_fraction, hp.seed)
    except (SpecError, OSError, ValueError):  # a dataset deleted or emptied since: nothing to offer
        return []
    prompts: list[str] = []
    for split in splits:
        for row in data_module.evaluation_sample(split.validation, hp.eval_max_rows, hp.seed):
            prompt = _prompt_of(row).strip()
            if prompt and prompt not in prompts:
                prompts.append(prompt[:2000])
            if len(prompts) >= limit:
                return prompts
    return prompts
