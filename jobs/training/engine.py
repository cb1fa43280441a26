"""The training run: spec in, Trainer (TRL's SFTTrainer for causal LMs) in the middle, artifact and result out."""

from __future__ import annotations

import logging
import math
import os
import resource
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset, DatasetDict, concatenate_datasets
from transformers import (
    EarlyStoppingCallback,
    PrinterCallback,
    Seq2SeqTrainer,
    Seq2SeqTrainingArguments,
    Trainer,
    TrainerCallback,
    TrainingArguments,
    set_seed,
)
from trl import DPOConfig, DPOTrainer, KTOConfig, KTOTrainer, SFTConfig, SFTTrainer
from trl.chat_template_utils import has_generation_markers

from jobs.training import data as data_module
from jobs.training import registry, tasks
from jobs.training.artifact import model_card, save_artifact
from jobs.training.execution import Execution, local_capabilities, plan_execution
from jobs.training.memory import ModelShape, parameter_counts
from jobs.training.methods import (
    check_combination,
    count_parameters,
    load_config,
    load_model,
    load_tokenizer,
    prepare_model,
    resolve_device,
)
from jobs.training.spec import (
    DatasetFiles,
    DatasetPlan,
    Hyperparameters,
    NullReporter,
    Reporter,
    RunPlan,
    RunWork,
    SpecError,
    TrainingResult,
    TrainingSpec,
    TrainingSummary,
)

logger = logging.getLogger(__name__)
# Everything a run uses is imported with the engine: the memory a run adds is its own (the estimate's measure).
tasks.import_training_modules()
# Trainer's save_total_limit: the checkpoints kept on disk, and in object storage (jobs.checkpoint_store).
CHECKPOINTS_KEPT = 2


class _JobLog(logging.LoggerAdapter):
    """Prefixes every engine log line with the job id, so a worker's interleaved logs stay attributable."""

    def __init__(self, logger: logging.Logger, job_id: str) -> None:
        super().__init__(logger, {"job_id": job_id})
        self.job_id = job_id

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        return f"[job {self.job_id}] {msg}", kwargs


def _across_processes(values: list[float], op: str) -> list[float]:
    """`values` reduced over the processes of a multi-process run ("max" or "sum"); as they are in a single one.

    Every process must call it at the same point: a decision to stop or to save that one process takes alone leaves
    the others waiting at the next gradient exchange.
    """
    if not torch.distributed.is_available() or not torch.distributed.is_initialized():
        return values
    from accelerate import PartialState

    tensor = torch.tensor(values, dtype=torch.float64, device=PartialState().device)
    reduction = torch.distributed.ReduceOp.MAX if op == "max" else torch.distributed.ReduceOp.SUM
    torch.distributed.all_reduce(tensor, op=reduction)
    return [float(value) for value in tensor.tolist()]


def _any_process(flag: bool) -> bool:
    return _across_processes([float(flag)], "max")[0] > 0


