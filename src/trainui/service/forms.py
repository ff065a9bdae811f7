"""A submission's multipart/form-data body read in one pass, when it is small and plain.

A submission is two files and two short fields. Starlette's form parser (python-multipart,
a callback per header and per chunk, a spooled file per part) cost a fifth of the service's
time per submission; a body already in memory can be split with a few ``find`` calls.
Anything this reader does not recognise (a preamble, a header it does not know how to read,
a name given twice, a part that is not closed) makes it answer None, and the caller hands the
same bytes to Starlette's parser: an unusual body is read the slow way, never wrongly.
"""

from __future__ import annotations

# the part headers this reader understands; any other makes it hand over
_KNOWN_HEADERS = (b"content-disposition", b"content-type")


def boundary_of(content_type: str) -> bytes | None:
    """The boundary of a ``multipart/form-data`` Content-Type, or None."""
    kind, _, params = content_type.partition(";")
    if kind.strip().lower() != "multipart/form-data":
        return None
    for param in params.split(";"):
        name, _, value = param.strip().partition("=")
        if name.strip().lower() == "boundary":
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] == '"':
                value = value[1:-1]
            if not value or len(value) > 70 or "\\" in value or '"' in value:
                return None  # RFC 2046 allows at most 70 characters
            try:
                return value.encode("ascii")
            except UnicodeEncodeError:
                return None
    return None


def plain_form(
    body: bytes, content_type: str, filenames: dict[str, str] | None = None
) -> dict[str, bytes | str] | None:
    """The parts of ``body`` by name: a file part's content as bytes, a field's as text; or
    None when the body is not in the plain shape this reader knows (see the module). A file
    part's file name goes into ``filenames`` when given."""
    boundary = boundary_of(content_type)
    if boundary is None:
        return None
    delimiter = b"--" + boundary
    if not body.startswith(delimiter + b"\r\n"):
        return None
    closing = b"\r\n" + delimiter
    fields: dict[str, bytes | str] = {}
    position = len(delimiter) + 2
    while True:
        end = body.find(closing, position)
        if end < 0:
            return None
        head_end = body.find(b"\r\n\r\n", position, end)
        if head_end < 0:
            return None
        part = _part_head(body[position:head_end])
        if part is None or part[0] in fields:
            return None
        name, filename = part
        content = body[head_end + 4 : end]
        if filename is None:
            try:
                fields[name] = content.decode("utf-8")
            except UnicodeDecodeError:
                return None
        else:
            fields[name] = content
            if filenames is not None:
                filenames[name] = filename
        after = end + len(closing)
        marker = body[after : after + 2]
        if marker == b"--":
            return fields  # whatever follows the closing delimiter is an epilogue
        if marker != b"\r\n":
            return None
        position = after + 2


def _part_head(head: bytes) -> tuple[str, str | None] | None:
    """A part's (name, filename or None) from its headers, or None if they are unusual."""
    name = filename = None
    for line in head.split(b"\r\n"):
        key, colon, value = line.partition(b":")
        key = key.strip().lower()
        if not colon or key not in _KNOWN_HEADERS:
            return None
        if key != b"content-disposition":
            continue
        try:
            text = value.decode("ascii")
        except UnicodeDecodeError:
            return None
        kind, *params = text.split(";")
        if kind.strip().lower() != "form-data":
            return None
        for param in params:
            key_text, equals, raw = param.strip().partition("=")
            raw = raw.strip()
            if not equals or len(raw) < 2 or raw[0] != '"' or raw[-1] != '"':
                return None  # unquoted or RFC 2231 (filename*=): the full parser reads it
            value_text = raw[1:-1]
            if '"' in value_text or "\\" in value_text:
                return None
            key_text = key_text.strip().lower()
            if key_text == "name":
                name = value_text
            elif key_text == "filename":
                filename = value_text
            else:
                return None
    if name is None:
        return None
    return name, filename
