"""Loading the base model for a task and preparing it for a method: which weights train, which stay frozen."""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from typing import Any

import torch
from peft import (
    LoraConfig,
    PeftModel,
    PromptTuningConfig,
    PromptTuningInit,
    TaskType,
    get_peft_model,
    prepare_model_for_kbit_training,
)
from peft.utils import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING
from transformers import (
    AutoConfig,
    AutoTokenizer,
    PretrainedConfig,
    PreTrainedModel,
)

from jobs.training import registry, tasks
from jobs.training.execution import Execution
from jobs.training.spec import SpecError

logger = logging.getLogger(__name__)

# Encoder-only families cannot generate text, so sft/text on them would train a model nobody can use.
ENCODER_ONLY_TYPES = {
    "bert",
    "roberta",
    "distilbert",
    "albert",
    "electra",
    "deberta",
    "deberta-v2",
    "xlm-roberta",
    "mpnet",
    "modernbert",
    "camembert",
}

_TORCH_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}

def resolve_device(device: str) -> str:
    """'auto' picks CUDA when a GPU is visible, else the CPU."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise SpecError("This job asks for a CUDA GPU but this worker has none.")
    return device


def check_combination(task: str, method: str, config: PretrainedConfig, device: str) -> None:
    """Refuse, with reasons, the task x method x architecture x device combinations that cannot work."""
    problems = []
    entry = registry.task(task)
    if method not in entry.methods:
        problems.append(f"Method '{method}' does not apply to task '{task}'; choose one of: {', '.join(entry.methods)}.")
    encoder_decoder = bool(getattr(config, "is_encoder_decoder", False))
    if entry.causal and (encoder_decoder or config.model_type in ENCODER_ONLY_TYPES):
        problems.append(f"Task '{task}' needs a causal language model; '{config.model_type}' cannot generate text.")
    if entry.architecture == "seq2seq" and not encoder_decoder:
        problems.append(f"Task '{task}' needs an encoder-decoder model (T5, BART); '{config.model_type}' is not.")
    if registry.method(method).needs_cuda:
        if device != "cuda":
            problems.append(f"{registry.method(method).label} needs a CUDA GPU worker.")
        elif importlib.util.find_spec("bitsandbytes") is None:
            problems.append("QLoRA needs the bitsandbytes package on the GPU worker.")
    if problems:
        raise SpecError(problems)


def load_config(base_model_dir: Path) -> PretrainedConfig:
    if not (Path(base_model_dir) / "config.json").exists():
        raise SpecError(f"The base model folder {base_model_dir} holds no config.json.")
    return AutoConfig.from_pretrained(base_model_dir, trust_remote_code=False)


def load_tokenizer(base_model_dir: Path, task: str) -> Any:
    """The base's tokenizer with a pad token; right padding for training, as Trainer's collators expect."""
    tokenizer = AutoTokenizer.from_pretrained(base_model_dir, trust_remote_code=False)
    if tokenizer.pad_token is None:
        # Causal LMs often ship without a pad token; the EOS token is the usual stand-in (masked from the loss).
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    options = tasks.kind(task).tokenizer_options(tokenizer)
    if options:
        tokenizer = AutoTokenizer.from_pretrained(base_model_dir, trust_remote_code=False, **options)
        tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token
    tokenizer.padding_side = "right"
    return tokenizer


def count_parameters(model: torch.nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    trainable = total = 0
    for parameter in model.parameters():
        total += parameter.numel()
        if parameter.requires_grad:
            trainable += parameter.numel()
    return trainable, total


def storage_kwargs(execution: Execution) -> dict[str, Any]:
    """`from_pretrained` arguments for how `execution` stores the weights: dtype or 4-bit, and the attention kernel."""
    kwargs: dict[str, Any] = {}
    if execution.weight_dtype == "4bit":
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16,
        )
        kwargs["dtype"] = torch.bfloat16
    else:
        kwargs["dtype"] = _TORCH_DTYPES[execution.weight_dtype]
    if execution.attention != "sdpa":
        # SDPA is transformers' default wherever the architecture supports it (eager elsewhere).
        kwargs["attn_implementation"] = execution.attention
    return kwargs


def load_model(
    base_model_dir: Path,
    task: str,
    execution: Execution,
    tokenizer: Any,
    labels: list[str] | None = None,
) -> PreTrainedModel:
    """The base model with the task's head (new and randomly initialised for classifiers), stored as `execution` says."""
    kwargs: dict[str, Any] = {"use_safetensors": True, **registry.task(task).head_config}
    if labels is not None:
        kwargs["num_labels"] = len(labels)
        kwargs["id2label"] = dict(enumerate(labels))
        kwargs["label2id"] = {label: index for index, label in enumerate(labels)}
    if registry.task(task).classifier:
        # Decoder classifiers pick the last non-pad token, so they must know the pad id.
        kwargs["pad_token_id"] = tokenizer.pad_token_id
    kwargs.update(storage_kwargs(execution))
    model, loading_info = registry.auto_class(task).from_pretrained(
        base_model_dir, output_loading_info=True, trust_remote_code=False, **kwargs
    )
    # Weights the base checkpoint lacks (the new head, sometimes a pooler) are random: an adapter must carry them,
    # or every later load of base + adapter would draw different ones.
    model.newly_initialized_modules = sorted({key.rsplit(".", 1)[0] for key in loading_info["missing_keys"]})
    if tokenizer.pad_token_id is not None and getattr(model.config, "pad_token_id", None) is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    return model


