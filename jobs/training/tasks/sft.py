"""Instruction and chat fine-tuning: conversations whose assistant turns the model learns to write."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from jobs.training.tasks.base import CausalKind

if TYPE_CHECKING:
    from datasets import Dataset


class SFT(CausalKind):
    name = "sft"
    chat_rows = True
    completion_only_loss: ClassVar[bool | None] = None

    def sft_rows(self, dataset: Dataset, markers: bool) -> Dataset:
        from jobs.training.data import to_conversations

        return to_conversations(dataset, markers)


KIND = SFT()