class TimedCheckpointCallback(TrainerCallback):
    """Asks Trainer for a checkpoint once `seconds` of training passed since the last one (or the start).

    save_steps alone can exceed a small job's steps, or take many minutes on slow steps: a kill then lost
    everything. Runs after the ReporterCallback, and never saves a run that is stopping.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.since = time.monotonic()

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.since = time.monotonic()

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.since = time.monotonic()

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.seconds <= 0:
            return
        due = not control.should_training_stop and time.monotonic() - self.since >= self.seconds
        # Each process has its own clock; all save at the step that the first of them finds due.
        if _any_process(due):
            control.should_save = True


class CheckpointSavedCallback(TrainerCallback):
    """Hands each checkpoint folder to `spec.on_checkpoint` once Trainer has written it whole.

    on_save comes after the weights, optimizer, scheduler, RNG state and trainer_state.json are on disk (and after
    Trainer removed the checkpoints past save_total_limit); only the main process hands it over.
    """

    def __init__(self, on_checkpoint: Callable[[Path], None]) -> None:
        self.on_checkpoint = on_checkpoint

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.is_world_process_zero:
            self.on_checkpoint(Path(args.output_dir) / f"checkpoint-{state.global_step}")


class ReporterCallback(TrainerCallback):
    """Bridges Trainer events to the Reporter: progress on every log, and a stop checked after every (sub)step."""

    def __init__(self, reporter: Reporter) -> None:
        self.reporter = reporter
        self.stopped = False
        # The before/after evaluations also log through Trainer; only what happens inside train() is progress.
        self.training = False
        self.work: RunWork | None = None
        self.evaluation: tuple[str, int, int] | None = None  # phase, batches done, batches in all

    def phase(self, name: str, done: int = 0, total: int = 1) -> None:
        """Tell the reporter where the run is, when it listens (a bare Reporter has no `phase`)."""
        announce = getattr(self.reporter, "phase", None)
        if announce is not None:
            announce(name, done, total, self.work)

    def begin_evaluation(self, name: str, batches: int) -> None:
        self.evaluation = (name, 0, batches)
        self.phase(name, 0, batches)

    def on_prediction_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.training or self.evaluation is None:
            return
        name, done, total = self.evaluation
        done = min(done + 1, total)
        self.evaluation = (name, done, total)
        self.phase(name, done, total)

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.training = True

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.training = False

    def _check_stop(self, control: Any) -> None:
        # All processes of a run stop at the same step, however each reads the request.
        if not self.stopped and _any_process(self.reporter.should_stop()):
            self.stopped = True
        if self.stopped:
            control.should_training_stop = True
            control.should_epoch_stop = True
            # A cancelled run must not spend time on a checkpoint or an evaluation on its way out.
            control.should_save = False
            control.should_evaluate = False

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._check_stop(control)

    def on_substep_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._check_stop(control)

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, float] | None = None, **kwargs: Any) -> None:
        if not self.training:
            return
        logs = logs or {}
        evaluation = {k: float(v) for k, v in logs.items() if k.startswith("eval_") and isinstance(v, (int, float))}
        if "loss" in logs or evaluation:
            self.reporter.progress(
                state.global_step,
                state.max_steps,
                float(state.epoch or 0.0),
                float(logs["loss"]) if "loss" in logs else None,
                float(logs["learning_rate"]) if "learning_rate" in logs else None,
                evaluation,
            )


class _TokenCountingMixin:
    """Counts processed and real (non-padding) input tokens per training step, for throughput and packing figures."""

    tokens_seen = 0
    real_tokens = 0

    def training_step(self, model: Any, inputs: dict[str, Any], num_items_in_batch: Any = None) -> torch.Tensor:
        # input_ids, or the preference trainers' chosen_/rejected_/KL_input_ids (ORPO's prompt_input_ids are part of
        # its chosen and rejected sequences).
        for key, input_ids in inputs.items():
            if not key.endswith("input_ids") or key == "prompt_input_ids" or not isinstance(input_ids, torch.Tensor):
                continue
            self.tokens_seen += input_ids.numel()
            mask = inputs.get(key.replace("input_ids", "attention_mask"))
            # Padding-free batches (packing) carry position_ids and no mask: every token in them is real.
            self.real_tokens += int(mask.sum()) if mask is not None else input_ids.numel()
        return super().training_step(model, inputs, num_items_in_batch)  # type: ignore[misc]


class CountingTrainer(_TokenCountingMixin, Trainer):
    pass


class CountingSeq2SeqTrainer(_TokenCountingMixin, Seq2SeqTrainer):
    pass


class CountingSFTTrainer(_TokenCountingMixin, SFTTrainer):
    pass


class CountingDPOTrainer(_TokenCountingMixin, DPOTrainer):
    pass


class CountingKTOTrainer(_TokenCountingMixin, KTOTrainer):
    pass


def _preference_trainer(objective: str) -> tuple[Callable[..., Any], type[Trainer]]:
    """TRL's config and trainer classes for a preference objective (ORPO and CPO/SimPO live in trl.experimental)."""
    if objective == "orpo":
        from trl.experimental.orpo import ORPOConfig, ORPOTrainer

        class CountingORPOTrainer(_TokenCountingMixin, ORPOTrainer):
            pass

        return ORPOConfig, CountingORPOTrainer
    if objective == "simpo":
        from trl.experimental.cpo import CPOConfig, CPOTrainer

        class CountingCPOTrainer(_TokenCountingMixin, CPOTrainer):
            pass

        # SimPO is TRL's CPO trainer with the SimPO loss and no behaviour-cloning term.
        return partial(CPOConfig, loss_type="simpo", cpo_alpha=0.0), CountingCPOTrainer
    if objective == "kto":
        return KTOConfig, CountingKTOTrainer
    return DPOConfig, CountingDPOTrainer


def _common_arguments(spec: TrainingSpec, execution: Execution, eval_key: str) -> dict[str, Any]:
    hp = spec.hyperparameters
    on_cuda = execution.device == "cuda"
    arguments: dict[str, Any] = {
        "output_dir": str(spec.checkpoint_dir),
        "num_train_epochs": hp.epochs,
        "learning_rate": hp.learning_rate,
        "per_device_train_batch_size": hp.batch_size,
        "per_device_eval_batch_size": hp.batch_size,
        "gradient_accumulation_steps": hp.gradient_accumulation_steps,
        # transformers 5 folded warmup_ratio into warmup_steps: a float below 1 is a share of the total steps.
        "warmup_steps": float(hp.warmup_ratio),
        "weight_decay": hp.weight_decay,
        "lr_scheduler_type": "linear",
        "seed": hp.seed,
        "data_seed": hp.seed,
        "logging_steps": 1,
        "logging_strategy": "steps",
        "save_strategy": "steps",
        "save_steps": hp.save_steps,
        "save_total_limit": CHECKPOINTS_KEPT,
        "save_only_model": False,  # optimizer and scheduler state are what make a resume exact
        # One evaluation at the end, run by the engine itself (plus the base one before): an epoch-end evaluation
        # would read the same split again just before it.
        "eval_strategy": "no",
        "report_to": "none",
        "disable_tqdm": True,
        "use_cpu": not on_cuda,
        "bf16": execution.autocast_dtype == "bf16",
        "fp16": execution.autocast_dtype == "fp16",
        # Recomputing activations costs ~a third of the throughput (H100: 20k -> 38k tok/s without it on SmolLM2
        # LoRA): on only when the plan found that the run does not fit without it.
        "activation_checkpointing": execution.activation_checkpointing,
        "activation_checkpointing_kwargs": {"use_reentrant": False} if execution.activation_checkpointing else None,
        # Liger's fused RMSNorm / RoPE / SwiGLU; TRL keeps its own fused LM head, so Liger's cross-entropy stays off.
        "use_liger_kernel": execution.liger,
        "dataloader_pin_memory": on_cuda,
    }
    if execution.parallelism == "fsdp" and not on_cuda:
        # Trainer takes the FSDP state `_configure_fsdp_on_cpu` set up, rather than building a DDP one over it.
        arguments["accelerator_config"] = {"use_configured_state": True}
    if hp.early_stopping_patience:
        # load_best_model_at_end needs evaluations aligned with saves, so both happen every save_steps.
        arguments.update(
            eval_strategy="steps",
            eval_steps=hp.save_steps,
            load_best_model_at_end=True,
            metric_for_best_model=f"eval_{eval_key}_loss",
            greater_is_better=False,
        )
    return arguments


