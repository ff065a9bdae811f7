"""The OpenAPI document of the service (SPEC §6), served at ``/openapi.json``."""

from __future__ import annotations

from trainui import __version__
from trainui.core.runs import ERROR_CODES, STATES

_NULLABLE_TEXT = {"type": ["string", "null"]}
_NULLABLE_INT = {"type": ["integer", "null"]}

_STORE = {
    "type": "object",
    "required": ["type", "bucket", "endpoint"],
    "properties": {
        "type": {"type": "string", "enum": ["s3", "bluemix_objectstore", "local"]},
        "bucket": {"type": "string"},
        "endpoint": {"type": "string"},
        "prefix": {"type": "string"},
    },
}

_RUN = {
    "type": "object",
    "required": [
        "model_id",
        "url",
        "name",
        "description",
        "framework",
        "resource",
        "gpus",
        "gpu_ids",
        "status",
        "status_message",
        "error_code",
        "exit_code",
        "submitted_at",
        "started_at",
        "finished_at",
        "owner",
        "data",
        "results",
        "progress",
        "metrics",
        "experiment_id",
        "parameters",
    ],
    "properties": {
        "model_id": {"type": "string", "pattern": "^training-[A-Za-z0-9]{9}$"},
        "url": {"type": "string"},
        "name": {"type": "string"},
        "description": {"type": "string"},
        "framework": {
            "type": "object",
            "properties": {"name": {"type": "string"}, "version": {"type": "string"}},
        },
        "resource": {"type": "string", "enum": ["small", "medium", "large"]},
        "gpus": {"type": "integer"},
        "gpu_ids": {"type": "array", "items": {"type": "integer"}},
        "status": {"type": "string", "enum": list(STATES)},
        "status_message": _NULLABLE_TEXT,
        "error_code": {"type": ["string", "null"], "enum": [*ERROR_CODES, None]},
        "exit_code": _NULLABLE_INT,
        "submitted_at": {"type": "string", "format": "date-time"},
        "started_at": {"type": ["string", "null"], "format": "date-time"},
        "finished_at": {"type": ["string", "null"], "format": "date-time"},
        "owner": {"type": "string"},
        "data": _STORE,
        "results": _STORE,
        "progress": {
            "type": "object",
            "properties": {
                "phase": _NULLABLE_TEXT,
                "bytes_done": {"type": "integer"},
                "bytes_total": {"type": "integer"},
                "objects_done": {"type": "integer"},
                "objects_total": {"type": "integer"},
            },
        },
        "metrics": {
            "type": ["object", "null"],
            "description": "each metric's summary (the first 100 metrics written, and the "
            "objective of the run's experiment wherever it came), null when the run has none",
            "additionalProperties": {
                "type": "object",
                "required": ["last", "step", "min", "max", "steps"],
                "properties": {
                    "last": {"type": "number"},
                    "step": {"type": "integer"},
                    "min": {"type": "number"},
                    "max": {"type": "number"},
                    "steps": {"type": "integer"},
                },
            },
        },
        "experiment_id": {
            "type": ["string", "null"],
            "description": "the experiment the run is one of (SPEC §9), null for a run alone",
        },
        "parameters": {
            "type": ["object", "null"],
            "description": "the run's values of its experiment's parameters (exported to its "
            "command's environment under their names)",
            "additionalProperties": {"type": ["number", "string", "boolean"]},
        },
        "attempt": {
            "type": "integer",
            "minimum": 1,
            "description": "the run's attempt now, 1 the first (SPEC §11; TRAINING_ATTEMPT)",
        },
        "max_restarts": {
            "type": "integer",
            "minimum": 0,
            "description": "times the run may start again after a failure",
        },
        "attempts": {
            "type": ["array", "null"],
            "description": "each attempt that ended: how (a run that may restart)",
            "items": {
                "type": "object",
                "properties": {
                    "attempt": {"type": "integer"},
                    "status": {"type": "string"},
                    "error_code": {"type": ["string", "null"]},
                    "exit_code": _NULLABLE_INT,
                    "status_message": _NULLABLE_TEXT,
                    "started_at": {"type": ["string", "null"]},
                    "finished_at": {"type": ["string", "null"]},
                    "resumed_at": {
                        "type": "string",
                        "description": "when `trainui resume` started the run again after it",
                    },
                },
            },
        },
        "resumed_at": {
            "type": ["string", "null"],
            "format": "date-time",
            "description": "when `trainui resume` last started the run again (its wait "
            "counts from then); null if it never was",
        },
    },
}

