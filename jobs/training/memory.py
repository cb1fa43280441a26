"""Peak memory of a training run, predicted before launch from what the engine will actually do.

A measurement model, not a rule of thumb:
- Parameter counts are exact: the task's model class is built on the meta device (no memory, no weights read) and the
  engine's own `prepare_model` applies the method to it, so trainable parameters, LoRA targets, frozen layers and the
  bytes per stored weight are the ones the run will have.
- Activations are measured: one and two blocks of the same architecture, narrowed by a factor k (every width divided
  by k, the head count kept), run forward with the method applied and the run's dtype / autocast on the CPU, while
  autograd's saved-tensor hook counts the bytes kept for backward. The difference between two blocks and one is a
  block's activations per token, linear in the widths, so it scales back up by k.
- What the engine does on the device (`jobs.training.execution.Execution`) decides the rest: weights in fp32, bf16 or
  4-bit, autocast's 16-bit weight copies, activation checkpointing, TRL's fused LM head (chunked: the
  batch x length x vocab logits are never built), Liger's fused layers, and how several processes share the run (the
  estimate is per process: FSDP's full shard divides weights, gradients and optimizer state between them, DDP adds
  its gradient buckets).

Constants that no shape explains (allocator slack, the Python process's own growth while training on CPU) were
fitted on measured runs: tests/training/test_memory_calibration.py keeps them honest on CPU, and bench/bench_gpu.py
reports estimate / measured peak on a GPU.
"""

from __future__ import annotations

import contextlib
import json
import math
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

from jobs.training import registry
from jobs.training.execution import Capabilities, Execution, plan_execution
from jobs.training.spec import Hyperparameters, SpecError

GiB = 1024**3
# bitsandbytes NF4 with double quantisation: 4 bits per weight, plus an 8-bit absmax per 64 weights and a
# second-level fp32 constant per 256 absmaxes.
NF4_BYTES_PER_PARAMETER = 0.5 + 1 / 64 + 4 / (64 * 256)
_DTYPE_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2}
# TRL's fused LM head projects tiles of at most 4096 tokens x 32768 vocabulary entries (trl.kernels.chunked_logprob).
_FUSED_HEAD_TOKENS, _FUSED_HEAD_VOCAB = 4096, 32768
# Width attributes narrowed together for the activation probe; head counts stay, so head_dim narrows too.
_WIDTH_ATTRIBUTES = (
    "hidden_size", "intermediate_size", "head_dim", "d_model", "d_ff", "d_kv", "ffn_dim", "encoder_ffn_dim",
    "decoder_ffn_dim", "n_embd", "n_inner", "moe_intermediate_size", "shared_expert_intermediate_size",
    "embedding_size",
)
_LAYER_ATTRIBUTES = ("num_hidden_layers", "num_layers", "n_layer", "num_decoder_layers")
_PROBE_LENGTHS = (32, 64)


@dataclass
class MemoryEstimate:
    """Bytes by purpose at the run's peak; `total` is what the device must hold.

    `runtime` is what a CPU worker's process grows by besides tensors (datasets, tokenizer, Trainer); on CUDA it is 0
    because the peak measured there is the allocator's (`torch.cuda.max_memory_allocated`). `loading` is the peak
    while weights are read, which on CPU can exceed training for a frozen base (file pages plus the tensors).
    `evaluation` is what the final evaluation adds on a CPU worker: its full-vocabulary logits are fresh allocations
    on top of what training left resident (the heap does not shrink back); on CUDA the allocator reuses the blocks
    training freed.
    """

    weights: int
    gradients: int
    optimizer_state: int
    activations: int
    logits: int
    workspace: int
    runtime: int
    loading: int
    trainable_parameters: int
    total_parameters: int
    device: str = "cpu"
    activation_checkpointing: bool = False
    evaluation: int = 0

    @property
    def training(self) -> int:
        return (
            self.weights + self.gradients + self.optimizer_state + self.activations + self.logits + self.workspace
            + self.runtime
        )

    @property
    def total(self) -> int:
        return max(self.training, self.loading) + self.evaluation

    def to_dict(self) -> dict[str, Any]:
        return {
            "weights": self.weights,
            "gradients": self.gradients,
            "optimizer_state": self.optimizer_state,
            "activations": self.activations,
            "logits": self.logits,
            "workspace": self.workspace,
            "runtime": self.runtime,
            "loading": self.loading,
            "evaluation": self.evaluation,
            "trainable_parameters": self.trainable_parameters,
            "total_parameters": self.total_parameters,
            "device": self.device,
            "activation_checkpointing": self.activation_checkpointing,
            "total": self.total,
        }


