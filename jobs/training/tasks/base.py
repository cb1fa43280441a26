"""The hooks a task gives the engine, the catalog and the playground, with the behaviour most tasks share.

Three families share most of it: causal language models (their prompts go through the chat template and they answer
by generating), models with a task head over an encoder (they answer with labels, scores or tags), and seq2seq.
A task's module subclasses the family and fills in what is its own.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from datasets import Dataset

    from jobs.training.data import SplitDataset
    from jobs.training.spec import Hyperparameters

# Greedy tokens the merge proof generates per prompt (a causal or seq2seq model's probe).
PROBE_TOKENS = 12
GENERATE_SNIPPET = (
    'inputs = tokenizer("Hello, who are you?", return_tensors="pt")',
    "print(tokenizer.decode(model.generate(**inputs, max_new_tokens=32)[0], skip_special_tokens=True))",
)


@dataclass
class Evaluation:
    """What a task's metrics read for one dataset: the trainer, the name of the dataset's eval set in it, the
    held-out rows as read (`raw`) and as the task encoded them (head and seq2seq tasks), the encoded training rows,
    the label vocabulary, the tokenizer and the hyperparameters (the model is the trainer's)."""

    trainer: Any
    eval_key: str
    raw: Dataset
    encoded: Dataset | None
    train_encoded: Dataset | None
    labels: list[str] | None
    tokenizer: Any
    hp: Hyperparameters


def chat_inputs(tokenizer: Any, prompt: str) -> Any:
    """Token ids for a user message: through the chat template when there is one, else the raw text."""
    if getattr(tokenizer, "chat_template", None):
        messages = [{"role": "user", "content": prompt}]
        return tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    return tokenizer(prompt, return_tensors="pt")


def generation_kwargs(tokenizer: Any, max_new_tokens: int, temperature: float = 0.0, top_p: float = 1.0) -> dict[str, Any]:
    """Greedy at temperature 0 (the same answer every time); sampling with temperature and top-p above it."""
    kwargs: dict[str, Any] = {"max_new_tokens": max_new_tokens, "pad_token_id": tokenizer.pad_token_id}
    if temperature > 0:
        return {**kwargs, "do_sample": True, "temperature": temperature, "top_p": top_p}
    return {**kwargs, "do_sample": False}


class TaskKind(ABC):
    """One task's behaviour. Class attributes are plain data the web process reads without torch."""

    name: ClassVar[str] = ""
    # Metric keys the task's evaluation reports, with the names people read (the job and model pages, charts).
    metric_names: ClassVar[dict[str, str]] = {}
    # The model card's "Use" section: lines that run the downloaded model once `model` and `tokenizer` are loaded.
    try_it: ClassVar[tuple[str, ...]] = ()
    # Training data: the column holding the labels of a classifier (None: the task has no label vocabulary), and
    # whether a row holds a list of them (one per word).
    label_column: ClassVar[str | None] = None
    nested_labels: ClassVar[bool] = False
    # Modules the training hooks import lazily (for the web process) that a training worker loads up front
    # (`tasks.import_training_modules`): the memory a run adds is then the run's own, as the estimate counts it.
    training_imports: ClassVar[tuple[str, ...]] = ()
    # Serving: whether a generation starts with the prompt's own ids (causal LMs) or only the new ones (seq2seq).
    prompt_in_output: ClassVar[bool] = True

    # --- Training -------------------------------------------------------------------------------------------------

    def labels(self, splits: list[SplitDataset]) -> list[str] | None:
        """The sorted label vocabulary over every train and validation split (so validation-only labels map)."""
        if self.label_column is None:
            return None
        names: set[str] = set()
        for split in splits:
            for dataset in (split.train, split.validation):
                for value in dataset[self.label_column]:
                    names.update(value if self.nested_labels else [value])
        return sorted(str(name) for name in names)

    def tokenizer_options(self, tokenizer: Any) -> dict[str, Any]:
        """Extra `AutoTokenizer.from_pretrained` arguments the task needs with this tokenizer (none by default)."""
        return {}

    def encode(self, dataset: Dataset, tokenizer: Any, label2id: dict[str, int], max_length: int) -> Dataset:
        """Rows as token ids and labels for Trainer (head and seq2seq tasks; TRL tokenizes the others itself)."""
        raise TypeError(f"Task '{self.name}' is tokenized by its trainer, not by the engine.")

    def collator(self, tokenizer: Any, model: Any) -> Any:
        """Pads a batch of `encode`d rows (head and seq2seq tasks)."""
        from transformers import DataCollatorWithPadding

        return DataCollatorWithPadding(tokenizer)

    @abstractmethod
    def metrics(self, evaluation: Evaluation) -> dict[str, float]:
        """The task's metrics on one held-out set, computed the same way before and after training."""

    # --- Serving --------------------------------------------------------------------------------------------------

    def prompt_inputs(self, tokenizer: Any, text: str, max_length: int | None = None) -> Any:
        """What the model reads of a prompt typed by a person."""
        if max_length is None:
            return tokenizer(text, return_tensors="pt")
        return tokenizer(text, return_tensors="pt", truncation=True, max_length=max_length)

    def answer(self, model: Any, tokenizer: Any, text: str, max_length: int) -> dict[str, Any]:
        """The playground's answer of a task-head model: its fields for the page (generative tasks stream theirs)."""
        raise TypeError(f"Task '{self.name}' answers by generating: the playground streams its answer.")

    def probe(self, model: Any, tokenizer: Any, prompt: str) -> dict[str, Any]:
        """Logits, and the tokens or labels they lead to, for the merge and export proofs: per position, the
        head's argmax."""
        inputs = tokenizer(prompt, return_tensors="pt", truncation=True)
        logits = model(**inputs).logits[0]
        labels = logits.argmax(-1).reshape(-1).tolist()
        id2label = getattr(model.config, "id2label", {}) or {}
        return {"logits": logits, "tokens": labels, "text": " ".join(str(id2label.get(i, i)) for i in labels)}

    def new_token_ids(self, output: Any, prompt_ids: Any) -> list[int]:
        """The ids generate() added to the prompt."""
        ids: list[int] = output[0].tolist()
        if not self.prompt_in_output:
            return ids[1:]  # a seq2seq output starts with the decoder's start token
        prompt = prompt_ids[0].tolist()
        return ids[len(prompt):] if ids[: len(prompt)] == prompt else ids


class CausalKind(TaskKind):
    """A causal language model: prompts through its chat template, answers by generating."""

    metric_names: ClassVar[dict[str, str]] = {"perplexity": "Perplexity"}
    try_it = GENERATE_SNIPPET
    # TRL's SFTTrainer (sft and text): whether rows are conversations whose assistant turns train (a chat template
    # is needed), and whether only the completion of a prompt/completion row carries the loss (None: TRL decides).
    training_imports: ClassVar[tuple[str, ...]] = ("jobs.training.metrics",)
    chat_rows: ClassVar[bool] = False
    completion_only_loss: ClassVar[bool | None] = False
    # How packing lays rows into sequences on CUDA (a variable-length attention kernel keeps them apart).
    cuda_packing_strategy: ClassVar[str] = "bfd"

    def sft_rows(self, dataset: Dataset, markers: bool) -> Dataset:
        """Rows in the form TRL's SFTTrainer reads (sft-family tasks)."""
        raise TypeError(f"Task '{self.name}' does not train with the SFTTrainer.")

    def metrics(self, evaluation: Evaluation) -> dict[str, float]:
        from jobs.training.metrics import language_model_metrics

        return language_model_metrics(evaluation.trainer, evaluation.eval_key)

    def prompt_inputs(self, tokenizer: Any, text: str, max_length: int | None = None) -> Any:
        return chat_inputs(tokenizer, text)

    def probe(self, model: Any, tokenizer: Any, prompt: str) -> dict[str, Any]:
        inputs = chat_inputs(tokenizer, prompt)
        logits = model(**inputs).logits[0]
        generated = model.generate(**inputs, **generation_kwargs(tokenizer, PROBE_TOKENS))
        new_ids = generated[0, inputs["input_ids"].shape[1]:].tolist()
        return {"logits": logits, "tokens": new_ids, "text": tokenizer.decode(new_ids, skip_special_tokens=True)}


class HeadKind(TaskKind):
    """A task head over an encoder: answers with what the head predicts (the probe and prompts of `TaskKind`)."""


class TextHeadKind(HeadKind):
    """A head that reads one `text` per row and predicts its label(s) or score."""

    def encode(self, dataset: Dataset, tokenizer: Any, label2id: dict[str, int], max_length: int) -> Dataset:
        """Texts and their labels (`label_values` maps a batch's label column)."""

        def encode(batch: dict[str, list[Any]]) -> dict[str, Any]:
            encoded = tokenizer(batch["text"], truncation=True, max_length=max_length)
            encoded["labels"] = self.label_values(batch, label2id)
            return encoded

        return dataset.map(encode, batched=True, remove_columns=dataset.column_names)

    @abstractmethod
    def label_values(self, batch: dict[str, list[Any]], label2id: dict[str, int]) -> list[Any]:
        """A batch's labels as Trainer reads them (class ids, scores, multi-hot vectors)."""
