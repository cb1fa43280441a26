"""One answer per task (plain Python): streamed generations, labels with scores, tagged tokens."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from webapp.catalog import loading
from webapp.playground.resident import Served

MAX_NEW_TOKENS = 96
MAX_INPUT_TOKENS = 512
UPDATE_EVERY_SECONDS = 0.2
OnUpdate = Callable[[dict[str, Any]], None]


def answer(served: Served, text: str, on_update: OnUpdate, max_new_tokens: int = MAX_NEW_TOKENS) -> dict[str, Any]:
    """The answer's fields for the page: `text` for generations, `labels` for classifiers, `tokens` for taggers."""
    if served.task in loading.GENERATIVE_TASKS:
        return generate(served, text, on_update, max_new_tokens)
    if served.task == "classification":
        return classify(served, text)
    if served.task == "token_classification":
        return tag(served, text)
    raise ValueError("This model has no task head to answer with: compare it through a tuned classifier.")


def generate(served: Served, text: str, on_update: OnUpdate, max_new_tokens: int) -> dict[str, Any]:
    """Greedy generation streamed token by token (TextIteratorStreamer), through the chat template for causal LMs."""
    import torch
    from transformers import TextIteratorStreamer

    tokenizer = served.tokenizer
    if served.task == "seq2seq":
        inputs = tokenizer(text, return_tensors="pt", truncation=True, max_length=MAX_INPUT_TOKENS)
    else:
        inputs = loading.chat_inputs(tokenizer, text)
    streamer = TextIteratorStreamer(tokenizer, skip_prompt=served.task != "seq2seq", skip_special_tokens=True, timeout=300)
    failure: list[BaseException] = []

    def run() -> None:
        try:
            with torch.no_grad():
                served.model.generate(**inputs, **loading.generation_kwargs(tokenizer, max_new_tokens), streamer=streamer)
        except BaseException as error:  # surfaced in the caller's thread below
            failure.append(error)
            streamer.end()

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
    token_count = len(tokenizer(generated, add_special_tokens=False)["input_ids"]) if generated else 0
    seconds = time.perf_counter() - started
    return {
        "text": generated,
        "tokens_generated": token_count,
        "first_token_seconds": round(first_token_seconds or seconds, 3),
        "ms_per_token": round(seconds * 1000 / token_count, 1) if token_count else None,
    }


def classify(served: Served, text: str) -> dict[str, Any]:
    import torch

    inputs = served.tokenizer(text, return_tensors="pt", truncation=True, max_length=MAX_INPUT_TOKENS)
    with torch.no_grad():
        scores = torch.softmax(served.model(**inputs).logits[0], dim=-1).tolist()
    id2label = served.model.config.id2label or {}
    labels = [{"label": str(id2label.get(i, i)), "score": round(score, 4)} for i, score in enumerate(scores)]
    return {"labels": sorted(labels, key=lambda item: -item["score"])}


def tag(served: Served, text: str) -> dict[str, Any]:
    """Each token's tag, with the stretch of the input it covers (so the page highlights the user's own text)."""
    import torch

    encoded = served.tokenizer(
        text, return_tensors="pt", truncation=True, max_length=MAX_INPUT_TOKENS, return_offsets_mapping=True
    )
    offsets = encoded.pop("offset_mapping")[0].tolist()
    with torch.no_grad():
        predicted = served.model(**encoded).logits[0].argmax(-1).tolist()
    id2label = served.model.config.id2label or {}
    tokens = []
    for (start, end), label_id in zip(offsets, predicted, strict=True):
        if start == end:  # special tokens cover no text
            continue
        tokens.append({"text": text[start:end], "start": start, "end": end, "tag": str(id2label.get(label_id, label_id))})
    return {"tokens": tokens}
