"""YAML text → a tree of located nodes, safely.

PyYAML's composer recurses (a 20,000-deep document blows the stack) and its constructor expands
aliases eagerly (a "billion laughs" document eats the memory). We build our own nodes from the
parser's event stream instead: iterative, with a depth limit, and with the size each node would
have once its aliases are expanded, so a bomb is refused before anything is expanded.
Nothing is ever constructed into Python objects, so no tag can run code.
"""

from __future__ import annotations

import yaml

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_resolver = yaml.resolver.Resolver()

MAX_DEPTH = 64
MAX_EXPANDED_NODES = 10_000
# values the aliases may add, as a multiple of the values written: past MAX_EXPANDED_NODES,
# a document is refused only when its aliases multiply it (a 'billion laughs' bomb); a list of
# 10,000 seeds written out is no bomb, and its size is bounded by the file's
ALIAS_GROWTH = 4

STANDARD_TAGS = {
    f"tag:yaml.org,2002:{t}": t for t in ("str", "int", "float", "bool", "null", "map", "seq")
}


_VALUES = (yaml.ScalarEvent, yaml.MappingStartEvent, yaml.SequenceStartEvent, yaml.AliasEvent)


class YamlError(Exception):
    """A document that cannot be read as YAML, with where (0-based) and what."""

    def __init__(self, message: str, line: int = 0, column: int = 0) -> None:
        super().__init__(message)
        self.message = message
        self.line = line
        self.column = column


class Node:
    """A located YAML node. ``line``/``column`` are 0-based, as PyYAML gives them; ``start``
    and ``end`` are character offsets of its text, for in-place redaction; ``value`` is a
    scalar's text as written (after YAML's quoting and folding rules); ``plain`` marks an
    unquoted scalar, subject to implicit typing (1.2 → float); ``items`` holds a map's
    (key, value) pairs or a list's nodes; ``size`` counts the nodes once aliases expand."""

    __slots__ = (
        "kind", "line", "column", "start", "end", "value", "plain", "tag", "anchor", "items",
        "size",
    )  # fmt: skip

    def __init__(
        self,
        kind: str,
        line: int,
        column: int,
        start: int,
        end: int,
        value: str = "",
        plain: bool = False,
        tag: str | None = None,
        anchor: str | None = None,
    ) -> None:
        self.kind = kind  # "scalar", "map" or "seq"
        self.line = line
        self.column = column
        self.start = start
        self.end = end
        self.value = value
        self.plain = plain
        self.tag = tag
        self.anchor = anchor
        self.items: list = []
        self.size = 1

    @property
    def scalar_type(self) -> str:
        """The YAML type a loader would give this scalar: str, int, float, bool, null, ..."""
        if self.tag is not None:
            return STANDARD_TAGS.get(self.tag, self.tag)
        if not self.plain:
            return "str"
        tag = _resolver.resolve(yaml.ScalarNode, self.value, (True, False))
        return tag.rsplit(":", 1)[-1]


