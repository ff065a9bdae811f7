"""Tokens and users for the service over TCP.

``<home>/tokens.json`` (mode 0600) holds, per user, the SHA-256 of their token, never the token:
tokens are 256 random bits, so a fast hash is enough (no one guesses a preimage), and the file
leaking gives nothing usable. Every TCP request carries ``Authorization: Bearer TOKEN``; the Unix
socket needs none (its mode 0600 admits only the machine's owner, who sees every run).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
from typing import TYPE_CHECKING

from trainui.core.runs import utc_now, write_json_atomic

if TYPE_CHECKING:  # the CLI's `token` commands import this module: no msgspec for them
    from trainui.core.lifecycle import Run

TOKENS_FILE = "tokens.json"
TOKEN_PREFIX = "tui_"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")


class TokenError(Exception):
    """A token command that cannot be done, in one sentence."""


class User:
    """Who a request comes from. ``local``: the Unix socket, the machine's owner. ``token``:
    the hash of the token the request came with (None on the Unix socket)."""

    __slots__ = ("name", "admin", "local", "token")

    def __init__(
        self, name: str, admin: bool = False, local: bool = False, token: str | None = None
    ) -> None:
        self.name = name
        self.admin = admin or local
        self.local = local
        self.token = token

    def sees(self, run: Run) -> bool:
        return self.admin or run.owner == self.name


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Tokens:
    """The token file, re-read whenever it changes, so a revocation applies at once."""

    def __init__(self, home: str) -> None:
        self.path = os.path.join(home, TOKENS_FILE)
        self._stamp: tuple[int, int] | None = None
        self._by_hash: dict[str, dict] = {}

    def entries(self) -> list[dict]:
        try:
            with open(self.path) as f:
                data = json.load(f)
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as error:
            raise TokenError(f"{self.path} cannot be read: {error}") from None
        return list(data.get("tokens", []))

    def _refresh(self) -> None:
        try:
            st = os.stat(self.path)
            stamp = (st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            stamp = None
        if stamp != self._stamp:
            self._by_hash = {entry["hash"]: entry for entry in self.entries()}
            self._stamp = stamp

    def exist(self) -> bool:
        self._refresh()
        return bool(self._by_hash)

    def user_for(self, token: str) -> User | None:
        """The user a token belongs to, or None for a wrong or revoked token."""
        self._refresh()
        digest = _hash(token)
        for known, entry in self._by_hash.items():
            if hmac.compare_digest(known, digest):
                return User(entry["name"], bool(entry.get("admin")), token=known)
        return None

    def still_valid(self, user: User) -> bool:
        """Is the token ``user`` came with still there? False once it was revoked (a stream
        opened with it ends then); always True on the Unix socket, which needs none."""
        if user.token is None:
            return True
        try:
            self._refresh()
        except TokenError:  # an unreadable token file admits no one
            return False
        return user.token in self._by_hash

    def unix_user(self, name: str) -> str | None:
        """The Unix login whose uid runs ``name``'s commands (``--unix-user``), if any."""
        self._refresh()
        for entry in self._by_hash.values():
            if entry["name"] == name:
                return entry.get("unix_user") or None
        return None

    def add(self, name: str, admin: bool = False, unix_user: str | None = None) -> str:
        """Create a token for ``name``; return it (the only time it is ever shown).
        ``unix_user``: the login whose uid runs the user's commands in the sandbox."""
        if unix_user is not None:
            _check_unix_user(unix_user)
        if not _NAME.match(name):
            raise TokenError(
                f"'{name}' is not a usable name: letters, digits, '.', '_', '@' or '-', "
                "at most 64 characters"
            )
        entries = self.entries()
        if any(e["name"] == name for e in entries):
            raise TokenError(
                f"a token named '{name}' exists already; revoke it first to replace it"
            )
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        entry = {"name": name, "hash": _hash(token), "admin": admin, "created_at": utc_now()}
        if unix_user is not None:
            entry["unix_user"] = unix_user
        entries.append(entry)
        self._write(entries)
        return token

    def revoke(self, name: str) -> None:
        entries = self.entries()
        kept = [e for e in entries if e["name"] != name]
        if len(kept) == len(entries):
            raise TokenError(f"no token is named '{name}'")
        self._write(kept)

    def _write(self, entries: list[dict]) -> None:
        write_json_atomic(self.path, {"tokens": entries}, mode=0o600)


def _check_unix_user(login: str) -> None:
    import pwd

    try:
        entry = pwd.getpwnam(login)
    except KeyError:
        raise TokenError(f"no Unix user '{login}' on this machine") from None
    if entry.pw_uid == 0:
        raise TokenError(f"Unix user '{login}' is root: runs may not run as root")
