"""Fixtures for the training engine tests: tiny models built once per session, tiny datasets written per test."""

from __future__ import annotations

import os

# Two shared cores: torch's default of one thread per core thrashes when other processes run, and makes tiny
# models ~20x slower. Set before torch is imported by anything else.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from jobs.training.tiny import build_tiny_causal_lm, build_tiny_encoder, build_tiny_seq2seq
from tests.training.bundled import minilm_dir, smollm2_dir  # noqa: F401 (session fixtures)

torch.set_num_threads(1)

DATA_DIR = Path(__file__).parent / "data"

_WORDS = ["cat", "dog", "red", "blue", "sun", "moon", "tree", "book", "green", "apple", "river", "house"]


def write_parquet(rows: list[dict[str, Any]], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def instruction_rows(count: int = 48) -> list[dict[str, str]]:
    """A learnable toy task: repeat the word twice."""
    return [
        {"instruction": f"Repeat the word {w} twice.", "input": "", "output": f"{w} {w}"}
        for w in (_WORDS * (count // len(_WORDS) + 1))[:count]
    ]


def chat_rows(count: int = 24) -> list[dict[str, Any]]:
    return [
        {
            "messages": [
                {"role": "system", "content": "You are terse."},
                {"role": "user", "content": f"Name a {w}."},
                {"role": "assistant", "content": f"the {w}"},
                {"role": "user", "content": "Again."},
                {"role": "assistant", "content": f"a {w}"},
            ]
        }
        for w in (_WORDS * (count // len(_WORDS) + 1))[:count]
    ]


def text_rows(count: int = 40) -> list[dict[str, str]]:
    return [
        {"text": f"The {w} likes the {v}. " * (1 + i % 4)}
        for i, (w, v) in enumerate(zip(_WORDS * 4, _WORDS[::-1] * 4, strict=True))
    ][:count]


def classification_rows(count: int = 48) -> list[dict[str, str]]:
    good = ["great", "wonderful", "fantastic", "amazing", "excellent", "fun"]
    bad = ["terrible", "awful", "boring", "rude", "cold", "slow"]
    rows = []
    for i in range(count):
        if i % 2:
            rows.append(
                {"text": f"the food was {good[i % len(good)]} and {good[(i + 1) % len(good)]}", "label": "positive"}
            )
        else:
            rows.append(
                {"text": f"the food was {bad[i % len(bad)]} and {bad[(i + 1) % len(bad)]}", "label": "negative"}
            )
    return rows


def token_rows(count: int = 32) -> list[dict[str, Any]]:
    names, cities = ["Alice", "Bob", "John"], ["London", "Paris", "Berlin", "Tokyo"]
    rows = []
    for i in range(count):
        name, city = names[i % len(names)], cities[i % len(cities)]
        rows.append({"tokens": [name, "lives", "in", city, "."], "tags": ["B-PER", "O", "O", "B-LOC", "O"]})
    return rows


def seq2seq_rows(count: int = 32) -> list[dict[str, str]]:
    return [{"source": f"repeat: {w}", "target": f"{w} {w}"} for w in (_WORDS * 4)[:count]]


@pytest.fixture(scope="session")
def tiny_lm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_causal_lm(tmp_path_factory.mktemp("tiny") / "lm")


@pytest.fixture(scope="session")
def tiny_encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_encoder(tmp_path_factory.mktemp("tiny") / "encoder")


@pytest.fixture(scope="session")
def tiny_seq2seq(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_seq2seq(tmp_path_factory.mktemp("tiny") / "seq2seq")


def make_spec(
    tmp_path: Path,
    base: Path,
    task: str,
    method: str,
    rows: list[dict[str, Any]],
    *,
    validation_rows: list[dict[str, Any]] | None = None,
    extra_datasets: dict[str, list[dict[str, Any]]] | None = None,
    **overrides: Any,
) -> Any:
    """A TrainingSpec over rows written to Parquet, with small, fast hyperparameters unless overridden."""
    from jobs.training import DatasetFiles, TrainingSpec, resolve_hyperparameters

    settings: dict[str, Any] = {"epochs": 2, "learning_rate": 1e-3, "batch_size": 4, "max_length": 64}
    if method == "prompt_tuning":
        settings["prompt_init_text"] = "Repeat the word twice."
    settings.update(overrides)
    files = [
        DatasetFiles(
            "main",
            write_parquet(rows, tmp_path / "data" / "main-train.parquet"),
            write_parquet(validation_rows, tmp_path / "data" / "main-validation.parquet") if validation_rows else None,
        )
    ]
    for name, extra in (extra_datasets or {}).items():
        files.append(DatasetFiles(name, write_parquet(extra, tmp_path / "data" / f"{name}-train.parquet")))
    return TrainingSpec(
        base_model_dir=base,
        task=task,
        method=method,
        datasets=files,
        hyperparameters=resolve_hyperparameters(task, method, 100_000, settings),
        output_dir=tmp_path / "artifact",
        checkpoint_dir=tmp_path / "checkpoints",
        device="cpu",
        base_model_name="layercake/tiny-base",
        job_id="test",
    )