def _prepare_eval_sets(validation_sets: list[Dataset]) -> tuple[dict[str, Dataset], str]:
    """Eval sets keyed d0, d1...; with several, an 'all' set too so early stopping watches the whole mixture.

    An empty set (every held-out pair's prompt filled max_length) is left out: there is nothing to evaluate, and TRL's
    preference trainers read a first row when they prepare a set.
    """
    eval_sets = {f"d{i}": dataset for i, dataset in enumerate(validation_sets) if len(dataset)}
    if len(validation_sets) > 1:
        if eval_sets:
            eval_sets["all"] = concatenate_datasets(list(eval_sets.values()))
        return eval_sets, "all"
    return eval_sets, "d0"


@dataclass
class _PreferenceSets:
    """The preference rows a run hands TRL: those that keep an answer token within max_length."""

    train: Dataset  # of the training mixture (of a seeded sample of it, when the plan counts a large one)
    train_examples: int  # in the whole mixture (scaled from the sample)
    exact: bool  # False when counted on a sample
    evaluation: list[Dataset]  # of each dataset's evaluation sample
    refusals: list[str]  # a set left empty: what to change
    notes: list[str]  # rows left out of a set: how many, and what to change


def _answerable_preference_sets(
    splits: list[data_module.SplitDataset],
    samples: list[Dataset],
    tokenizer: Any,
    hp: Hyperparameters,
    sample_rows: int | None = None,
) -> _PreferenceSets:
    """The training mixture and the evaluation sets of a preference run without the rows whose prompt fills max_length
    (`data.answerable_rows`), and what to tell a person about those. The run and its plan both call it.

    With `sample_rows`, a larger mixture is counted on a seeded sample of that many rows and the count scaled.
    """
    objective, max_length = hp.objective, hp.max_length
    unit = "rows" if objective == "kto" else "pairs"
    mixture = data_module.mix_train_sets([data_module.preference_rows(s.train, objective) for s in splits], hp.seed)
    exact = sample_rows is None or len(mixture) <= sample_rows
    counted = mixture if exact else mixture.shuffle(seed=hp.seed).select(range(sample_rows or 0))
    train, cut = data_module.answerable_rows(counted, tokenizer, objective, max_length)
    examples = len(train) if exact else math.ceil(len(train) * len(mixture) / len(counted))
    refusals, notes = [], []
    if cut:
        message = partial(
            data_module.long_prompt_message, len(mixture) - examples, len(mixture), f"training {unit}", cut,
            max_length, about=not exact,
        )
        if examples:
            notes.append(message(outcome=f"the run leaves them out and trains on {examples}", refused=False))
        else:
            refusals.append(message(outcome="none is left to train on", refused=True))
    evaluation = []
    for split, sample in zip(splits, samples, strict=True):
        rows, cut = data_module.answerable_rows(
            data_module.preference_rows(sample, objective), tokenizer, objective, max_length
        )
        evaluation.append(rows)
        if cut:
            message = partial(
                data_module.long_prompt_message, len(cut), len(cut) + len(rows),
                f"held-out {unit} of dataset '{split.name}'", cut, max_length,
            )
            if len(rows):
                notes.append(message(outcome="they are left out of the evaluation, before and after", refused=False))
            else:
                refusals.append(message(outcome="none is left to evaluate the model on", refused=True))
    return _PreferenceSets(train, examples, exact, evaluation, refusals, notes)