_EXPERIMENT = {
    "type": "object",
    "required": [
        "experiment_id",
        "url",
        "name",
        "owner",
        "submitted_at",
        "finished_at",
        "status",
        "method",
        "count",
        "max_parallel",
        "seed",
        "parameters",
        "objective",
        "early_stopping",
        "runs_by_status",
        "best",
    ],
    "properties": {
        "experiment_id": {"type": "string", "pattern": "^experiment-[A-Za-z0-9]{9}$"},
        "url": {"type": "string"},
        "name": {"type": "string"},
        "owner": {"type": "string"},
        "submitted_at": {"type": "string", "format": "date-time"},
        "finished_at": {"type": ["string", "null"], "format": "date-time"},
        "status": {
            "type": "string",
            "enum": ["pending", "running", "completed", "failed", "halted"],
        },
        "method": {"type": "string", "enum": ["grid", "random"]},
        "count": {"type": "integer", "description": "its runs still in the history"},
        "max_parallel": _NULLABLE_INT,
        "seed": {
            "type": ["integer", "null"],
            "description": "random: the seed of the draws (given, or drawn and recorded)",
        },
        "parameters": {"type": "object", "description": "the manifest's parameters"},
        "objective": {
            "type": ["object", "null"],
            "properties": {
                "metric": {"type": "string"},
                "goal": {"type": "string", "enum": ["minimize", "maximize"]},
            },
        },
        "early_stopping": {"type": ["object", "null"]},
        "runs_by_status": {
            "type": "object",
            "additionalProperties": {"type": "integer"},
        },
        "best": {
            "type": ["object", "null"],
            "description": "the run with the best last value of the objective's metric",
            "properties": {
                "model_id": {"type": "string"},
                "value": {"type": "number"},
                "step": _NULLABLE_INT,
                "parameters": {"type": ["object", "null"]},
            },
        },
        "runs": {
            "type": "array",
            "description": "GET /v3/experiments/{id}: its runs, best first by the objective, "
            "each a Run (with fields=, only those keys)",
            "items": {"type": "object"},
        },
    },
}

_EXPERIMENT_ACCEPTED = {
    "type": "object",
    "required": ["experiment_id", "url", "model_ids", "status"],
    "properties": {
        "experiment_id": {"type": "string"},
        "url": {"type": "string"},
        "model_ids": {"type": "array", "items": {"type": "string"}},
        "status": {"type": "string"},
    },
}

_EXPERIMENT_ID = {
    "name": "experiment_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string"},
}

_METRIC_SUMMARY = {
    "type": "object",
    "required": ["model_id", "metrics"],
    "properties": {
        "model_id": {"type": "string"},
        "metrics": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name", "last", "step", "min", "max", "steps", "time"],
                "properties": {
                    "name": {"type": "string"},
                    "last": {"type": "number", "description": "the last point's value"},
                    "step": {"type": "integer", "description": "the last point's step"},
                    "min": {"type": "number"},
                    "max": {"type": "number"},
                    "steps": {"type": "integer", "description": "how many points"},
                    "time": {"type": "number", "description": "the last point's (epoch s)"},
                },
            },
        },
        "series": {
            "type": "object",
            "description": "only with max_points or metric: each metric's display series, "
            "as GET /v3/models/{model_id}/metrics/{name} answers it, without its name",
            "additionalProperties": {
                "type": "object",
                "required": ["steps", "values", "times", "downsampled"],
                "properties": {
                    "steps": {"type": "array", "items": {"type": "integer"}},
                    "values": {"type": "array", "items": {"type": "number"}},
                    "times": {"type": "array", "items": {"type": "number"}},
                    "downsampled": {"type": "boolean"},
                },
            },
        },
    },
}

_METRIC_POINTS = {
    "type": "object",
    "required": ["model_id", "name", "steps", "values", "times", "downsampled"],
    "properties": {
        "model_id": {"type": "string"},
        "name": {"type": "string"},
        "steps": {"type": "array", "items": {"type": "integer"}},
        "values": {"type": "array", "items": {"type": "number"}},
        "times": {"type": "array", "items": {"type": "number"}},
        "downsampled": {"type": "boolean"},
    },
}

