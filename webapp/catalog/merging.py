"""Merging an adapter into its base and proving the merge changed nothing (plain Python, no Django)."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

from jobs.training import registry, tasks
from webapp.catalog import loading

# Fixed probes: the same inputs go through adapter-on-base and the merged model.
PROBE_PROMPTS: dict[str, list[str]] = {
    "generative": [
        "What is the capital of France?",
        "Write one sentence about the sea.",
        "List three colors.",
    ],
    "classifier": [
        "This product is terrible, I want a refund!",
        "I really enjoyed this film, it was fantastic and fun.",
        "John lives in New York and works for Acme Corp.",
    ],
}
# float32 merges differ from the unmerged path by rounding only (~1e-6); drift is orders of magnitude larger.
LOGIT_ATOL = 1e-3
LOGIT_RTOL = 1e-3


class PromptTuningNotMergeable(ValueError):
    """A soft prompt is an input, not a weight of the base: there is nothing to merge."""


def merge_weights(peft_model: Any) -> Any:
    """peft folds each LoRA product B·A·scale into its base weight; heads in modules_to_save replace the originals."""
    # safe_merge=False: the proof below compares outputs and reports non-finite values with evidence.
    return peft_model.merge_and_unload(safe_merge=False)


def probe(model: Any, tokenizer: Any, task: str, prompts: list[str]) -> list[dict[str, Any]]:
    """Logits (and greedy generations or predicted labels) of `model` on each prompt, as the task reads them."""
    import torch

    kind = tasks.kind(task)
    with torch.no_grad():
        return [kind.probe(model, tokenizer, prompt) for prompt in prompts]


def compare(
    reference: list[dict[str, Any]], candidate: list[dict[str, Any]], prompts: list[str], task: str, *,
    atol: float = LOGIT_ATOL, rtol: float = LOGIT_RTOL, output_keys: tuple[str, str] = ("adapter_output", "merged_output"),
) -> dict[str, Any]:
    """Per-prompt evidence: largest logit difference against the tolerance, and identical tokens or labels.

    The GGUF export proof reuses it with its own bound and names for the two outputs.
    """
    import torch

    rows = []
    passed = True
    worst = 0.0
    for prompt, ref, cand in zip(prompts, reference, candidate, strict=True):
        finite = bool(torch.isfinite(ref["logits"]).all() and torch.isfinite(cand["logits"]).all())
        if ref["logits"].shape != cand["logits"].shape:
            diff, within = math.inf, False
        else:
            diff = float((ref["logits"] - cand["logits"]).abs().max()) if finite else math.inf
            within = finite and bool(torch.allclose(ref["logits"], cand["logits"], atol=atol, rtol=rtol))
        same_tokens = ref["tokens"] == cand["tokens"]
        ok = within and same_tokens
        passed = passed and ok
        worst = max(worst, diff)
        rows.append({
            "prompt": prompt,
            "max_abs_logit_diff": diff if math.isfinite(diff) else None,
            "finite": finite,
            "logits_within_tolerance": within,
            output_keys[0]: ref["text"],
            output_keys[1]: cand["text"],
            "outputs_match": same_tokens,
            "passed": ok,
        })
    return {
        "passed": passed,
        "task": task,
        "compared": "greedy generations" if task in registry.GENERATIVE_TASKS else "predicted labels",
        "tolerance": {"atol": atol, "rtol": rtol},
        "max_abs_logit_diff": worst if math.isfinite(worst) else None,
        "prompts": rows,
    }


def merge_and_prove(adapter_dir: Path, base_dir: Path, out_dir: Path) -> dict[str, Any]:
    """Write the merged model (safetensors + tokenizer) to `out_dir`, then return the evidence comparing
    adapter-on-base with the merged model reloaded from disk; the caller decides on `evidence["passed"]`."""
    config = loading.read_adapter_config(adapter_dir)
    if not registry.peft_type_mergeable(config.get("peft_type")):
        raise PromptTuningNotMergeable(config.get("peft_type"))
    task = loading.task_of_folder(adapter_dir)
    prompts = PROBE_PROMPTS["generative" if task in registry.GENERATIVE_TASKS else "classifier"]
    tokenizer = loading.load_tokenizer(adapter_dir, base_dir)
    adapted = loading.load_adapter_on_base(adapter_dir, base_dir)
    reference = probe(adapted, tokenizer, task, prompts)
    merged = merge_weights(adapted)
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir(parents=True)
    merged.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    del adapted, merged
    # The proof runs on the files a user downloads, not on the in-memory object.
    reloaded = loading.load_plain(out_dir, task)
    evidence = compare(reference, probe(reloaded, tokenizer, task, prompts), prompts, task)
    (out_dir / "merge_proof.json").write_text(json.dumps(evidence, indent=2))
    return evidence
