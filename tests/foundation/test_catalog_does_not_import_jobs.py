"""The catalog never imports the jobs app: jobs depend on the catalog, not the reverse (issue 11).

What the catalog shows of jobs it reads through its models' reverse relations (`model.jobs`,
`model.produced_by_jobs`); merging and GGUF export, which start and run jobs, live in the jobs app. The
engine, `jobs.training`, is plain Python without Django: a library that both may use.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ENGINE = "jobs.training"


def imported_modules(source: str) -> Iterator[tuple[int, str]]:
    """The modules that the import statements of `source` name, at any depth (imports inside functions too)."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module == "jobs":
            for alias in node.names:  # `from jobs import services` imports jobs.services
                yield node.lineno, f"jobs.{alias.name}"
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module


def jobs_app_imports(source: str) -> list[str]:
    return [
        f"line {line}: {name}"
        for line, name in imported_modules(source)
        if (name == "jobs" or name.startswith("jobs.")) and not (name == ENGINE or name.startswith(f"{ENGINE}."))
    ]


def test_no_catalog_module_imports_the_jobs_app():
    sources = sorted((ROOT / "webapp" / "catalog").rglob("*.py"))
    assert len(sources) > 10
    offenders = {str(path.relative_to(ROOT)): found for path in sources if (found := jobs_app_imports(path.read_text()))}
    assert not offenders, f"the catalog imports the jobs app: {offenders}"


def test_the_check_finds_the_jobs_app_but_lets_the_engine_pass():
    source = (
        "import jobs\nfrom jobs.training import registry\nfrom jobs import training\n"
        "def f():\n    from jobs import services\n    from jobs.models import Job\n"
    )
    assert jobs_app_imports(source) == ["line 1: jobs", "line 5: jobs.services", "line 6: jobs.models"]
