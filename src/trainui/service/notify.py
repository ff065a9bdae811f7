"""Notifications (SPEC §11): the service's hooks, told when a run starts, completes, fails, is
halted or restarts. A webhook gets the run and the event as JSON, POSTed, signed with
HMAC-SHA256 of the body under its ``secret`` (``X-Trainui-Signature: sha256=<hex>``, as GitHub
signs its webhooks), retried with a growing back-off; a command gets the JSON on its stdin and
``TRAINING_EVENT``, ``TRAINING_ID``, ``TRAINING_STATUS``. Each hook has a thread of its
own: a slow or dead hook delays nothing else, never a run, never the service. Each event has a
delivery ID (``delivery`` in the JSON, ``X-Trainui-Delivery``, ``TRAINING_DELIVERY``), the same
in each of its tries: a hook that took an event whose answer was lost (a slow webhook's time
ran out) and gets it again can tell it took it (as GitHub's ``X-GitHub-Delivery``).

The service reads the file again when it changes (``RunManager.notifier_now``); a changed file
with errors keeps the hooks as they were, and ``trainui notify test`` says its errors.

The hooks are in the service's config file, ``$XDG_CONFIG_HOME/trainui/service.toml`` (or
``TRAINUI_SERVICE_CONFIG``)::

    [[notify]]
    url = "https://hooks.example.com/trainui"
    secret = "a long random text"
    events = ["completed", "failed"]      # default: all of EVENTS

    [[notify]]
    command = "notify-send trainui \\"$TRAINING_ID $TRAINING_EVENT\\""
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import hmac
import json
import os
import queue
import re
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Mapping

from trainui.core.urls import mask_urls

EVENTS = ("started", "completed", "failed", "halted", "restarting")
ATTEMPTS = 5  # tries of a delivery
BACKOFF = 1.0  # seconds before the 2nd try, doubled for each next one
TIMEOUT = 10.0  # seconds a webhook or a command may take
SIGNATURE_HEADER = "X-Trainui-Signature"
DELIVERY_HEADER = "X-Trainui-Delivery"
_KEYS = ("url", "secret", "command", "events", "name")


class ConfigError(ValueError):
    """A service config that cannot be used: ``problems`` are located sentences."""

    def __init__(self, path: str, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        super().__init__(f"the service config is not valid: {problems[0]}")


def config_path(environ: Mapping[str, str] = os.environ) -> str:
    """``TRAINUI_SERVICE_CONFIG``, else ``$XDG_CONFIG_HOME/trainui/service.toml``."""
    from trainui.config import config_file

    return config_file(environ, "TRAINUI_SERVICE_CONFIG", "service.toml")[0]


def stamp(environ: Mapping[str, str] = os.environ) -> tuple[int, int] | None:
    """The config file's modification time and size (None: no file): changed, it is read
    again."""
    try:
        st = os.stat(config_path(environ))
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


def load_hooks(environ: Mapping[str, str] = os.environ) -> list[dict]:
    """The ``[[notify]]`` hooks of the service's config (none without a file); ConfigError
    with every problem located."""
    path = config_path(environ)
    explicit = bool((environ.get("TRAINUI_SERVICE_CONFIG") or "").strip())
    try:
        with open(path, "rb") as f:
            raw = f.read((1 << 20) + 1)
    except FileNotFoundError:
        if explicit:
            raise ConfigError(path, [f"{path}: no such file (TRAINUI_SERVICE_CONFIG)"]) from None
        return []
    except OSError as error:
        raise ConfigError(path, [f"{path}: cannot be read: {error.strerror}"]) from None
    try:
        import tomllib  # Python 3.11+
    except ImportError:  # pragma: no cover - Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    try:
        document = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise ConfigError(path, [f"{path}: {error}"]) from None
    text = raw.decode("utf-8")
    lines = [
        i + 1 for i, line in enumerate(text.splitlines()) if re.match(r"^\s*\[\[\s*notify", line)
    ]
    problems: list[str] = []
    hooks = document.get("notify", [])
    if not isinstance(hooks, list):
        problems.append(f"{path}: notify must be written [[notify]] (a list of tables)")
        hooks = []
    checked = []
    for index, hook in enumerate(hooks, 1):
        line = lines[index - 1] if index - 1 < len(lines) else 1
        where = f"{path}:{line}: [[notify]] #{index}"
        if not isinstance(hook, dict):
            problems.append(f"{where}: not a table")
            continue
        for key in hook:
            if key not in _KEYS:
                problems.append(f"{where}: unknown key {key!r}{_meant(key, _KEYS)}")
        url, command = hook.get("url"), hook.get("command")
        if (url is None) == (command is None):
            problems.append(f"{where}: a hook has a url (a webhook) or a command, one of them")
        if url is not None and (
            not isinstance(url, str) or not url.startswith(("http://", "https://"))
        ):
            problems.append(f"{where}: url must be an http:// or https:// URL")
        if url is not None and not isinstance(hook.get("secret"), str):
            problems.append(f"{where}: a webhook needs a secret (text) to sign its requests with")
        if command is not None and not isinstance(command, str):
            problems.append(f"{where}: command must be text")
        elif command is not None and not command.strip():
            problems.append(f"{where}: command is empty")
        events = hook.get("events", list(EVENTS))
        if not isinstance(events, list):
            problems.append(f"{where}: events must be a list of {', '.join(EVENTS)}")
            events = []
        for event in events:
            if event not in EVENTS:
                problems.append(
                    f"{where}: events: {event!r} is not one of {', '.join(EVENTS)}"
                    + _meant(str(event), EVENTS)
                )
        events = [e for e in events if e in EVENTS]
        checked.append({**hook, "events": list(events), "where": where})
    for key in document:
        if key != "notify":
            problems.append(f"{path}: unknown table or key {key!r}")
    if problems:
        raise ConfigError(path, problems)
    return checked


def _meant(written: str, names: tuple[str, ...]) -> str:
    """`` (did you mean completed?)`` for a name close to one of ``names``; else nothing."""
    close = difflib.get_close_matches(written, names, n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""


def signature(secret: str, body: bytes) -> str:
    """``X-Trainui-Signature``'s value: ``sha256=`` and the HMAC-SHA256 of the body, in hex."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