def _transformer_blocks(model: torch.nn.Module, num_layers: int) -> list[torch.nn.ModuleList]:
    """The ModuleLists holding the transformer blocks (two for encoder-decoders)."""
    return [
        module
        for module in model.modules()
        if isinstance(module, torch.nn.ModuleList) and len(module) == num_layers and num_layers > 0
    ]


def _num_layers(config: PretrainedConfig) -> int:
    for name in ("num_hidden_layers", "num_layers", "n_layer", "n_layers"):
        value = getattr(config, name, None)
        if isinstance(value, int):
            return value
    return 0


def _head_parameter_names(model: PreTrainedModel) -> list[str]:
    """Parameters outside the base model: the task head (classifier, score, lm_head)."""
    prefix = model.base_model_prefix
    if not prefix or not hasattr(model, prefix):
        return []
    return [name for name, _ in model.named_parameters() if not name.startswith(prefix + ".")]


def apply_freeze(model: PreTrainedModel, trainable_layers: int) -> PreTrainedModel:
    """Partial fine-tuning: freeze the embeddings and all but the last `trainable_layers` blocks; train the rest.

    "The rest" is what sits after the blocks: final norms, the pooler and the task head. A tied LM head shares its
    matrix with the input embeddings and so stays frozen: training it would unfreeze the whole vocabulary.
    """
    num_layers = _num_layers(model.config)
    stacks = _transformer_blocks(model, num_layers)
    if not stacks:
        raise SpecError(f"Cannot find the transformer blocks of '{model.config.model_type}' to freeze.")
    if trainable_layers > num_layers:
        raise SpecError(f"trainable_layers is {trainable_layers} but the model has only {num_layers} layers.")
    frozen = {id(p) for p in model.get_input_embeddings().parameters()}
    for name, parameter in model.named_parameters():
        if "embed" in name.lower() or "shared" in name.split("."):
            frozen.add(id(parameter))
    for stack in stacks:
        for block in stack[: num_layers - trainable_layers]:
            frozen.update(id(p) for p in block.parameters())
    for parameter in model.parameters():
        parameter.requires_grad = id(parameter) not in frozen
    return model


def apply_head_only(model: PreTrainedModel) -> PreTrainedModel:
    """Transfer learning: the base is frozen, only the new head trains."""
    head = set(_head_parameter_names(model))
    if not head:
        raise SpecError(f"Cannot find the head of '{model.config.model_type}' to train on its own.")
    for name, parameter in model.named_parameters():
        parameter.requires_grad = name in head
    return model


def lora_target_modules(model_type: str, requested: list[str] | str | None) -> list[str] | str:
    """The user's modules, else peft's per-architecture defaults, else every linear layer."""
    if requested:
        return requested
    defaults = TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING.get(model_type)
    return list(defaults) if defaults else "all-linear"


# The head names peft itself puts in modules_to_save for SEQ_CLS / TOKEN_CLS: adding them again lists them twice.
_PEFT_HEAD_NAMES = frozenset({"classifier", "score"})


def apply_lora(model: PreTrainedModel, task: str, method: str, hp: Any, execution: Execution) -> PeftModel:
    if method == "qlora":
        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=execution.activation_checkpointing
        )
    config = LoraConfig(
        task_type=registry.peft_task_type(task),
        r=hp.lora_r,
        lora_alpha=hp.lora_alpha,
        lora_dropout=hp.lora_dropout,
        target_modules=lora_target_modules(model.config.model_type, hp.target_modules),
        # peft adds the classifier/score head to modules_to_save for SEQ_CLS and TOKEN_CLS on its own; we add any
        # other module the base checkpoint lacked, so the adapter file holds every weight that is not the base's.
        modules_to_save=[m for m in getattr(model, "newly_initialized_modules", []) if m not in _PEFT_HEAD_NAMES] or None,
    )
    peft_model = get_peft_model(model, config)
    if registry.task(task).classifier:
        head_trainable = any(p.requires_grad for n, p in peft_model.named_parameters() if "modules_to_save" in n)
        if not head_trainable:
            raise SpecError(f"LoRA could not find the classification head of '{model.config.model_type}'.")
    return peft_model


def apply_prompt_tuning(model: PreTrainedModel, hp: Any, base_model_dir: Path) -> PeftModel:
    config = PromptTuningConfig(
        task_type=TaskType.CAUSAL_LM,
        prompt_tuning_init=PromptTuningInit.TEXT,
        prompt_tuning_init_text=hp.prompt_init_text,
        num_virtual_tokens=hp.num_virtual_tokens,
        tokenizer_name_or_path=str(base_model_dir),
    )
    return get_peft_model(model, config)


def prepare_model(
    model: PreTrainedModel, task: str, method: str, hp: Any, base_model_dir: Path, execution: Execution
) -> PreTrainedModel | PeftModel:
    """The model with exactly the method's parameters left trainable."""
    if method == "full":
        return model
    if method == "freeze":
        return apply_freeze(model, hp.trainable_layers)
    if method == "head":
        return apply_head_only(model)
    if method in ("lora", "qlora"):
        return apply_lora(model, task, method, hp, execution)
    if method == "prompt_tuning":
        return apply_prompt_tuning(model, hp, base_model_dir)
    raise SpecError(f"Unknown method '{method}'.")
