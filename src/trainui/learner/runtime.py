"""The framework's runtime (SPEC §10): what the training command runs in, as the service's
catalogue says: the host as it is, a venv, a conda environment, or a container (podman or
docker). learner.json's ``runtime`` holds the catalogue entry, ``{version}`` expanded; none is
the host.

A container run: the image pulled once for many runs (a lock per image in ``<home>/images``)
in the ``preparing`` phase, its lines in the log; the run's folders mounted at the same paths
(``DATA_DIR`` read-only), the run's variables passed, its GPUs passed by CDI or ``--gpus``; a
halt reaches the command through the runtime's signal proxy and an init process, and whatever
happens the container is removed (``container.json`` in the run folder names it, for the
service to remove it if the learner itself is lost)."""

from __future__ import annotations

import contextlib
import fcntl
import glob
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

from trainui.core.runs import CONTAINER_FILE, LOG_FILE, write_json_atomic
from trainui.learner.common import _Failed

RUNTIME_ERROR = "S304"  # the framework's runtime could not be prepared
RUNTIME_LINES = 3  # the log's last lines where a container runtime says its own failure (125)
OCI_WORDS = ("OCI ", "crun:", "runc:")  # an exit 126 or 127 that is the container runtime's
INIT_FAILED = ("ERROR (catatonit:", "[FATAL tini")  # the container's init could not start it
# the run's own variables, passed into a container by name (its PATH, HOME... stay the image's)
RUN_VARIABLES = (
    "DATA_DIR", "MODEL_DIR", "RESULT_DIR", "LOG_DIR", "CHECKPOINT_DIR", "TRAINING_ID",
    "GPU_COUNT", "LEARNER_ID", "NUM_LEARNERS", "PYTHONUNBUFFERED", "EXPERIMENT_ID",
    "TRAINING_ATTEMPT",
)  # fmt: skip
CDI_FOLDERS = ("/etc/cdi", "/var/run/cdi")
PULL_POLL = 0.1


def describe(spec: dict | None) -> str:
    """The runtime in a few words, for the log's "running on ..." line."""
    if not spec or spec.get("runtime") == "host":
        return ""
    kind = spec["runtime"]
    if kind == "container":
        return f"in container image {spec['image']}"
    return f"in the {kind} {spec['path']}"


class Runtime:
    """The host: the command as it is."""

    kind = "host"
    sandboxable = True

    def __init__(self, spec: dict, learner) -> None:
        self.spec = spec
        self.learner = learner

    def begin(self) -> None:
        """Called before the data are staged: start what may go on meanwhile."""

    def failure(self, code: int) -> None:
        """The command exited with ``code``: raise _Failed when the runtime, not the command,
        failed."""

    def prepare(self) -> None:
        """Check (and fetch) what the runtime needs; _Failed with a sentence when it cannot."""

    def environment(self, env: dict[str, str]) -> dict[str, str]:
        return env

    def readonly_paths(self) -> list[str]:
        """What the sandbox must show (read-only) for the command to run."""
        return []

    def command_line(self, argv: list[str], env: dict[str, str]) -> list[str]:
        return argv

    def stop(self, signum: int) -> None:
        """Called after the command's process group was sent ``signum`` (SIGTERM, SIGKILL)."""

    def finish(self) -> None:
        """The command ended: remove what the runtime left."""

    def _fail(self, sentence: str) -> None:
        raise _Failed(RUNTIME_ERROR, f"{self.spec.get('framework', 'the framework')}: {sentence}")


_LOGRUS = re.compile(r'level=\w+ msg="((?:[^"\\]|\\.)*)"')


def _runtime_words(line: str) -> str:
    """A container runtime's error line as words: ``Error: `` left out, and of a logged
    line (``time="..." level=error msg="..."``) its message."""
    found = _LOGRUS.search(line)
    if found:
        line = found.group(1).replace('\\"', '"').replace("\\\\", "\\")
    return line.removeprefix("Error: ")


def _runtime_hint(line: str) -> str:
    """What to do about a container runtime's own failure ``line``."""
    lowered = line.lower()
    if "permission denied" in lowered and "docker" in lowered:
        return " (the service's user may not use docker's socket: add it to the docker group)"
    if "docker daemon" in lowered:
        return " (start docker's daemon, or use podman: runtime_command in the catalogue)"
    return ""