class _Run:
    """The state of one training run, built step by step by `train`."""

    def __init__(self, spec: TrainingSpec, reporter: Reporter) -> None:
        self.spec = spec
        self.reporter = reporter
        self.hp = spec.hyperparameters
        self.log = _JobLog(logger, spec.job_id or "-")
        self.device = resolve_device(spec.device)
        self.config = load_config(spec.base_model_dir)
        check_combination(spec.task, spec.method, self.config, self.device)
        self.execution = plan_execution(
            spec.task,
            spec.method,
            self.config.model_type,
            self.device,
            packing=self.hp.packing,
            activation_checkpointing=self.hp.activation_checkpointing,
            capabilities=local_capabilities(),
            num_processes=self.hp.num_processes,
        )
        for note in self.execution.notes:
            self.log.info(note)
        self.tokenizer = load_tokenizer(spec.base_model_dir, spec.task)
        self.splits = data_module.load_splits(spec.task, spec.datasets, self.hp.eval_fraction, self.hp.seed)
        self.labels: list[str] | None = None
        # Every evaluation reads the same bounded sample of each validation split.
        self.eval_samples = _eval_samples(self.splits, self.hp)
        self.train_rows = 0  # rows in the training mixture, set when the trainer is built
        # Head and seq2seq tasks: each dataset's rows as the task encoded them (train, then the eval sample).
        self.train_sets: list[Dataset] | None = None
        self.validation_sets: list[Dataset] | None = None

    def build_trainer(self, callbacks: list[TrainerCallback]) -> Trainer:
        spec, hp, task = self.spec, self.hp, self.spec.task
        self.labels = tasks.kind(task).labels(self.splits)
        if self.execution.parallelism == "fsdp" and self.device != "cuda":
            _configure_fsdp_on_cpu()
        set_seed(hp.seed)
        model = load_model(spec.base_model_dir, task, self.execution, self.tokenizer, self.labels)
        self.model = prepare_model(model, task, spec.method, hp, spec.base_model_dir, self.execution)
        if registry.task(task).trainer == "sft":
            return self._build_sft_trainer(callbacks)
        if registry.task(task).trainer == "preference":
            return self._build_preference_trainer(callbacks)
        return self._build_task_trainer(callbacks)

    def _build_preference_trainer(self, callbacks: list[TrainerCallback]) -> Trainer:
        spec, hp = self.spec, self.hp
        sets = _answerable_preference_sets(self.splits, self.eval_samples, self.tokenizer, hp)
        eval_sets, eval_key = _prepare_eval_sets(sets.evaluation)
        # The plan refuses a set left empty. The run still goes on where it can: an empty evaluation set only goes
        # without a loss, unless early stopping has to watch it.
        if not len(sets.train) or (hp.early_stopping_patience and eval_key not in eval_sets):
            raise SpecError(sets.refusals)
        for message in sets.notes + sets.refusals:
            self.log.warning(message)
        self.eval_key = eval_key
        arguments = _common_arguments(spec, self.execution, eval_key)
        arguments.update(max_length=hp.max_length, beta=hp.beta)
        config_class, trainer_class = _preference_trainer(hp.objective)
        extra: dict[str, Any] = {}
        if not registry.method(spec.method).adapter and hp.objective not in registry.REFERENCE_FREE_OBJECTIVES:
            # Full fine-tuning keeps the base as a frozen second model to measure the policy against. With adapters
            # TRL switches them off for the reference pass: one copy of the base serves both.
            reference = load_model(spec.base_model_dir, spec.task, self.execution, self.tokenizer)
            extra["ref_model"] = reference.eval().requires_grad_(False)
        # Rows as uploaded (pairs, or KTO's unpaired rows), as the plan counts them; KTO splits a pair in two.
        self.train_rows = len(data_module.mix_train_sets([s.train for s in self.splits], hp.seed))
        return trainer_class(
            model=self.model,
            args=config_class(**arguments),
            train_dataset=sets.train,
            # A DatasetDict, which TRL's experimental ORPO trainer can map as a whole (it has no loop over a dict).
            eval_dataset=DatasetDict(eval_sets),
            processing_class=self.tokenizer,
            callbacks=callbacks,
            **extra,
        )

    def _build_sft_trainer(self, callbacks: list[TrainerCallback]) -> Trainer:
        spec, hp = self.spec, self.hp
        kind = tasks.causal_kind(spec.task)
        markers = _generation_markers(kind, self.tokenizer)
        train_sets = [kind.sft_rows(s.train, markers) for s in self.splits]
        validation_sets = [kind.sft_rows(sample, markers) for sample in self.eval_samples]
        eval_sets, eval_key = _prepare_eval_sets(validation_sets)
        arguments = _common_arguments(spec, self.execution, eval_key)
        arguments.update(_sft_data_arguments(kind, hp, self.execution, markers))
        self.eval_key = eval_key
        mixture = data_module.mix_train_sets(train_sets, hp.seed)
        self.train_rows = len(mixture)
        return CountingSFTTrainer(
            model=self.model,
            args=SFTConfig(**arguments),
            train_dataset=mixture,
            eval_dataset=eval_sets,
            processing_class=self.tokenizer,
            callbacks=callbacks,
        )

    def _build_task_trainer(self, callbacks: list[TrainerCallback]) -> Trainer:
        """Trainer (or Seq2SeqTrainer) over the rows the task's hooks encode, with its collator."""
        spec, hp, tokenizer, kind = self.spec, self.hp, self.tokenizer, tasks.kind(self.spec.task)
        label2id = {label: i for i, label in enumerate(self.labels or [])}

        def encode(dataset: Dataset) -> Dataset:
            return kind.encode(dataset, tokenizer, label2id, hp.max_length)

        collator = kind.collator(tokenizer, self.model)
        self.train_sets = [encode(s.train) for s in self.splits]
        self.validation_sets = [encode(sample) for sample in self.eval_samples]
        eval_sets, eval_key = _prepare_eval_sets(self.validation_sets)
        self.eval_key = eval_key
        arguments = _common_arguments(spec, self.execution, eval_key)
        if registry.task(spec.task).trainer == "seq2seq":
            trainer_class: type[Trainer] = CountingSeq2SeqTrainer
            args: TrainingArguments = Seq2SeqTrainingArguments(**arguments)
        else:
            trainer_class = CountingTrainer
            args = TrainingArguments(**arguments)
        mixture = data_module.mix_train_sets(self.train_sets, hp.seed)
        self.train_rows = len(mixture)
        return trainer_class(
            model=self.model,
            args=args,
            train_dataset=mixture,
            eval_dataset=eval_sets,
            processing_class=tokenizer,
            data_collator=collator,
            callbacks=callbacks,
        )

    def evaluate(self, trainer: Trainer) -> dict[str, dict[str, float]]:
        """Task metrics per dataset, keyed by the dataset's name."""
        kind, encoded, trained = tasks.kind(self.spec.task), self.validation_sets, self.train_sets
        results = {}
        for index, split in enumerate(self.splits):
            evaluation = tasks.Evaluation(
                trainer=trainer,
                eval_key=f"d{index}",
                raw=self.eval_samples[index],
                encoded=encoded[index] if encoded else None,
                train_encoded=trained[index] if trained else None,
                labels=self.labels,
                tokenizer=self.tokenizer,
                hp=self.hp,
            )
            results[split.name] = kind.metrics(evaluation)
        return results


