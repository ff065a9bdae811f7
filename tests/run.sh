#!/usr/bin/env bash
# The whole test suite from a fresh clone: installs what the tests need, then lint and pytest.
# This is the README's test command; CI (.ci/run) runs it too. Exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/pip install -q -e '.[test,ray]'  # ray: the Ray launcher's tests (about 380 MB)
# tmux drives the TUI in a real terminal in one test; bubblewrap sandboxes runs (the sandbox's
# tests are skipped without it); podman (with runc), a static busybox (the test image, made from
# a tarball) and docker-registry (a local registry to pull from) run the container runtime's
# tests. Install them where we may (CI runs as root).
for tool in tmux:tmux bwrap:bubblewrap podman:podman runc:runc busybox:busybox-static docker-registry:docker-registry; do
    if ! command -v "${tool%%:*}" >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        apt-get install -y -q "${tool#*:}" >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q "${tool#*:}" >/dev/null; } || echo "tests/run.sh: could not install ${tool#*:}; its tests will be skipped" >&2
    fi
done
.venv/bin/ruff check .
.venv/bin/ruff format --check .
# Two stages: every test but those that start a Ray head or a Swift server first (in parallel;
# marker `slow` marks the ones that move many objects or bytes, for -m "not slow" by hand), then
# the Ray and Swift ones (markers `ray`, `swift`). Each stage prints its wall time; a stage that
# selects no test (pytest's exit 5, e.g. under -k) is not a failure.
stage() {
    local name=$1 start status=0
    shift
    start=$(date +%s%N)
    .venv/bin/pytest -q "$@" || status=$?
    local ms=$((($(date +%s%N) - start) / 1000000))
    printf 'tests/run.sh: the %s stage took %d.%d s\n' "$name" $((ms / 1000)) $((ms % 1000 / 100))
    [ "$status" = 5 ] && status=0
    return "$status"
}
failed=0
# the first stage on four workers (each test starts its own service, and waits on it more than
# it computes: six were slower on two cores); the second on two, a test file a worker (a file's
# tests share their Ray head or Swift server)
stage main -n 4 -m "not ray and not swift" "$@" || failed=1
stage "Ray and Swift" -n auto --maxprocesses 2 --dist loadfile -m "ray or swift" "$@" || failed=1
exit "$failed"