@dataclass(frozen=True)
class ModelShape:
    """The facts about a base model that memory depends on, read from its config.json alone."""

    config: dict[str, Any]
    model_type: str
    hidden_size: int
    num_layers: int
    vocab_size: int
    encoder_decoder: bool

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> ModelShape:
        hidden = _first_int(config, ("hidden_size", "d_model", "n_embd", "dim")) or 768
        layers = _first_int(config, ("num_hidden_layers", "num_layers", "n_layer", "n_layers")) or 12
        return cls(
            config=config,
            model_type=str(config.get("model_type") or ""),
            hidden_size=hidden,
            num_layers=layers,
            vocab_size=int(config.get("vocab_size") or 0),
            encoder_decoder=bool(config.get("is_encoder_decoder")),
        )

    @classmethod
    def from_dir(cls, base_model_dir: Path) -> ModelShape:
        config_file = Path(base_model_dir) / "config.json"
        if not config_file.exists():
            raise SpecError(f"The base model folder {base_model_dir} holds no config.json.")
        return cls.from_config(json.loads(config_file.read_text()))


def _first_int(config: dict[str, Any], names: tuple[str, ...]) -> int:
    for name in names:
        value = config.get(name)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return 0


def _config_object(shape: ModelShape, **changes: Any) -> Any:
    from transformers import AutoConfig

    values = {key: value for key, value in shape.config.items() if key not in ("model_type", "transformers_version")}
    values.pop("quantization_config", None)
    values.update(changes)
    return AutoConfig.for_model(shape.model_type, **values)


def _apply_method(model: Any, task: str, method: str, hp: Hyperparameters) -> Any:
    """The engine's own `prepare_model`, with two stand-ins that change no shape: QLoRA's adapters on unquantised
    linear layers, and a prompt initialised at random rather than from text (that needs the tokenizer)."""
    from jobs.training.methods import prepare_model

    if method == "prompt_tuning":
        from peft import PromptTuningConfig, TaskType, get_peft_model

        return get_peft_model(
            model, PromptTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=hp.num_virtual_tokens)
        )
    return prepare_model(model, task, "lora" if method == "qlora" else method, hp, Path("."), _PROBE_EXECUTION)


# What prepare_model needs to apply a method for counting and probing (it reads the execution only for QLoRA's
# k-bit preparation, which these stand-ins skip).
_PROBE_EXECUTION = Execution(
    device="cpu", weight_dtype="fp32", autocast_dtype=None, attention="sdpa", packing_strategy=None,
    activation_checkpointing=False, liger=False, fused_lm_head=False,
)


def _model_class(task: str) -> Any:
    return registry.auto_class(task)


@dataclass(frozen=True)
class ParameterCounts:
    """Exact counts from the method applied to a meta-device model."""

    total: int
    trainable: int
    quantizable: int  # what bitsandbytes would store in 4-bit: every nn.Linear but the output head
    block_linear: int  # linear weights inside the blocks: autocast keeps a 16-bit copy of each for backward
    prepared_total: int = 0  # every parameter once the method is applied (adapters and soft prompts included)


def parameter_counts(
    shape: ModelShape, task: str, method: str, hp: Hyperparameters, num_labels: int, base_model_dir: Path | None
) -> ParameterCounts:
    """Exact counts for the method on this model; cached, since fitting a run tries several batch shapes."""
    return _parameter_counts_cached(
        _config_key(shape), task, method, int(hp.lora_r), json.dumps(hp.target_modules), int(hp.trainable_layers),
        int(hp.num_virtual_tokens), num_labels, str(base_model_dir) if base_model_dir else None,
    )


