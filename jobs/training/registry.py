"""The one table of what Layercake trains: tasks, the dataset shapes that feed them, the methods that apply to them.

Everything else reads it: dataset shape detection, presets, the engine's model loading and method preparation, the
artifact's card, the memory estimate, catalog loading, the job wizard, `plan_job` and the API's vocabulary. Adding a
task means a `Task` row here (and its `Shape` rows), its hooks (`jobs.training.tasks.<task>`) and its data's
(`webapp.datasets.kinds.<task>`): docs/architecture.md, "Adding a task".

Plain data, no Django and no torch at import time: the webapp and the engine both import it cheaply.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Method:
    """A way to train: which weights change, and what comes out."""

    name: str
    label: str  # for people
    summary: str  # one line for the wizard
    adapter: bool  # the result is an adapter layered on the base (else a new full model)
    mergeable: bool  # the adapter's weights fold into the base's (LoRA-style deltas; a soft prompt does not)
    needs_cuda: bool = False  # QLoRA's 4-bit weights need bitsandbytes on a CUDA GPU
    # What the memory estimate needs to know: which weights carry gradients and optimizer state.
    trains: str = "all"  # all | last_layers | head | adapter | soft_prompt


METHOD_TABLE: dict[str, Method] = {
    method.name: method
    for method in (
        Method(
            "full", "Full fine-tuning", "Trains every weight: the most capacity and ~4x the model's size in memory. A new full model.",
            adapter=False, mergeable=False,
        ),
        Method(
            "freeze", "Partial fine-tuning", "Partial fine-tuning: trains only the last layers (and the head). A new full model.",
            adapter=False, mergeable=False, trains="last_layers",
        ),
        Method(
            "lora", "LoRA", "Trains small low-rank adapters beside frozen weights. Small files, low memory, close to full quality.",
            adapter=True, mergeable=True, trains="adapter",
        ),
        Method(
            "qlora", "QLoRA", "LoRA over a 4-bit base: the least memory for big models. Needs a CUDA GPU worker.",
            adapter=True, mergeable=True, needs_cuda=True, trains="adapter",
        ),
        Method(
            "prompt_tuning", "Prompt tuning",
            "Learns a soft prompt of a few virtual tokens; the model is untouched. Tiny files, least memory.",
            adapter=True, mergeable=False, trains="soft_prompt",
        ),
        Method(
            "head", "Head only",
            "Transfer learning: the base stays frozen and only a new task head trains. Fast, cheap, a solid baseline.",
            adapter=False, mergeable=False, trains="head",
        ),
    )
}
# peft's prompt-learning adapters add virtual tokens rather than weight deltas: nothing to fold into the base.
# Every other adapter type (LoRA, QLoRA's LoRA, imported IA3 or LoHa) merges.
PROMPT_LEARNING_PEFT_TYPES = ("PROMPT_TUNING", "P_TUNING", "PREFIX_TUNING")


def peft_type_mergeable(peft_type: str | None) -> bool:
    """Whether an adapter of this peft type (adapter_config.json's `peft_type`) can be merged into its base."""
    return (peft_type or "").upper() not in PROMPT_LEARNING_PEFT_TYPES


# The order the wizard offers them in: the lightest first.
METHOD_LADDER = ("prompt_tuning", "lora", "qlora", "head", "freeze", "full")


@dataclass(frozen=True)
class Shape:
    """A dataset layout (API.md's column names, case-insensitive): required columns, then optional ones."""

    name: str
    task: str
    required: tuple[str, ...]
    optional: tuple[str, ...] = ()

    @property
    def columns(self) -> tuple[str, ...]:
        return self.required + self.optional


# In detection order: the most specific first, so text + label is classification, not raw text.
SHAPE_TABLE: dict[str, Shape] = {
    shape.name: shape
    for shape in (
        # Preference data first: its prompt may come as `conversations` (LLaMA-Factory), which chat would take.
        Shape("preference", "preference", ("prompt", "chosen", "rejected")),
        Shape("preference_unpaired", "preference", ("prompt", "completion", "label")),
        Shape("chat", "sft", ("messages",), ("system",)),
        Shape("instruction", "sft", ("instruction", "output"), ("input",)),
        Shape("token_classification", "token_classification", ("tokens", "tags")),
        Shape("seq2seq", "seq2seq", ("source", "target")),
        # A `score` beside a `label` is most often the label's confidence: classification first (declaring the
        # regression task picks regression). `score`, not seq2seq's `target`, so text + target stays unambiguous.
        Shape("classification", "classification", ("text", "label")),
        # `labels` (a list, or labels joined by commas or semicolons) never answers to classification's `label`:
        # with both columns, classification first, as with `score` (declaring multi_label_classification picks this).
        Shape("multi_label", "multi_label_classification", ("text", "labels")),
        Shape("regression", "regression", ("text", "score")),
        Shape("text", "text", ("text",)),
    )
}


@dataclass(frozen=True)
class Task:
    """What a fine-tuned model does, and everything the code needs to know to train and serve it."""

    name: str
    label: str  # for people (the wizard)
    architecture: str  # the catalog family a base needs: causal_lm | encoder | seq2seq
    model_class: str  # the transformers Auto class of the trained model
    peft_task_type: str  # peft's TaskType name
    pipeline_tag: str  # the Hugging Face hub's, written into the model card
    preset_family: str  # generative | encoder | seq2seq (jobs.training.presets)
    methods: tuple[str, ...]
    # Which trainer branch of the engine runs it: "sft" (TRL's SFTTrainer: chat templates, packing, its fused LM
    # head), "classifier" (Trainer over a new head), "seq2seq" (Seq2SeqTrainer), "preference" (TRL's DPO, ORPO or
    # KTO trainer, by the `objective` hyperparameter).
    trainer: str
    # A task head over the model's output (classes, tags or a score), or text out (generative).
    classifier: bool = False
    # transformers' `problem_type` when the task fixes the loss: "regression" (MSE on float labels),
    # "multi_label_classification" (a sigmoid and binary cross-entropy per label, on multi-hot float labels). None:
    # transformers picks single-label cross-entropy from the integer labels. Catalog loading reads it back from a
    # model's config.json to tell tasks of the same head apart.
    problem_type: str | None = None
    # Outputs of the head whatever the data holds (regression: one score). None: one per label found in the data.
    head_size: int | None = None

    @property
    def shapes(self) -> tuple[str, ...]:
        return tuple(shape.name for shape in SHAPE_TABLE.values() if shape.task == self.name)

    @property
    def generative(self) -> bool:
        return not self.classifier

    @property
    def causal(self) -> bool:
        return self.architecture == "causal_lm"

    @property
    def head_config(self) -> dict[str, Any]:
        """Model config fields the task's head needs whatever the data holds: its loss, and its size when fixed."""
        config: dict[str, Any] = {"problem_type": self.problem_type} if self.problem_type else {}
        return config | ({"num_labels": self.head_size} if self.head_size else {})


_LM_METHODS = ("full", "freeze", "lora", "qlora", "prompt_tuning")
_CLASSIFIER_METHODS = ("full", "freeze", "lora", "qlora", "head")

TASK_TABLE: dict[str, Task] = {
    task.name: task
    for task in (
        Task(
            "sft", "Instruction / chat fine-tuning (SFT)", "causal_lm", "AutoModelForCausalLM", "CAUSAL_LM",
            "text-generation", "generative", _LM_METHODS, "sft",
        ),
        Task(
            "text", "Continued pre-training on raw text", "causal_lm", "AutoModelForCausalLM", "CAUSAL_LM",
            "text-generation", "generative", _LM_METHODS, "sft",
        ),
        Task(
            "preference", "Preference tuning (DPO, ORPO, KTO, SimPO)", "causal_lm", "AutoModelForCausalLM", "CAUSAL_LM",
            "text-generation", "preference", ("lora", "qlora", "full"), "preference",
        ),
        Task(
            "classification", "Text classification", "encoder", "AutoModelForSequenceClassification", "SEQ_CLS",
            "text-classification", "encoder", _CLASSIFIER_METHODS, "classifier", classifier=True,
        ),
        Task(
            "regression", "Text regression (a score per text)", "encoder", "AutoModelForSequenceClassification",
            "SEQ_CLS", "text-classification", "encoder", _CLASSIFIER_METHODS, "classifier", classifier=True,
            problem_type="regression", head_size=1,
        ),
        Task(
            "multi_label_classification", "Multi-label text classification (several labels per text)", "encoder",
            "AutoModelForSequenceClassification", "SEQ_CLS", "text-classification", "encoder", _CLASSIFIER_METHODS,
            "classifier", classifier=True, problem_type="multi_label_classification",
        ),
        Task(
            "token_classification", "Token classification (tagging)", "encoder", "AutoModelForTokenClassification",
            "TOKEN_CLS", "token-classification", "encoder", _CLASSIFIER_METHODS, "classifier", classifier=True,
        ),
        Task(
            "seq2seq", "Sequence to sequence", "seq2seq", "AutoModelForSeq2SeqLM", "SEQ_2_SEQ_LM",
            "text2text-generation", "seq2seq", ("full", "freeze", "lora", "qlora"), "seq2seq",
        ),
    )
}

TASKS = tuple(TASK_TABLE)
METHODS = tuple(METHOD_TABLE)
SHAPES = tuple(SHAPE_TABLE)
# Preference objectives (the `objective` hyperparameter), each through TRL's own trainer. ORPO and SimPO need no
# reference model; DPO and KTO use the frozen base as theirs (with adapters: the same weights, adapters switched
# off). ORPO and SimPO score answers by their mean per-token log-probability (length-normalised).
OBJECTIVES = {"dpo": "DPO", "orpo": "ORPO", "kto": "KTO", "simpo": "SimPO"}
REFERENCE_FREE_OBJECTIVES = ("orpo", "simpo")
LENGTH_NORMALISED_OBJECTIVES = ("orpo", "simpo")
METHODS_BY_TASK: dict[str, tuple[str, ...]] = {task.name: task.methods for task in TASK_TABLE.values()}
ADAPTER_METHODS = tuple(name for name, method in METHOD_TABLE.items() if method.adapter)
MERGEABLE_METHODS = tuple(name for name, method in METHOD_TABLE.items() if method.mergeable)
GENERATIVE_TASKS = tuple(name for name, task in TASK_TABLE.items() if task.generative)
CLASSIFIER_TASKS = tuple(name for name, task in TASK_TABLE.items() if task.classifier)
CAUSAL_TASKS = tuple(name for name, task in TASK_TABLE.items() if task.causal)


def task(name: str) -> Task:
    return TASK_TABLE[name]


def method(name: str) -> Method:
    return METHOD_TABLE[name]


def tasks_for_architecture(architecture: str) -> list[str]:
    """The tasks a model of this catalog family can be fine-tuned for, computed from the table (never stored)."""
    return [name for name, entry in TASK_TABLE.items() if entry.architecture == architecture]


def _task_of_head(candidates: list[str], problem_type: str | None) -> str | None:
    """Of the tasks that share a head, the one whose problem_type the model's config names (regression, multi-label
    classification), else the first that fixes none (transformers writes "single_label_classification" into a
    classifier's config once trained)."""
    named = (name for name in candidates if problem_type and TASK_TABLE[name].problem_type == problem_type)
    unnamed = (name for name in candidates if TASK_TABLE[name].problem_type is None)
    return next(named, None) or next(unnamed, None)


def task_of_peft_type(peft_task_type: str | None, problem_type: str | None = None) -> str:
    """The task an adapter serves, from its peft task type (the first task of that type: causal LMs read as sft) and
    the problem_type of the config.json that classifier adapters save (SEQ_CLS: classification, multi-label
    classification or regression)."""
    wanted = peft_task_type or "CAUSAL_LM"
    candidates = [name for name, entry in TASK_TABLE.items() if entry.peft_task_type == wanted]
    return _task_of_head(candidates, problem_type) or "sft"


def task_of_architectures(architectures: list[str], is_encoder_decoder: bool, problem_type: str | None = None) -> str:
    """What a full model's config says it does, from its architecture's head (and its problem_type)."""
    joined = " ".join(architectures)
    if "ForSequenceClassification" in joined:
        candidates = [name for name, entry in TASK_TABLE.items() if entry.model_class == "AutoModelForSequenceClassification"]
        return _task_of_head(candidates, problem_type) or "classification"
    if "ForTokenClassification" in joined:
        return "token_classification"
    if is_encoder_decoder or "ConditionalGeneration" in joined:
        return "seq2seq"
    if "CausalLM" in joined or "LMHead" in joined:
        return "sft"
    return "feature_extraction"


def auto_class(task_name: str) -> Any:
    """The transformers class that loads a model trained for the task (AutoModel for anything else)."""
    import transformers

    entry = TASK_TABLE.get(task_name)
    return getattr(transformers, entry.model_class if entry else "AutoModel")


def peft_task_type(task_name: str) -> Any:
    from peft import TaskType

    return TaskType[TASK_TABLE[task_name].peft_task_type]
