"""SFT trains on the assistant's words only: prompts, system turns and padding carry no loss."""

from __future__ import annotations

import shutil
from pathlib import Path

from jobs.training.engine import _Run
from jobs.training.spec import NullReporter
from tests.training.conftest import chat_rows, make_spec

# The same ChatML as the tiny model's, without {% generation %} markers, as most shipped templates are.
PLAIN_CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>'"
    " + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def _trained_text(tmp_path: Path, base: Path) -> list[str]:
    spec = make_spec(tmp_path, base, "sft", "lora", chat_rows(4), packing=False, eval_fraction=0.25)
    run = _Run(spec, NullReporter())
    trainer = run.build_trainer([])
    row = trainer.train_dataset[0]
    # TRL turns its assistant / completion masks into labels: -100 wherever no loss is taken.
    return [
        run.tokenizer.decode([t for t, label in zip(row["input_ids"], row["labels"], strict=True) if label != -100])
    ]


def test_template_with_generation_markers_trains_every_assistant_turn(tmp_path: Path, tiny_lm: Path) -> None:
    (trained,) = _trained_text(tmp_path, tiny_lm)
    # Both assistant turns ("the X", "a X") and their end-of-turn tokens; nothing from system or user turns.
    assert trained.startswith("the ") and "<|im_end|>a " in trained and trained.endswith("<|im_end|>")
    assert "terse" not in trained and "Again" not in trained


def test_template_without_markers_trains_the_last_assistant_turn(tmp_path: Path, tiny_lm: Path) -> None:
    base = tmp_path / "plain"
    shutil.copytree(tiny_lm, base)
    (base / "chat_template.jinja").write_text(PLAIN_CHATML)
    (trained,) = _trained_text(tmp_path, base)
    assert trained.startswith("a ") and "terse" not in trained and "Again" not in trained and "the " not in trained