@lru_cache(maxsize=256)
def _parameter_counts_cached(
    config_key: str, task: str, method: str, lora_r: int, target_key: str, trainable_layers: int,
    num_virtual_tokens: int, num_labels: int, base_model_dir: str | None,
) -> ParameterCounts:
    import torch

    shape = ModelShape.from_config(json.loads(config_key))
    hp = Hyperparameters(
        lora_r=lora_r, target_modules=json.loads(target_key), trainable_layers=trainable_layers,
        num_virtual_tokens=num_virtual_tokens,
    )
    config = _config_object(shape, **({"num_labels": num_labels} if registry.task(task).classifier else {}))
    with torch.device("meta"):
        model = _model_class(task).from_config(config)
        total = sum(p.numel() for p in model.parameters())
        head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
        head_ids = {id(p) for p in head.parameters()} if head is not None else set()
        quantizable = block_linear = 0
        for name, module in model.named_modules():
            if isinstance(module, torch.nn.Linear) and id(module.weight) not in head_ids:
                count = module.weight.numel()
                quantizable += count
                if any(f".{n}." in f".{name}." for n in ("layers", "layer", "h", "block")):
                    block_linear += count
        model.newly_initialized_modules = _newly_initialized(model, Path(base_model_dir) if base_model_dir else None, task)
        prepared = _apply_method(model, task, method, hp)
        trainable = sum(p.numel() for p in prepared.parameters() if p.requires_grad)
        prepared_total = sum(p.numel() for p in prepared.parameters())
    return ParameterCounts(
        total=total, trainable=trainable, quantizable=quantizable, block_linear=block_linear,
        prepared_total=prepared_total,
    )


def _config_key(shape: ModelShape) -> str:
    return json.dumps(shape.config, sort_keys=True, default=str)


def _newly_initialized(model: Any, base_model_dir: Path | None, task: str) -> list[str]:
    """Modules whose weights the base checkpoint lacks (a new head), read from the safetensors headers."""
    if base_model_dir is None or not registry.task(task).classifier:
        return []
    from safetensors import safe_open

    stored: set[str] = set()
    for file in sorted(Path(base_model_dir).glob("*.safetensors")):
        try:
            with safe_open(str(file), "pt") as weights:
                stored.update(weights.keys())
        except Exception:
            return []
    if not stored:
        return []
    missing = set()
    for name, _ in model.named_parameters():
        candidates = {name, name.split(".", 1)[-1], f"{model.base_model_prefix}.{name}"}
        if not candidates & stored:
            missing.add(name.rsplit(".", 1)[0])
    return sorted(missing)


@dataclass(frozen=True)
class ActivationProfile:
    """Bytes kept for backward per token: inside one block, and outside the blocks (embeddings, final norm)."""

    per_block: float
    per_pair: float  # per block, per token, per token of sequence length: attention kept as probabilities
    outside: float
    residual: float  # one block's input per token: what checkpointing keeps per block


