"""Task metrics on a validation split, computed the same way before and after training."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from datasets import Dataset
from rouge_score import rouge_scorer
from transformers import Trainer

from jobs.training import data as data_module

# Generation is the slow part of seq2seq evaluation; ROUGE on this many validation rows is a stable enough figure.
MAX_GENERATION_ROWS = 200
MAX_NEW_TOKENS = 64


def language_model_metrics(trainer: Trainer, eval_key: str) -> dict[str, float]:
    """Loss on the validation tokens that carry a label (assistant tokens for SFT) and its perplexity."""
    loss = trainer.evaluate(eval_dataset=eval_key, metric_key_prefix="eval")["eval_loss"]
    return {"loss": round(loss, 6), "perplexity": round(math.exp(min(loss, 50.0)), 4)}


def seq2seq_metrics(
    trainer: Trainer, eval_key: str, raw: Dataset, model: Any, tokenizer: Any, max_length: int, batch_size: int
) -> dict[str, float]:
    """Validation loss and ROUGE-1/2/L F-measures of greedy generations against the targets."""
    loss = trainer.evaluate(eval_dataset=eval_key, metric_key_prefix="eval")["eval_loss"]
    rows = raw.select(range(min(len(raw), MAX_GENERATION_ROWS)))
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=False)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    scores: dict[str, list[float]] = {"rouge1": [], "rouge2": [], "rougeL": []}
    with torch.no_grad():
        for start in range(0, len(rows), batch_size):
            batch = rows[start : start + batch_size]
            encoded = tokenizer(
                batch["source"], truncation=True, max_length=max_length, padding=True, return_tensors="pt"
            ).to(device)
            generated = model.generate(**encoded, max_new_tokens=MAX_NEW_TOKENS, do_sample=False, num_beams=1)
            texts = tokenizer.batch_decode(generated, skip_special_tokens=True)
            for target, text in zip(batch["target"], texts, strict=True):
                result = scorer.score(target, text)
                for name in scores:
                    scores[name].append(result[name].fmeasure)
    model.train(was_training)
    metrics = {name: round(float(np.mean(values)), 6) for name, values in scores.items()}
    metrics["loss"] = round(loss, 6)
    return metrics


def answer_log_probs(
    model: Any, tokenizer: Any, sequences: list[tuple[list[int], int]], max_length: int, batch_size: int
) -> list[tuple[float, int]]:
    """(sum of log-probabilities, tokens) of the answer in each (ids, index of the answer's first token) sequence
    (`data.tokenized_answers`). Sequences are cut to `max_length` from the end, as TRL's preference trainers do
    ("keep_start"), so an answer whose prompt fills max_length has no token.
    """
    device = next(model.parameters()).device
    sequences = [(ids[:max_length], min(start, max_length)) for ids, start in sequences]
    scores: list[tuple[float, int]] = []
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for first in range(0, len(sequences), batch_size):
            batch = sequences[first : first + batch_size]
            width = max(len(ids) for ids, _ in batch)
            pad = tokenizer.pad_token_id or 0
            input_ids = torch.tensor([ids + [pad] * (width - len(ids)) for ids, _ in batch], device=device)
            mask = torch.tensor([[1] * len(ids) + [0] * (width - len(ids)) for ids, _ in batch], device=device)
            logits = model(input_ids=input_ids, attention_mask=mask).logits.float()
            log_probs = torch.log_softmax(logits[:, :-1], dim=-1).gather(-1, input_ids[:, 1:, None])[..., 0]
            for row, (ids, start) in enumerate(batch):
                # Token t is predicted at position t - 1: the answer's tokens are ids[start:].
                answer = log_probs[row, max(start, 1) - 1 : len(ids) - 1]
                scores.append((float(answer.sum()), int(answer.numel())))
    model.train(was_training)
    return scores


def validation_loss(trainer: Trainer, eval_key: str) -> float | None:
    """Trainer's loss on one of its eval sets; None where the set is empty or absent (the engine leaves out a set
    whose every row's prompt fills max_length: there is nothing to compute a loss on)."""
    eval_set = trainer.eval_dataset.get(eval_key) if isinstance(trainer.eval_dataset, dict) else None
    if eval_set is None or len(eval_set) == 0:
        return None
    loss = trainer.evaluate(eval_dataset=eval_key, metric_key_prefix="eval").get("eval_loss")
    return None if loss is None else float(loss)


def preference_metrics(
    trainer: Trainer,
    eval_key: str,
    raw: Dataset,
    model: Any,
    tokenizer: Any,
    max_length: int,
    batch_size: int,
    length_normalised: bool,
) -> dict[str, float]:
    """The objective's validation loss and, on held-out pairs, how often the model itself prefers the chosen answer.

    reward_accuracy: the share of pairs where the chosen answer's log-probability beats the rejected one's (per token
    when the objective normalises by length, as ORPO does); reward_margin: the mean of that difference. Unlike TRL's
    rewards/accuracies (relative to the reference, so 0 before training), these read the same before and after.
    Unpaired (KTO) rows: the mean log-probability of the desirable and of the undesirable answers instead.

    Only the rows that keep an answer token within max_length are scored (a pair whose prompt fills it would count as
    a tie, "not preferred", before and after alone): pairs_scored (rows_scored) says how many, and the loss is left
    out when no row of the set keeps one.
    """
    metrics: dict[str, float] = {}
    loss = validation_loss(trainer, eval_key)
    if loss is not None:
        metrics["loss"] = round(loss, 6)

    def value(score: tuple[float, int]) -> float:
        total, tokens = score
        return total / max(tokens, 1) if length_normalised else total

    paired = data_module.is_paired(raw)
    answer_columns = [raw["chosen"], raw["rejected"]] if paired else [raw["completion"]]
    scored: list[int] = []
    sequences: list[tuple[list[int], int]] = []
    for index, (prompt, *answers) in enumerate(zip(raw["prompt"], *answer_columns, strict=True)):
        messages = [{"role": m["role"], "content": m["content"]} for m in prompt]
        answer_ids, start = data_module.tokenized_answers(tokenizer, messages, list(answers))
        if start < max_length:
            scored.append(index)
            sequences.extend((ids, start) for ids in answer_ids)
    metrics["pairs_scored" if paired else "rows_scored"] = len(scored)
    if not scored:
        return metrics
    scores = answer_log_probs(model, tokenizer, sequences, max_length, batch_size)
    if paired:
        margins = [value(chosen) - value(rejected) for chosen, rejected in zip(scores[0::2], scores[1::2], strict=True)]
        metrics["reward_accuracy"] = round(float(np.mean([margin > 0 for margin in margins])), 6)
        metrics["reward_margin"] = round(float(np.mean(margins)), 6)
        return metrics
    flags = list(raw["label"])
    labels = [bool(flags[index]) for index in scored]
    for label, name in ((True, "desirable_log_prob"), (False, "undesirable_log_prob")):
        picked = [value(score) for score, flag in zip(scores, labels, strict=True) if flag is label]
        if picked:
            metrics[name] = round(float(np.mean(picked)), 6)
    return metrics
