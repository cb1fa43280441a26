"""Tiny random models with real tokenizers, built offline in seconds for tests and benchmarks."""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import (
    BertConfig,
    BertModel,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
    T5Config,
    T5ForConditionalGeneration,
)

VOCAB_SIZE = 640
MAX_LENGTH = 512

# ChatML, as SmolLM2 and Qwen use it, plus {% generation %} markers so that TRL's
# assistant_only_loss can mask everything but the assistant turns (the markers render nothing).
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' }}"
    "{% if message['role'] == 'assistant' %}"
    "{% generation %}{{ message['content'] + '<|im_end|>' }}{% endgeneration %}{{ '\n' }}"
    "{% else %}"
    "{{ message['content'] + '<|im_end|>' + '\n' }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

_SUBJECTS = ["the cat", "a dog", "my friend", "the teacher", "our team", "the model", "a bird", "the river"]
_VERBS = ["likes", "hates", "sees", "writes", "reads", "finds", "loves", "builds"]
_OBJECTS = ["the book", "a song", "good food", "the answer", "a small house", "green apples", "the letter"]
_EXTRA = [
    "What is the capital of France? Paris is the capital of France.",
    "Translate to French: hello world. Bonjour le monde.",
    "Summarize: the movie was great and the actors were wonderful.",
    "This product is terrible, I want a refund!",
    "I really enjoyed this film, it was fantastic and fun.",
    "John lives in New York and works for Acme Corp.",
    "Numbers: 0 1 2 3 4 5 6 7 8 9 10 100 2024.",
    "Question: how many legs does a spider have? Answer: eight.",
    "def add(a, b):\n    return a + b\n",
    "The weather today is sunny and warm, but tomorrow it will rain in the north.",
    "She bought three red shirts, two blue hats and a pair of old shoes at the market.",
    "Please write a short poem about the sea, the moon and the quiet night.",
    "Explain why the sky is blue in one simple sentence for a child.",
    "The service was slow, the waiter was rude and the soup was cold.",
    "Amazing quality, fast delivery, excellent price: I would buy it again.",
    "Alice and Bob met in London on Monday to discuss the new project with Google.",
    "The company reported strong growth, higher profits and happy customers this year.",
    "Water boils at one hundred degrees and freezes at zero degrees Celsius.",
    "List three colors: red, yellow, purple. List three animals: horse, mouse, tiger.",
    "The user asked a question and the assistant gave a helpful, polite answer.",
    "Boring story, awful ending, waste of money and time. Never again.",
    "Paris, Berlin, Madrid, Rome, Tokyo and Washington are famous cities.",
    "Morning, evening, yesterday, week, month, hour, minute, second, early, late.",
]


def _corpus() -> list[str]:
    """A deterministic corpus of simple sentences: enough for a vocabulary of common English pieces."""
    lines = [f"{s} {v} {o}." for s in _SUBJECTS for v in _VERBS for o in _OBJECTS]
    lines += [line.capitalize() for line in lines[::3]]
    return lines + _EXTRA * 4


def _save_weights(model: torch.nn.Module, path: Path) -> None:
    # Seeded init makes every tiny model identical across runs, so test results are reproducible.
    model.save_pretrained(path, safe_serialization=True)


def build_tiny_causal_lm(path: str | Path, *, hidden_size: int = 64, num_layers: int = 2) -> Path:
    """A ~115k-parameter Llama with a byte-level BPE tokenizer, ChatML template and pad token.

    `hidden_size` and `num_layers` make larger variants (memory and throughput measurements need weights that
    dominate the Python process's own footprint).
    """
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    special = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|pad|>"]
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    backend.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=special,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(_corpus(), trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<|endoftext|>",
        eos_token="<|im_end|>",
        pad_token="<|pad|>",
        unk_token="<|endoftext|>",
        model_max_length=MAX_LENGTH,
        padding_side="right",
    )
    tokenizer.chat_template = CHATML_TEMPLATE
    tokenizer.save_pretrained(path)

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=MAX_LENGTH,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    _save_weights(model, path)
    return path


def build_tiny_encoder(path: str | Path) -> Path:
    """A ~150k-parameter BERT encoder with its pooler but no task head (like all-MiniLM-L6-v2's folder)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    backend = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    backend.normalizer = normalizers.BertNormalizer(lowercase=True)
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.decoder = decoders.WordPiece()
    trainer = trainers.WordPieceTrainer(vocab_size=VOCAB_SIZE, special_tokens=special, show_progress=False)
    backend.train_from_iterator(_corpus(), trainer=trainer)
    cls_id, sep_id = backend.token_to_id("[CLS]"), backend.token_to_id("[SEP]")
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=MAX_LENGTH,
    )
    tokenizer.save_pretrained(path)

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=MAX_LENGTH,
        pad_token_id=tokenizer.pad_token_id,
    )
    _save_weights(BertModel(config), path)
    return path


def build_tiny_seq2seq(path: str | Path) -> Path:
    """A ~200k-parameter T5 with a byte-level BPE tokenizer whose pad is id 0 (T5's decoder start token)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    # T5 starts decoding from the pad token, so <pad> must be id 0; </s> ends every encoded sequence.
    special = ["<pad>", "</s>", "<unk>"]
    backend = Tokenizer(models.BPE(unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=special,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(_corpus(), trainer=trainer)
    eos_id = backend.token_to_id("</s>")
    backend.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B:1 </s>:1", special_tokens=[("</s>", eos_id)]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token="<pad>",
        eos_token="</s>",
        unk_token="<unk>",
        model_max_length=MAX_LENGTH,
    )
    tokenizer.save_pretrained(path)

    torch.manual_seed(0)
    config = T5Config(
        vocab_size=len(tokenizer),
        d_model=64,
        d_kv=16,
        d_ff=128,
        num_layers=2,
        num_decoder_layers=2,
        num_heads=4,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    model = T5ForConditionalGeneration(config)
    model.generation_config.decoder_start_token_id = tokenizer.pad_token_id
    model.generation_config.max_new_tokens = 32
    _save_weights(model, path)
    return path