def _narrowing(config: dict[str, Any]) -> int:
    """The largest k in (8, 4, 2, 1) that divides every width and keeps heads at least 8 wide."""
    heads = _first_int(config, ("num_attention_heads", "num_heads", "n_head")) or 1
    hidden = _first_int(config, ("hidden_size", "d_model", "n_embd")) or 0
    head_dim = _first_int(config, ("head_dim", "d_kv")) or (hidden // heads if heads else 0)
    for k in (8, 4, 2):
        widths = [config[name] for name in _WIDTH_ATTRIBUTES if isinstance(config.get(name), int)]
        if head_dim // k >= 8 and all(w % k == 0 for w in widths) and (hidden // k) % heads == 0:
            return k
    return 1


def _saved_bytes(model: Any, inputs: dict[str, Any], autocast: Any) -> int:
    """Bytes of the tensors autograd keeps for backward during one forward, parameters excluded, views counted once."""
    import torch

    parameters = {p.untyped_storage().data_ptr() for p in model.parameters()}
    # Autocast's 16-bit copies of the weights are saved too; they scale with the weights, not the tokens, and are
    # counted apart (`casts` in estimate_memory).
    weight_shapes = {tuple(p.shape) for p in model.parameters() if p.dim() == 2}
    weight_shapes |= {shape[::-1] for shape in weight_shapes}
    kept: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        pointer = storage.data_ptr()
        if pointer not in parameters and tuple(tensor.shape) not in weight_shapes:
            kept[pointer] = max(kept.get(pointer, 0), storage.nbytes())
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor), autocast:
        model(**inputs)
    return sum(kept.values())


@lru_cache(maxsize=256)
def _activation_profile_cached(
    config_key: str, task: str, method: str, weight_dtype: str, autocast_dtype: str | None, lora_r: int,
    lora_dropout: float, target_key: str, trainable_layers: int, num_labels: int,
) -> ActivationProfile:
    import torch

    config = json.loads(config_key)
    shape = ModelShape.from_config(config)
    k = _narrowing(config)
    narrowed = {name: config[name] // k for name in _WIDTH_ATTRIBUTES if isinstance(config.get(name), int)}
    measured: dict[tuple[int, int], float] = {}
    hp = Hyperparameters(
        lora_r=max(1, lora_r // k), lora_alpha=max(1, lora_r // k) * 2, lora_dropout=lora_dropout,
        target_modules=json.loads(target_key), trainable_layers=trainable_layers,
    )
    # The CPU has no fp16 autocast and 4-bit weights compute in bf16: both probe as bf16.
    dtype = torch.float32 if weight_dtype == "fp32" else torch.bfloat16
    layers_key = next((name for name in _LAYER_ATTRIBUTES if isinstance(config.get(name), int)), "num_hidden_layers")
    generator = torch.Generator().manual_seed(0)
    # Four probes: one and two blocks (the difference is one block) at two lengths (the growth per token with length
    # is attention's per-head, per-pair share, which does not narrow with the widths).
    for layers in (1, 2):
        changes: dict[str, Any] = {**narrowed, layers_key: layers, "vocab_size": 128}
        if "num_decoder_layers" in config:
            changes["num_decoder_layers"] = layers
        if registry.task(task).classifier:
            changes["num_labels"] = num_labels
        changes["pad_token_id"] = 0
        probe_config = _config_object(shape, **changes)
        torch.manual_seed(0)
        model = _model_class(task).from_config(probe_config).to(dtype)
        model.newly_initialized_modules = []
        model = _apply_method(model, task, method, replace(hp, trainable_layers=min(trainable_layers, layers)))
        if method in ("lora", "qlora"):
            for name, parameter in model.named_parameters():
                if "lora_" in name:
                    parameter.data = parameter.data.float()
        if method == "qlora":
            # prepare_model_for_kbit_training upcasts everything bitsandbytes did not quantise (embeddings, norms) to
            # fp32, so the residual stream runs in fp32.
            linear = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.Linear)}
            for parameter in model.parameters():
                if id(parameter) not in linear:
                    parameter.data = parameter.data.float()
        model.train()
        for length in _PROBE_LENGTHS:
            tokens = torch.randint(1, 128, (1, length), generator=generator)
            inputs: dict[str, Any] = {"input_ids": tokens, "attention_mask": torch.ones_like(tokens)}
            if shape.encoder_decoder:
                inputs["decoder_input_ids"] = tokens
            autocast = torch.autocast("cpu", dtype=torch.bfloat16) if autocast_dtype else contextlib.nullcontext()
            measured[(layers, length)] = _saved_bytes(_backbone(model, task), inputs, autocast) / length
    short, long = _PROBE_LENGTHS
    block_short = measured[(2, short)] - measured[(1, short)]
    block_long = measured[(2, long)] - measured[(1, long)]
    per_pair = max(block_long - block_short, 0.0) / (long - short)  # bytes per token per extra token of length
    per_block = max(block_short - per_pair * short, 0.0) * k
    outside = max(measured[(1, short)] - block_short, 0.0) * k
    residual_bytes = 4 if weight_dtype in ("fp32", "4bit") else 2
    residual = shape.hidden_size * residual_bytes * (2 if shape.encoder_decoder else 1)
    return ActivationProfile(per_block=per_block, per_pair=per_pair, outside=outside, residual=residual)