def _eval_samples(splits: list[data_module.SplitDataset], hp: Hyperparameters) -> list[Dataset]:
    return [data_module.evaluation_sample(split.validation, hp.eval_max_rows, hp.seed) for split in splits]


def _generation_markers(kind: tasks.CausalKind, tokenizer: Any) -> bool:
    """Whether TRL can find the assistant spans in this tokenizer's chat template (conversation rows only)."""
    if not kind.chat_rows:
        return False
    if not tokenizer.chat_template:
        raise SpecError(f"Task '{kind.name}' needs a base model whose tokenizer has a chat template.")
    return bool(has_generation_markers(tokenizer.chat_template))


def _sft_data_arguments(kind: tasks.CausalKind, hp: Hyperparameters, execution: Execution, markers: bool) -> dict[str, Any]:
    """The SFTConfig fields that decide how rows become training sequences: the run and its plan both use them."""
    strategy = execution.packing_strategy
    return {
        "max_length": hp.max_length,
        "packing": strategy is not None,
        "packing_strategy": strategy or "bfd",
        "eval_packing": False,  # per-row eval loss: comparable before/after and across packing settings
        "assistant_only_loss": markers,
        "completion_only_loss": kind.completion_only_loss,
        "dataset_text_field": "text",
        "dataset_num_proc": None,
    }


def _prepared_sft_examples(train: Dataset, tokenizer: Any, arguments: dict[str, Any]) -> int:
    """How many sequences TRL's SFTTrainer makes of these rows (tokenized, filtered, packed), with no model.

    It runs the trainer's own `_prepare_dataset` on an instance that skips `__init__` (which needs a model); that
    method reads only the three attributes set here, as `SFTTrainer.__init__` sets them for the engine's arguments
    (a chat template is swapped in only for assistant_only_loss without markers, which the engine never asks for).
    tests/jobs/test_review_agrees.py holds the count against a real run.
    """
    with tempfile.TemporaryDirectory() as scratch:
        args = SFTConfig(output_dir=scratch, report_to="none", use_cpu=True, **arguments)
        preparer = CountingSFTTrainer.__new__(CountingSFTTrainer)
        preparer._tokenizer = tokenizer
        preparer.chat_template = None
        completion_only = args.completion_only_loss
        if completion_only is None:
            completion_only = "prompt" in train.column_names and "completion" in train.column_names
        preparer.completion_only_loss = completion_only
        return len(preparer._prepare_dataset(train, tokenizer, args, args.packing, None, "train"))


# Above this many training rows the plan counts packed sequences on a seeded sample and scales the count: tokenizing
# a large upload would hold the review page for minutes. The run itself always counts them all.
PLAN_EXACT_ROWS = 5000


def plan_run(
    base_model_dir: Path,
    task: str,
    method: str,
    datasets: list[DatasetFiles],
    hp: Hyperparameters,
    execution: Execution,
    notes: list[str] | None = None,
) -> RunPlan:
    """Rows, sequences, steps and trainable parameters of a run, counted by the code the run uses: the same split,
    the same eval sample, the same mixture, TRL's own tokenizing, filtering and packing (for preference pairs, the
    engine's filter of those whose prompt fills max_length), Trainer's step arithmetic, and the engine's
    `prepare_model` applied to the model built on the meta device. Loads no weights.

    Raises SpecError for a run that would have nothing to train on or to evaluate; what a person should read before
    launching it (rows that max_length leaves out) is appended to `notes` when given.
    """
    splits = data_module.load_splits(task, datasets, hp.eval_fraction, hp.seed)
    samples = _eval_samples(splits, hp)
    labels = tasks.kind(task).labels(splits)
    mixture = data_module.mix_train_sets([split.train for split in splits], hp.seed)
    exact = len(mixture) <= PLAN_EXACT_ROWS
    if registry.task(task).trainer == "sft":
        tokenizer = load_tokenizer(base_model_dir, task)
        kind = tasks.causal_kind(task)
        markers = _generation_markers(kind, tokenizer)
        counted = mixture if exact else mixture.shuffle(seed=hp.seed).select(range(PLAN_EXACT_ROWS))
        rows = kind.sft_rows(counted, markers)
        examples = _prepared_sft_examples(rows, tokenizer, _sft_data_arguments(kind, hp, execution, markers))
        if not exact:
            examples = math.ceil(examples * len(mixture) / PLAN_EXACT_ROWS)
    elif registry.task(task).trainer == "preference":
        # One example per pair (DPO, ORPO) or per unpaired row (KTO; a pair makes two) that keeps an answer token.
        sets = _answerable_preference_sets(splits, samples, load_tokenizer(base_model_dir, task), hp, PLAN_EXACT_ROWS)
        if sets.refusals:
            raise SpecError(sets.refusals)
        if notes is not None:
            notes.extend(sets.notes)
        examples, exact = sets.train_examples, sets.exact
    else:
        # Encoder and seq2seq tokenizing truncates and never drops a row: one sequence per row.
        examples = len(mixture)
    head_size = registry.task(task).head_config.get("num_labels") or (len(labels) if labels else 2)
    counts = parameter_counts(ModelShape.from_dir(base_model_dir), task, method, hp, head_size, base_model_dir)
    return RunPlan(
        datasets=[
            DatasetPlan(split.name, len(split.train), len(split.validation), len(sample), split.validation_source)
            for split, sample in zip(splits, samples, strict=True)
        ],
        train_rows=len(mixture),
        train_examples=examples,
        steps=data_module.training_steps(examples, hp),
        trainable_parameters=counts.trainable,
        total_parameters=counts.prepared_total,
        eval_rows=sum(len(sample) for sample in samples),
        exact=exact,
    )