class Venv(Runtime):
    """The venv's ``bin`` first on ``PATH``, ``VIRTUAL_ENV`` set (as ``activate`` does)."""

    kind = "venv"

    @property
    def path(self) -> str:
        return self.spec["path"]

    def prepare(self) -> None:
        if not os.path.isdir(self.path):
            self._fail(f"the {self.kind} {self.path} does not exist on this machine")
        if not os.path.isdir(os.path.join(self.path, "bin")):
            self._fail(f"{self.path} is not a {self.kind}: it has no bin folder")

    def environment(self, env: dict[str, str]) -> dict[str, str]:
        env = dict(env)
        own = os.path.dirname(os.path.realpath(sys.executable))
        parts = [
            p
            for p in env.get("PATH", "").split(os.pathsep)
            if p and os.path.realpath(p) != own  # trainui's own Python is not the run's
        ]
        env["PATH"] = os.pathsep.join([os.path.join(self.path, "bin"), *parts])
        env["VIRTUAL_ENV"] = self.path
        env.pop("PYTHONHOME", None)
        return env

    def readonly_paths(self) -> list[str]:
        paths = [self.path]
        # a venv's python is a link to the Python it was made from: that must be seen too
        config = os.path.join(self.path, "pyvenv.cfg")
        with contextlib.suppress(OSError), open(config, encoding="utf-8") as f:
            for line in f:
                key, _, value = line.partition("=")
                if key.strip() == "home" and value.strip():
                    paths.append(os.path.dirname(value.strip()))
        return paths


class Conda(Venv):
    """A conda environment activated as ``conda activate`` does (its ``bin`` first on
    ``PATH``, ``CONDA_PREFIX``..., its ``activate.d`` scripts sourced), in the same shell as
    the command: signals and the exit code are the command's own, as on the host. (``conda
    run`` buffers the output and does not pass signals on, and needs conda itself.)"""

    kind = "conda environment"

    def prepare(self) -> None:
        super().prepare()
        if not os.path.isdir(os.path.join(self.path, "conda-meta")):
            self._fail(f"{self.path} is not a conda environment: it has no conda-meta folder")

    def environment(self, env: dict[str, str]) -> dict[str, str]:
        env = super().environment(env)
        env.pop("VIRTUAL_ENV", None)
        env.update(
            CONDA_PREFIX=self.path,
            CONDA_DEFAULT_ENV=self.path,
            CONDA_SHLVL="1",
            CONDA_PROMPT_MODIFIER=f"({os.path.basename(self.path)}) ",
        )
        return env

    def command_line(self, argv: list[str], env: dict[str, str]) -> list[str]:
        scripts = sorted(glob.glob(os.path.join(self.path, "etc", "conda", "activate.d", "*.sh")))
        if not scripts:
            return argv
        prelude = "".join(f". {_quote(s)} || exit 126\n" for s in scripts)
        return [*argv[:2], prelude + argv[2]]


