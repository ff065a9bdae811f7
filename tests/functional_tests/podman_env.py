"""Rootful podman on storage of its own, with an image made from a tarball (a static busybox:
no registry outside is reachable here) and, where docker-registry is installed, a local
registry holding it. For the frameworks tests and bench/frameworks.py."""

from __future__ import annotations

import os
import resource
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

IMAGE = "localhost/trainui-test:1"
NO_SHELL_IMAGE = "localhost/trainui-noshell:1"  # busybox alone: no /bin/sh
# prints the time (s.us): busybox's date has no %N (bench/frameworks.py times first lines)
STAMP_C = (
    "#include <stdio.h>\n#include <sys/time.h>\nint main(void) {struct timeval t;"
    ' gettimeofday(&t, 0); printf("%ld.%06ld\\n", (long)t.tv_sec, (long)t.tv_usec); return 0;}\n'
)
TOOLS = ("sh", "echo", "env", "sort", "grep", "ls", "touch", "cat", "sleep", "id", "true", "date")


class PodmanUnavailable(Exception):
    """Why podman cannot run a container here (a sentence)."""


class Podman:
    def __init__(self, top: Path) -> None:
        self.top = top
        self.env: dict[str, str] = {}  # what a service (and podman) needs in its environment
        self.registry: str | None = None  # HOST:PORT of the local registry, when it runs
        self._registry: subprocess.Popen | None = None
        self._short: Path | None = None  # the engine's run state, on a short path (start)

    def start(self) -> Podman:
        if shutil.which("podman") is None:
            raise PodmanUnavailable("podman is not installed (tests/run.sh installs it)")
        busybox = shutil.which("busybox")
        if busybox is None:
            raise PodmanUnavailable("busybox (busybox-static) is not installed")
        top = self.top
        _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        nofile = min(hard, 65536) if hard > 0 else 1024
        conf = [
            "[containers]",
            # podman raises a container's limits past what this machine's sandbox allows
            f'default_ulimits = ["nofile={nofile}:{nofile}", "nproc=4096:4096"]',
        ]
        # the run root and tmp_dir hold conmon's sockets and exit files: in a folder of pytest's
        # (a path of some 60 characters) the sockets' paths pass the 108 characters a socket's
        # may have, and each container's end was missed until podman gave up waiting for it
        # (20 s a container)
        run = self._short = Path(tempfile.mkdtemp(prefix="trainui-podman-"))
        conf += ["[engine]", f'tmp_dir = "{run}/tmp"']
        if shutil.which("runc"):  # crun refuses the hybrid cgroups of some machines
            conf += ['runtime = "runc"']
        (top / "containers.conf").write_text("\n".join(conf) + "\n")
        (top / "storage.conf").write_text(
            f'[storage]\ndriver = "vfs"\ngraphroot = "{top}/graph"\nrunroot = "{run}/run"\n'
        )
        port = _free_port()
        (top / "registries.conf").write_text(
            f'[[registry]]\nlocation = "127.0.0.1:{port}"\ninsecure = true\n'
        )
        self.env = {
            "CONTAINERS_CONF": str(top / "containers.conf"),
            "CONTAINERS_STORAGE_CONF": str(top / "storage.conf"),
            "CONTAINERS_REGISTRIES_CONF": str(top / "registries.conf"),
        }
        rootfs = top / "rootfs"
        (rootfs / "bin").mkdir(parents=True)
        shutil.copy(busybox, rootfs / "bin" / "busybox")
        for tool in TOOLS:
            (rootfs / "bin" / tool).symlink_to("busybox")
        if shutil.which("gcc"):
            (top / "stamp.c").write_text(STAMP_C)
            subprocess.run(
                [
                    "gcc",
                    "-static",
                    "-O2",
                    "-o",
                    str(rootfs / "bin" / "stamp"),
                    str(top / "stamp.c"),
                ],
                check=False,
                capture_output=True,
            )
        subprocess.run(["tar", "-C", str(rootfs), "-cf", str(top / "rootfs.tar"), "."], check=True)
        self.podman("import", str(top / "rootfs.tar"), IMAGE)
        # an image without /bin/sh: the container runtime cannot start a command in it
        bare = top / "bare"
        (bare / "bin").mkdir(parents=True)
        shutil.copy(busybox, bare / "bin" / "busybox")
        subprocess.run(["tar", "-C", str(bare), "-cf", str(top / "bare.tar"), "."], check=True)
        self.podman("import", str(top / "bare.tar"), NO_SHELL_IMAGE)
        tried = self.podman("run", "--rm", IMAGE, "true", check=False)
        if tried.returncode != 0:
            raise PodmanUnavailable(f"podman cannot run a container here: {tried.stderr.strip()}")
        if shutil.which("docker-registry"):
            (top / "registry.yml").write_text(
                "version: 0.1\nstorage:\n  filesystem:\n"
                f"    rootdirectory: {top}/registry\nhttp:\n  addr: 127.0.0.1:{port}\n"
            )
            self._registry = subprocess.Popen(
                ["docker-registry", "serve", str(top / "registry.yml")],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            self.registry = f"127.0.0.1:{port}"
            deadline = time.monotonic() + 10
            while self.podman(
                "push", IMAGE, f"{self.registry}/trainui-test:1", check=False
            ).returncode:
                if time.monotonic() > deadline:
                    raise PodmanUnavailable("the local registry did not start")
                time.sleep(0.2)
        return self

    def podman(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["podman", *args],
            env={**os.environ, **self.env},
            capture_output=True,
            text=True,
            check=check,
        )

    def containers(self) -> list[str]:
        """The names of trainui's containers (running or not)."""
        out = self.podman("ps", "--all", "--format", "{{.Names}}").stdout
        return [n for n in out.split() if n.startswith("trainui-")]

    def stop(self) -> None:
        if self._registry is not None:
            self._registry.kill()
            self._registry.wait()
        self.podman("rm", "--all", "--force", check=False)
        if self._short is not None:
            shutil.rmtree(self._short, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
