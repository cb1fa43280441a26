"""The training run: spec in, Trainer (TRL's SFTTrainer for causal LMs) in the middle, artifact and result out."""

from __future__ import annotations

import logging
import resource
import time
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset, concatenate_datasets
from transformers import (
    DataCollatorForSeq2Seq,
    DataCollatorForTokenClassification,
    DataCollatorWithPadding,
    EarlyStoppingCallback,
    PrinterCallback,
    Seq2SeqTrainer,
    Seq2SeqTrainingArguments,
    Trainer,
    TrainerCallback,
    TrainingArguments,
    set_seed,
)
from trl import SFTConfig, SFTTrainer
from trl.chat_template_utils import has_generation_markers

from jobs.training import data as data_module
from jobs.training import metrics as task_metrics
from jobs.training.artifact import model_card, save_artifact
from jobs.training.execution import Execution, local_capabilities, plan_execution
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
    ADAPTER_METHODS,
    NullReporter,
    Reporter,
    SpecError,
    TrainingResult,
    TrainingSpec,
    TrainingSummary,
)

logger = logging.getLogger(__name__)


class _JobLog(logging.LoggerAdapter):
    """Prefixes every engine log line with the job id, so a worker's interleaved logs stay attributable."""

    def __init__(self, logger: logging.Logger, job_id: str) -> None:
        super().__init__(logger, {"job_id": job_id})
        self.job_id = job_id

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        return f"[job {self.job_id}] {msg}", kwargs


class ReporterCallback(TrainerCallback):
    """Bridges Trainer events to the Reporter: progress on every log, and a stop checked after every (sub)step."""

    def __init__(self, reporter: Reporter) -> None:
        self.reporter = reporter
        self.stopped = False
        # The before/after evaluations also log through Trainer; only what happens inside train() is progress.
        self.training = False

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.training = True

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.training = False

    def _check_stop(self, control: Any) -> None:
        if not self.stopped and self.reporter.should_stop():
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
        input_ids = inputs.get("input_ids")
        if input_ids is not None:
            self.tokens_seen += input_ids.numel()
            mask = inputs.get("attention_mask")
            # Padding-free batches (packing) carry position_ids and no mask: every token in them is real.
            self.real_tokens += int(mask.sum()) if mask is not None else input_ids.numel()
        return super().training_step(model, inputs, num_items_in_batch)  # type: ignore[misc]


class CountingTrainer(_TokenCountingMixin, Trainer):
    pass


class CountingSeq2SeqTrainer(_TokenCountingMixin, Seq2SeqTrainer):
    pass


