"""Models kept resident in an inference worker (plain Python): one base in memory, adapters hot-swapped per request.

A group is one loaded base (with the head its adapters need) plus the adapters loaded into it with peft
`load_adapter`; a request activates its adapter with `set_adapter`. Full and merged models are groups of their own.
Least-recently-used adapters and groups are evicted past the limits.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from webapp.catalog import loading

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServedModel:
    """What the pool needs to serve one catalog model: its folder and, for an adapter, its base's."""

    key: str
    name: str
    kind: str  # base | adapter | full | merged
    folder: Path
    base_key: str | None = None
    base_folder: Path | None = None

    @property
    def is_adapter(self) -> bool:
        return self.kind == "adapter"


@dataclass
class Group:
    key: str
    model: Any  # the plain model, or the PeftModel wrapping it once an adapter was loaded
    tokenizer: Any
    task: str
    adapters: OrderedDict[str, str] = field(default_factory=OrderedDict)  # catalog key -> peft adapter name
    peft: bool = False
    # The model's adapter layers, found once per load: peft's model-wide set_adapter walks every module twice.
    tuner_layers: list[Any] = field(default_factory=list)
    head_wrappers: list[Any] = field(default_factory=list)

    def index_adapter_layers(self) -> None:
        from peft.tuners.tuners_utils import BaseTunerLayer
        from peft.utils.other import AuxiliaryTrainingWrapper

        modules = list(self.model.modules())
        self.tuner_layers = [m for m in modules if isinstance(m, BaseTunerLayer)]
        self.head_wrappers = [m for m in modules if isinstance(m, AuxiliaryTrainingWrapper)]

    def switch_to(self, name: str) -> None:
        """PeftModel.set_adapter(name, inference_mode=True), on the indexed layers only."""
        config = self.model.peft_config[name]
        if config.is_prompt_learning:
            self.model.set_adapter(name, inference_mode=True)
            return
        self.model.active_adapter = name
        for wrapper in self.head_wrappers:  # trained heads (modules_to_save) follow their adapter, as peft's _set_adapter
            wrapper.set_adapter(name if name in wrapper._adapters else [], inference_mode=True)
        for layer in self.tuner_layers:
            layer.set_adapter(name, inference_mode=True)
        self.model.base_model.active_adapter = name


@dataclass
class Served:
    """A model ready for one request, and how it came to be ready."""

    model: Any
    tokenizer: Any
    task: str
    mode: str
    setup_seconds: float