SPOOL_FILE = "notify-pending.jsonl"  # in the home: deliveries a stopped service had not made


def hook_key(hook: dict) -> str:
    """Which hook: a digest of its URL or command (the spool names no secret)."""
    what = f"url {hook['url']}" if hook.get("url") else f"command {hook.get('command')}"
    return hashlib.sha256(what.encode()).hexdigest()[:32]


class Notifier:
    """Delivers the events to the hooks, a thread per hook. ``spool``: where ``shutdown``
    writes the deliveries not made yet, which the next Notifier of the same ``spool`` makes
    (a service stopped, or idle, before a webhook took its event)."""

    def __init__(self, hooks: list[dict], on_problem=None, spool: str | None = None) -> None:
        self.hooks = hooks
        self.on_problem = on_problem or (lambda text: None)
        self.spool = spool
        self._queues: list[queue.Queue] = []
        self._busy = [0] * len(hooks)  # per hook: events queued or being delivered
        self._lock = threading.Lock()
        self._current: list[tuple | None] = [None] * len(hooks)
        for index, hook in enumerate(hooks):
            q: queue.Queue = queue.Queue(maxsize=10_000)
            self._queues.append(q)
            threading.Thread(
                target=self._deliver_loop, args=(index, hook, q), name="trainui-notify",
                daemon=True,
            ).start()  # fmt: skip
        self.delivered = 0  # deliveries that a hook took (for tests and the log)
        if spool:
            self._take_spool(spool)

    def pending(self) -> int:
        """Events not delivered yet (queued, or on their way with their retries)."""
        with self._lock:
            return sum(self._busy)

    def _queue(self, index: int, item: tuple) -> bool:
        with self._lock:
            self._busy[index] += 1
        try:
            self._queues[index].put_nowait(item)
        except queue.Full:
            with self._lock:
                self._busy[index] -= 1
            return False
        return True

    def _take_spool(self, spool: str) -> None:
        """Queue what a stopped service left in ``spool`` for the hooks that are still
        configured (by URL or command), then remove it."""
        try:
            with open(spool, "rb") as f:
                lines = f.read().splitlines()
        except FileNotFoundError:
            return
        except OSError as error:
            self.on_problem(f"{spool} cannot be read: {error.strerror or error}")
            return
        by_key = {hook_key(hook): i for i, hook in enumerate(self.hooks)}
        queued = dropped = 0
        for line in lines:
            try:
                saved = json.loads(line)
                index = by_key.get(saved["hook"])
                item = (saved["event"], saved["run"], saved["body"].encode(), saved["delivery"])
            except (ValueError, KeyError, TypeError, AttributeError):
                dropped += 1  # a line cut by a crash
                continue
            if index is None or not self._queue(index, item):
                dropped += 1  # its hook is no longer in the config
            else:
                queued += 1
        with contextlib.suppress(OSError):
            os.unlink(spool)
        if dropped:
            self.on_problem(
                f"{dropped} event{'s' if dropped != 1 else ''} left by the service's last stop"
                " went to hooks no longer configured (or were cut): not delivered"
            )
        if queued:
            self.on_problem(
                f"{queued} event{'s' if queued != 1 else ''} left by the service's last stop"
                " queued again"
            )

    def shutdown(self, wait: float) -> int:
        """The service stops: up to ``wait`` seconds for the deliveries on their way, then what
        is left is written to the spool for the next start (an event being delivered then is
        written too: sent twice at worst, with its delivery ID, never lost). How many."""
        deadline = time.monotonic() + wait
        while self.pending() and time.monotonic() < deadline:
            time.sleep(0.05)
        left = []
        for index, (hook, q) in enumerate(zip(self.hooks, self._queues, strict=True)):
            items = []
            with self._lock:
                if self._current[index] is not None:
                    items.append(self._current[index])
            while True:
                try:
                    item = q.get_nowait()
                except queue.Empty:
                    break
                if item is not None:
                    items.append(item)
            q.put(None)  # its thread ends after what it is doing
            key = hook_key(hook)
            for event, run, body, delivery in items:
                left.append({"hook": key, "event": event, "run": run, "delivery": delivery,
                             "body": body.decode()})  # fmt: skip
        if left and self.spool:
            text = "".join(json.dumps(item, sort_keys=True) + "\n" for item in left)
            fd = os.open(self.spool, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
        return len(left)

    def notify(self, event: str, run: dict) -> int:
        """Queue ``event`` for every hook that wants it; returns how many hooks were queued
        for. Never blocks: a hook whose queue is full loses the event (said)."""
        delivery = uuid.uuid4().hex
        body = _body(event, run, delivery)
        count = 0
        for index, hook in enumerate(self.hooks):
            if event in hook["events"]:
                if self._queue(index, (event, run, body, delivery)):
                    count += 1
                else:
                    self.on_problem(f"{hook['where']}: too many events waiting; {event} dropped")
        return count

    def test(self) -> list[dict]:
        """``trainui notify test``: an event ``test`` to every hook at once, one try each;
        how each went."""
        run = {"model_id": "training-TEST00000", "status": "completed", "name": "a test"}
        delivery = uuid.uuid4().hex
        body = _body("test", run, delivery)
        results: list[dict] = [{} for _ in self.hooks]

        def one(index: int, hook: dict) -> None:
            problem = self._deliver(hook, "test", run, body, delivery)
            # where it goes, never its secrets: a URL's user-info and query left out
            url = hook.get("url")
            what = mask_urls(url).partition("?")[0] if url else hook.get("command")
            results[index] = {"hook": hook["where"], "to": what, "ok": problem is None,
                              "problem": problem}  # fmt: skip

        threads = [
            threading.Thread(target=one, args=(i, hook), daemon=True)
            for i, hook in enumerate(self.hooks)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(TIMEOUT + 5)
        return results

    def close(self) -> None:
        """Replaced (the config changed): each hook's thread delivers what it was given, then
        ends."""
        for q in self._queues:
            q.put(None)

    def _deliver_loop(self, index: int, hook: dict, q: queue.Queue) -> None:
        while True:
            item = q.get()
            if item is None:
                return
            with self._lock:
                self._current[index] = item
            event, run, body, delivery = item
            problem = None
            for attempt in range(ATTEMPTS):
                problem = self._deliver(hook, event, run, body, delivery)
                if problem is None:
                    self.delivered += 1
                    break
                if attempt + 1 < ATTEMPTS:
                    time.sleep(BACKOFF * 2**attempt)
            with self._lock:
                self._current[index] = None
                self._busy[index] -= 1
            if problem is not None:
                self.on_problem(f"{hook['where']}: {event} of {run.get('model_id')}: {problem}")

    @staticmethod
    def _deliver(hook: dict, event: str, run: dict, body: bytes, delivery: str) -> str | None:
        """One try: None when the hook took it, else why not."""
        if hook.get("url"):
            import httpx

            try:
                response = httpx.post(
                    hook["url"],
                    content=body,
                    headers={
                        "Content-Type": "application/json",
                        "X-Trainui-Event": event,
                        DELIVERY_HEADER: delivery,
                        SIGNATURE_HEADER: signature(hook["secret"], body),
                    },
                    timeout=TIMEOUT,
                )
            except httpx.TimeoutException:
                return f"the webhook did not answer within {TIMEOUT:g} s"
            except httpx.HTTPError as error:
                return f"{type(error).__name__}: {error}"
            if response.status_code >= 300:
                return f"the webhook answered {response.status_code}"
            return None
        env = {
            **os.environ,
            "TRAINING_EVENT": event,
            "TRAINING_ID": str(run.get("model_id", "")),
            "TRAINING_STATUS": str(run.get("status", "")),
            "TRAINING_DELIVERY": delivery,
        }
        env.pop("TRAINUI_TOKEN", None)
        try:
            process = subprocess.Popen(
                ["/bin/sh", "-c", hook["command"]],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                env=env,
                start_new_session=True,  # its own group: what it starts is stopped with it
            )
        except OSError as error:
            return f"the command could not start: {error.strerror or error}"
        try:
            _out, err = process.communicate(body, timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(OSError):
                os.killpg(process.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=5)
            for pipe in (process.stdin, process.stderr):
                with contextlib.suppress(OSError):
                    pipe.close()
            return (
                f"the command did not end within {TIMEOUT:g} s: it was stopped, with what it"
                " started"
            )
        if process.returncode != 0:
            said = err.decode("utf-8", "replace").strip().splitlines()[-1:] or [""]
            return f"the command exited with code {process.returncode} {said[0]}".strip()
        return None


def _body(event: str, run: dict, delivery: str) -> bytes:
    return json.dumps({"event": event, "run": run, "delivery": delivery}, sort_keys=True).encode()


def event_of(before: str | None, after: str) -> str | None:
    """The event a state change is (None: none a hook is told of): ``started`` when its learner
    starts (an attempt's too), then how it ended, or that it restarts."""
    if after == before:
        return None
    if after == "downloading" and before in ("pending", "restarting"):
        return "started"
    if after in ("completed", "failed", "halted", "restarting"):
        return after
    return None