class CountingSFTTrainer(_TokenCountingMixin, SFTTrainer):
    pass


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
        "save_total_limit": 2,
        "save_only_model": False,  # optimizer and scheduler state are what make a resume exact
        "eval_strategy": "epoch",
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
    """Eval sets keyed d0, d1...; with several, an 'all' set too so early stopping watches the whole mixture."""
    eval_sets = {f"d{i}": dataset for i, dataset in enumerate(validation_sets)}
    if len(validation_sets) > 1:
        eval_sets["all"] = concatenate_datasets(validation_sets)
        return eval_sets, "all"
    return eval_sets, "d0"


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
        )
        for note in self.execution.notes:
            self.log.info(note)
        self.tokenizer = load_tokenizer(spec.base_model_dir, spec.task)
        self.splits = data_module.load_splits(spec.task, spec.datasets, self.hp.eval_fraction, self.hp.seed)
        self.labels: list[str] | None = None
        self.raw_validation: list[Dataset] = [split.validation for split in self.splits]

    def build_trainer(self, callbacks: list[TrainerCallback]) -> Trainer:
        spec, hp, task = self.spec, self.hp, self.spec.task
        if task in ("classification", "token_classification"):
            nested = task == "token_classification"
            self.labels = data_module.label_names(self.splits, "tags" if nested else "label", nested)
        set_seed(hp.seed)
        model = load_model(spec.base_model_dir, task, self.execution, self.tokenizer, self.labels)
        self.model = prepare_model(model, task, spec.method, hp, spec.base_model_dir, self.execution)
        if task in ("sft", "text"):
            return self._build_sft_trainer(callbacks)
        return self._build_task_trainer(callbacks)

    def _build_sft_trainer(self, callbacks: list[TrainerCallback]) -> Trainer:
        spec, hp = self.spec, self.hp
        if spec.task == "sft":
            markers = bool(self.tokenizer.chat_template) and has_generation_markers(self.tokenizer.chat_template)
            if not self.tokenizer.chat_template:
                raise SpecError("Task 'sft' needs a base model whose tokenizer has a chat template.")
            train_sets = [data_module.to_conversations(s.train, markers) for s in self.splits]
            validation_sets = [data_module.to_conversations(s.validation, markers) for s in self.splits]
        else:
            markers = False
            train_sets = [s.train.select_columns(["text"]) for s in self.splits]
            validation_sets = [s.validation.select_columns(["text"]) for s in self.splits]
        eval_sets, eval_key = _prepare_eval_sets(validation_sets)
        strategy = self.execution.packing_strategy
        arguments = _common_arguments(spec, self.execution, eval_key)
        arguments.update(
            max_length=hp.max_length,
            packing=strategy is not None,
            packing_strategy=strategy or "bfd",
            eval_packing=False,  # per-row eval loss: comparable before/after and across packing settings
            assistant_only_loss=markers,
            completion_only_loss=None if spec.task == "sft" else False,
            dataset_text_field="text",
            dataset_num_proc=None,
        )
        self.eval_key = eval_key
        return CountingSFTTrainer(
            model=self.model,
            args=SFTConfig(**arguments),
            train_dataset=data_module.mix_train_sets(train_sets, hp.seed),
            eval_dataset=eval_sets,
            processing_class=self.tokenizer,
            callbacks=callbacks,
        )

    def _build_task_trainer(self, callbacks: list[TrainerCallback]) -> Trainer:
        spec, hp, task, tokenizer = self.spec, self.hp, self.spec.task, self.tokenizer
        if task == "seq2seq":

            def encode(dataset: Dataset) -> Dataset:
                return data_module.tokenize_seq2seq(dataset, tokenizer, hp.max_length)

            base = self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model
            collator: Any = DataCollatorForSeq2Seq(tokenizer, model=base, label_pad_token_id=-100)
        else:
            label2id = {label: i for i, label in enumerate(self.labels or [])}
            if task == "classification":

                def encode(dataset: Dataset) -> Dataset:
                    return data_module.tokenize_classification(dataset, tokenizer, label2id, hp.max_length)

                collator = DataCollatorWithPadding(tokenizer)
            else:

                def encode(dataset: Dataset) -> Dataset:
                    return data_module.tokenize_token_classification(dataset, tokenizer, label2id, hp.max_length)

                collator = DataCollatorForTokenClassification(tokenizer)
        self.train_sets = [encode(s.train) for s in self.splits]
        self.validation_sets = [encode(s.validation) for s in self.splits]
        eval_sets, eval_key = _prepare_eval_sets(self.validation_sets)
        self.eval_key = eval_key
        arguments = _common_arguments(spec, self.execution, eval_key)
        if task == "seq2seq":
            trainer_class: type[Trainer] = CountingSeq2SeqTrainer
            args: TrainingArguments = Seq2SeqTrainingArguments(**arguments)
        else:
            trainer_class = CountingTrainer
            args = TrainingArguments(**arguments)
        return trainer_class(
            model=self.model,
            args=args,
            train_dataset=data_module.mix_train_sets(self.train_sets, hp.seed),
            eval_dataset=eval_sets,
            processing_class=tokenizer,
            data_collator=collator,
            callbacks=callbacks,
        )

    def evaluate(self, trainer: Trainer) -> dict[str, dict[str, float]]:
        """Task metrics per dataset, keyed by the dataset's name."""
        task, results = self.spec.task, {}
        for index, split in enumerate(self.splits):
            key = f"d{index}"
            if task in ("sft", "text"):
                values = task_metrics.language_model_metrics(trainer, key)
            elif task == "classification":
                train_labels = self.train_sets[index]["labels"]
                values = task_metrics.classification_metrics(trainer, self.validation_sets[index], train_labels)
            elif task == "token_classification":
                id2label = dict(enumerate(self.labels or []))
                values = task_metrics.token_classification_metrics(trainer, self.validation_sets[index], id2label)
            else:
                values = task_metrics.seq2seq_metrics(
                    trainer,
                    key,
                    split.validation,
                    trainer.model,
                    self.tokenizer,
                    self.hp.max_length,
                    self.hp.batch_size,
                )
            results[split.name] = values
        return results


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
    reporter = reporter or NullReporter()
    run = _Run(spec, reporter)
    run.log.info("Training %s / %s on %s (%s)", spec.task, spec.method, spec.base_model_dir, run.device)
    if run.device == "cuda":
        torch.cuda.reset_peak_memory_stats()

    reporter_callback = ReporterCallback(reporter)
    callbacks: list[TrainerCallback] = [reporter_callback]
    if spec.hyperparameters.early_stopping_patience:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=spec.hyperparameters.early_stopping_patience))
    trainer = run.build_trainer(callbacks)
    # With tqdm disabled, Trainer prints every log dict to stdout; the engine logs through logging only.
    trainer.remove_callback(PrinterCallback)
    if spec.hyperparameters.early_stopping_patience:
        # Early stopping evaluates every save_steps; on a small dataset that could be never. At least once an
        # epoch, then. Set before train() reads it, and the same on every resume (same data, same batch size).
        steps_per_epoch = max(1, len(trainer.get_train_dataloader()) // trainer.args.gradient_accumulation_steps)
        interval = min(spec.hyperparameters.save_steps, steps_per_epoch)
        trainer.args.eval_steps = trainer.args.save_steps = interval
    trainable, total = count_parameters(run.model)

    base_metrics = run.evaluate(trainer)
    run.log.info("Base metrics: %s", base_metrics)

    Path(spec.checkpoint_dir).mkdir(parents=True, exist_ok=True)
    last_checkpoint = last_complete_checkpoint(spec.checkpoint_dir)
    resumed_from = int(last_checkpoint.name.rsplit("-", 1)[-1]) if last_checkpoint else 0
    if last_checkpoint:
        run.log.info("Resuming from %s", last_checkpoint)
    train_started, cpu_started = time.perf_counter(), time.process_time()
    trainer.train(resume_from_checkpoint=str(last_checkpoint) if last_checkpoint else None)
    train_seconds = time.perf_counter() - train_started
    # CPU time of this process: on a shared machine it measures the work done, not the neighbours' load.
    train_cpu_seconds = time.process_time() - cpu_started

    summary = TrainingSummary(
        tokens_seen=trainer.tokens_seen,
        real_tokens=trainer.real_tokens,
        tokens_per_second=round(trainer.tokens_seen / train_seconds, 2) if train_seconds else 0.0,
        train_seconds=round(train_seconds, 3),
        train_cpu_seconds=round(train_cpu_seconds, 3),
        trainable_parameters=trainable,
        total_parameters=total,
        global_step=trainer.state.global_step,
        resumed_from_step=resumed_from,
    )
    metrics: dict[str, Any] = {"base": base_metrics}
    if reporter_callback.stopped:
        run.log.info("Stopped on request at step %d", trainer.state.global_step)
        summary.peak_memory_bytes = _peak_memory_bytes(run.device)
        summary.wall_seconds = round(time.perf_counter() - started, 3)
        return TrainingResult(None, metrics, summary, stopped=True, log_history=trainer.state.log_history)

    metrics["tuned"] = run.evaluate(trainer)
    run.log.info("Tuned metrics: %s", metrics["tuned"])
    summary.peak_memory_bytes = _peak_memory_bytes(run.device)
    summary.wall_seconds = round(time.perf_counter() - started, 3)

    adapter = spec.method in ADAPTER_METHODS
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
        model=trainer.model,
        tokenizer=run.tokenizer,
        base_model_name=base_name,
        card=card,
        metrics={**metrics, "summary": summary.__dict__},
        training_args=training_args,
        save_config=adapter and spec.task in ("classification", "token_classification"),
    )
    run.log.info("Artifact written to %s", artifact_dir)
    return TrainingResult(
        artifact_dir=artifact_dir,
        metrics=metrics,
        summary=summary,
        stopped=False,
        kind="adapter" if adapter else "full",
        log_history=trainer.state.log_history,
        model=trainer.model.eval(),
    )