_ERROR = {
    "type": "object",
    "required": ["message", "errors"],
    "properties": {
        "error_code": {"type": ["string", "null"]},
        "message": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["message"],
                "properties": {
                    "message": {"type": "string"},
                    "path": {"type": "string"},
                    "line": {"type": "integer"},
                    "column": {"type": "integer"},
                    "severity": {"type": "string"},
                },
            },
        },
    },
}


def _json(schema: dict | str, description: str) -> dict:
    if isinstance(schema, str):
        schema = {"$ref": f"#/components/schemas/{schema}"}
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_MAX_NUMBER = 10**18 - 1  # a number in a query or a header has at most 18 digits
# limit= and offset= of a list (runs, experiments)
_PAGE = tuple(
    {
        "name": name,
        "in": "query",
        "schema": {"type": "integer", "minimum": 0, "maximum": _MAX_NUMBER},
    }
    for name in ("limit", "offset")
)


def _errors(*codes: int) -> dict:
    words = {
        400: "the request is refused: every problem listed",
        401: "no token, or a wrong or revoked one",
        403: "not this user's to do: an admin's (the hooks), or a folder of the box a remote "
        "user may not name as a local bucket",
        404: "no such run (or another user's)",
        409: "the run has already ended",
        413: "the upload is larger than the limit",
        502: "the results bucket refused or failed (the store's own words, never a secret)",
        503: "the launcher cannot take runs now (the Ray cluster does not answer)",
        507: "disk full: the service's home has no space left (delete runs to free some)",
    }
    return {str(code): _json("Error", words[code]) for code in codes}


_MODEL_ID = {
    "name": "model_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string"},
}


def openapi_document() -> dict:
    document = _runs_document()
    _add_experiments(document)
    return document


def _add_experiments(document: dict) -> None:
    """SPEC §9's paths: an experiment is submitted as a run is (the same form)."""
    auth = _errors(401)
    paths = document["paths"]
    experiment = {"$ref": "#/components/schemas/Experiment"}
    paths["/v3/experiments"] = {
        "post": {
            "summary": "Submit an experiment: a manifest with experiment: (SPEC §9); its runs "
            "are recorded at once",
            "requestBody": paths["/v3/models"]["post"]["requestBody"],
            "responses": {
                "201": _json(_EXPERIMENT_ACCEPTED, "the experiment and its runs are accepted"),
                **_errors(400, 403, 413, 503, 507),
                **auth,
            },
        },
        "get": {
            "summary": "List experiments in submission order, each summed up (state, runs by "
            "state, best run); count: how many matched, before limit and offset",
            "parameters": [
                {
                    "name": "status",
                    "in": "query",
                    "schema": {"type": "string"},
                    "description": "only experiments in these states, comma-separated "
                    "(pending, running, completed, failed, halted); another word is refused "
                    "(400)",
                },
                *_PAGE,
            ],
            "responses": {
                "200": _json("ExperimentList", "the experiments"),
                **_errors(400),
                **auth,
            },
        },
    }
    paths["/v3/experiments/{experiment_id}"] = {
        "parameters": [_EXPERIMENT_ID],
        "get": {
            "summary": "One experiment, with its runs best first by the objective",
            "parameters": [
                {
                    "name": "fields",
                    "in": "query",
                    "schema": {"type": "string"},
                    "description": "of each run, only these keys (comma-separated)",
                }
            ],
            "responses": {"200": _json(experiment, "the experiment"), **_errors(404), **auth},
        },
        "delete": {
            "summary": "Delete an experiment and its runs from the history (halting active "
            "ones); what they stored stays",
            "responses": {
                "200": _json(
                    {
                        "type": "object",
                        "required": ["experiment_id", "deleted"],
                        "properties": {
                            "experiment_id": {"type": "string"},
                            "deleted": {"type": "boolean"},
                        },
                    },
                    "deleted",
                ),
                **_errors(404, 507),
                **auth,
            },
        },
    }
    paths["/v3/experiments/{experiment_id}/halt"] = {
        "parameters": [_EXPERIMENT_ID],
        "post": {
            "summary": "Halt every run of the experiment that has not ended",
            "responses": {
                "202": _json(experiment, "its runs are halting (pending ones halted)"),
                **_errors(404, 409, 507),
                **auth,
            },
        },
    }
    paths["/v3/experiments/{experiment_id}/resume"] = {
        "parameters": [_EXPERIMENT_ID],
        "post": {
            "summary": "Start each halted or failed run of the experiment again, as its next "
            "attempt, from its last checkpoint (SPEC §11); runs the median rule stopped stay "
            "halted. 409 when none resumes (each run's reason in errors)",
            "parameters": [
                {
                    "name": "status",
                    "in": "query",
                    "schema": {"type": "string"},
                    "description": "only runs in these states, comma-separated (failed, "
                    "halted; both by default); another word is refused (400)",
                }
            ],
            "responses": {
                "202": _json(
                    {
                        "allOf": [
                            experiment,
                            {
                                "type": "object",
                                "required": ["resumed", "not_resumed"],
                                "properties": {
                                    "resumed": {
                                        "type": "array",
                                        "items": {"type": "string"},
                                        "description": "the runs resumed: they wait for their turn",
                                    },
                                    "not_resumed": {
                                        "type": "array",
                                        "description": "halted or failed runs left as they "
                                        "are, and why (stopped early, files no longer kept)",
                                        "items": {
                                            "type": "object",
                                            "required": ["model_id", "reason"],
                                            "properties": {
                                                "model_id": {"type": "string"},
                                                "reason": {"type": "string"},
                                            },
                                        },
                                    },
                                },
                            },
                        ]
                    },
                    "its runs are resumed: they wait for their turn",
                ),
                **_errors(400, 404, 409, 507),
                **auth,
            },
        },
    }


