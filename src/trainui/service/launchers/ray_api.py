"""Ray's dashboard over HTTP: every request trainui makes to a Ray cluster, in one place.

The Ray launcher needs no ``ray`` package: it talks to the dashboard of the cluster's head
(``http://HEAD:8265``) with httpx, through these functions, one per endpoint:

- ``submit_job``: ``POST /api/jobs/`` (Ray's Job REST API, as ``JobSubmissionClient``);
- ``job_info``: ``GET /api/jobs/{submission_id}``;
- ``stop_job``: ``POST /api/jobs/{submission_id}/stop``;
- ``delete_job``: ``DELETE /api/jobs/{submission_id}``;
- ``check_package``, ``put_package``: ``GET``/``PUT /api/packages/gcs/{name}``, the store of
  ``working_dir`` packages;
- ``list_nodes``: ``GET /api/v0/nodes`` (the state API), read by ``node_gpus``;
- ``cluster_status``: ``GET /api/cluster_status`` (the autoscaler's report), read by
  ``gpus_in_use``;
- ``job_log``: ``GET /api/v0/logs/stream`` (following a job's log) or ``/api/v0/logs/file``.

Not all of these are Ray's stable API (the state and log endpoints are its "v0"). The Ray
versions they were checked against are the range of pyproject's ``ray`` extra, and
``tests/functional_tests/test_ray_api.py`` checks each against a real head: the shape of the
answer that the launcher relies on. A new Ray passes those tests before the range is widened.

A request that gets no answer, or the answer of a proxy in front of a dashboard that is down
(502, 503, 504), raises :class:`Unreachable` with the reason in words; any other answer is
returned as it came, for the caller to judge (404: no such job; a refusal: ``ray_error``).
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import urllib.parse

import httpx

from trainui.service.launchers import LauncherError

TIMEOUT = httpx.Timeout(10.0, connect=3.0)
UPLOAD_TIMEOUT = httpx.Timeout(300.0, connect=3.0)  # a package as large as a model definition
_SENTENCE_LIMIT = 300


class Unreachable(Exception):
    """The dashboard did not answer; the exception's text says why, in a few words."""


def request(client: httpx.Client, address: str, method: str, path: str, **kwargs):
    """``method path`` on the dashboard at ``address`` (a base URL from ``normalize_address``)."""
    try:
        response = client.request(method, address + path, **kwargs)
    except httpx.HTTPError as error:
        raise Unreachable(_transport_error(error)) from None
    if response.status_code in (502, 503, 504):  # a proxy in front of a dashboard that is down
        raise Unreachable(f"{response.status_code} {response.reason_phrase}")
    return response


# --- the Job API ---------------------------------------------------------------------------------


def submit_job(client: httpx.Client, address: str, payload: dict) -> httpx.Response:
    """Submit a job: ``payload`` has ``entrypoint``, ``submission_id``, ``runtime_env``,
    ``metadata`` and ``entrypoint_num_gpus`` or ``entrypoint_num_cpus``. 200 with the
    ``submission_id``; a submission id that is taken is refused with a message saying it
    "already exists" (a retry whose answer was lost)."""
    return request(client, address, "POST", "/api/jobs/", json=payload)


def job_info(client: httpx.Client, address: str, sid: str) -> httpx.Response:
    """The job's details: 200 with ``status`` (PENDING, RUNNING, SUCCEEDED, FAILED, STOPPED),
    ``message``, ``driver_exit_code``, ``driver_node_id`` (once a node runs it) and the
    ``metadata`` it was submitted with; 404 when Ray has no such job."""
    return request(client, address, "GET", f"/api/jobs/{_quote(sid)}")


def stop_job(client: httpx.Client, address: str, sid: str) -> httpx.Response:
    """Ask Ray to stop the job (SIGTERM to its entrypoint, SIGKILL after
    ``RAY_JOB_STOP_WAIT_TIME_S``): 200 with ``stopped``, true unless it had ended."""
    return request(client, address, "POST", f"/api/jobs/{_quote(sid)}/stop")


def delete_job(client: httpx.Client, address: str, sid: str) -> httpx.Response:
    """Delete an ended job and its log: 200; a job not ended is refused; 404 when none."""
    return request(client, address, "DELETE", f"/api/jobs/{_quote(sid)}")


# --- the package store (a job's working_dir) ---------------------------------------------------


def package_name(package: bytes) -> str:
    """A zip's name in the store, as Ray's ``JobSubmissionClient`` names it (its content's
    hash: the same package is uploaded once); a job's ``working_dir`` is ``gcs://<name>``."""
    return f"_ray_pkg_{hashlib.sha1(package).hexdigest()}.zip"


def check_package(client: httpx.Client, address: str, name: str) -> httpx.Response:
    """200 when the store has the package (and it is then kept until a job uses it), else 404."""
    return request(client, address, "GET", f"/api/packages/gcs/{name}")


def put_package(client: httpx.Client, address: str, name: str, package: bytes) -> httpx.Response:
    """Upload a package into the store: 200 once stored."""
    path = f"/api/packages/gcs/{name}"
    return request(client, address, "PUT", path, content=package, timeout=UPLOAD_TIMEOUT)


# --- the cluster ----------------------------------------------------------------------------


def list_nodes(client: httpx.Client, address: str) -> httpx.Response:
    """Every node Ray knows (the state API): read with ``node_gpus``."""
    return request(client, address, "GET", "/api/v0/nodes", params={"limit": 10000})


