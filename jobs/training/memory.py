"""Accelerator memory needed by a training run, estimated before launch for the job form and worker routing."""

from __future__ import annotations

from dataclasses import dataclass

from jobs.training.spec import SpecError

_BYTES_PER_PARAMETER = {"fp32": 4.0, "bf16": 2.0, "fp16": 2.0, "4bit": 0.5 + 0.0625}  # 4bit: NF4 + absmax/quant consts

# Bytes kept per token and per layer for the backward pass, in units of the hidden size, for a standard
# pre-norm transformer block. Korthikanti et al. (2022, "Reducing activation recomputation") count 34*h bytes at
# 16-bit for one block; we use 34 values per token so the figure scales with the activation dtype.
_ACTIVATION_VALUES_PER_HIDDEN = 34
# Attention probabilities and their dropout mask are kept per head and per token pair (the 5*a*s term) unless a
# fused kernel (flash / memory-efficient SDPA, as on CUDA) recomputes them.
_ATTENTION_VALUES_PER_PAIR = 5


@dataclass
class MemoryEstimate:
    """Bytes by purpose; `total` is what the run needs at its peak (the optimizer step)."""

    weights: int
    gradients: int
    optimizer_state: int
    activations: int
    trainable_parameters: int

    @property
    def total(self) -> int:
        return self.weights + self.gradients + self.optimizer_state + self.activations

    def to_dict(self) -> dict[str, int]:
        return {
            "weights": self.weights,
            "gradients": self.gradients,
            "optimizer_state": self.optimizer_state,
            "activations": self.activations,
            "trainable_parameters": self.trainable_parameters,
            "total": self.total,
        }


def estimate_trainable_parameters(
    parameter_count: int,
    method: str,
    hidden_size: int,
    num_layers: int,
    *,
    lora_r: int = 16,
    lora_modules_per_layer: int = 2,
    trainable_layers: int = 2,
    num_virtual_tokens: int = 16,
    num_labels: int = 2,
    vocab_size: int = 0,
) -> int:
    """How many parameters a method trains, from the model's shape alone."""
    head = hidden_size * num_labels + num_labels
    if method == "full":
        return parameter_count
    if method == "freeze":
        # Blocks hold nearly all parameters apart from the embeddings, which stay frozen.
        block_parameters = max(parameter_count - vocab_size * hidden_size, 0) / max(num_layers, 1)
        return int(block_parameters * min(trainable_layers, num_layers)) + head
    if method in ("lora", "qlora"):
        # Each adapted square projection gets A (r x h) and B (h x r); peft's defaults adapt q and v.
        return num_layers * lora_modules_per_layer * 2 * lora_r * hidden_size + head
    if method == "prompt_tuning":
        return num_virtual_tokens * hidden_size
    if method == "head":
        return head
    raise SpecError(f"Unknown method '{method}'.")


def estimate_memory(
    parameter_count: int,
    method: str,
    task: str,
    precision: str,
    batch_size: int,
    max_length: int,
    hidden_size: int,
    num_layers: int,
    *,
    num_heads: int = 0,
    vocab_size: int = 0,
    lora_r: int = 16,
    trainable_layers: int = 2,
    num_virtual_tokens: int = 16,
    gradient_checkpointing: bool = False,
    fused_attention: bool = False,
) -> MemoryEstimate:
    """Peak memory of one training step with AdamW, split into weights, gradients, optimizer state, activations.

    `precision` is the dtype the frozen or trained weights are stored in ("fp32", "bf16", "4bit" for QLoRA);
    trainable parameters, their gradients and AdamW's two moments are always fp32 (Trainer's mixed precision keeps
    fp32 master weights).

    Why this lands above the "2.5x the model's size" rule of thumb: fp32 AdamW alone keeps weights (4 bytes/param),
    gradients (4) and two moments (8) = 16 bytes, 4x the fp32 model, before a single activation. The 2.5x figure
    matches an optimizer with a 2-byte state (8-bit Adam: 4 + 4 + 2 = 10 bytes, or SGD with momentum at fp16),
    and it ignores activations, which grow with batch x length x layers and, for small LMs with large vocabularies, the
    logits (batch x length x vocab, in fp32, kept twice for the loss). For a 135M LM at batch 8 x 512 the logits
    alone exceed the weights. Adapters (LoRA, prompt tuning) keep the full weights and the activations but drop
    gradients and optimizer state to the adapter's size; QLoRA also shrinks the weights to ~0.56 bytes/param.
    What it leaves out: the CUDA context and allocator fragmentation (~0.5-1 GiB on a GPU), and on CPU the
    Python process itself.
    """
    if precision not in _BYTES_PER_PARAMETER:
        raise SpecError(f"Unknown precision '{precision}'; choose one of {', '.join(_BYTES_PER_PARAMETER)}.")
    if method == "qlora":
        precision = "4bit"
    trainable = estimate_trainable_parameters(
        parameter_count,
        method,
        hidden_size,
        num_layers,
        lora_r=lora_r,
        trainable_layers=trainable_layers,
        num_virtual_tokens=num_virtual_tokens,
        vocab_size=vocab_size,
    )
    weight_bytes = _BYTES_PER_PARAMETER[precision]
    if method in ("full", "freeze", "head"):
        weights = parameter_count * weight_bytes
    else:
        # The adapter's own weights are fp32 on top of the (possibly low-precision) base.
        weights = parameter_count * weight_bytes + trainable * 4
    gradients = trainable * 4
    optimizer_state = trainable * 8

    activation_bytes = 4 if precision == "fp32" else 2
    tokens = batch_size * max_length
    if task == "seq2seq":
        # Encoder and decoder stacks each see the sequence; the decoder adds cross-attention (~1.3x a block).
        num_layers = int(num_layers * 2.3)
    per_layer = tokens * hidden_size * _ACTIVATION_VALUES_PER_HIDDEN
    if not fused_attention and num_heads:
        per_layer += batch_size * num_heads * max_length * max_length * _ATTENTION_VALUES_PER_PAIR
    if method == "head":
        # Nothing flows back into the frozen base: only one block's transient forward activations are alive.
        layer_activations = per_layer
    elif gradient_checkpointing:
        # Only each block's input is kept; one block is recomputed at a time during backward.
        layer_activations = tokens * hidden_size * num_layers + per_layer
    else:
        layer_activations = per_layer * num_layers
    activations = layer_activations * activation_bytes
    if task in ("sft", "text", "seq2seq") and vocab_size:
        # Logits, their fp32 upcast for the loss, and the gradient of the logits: three fp32 copies.
        activations += tokens * vocab_size * 4 * 3
    return MemoryEstimate(
        weights=int(weights),
        gradients=int(gradients),
        optimizer_state=int(optimizer_state),
        activations=int(activations),
        trainable_parameters=int(trainable),
    )
