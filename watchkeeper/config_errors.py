"""Turning a bad configuration file into messages that name the file, line, key and fix.

`load_config` reads YAML with `read_yaml`, which refuses duplicate keys (PyYAML keeps the last
one silently, so a second `models: {fraud: ...}` entry would replace the first unnoticed) and
remembers the line of every key; `describe` turns each pydantic error into one line
`FILE: KEY.PATH: what is wrong (got VALUE) (line N)`, with the keys a section accepts when a
key is unknown. Values are never echoed for keys that may hold secrets.

>>> data, lines = read_yaml("models:\\n  fraud:\\n    window: 5m\\n", "w.yaml")
>>> lines[("models", "fraud", "window")]
3
>>> read_yaml("models:\\n  a: {}\\n  a: {}\\n", "w.yaml")
Traceback (most recent call last):
...
ValueError: w.yaml: models.a: duplicate key (first at line 2, again at line 3)
"""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping
from typing import Any

import yaml
from pydantic import BaseModel
from pydantic_core import ErrorDetails

__all__ = ["KeyPathError", "describe", "read_yaml"]

Lines = dict[tuple[str, ...], int]

#: Values at keys whose path holds one of these words are never repeated in a message.
SECRET_WORDS = ("token", "password", "secret", "url", "receivers", "sha256", "env")


class KeyPathError(ValueError):
    """A validator's error about a key below the section it validates (`loc`, relative)."""

    def __init__(self, loc: tuple[str | int, ...], message: str) -> None:
        super().__init__(message)
        self.loc = loc


def read_yaml(text: str, source: str) -> tuple[Any, Lines]:
    """Parse `text`; the data and the 1-based line of every key path. A syntax error or a
    duplicate key raises `ValueError` naming `source`, the line and the key."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        context = getattr(exc, "context", None)
        detail = f"{problem} ({context})" if context else problem
        raise ValueError(
            f"{source}: not valid YAML{' at ' + where if where else ''}: {detail}"
        ) from None
    lines: Lines = {}
    if node is not None:
        _walk(node, (), lines, source)
    return data, lines


def _walk(node: yaml.Node, path: tuple[str, ...], lines: Lines, source: str) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key, value in node.value:
            name = str(key.value) if isinstance(key, yaml.ScalarNode) else "?"
            line = key.start_mark.line + 1
            if name in seen:
                shown = ".".join((*path, name))
                raise ValueError(
                    f"{source}: {shown}: duplicate key (first at line {seen[name]}, again at "
                    f"line {line})"
                )
            seen[name] = line
            lines[(*path, name)] = line
            _walk(value, (*path, name), lines, source)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            lines[(*path, str(i))] = item.start_mark.line + 1
            _walk(item, (*path, str(i)), lines, source)


def describe(
    error: ErrorDetails, root: type[BaseModel], source: str, lines: Mapping[tuple[str, ...], int]
) -> str:
    """One line for one pydantic error: file, key path, problem, the value given, the line."""
    loc: tuple[str | int, ...] = tuple(error["loc"])
    message = error["msg"]
    cause = (error.get("ctx") or {}).get("error")
    if isinstance(cause, KeyPathError):
        loc = (*loc, *cause.loc)
        message = str(cause)
    path = ".".join(str(part) for part in loc) or "(top level)"
    kind = error["type"]
    if kind == "extra_forbidden":
        section = _section_at(root, loc[:-1])
        if section is not None:
            keys = sorted(f.alias or name for name, f in section.model_fields.items())
            message += f": unknown key; expected one of: {', '.join(keys)}"
    elif kind not in ("missing", "value_error") and not _secret(loc):
        given = error.get("input")
        if isinstance(given, str | int | float | bool) or given is None:
            text = repr(given)
            message += f" (got {text if len(text) <= 80 else text[:77] + '...'})"
        else:
            message += f" (got a {type(given).__name__})"
    line = _line(lines, loc)
    return f"{source}: {path}: {message}" + (f" (line {line})" if line else "")


def _secret(loc: tuple[str | int, ...]) -> bool:
    return any(word in str(part).lower() for part in loc for word in SECRET_WORDS)


def _line(lines: Mapping[tuple[str, ...], int], loc: tuple[str | int, ...]) -> int | None:
    """The line of the deepest key of `loc` the file has (an unset key: its section's)."""
    parts = tuple(str(p) for p in loc)
    for end in range(len(parts), 0, -1):
        if parts[:end] in lines:
            return lines[parts[:end]]
    return None


def _section_at(root: type[BaseModel], loc: tuple[str | int, ...]) -> type[BaseModel] | None:
    """The configuration class of the section at `loc` (list items and dict values followed)."""
    current: Any = root
    for part in loc:
        model = _model_of(current)
        if model is None:
            # A list item or a dict value: step into the element type.
            current = _element(current)
            continue
        field = next((f for name, f in model.model_fields.items() if part in (name, f.alias)), None)
        if field is None:
            return None
        current = field.annotation
    return _model_of(current)


def _model_of(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _model_of(typing.get_args(annotation)[0])
    if origin is typing.Union or origin is types.UnionType:
        for arg in typing.get_args(annotation):
            found = _model_of(arg)
            if found is not None:
                return found
    return None


def _element(annotation: Any) -> Any:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return _element(args[0])
    if origin in (list, tuple, set) and args:
        return args[0]
    if origin is dict and len(args) == 2:
        return args[1]
    if origin is typing.Union or origin is types.UnionType:
        for arg in args:
            if typing.get_origin(arg) in (list, dict):
                return _element(arg)
    return None
