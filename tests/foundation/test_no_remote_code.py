"""Every transformers load in the app and the engine says trust_remote_code=False, explicitly (issue 10)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# peft's loader takes no such argument: it loads adapter weights onto a model loaded above.
NOT_TRANSFORMERS = {"PeftModel", "PeftConfig"}


def loads_without_the_flag(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "from_pretrained"):
            continue
        owner = node.func.value
        if isinstance(owner, ast.Name) and owner.id in NOT_TRANSFORMERS:
            continue
        flag = next((k.value for k in node.keywords if k.arg == "trust_remote_code"), None)
        if not (isinstance(flag, ast.Constant) and flag.value is False):
            found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    return found


def test_every_from_pretrained_call_refuses_remote_code():
    sources = [p for folder in ("webapp", "jobs") for p in (ROOT / folder).rglob("*.py") if "migrations" not in p.parts]
    offenders = [where for path in sources for where in loads_without_the_flag(path)]
    assert not offenders, f"from_pretrained without trust_remote_code=False: {offenders}"
