"""Reading normalized Parquet datasets, splitting, mixing several datasets and tokenizing them per task."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from datasets import Dataset, concatenate_datasets
from trl.data_utils import common_prefix_length

from jobs.training import registry
from jobs.training.spec import DatasetFiles, Hyperparameters, SpecError

logger = logging.getLogger(__name__)

# Multi-task mixture: each dataset contributes its rows in proportion to its size, but no dataset may exceed
# MIXTURE_CAP times the smallest one, so a huge dataset cannot drown a small task (the "examples-proportional
# mixing with a limit" of the T5 paper, with the limit relative to the smallest set instead of absolute).
MIXTURE_CAP = 4

# Columns each task reads from the normalized files: the required columns of each dataset shape that feeds it
# (the registry's shape table, which the datasets app detects and normalizes by).
COLUMNS_BY_TASK: dict[str, tuple[tuple[str, ...], ...]] = {
    name: tuple(registry.SHAPE_TABLE[shape].required for shape in task.shapes) for name, task in registry.TASK_TABLE.items()
}


@dataclass
class SplitDataset:
    """One named dataset after splitting: raw rows, not yet tokenized."""

    name: str
    train: Dataset
    validation: Dataset
    # "dataset": the dataset came with its own validation split, used as it is (eval_fraction does not apply);
    # "held_out": eval_fraction of its rows were held out here.
    validation_source: str = "held_out"


def read_parquet(path: Path) -> Dataset:
    """A Dataset held in memory from one Parquet file (no write to the datasets cache)."""
    return Dataset(pq.read_table(str(path)))


def _check_columns(task: str, name: str, dataset: Dataset) -> None:
    options = COLUMNS_BY_TASK[task]
    if not any(all(column in dataset.column_names for column in option) for option in options):
        wanted = " or ".join("+".join(option) for option in options)
        raise SpecError(
            f"Dataset '{name}' has columns {', '.join(dataset.column_names)}; task '{task}' needs {wanted}."
        )


def load_splits(task: str, files: list[DatasetFiles], eval_fraction: float, seed: int) -> list[SplitDataset]:
    """Each dataset's train and validation rows; validation split off with a fixed seed when not given.

    A dataset's own validation split wins over `eval_fraction`: the datasets app split it (and checked it for
    overlap with train) when it was uploaded, and the review page says so.
    """
    if not files:
        raise SpecError("A training job needs at least one dataset.")
    splits = []
    for entry in files:
        train = read_parquet(entry.train)
        _check_columns(task, entry.name, train)
        source = "held_out"
        if entry.validation is not None:
            validation = read_parquet(entry.validation)
            _check_columns(task, entry.name, validation)
            source = "dataset"
        else:
            if len(train) < 2:
                raise SpecError(f"Dataset '{entry.name}' needs at least 2 rows to split off a validation set.")
            held_out = max(1, round(len(train) * eval_fraction))
            parts = train.train_test_split(test_size=held_out, seed=seed, shuffle=True)
            train, validation = parts["train"], parts["test"]
        if len(train) == 0 or len(validation) == 0:
            raise SpecError(f"Dataset '{entry.name}' has an empty train or validation split.")
        splits.append(SplitDataset(entry.name, train, validation, source))
    return splits


def evaluation_sample(validation: Dataset, max_rows: int, seed: int) -> Dataset:
    """The validation rows an evaluation reads: all of them up to `max_rows`, else a seeded sample of that many.

    The base and the final evaluation read the same sample, so before and after stay comparable.
    """
    if len(validation) <= max_rows:
        return validation
    return validation.shuffle(seed=seed).select(range(max_rows))


def training_steps(examples: int, hp: Hyperparameters) -> int:
    """Optimizer steps for `examples` sequences per epoch, computed as transformers' Trainer does (a last partial
    batch and a last partial accumulation still count), then capped by `max_steps`. With several processes each
    reads its share of the batches (accelerate's sharding: ceil(ceil(n / b) / p) = ceil(n / (b p)))."""
    batches = math.ceil(examples / (hp.batch_size * hp.num_processes))
    per_epoch = max(batches // hp.gradient_accumulation_steps + int(batches % hp.gradient_accumulation_steps > 0), 1)
    steps = math.ceil(hp.epochs * per_epoch)
    return min(steps, hp.max_steps) if hp.max_steps else steps


def mix_train_sets(train_sets: list[Dataset], seed: int) -> Dataset:
    """One training set from several, proportional to size but capped at MIXTURE_CAP x the smallest."""
    if len(train_sets) == 1:
        return train_sets[0]
    limit = MIXTURE_CAP * min(len(d) for d in train_sets)
    capped = []
    for index, dataset in enumerate(train_sets):
        if len(dataset) > limit:
            logger.info("Multi-task mixture: dataset %d capped from %d to %d rows", index, len(dataset), limit)
            dataset = dataset.shuffle(seed=seed + index).select(range(limit))
        capped.append(dataset)
    return concatenate_datasets(capped).shuffle(seed=seed)


# --- SFT -------------------------------------------------------------------------------------------------------


def instruction_to_messages(row: dict[str, Any]) -> list[dict[str, str]]:
    """An instruction row as a user turn and an assistant turn; the optional input follows the instruction."""
    user = row["instruction"]
    if row.get("input"):
        user = f"{user}\n\n{row['input']}"
    return [{"role": "user", "content": user}, {"role": "assistant", "content": row["output"]}]


def to_conversations(dataset: Dataset, with_generation_markers: bool) -> Dataset:
    """SFT rows in the form TRL's SFTTrainer masks correctly for this chat template.

    With `{% generation %}` markers in the template, whole conversations go in and TRL's assistant_only_loss
    trains on every assistant turn. Without markers (most shipped templates, SmolLM2's included) TRL cannot find
    the assistant spans, so each conversation becomes prompt = everything before the last assistant turn and
    completion = that turn, and completion_only_loss trains on the final answer only.
    """

    def convert(row: dict[str, Any]) -> dict[str, Any]:
        messages = row["messages"] if row.get("messages") else instruction_to_messages(row)
        messages = [{"role": m["role"], "content": m["content"]} for m in messages]
        if with_generation_markers:
            return {"messages": messages}
        last = max((i for i, m in enumerate(messages) if m["role"] == "assistant"), default=None)
        if last is None or last == 0:
            raise SpecError("Every chat row needs an assistant turn after at least one other turn.")
        return {"prompt": messages[:last], "completion": [messages[last]]}

    return dataset.map(convert, remove_columns=dataset.column_names)


# --- Preference tuning ------------------------------------------------------------------------------------------


def is_paired(dataset: Dataset) -> bool:
    return "chosen" in dataset.column_names


def preference_rows(dataset: Dataset, objective: str) -> Dataset:
    """Rows in TRL's conversational form for the objective's trainer.

    DPO and ORPO read pairs: prompt (messages), chosen and rejected (one assistant turn each). KTO reads unpaired
    rows: prompt, completion, label (desirable or not); a pair becomes two of them, as TRL's own
    `unpair_preference_dataset` does.
    """

    def turn(text: str) -> list[dict[str, str]]:
        return [{"role": "assistant", "content": text}]

    def prompt_of(row: dict[str, Any]) -> list[dict[str, str]]:
        return [{"role": m["role"], "content": m["content"]} for m in row["prompt"]]

    if objective == "kto":
        if is_paired(dataset):
            def unpair(batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
                out: dict[str, list[Any]] = {"prompt": [], "completion": [], "label": []}
                for prompt, chosen, rejected in zip(batch["prompt"], batch["chosen"], batch["rejected"], strict=True):
                    row = {"prompt": prompt}
                    for text, label in ((chosen, True), (rejected, False)):
                        out["prompt"].append(prompt_of(row))
                        out["completion"].append(turn(text))
                        out["label"].append(label)
                return out

            return dataset.map(unpair, batched=True, remove_columns=dataset.column_names)
        return dataset.map(
            lambda row: {"prompt": prompt_of(row), "completion": turn(row["completion"]), "label": bool(row["label"])},
            remove_columns=dataset.column_names,
        )
    if not is_paired(dataset):
        raise SpecError(
            f"The {objective.upper()} objective learns from pairs (chosen and rejected answers to one prompt); this "
            "dataset holds unpaired rows (completion + label). Choose the kto objective for it."
        )
    return dataset.map(
        lambda row: {"prompt": prompt_of(row), "chosen": turn(row["chosen"]), "rejected": turn(row["rejected"])},
        remove_columns=dataset.column_names,
    )


# The objectives TRL trains with its experimental ORPO and CPO trainers, which tokenize the prompt on their own: they
# put the BOS token in front of it, and keep a pair whose prompt fills max_length with an empty answer.
_BOS_PREPENDING_OBJECTIVES = ("orpo", "simpo")
_TOKENIZED = {"tokenize": True, "return_dict": True}


def _rendered_prompt(tokenizer: Any, prompt: list[dict[str, str]]) -> list[int]:
    """The prompt's tokens, rendered by the chat template with the generation prompt."""
    return list(tokenizer.apply_chat_template(prompt, add_generation_prompt=True, **_TOKENIZED)["input_ids"])


def tokenized_answers(tokenizer: Any, prompt: list[dict[str, str]], answers: list[str]) -> tuple[list[list[int]], int]:
    """prompt + each answer as TRL's DPO and KTO trainers tokenize them, and the index of the answers' first token.

    As there, the answers start where the prompt rendered alone (with the generation prompt) and each whole
    conversation stop agreeing (`trl.data_utils.common_prefix_length`), the earliest over the answers: a pair's
    chosen and rejected answer start at the same index.
    """
    head = _rendered_prompt(tokenizer, prompt)
    sequences = [
        list(tokenizer.apply_chat_template([*prompt, {"role": "assistant", "content": answer}], **_TOKENIZED)["input_ids"])
        for answer in answers
    ]
    return sequences, min(common_prefix_length(head, ids) for ids in sequences)


def answerable_rows(rows: Dataset, tokenizer: Any, objective: str, max_length: int) -> tuple[Dataset, list[int]]:
    """Of `rows` (in the form `preference_rows` gives them), those that keep at least one answer token within
    max_length in the sequences the objective's TRL trainer builds; and the prompt lengths of the others.

    TRL 1.16's DPO and KTO trainers drop the others when they prepare a dataset (their collators cut sequences to
    max_length from the end, which would leave no answer token); its ORPO and CPO trainers keep them with an empty
    answer, whose mean log-probability is 0/0: one such pair in a batch turns the loss NaN. The engine hands TRL only
    these rows, for every objective, and the plan counts them with this same function.
    """
    answer_columns = ["chosen", "rejected"] if is_paired(rows) else ["completion"]
    bos = tokenizer.bos_token_id if objective in _BOS_PREPENDING_OBJECTIVES else None
    kept: list[int] = []
    cut: list[int] = []
    for index, (prompt, *answers) in enumerate(zip(*(rows[name] for name in ["prompt", *answer_columns]), strict=True)):
        head = _rendered_prompt(tokenizer, prompt)
        added = int(bos is not None and head[:1] != [bos])
        # The answers start at the end of the rendered prompt or before it: most prompts need no more tokenizing.
        if len(head) + added < max_length:
            kept.append(index)
            continue
        _, start = tokenized_answers(tokenizer, prompt, [answer[0]["content"] for answer in answers])
        if start + added < max_length:
            kept.append(index)
        else:
            cut.append(start + added)
    return (rows.select(kept) if cut else rows), cut


def long_prompt_message(
    left_out: int, total: int, what: str, cut: list[int], max_length: int, *, outcome: str, refused: bool,
    about: bool = False,
) -> str:
    """Why `left_out` of `total` `what` (such as "training pairs") are left out at this max_length, and what to change.

    `cut` holds the prompt lengths of those rows. A refusal asks for the max_length that keeps at least one of them
    (and says which keeps them all); a warning for the one that keeps them all.
    """
    least, every = min(cut) + 1, max(cut) + 1
    if refused:
        target = f"at least {least}" + (f" ({every} keeps them all)" if every > least else "")
    else:
        target = f"at least {every} to keep them all,"
    return (
        f"{'About ' if about else ''}{left_out} of {total} {what} {'has' if left_out == 1 else 'have'} a prompt of at "
        f"least max_length ({max_length}) tokens, which leaves no answer token: {outcome}; raise max_length to "
        f"{target} or shorten the prompts."
    )
