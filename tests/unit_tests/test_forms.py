"""The service's one-pass reader of small submissions (trainui.service.forms), held against
Starlette's full multipart parser: whatever it reads, it reads the same; what it does not know,
it leaves to that parser (None)."""

from __future__ import annotations

import httpx
import pytest
from starlette.datastructures import Headers, UploadFile
from starlette.formparsers import MultiPartParser

from trainui.fastpath import multipart, submission_fields
from trainui.service.forms import boundary_of, plain_form

ZIP = b"PK\x03\x04" + bytes(range(256)) * 4 + b"\r\n--not-the-boundary\r\n"
MANIFEST = b"model_definition:\n  name: x\n"


async def full_parse(body: bytes, content_type: str) -> dict:
    headers = Headers({"content-type": content_type, "content-length": str(len(body))})

    async def stream():
        yield body

    form = await MultiPartParser(headers, stream()).parse()
    out = {}
    for name, value in form.multi_items():
        out[name] = await value.read() if isinstance(value, UploadFile) else value
    return out


def test_boundaries() -> None:
    assert boundary_of("multipart/form-data; boundary=abc") == b"abc"
    assert boundary_of('multipart/form-data; charset=utf-8; boundary="a b"') == b"a b"
    assert boundary_of("Multipart/Form-Data;BOUNDARY=x") == b"x"
    assert boundary_of("multipart/mixed; boundary=abc") is None
    assert boundary_of("multipart/form-data") is None
    assert boundary_of("multipart/form-data; boundary=") is None
    assert boundary_of("multipart/form-data; boundary=" + "x" * 71) is None
    assert boundary_of("multipart/form-data; boundary=é") is None


async def test_the_clients_submission_is_read_in_one_pass_as_the_full_parser_reads_it() -> None:
    body, content_type = multipart(ZIP, MANIFEST, submission_fields({"A": "1"}, False))
    fields = plain_form(body, content_type)
    assert fields == await full_parse(body, content_type)
    assert fields["model_definition"] == ZIP and fields["manifest"] == MANIFEST
    assert fields["check"] == "false" and fields["environment"] == '{"A": "1"}'


async def test_an_httpx_submission_is_read_as_the_full_parser_reads_it() -> None:
    request = httpx.Request(
        "POST",
        "http://x/v3/models",
        files={"model_definition": ("model.zip", ZIP), "manifest": ("manifest.yml", MANIFEST)},
        data={"check": "true"},
    )
    body = request.read()
    content_type = request.headers["content-type"]
    fields = plain_form(body, content_type)
    assert fields is not None
    assert fields == await full_parse(body, content_type)


def _body(*parts: bytes, boundary: bytes = b"B0UND") -> tuple[bytes, str]:
    return b"".join(parts), f"multipart/form-data; boundary={boundary.decode()}"


D = b"--B0UND\r\n"  # a delimiter line
END = b"\r\n--B0UND--\r\n"
A = b'Content-Disposition: form-data; name="a"'

UNUSUAL = {
    "a preamble": _body(b"hello\r\n", D, A, b"\r\n\r\n1", END),
    "no closing delimiter": _body(D, A, b"\r\n\r\n1\r\n"),
    "a name twice": _body(D, A, b"\r\n\r\n1\r\n", D, A, b"\r\n\r\n2", END),
    "an unquoted name": _body(D, b"Content-Disposition: form-data; name=a\r\n\r\n1", END),
    "a filename with a semicolon": _body(D, A, b'; filename="a;b.zip"\r\n\r\nPK', END),
    "an RFC 2231 filename": _body(D, A, b"; filename*=UTF-8''%C3%A9.zip\r\n\r\nPK", END),
    "an escaped quote": _body(D, b'Content-Disposition: form-data; name="a\\"b"\r\n\r\n1', END),
    "another header": _body(D, A, b"\r\nContent-Transfer-Encoding: base64\r\n\r\nMQ==", END),
    "no headers' end": _body(D, A, END),
    "a delimiter followed by junk": _body(D, A, b"\r\n\r\n1\r\n--B0UNDx\r\n1", END),
    "a field not in UTF-8": _body(D, A, b"\r\n\r\n\xff", END),
    "not form-data": _body(D, b'Content-Disposition: attachment; name="a"\r\n\r\n1', END),
    "no name": _body(D, b'Content-Disposition: form-data; filename="a"\r\n\r\n1', END),
}


@pytest.mark.parametrize("case", sorted(UNUSUAL))
def test_what_it_does_not_know_it_leaves_to_the_full_parser(case: str) -> None:
    body, content_type = UNUSUAL[case]
    assert plain_form(body, content_type) is None


async def test_an_epilogue_and_an_empty_part_are_read_as_the_full_parser_reads_them() -> None:
    body, content_type = _body(
        b"--B0UND\r\n",
        b'Content-Disposition: form-data; name="f"; filename="m.zip"\r\n',
        b"Content-Type: application/zip\r\n\r\n\r\n",
        b"--B0UND\r\n",
        b'Content-Disposition: form-data; name="a"\r\n\r\n\r\n--B0UND--\r\nan epilogue',
    )
    fields = plain_form(body, content_type)
    assert fields == {"f": b"", "a": ""}
    assert fields == await full_parse(body, content_type)
