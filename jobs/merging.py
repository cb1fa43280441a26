"""The merge job's work on a worker: fold an adapter into its base, prove the result answers alike, register it."""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings

from webapp.catalog import merging
from webapp.catalog.models import CatalogModel, Kind
from webapp.catalog.registering import register_derived_model
from webapp.catalog.storing import local_dir
from webapp.lib.errors import LayercakeError, RowError

logger = logging.getLogger(__name__)


@dataclass
class ProofFailed(LayercakeError):
    """A result that does not answer like its source; `evidence` holds the per-prompt comparison."""

    evidence: dict[str, Any] = field(default_factory=dict)
    status: int = 422


class MergeDrift(ProofFailed):
    """The merged model does not answer like adapter-on-base."""


def merge_adapter(adapter: CatalogModel, owner: Any) -> CatalogModel:
    """Merge an adapter into its base (peft merge_and_unload), prove it, and register a `merged` full model.

    The proof: fixed prompts through adapter-on-base and through the merged model reloaded from its files;
    logits within tolerance and identical greedy generations (causal LMs) or predicted labels (classifiers).
    A drifting merge raises MergeDrift with the evidence and registers nothing.
    """
    if adapter.kind != Kind.ADAPTER or adapter.parent is None:
        raise LayercakeError(f"{adapter.name} is not an adapter: only adapters can be merged into their base.")
    base = adapter.parent
    scratch_root = settings.LAYERCAKE_CACHE if settings.LAYERCAKE_CACHE.exists() else None
    with tempfile.TemporaryDirectory(dir=scratch_root, prefix="merge-") as scratch:
        out_dir = Path(scratch) / "merged"
        try:
            evidence = merging.merge_and_prove(local_dir(adapter), local_dir(base), out_dir)
        except merging.PromptTuningNotMergeable:
            raise LayercakeError(
                f"{adapter.name} is a prompt-tuning adapter: a learned soft prompt is an input, not a weight, "
                "so it cannot be merged into the base. Run it as an adapter instead."
            ) from None
        if not evidence["passed"]:
            details = [
                RowError(None, "merge_proof", f"prompt {row['prompt']!r}: max logit difference "
                         f"{logit_difference(row['max_abs_logit_diff'])}, outputs match: {row['outputs_match']}")
                for row in evidence["prompts"] if not row["passed"]
            ]
            logger.warning("merge of %s refused: %s", adapter.id, evidence)
            raise MergeDrift(
                f"Merging {adapter.name} into {base.name} changed the model's answers; the merged model was not kept.",
                details,
                evidence=evidence,
            )
        write_merged_card(out_dir, adapter, base, evidence)
        metrics = {**(adapter.metrics or {}), "merge_proof": evidence}
        (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2, default=str))
        return register_derived_model(
            out_dir,
            name=f"{adapter.name} (merged)",
            kind=Kind.MERGED,
            parent=adapter,
            owner=owner,
            metrics=metrics,
            task=adapter.task,
            family=adapter.family,
        )


def logit_difference(value: float | None) -> str:
    return "non-finite" if value is None else f"{value:.1e}"


def write_merged_card(folder: Path, adapter: CatalogModel, base: CatalogModel, evidence: dict[str, Any]) -> None:
    rows = "\n".join(
        f"| {row['prompt']} | {logit_difference(row['max_abs_logit_diff'])} | {row['outputs_match']} |"
        for row in evidence["prompts"]
    )
    (folder / "README.md").write_text(
        f"---\nbase_model: {base.name}\nlibrary_name: transformers\ntags: [layercake, merged]\n---\n\n"
        f"# {adapter.name}, merged into {base.name}\n\n"
        f"A full model: the adapter's weights were folded into the base with peft `merge_and_unload`.\n\n"
        f"## Merge proof\n\nSame prompts through adapter-on-base and this model "
        f"(tolerance atol={evidence['tolerance']['atol']}, rtol={evidence['tolerance']['rtol']}; "
        f"{evidence['compared']} compared):\n\n| prompt | max logit difference | same output |\n|---|---|---|\n{rows}\n"
    )
