"""The manifest editor's framework completion (SPEC §10): where the cursor is in
``model_definition.framework`` (its ``name`` or its ``version``, block or flow style), and the
catalogue's candidates for it. Pure: the editor applies what ``complete`` returns."""

from __future__ import annotations

import re

_KEY = re.compile(r"^(\s*)([A-Za-z_]+)\s*:")
_FIELD = re.compile(r"(name|version)\s*:\s*")


class Completion:
    """Replace ``line``'s columns ``start``..``end`` with ``text``; ``choices``: every
    candidate (for the status line)."""

    __slots__ = ("line", "start", "end", "text", "choices", "field")

    def __init__(self, line, start, end, text, choices, field) -> None:
        self.line, self.start, self.end, self.text = line, start, end, text
        self.choices, self.field = choices, field


def _value_span(line: str, start: int) -> tuple[int, int]:
    """The value starting at ``start`` (quotes included), up to a comma, brace or comment."""
    end = start
    quote = line[start] if start < len(line) and line[start] in "\"'" else ""
    if quote:
        close = line.find(quote, start + 1)
        end = close + 1 if close > 0 else len(line)
    else:
        while end < len(line) and line[end] not in ",}#\n":
            end += 1
        while end > start and line[end - 1] == " ":
            end -= 1
    return start, end


def _framework_fields(lines: list[str]) -> dict[str, tuple[int, int, int]]:
    """Where framework.name and framework.version are: field → (line, value start, end)."""
    found: dict[str, tuple[int, int, int]] = {}
    for number, line in enumerate(lines):
        key = _KEY.match(line)
        if not key or key.group(2) != "framework":
            continue
        rest_at = key.end()
        if "{" in line[rest_at:]:  # framework: {name: x, version: "1"}
            for field in _FIELD.finditer(line, rest_at):
                found[field.group(1)] = (number, *_value_span(line, field.end()))
            return found
        indent = len(key.group(1))
        for below in range(number + 1, len(lines)):
            inner = _KEY.match(lines[below])
            if not lines[below].strip():
                continue
            if inner is None or len(inner.group(1)) <= indent:
                break
            if inner.group(2) in ("name", "version"):
                start = inner.end()
                while start < len(lines[below]) and lines[below][start] == " ":
                    start += 1
                found[inner.group(2)] = (below, *_value_span(lines[below], start))
        return found
    return found


def _unquote(value: str) -> str:
    return value.strip().strip("\"'")


def complete(text: str, cursor: tuple[int, int], frameworks: list[dict]) -> Completion | None:
    """The completion for the cursor's place when it is in the framework's name or version
    (the next candidate when the value is one already, cycling), else None."""
    lines = text.split("\n")
    fields = _framework_fields(lines)
    row, column = cursor
    for field, (line, start, end) in fields.items():
        if line != row or not start <= column <= max(end, start):
            continue
        current = _unquote(lines[line][start:end])
        if field == "name":
            choices = list(dict.fromkeys(f["name"] for f in frameworks))
        else:
            name_at = fields.get("name")
            name = _unquote(lines[name_at[0]][name_at[1] : name_at[2]]) if name_at else ""
            choices = list(
                dict.fromkeys(
                    str(v)
                    for f in frameworks
                    if f["name"].lower() == name.lower()
                    for v in f.get("versions") or ()
                    if "*" not in str(v) and "?" not in str(v)
                )
            )
        if not choices:
            return Completion(line, start, end, None, [], field)
        if current in choices:  # cycle
            pick = choices[(choices.index(current) + 1) % len(choices)]
        else:
            typed = _unquote(lines[line][start:column]).lower()
            matching = [c for c in choices if c.lower().startswith(typed)] or choices
            pick = matching[0]
        text_out = f'"{pick}"' if field == "version" else pick
        return Completion(line, start, end, text_out, choices, field)
    return None
