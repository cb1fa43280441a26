"""Sequence to sequence: an encoder-decoder learns to write the target of a source."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from jobs.training.tasks.base import GENERATE_SNIPPET, PROBE_TOKENS, Evaluation, TaskKind, generation_kwargs

if TYPE_CHECKING:
    from datasets import Dataset


class Seq2Seq(TaskKind):
    name = "seq2seq"
    metric_names = {"rouge1": "ROUGE-1", "rouge2": "ROUGE-2", "rougeL": "ROUGE-L"}
    try_it = GENERATE_SNIPPET
    prompt_in_output = False
    training_imports = ("jobs.training.metrics",)

    def encode(self, dataset: Dataset, tokenizer: Any, label2id: dict[str, int], max_length: int) -> Dataset:
        def encode(batch: dict[str, list[Any]]) -> dict[str, Any]:
            return tokenizer(batch["source"], text_target=batch["target"], truncation=True, max_length=max_length)

        return dataset.map(encode, batched=True, remove_columns=dataset.column_names)

    def collator(self, tokenizer: Any, model: Any) -> Any:
        from transformers import DataCollatorForSeq2Seq

        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        return DataCollatorForSeq2Seq(tokenizer, model=base, label_pad_token_id=-100)

    def metrics(self, evaluation: Evaluation) -> dict[str, float]:
        from jobs.training.metrics import seq2seq_metrics

        hp = evaluation.hp
        return seq2seq_metrics(
            evaluation.trainer, evaluation.eval_key, evaluation.raw, evaluation.trainer.model, evaluation.tokenizer,
            hp.max_length, hp.batch_size,
        )

    def probe(self, model: Any, tokenizer: Any, prompt: str) -> dict[str, Any]:
        import torch

        inputs = tokenizer(prompt, return_tensors="pt")
        start = torch.tensor([[model.config.decoder_start_token_id]])
        logits = model(**inputs, decoder_input_ids=start).logits[0]
        generated = model.generate(**inputs, **generation_kwargs(tokenizer, PROBE_TOKENS))
        new_ids = generated[0].tolist()
        return {"logits": logits, "tokens": new_ids, "text": tokenizer.decode(new_ids, skip_special_tokens=True)}


KIND = Seq2Seq()