def _runs_document() -> dict:
    auth = _errors(401)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "trainui",
            "version": __version__,
            "description": "Submit, watch and manage deep-learning training runs (SPEC §6).",
        },
        "components": {
            "schemas": {
                "Run": _RUN,
                "Error": _ERROR,
                "RunList": {
                    "type": "object",
                    "required": ["models", "count"],
                    "properties": {
                        "models": {"type": "array", "items": {"$ref": "#/components/schemas/Run"}},
                        "count": {"type": "integer"},
                    },
                },
                "Experiment": _EXPERIMENT,
                "ExperimentList": {
                    "type": "object",
                    "required": ["experiments", "count"],
                    "properties": {
                        "experiments": {
                            "type": "array",
                            "items": {"$ref": "#/components/schemas/Experiment"},
                        },
                        "count": {"type": "integer"},
                    },
                },
                "MetricSummary": _METRIC_SUMMARY,
                "MetricPoints": _METRIC_POINTS,
                "ResultList": {
                    "type": "object",
                    "required": ["prefix", "objects", "count", "bytes"],
                    "properties": {
                        "prefix": {"type": "string"},
                        "objects": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "required": ["key", "size"],
                                "properties": {
                                    "key": {"type": "string"},
                                    "size": {"type": "integer"},
                                    "kept": {
                                        "type": "boolean",
                                        "description": "kept on the box, the results bucket "
                                        "having refused it (served from there)",
                                    },
                                },
                            },
                        },
                        "count": {"type": "integer"},
                        "bytes": {"type": "integer"},
                        "kept": {"type": "integer", "description": "objects kept on the box"},
                        "bucket_problem": {
                            "type": ["string", "null"],
                            "description": "why the results bucket could not be listed, when "
                            "only what the box kept is listed",
                        },
                    },
                },
            },
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
        "paths": {
            "/v3/health": {
                "get": {
                    "summary": "Is the service up (status, version); with a token, also its "
                    "launcher, GPUs and the counts of the runs the caller sees",
                    "security": [{}, {"bearer": []}],
                    "responses": {"200": _json({"type": "object"}, "the service is up")},
                }
            },
            "/v3/models": {
                "post": {
                    "summary": "Submit a run",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "multipart/form-data": {
                                "schema": {
                                    "type": "object",
                                    "required": ["model_definition", "manifest"],
                                    "properties": {
                                        "model_definition": {
                                            "type": "string",
                                            "format": "binary",
                                            "description": "the model definition (.zip)",
                                        },
                                        "manifest": {
                                            "type": "string",
                                            "description": "the manifest (YAML)",
                                        },
                                        "check": {
                                            "type": "string",
                                            "enum": ["true", "false"],
                                            "description": "false: do not check that both "
                                            "buckets are reachable (C103) at submit",
                                        },
                                        "environment": {
                                            "type": "string",
                                            "description": "JSON object: values for ${NAME} "
                                            "references in the manifest's connections",
                                        },
                                    },
                                }
                            }
                        },
                    },
                    "responses": {
                        "201": _json(
                            {
                                "oneOf": [
                                    {
                                        "type": "object",
                                        "required": ["model_id", "url", "status"],
                                        "properties": {
                                            "model_id": {"type": "string"},
                                            "url": {"type": "string"},
                                            "status": {"type": "string"},
                                        },
                                    },
                                    _EXPERIMENT_ACCEPTED,
                                ]
                            },
                            "the run is accepted (a manifest with experiment: is an "
                            "experiment: its ID and its runs')",
                        ),
                        **_errors(400, 403, 413, 503, 507),
                        **auth,
                    },
                },
                "get": {
                    "summary": "List runs in submission order",
                    "parameters": [
                        {
                            "name": "status",
                            "in": "query",
                            "schema": {"type": "string"},
                            "description": "only these states, comma-separated (pending, "
                            "restarting, downloading, running, storing, completed, failed, "
                            "halted); another word is refused (400)",
                        },
                        {
                            "name": "experiment",
                            "in": "query",
                            "schema": {"type": "string"},
                            "description": "only this experiment's runs",
                        },
                        *_PAGE,
                        {
                            "name": "fields",
                            "in": "query",
                            "schema": {"type": "string"},
                            "description": "with Accept: application/x-ndjson, only these keys "
                            "of each run, comma-separated (a name no run has is left out)",
                        },
                    ],
                    "responses": {"200": _run_list(), **_errors(400), **auth},
                },
            },
            "/v3/models/{model_id}": {
                "parameters": [_MODEL_ID],
                "get": {
                    "summary": "One run",
                    "responses": {"200": _json("Run", "the run"), **_errors(404), **auth},
                },
                "delete": {
                    "summary": "Forget a run (halting it first); the results bucket is kept",
                    "responses": {
                        "200": _json({"type": "object"}, "the run is deleted"),
                        **_errors(404),
                        **auth,
                    },
                },
            },
            "/v3/models/{model_id}/halt": {
                "parameters": [_MODEL_ID],
                "post": {
                    "summary": "Halt a run; its log and results are still stored",
                    "responses": {
                        "202": _json("Run", "the run is halting (or halted, if it was pending)"),
                        **_errors(404, 409),
                        **auth,
                    },
                },
            },
            "/v3/models/{model_id}/resume": {
                "parameters": [_MODEL_ID],
                "post": {
                    "summary": "Start a halted or failed run again, as its next attempt, from "
                    "its last checkpoint (SPEC §11)",
                    "responses": {
                        "202": _json("Run", "the run is restarting: it waits for its turn"),
                        **_errors(404, 409),
                        **auth,
                    },
                },
            },
            "/v3/models/{model_id}/logs": {
                "parameters": [_MODEL_ID],
                "get": {
                    "summary": "The run's log: a byte range, or followed as it grows",
                    "parameters": [
                        {"name": "follow", "in": "query", "schema": {"type": "boolean"}},
                        {
                            "name": "offset",
                            "in": "query",
                            "schema": {
                                "type": "integer",
                                "minimum": -_MAX_NUMBER,
                                "maximum": _MAX_NUMBER,
                            },
                            "description": "first byte; negative counts from the end",
                        },
                        {
                            "name": "limit",
                            "in": "query",
                            "schema": {"type": "integer", "minimum": 0, "maximum": _MAX_NUMBER},
                        },
                        {
                            "name": "idle",
                            "in": "query",
                            "schema": {"type": "integer", "minimum": 1, "maximum": 3600},
                            "description": "with follow: end the answer after this many seconds "
                            "without a new byte, the run still active (the client asks the "
                            "run's state, and follows again from where it is; a connection "
                            "gone silent is then told from a quiet log)",
                        },
                    ],
                    "responses": {
                        "200": {
                            "description": "log bytes; X-Log-Size is the log's size, X-Log-Offset "
                            "the first byte sent",
                            "headers": {
                                "X-Log-Size": {"schema": {"type": "integer"}},
                                "X-Log-Offset": {"schema": {"type": "integer"}},
                            },
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        },
                        **_errors(400, 404),
                        **auth,
                    },
                },
            },
            "/v3/models/{model_id}/metrics": {
                "parameters": [_MODEL_ID],
                "get": {
                    "summary": "The run's metrics (SPEC §8), each summed up, in the order "
                    "first written to its metrics.jsonl; with max_points or metric, also "
                    "their display series (what a view's charts draw, in one request)",
                    "parameters": [
                        {
                            "name": "max_points",
                            "in": "query",
                            "schema": {"type": "integer", "minimum": 2, "maximum": _MAX_NUMBER},
                            "description": "series: each metric's display series downsampled "
                            "to at most this many points (as .../metrics/{name}?max_points=)",
                        },
                        {
                            "name": "metric",
                            "in": "query",
                            "style": "form",
                            "explode": True,
                            "schema": {"type": "array", "items": {"type": "string"}},
                            "description": "series: only these metrics (repeatable; a name the "
                            "run does not have is left out); none: every metric",
                        },
                    ],
                    "responses": {
                        "200": _json("MetricSummary", "each metric's last, min, max, count"),
                        **_errors(400, 404),
                        **auth,
                    },
                },
            },
            "/v3/models/{model_id}/metrics/{name}": {
                "parameters": [
                    _MODEL_ID,
                    {
                        "name": "name",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string"},
                        "description": "the metric's name ('/' kept as is)",
                    },
                ],
                "get": {
                    "summary": "A metric's points: the display series (a step going backwards "
                    "purges the points at or after it, as TensorBoard does), or with offset "
                    "every point as written",
                    "parameters": [
                        {
                            "name": "after_step",
                            "in": "query",
                            "schema": {
                                "type": "integer",
                                "minimum": -_MAX_NUMBER,
                                "maximum": _MAX_NUMBER,
                            },
                            "description": "only the points with a larger step",
                        },
                        {
                            "name": "max_points",
                            "in": "query",
                            "schema": {"type": "integer", "minimum": 2, "maximum": _MAX_NUMBER},
                            "description": "downsampled to at most this many: the first, the "
                            "last, and the lowest and highest of each bucket between",
                        },
                        {
                            "name": "offset",
                            "in": "query",
                            "schema": {"type": "integer", "minimum": 0, "maximum": _MAX_NUMBER},
                            "description": "every point as written, from this one on (the "
                            "export; not with after_step or max_points)",
                        },
                    ],
                    "responses": {
                        "200": _json("MetricPoints", "the points"),
                        "400": _json("Error", "a query parameter is not valid"),
                        "404": _json("Error", "no such run, or no such metric in it"),
                        **auth,
                    },
                },
            },
            "/v3/models/{model_id}/definition": {
                "parameters": [_MODEL_ID],
                "get": {
                    "summary": "The model definition as submitted",
                    "responses": {
                        "200": {
                            "description": "the zip",
                            "content": {"application/zip": {"schema": {"type": "string"}}},
                        },
                        **_errors(404),
                        **auth,
                    },
                },
            },
            "/v3/models/{model_id}/manifest": {
                "parameters": [_MODEL_ID],
                "get": {
                    "summary": "The manifest as submitted, secrets removed",
                    "responses": {
                        "200": {
                            "description": "the manifest",
                            "content": {"application/yaml": {"schema": {"type": "string"}}},
                        },
                        **_errors(404),
                        **auth,
                    },
                },
            },
            "/v3/models/{model_id}/results": {
                "parameters": [_MODEL_ID],
                "get": {
                    "summary": "What the run stored under <model_id>/ in its results bucket",
                    "responses": {
                        "200": _json("ResultList", "the objects, keys less the prefix"),
                        "404": _json("Error", "no such run, or nothing stored under its prefix"),
                        "409": _json("Error", "the run has not ended yet"),
                        **_errors(502),
                        **auth,
                    },
                },
            },
            "/v3/models/{model_id}/results/{key}": {
                "parameters": [
                    _MODEL_ID,
                    {
                        "name": "key",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string"},
                        "description": "an object's key from the listing ('/' kept as is)",
                    },
                ],
                "get": {
                    "summary": "One stored object, streamed while the service fetches it; "
                    "a body shorter than its Content-Length means the fetch failed",
                    "responses": {
                        "200": {
                            "description": "the object's bytes",
                            "headers": {"Content-Length": {"schema": {"type": "integer"}}},
                            "content": {
                                "application/octet-stream": {
                                    "schema": {"type": "string", "format": "binary"}
                                }
                            },
                        },
                        "404": _json("Error", "no such run, or no such object under its prefix"),
                        "409": _json("Error", "the run has not ended yet"),
                        **_errors(502),
                        **auth,
                    },
                },
            },
            "/v3/gpus": {
                "get": {
                    "summary": "The GPUs: readings and which run holds each",
                    "responses": {"200": _json({"type": "object"}, "the GPUs"), **auth},
                }
            },
            "/v3/frameworks": {
                "get": {
                    "summary": "The frameworks catalogue (SPEC §10): the supported framework "
                    "names and versions and the runtime of each (container, venv, conda, host); "
                    "catalogue null: none, every framework runs on the host",
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "required": ["catalogue", "frameworks", "message"],
                                "properties": {
                                    "catalogue": {"type": ["string", "null"]},
                                    "frameworks": {
                                        "type": "array",
                                        "items": {
                                            "type": "object",
                                            "required": ["name", "versions", "runtime"],
                                            "properties": {
                                                "name": {"type": "string"},
                                                "versions": {
                                                    "type": "array",
                                                    "items": {"type": "string"},
                                                },
                                                "runtime": {
                                                    "enum": ["container", "venv", "conda", "host"]
                                                },
                                                "image": {"type": "string"},
                                                "path": {"type": "string"},
                                            },
                                        },
                                    },
                                    "message": {"type": "string"},
                                    "looked_in": {
                                        "type": "string",
                                        "description": "catalogue null: where the service "
                                        "reads one",
                                    },
                                    "problem": {"type": "string"},
                                },
                            },
                            "the catalogue",
                        ),
                        **auth,
                    },
                }
            },
            "/v3/notify/test": {
                "post": {
                    "summary": "Send a test event to every notification hook (SPEC §11), one "
                    "try each; how each went",
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "required": ["hooks"],
                                "properties": {
                                    "hooks": {"type": "array"},
                                    "problems": {"type": "array", "items": {"type": "string"}},
                                },
                            },
                            "each hook: {hook, to, ok, problem}; problems: the config file"
                            " changed and has these errors (the hooks tested are those before)",
                        ),
                        **_errors(403),
                        **auth,
                    },
                }
            },
            "/v3/gpus/history": {
                "get": {
                    "summary": "About five minutes of readings per GPU, for sparklines",
                    "responses": {"200": _json({"type": "object"}, "the history"), **auth},
                }
            },
            "/v3/events": {
                "get": {
                    "summary": "Server-sent events of run changes (event: run | deleted | "
                    "metrics: {model_id, owner, metrics: {name: {last, step}}} of the metrics "
                    "with new points, at most about once a second a run); resumable with "
                    "Last-Event-ID; ends when the caller's token is revoked",
                    "parameters": [
                        {
                            "name": "Last-Event-ID",
                            "in": "header",
                            "schema": {"type": "integer", "minimum": 0, "maximum": _MAX_NUMBER},
                        },
                        {
                            "name": "last_event_id",
                            "in": "query",
                            "schema": {"type": "integer", "minimum": 0, "maximum": _MAX_NUMBER},
                        },
                    ],
                    "responses": {
                        "200": {
                            "description": "the event stream",
                            "content": {"text/event-stream": {"schema": {"type": "string"}}},
                        },
                        **_errors(400),
                        **auth,
                    },
                }
            },
        },
    }


def _run_list() -> dict:
    """The list's answer: JSON, or with ``Accept: application/x-ndjson`` one run a line."""
    answer = _json("RunList", "the runs (one a line with Accept: application/x-ndjson)")
    answer["content"]["application/x-ndjson"] = {
        "schema": {"type": "string", "description": "a Run object's JSON on each line"}
    }
    answer["headers"] = {
        "X-Total-Count": {
            "description": "with application/x-ndjson: how many runs match, in all",
            "schema": {"type": "integer"},
        }
    }
    return answer