def _backbone(model: Any, task: str) -> Any:
    """What runs before the task's loss: the whole model for heads and seq2seq, the decoder stack for causal LMs
    (TRL's fused head replaces the LM head, so its logits are counted apart)."""
    if registry.task(task).causal:
        inner = model.get_base_model() if hasattr(model, "get_base_model") else model
        if hasattr(model, "prompt_encoder"):
            return model  # prompt tuning: peft prepends the virtual tokens in its own forward
        return getattr(inner, inner.base_model_prefix, inner)
    return model


def activation_profile(
    shape: ModelShape, task: str, method: str, hp: Hyperparameters, execution: Execution, num_labels: int = 2
) -> ActivationProfile:
    return _activation_profile_cached(
        _config_key(shape), task, method, execution.weight_dtype,
        execution.autocast_dtype, int(hp.lora_r), float(hp.lora_dropout),
        json.dumps(hp.target_modules), int(hp.trainable_layers), num_labels,
    )


def _logits_bytes(shape: ModelShape, task: str, hp: Hyperparameters, execution: Execution, tokens: int) -> int:
    """The loss's share: TRL's fused head for causal LMs, full logits for seq2seq, next to nothing for heads."""
    vocab = shape.vocab_size
    if execution.fused_lm_head:
        tile_tokens = min(tokens, _FUSED_HEAD_TOKENS)
        tile_vocab = min(vocab, _FUSED_HEAD_VOCAB)
        compute = 2 if execution.autocast_dtype else 4
        # One projection tile, its softmax statistics on the CPU path (a few tile-sized temporaries), the fp32 gradient
        # of the hidden states and the hidden states the head saves.
        temporaries = 1 if execution.device == "cuda" else 3
        return tile_tokens * tile_vocab * compute * temporaries + tokens * shape.hidden_size * (4 + compute)
    if registry.task(task).architecture == "seq2seq" or registry.task(task).trainer == "preference":
        # Seq2SeqTrainer's loss, and the preference trainers' per-token log-probabilities: logits, their fp32 log-softmax, and the logits' gradient.
        return tokens * vocab * 4 * 3
    return 0


