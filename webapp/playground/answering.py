"""One answer per task (plain Python): streamed generations, labels with scores, a predicted score, tagged tokens."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from jobs.training import registry, tasks
from jobs.training.tasks.base import generation_kwargs
from webapp.lib.errors import LayercakeError, RowError
from webapp.playground.resident import Served

MAX_NEW_TOKENS = 96
MAX_INPUT_TOKENS = 512
UPDATE_EVERY_SECONDS = 0.2
# Sampling draws from torch's generator: seeding it before each model makes a side-by-side run fair and repeatable.
SAMPLING_SEED = 0
OnUpdate = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class GenerationSettings:
    """How generative models answer. The default is greedy: the same input gives the same answer every run,
    so a tuned model and its base are compared on their weights, not on the luck of a draw."""

    max_new_tokens: int = MAX_NEW_TOKENS
    temperature: float = 0.0  # 0 is greedy; above 0 samples with top-p
    top_p: float = 1.0

    LIMITS = {"max_new_tokens": (1, 512), "temperature": (0.0, 2.0), "top_p": (0.01, 1.0)}
    LABELS = {"max_new_tokens": "Max new tokens", "temperature": "Temperature", "top_p": "Top-p"}

    @classmethod
    def from_input(cls, raw: Mapping[str, Any]) -> GenerationSettings:
        """Settings from a form or JSON; blank fields take the defaults. Out of bounds is an error, never clamped."""
        values: dict[str, Any] = {}
        problems: list[RowError] = []
        for name, (low, high) in cls.LIMITS.items():
            given = raw.get(name)
            if given is None or (isinstance(given, str) and not given.strip()):
                continue
            label = cls.LABELS[name]
            try:
                number = float(given)
                if name == "max_new_tokens":
                    if number != int(number):
                        raise ValueError
                    number = int(number)
            except (TypeError, ValueError, OverflowError):
                kind = "a whole number" if name == "max_new_tokens" else "a number"
                problems.append(RowError(None, name, f"{label} must be {kind} from {low} to {high}; got {given!r}."))
                continue
            if not low <= number <= high:
                problems.append(RowError(None, name, f"{label} must be from {low} to {high}; got {given}."))
                continue
            values[name] = number
        if problems:
            raise LayercakeError(problems[0].message, problems)
        return cls(**values)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


def answer(served: Served, text: str, on_update: OnUpdate, settings: GenerationSettings | None = None) -> dict[str, Any]:
    """The answer's fields for the page: `text` for generations, else what the task's head gives (`labels` for
    classifiers, `score` for regression, `tokens` for taggers: the task's `answer` hook)."""
    if served.task not in registry.TASK_TABLE:
        raise ValueError("This model has no task head to answer with: compare it through a tuned classifier.")
    if served.task in registry.GENERATIVE_TASKS:
        return generate(served, text, on_update, settings or GenerationSettings())
    return tasks.kind(served.task).answer(served.model, served.tokenizer, text, MAX_INPUT_TOKENS)


def eos_ids(served: Served) -> set[int]:
    ids = {served.tokenizer.eos_token_id}
    configured = getattr(getattr(served.model, "generation_config", None), "eos_token_id", None)
    ids |= set(configured) if isinstance(configured, list) else {configured}
    return {i for i in ids if i is not None}


def generate(served: Served, text: str, on_update: OnUpdate, settings: GenerationSettings) -> dict[str, Any]:
    """Generation streamed token by token (TextIteratorStreamer), through the chat template for causal LMs."""
    import torch
    from transformers import TextIteratorStreamer

    tokenizer = served.tokenizer
    kind = tasks.kind(served.task)
    inputs = kind.prompt_inputs(tokenizer, text, MAX_INPUT_TOKENS)
    streamer = TextIteratorStreamer(tokenizer, skip_prompt=kind.prompt_in_output, skip_special_tokens=True, timeout=300)
    failure: list[BaseException] = []
    outputs: list[Any] = []
    kwargs = generation_kwargs(tokenizer, settings.max_new_tokens, settings.temperature, settings.top_p)

    def run() -> None:
        try:
            with torch.no_grad():
                outputs.append(served.model.generate(**inputs, **kwargs, streamer=streamer))
        except BaseException as error:  # surfaced in the caller's thread below
            failure.append(error)
            streamer.end()

    if not settings.greedy:
        torch.manual_seed(SAMPLING_SEED)
    worker = threading.Thread(target=run, daemon=True)
    started = time.perf_counter()
    worker.start()
    pieces: list[str] = []
    first_token_seconds = None
    last_update = 0.0
    for piece in streamer:
        if first_token_seconds is None and piece:
            first_token_seconds = time.perf_counter() - started
        pieces.append(piece)
        if time.perf_counter() - last_update >= UPDATE_EVERY_SECONDS:
            on_update({"text": "".join(pieces)})
            last_update = time.perf_counter()
    worker.join()
    if failure:
        raise failure[0]
    generated = "".join(pieces)
    new_ids = kind.new_token_ids(outputs[0], inputs["input_ids"])
    token_count = len(new_ids)
    seconds = time.perf_counter() - started
    return {
        "text": generated,
        "tokens_generated": token_count,
        # Stopped by the limit, not by the model: the answer may be cut mid-sentence.
        "truncated": token_count >= settings.max_new_tokens and not (new_ids and new_ids[-1] in eos_ids(served)),
        "max_new_tokens": settings.max_new_tokens,
        "first_token_seconds": round(first_token_seconds or seconds, 3),
        "ms_per_token": round(seconds * 1000 / token_count, 1) if token_count else None,
    }
