"""One resident base, adapters hot-swapped per request: interleaved requests get their own adapter's answers."""

from __future__ import annotations

import time

import pytest
import torch

from webapp.catalog import loading
from webapp.playground.resident import ResidentModels, ServedModel


def adapter_spec(folder, base_dir, key):  # type: ignore[no-untyped-def]
    return ServedModel(key, key, "adapter", folder, "base-1", base_dir)


def logits_of(model, tokenizer, text="the cat likes the book"):  # type: ignore[no-untyped-def]
    with torch.no_grad():
        return model(**tokenizer(text, return_tensors="pt")).logits


@pytest.fixture
def expected(tiny_causal_lm_dir, causal_adapter_dir, second_causal_adapter_dir):  # type: ignore[no-untyped-def]
    tokenizer = loading.load_tokenizer(tiny_causal_lm_dir)
    return {
        "a": logits_of(loading.load_adapter_on_base(causal_adapter_dir, tiny_causal_lm_dir), tokenizer),
        "b": logits_of(loading.load_adapter_on_base(second_causal_adapter_dir, tiny_causal_lm_dir), tokenizer),
        "base": logits_of(loading.load_plain(tiny_causal_lm_dir), tokenizer),
    }


def test_interleaved_requests_are_served_by_the_right_adapter_over_one_base(tiny_causal_lm_dir, causal_adapter_dir, second_causal_adapter_dir, expected):
    pool = ResidentModels(max_groups=2, max_adapters=4)
    specs = {
        "a": adapter_spec(causal_adapter_dir, tiny_causal_lm_dir, "a"),
        "b": adapter_spec(second_causal_adapter_dir, tiny_causal_lm_dir, "b"),
        "base": ServedModel("base-1", "base", "base", tiny_causal_lm_dir),
    }
    assert not torch.allclose(expected["a"], expected["b"], atol=1e-3)
    for key in ["a", "b", "a", "base", "b", "b", "a", "base"]:
        with pool.use(specs[key]) as served:
            got = logits_of(served.model, served.tokenizer)
        assert torch.allclose(got, expected[key], atol=1e-5), key
    assert pool.loads == 1, "the base was read from disk once and shared by both adapters"
    assert pool.resident() == {"base-1|sft": ["a", "b"]} or pool.resident() == {"base-1|sft": ["b", "a"]}


def test_a_swap_between_resident_adapters_is_fast_and_says_so(tiny_causal_lm_dir, causal_adapter_dir, second_causal_adapter_dir):
    pool = ResidentModels()
    a, b = adapter_spec(causal_adapter_dir, tiny_causal_lm_dir, "a"), adapter_spec(second_causal_adapter_dir, tiny_causal_lm_dir, "b")
    for spec in (a, b):
        with pool.use(spec):
            pass
    started = time.perf_counter()
    with pool.use(a) as served:
        assert "hot-swapped" in served.mode and "shared base" in served.mode
    assert time.perf_counter() - started < 0.05


def test_least_recently_used_adapter_is_evicted_and_reloaded_correctly(tiny_causal_lm_dir, causal_adapter_dir, second_causal_adapter_dir, expected):
    pool = ResidentModels(max_adapters=1)
    a, b = adapter_spec(causal_adapter_dir, tiny_causal_lm_dir, "a"), adapter_spec(second_causal_adapter_dir, tiny_causal_lm_dir, "b")
    with pool.use(a):
        pass
    with pool.use(b):
        pass
    assert pool.resident() == {"base-1|sft": ["b"]}
    assert list(pool.groups["base-1|sft"].model.peft_config) == ["adapter_b"]
    with pool.use(a) as served:
        assert "adapter loaded" in served.mode
        assert torch.allclose(logits_of(served.model, served.tokenizer), expected["a"], atol=1e-5)


def test_least_recently_used_model_is_evicted_past_the_limit(tiny_causal_lm_dir, tiny_encoder_dir, classifier_adapter_dir, causal_adapter_dir):
    pool = ResidentModels(max_groups=1)
    with pool.use(adapter_spec(causal_adapter_dir, tiny_causal_lm_dir, "a")):
        pass
    with pool.use(ServedModel("c", "c", "adapter", classifier_adapter_dir, "enc", tiny_encoder_dir)):
        pass
    assert list(pool.groups) == ["enc|classification:2"]


def test_interleaved_classifier_adapters_each_use_their_own_trained_head(tiny_encoder_dir, classifier_adapter_dir, tmp_path):
    from tests.catalog.conftest import make_lora_adapter

    other_dir = make_lora_adapter(tiny_encoder_dir, tmp_path / "other", task="classification", seed=5)
    tokenizer = loading.load_tokenizer(tiny_encoder_dir)
    expected = {
        "c1": logits_of(loading.load_adapter_on_base(classifier_adapter_dir, tiny_encoder_dir), tokenizer),
        "c2": logits_of(loading.load_adapter_on_base(other_dir, tiny_encoder_dir), tokenizer),
    }
    assert not torch.allclose(expected["c1"], expected["c2"], atol=1e-3)
    pool = ResidentModels()
    specs = {"c1": ServedModel("c1", "c1", "adapter", classifier_adapter_dir, "enc", tiny_encoder_dir),
             "c2": ServedModel("c2", "c2", "adapter", other_dir, "enc", tiny_encoder_dir)}
    for key in ["c1", "c2", "c2", "c1", "c2"]:
        with pool.use(specs[key]) as served:
            assert torch.allclose(logits_of(served.model, served.tokenizer), expected[key], atol=1e-5), key
    assert pool.loads == 1