class Container(Runtime):
    """podman or docker: ``run --rm --init`` with the run's folders at the same paths."""

    kind = "container"
    sandboxable = False  # isolated by its runtime

    def __init__(self, spec: dict, learner) -> None:
        super().__init__(spec, learner)
        self.name = f"trainui-{learner.model_id}"
        self.command = ""
        self.flavour = "podman"  # podman | docker: how options are written
        self.removed = False
        self._here: threading.Thread | None = None  # is the image here? asked while staging
        self._here_answer: bool | None = None  # its answer (None: not asked yet)

    @property
    def image(self) -> str:
        return self.spec["image"]

    def begin(self) -> None:
        """Ask the runtime whether the image is here while the data are staged (a podman
        call is tens of ms, on the way to the command's first line), unless this machine
        knows it is (``_known_here``)."""
        found = self._runtime_command()
        if found is None:
            return  # prepare says so
        self._set_command(found)
        if self._known_here():
            self._here_answer = True
            return

        def ask() -> None:
            try:
                self._here_answer = self._image_here()
            except _Failed:
                return  # asked again in prepare, where the failure is the run's
            if self._here_answer:
                self._remember()

        self._here = threading.Thread(target=ask, name="trainui-image-check", daemon=True)
        self._here.start()

    def _runtime_command(self) -> str | None:
        wanted = self.spec.get("runtime_command")
        if wanted:
            return shutil.which(wanted)
        return next(filter(None, (shutil.which(c) for c in ("podman", "docker"))), None)

    def _set_command(self, found: str) -> None:
        self.command = found
        self.flavour = "docker" if "docker" in os.path.basename(found) else "podman"

    def prepare(self) -> None:
        found = self.command or self._runtime_command()
        if not found:
            wanted = self.spec.get("runtime_command")
            if wanted:
                self._fail(
                    f"the container runtime {wanted} (runtime_command) is not installed on"
                    " this machine"
                )
            self._fail(
                "a container runtime is needed (podman or docker) and neither is installed"
                " on this machine: install podman, or set runtime_command in the catalogue"
            )
        self._set_command(found)
        if not self.learner.cpu_mode:
            self.gpu_options()  # a machine that cannot pass GPUs in says so before a pull
        if self._here is not None:
            self._here.join()
        here = self._here_answer if self._here_answer is not None else self._image_here()
        if not here:
            if self.spec.get("pull") == "never":
                self._fail(f"the image {self.image} is not on this machine (pull = never)")
            self._pull()
        # named in the run folder: the service removes it if this learner is lost
        write_json_atomic(
            os.path.join(self.learner.run_dir, CONTAINER_FILE),
            {"command": self.command, "name": self.name},
        )

    # --- the image ---------------------------------------------------------------------------

    def _marker(self) -> str:
        """Where this machine notes that the image is here, and where podman keeps it."""
        key = "\0".join((self.command, self.image, os.environ.get("CONTAINERS_STORAGE_CONF", "")))
        name = hashlib.sha256(key.encode()).hexdigest()[:24]
        return os.path.join(self.learner.home, "images", f"{name}.json")

    def _known_here(self) -> bool:
        """The image was here at its last use, and podman's folder of it still is (a stat
        instead of a podman call: tens of ms less before the first line)."""
        if self.flavour != "podman":
            return False
        try:
            with open(self._marker(), encoding="utf-8") as f:
                note = json.load(f)
            return os.path.isdir(note["path"])
        except (OSError, ValueError, KeyError, TypeError):
            return False

    def _remember(self) -> None:
        if self.flavour != "podman":
            return
        with contextlib.suppress(OSError, subprocess.SubprocessError, ValueError):
            image_id = self._ask("image", "inspect", "--format", "{{.Id}}", self.image)
            where = self._ask("info", "--format", "{{.Store.GraphRoot}} {{.Store.GraphDriverName}}")
            root, driver = where.rsplit(" ", 1)
            path = os.path.join(root, f"{driver}-images", image_id)
            if image_id and os.path.isdir(path):
                os.makedirs(os.path.dirname(self._marker()), exist_ok=True)
                write_json_atomic(self._marker(), {"image": self.image, "path": path})

    def _forget(self) -> None:
        with contextlib.suppress(OSError):
            os.unlink(self._marker())

    def _ask(self, *args: str) -> str:
        return subprocess.run(
            [self.command, *args],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout.strip()

    def failure(self, code: int) -> None:
        # 125 is the runtime's own failure, and a command's exit code too: the runtime's says
        # so on the last lines ("Error: ..." from podman, "docker: ..." from docker's client);
        # 126 and 127 are the OCI runtime's (crun, runc) when it could not run the container's
        # command (not permitted), and a shell's (not found) too; the container's init
        # (podman's catatonit, docker's tini) says it could not start it (no /bin/sh in the
        # image), with a code of its own
        said = self._runtime_said(code)
        if said is None:
            return
        if not self._image_here():
            self._forget()
            self._fail(
                f"the image {self.image} is no longer on this machine (it was removed since it"
                " was last used); submit the run again to pull it"
            )
        self._fail(
            f"{os.path.basename(self.command)} could not start the container (exit {code}): "
            f'"{said}"'
        )

    def _runtime_said(self, code: int) -> str | None:
        """The runtime's own error on the log's last lines, shortened, if it wrote one (the
        command exited with ``code``)."""
        from trainui.learner.causes import last_lines, shortened

        for line in last_lines(os.path.join(self.learner.run_dir, LOG_FILE), RUNTIME_LINES):
            if line.startswith(INIT_FAILED):
                return shortened(line)
            ours = line.startswith(("Error: ", "Error response from daemon", "docker: "))
            if ours and (code == 125 or (code in (126, 127) and any(w in line for w in OCI_WORDS))):
                return shortened(line)
        return None

    def _image_here(self) -> bool:
        """Whether the image is on this machine; a runtime that cannot answer (docker's
        daemon not running or not the user's, podman's storage broken) fails the run with its
        own words, before a pull that would only say the same less clearly."""
        check = ["image", "exists"] if self.flavour == "podman" else ["image", "inspect"]
        try:
            done = subprocess.run(
                [self.command, *check, self.image],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                timeout=60,
            )
        except (OSError, subprocess.TimeoutExpired):
            return False
        if done.returncode == 0:
            return True
        said = [
            s.strip()
            for s in done.stderr.decode("utf-8", "replace").splitlines()
            if s.strip() and not s.startswith("WARN[") and "level=warning" not in s
        ]
        line = _runtime_words(said[0]) if said else ""
        broken = (
            # podman: `exists` answers 1 without a word for an image that is not here
            done.returncode == 125 or bool(said)
            if self.flavour == "podman"
            else "docker daemon" in line.lower()  # docker: `inspect` answers 1 for both
        )
        if broken:
            self._fail(
                f"{os.path.basename(self.command)} cannot be used on this machine: "
                f"{line[:300] or f'exit {done.returncode}'}{_runtime_hint(line)}"
            )
        return False

    def _pull(self) -> None:
        """Pull the image, once for every run that needs it (the others wait on its lock),
        its lines in the log, the phase ``preparing`` with the layers copied so far."""
        learner = self.learner
        folder = os.path.join(learner.home, "images")
        os.makedirs(folder, exist_ok=True)
        lock_path = os.path.join(folder, hashlib.sha256(self.image.encode()).hexdigest()[:24])
        with open(lock_path + ".lock", "a") as lock:
            learner._preparing(f"waiting for the image {self.image}", 0)
            while True:
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if learner.halt_requested:
                        return
                    time.sleep(PULL_POLL)
            try:
                if self._image_here():  # another run pulled it meanwhile
                    learner._log(f"the image {self.image} is here (pulled for another run)")
                    return
                self._pull_locked()
                if not self.learner.halt_requested:
                    self._remember()
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _pull_locked(self) -> None:
        learner = self.learner
        learner._log(f"pulling the image {self.image} ({os.path.basename(self.command)} pull)")
        learner._preparing(f"pulling the image {self.image}", 0)
        started = time.monotonic()
        read_fd, write_fd = os.pipe()
        try:
            process = subprocess.Popen(
                [self.command, "pull", self.image],
                stdin=subprocess.DEVNULL,
                stdout=write_fd,
                stderr=write_fd,
                start_new_session=True,
            )
        except OSError as error:
            os.close(read_fd)
            os.close(write_fd)
            self._fail(f"the image {self.image} could not be pulled: {error}")
        os.close(write_fd)
        layers, tail, pending = 0, [], b""
        os.set_blocking(read_fd, False)
        try:
            while True:
                if learner.halt_requested and process.poll() is None:
                    _signal_group(process.pid, signal.SIGKILL)
                try:
                    chunk = os.read(read_fd, 65536)
                except BlockingIOError:
                    if process.poll() is not None:
                        chunk = b""
                        with contextlib.suppress(BlockingIOError):
                            chunk = os.read(read_fd, 65536)
                        if not chunk:
                            break
                    else:
                        time.sleep(PULL_POLL)
                        continue
                if not chunk:
                    break
                *lines, pending = (pending + chunk).split(b"\n")
                for raw in lines:
                    line = raw.decode("utf-8", "replace").rstrip("\r").strip()
                    if not line:
                        continue
                    learner._log(f"pull: {line}")
                    tail = [*tail[-4:], line]
                    if (
                        line.startswith(("Copying blob", "Copying config"))
                        or ": Pull complete" in line
                    ):
                        layers += 1
                        learner._preparing(
                            f"pulling the image {self.image}: {layers} layer"
                            f"{'s' if layers != 1 else ''} copied",
                            layers,
                        )
        finally:
            os.close(read_fd)
            code = process.wait()
        if learner.halt_requested:
            learner._log("the pull was stopped (halt)")
            return
        if code != 0:
            why = next((t for t in reversed(tail) if "rror" in t), tail[-1] if tail else "")
            why = why.removeprefix("Error: ")
            network = any(
                w in why
                for w in ("no such host", "dial tcp", "connection refused", "i/o timeout",
                          "network is unreachable", "TLS handshake", "Temporary failure")
            )  # fmt: skip
            hint = (
                " (the registry cannot be reached from this machine: no network?)"
                if network
                else ""
            )
            self._fail(f"the image {self.image} could not be pulled: {why or f'exit {code}'}{hint}")
        learner._log(f"pulled the image {self.image} in {time.monotonic() - started:.1f} s")

    # --- the command -------------------------------------------------------------------------

    def gpu_options(self) -> list[str]:
        learner = self.learner
        if learner.cpu_mode:
            return []
        how = self.spec.get("gpus", "auto")
        if how == "auto":
            how = "cdi" if self.flavour == "podman" else "gpus-flag"
        if how == "gpus-flag":
            return ["--gpus", f'"device={",".join(learner.gpu_ids)}"']
        if not _cdi_has_nvidia():
            self._fail(
                "GPUs are passed into podman containers by CDI, and this machine has no CDI"
                " spec for NVIDIA GPUs: generate one with `sudo nvidia-ctk cdi generate"
                " --output=/etc/cdi/nvidia.yaml` (the NVIDIA Container Toolkit), or set"
                ' gpus = "gpus-flag" in the catalogue for docker'
            )
        return [opt for g in learner.gpu_ids for opt in ("--device", f"nvidia.com/gpu={g}")]

    def environment(self, env: dict[str, str]) -> dict[str, str]:
        env = dict(env)
        # inside, the run's GPUs are the only ones, numbered from 0
        env["CUDA_VISIBLE_DEVICES"] = (
            ""
            if self.learner.cpu_mode
            else ",".join(str(i) for i in range(len(self.learner.gpu_ids)))
        )
        return env

    def command_line(self, argv: list[str], env: dict[str, str]) -> list[str]:
        learner = self.learner
        dirs = learner.dirs
        line = [self.command, "run", "--rm", "--init", "--pull=never", "--name", self.name]
        if self.flavour == "podman":
            line.append("--replace")  # a container left by an earlier learner of this run
        else:
            self._remove()
        for key in ("DATA_DIR", "MODEL_DIR", "RESULT_DIR", "LOG_DIR", "CHECKPOINT_DIR"):
            mode = "ro" if key == "DATA_DIR" else "rw"
            line += ["--volume", f"{dirs[key]}:{dirs[key]}:{mode}"]
        line += ["--workdir", dirs["MODEL_DIR"]]
        user = learner.sandbox_user  # the service runs as root: the command does not
        if user is not None:
            from trainui.sandbox import give_to

            give_to(
                user, [dirs[k] for k in ("MODEL_DIR", "RESULT_DIR", "LOG_DIR", "CHECKPOINT_DIR")]
            )
            line += ["--user", f"{user.uid}:{user.gid}", "--cap-drop=all"]
            line += ["--security-opt=no-new-privileges"]
            for group in user.groups:
                if group != user.gid:
                    line += ["--group-add", str(group)]
        names = [n for n in RUN_VARIABLES if n in env]
        names += [n for n in (learner.config.get("parameters") or {}) if n in env]
        names.append("CUDA_VISIBLE_DEVICES")
        for name in dict.fromkeys(names):
            line += ["--env", name]  # its value from the runtime's environment: never argv
        line += self.gpu_options()
        line += list(self.spec.get("options") or ())
        line += [self.image, *argv]
        return line

    def stop(self, signum: int) -> None:
        if signum == signal.SIGKILL:  # the runtime's client is gone: the container is not
            self._remove()

    def finish(self) -> None:
        self._remove()

    def _remove(self) -> None:
        if self.removed or not self.command:
            return
        self.removed = True
        remove_container(self.command, self.name)


def remove_container(command: str, name: str) -> None:
    """Remove a run's container, running or not (nothing when it is gone)."""
    line = [command, "rm", "--force", name]
    if "docker" not in os.path.basename(command):
        line[2:2] = ["--ignore", "--time", "0"]
    with contextlib.suppress(OSError, subprocess.TimeoutExpired):
        subprocess.run(
            line,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=60,
        )


def remove_left_container(run_dir: str) -> None:
    """The service's part: a learner that is lost may have left its container running."""
    try:
        with open(os.path.join(run_dir, CONTAINER_FILE), encoding="utf-8") as f:
            spec = json.load(f)
        command, name = spec["command"], spec["name"]
    except (OSError, ValueError, KeyError, TypeError):
        return
    if isinstance(command, str) and isinstance(name, str) and name.startswith("trainui-"):
        remove_container(command, name)


def for_spec(spec: dict | None, learner) -> Runtime:
    kind = (spec or {}).get("runtime", "host")
    return {"venv": Venv, "conda": Conda, "container": Container}.get(kind, Runtime)(
        spec or {"runtime": "host"}, learner
    )


def _cdi_has_nvidia() -> bool:
    for folder in CDI_FOLDERS:
        for path in glob.glob(os.path.join(folder, "*")):
            with (
                contextlib.suppress(OSError, UnicodeDecodeError),
                open(path, encoding="utf-8") as f,
            ):
                if "nvidia.com/gpu" in f.read(1 << 20):
                    return True
    return False


def _signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(OSError):
        os.killpg(pgid, signum)


def _quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"