def estimate_memory(
    shape: ModelShape,
    task: str,
    method: str,
    hp: Hyperparameters,
    execution: Execution,
    *,
    base_model_dir: Path | None = None,
    num_labels: int = 2,
) -> MemoryEstimate:
    """Peak memory of one training step of this run on `execution.device`."""
    counts = parameter_counts(shape, task, method, hp, num_labels, base_model_dir)
    on_cuda = execution.device == "cuda"
    if execution.weight_dtype == "4bit":
        # prepare_model_for_kbit_training keeps what was not quantised (embeddings, norms) in fp32.
        weights = counts.quantizable * NF4_BYTES_PER_PARAMETER + (counts.total - counts.quantizable) * 4
    else:
        weights = counts.total * _DTYPE_BYTES[execution.weight_dtype]
    trains = registry.method(method).trains
    preference = registry.task(task).trainer == "preference"
    if registry.method(method).adapter:
        weights += counts.trainable * 4  # adapters (and heads they save) train in fp32
    gradients = counts.trainable * 4
    if preference and not registry.method(method).adapter and hp.objective not in registry.REFERENCE_FREE_OBJECTIVES:
        # Full-weight DPO / KTO keep the base as a frozen reference model beside the policy. With adapters the
        # reference pass runs the same base with the adapters switched off: no second copy.
        weights += counts.total * _DTYPE_BYTES.get(execution.weight_dtype, 4)
    optimizer_state = counts.trainable * 8  # AdamW: two fp32 moments
    if execution.parallelism == "fsdp":
        weights, gradients, optimizer_state = _fsdp_shares(weights, gradients, optimizer_state, counts, shape, execution)
    elif execution.parallelism == "ddp":
        # DDP reduces gradients through its own flat buckets: one more fp32 copy of the trainable gradients.
        gradients += counts.trainable * 4

    tokens = hp.batch_size * hp.max_length
    if preference:
        # Each row is two sequences: chosen and rejected (KTO: the example and its KL partner).
        tokens *= 2
    if trains == "soft_prompt":
        tokens = hp.batch_size * (hp.max_length + hp.num_virtual_tokens)
    profile = activation_profile(shape, task, method, hp, execution, num_labels)
    layers = shape.num_layers
    if trains == "last_layers":
        # Nothing below the first trainable block needs a gradient, so autograd keeps nothing there.
        layers = min(hp.trainable_layers, layers)
    block = profile.per_block + profile.per_pair * hp.max_length
    if execution.activation_checkpointing:
        # Each block keeps its input; during backward one block's activations are recomputed at a time. Trainer makes
        # the embeddings' output require grad under checkpointing, so even frozen blocks keep their input.
        blocks = shape.num_layers * profile.residual + block
    else:
        blocks = layers * block
    if execution.liger:
        # Liger's RMSNorm and SwiGLU recompute what the eager layers keep: about a third of a block's activations.
        blocks *= 0.7
    activations = int(tokens * (blocks + profile.outside))
    if trains == "head":
        activations = int(tokens * (block + profile.outside))  # nothing flows back into the frozen base

    # Autocast keeps a 16-bit copy of each fp32 weight that a matmul used, until its backward (per block under
    # checkpointing).
    casts = 0
    # Under FSDP the 16-bit copies are the gathered units themselves (accelerate's mixed-precision policy gathers the
    # fp32 shards in the autocast dtype), counted with the weights.
    if execution.autocast_dtype and execution.weight_dtype == "fp32" and execution.parallelism != "fsdp":
        per_block_linear = counts.block_linear / max(layers, 1)
        casts = int(2 * (per_block_linear if execution.activation_checkpointing else counts.block_linear))
    logits = _logits_bytes(shape, task, hp, execution, tokens)

    workspace = casts
    if on_cuda:
        # Fused AdamW updates in place; the allocator's rounding and cuBLAS workspaces come on top.
        workspace += int(0.03 * (weights + gradients + optimizer_state)) + 64 * 2**20
    runtime = 0
    loading = 0
    if not on_cuda:
        workspace += int(0.05 * (weights + gradients + optimizer_state))
        if trains in ("adapter", "soft_prompt", "last_layers"):
            # With a frozen base the CPU peak falls in the backward pass, where the activations' gradients and the
            # allocator's unreturned blocks sit beside what forward kept; with full fine-tuning the gradients take
            # that room and are counted as such. Fitted on the calibration runs.
            activations = int(activations * CPU_BACKWARD_FACTOR)
        runtime = CPU_RUNTIME_BYTES + (CPU_TRL_RUNTIME_BYTES if registry.task(task).causal else 0)
        # Loading reads the safetensors through a memory map: the file's pages and the tensors are resident at once.
        loading = int(2 * counts.total * _DTYPE_BYTES.get(execution.weight_dtype, 2)) + runtime
    return MemoryEstimate(
        weights=int(weights),
        gradients=int(gradients),
        optimizer_state=int(optimizer_state),
        activations=activations,
        logits=int(logits),
        workspace=int(workspace),
        runtime=runtime,
        loading=loading,
        trainable_parameters=counts.trainable,
        total_parameters=counts.total,
        device=execution.device,
        activation_checkpointing=execution.activation_checkpointing,
        evaluation=0 if on_cuda else _evaluation_logits_bytes(shape, task, hp),
    )


