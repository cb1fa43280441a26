"""How a run executes on its device: dtypes, attention kernel, packing, fused kernels, activation checkpointing, and
how several processes share it (DDP or FSDP).

One place for these decisions: the engine follows them, and the memory estimate counts exactly what they imply.
Worker capabilities (which optional kernels import) are probed here too, so a web process can plan for a worker it
is not running on.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import platform
from dataclasses import asdict, dataclass, field
from functools import cache
from typing import Any

from jobs.training import registry, tasks

logger = logging.getLogger(__name__)

# Architectures whose layers Liger Kernel fuses (RMSNorm, RoPE, SwiGLU/GeGLU): liger_kernel.transformers'
# MODEL_TYPE_TO_APPLY_LIGER_FN covers these and more; this is the set we have reason to trust for training.
LIGER_MODEL_TYPES = frozenset(
    {"llama", "mistral", "mixtral", "qwen2", "qwen3", "qwen3_moe", "gemma", "gemma2", "gemma3_text", "phi3", "olmo2",
     "granite", "glm4", "smollm3"}
)


@dataclass(frozen=True)
class Capabilities:
    """What a worker can run beyond plain PyTorch; probed on the worker and stored with its registration."""

    cuda: bool = False
    bf16: bool = False
    flash_attn: bool = False
    liger_kernel: bool = False
    bitsandbytes: bool = False

    def to_dict(self) -> dict[str, bool]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None) -> Capabilities:
        values = values or {}
        return cls(**{key: bool(values.get(key, False)) for key in cls.__dataclass_fields__})


_warned: set[str] = set()


def _warn_once(key: str, message: str, *args: Any) -> None:
    """An optional kernel that is missing or broken is said once per process, not once per job."""
    if key not in _warned:
        _warned.add(key)
        logger.warning(message, *args)


def _imports(module: str) -> bool:
    """True when `module` is installed and imports; a broken install is logged once and counts as missing."""
    if importlib.util.find_spec(module.split(".")[0]) is None:
        return False
    try:
        importlib.import_module(module)
    except Exception as error:  # a kernel package built for another CUDA or torch fails in many ways
        _warn_once(f"import:{module}", "%s is installed but does not import (%s: %s); running without it.",
                   module, type(error).__name__, error)
        return False
    return True


@cache
def local_capabilities() -> Capabilities:
    """This process's capabilities (cached: importing kernels is slow and their presence does not change)."""
    import torch

    cuda = torch.cuda.is_available()
    return Capabilities(
        cuda=cuda,
        bf16=cuda and torch.cuda.is_bf16_supported(),
        # Kernels are probed on CUDA only: they never run on a CPU worker, and importing them there is wasted time.
        flash_attn=cuda and _imports("flash_attn"),
        liger_kernel=cuda and _imports("liger_kernel.transformers"),
        bitsandbytes=cuda and _imports("bitsandbytes"),
    )


@dataclass(frozen=True)
class Execution:
    """The device-level decisions of one run; `describe()` is what the review page and the model card show."""

    device: str
    weight_dtype: str  # what the frozen or trained weights are stored in: fp32, bf16, fp16, 4bit
    autocast_dtype: str | None  # mixed precision on CUDA, None on CPU
    attention: str  # transformers' attn_implementation
    packing_strategy: str | None  # TRL's strategy when packing applies, else None
    activation_checkpointing: bool
    liger: bool  # Liger's fused RMSNorm / RoPE / SwiGLU kernels
    fused_lm_head: bool  # TRL's chunked log-prob head: the batch x length x vocab logits never exist
    processes: int = 1  # processes training the run together (jobs.training.launch)
    parallelism: str = "single"  # single | ddp | fsdp (`choose_parallelism`)
    notes: list[str] = field(default_factory=list, compare=False)

    @property
    def parallelism_label(self) -> str:
        """How the processes share the run, for people: "FSDP, full shard, 4 processes"."""
        if self.parallelism == "fsdp":
            return f"FSDP, full shard, {self.processes} processes"
        if self.parallelism == "ddp":
            return f"DDP, {self.processes} processes"
        return "1 process"

    def describe(self) -> dict[str, Any]:
        described = {key: value for key, value in asdict(self).items() if key != "notes"}
        return described | {"parallelism_label": self.parallelism_label, "notes": list(self.notes)}


def choose_parallelism(task: str, method: str, processes: int) -> str:
    """How `processes` processes share a run of `method` on `task`: "single" for one, else "fsdp" or "ddp".

    Full fine-tuning of a causal LM keeps weights, gradients and AdamW's two moments (16 bytes a parameter) in each
    DDP process; FSDP's full shard divides them by the processes, for an all-gather of each block's weights in
    forward and backward. Every other method trains a small part beside a frozen base (adapters, a soft prompt, a
    head, the last layers): DDP exchanges only that part's gradients, and a whole copy of the base in each process
    costs less than gathering it at every step. Encoders and seq2seq models stay on DDP too: they are small, and
    accelerate 1.15's FSDP2 preparation fails on them (tried on the tiny BERT and T5): it shards the input embedding
    apart after BERT's `BertEmbeddings` unit already holds it (torch: "Invariant encountered: value was None when it
    should not be"), and T5's `shared.weight` is "shared with a parameter already managed by another FSDP group".
    """
    if processes <= 1:
        return "single"
    full_causal = registry.method(method).trains == "all" and registry.task(task).causal
    return "fsdp" if full_causal else "ddp"


