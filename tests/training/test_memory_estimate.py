"""The memory estimate counts what the engine does, and reproduces the peaks recorded on an H100."""

from __future__ import annotations

from dataclasses import replace

import pytest

from jobs.training import Hyperparameters, resolve_hyperparameters
from jobs.training.execution import Capabilities, plan_execution
from jobs.training.memory import GiB, ModelShape, estimate_memory, fit_to_memory, usable_memory


def _llama(hidden: int, layers: int, heads: int, kv: int, intermediate: int, vocab: int) -> ModelShape:
    return ModelShape.from_config(
        {
            "model_type": "llama", "vocab_size": vocab, "hidden_size": hidden, "intermediate_size": intermediate,
            "num_hidden_layers": layers, "num_attention_heads": heads, "num_key_value_heads": kv,
            "max_position_embeddings": 8192, "tie_word_embeddings": True,
        }
    )


SMOLLM2 = _llama(576, 30, 9, 3, 1536, 49152)
LLAMA_1B = _llama(2048, 16, 32, 8, 8192, 128256)
H100 = Capabilities(cuda=True, bf16=True, bitsandbytes=True)


def _estimate(shape: ModelShape, method: str, device: str, checkpointing: bool, **overrides: object) -> float:
    hp = resolve_hyperparameters("text", method, 1, {"epochs": 1, "packing": False, **overrides})
    execution = plan_execution(
        "text", method, "llama", device, activation_checkpointing=checkpointing,
        capabilities=H100 if device == "cuda" else None,
    )
    return estimate_memory(shape, "text", method, hp, execution).total / GiB


# Measured by ../shared/gpu/gpu_bench.py on one H100 80GB, 2026-11-26, engine at 0c043c9 (activation checkpointing
# was always on there): peak torch.cuda.max_memory_allocated in GiB, LoRA/QLoRA on all linear layers, r=16.
H100_ENGINE_PEAKS = [
    (SMOLLM2, 1024, 8, "lora", 1.04),
    (SMOLLM2, 1024, 8, "full", 2.70),
    (SMOLLM2, 1024, 8, "freeze", 1.53),
    (SMOLLM2, 1024, 8, "qlora", 1.23),
    (LLAMA_1B, 1024, 4, "lora", 3.66),
    (LLAMA_1B, 1024, 4, "full", 19.52),
    (LLAMA_1B, 1024, 4, "freeze", 7.03),
    (LLAMA_1B, 1024, 4, "qlora", 3.12),
]


@pytest.mark.parametrize(("shape", "length", "batch", "method", "measured"), H100_ENGINE_PEAKS)
def test_estimate_reproduces_the_recorded_h100_engine_peaks(
    shape: ModelShape, length: int, batch: int, method: str, measured: float
) -> None:
    lora = {"lora_r": 16, "lora_alpha": 32, "target_modules": "all-linear"} if "lora" in method else {}
    estimate = _estimate(shape, method, "cuda", True, batch_size=batch, max_length=length, **lora)
    assert 0.85 <= estimate / measured <= 1.3, (estimate, measured)


def test_checkpointing_cuts_activations_several_fold() -> None:
    plain = _estimate(SMOLLM2, "lora", "cuda", False, batch_size=8, max_length=1024)
    checkpointed = _estimate(SMOLLM2, "lora", "cuda", True, batch_size=8, max_length=1024)
    assert checkpointed < plain / 4


def test_full_fine_tuning_keeps_16_bytes_per_parameter_before_activations() -> None:
    hp = resolve_hyperparameters("text", "full", 1, {"batch_size": 1, "max_length": 8})
    estimate = estimate_memory(SMOLLM2, "text", "full", hp, plan_execution("text", "full", "llama", "cpu"))
    assert estimate.weights + estimate.gradients + estimate.optimizer_state == 16 * estimate.total_parameters


def test_qlora_stores_the_linear_layers_in_four_bits() -> None:
    hp = resolve_hyperparameters("text", "lora", 1, {"batch_size": 1, "max_length": 8})
    lora = estimate_memory(LLAMA_1B, "text", "lora", hp, plan_execution("text", "lora", "llama", "cuda", capabilities=H100))
    qlora = estimate_memory(
        LLAMA_1B, "text", "qlora", hp, plan_execution("text", "qlora", "llama", "cuda", capabilities=H100)
    )
    assert qlora.weights < 0.7 * lora.weights
    assert qlora.trainable_parameters == lora.trainable_parameters


def test_lora_trainable_parameters_follow_the_target_modules() -> None:
    def trainable(targets: object) -> int:
        hp = Hyperparameters(lora_r=8, target_modules=targets)  # type: ignore[arg-type]
        return estimate_memory(
            SMOLLM2, "text", "lora", replace(hp, batch_size=1, max_length=8), plan_execution("text", "lora", "llama", "cpu")
        ).trainable_parameters

    # peft's default for llama is q_proj and v_proj: r x (in + out) each, per layer.
    assert trainable(None) == 30 * 8 * ((576 + 576) + (576 + 192))
    assert trainable("all-linear") > 3 * trainable(None)


def test_checkpointing_stays_off_when_the_run_fits() -> None:
    hp = resolve_hyperparameters("text", "lora", 1, {"batch_size": 8, "max_length": 1024})
    fit = fit_to_memory(SMOLLM2, "text", "lora", hp, "cuda", 75 * GiB, capabilities=H100)
    assert fit.fits and not fit.hyperparameters.activation_checkpointing and fit.changes == []


def test_a_run_too_big_for_the_card_gets_checkpointing_then_a_smaller_micro_batch() -> None:
    hp = resolve_hyperparameters("text", "full", 1, {"batch_size": 8, "max_length": 1024})
    checkpointed = fit_to_memory(SMOLLM2, "text", "full", hp, "cuda", 6 * GiB, capabilities=H100)
    assert checkpointed.fits and checkpointed.hyperparameters.activation_checkpointing
    assert checkpointed.hyperparameters.batch_size == 8
    smaller = fit_to_memory(SMOLLM2, "text", "full", hp, "cuda", int(2.9 * GiB), capabilities=H100)
    assert smaller.fits and smaller.hyperparameters.batch_size < 8
    effective = smaller.hyperparameters.batch_size * smaller.hyperparameters.gradient_accumulation_steps
    assert effective == 8
    assert any("effective batch stays 8" in change for change in smaller.changes)


def test_max_length_is_shortened_only_when_the_user_allows_it() -> None:
    hp = resolve_hyperparameters("text", "full", 1, {"batch_size": 1, "max_length": 8192})
    refused = fit_to_memory(LLAMA_1B, "text", "full", hp, "cuda", 21 * GiB, capabilities=H100)
    allowed = fit_to_memory(
        LLAMA_1B, "text", "full", hp, "cuda", 21 * GiB, capabilities=H100, allow_shorter_max_length=True
    )
    assert not refused.fits and refused.hyperparameters.max_length == 8192
    assert allowed.fits and allowed.hyperparameters.max_length < 8192


def test_the_bundled_smollm2_default_sft_job_fits_a_24_gib_cpu_worker() -> None:
    # Refused at 0c043c9 ("needs about 65.1 GiB but the largest cpu worker has 23.5 GiB").
    hp = resolve_hyperparameters("sft", "lora", 134_515_008)
    fit = fit_to_memory(SMOLLM2, "sft", "lora", hp, "cpu", usable_memory("cpu", int(23.5 * GiB)))
    assert fit.fits, fit.estimate.to_dict()
    assert fit.estimate.total < 20 * GiB