def _fsdp_shares(
    weights: float, gradients: int, optimizer_state: int, counts: ParameterCounts, shape: ModelShape,
    execution: Execution,
) -> tuple[float, int, int]:
    """A process's weights, gradients and optimizer state under FSDP's full shard: 1/N of each, plus what is whole
    for a moment.

    Each block is gathered for its forward and again for its backward while the next one's gather is in flight (two
    blocks' weights, in the compute dtype); what lies outside the blocks (the embeddings, and the tail accelerate
    carves out: final norm and head, with the embeddings when tied) is counted as gathered throughout, as the tail
    stays from its forward to its backward; and a block's gradients are whole until they are reduce-scattered. Not
    yet measured on several GPUs (the GPU machine at hand has one).
    """
    processes = max(execution.processes, 1)
    per_block = counts.block_linear / max(shape.num_layers, 1)
    outside_blocks = max(counts.total - counts.block_linear, 0)
    compute_bytes = _DTYPE_BYTES.get(execution.autocast_dtype or execution.weight_dtype, 4)
    gathered = (outside_blocks + 2 * per_block) * compute_bytes
    return weights / processes + gathered, int(gradients / processes + per_block * 4), optimizer_state // processes


def _evaluation_logits_bytes(shape: ModelShape, task: str, hp: Hyperparameters) -> int:
    """An evaluation batch's full-vocabulary logits and their log-softmax, in fp32 (no fused head when evaluating),
    and its forward working set. Classifier heads have a handful of outputs; preference evaluation scores chosen and
    rejected."""
    sequences = hp.batch_size * (2 if registry.task(task).trainer == "preference" else 1)
    tokens = sequences * hp.max_length
    # One forward's working set, freshly allocated as well: a block's widest intermediates (about 4x the hidden
    # size) and the attention scores of one head-group (about the sequence length per token), in fp32. Fitted on
    # MiniLM full fine-tuning, whose evaluation, with no logits to speak of, still read 0.89-0.90 without it.
    working = 2 * tokens * (4 * shape.hidden_size + hp.max_length) * 4
    if registry.task(task).classifier:
        return int(working)
    return int(2 * tokens * shape.vocab_size * 4 + working)


# What a CPU training process grows by besides tensors: datasets and Arrow buffers, the tokenizer, Trainer and
# accelerate state, lazily imported modules. Fitted on tiny-model runs (tests/training/test_memory_calibration.py).
CPU_RUNTIME_BYTES = 38 * 2**20
CPU_TRL_RUNTIME_BYTES = 16 * 2**20  # TRL's trainers: collators, metrics and tokenized copies (tiny runs measured 12-16 MiB)
CPU_BACKWARD_FACTOR = 1.7


def estimate_run_memory(
    base_model_dir: Path,
    task: str,
    method: str,
    hp: Hyperparameters,
    device: str,
    capabilities: Capabilities | None = None,
    num_labels: int = 2,
) -> MemoryEstimate:
    """The estimate for a run as the engine will execute it on `device` with a worker of these capabilities."""
    shape = ModelShape.from_dir(base_model_dir)
    return _estimate_planned(shape, task, method, hp, device, capabilities, base_model_dir, num_labels)[0]


def _estimate_planned(
    shape: ModelShape,
    task: str,
    method: str,
    hp: Hyperparameters,
    device: str,
    capabilities: Capabilities | None,
    base_model_dir: Path | None,
    num_labels: int,
) -> tuple[MemoryEstimate, Execution]:
    """The engine's execution for these hyperparameters on `device`, and the estimate that follows from it."""
    execution = plan_execution(
        task, method, shape.model_type, device, packing=hp.packing,
        activation_checkpointing=hp.activation_checkpointing, capabilities=capabilities, num_processes=hp.num_processes,
    )
    estimate = estimate_memory(shape, task, method, hp, execution, base_model_dir=base_model_dir, num_labels=num_labels)
    return estimate, execution


