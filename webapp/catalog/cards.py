"""The model card's "Use" section: how to load a downloaded folder with transformers/peft, without a hub id.

The engine writes the card before the catalog knows where the model will live; the catalog rewrites the
section for its own download layout (a zip holding one top-level folder named after the model).
"""

from __future__ import annotations

from dataclasses import dataclass

from jobs.training import registry, tasks

USE_HEADING = "## Use"
# A base encoder without a task head: its features.
FEATURES_SNIPPET = ['print(model(**tokenizer("Hello", return_tensors="pt")).last_hidden_state.shape)']


def try_it(task: str) -> list[str]:
    """Lines that run the loaded model once: the task's own snippet (its hooks), else the features of a bare base."""
    return list(tasks.kind(task).try_it) if task in registry.TASK_TABLE else FEATURES_SNIPPET


@dataclass(frozen=True)
class Download:
    """One catalog model as a download: its zip, the folder the zip unpacks to, and the URL that serves it."""

    name: str
    folder: str
    zip_name: str
    url: str


@dataclass(frozen=True)
class Loading:
    """What the snippet needs to know about the model being loaded."""

    task: str
    is_adapter: bool
    has_tokenizer: bool
    # A classifier adapter saves config.json with its labels (id2label), which its base does not know.
    adapter_has_config: bool = False


def usage_section(loading: Loading, model: Download, base: Download | None) -> str:
    """Markdown: download and unzip commands, then Python that loads the folder(s) by their local paths."""
    lines = [
        USE_HEADING,
        "",
        "Everything loads from local folders: no model hub is needed. Downloads from the Layercake catalog take an API",
        "key (`python manage.py api_token USERNAME` prints one); put it in `LAYERCAKE_TOKEN`.",
        "",
        "```bash",
        curl_line(model),
        f"unzip {model.zip_name}  # the folder {model.folder}/",
    ]
    if loading.is_adapter and base is not None:
        lines += [
            f"# This is an adapter: it runs over its base model, {base.name}, downloaded from the same catalog.",
            curl_line(base),
            f"unzip {base.zip_name}  # the folder {base.folder}/",
        ]
    lines += ["```", "", "Then, in the folder that holds the unzipped folder(s):", "", "```python"]
    lines += python_lines(loading, model, base)
    lines += ["```"]
    return "\n".join(lines) + "\n"


def curl_line(download: Download) -> str:
    return f'curl -fL -H "Authorization: Token $LAYERCAKE_TOKEN" -o {download.zip_name} {download.url}'


def python_lines(loading: Loading, model: Download, base: Download | None) -> list[str]:
    auto = registry.task(loading.task).model_class if loading.task in registry.TASKS else "AutoModel"
    imports = sorted({auto, "AutoTokenizer"} | ({"AutoConfig"} if loading.adapter_has_config else set()))
    tokenizer_folder = model.folder if loading.has_tokenizer or base is None else base.folder
    if loading.is_adapter and base is not None:
        config = f", config=AutoConfig.from_pretrained({model.folder!r})" if loading.adapter_has_config else ""
        body = [
            "from peft import PeftModel",
            f"from transformers import {', '.join(imports)}",
            "",
            f"base = {auto}.from_pretrained({base.folder!r}{config})",
            f"model = PeftModel.from_pretrained(base, {model.folder!r}).eval()",
        ]
    else:
        body = [
            f"from transformers import {', '.join(imports)}",
            "",
            f"model = {auto}.from_pretrained({model.folder!r}).eval()",
        ]
    body.append(f"tokenizer = AutoTokenizer.from_pretrained({tokenizer_folder!r})")
    return body + try_it(loading.task)


def with_usage(card: str, usage: str) -> str:
    """The card with its "## Use" section replaced by `usage` (or `usage` appended when it has none)."""
    lines = card.rstrip("\n").split("\n")
    start = next((i for i, line in enumerate(lines) if line.strip() == USE_HEADING), None)
    if start is None:
        return "\n".join(lines) + "\n\n" + usage
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    kept = lines[:start] + usage.rstrip("\n").split("\n")
    if end < len(lines):
        kept += [""] + lines[end:]
    return "\n".join(kept) + "\n"