def _eval_points(splits: list[data_module.SplitDataset], results: dict[str, dict[str, float]]) -> dict[str, float]:
    """Evaluation results under the keys Trainer logs them with (eval_d0_loss, ...), for the progress record."""
    return {
        f"eval_d{index}_{name}": value
        for index, split in enumerate(splits)
        for name, value in results.get(split.name, {}).items()
    }


def _reference_cost(spec: TrainingSpec) -> float:
    """DPO and KTO also run the reference model forward over every example: one forward pass more a step."""
    if registry.task(spec.task).trainer != "preference":
        return 0.0
    return 0.0 if spec.hyperparameters.objective in registry.REFERENCE_FREE_OBJECTIVES else 1.0


# The token columns of one example as each trainer prepares it: a sequence, or a pair of prompt + answer sequences.
_SEQUENCE_COLUMNS = (
    ("input_ids",),  # SFT, classifiers, seq2seq
    ("prompt_ids", "chosen_ids", "prompt_ids", "rejected_ids"),  # DPO
    ("chosen_input_ids", "rejected_input_ids"),  # ORPO (the prompt is inside each)
    ("prompt_ids", "completion_ids", "KL_completion_ids", "prompt_ids"),  # KTO: the example and its KL partner
)


def _mean_tokens(dataset: Any, sample: int = 1000) -> float:
    """Mean tokens per example, over the first `sample` (reading a large set's whole column would take seconds)."""
    names = getattr(dataset, "column_names", None) or []
    columns = next((group for group in _SEQUENCE_COLUMNS if set(group) <= set(names)), None)
    if dataset is None or len(dataset) == 0 or columns is None:
        return 0.0
    rows = dataset.select(range(min(len(dataset), sample)))
    return sum(sum(len(row) for row in rows[column]) for column in columns) / len(rows)


def last_complete_checkpoint(checkpoint_dir: Path) -> Path | None:
    """The newest checkpoint holding trainer_state.json.

    Trainer writes that file last, so a worker killed in the middle of a save leaves a folder without it, which
    transformers' get_last_checkpoint would still pick and then fail to resume from.
    """
    candidates = []
    for path in Path(checkpoint_dir).glob("checkpoint-*"):
        suffix = path.name.rsplit("-", 1)[-1]
        if path.is_dir() and suffix.isdigit() and (path / "trainer_state.json").exists():
            candidates.append((int(suffix), path))
    return max(candidates)[1] if candidates else None


def _forget_evaluation_prepare(trainer: Trainer) -> None:
    """Let Trainer wrap the model in DDP for training after the base evaluation.

    That evaluation prepares the bare model for evaluation, and accelerate (1.15) marks it prepared; its training
    prepare then returns it unwrapped, and each process trains on its own share of the batch with no gradient
    exchange (found by tests/training/test_distributed.py: the processes' weights drifted apart).
    """
    model = trainer.model
    model._is_accelerate_prepared = False
    trainer.accelerator._models = [known for known in trainer.accelerator._models if known is not model]


def _shard_model(trainer: Trainer) -> None:
    """Shard the model of an FSDP run, with its optimizer, before the base evaluation reads it.

    Trainer's evaluation prepares a bare model alone, which accelerate refuses under FSDP2 ("a model and optimizer
    must be passed together"); and an unsharded model in every process is what FSDP is there to avoid. Sharded here
    the way Trainer's training prepare does it (its optimizer, `accelerator.prepare(model, optimizer)`), the model is
    already an FSDP module when training starts: that prepare finds it so and keeps it and the optimizer.
    """
    trainer.create_optimizer()
    model, trainer.optimizer = trainer.accelerator.prepare(trainer.model, trainer.optimizer)
    trainer.model = trainer.model_wrapped = model


def _configure_fsdp_on_cpu() -> None:
    """Set accelerate's state up for FSDP in a CPU process, as `accelerate launch` does by itself on GPUs.

    accelerate 1.15 turns FSDP on only for GPU-family process groups (AcceleratorState.__init__ sets
    DistributedType.FSDP inside its `distributed_type in [MULTI_GPU, MULTI_NPU, ...]` branch); CPU processes are
    MULTI_CPU, so an FSDP launch config on the CPU would train DDP without a word. torch's `fully_shard` runs on the CPU
    over gloo, and so does accelerate's FSDP2 code once the state says FSDP: this sets it as that branch would, with
    the plugin read from the FSDP_* variables `accelerate launch` exported from `launch.FSDP_CONFIG`. The engine
    checks that Trainer took it (`_check_parallelism`).
    """
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState, PartialState
    from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin

    state = Accelerator(cpu=True).state
    if state.distributed_type != DistributedType.MULTI_CPU:
        raise RuntimeError(f"FSDP on the CPU expects accelerate's MULTI_CPU state, found {state.distributed_type}.")
    AcceleratorState._shared_state["fsdp_plugin"] = FullyShardedDataParallelPlugin()
    AcceleratorState._shared_state["distributed_type"] = DistributedType.FSDP
    PartialState._shared_state["distributed_type"] = DistributedType.FSDP


def _check_parallelism(trainer: Trainer, execution: Execution) -> None:
    """Refuse to train otherwise than planned: an FSDP plan under DDP would need N times the memory it was given."""
    fsdp = bool(getattr(trainer, "is_fsdp_enabled", False))
    if fsdp != (execution.parallelism == "fsdp"):
        raise RuntimeError(
            f"This run was planned as {execution.parallelism_label} but accelerate runs "
            f"{trainer.accelerator.distributed_type}: start it through jobs.training.launch.run_distributed."
        )


