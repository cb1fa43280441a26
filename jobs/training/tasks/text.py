"""Continued pre-training on raw text: every token is learned."""

from __future__ import annotations

from typing import TYPE_CHECKING

from jobs.training.tasks.base import CausalKind

if TYPE_CHECKING:
    from datasets import Dataset


class Text(CausalKind):
    name = "text"
    # Long documents are split across packed sequences rather than cut: no text is lost.
    cuda_packing_strategy = "bfd_split"

    def sft_rows(self, dataset: Dataset, markers: bool) -> Dataset:
        return dataset.select_columns(["text"])


KIND = Text()
