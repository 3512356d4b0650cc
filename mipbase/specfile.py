"""Loading YAML spec files so that every error can name its file, line and field.

Topologies and scenarios are YAML validated into typed (pydantic) models. Users need errors
like ``topologies/x.yaml:12: nodes.ha.links[0].network: unknown network 'hom'``, so the
loader keeps a map from each value's path to the line it was written on.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

PathKey = tuple[str | int, ...]


class SpecError(Exception):
    """Invalid user input in a spec file; str() is ``file:line: field: message``."""

    def __init__(self, file: str, line: int | None, field: str, message: str) -> None:
        super().__init__(message)
        self.file = file
        self.line = line
        self.field = field
        self.message = message

    def __reduce__(self) -> tuple[type[SpecError], tuple[str, int | None, str, str]]:
        # pickled as built (an agent's configuration is parsed in a child process)
        return (SpecError, (self.file, self.line, self.field, self.message))

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return (
            f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"
        )


def format_path(path: Sequence[str | int]) -> str:
    """``('nodes', 'ha', 'links', 0)`` -> ``nodes.ha.links[0]``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


_ASSIGNMENT = re.compile(r"^([A-Za-z_][\w-]*(?:\[\d+\]|\.[A-Za-z_][\w-]*)*)=(.*)$", re.DOTALL)
_PATH_PART = re.compile(r"\[(\d+)\]|\.?([A-Za-z_][\w-]*)")


@dataclass
class SpecSource:
    """A parsed YAML document plus the line of every value in it, and the values set from
    the command line (``--set PATH=VALUE``: errors there name the option, not a line)."""

    file: str
    data: Any
    lines: dict[PathKey, int] = field(default_factory=dict)
    overrides: dict[PathKey, str] = field(default_factory=dict)

    def override(self, assignment: str) -> None:
        """Apply ``PATH=VALUE`` (``timeline[1].move.to=office``, ``repeat=3``): VALUE is
        YAML (``20ms``, ``true``, ``{delay: 5ms}``); mappings on the way are created."""
        match = _ASSIGNMENT.match(assignment)
        if match is None:
            raise SpecError("--set", None, "", f"{assignment!r}: write PATH=VALUE, e.g. repeat=3")
        text_path, text_value = match.groups()
        path: PathKey = tuple(
            int(index) if index else str(key) for index, key in _PATH_PART.findall(text_path)
        )
        try:
            value = yaml.safe_load(text_value) if text_value.strip() else None
        except yaml.YAMLError as exc:
            raise SpecError("--set", None, text_path, f"the value is not YAML: {exc}") from None
        if value is None:
            raise SpecError("--set", None, text_path, "give a value after '='")
        container = self.data
        for depth, part in enumerate(path[:-1]):
            nxt = path[depth + 1]
            if isinstance(part, int):
                if not isinstance(container, list) or part >= len(container):
                    where = format_path(path[:depth]) or "the file"
                    raise SpecError("--set", None, text_path, f"{where} has no [{part}]")
                container = container[part]
            else:
                if not isinstance(container, dict):
                    where = format_path(path[:depth])
                    raise SpecError("--set", None, text_path, f"{where} is not a mapping")
                container = container.setdefault(part, [] if isinstance(nxt, int) else {})
        last = path[-1]
        if isinstance(last, int):
            if not isinstance(container, list) or last >= len(container):
                raise SpecError("--set", None, text_path, f"there is no [{last}] to set")
        elif not isinstance(container, dict):
            raise SpecError("--set", None, text_path, f"{format_path(path[:-1])} is not a mapping")
        container[last] = value
        self.overrides[path] = f"{text_path}={text_value}"

    def line_of(self, path: Iterable[str | int]) -> int | None:
        """Line of the deepest prefix of ``path`` that was written in the file."""
        parts = tuple(path)
        while parts:
            if parts in self.lines:
                return self.lines[parts]
            parts = parts[:-1]
        return self.lines.get((), None)

    def error(self, path: Sequence[str | int], message: str) -> SpecError:
        parts = tuple(path)
        for set_path, assignment in self.overrides.items():
            if parts[: len(set_path)] == set_path:  # at or below what --set wrote
                return SpecError(f"--set {assignment}", None, format_path(path), message)
        return SpecError(self.file, self.line_of(path), format_path(path), message)

    def validation_error(self, exc: ValidationError, prefix: PathKey = ()) -> SpecError:
        """The first pydantic error as a SpecError (others are appended to the message)."""
        errors = exc.errors(include_url=False)
        messages = []
        first_path: PathKey = prefix
        for index, err in enumerate(errors):
            # pydantic adds the tagged-union/function names to loc; keep only real keys
            path = prefix + tuple(p for p in err["loc"] if not _is_internal_loc(p))
            text = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                text = "unknown field (check the spelling)"
            elif err["type"] == "missing":
                text = "required field is missing"
            if index == 0:
                first_path = path
                messages.append(text)
            else:
                line = self.line_of(path)
                messages.append(f"also line {line}: {format_path(path)}: {text}")
        return self.error(first_path, "; ".join(messages))


def _is_internal_loc(part: object) -> bool:
    return isinstance(part, str) and ("[" in part or part.startswith("function-"))


# libyaml's parser when PyYAML was built with it: 3x faster (an HA's file of 100k MNs); a
# file it refuses is parsed again by PyYAML's own for its messages, which name what they
# found (the tab, the alias) where libyaml's do not
_FAST_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_spec(path: str | Path, text: str | None = None) -> SpecSource:
    """Parse a YAML file; raises SpecError on unreadable files, syntax errors, duplicate keys."""
    file = str(path)
    if text is None:
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise SpecError(file, None, "", f"cannot read file: {exc.strerror}") from None
    try:
        return _parse(file, text, _FAST_LOADER)
    except yaml.MarkedYAMLError:
        pass
    try:
        return _parse(file, text, yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        raise SpecError(file, line, "", f"YAML syntax error: {exc.problem}") from None


def _parse(file: str, text: str, loader_type: type[yaml.SafeLoader]) -> SpecSource:
    loader = loader_type(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise SpecError(file, 1, "", "the file is empty")
        source = SpecSource(file, None)
        source.data = _convert(loader, node, (), source)
        return source
    finally:
        loader.dispose()


def _convert(loader: yaml.SafeLoader, node: yaml.Node, path: PathKey, src: SpecSource) -> Any:
    src.lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)  # resolve YAML merge keys (<<)
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if key in out:
                raise SpecError(
                    src.file,
                    key_node.start_mark.line + 1,
                    format_path((*path, key)),
                    "duplicate key",
                )
            src.lines[(*path, key)] = key_node.start_mark.line + 1
            out[key] = _convert(loader, value_node, (*path, key), src)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_convert(loader, item, (*path, i), src) for i, item in enumerate(node.value)]
    return loader.construct_object(node, deep=True)