def compose(text: str) -> Node | None:
    """The single document in ``text`` as nodes, or None for an empty document."""
    stack: list[Node] = []
    anchors: dict[str, Node] = {}
    documents = 0
    root: Node | None = None
    flows: set[int] = set()  # where each '{' or '[' opened (a node's start)

    def attach(node: Node) -> None:
        nonlocal root
        if not stack:
            root = node
            return
        parent = stack[-1]
        if parent.kind == "seq":
            parent.items.append(node)
        elif parent.items and parent.items[-1][1] is None:
            parent.items[-1] = (parent.items[-1][0], node)
        else:
            parent.items.append((node, None))

    def mark(event: yaml.Event) -> tuple[int, int, int]:
        m = event.start_mark
        return m.line, m.column, m.index

    written = 0  # the values the text holds (an alias counts one)
    try:
        for event in yaml.parse(text, Loader=_Loader):
            if isinstance(event, _VALUES):
                written += 1
            if isinstance(event, yaml.DocumentStartEvent):
                documents += 1
                if documents > 1:
                    line, col, _ = mark(event)
                    raise YamlError(
                        "the file holds more than one YAML document ('---'); "
                        "a manifest is a single document",
                        line,
                        col,
                    )
            elif isinstance(event, yaml.ScalarEvent):
                line, col, start = mark(event)
                node = Node(
                    "scalar",
                    line,
                    col,
                    start,
                    event.end_mark.index,
                    value=event.value,
                    plain=bool(event.implicit[0]),
                    tag=event.tag if event.tag not in (None, "!") else None,
                    anchor=event.anchor,
                )
                if event.anchor:
                    anchors[event.anchor] = node
                attach(node)
            elif isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
                line, col, start = mark(event)
                if event.flow_style:
                    flows.add(start)
                if len(stack) >= MAX_DEPTH:
                    raise YamlError(
                        f"the document is nested deeper than {MAX_DEPTH} levels; "
                        "a manifest needs only a few",
                        line,
                        col,
                    )
                kind = "map" if isinstance(event, yaml.MappingStartEvent) else "seq"
                node = Node(kind, line, col, start, start, tag=event.tag, anchor=event.anchor)
                if event.anchor:
                    anchors[event.anchor] = node
                attach(node)
                stack.append(node)
            elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
                node = stack.pop()
                node.end = event.end_mark.index
                if node.kind == "seq":
                    node.size = 1 + sum(child.size for child in node.items)
                else:
                    node.size = 1 + sum(k.size + (v.size if v else 0) for k, v in node.items)
                if node.size > MAX_EXPANDED_NODES and node.size > ALIAS_GROWTH * written:
                    raise YamlError(
                        f"the document expands to more than {MAX_EXPANDED_NODES:,} values "
                        "through its aliases (a YAML 'billion laughs' bomb?)",
                        node.line,
                        node.column,
                    )
            elif isinstance(event, yaml.AliasEvent):
                target = anchors.get(event.anchor)
                line, col, _ = mark(event)
                if target is None or any(target is open_node for open_node in stack):
                    raise YamlError(
                        f"alias '*{event.anchor}' refers to no finished anchor", line, col
                    )
                attach(target)
    except yaml.MarkedYAMLError as error:
        opened = next((node for node in reversed(stack) if node.start in flows), None)
        raise _yaml_error(error, text, opened) from None
    except yaml.reader.ReaderError as error:
        line, col = _line_col(text, error.position)
        raise YamlError(
            f"unacceptable character {error.character!r}: a manifest is plain YAML text",
            line,
            col,
        ) from None
    except yaml.YAMLError as error:  # anything else PyYAML may raise, still one sentence
        raise YamlError(f"not valid YAML: {error}") from None
    return root


def _line_col(text: str, index: int) -> tuple[int, int]:
    line = text.count("\n", 0, index)
    return line, index - (text.rfind("\n", 0, index) + 1)


def _unclosed(context: str, problem: str) -> bool:
    """Whether the error is about something opened and never closed (a '{', '[', a quote, a
    key without its ':'), which the parser notices only where it gives up, often lines later:
    such an error is located where that thing starts (PyYAML's context mark)."""
    if "flow mapping" in context or "flow sequence" in context or "simple key" in context:
        return True
    # a bad escape inside a quoted scalar is best shown where it is, not at the quote
    return "quoted scalar" in context and "unexpected" in problem


def _yaml_error(error: yaml.MarkedYAMLError, text: str, opened: Node | None = None) -> YamlError:
    """The YamlError said of PyYAML's ``error``; ``opened`` is the innermost '{' or '[' still
    open where the parser gave up, if any."""
    mark = error.problem_mark or error.context_mark
    line, col = (mark.line, mark.column) if mark else (0, 0)
    if mark is not None and 0 <= mark.index < len(text) and text[mark.index] == "\t":
        return YamlError("a tab character; YAML indentation must use spaces", line, col)
    problem = (error.problem or "not valid YAML").strip()
    if "maximum nesting depth" in problem:  # libyaml's own limit, below ours for flow style
        return YamlError(
            f"the document is nested deeper than {MAX_DEPTH} levels; a manifest needs only a few",
            line,
            col,
        )
    context = (error.context or "").strip()
    start = error.context_mark
    if start is not None and mark is not None and _unclosed(context, problem):
        where = "the end of the file" if mark.index >= len(text) else f"{line + 1}:{col + 1}"
        return YamlError(
            f"YAML syntax error: {problem} ({context} that starts here; "
            f"the parser gave up at {where})",
            start.line,
            start.column,
        )
    if opened is not None and mark is not None and not text[mark.index :].strip():
        # the file ends inside a '{' or '[' (`key: [` as its last line): PyYAML's context is
        # then the node it expected, at the end; said where the bracket opens instead
        bracket = "{" if opened.kind == "map" else "["
        return YamlError(
            f"YAML syntax error: {problem} (the '{bracket}' that starts here is never closed; "
            "the parser gave up at the end of the file)",
            opened.line,
            opened.column,
        )
    if context:
        problem = f"{problem} ({context})"
    return YamlError(f"YAML syntax error: {problem}", line, col)


def mapping_of(text: str) -> Node | None:
    """The document in ``text`` when it is a mapping (a manifest); None when it is not, or is
    not readable YAML."""
    try:
        root = compose(text)
    except YamlError:
        return None
    return root if root is not None and root.kind == "map" else None
