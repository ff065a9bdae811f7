#!/usr/bin/env bash
# The whole test suite from a fresh clone: installs what the tests need, then lint and pytest.
# This is the README's test command; CI (.ci/run) runs it too. Exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/pip install -q -e '.[test,ray]'  # ray: the Ray launcher's tests (about 380 MB)
# tmux drives the TUI in a real terminal in one test; bubblewrap sandboxes runs (the sandbox's
# tests are skipped without it). Install them where we may (CI runs as root).
for tool in tmux:tmux bwrap:bubblewrap; do
    if ! command -v "${tool%%:*}" >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        apt-get install -y -q "${tool#*:}" >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q "${tool#*:}" >/dev/null; } || echo "tests/run.sh: could not install ${tool#*:}; its tests will be skipped" >&2
    fi
done
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/pytest -q "$@"
