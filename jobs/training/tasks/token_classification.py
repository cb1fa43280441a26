"""Token classification (tagging): a head over an encoder tags each word."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from jobs.training.tasks.base import Evaluation, HeadKind

if TYPE_CHECKING:
    from datasets import Dataset


class TokenClassification(HeadKind):
    name = "token_classification"
    metric_names = {"f1": "Entity F1", "tag_accuracy": "Tag accuracy"}
    try_it = (
        'tags = model(**tokenizer("John lives in Paris", return_tensors="pt")).logits.argmax(-1)[0]',
        "print([model.config.id2label[i] for i in tags.tolist()])",
    )
    label_column = "tags"
    training_imports = ("numpy", "seqeval.metrics", "sklearn.metrics")
    nested_labels = True

    def tokenizer_options(self, tokenizer: Any) -> dict[str, Any]:
        # Byte-level BPE needs a leading space per word to tokenize pre-split words as it would in running text.
        return {"add_prefix_space": True} if getattr(tokenizer, "add_prefix_space", None) is False else {}

    def encode(self, dataset: Dataset, tokenizer: Any, label2id: dict[str, int], max_length: int) -> Dataset:
        """Word tags aligned to sub-words: the first sub-token carries the tag, the rest are -100 (ignored)."""

        def encode(batch: dict[str, list[Any]]) -> dict[str, Any]:
            encoded = tokenizer(batch["tokens"], is_split_into_words=True, truncation=True, max_length=max_length)
            all_labels = []
            for index, tags in enumerate(batch["tags"]):
                previous = None
                labels = []
                for word_id in encoded.word_ids(batch_index=index):
                    if word_id is None or word_id == previous:
                        labels.append(-100)
                    else:
                        labels.append(label2id[str(tags[word_id])])
                    previous = word_id
                all_labels.append(labels)
            encoded["labels"] = all_labels
            return encoded

        return dataset.map(encode, batched=True, remove_columns=dataset.column_names)

    def collator(self, tokenizer: Any, model: Any) -> Any:
        from transformers import DataCollatorForTokenClassification

        return DataCollatorForTokenClassification(tokenizer)

    def metrics(self, evaluation: Evaluation) -> dict[str, float]:
        """Entity-level F1 (seqeval) on first sub-tokens, plus plain tag accuracy for non-IOB tag sets."""
        import numpy as np
        from seqeval.metrics import f1_score as seqeval_f1
        from sklearn.metrics import accuracy_score

        id2label = dict(enumerate(evaluation.labels or []))
        output = evaluation.trainer.predict(evaluation.encoded)
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

    def answer(self, model: Any, tokenizer: Any, text: str, max_length: int) -> dict[str, Any]:
        """Each token's tag, with the stretch of the input it covers (so the page highlights the user's own text)."""
        import torch

        encoded = tokenizer(text, return_tensors="pt", truncation=True, max_length=max_length, return_offsets_mapping=True)
        offsets = encoded.pop("offset_mapping")[0].tolist()
        with torch.no_grad():
            predicted = model(**encoded).logits[0].argmax(-1).tolist()
        id2label = model.config.id2label or {}
        tokens = []
        for (start, end), label_id in zip(offsets, predicted, strict=True):
            if start == end:  # special tokens cover no text
                continue
            tokens.append({"text": text[start:end], "start": start, "end": end, "tag": str(id2label.get(label_id, label_id))})
        return {"tokens": tokens}


KIND = TokenClassification()