def node_gpus(nodes) -> list[int] | None:
    """The GPUs of each live node, from the JSON of ``list_nodes``'s answer (``data.result.
    result``: nodes with ``state`` and ``resources_total``); None for an answer not of that
    shape."""
    found = _dig(nodes, "data", "result", "result")
    if not isinstance(found, list):
        return None
    gpus = []
    for node in found:
        if isinstance(node, dict) and node.get("state") == "ALIVE":
            gpus.append(int((node.get("resources_total") or {}).get("GPU", 0) or 0))
    return gpus


def cluster_status(client: httpx.Client, address: str) -> httpx.Response:
    """The autoscaler's report of the cluster: read with ``gpus_in_use``."""
    return request(client, address, "GET", "/api/cluster_status")


def gpus_in_use(status) -> tuple[float | None, float | None]:
    """GPUs in use by anyone and the report's time (seconds since the epoch), from the JSON of
    ``cluster_status``'s answer (``data.clusterStatus``: ``loadMetricsReport.usage.GPU`` is
    ``[used, total]``, ``time``); (None, None) when the report does not say."""
    report = _dig(status, "data", "clusterStatus") or {}
    usage = _dig(report, "loadMetricsReport", "usage") or {}
    gpu_usage = usage.get("GPU") if isinstance(usage, dict) else None
    if isinstance(gpu_usage, list) and len(gpu_usage) == 2:
        return float(gpu_usage[0]), report.get("time")
    return None, None


# --- a job's log -----------------------------------------------------------------------------


def job_log(
    client: httpx.Client,
    address: str,
    node_id: str,
    sid: str,
    follow: bool,
    interval: float | None = None,
):
    """The job's log from its start, as a streamed answer (a context manager): with
    ``follow``, the stream goes on as the log grows (Ray looks every ``interval`` s) until the
    connection ends; else the log as it is now. ``node_id`` is the job's ``driver_node_id``.
    Transport errors are httpx's (the caller retries); a refusal is a non-200 answer."""
    params = {"node_id": node_id, "submission_id": sid, "lines": -1}
    if follow and interval is not None:
        params["interval"] = interval
    kind = "stream" if follow else "file"
    return client.stream("GET", f"{address}/api/v0/logs/{kind}", params=params)


# --- addresses and answers -------------------------------------------------------------------


def normalize_address(address: str) -> str:
    """The dashboard's base URL from what the user gave (``HOST:PORT`` gets ``http://``)."""
    text = (address or "").strip()
    if not text:
        raise LauncherError(
            "the ray launcher needs the address of the Ray dashboard: --ray-address "
            "http://HOST:8265 or TRAINUI_RAY_ADDRESS"
        )
    if text.startswith("ray://"):
        raise LauncherError(
            f"'{text}' is a Ray Client address; trainui uses the Job API of the Ray dashboard: "
            "give its HTTP address, such as http://HOST:8265"
        )
    if "://" not in text:
        text = "http://" + text
    parts = urllib.parse.urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise LauncherError(f"the Ray address '{address}' is not a URL like http://HOST:8265")
    try:
        parts.port  # noqa: B018 (a port that is not a number raises)
    except ValueError:
        raise LauncherError(f"the port of the Ray address '{address}' is not a number") from None
    return text.rstrip("/")


_EXCEPTION_LINE = re.compile(
    r"^(?:[A-Za-z_][\w.]*\.)?[A-Z]\w*(?:Error|Exception|Exit|Interrupt)(?::\s*(.*))?$"
)


def ray_sentence(text: str) -> str:
    """One sentence from something Ray said: the error of a Python traceback (the innermost,
    when one is nested in another), else the first line; never more than a few hundred
    characters."""
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    if not lines:
        return ""
    sentence = lines[0]
    if any(line.startswith("Traceback (most recent call last)") for line in lines) or (
        _EXCEPTION_LINE.match(lines[-1])
    ):
        for line in reversed(lines):
            match = _EXCEPTION_LINE.match(line)
            if match:
                sentence = match.group(1) or line
                break
        else:
            sentence = lines[-1]
    sentence = re.split(r",? last available logs", sentence, maxsplit=1)[0]
    sentence = " ".join(sentence.split()).rstrip(" .:")
    if len(sentence) > _SENTENCE_LIMIT:
        sentence = sentence[: _SENTENCE_LIMIT - 1].rstrip() + "…"
    return sentence


def ray_error(response: httpx.Response) -> str:
    """A refusal of Ray's (JSON, plain text or a traceback) in one sentence."""
    text = response.text
    with contextlib.suppress(ValueError):
        body = response.json()
        if isinstance(body, dict):
            for key in ("message", "msg", "detail", "error"):
                if isinstance(body.get(key), str) and body[key].strip():
                    text = body[key]
                    break
    sentence = ray_sentence(text)
    return sentence or f"HTTP {response.status_code} {response.reason_phrase}".strip()


def _transport_error(error: httpx.HTTPError) -> str:
    if isinstance(error, httpx.TimeoutException):
        return "no answer in time"
    text = str(error) or type(error).__name__
    text = re.sub(r"^\[Errno -?\d+\]\s*", "", text)
    known = {
        "connection refused": "connection refused",
        "name or service not known": "unknown host",
        "temporary failure in name resolution": "unknown host",
        "no route to host": "no route to host",
        "network is unreachable": "network unreachable",
        "connection reset": "connection reset",
    }
    for needle, words in known.items():
        if needle in text.lower():
            return words
    return ray_sentence(text) or type(error).__name__


def _quote(sid: str) -> str:
    return urllib.parse.quote(sid, safe="")


def json_of(response: httpx.Response):
    """The JSON of a 200 answer; None for any other answer, or one that is not JSON."""
    try:
        return response.json() if response.status_code == 200 else None
    except ValueError:
        return None


def _dig(data, *keys):
    for key in keys:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data
