"""Text regression: `text` and a numeric `score` per row, read from numbers or from text that spells one."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from webapp.datasets.kinds.base import DatasetKind, ProfileExtras
from webapp.datasets.kinds.checks import ErrorLog, check_numbers
from webapp.datasets.kinds.columns import describe, is_scalar_text
from webapp.datasets.kinds.text import TextKind
from webapp.datasets.shapes import ShapeMismatch

if TYPE_CHECKING:
    from webapp.datasets.shapes import Shape

# A number written as text, as Arrow's cast parses it (RE2 syntax): 3, -2.5, .5, 1e3, inf, NaN.
NUMBER_TEXT = r"(?i)^[+-]?((\d+\.?\d*|\.\d+)(e[+-]?\d+)?|inf|infinity|nan)$"


def as_number(array: pa.Array, name: str, source: str) -> pa.Array:
    """Numbers as float64, text parsed as one. What is no number (a word, true or false) becomes NaN and a blank or
    null stays null, for the row checks to name; lists and objects are refused for a number column."""
    if pa.types.is_dictionary(array.type):
        array = array.dictionary_decode()
    kind = array.type
    if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind) or pa.types.is_null(kind):
        return array.cast(pa.float64(), safe=False)  # a huge integer rounds to the nearest double
    if pa.types.is_boolean(kind):
        return pc.if_else(pc.is_null(array), pa.scalar(None, pa.float64()), math.nan)
    if not is_scalar_text(kind):
        raise ShapeMismatch(f"Column `{source}` (used as `{name}`) must hold numbers, but it holds {describe(kind)}.")
    text = pc.utf8_trim_whitespace(array.cast(pa.string()))
    parses = pc.match_substring_regex(text, NUMBER_TEXT)
    numbers = pc.if_else(parses, text, pa.scalar(None, pa.string())).cast(pa.float64())
    unreadable = pc.fill_null(pc.and_(pc.invert(parses), pc.not_equal(text, "")), False)
    return pc.if_else(unreadable, math.nan, numbers)


class ScoreSpread(ProfileExtras):
    """Count, mean, spread and range of the scores, merged batch by batch (Chan et al.'s parallel variance: no
    second pass, and no loss of precision on large scores such as prices); the profile's `scores`. Only finite
    scores count: the others are row errors."""

    def __init__(self) -> None:
        self.count = 0
        self.mean = 0.0
        self.squares = 0.0  # sum of squared differences from the mean
        self.low = math.inf
        self.high = -math.inf

    def add(self, batch: pa.RecordBatch) -> None:
        values = batch.column("score").to_numpy(zero_copy_only=False).astype(np.float64)  # nulls read as NaN
        values = values[np.isfinite(values)]
        if not len(values):
            return
        count, mean = len(values), float(values.mean())
        total, delta = self.count + count, mean - self.mean
        self.squares += float(((values - mean) ** 2).sum()) + delta**2 * self.count * count / total
        self.mean += delta * count / total
        self.count = total
        self.low, self.high = min(self.low, float(values.min())), max(self.high, float(values.max()))

    def result(self, profile: dict[str, Any], sample: list[dict[str, Any]]) -> None:
        profile["scores"] = self._spread(profile["warnings"])

    def _spread(self, warnings: list[str]) -> dict[str, float] | None:
        if not self.count:
            return None
        if self.low == self.high:
            warnings.append(
                f"Every score is {self.low:g}: with nothing to tell the rows apart, a model can only learn that one value."
            )
        std = math.sqrt(self.squares / self.count)
        return {"min": self.low, "max": self.high, "mean": round(self.mean, 6), "std": round(std, 6)}


class RegressionKind(TextKind):
    task = "regression"
    schemas = {"regression": pa.schema([("text", pa.string()), ("score", pa.float64())])}
    required_text = {"regression": ("text",)}
    over_limit_effect = DatasetKind.over_limit_effect  # the page's words so far; classification's would hold too
    profile_template = "datasets/kinds/regression.html"

    def convert(
        self, field: pa.Field, array: pa.Array, source: str, batch: pa.RecordBatch, shape: Shape, first_row: int
    ) -> pa.Array:
        if field.name == "score":
            return as_number(array, field.name, source)
        return super().convert(field, array, source, batch, shape, first_row)

    def check_rows(self, batch: pa.RecordBatch, shape: str, first_row: int, log: ErrorLog) -> None:
        super().check_rows(batch, shape, first_row, log)
        check_numbers(batch.column("score"), "score", first_row, log)

    def profile_extras(self, shape: str) -> ProfileExtras:
        return ScoreSpread()


KIND = RegressionKind()
