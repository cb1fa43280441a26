"""Domain errors carry what a person needs to act; webapp.api.errors maps them to HTTP in one place."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class RowError:
    """One problem in one row of a dataset (rows count from 1, like a spreadsheet)."""

    row: int | None
    field: str | None
    message: str

    def as_dict(self) -> dict[str, object]:
        return asdict(self)

    def __str__(self) -> str:
        where = [f"row {self.row}" if self.row is not None else "", f"`{self.field}`" if self.field else ""]
        prefix = " ".join(part for part in where if part)
        return f"{prefix}: {self.message}" if prefix else self.message


@dataclass
class LayercakeError(Exception):
    """Base of the errors a user can act on: one sentence, plus row-level details."""

    message: str
    details: list[RowError] = field(default_factory=list)
    status: int = 400

    def __post_init__(self) -> None:
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message
