"""What the catalog's pages show: the model tree, before/after metrics, the card, adapter settings, origin,
the deployment table."""

from __future__ import annotations

import json
from typing import Any

from webapp.catalog import downloads
from webapp.catalog.models import CatalogModel, Kind


def model_tree(models: list[CatalogModel]) -> list[tuple[CatalogModel, int]]:
    """Depth-first rows: each base, then what was derived from it (adapters, their merges, full fine-tunes)."""
    children: dict[Any, list[CatalogModel]] = {}
    for model in models:
        children.setdefault(model.parent_id, []).append(model)
    visible = {model.id for model in models}
    rows: list[tuple[CatalogModel, int]] = []

    def walk(model: CatalogModel, depth: int) -> None:
        rows.append((model, depth))
        for child in children.get(model.id, []):
            walk(child, depth + 1)

    for model in models:
        if model.parent_id is None or model.parent_id not in visible:
            walk(model, 0)
    return rows


def model_card_text(model: CatalogModel, site: str = "", limit: int = 20_000) -> str:
    """The model card as the download carries it (with its "Use" section), without the YAML front matter."""
    text = downloads.rendered_card(model, site)[:limit]
    if text.startswith("---"):
        end = text.find("\n---", 3)
        if end != -1:
            text = text[end + 4:]
    return text.strip()


def adapter_summary(model: CatalogModel) -> dict[str, Any]:
    """An adapter's settings for its page, from its adapter_config.json; lists given once each.

    peft appends the classifier heads it saves on its own to `modules_to_save`, so a config can name a head twice.
    """
    if model.kind != Kind.ADAPTER:
        return {}
    text = downloads.stored_text(model, "adapter_config.json")
    if text is None:
        return {}
    config = json.loads(text)

    def once(value: Any) -> list[str]:
        items = [value] if isinstance(value, str) else list(value or [])
        return list(dict.fromkeys(str(item) for item in items))

    return {
        "peft_type": config.get("peft_type") or "",
        "task_type": config.get("task_type") or "",
        "r": config.get("r"),
        "lora_alpha": config.get("lora_alpha"),
        "num_virtual_tokens": config.get("num_virtual_tokens"),
        "target_modules": once(config.get("target_modules")),
        "modules_to_save": once(config.get("modules_to_save")),
    }


def producing_job_id(model: CatalogModel) -> str | None:
    """The job whose result is this model (jobs.Job.result_model), if the jobs app recorded one."""
    related = getattr(model, "produced_by_jobs", None)
    if related is None:
        return None
    job = related.order_by("created_at").first() if hasattr(related, "order_by") else None
    return str(job.pk) if job is not None else None


def origin_of(model: CatalogModel) -> dict[str, Any]:
    """The job that produced the model and the dataset(s) it was trained on."""
    job_id = producing_job_id(model)
    if job_id is None:
        return {}
    job = model.produced_by_jobs.get(pk=job_id)  # type: ignore[attr-defined]
    datasets = list(job.datasets.all()) if hasattr(job, "datasets") else []
    return {"job": job, "datasets": datasets}


def deployment_table(model: CatalogModel) -> dict[str, Any]:
    """What the page shows: the measured rows, or the state of the measurement."""
    if not model.is_derived:
        return {}
    exports = downloads.gguf_exports(model)
    # The GGUF rows (the fourth way) are the proven exports; refused ones show only in the export section.
    return {**(model.deployment or {"status": "not measured"}), "gguf": exports,
            "gguf_offered": any(export["offered"] for export in exports)}