@dataclass
class MemoryFit:
    """A run made to fit a memory budget: the hyperparameters to use, what changed and why, and the estimate."""

    hyperparameters: Hyperparameters
    estimate: MemoryEstimate
    execution: Execution
    budget: int
    changes: list[str] = field(default_factory=list)

    @property
    def fits(self) -> bool:
        return self.estimate.total <= self.budget


# What a worker can give a run: a share of its memory less a reserve. On CUDA the CUDA context and fragmentation
# take the rest; on CPU the worker's own processes and the operating system.
_USABLE_SHARE = {"cuda": 0.92, "cpu": 0.85}
_WORKER_RESERVE = 2**30


def usable_memory(device: str, memory_bytes: int) -> int:
    return int(memory_bytes * _USABLE_SHARE[device]) - _WORKER_RESERVE


def minimum_worker_memory(device: str, need: int) -> int:
    """The smallest worker memory whose usable share holds `need` bytes (the inverse of `usable_memory`)."""
    return int((need + _WORKER_RESERVE) / _USABLE_SHARE[device])


def fit_to_memory(
    shape: ModelShape,
    task: str,
    method: str,
    hp: Hyperparameters,
    device: str,
    budget: int,
    *,
    capabilities: Capabilities | None = None,
    base_model_dir: Path | None = None,
    num_labels: int = 2,
    allow_shorter_max_length: bool = False,
    headroom: float = 0.9,
) -> MemoryFit:
    """The cheapest change that makes the run fit `budget` bytes, tried in order of what it costs the user:

    1. nothing: checkpointing stays off when the run fits with `headroom` to spare (it costs a third of the speed);
    2. activation checkpointing on;
    3. a smaller micro-batch with more gradient accumulation, so the effective batch stays the same;
    4. a shorter max_length, only when the user allowed it.
    Returns the last attempt (with `fits` False) when nothing works: the caller refuses with its figures.
    """

    def attempt(candidate: Hyperparameters) -> tuple[MemoryEstimate, Execution]:
        return _estimate_planned(shape, task, method, candidate, device, capabilities, base_model_dir, num_labels)

    current = hp
    changes: list[str] = []
    estimate, execution = attempt(current)
    if estimate.total <= budget * headroom or (hp.activation_checkpointing and estimate.total <= budget):
        return MemoryFit(current, estimate, execution, budget, changes)
    if method != "head" and not current.activation_checkpointing:
        current = replace(current, activation_checkpointing=True)
        estimate, execution = attempt(current)
        changes.append(
            "Activation checkpointing is on: without it the run needs more memory than the worker has "
            "(it recomputes activations in the backward pass, about a third slower)."
        )
        if estimate.total <= budget:
            return MemoryFit(current, estimate, execution, budget, changes)
    effective = current.batch_size * current.gradient_accumulation_steps
    while current.batch_size > 1 and estimate.total > budget:
        batch = max(1, current.batch_size // 2)
        accumulation = math.ceil(effective / batch)
        current = replace(current, batch_size=batch, gradient_accumulation_steps=accumulation)
        estimate, execution = attempt(current)
    if current.batch_size != hp.batch_size:
        changes.append(
            f"Micro-batch {hp.batch_size} -> {current.batch_size} with gradient accumulation "
            f"{hp.gradient_accumulation_steps} -> {current.gradient_accumulation_steps}: the effective batch stays "
            f"{current.batch_size * current.gradient_accumulation_steps}."
        )
    if estimate.total > budget and allow_shorter_max_length:
        original = current.max_length
        while current.max_length > 64 and estimate.total > budget:
            current = replace(current, max_length=max(64, current.max_length // 2))
            estimate, execution = attempt(current)
        if current.max_length != original:
            changes.append(
                f"max_length {original} -> {current.max_length}, as you allowed: longer rows are truncated."
            )
    return MemoryFit(current, estimate, execution, budget, changes)


def describe_bytes(value: int) -> str:
    return f"{value / GiB:.1f} GiB" if value >= GiB else f"{value / 2**20:.0f} MiB"

