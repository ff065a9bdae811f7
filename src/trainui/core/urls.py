"""URLs as they may be shown: the user-info part (``user:password@``) masked.

S3 and Swift never take credentials in a URL (they have keys of their own), so a manifest whose
``endpoint_url`` or ``auth_url`` holds some is refused. Whatever shows an endpoint masks it all
the same, for runs recorded before that refusal and for messages of other libraries.
"""

from __future__ import annotations

import re

MASK = "***"
# where a URL written in a text ends
_URL_END = re.compile(r"[\s'\"<>]")


def has_userinfo(url: str) -> bool:
    """Does ``url`` hold user-info (``user@`` or ``user:password@``)? Any '@' after the
    scheme counts: a host never holds one, and a password may hold an unencoded '/'."""
    _, sep, rest = url.partition("://")
    return "@" in (rest if sep else url)


def masked_url(url: str) -> str:
    """``url`` with its user-info replaced: ``http://***@host``."""
    return _userinfo_replaced(url, MASK + "@")


def without_userinfo(url: str) -> str:
    """``url`` with its user-info removed, to connect to (``http://host``)."""
    return _userinfo_replaced(url, "")


def _userinfo_replaced(url: str, by: str) -> str:
    head, sep, rest = url.partition("://")
    at = rest.rfind("@")
    if not sep or at < 0:
        return url
    return f"{head}://{by}{rest[at + 1 :]}"


def mask_urls(text: str) -> str:
    """``text`` with the user-info of every URL in it masked. Linear in the text's length:
    each URL is looked at once, up to its end (a space or a quote)."""
    if "@" not in text or "://" not in text:
        return text
    parts: list[str] = []
    done = 0
    found = text.find("://")
    while found >= 0:
        host = found + 3
        end_match = _URL_END.search(text, host)
        end = end_match.start() if end_match else len(text)
        at = text.rfind("@", host, end)
        if at >= 0:
            parts += [text[done:host], MASK]
            done = at
        found = text.find("://", end)
    parts.append(text[done:])
    return "".join(parts)