def _gather_fsdp_model(trainer: Trainer, task: str) -> Any:
    """The trained model of an FSDP run whole, as a plain transformers model on rank 0 (None on the others), for
    `save_pretrained` to write as any other full model (the sharded one's class is FSDP's subclass, and its weights
    are DTensor shards). Every process must call it: the gather is collective (accelerate's FSDP2 `get_state_dict`:
    full state dict, on rank 0, on the CPU).
    """
    state_dict = trainer.accelerator.get_state_dict(trainer.model)
    if not trainer.is_world_process_zero():
        return None
    sharded = trainer.accelerator.unwrap_model(trainer.model)
    with torch.device("meta"):
        model = registry.auto_class(task).from_config(sharded.config)
    model.load_state_dict(state_dict, assign=True)
    # Buffers outside the state dict (rotary frequencies) are whole in every process: FSDP shards parameters only.
    for name, buffer in sharded.named_buffers():
        owner, _, leaf = name.rpartition(".")
        module = model.get_submodule(owner)
        if module._buffers.get(leaf) is not None and module._buffers[leaf].is_meta:
            module._buffers[leaf] = buffer.detach().to("cpu", copy=True)
    model.tie_weights()
    model.generation_config = sharded.generation_config
    return model


def _peak_memory_bytes(device: str) -> int:
    if device == "cuda":
        return int(torch.cuda.max_memory_allocated())
    # Linux reports ru_maxrss in KiB: the process's peak resident set, the CPU analogue of the CUDA peak.
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def train(spec: TrainingSpec, reporter: Reporter | None = None) -> TrainingResult:
    """Fine-tune `spec.base_model_dir` as the spec says; resume from `spec.checkpoint_dir` when it holds a checkpoint.

    Raises SpecError before any training when the combination cannot work. Returns with `stopped=True` (and no
    artifact) when the reporter asked to stop; the checkpoints stay, so a retry can resume.
    """
    started = time.perf_counter()
    hp = spec.hyperparameters
    processes = int(os.environ.get("WORLD_SIZE", "1"))
    if processes != hp.num_processes:
        # The steps, the batches and the decisions to stop are counted for num_processes.
        raise SpecError(
            f"This run asks for {hp.num_processes} processes but runs in {processes}: "
            "start it through jobs.training.launch.run_distributed."
        )
    reporter = reporter or NullReporter()
    reporter_callback = ReporterCallback(reporter)
    phase_seconds: dict[str, float] = {}
    reporter_callback.phase("loading")
    run = _Run(spec, reporter)
    run.log.info(
        "Training %s / %s on %s (%s, %s)", spec.task, spec.method, spec.base_model_dir, run.device,
        run.execution.parallelism_label,
    )
    if run.device == "cuda":
        torch.cuda.reset_peak_memory_stats()

    callbacks: list[TrainerCallback] = [reporter_callback, TimedCheckpointCallback(spec.checkpoint_seconds)]
    if spec.on_checkpoint is not None:
        callbacks.append(CheckpointSavedCallback(spec.on_checkpoint))
    if hp.early_stopping_patience:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=hp.early_stopping_patience))
    trainer = run.build_trainer(callbacks)
    _check_parallelism(trainer, run.execution)
    # With tqdm disabled, Trainer prints every log dict to stdout; the engine logs through logging only.
    trainer.remove_callback(PrinterCallback)
    # The steps the plan showed: Trainer's own arithmetic over the prepared sequences, capped by max_steps. Set
    # before train() reads it, and the same on every resume (same data, same batch size).
    examples = len(trainer.train_dataset)
    planned_steps = data_module.training_steps(examples, hp)
    trainer.args.max_steps = planned_steps
    if hp.early_stopping_patience:
        # Early stopping evaluates every save_steps; on a small dataset that could be never. At least once an
        # epoch, then.
        steps_per_epoch = max(1, len(trainer.get_train_dataloader()) // trainer.args.gradient_accumulation_steps)
        interval = min(hp.save_steps, steps_per_epoch, planned_steps)
        trainer.args.eval_steps = trainer.args.save_steps = interval
    trainable, total = count_parameters(run.model)

    Path(spec.checkpoint_dir).mkdir(parents=True, exist_ok=True)
    last_checkpoint = last_complete_checkpoint(spec.checkpoint_dir)
    resumed_from = int(last_checkpoint.name.rsplit("-", 1)[-1]) if last_checkpoint else 0
    # What one evaluation reads: the prepared sets of each dataset (a preference set holds only the pairs that keep
    # an answer token; one left empty is not there).
    prepared = trainer.eval_dataset or {}
    eval_sets = [prepared[key] for key in (f"d{i}" for i in range(len(run.splits))) if key in prepared]
    # Per process: each evaluates its share of the batches, in step with the others.
    eval_batches = sum(math.ceil(len(dataset) / (hp.batch_size * processes)) for dataset in eval_sets)
    reporter_callback.work = RunWork(
        eval_batches=eval_batches,
        eval_tokens=round(sum(_mean_tokens(dataset) * len(dataset) for dataset in eval_sets)),
        train_steps=max(planned_steps - resumed_from, 0),
        tokens_per_step=round(
            _mean_tokens(trainer.train_dataset) * hp.batch_size * hp.gradient_accumulation_steps * processes
        ),
        train_cost=2.0 + trainable / max(total, 1) + _reference_cost(spec),
    )
    phase_seconds["loading"] = round(time.perf_counter() - started, 3)

    mark = time.perf_counter()
    if trainer.is_fsdp_enabled:
        _shard_model(trainer)
    reporter_callback.begin_evaluation("evaluating_base", eval_batches)
    base_metrics = run.evaluate(trainer)
    run.log.info("Base metrics: %s", base_metrics)
    phase_seconds["evaluating_base"] = round(time.perf_counter() - mark, 3)
    # Recorded as a validation point at the start, so the loss chart shows where the base model stood.
    reporter.progress(resumed_from, planned_steps, 0.0, None, None, _eval_points(run.splits, base_metrics))

    if last_checkpoint:
        run.log.info("Resuming from %s", last_checkpoint)
    reporter_callback.evaluation = None
    reporter_callback.phase("training")
    if processes > 1 and not trainer.is_fsdp_enabled:
        _forget_evaluation_prepare(trainer)
    train_started, cpu_started = time.perf_counter(), time.process_time()
    trainer.train(resume_from_checkpoint=str(last_checkpoint) if last_checkpoint else None)
    train_seconds = time.perf_counter() - train_started
    # CPU time of this process: on a shared machine it measures the work done, not the neighbours' load.
    train_cpu_seconds = time.process_time() - cpu_started
    phase_seconds["training"] = round(train_seconds, 3)
    tokens_seen, real_tokens = (int(n) for n in _across_processes([trainer.tokens_seen, trainer.real_tokens], "sum"))

    summary = TrainingSummary(
        tokens_seen=tokens_seen,
        real_tokens=real_tokens,
        tokens_per_second=round(tokens_seen / train_seconds, 2) if train_seconds else 0.0,
        train_seconds=round(train_seconds, 3),
        train_cpu_seconds=round(train_cpu_seconds, 3),
        trainable_parameters=trainable,
        total_parameters=total,
        global_step=trainer.state.global_step,
        resumed_from_step=resumed_from,
        train_rows=run.train_rows,
        train_examples=examples,
        planned_steps=planned_steps,
        eval_rows=sum(len(sample) for sample in run.eval_samples),
        phase_seconds=phase_seconds,
    )
    metrics: dict[str, Any] = {"base": base_metrics}
    if reporter_callback.stopped:
        run.log.info("Stopped on request at step %d", trainer.state.global_step)
        summary.peak_memory_bytes = _peak_memory_bytes(run.device)
        summary.wall_seconds = round(time.perf_counter() - started, 3)
        return TrainingResult(None, metrics, summary, stopped=True, log_history=trainer.state.log_history)

    mark = time.perf_counter()
    reporter_callback.begin_evaluation("evaluating", eval_batches)
    metrics["tuned"] = run.evaluate(trainer)
    run.log.info("Tuned metrics: %s", metrics["tuned"])
    phase_seconds["evaluating"] = round(time.perf_counter() - mark, 3)
    reporter.progress(
        trainer.state.global_step,
        planned_steps,
        float(trainer.state.epoch or 0.0),
        None,
        None,
        _eval_points(run.splits, metrics["tuned"]),
    )
    reporter_callback.evaluation = None
    reporter_callback.phase("saving")
    mark = time.perf_counter()
    summary.peak_memory_bytes = _peak_memory_bytes(run.device)
    summary.wall_seconds = round(time.perf_counter() - started, 3)

    adapter = registry.method(spec.method).adapter
    if "ref" in getattr(trainer.model, "peft_config", {}):
        # TRL's DPO adds a frozen copy of a fresh adapter as its reference; the result is the trained one alone.
        trainer.model.delete_adapter("ref")
    # Under FSDP each process holds a shard: all of them gather the whole model for rank 0 to write.
    trained = _gather_fsdp_model(trainer, spec.task) if trainer.is_fsdp_enabled else trainer.model
    if not trainer.is_world_process_zero():
        # The other processes of a multi-process run hold the same weights: the main one alone writes them.
        return TrainingResult(None, metrics, summary, kind="adapter" if adapter else "full")
    base_name = spec.base_model_name or str(spec.base_model_dir)
    hyperparameters = spec.hyperparameters.to_dict()
    card = model_card(
        base_model=base_name,
        adapter=adapter,
        task=spec.task,
        method=spec.method,
        dataset_names=[d.name for d in spec.datasets],
        metrics=metrics,
        hyperparameters=hyperparameters,
        summary=summary.__dict__,
    )
    training_args = {
        "task": spec.task,
        "method": spec.method,
        "base_model": base_name,
        "datasets": [d.name for d in spec.datasets],
        "device": run.device,
        "execution": run.execution.describe(),
        "hyperparameters": hyperparameters,
        "trainer": trainer.args.to_dict(),
    }
    artifact_dir = save_artifact(
        output_dir=Path(spec.output_dir),
        model=trained,
        tokenizer=run.tokenizer,
        base_model_name=base_name,
        card=card,
        metrics={**metrics, "summary": summary.__dict__},
        training_args=training_args,
        save_config=adapter and registry.task(spec.task).classifier,
    )
    run.log.info("Artifact written to %s", artifact_dir)
    phase_seconds["saving"] = round(time.perf_counter() - mark, 3)
    summary.wall_seconds = round(time.perf_counter() - started, 3)
    return TrainingResult(
        artifact_dir=artifact_dir,
        metrics=metrics,
        summary=summary,
        stopped=False,
        kind="adapter" if adapter else "full",
        log_history=trainer.state.log_history,
        model=trained.eval(),
    )
