"""Task metrics on a validation split, computed the same way before and after training."""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import numpy as np
import torch
from datasets import Dataset
from rouge_score import rouge_scorer
from seqeval.metrics import f1_score as seqeval_f1
from sklearn.metrics import accuracy_score, f1_score
from transformers import Trainer

# Generation is the slow part of seq2seq evaluation; ROUGE on this many validation rows is a stable enough figure.
MAX_GENERATION_ROWS = 200
MAX_NEW_TOKENS = 64


def language_model_metrics(trainer: Trainer, eval_key: str) -> dict[str, float]:
    """Loss on the validation tokens that carry a label (assistant tokens for SFT) and its perplexity."""
    loss = trainer.evaluate(eval_dataset=eval_key, metric_key_prefix="eval")["eval_loss"]
    return {"loss": round(loss, 6), "perplexity": round(math.exp(min(loss, 50.0)), 4)}


def classification_metrics(trainer: Trainer, dataset: Dataset, train_labels: list[int]) -> dict[str, float]:
    """Accuracy and macro-F1, with the accuracy of always answering the training set's majority class."""
    output = trainer.predict(dataset)
    predictions = np.argmax(output.predictions, axis=-1)
    references = output.label_ids
    majority = Counter(train_labels).most_common(1)[0][0]
    return {
        "loss": round(float(output.metrics["test_loss"]), 6),
        "accuracy": round(float(accuracy_score(references, predictions)), 6),
        "macro_f1": round(float(f1_score(references, predictions, average="macro", zero_division=0)), 6),
        "majority_baseline_accuracy": round(float(np.mean(references == majority)), 6),
    }


def token_classification_metrics(trainer: Trainer, dataset: Dataset, id2label: dict[int, str]) -> dict[str, float]:
    """Entity-level F1 (seqeval) on first sub-tokens, plus plain tag accuracy for non-IOB tag sets."""
    output = trainer.predict(dataset)
    predictions = np.argmax(output.predictions, axis=-1)
    predicted_tags, reference_tags = [], []
    for predicted_row, reference_row in zip(predictions, output.label_ids, strict=True):
        keep = reference_row != -100
        predicted_tags.append([id2label[int(i)] for i in predicted_row[keep]])
        reference_tags.append([id2label[int(i)] for i in reference_row[keep]])
    flat_predicted = [t for row in predicted_tags for t in row]
    flat_reference = [t for row in reference_tags for t in row]
    return {
        "loss": round(float(output.metrics["test_loss"]), 6),
        "f1": round(float(seqeval_f1(reference_tags, predicted_tags, zero_division=0)), 6),
        "tag_accuracy": round(float(accuracy_score(flat_reference, flat_predicted)), 6),
    }


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