class ResidentModels:
    def __init__(self, max_groups: int = 2, max_adapters: int = 16) -> None:
        self.max_groups = max_groups
        self.max_adapters = max_adapters
        self.groups: OrderedDict[str, Group] = OrderedDict()
        self.lock = threading.Lock()
        self.loads = 0  # how many times a model was read from disk: what residency saves
        self.group_keys: dict[str, str] = {}  # catalog key -> group key, so a swap reads no files

    def group_key(self, spec: ServedModel) -> str:
        """Adapters share a group with their base when the head fits and peft can mix them (same peft type)."""
        if spec.key not in self.group_keys:
            self.group_keys[spec.key] = self._group_key(spec)
        return self.group_keys[spec.key]

    def _group_key(self, spec: ServedModel) -> str:
        if spec.is_adapter:
            key = f"{spec.base_key}|{loading.head_signature(spec.folder)}"
            peft_type = loading.read_adapter_config(spec.folder).get("peft_type", "LORA")
            return key if peft_type == "LORA" else f"{key}|{peft_type}"
        if spec.kind == "base":
            return f"{spec.key}|{loading.task_of_folder(spec.folder)}"
        return f"{spec.key}|plain"

    def _group(self, key: str, loader: Any) -> tuple[Group, bool]:
        group = self.groups.get(key)
        if group is not None:
            self.groups.move_to_end(key)
            return group, False
        group = loader()
        self.loads += 1
        self.groups[key] = group
        while len(self.groups) > self.max_groups:
            evicted_key, evicted = self.groups.popitem(last=False)
            logger.info("evicting resident model %s (%d adapters)", evicted_key, len(evicted.adapters))
            del evicted
            gc.collect()
        return group, True

    def _load_plain(self, spec: ServedModel) -> Group:
        task = loading.task_of_folder(spec.folder)
        return Group(self.group_key(spec), loading.load_plain(spec.folder, task), loading.load_tokenizer(spec.folder), task)

    def _load_base_for(self, spec: ServedModel) -> Group:
        assert spec.base_folder is not None
        task = loading.task_of_folder(spec.folder)
        base = loading.load_base_for_adapter(spec.folder, spec.base_folder)
        return Group(self.group_key(spec), base, loading.load_tokenizer(spec.folder, spec.base_folder), task)

    def _activate(self, group: Group, spec: ServedModel) -> bool:
        """Load the adapter into the group if absent, make it the active one; True when it had to be loaded."""
        loaded = False
        name = group.adapters.get(spec.key)
        if name is None:
            name = f"adapter_{spec.key.replace('-', '')}"
            if not group.peft:
                group.model = loading.attach_adapter(group.model, spec.folder, adapter_name=name)
                group.peft = True
            else:
                group.model.load_adapter(spec.folder, adapter_name=name, is_trainable=False)
            group.adapters[spec.key] = name
            loaded = True
        group.adapters.move_to_end(spec.key)
        while len(group.adapters) > self.max_adapters:
            old_key, old_name = group.adapters.popitem(last=False)
            logger.info("evicting adapter %s from %s", old_key, group.key)
            group.model.delete_adapter(old_name)
        if loaded:
            group.index_adapter_layers()
        # inference_mode: the swapped-in adapter stays frozen (peft's default would mark it trainable).
        group.switch_to(name)
        return loaded

    @contextmanager
    def use(self, spec: ServedModel, adapters_off: bool = False) -> Iterator[Served]:
        """The model for one request. `adapters_off` serves the adapter's base through the same resident weights."""
        with self.lock:
            started = time.perf_counter()
            if spec.is_adapter:
                group, fresh = self._group(self.group_key(spec), lambda: self._load_base_for(spec))
                loaded = self._activate(group, spec)
                seconds = time.perf_counter() - started
                if adapters_off:
                    mode = "base, through the resident shared base with adapters switched off"
                elif fresh:
                    mode = f"adapter applied at inference over a shared base (base and adapter loaded in {seconds:.2f} s)"
                elif loaded:
                    mode = f"adapter applied at inference over the resident shared base (adapter loaded in {seconds * 1000:.0f} ms)"
                else:
                    mode = f"adapter applied at inference over the resident shared base (hot-swapped in {seconds * 1000:.1f} ms)"
                context = group.model.disable_adapter() if adapters_off else nullcontext()
                with context:
                    yield Served(group.model, group.tokenizer, group.task, mode, seconds)
                return
            group, fresh = self._group(self.group_key(spec), lambda: self._load_plain(spec))
            seconds = time.perf_counter() - started
            what = "base model" if spec.kind == "base" else f"{spec.kind} model of its own"
            mode = f"{what} (loaded in {seconds:.2f} s)" if fresh else f"{what} (resident)"
            if group.peft:
                # The base's weights are already resident under its adapters: serve it with them switched off.
                mode = f"base model (resident, shared with {len(group.adapters)} adapter(s), switched off)"
                with group.model.disable_adapter():
                    yield Served(group.model, group.tokenizer, group.task, mode, seconds)
                return
            yield Served(group.model, group.tokenizer, group.task, mode, seconds)

    def forget(self, key: str) -> bool:
        """Drop a deleted catalog model: its own group (a base, full or merged model), or its adapter in a base's group."""
        with self.lock:
            self.group_keys.pop(key, None)
            dropped = [group_key for group_key in self.groups if group_key.split("|", 1)[0] == key]
            for group_key in dropped:
                del self.groups[group_key]
            for group_key, group in list(self.groups.items()):
                name = group.adapters.pop(key, None)
                if name is None:
                    continue
                try:
                    group.model.delete_adapter(name)
                except Exception:  # peft refused (its last adapter, say): the whole group goes instead
                    logger.warning("dropping %s: adapter %s would not unload", group_key, key, exc_info=True)
                    del self.groups[group_key]
                dropped.append(f"{group_key}:{key}")
            if dropped:
                logger.info("forgot deleted model %s: %s", key, ", ".join(dropped))
                gc.collect()
            return bool(dropped)

    def resident(self) -> dict[str, list[str]]:
        return {key: list(group.adapters) for key, group in self.groups.items()}