def plan_execution(
    task: str,
    method: str,
    model_type: str,
    device: str,
    *,
    packing: bool = False,
    activation_checkpointing: bool = False,
    capabilities: Capabilities | None = None,
    num_processes: int = 1,
) -> Execution:
    """What the engine will do for this task and method on `device` ("cpu" or "cuda"), given what the worker has,
    in `num_processes` processes.

    - Weights: CPU trains in fp32. On CUDA a frozen base (lora, prompt tuning) is stored in bf16 (fp16 without bf16
      support) with fp32 adapters; full and freeze keep fp32 master weights under bf16 autocast, as Trainer's mixed
      precision does; QLoRA stores the blocks' linear layers in 4-bit NF4.
    - Attention: flash-attention 2 where it imports (16-bit weights only), else PyTorch SDPA (flash / memory-efficient
      kernels on CUDA, a flash kernel on CPU).
    - Packing on CUDA: exact padding-free "bfd" (best-fit bins, no attention across rows). With flash-attention 2 the
      varlen kernel reads the row boundaries; without it transformers turns the packed position_ids into a
      block-diagonal mask for SDPA, exact too, at an attention cost that grows with the whole flattened batch.
      On CPU "wrapped" stays: there a padding-free batch is one long masked row, measured ~3x slower per token than
      padded batches (bench/bench_packing.py), while wrapped chunks run at plain causal-attention speed.
    - Liger kernels on CUDA for the architectures that have them, when liger-kernel imports; never on CPU.
    - Several processes: FSDP (full shard) for full fine-tuning of a causal LM, DDP otherwise (`choose_parallelism`).
    """
    capabilities = capabilities or Capabilities()
    notes: list[str] = []
    on_cuda = device == "cuda"
    half = "bf16" if capabilities.bf16 or not on_cuda else "fp16"
    if method == "qlora":
        weight_dtype = "4bit"
    elif on_cuda and method in ("lora", "prompt_tuning"):
        weight_dtype = half
    else:
        weight_dtype = "fp32"
    autocast_dtype = half if on_cuda else None

    causal = registry.task(task).causal
    # TRL's SFTTrainer packs rows, and its fused, chunked LM head never builds the full logits.
    sft_trainer = registry.task(task).trainer == "sft"
    attention = "sdpa"
    if on_cuda and causal and weight_dtype != "fp32" and capabilities.flash_attn:
        attention = "flash_attention_2"

    strategy = None
    # Soft prompts are prepended per sequence: a packed, flattened batch would put them before the first row only.
    if sft_trainer and packing and method != "prompt_tuning":
        if on_cuda:
            strategy = tasks.causal_kind(task).cuda_packing_strategy
        else:
            strategy = "wrapped"

    liger = False
    if on_cuda and model_type in LIGER_MODEL_TYPES:
        if capabilities.liger_kernel:
            liger = True
        else:
            notes.append("liger-kernel is not installed on the GPU worker: running without fused kernels.")
    return Execution(
        device=device,
        weight_dtype=weight_dtype,
        autocast_dtype=autocast_dtype,
        attention=attention,
        packing_strategy=strategy,
        activation_checkpointing=activation_checkpointing and method != "head",
        liger=liger,
        fused_lm_head=sft_trainer,
        processes=num_processes,
        parallelism=choose_parallelism(task, method, num_processes),
        notes=notes,
    )


def cpu_device() -> dict[str, Any]:
    """This machine's CPU as a training device: its cores and memory."""
    import psutil

    from jobs.training.launch import cpu_cores

    name = platform.processor() or platform.machine()
    cores = cpu_cores()
    return {"kind": "cpu", "name": f"{name} ({cores} cores)", "memory_bytes": int(psutil.virtual_memory().total),
            "cores": cores}


def local_devices() -> list[dict[str, Any]]:
    """CUDA devices with their memory, or the CPU with the machine's memory, read in this process (which then has
    CUDA initialised: a Celery parent reads them through jobs.worker_registry.detect_devices, in a child)."""
    devices: list[dict[str, Any]] = []
    try:
        import torch

        for index in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(index)
            devices.append(
                {
                    "kind": "cuda",
                    "name": props.name,
                    "memory_bytes": int(props.total_memory),
                    # What the planner needs to predict this worker's runs: bf16, flash-attn, Liger, bitsandbytes.
                    "capabilities": local_capabilities().to_dict(),
                }
            )
    except Exception:  # no torch CUDA runtime: a CPU worker
        logger.debug("no CUDA devices", exc_info=True)
    return devices or [cpu_device()]
