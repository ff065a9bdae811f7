"""The sandbox a run's command runs in: bubblewrap (``bwrap``), the tool Flatpak uses.

What the command sees (a mount namespace of its own, built on an empty root):
- the system read-only (``/usr``, ``/etc``, ``/opt``, ... and the Python trainui runs on);
- its run's folders at their usual paths: ``DATA_DIR`` read-only, ``MODEL_DIR``, ``RESULT_DIR``,
  ``LOG_DIR``, ``CHECKPOINT_DIR`` and a private ``/tmp`` and ``HOME`` writable;
- a ``/dev`` of its own with the GPUs passed through (``/dev/nvidia*``, ``/dev/dri``);
- a PID namespace: it sees only its own processes (not the learner, not other runs, no
  ``/proc/*/environ`` but its own), and when its command ends every process it started ends
  with it (the namespace's first process going takes the rest);
- when the service runs as root, an unprivileged user: the one a token maps to
  (``trainui token add NAME --unix-user LOGIN``), else ``TRAINUI_SANDBOX_USER`` (default
  ``nobody``).
The home (tokens, run store, other runs, credentials) does not exist in it.

Signals: the command runs in a session and process group of its own (``--new-session``), with
the namespace's first process (bwrap's), apart from the bwrap process the learner started. A
halt sends SIGTERM to that group (``command_group``): the command gets it, the namespace's
first process does not (from outside its namespace, only signals it handles reach it), so bwrap
stays to tear the namespace down after the command; SIGKILL to the run's group, after the
grace, ends bwrap and with it the whole namespace.
"""

from __future__ import annotations

import os
import shutil
import sys

BWRAP = "bwrap"
# the system, read-only; symbolic links among them (/bin -> usr/bin) are made as links
SYSTEM_PATHS = (
    "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/opt", "/sys",
    "/nix/store", "/run/systemd/resolve", "/run/nvidia-persistenced",
)  # fmt: skip
DEVICES = "/dev"  # its nvidia* and dri are passed through
DEFAULT_USER = "nobody"


class SandboxError(Exception):
    """The sandbox cannot be used, in one sentence."""


def installed() -> bool:
    """bubblewrap (and, as root, setpriv) are there to be tried."""
    return shutil.which(BWRAP) is not None and (os.geteuid() != 0 or bool(shutil.which("setpriv")))


def unavailable(timeout: float = 10.0) -> str | None:
    """Why runs cannot be sandboxed on this machine (one sentence), or None when they can:
    the whole chain a run uses is tried once on ``true``."""
    import subprocess

    if not sys.platform.startswith("linux"):
        return "sandboxing needs Linux namespaces"
    if not installed():
        return (
            "bubblewrap (bwrap) is not installed: `apt install bubblewrap` (or dnf, zypper, "
            "pacman: the package is called bubblewrap)"
        )
    user = None
    if os.geteuid() == 0:
        try:
            user = resolve_user(None)
        except SandboxError as error:
            return str(error)
    argv = wrap(["/bin/true"], readonly=[], writable=[], tmp_dir=None, hide=[], user=user)
    try:
        done = subprocess.run(
            argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"bubblewrap could not be started: {error}"
    if done.returncode != 0:
        said = done.stderr.decode(errors="replace").strip().splitlines()
        why = said[-1] if said else f"exit status {done.returncode}"
        if "namespace" in why or "not permitted" in why:
            why += "; user namespaces may be disabled (sysctl kernel.unprivileged_userns_clone)"
        return f"bubblewrap cannot make a sandbox here: {why}"
    return None


class User:
    """The Unix user a sandboxed command runs as (the service runs as root)."""

    __slots__ = ("gid", "groups", "name", "uid")

    def __init__(self, name: str, uid: int, gid: int, groups: list[int]) -> None:
        self.name, self.uid, self.gid, self.groups = name, uid, gid, groups


def resolve_user(login: str | None, environ=os.environ) -> User:
    """The user for ``login`` (a token's ``--unix-user``), else ``TRAINUI_SANDBOX_USER``,
    else ``nobody``; a login or a numeric uid. Never root."""
    import pwd

    from trainui.config import Settings

    wanted = (login or Settings(environ).sandbox_user or DEFAULT_USER).strip()
    try:
        entry = pwd.getpwuid(int(wanted)) if wanted.isdigit() else pwd.getpwnam(wanted)
    except (KeyError, ValueError):
        if wanted.isdigit():  # a uid without an account: its own group
            uid = int(wanted)
            if uid == 0:
                raise SandboxError("runs may not run as root (uid 0) in the sandbox") from None
            return User(wanted, uid, uid, [uid])
        raise SandboxError(f"no Unix user '{wanted}' on this machine for sandboxed runs") from None
    if entry.pw_uid == 0:
        raise SandboxError(f"Unix user '{wanted}' is root: runs may not run as root")
    try:
        groups = os.getgrouplist(entry.pw_name, entry.pw_gid)
    except OSError:
        groups = [entry.pw_gid]
    return User(entry.pw_name, entry.pw_uid, entry.pw_gid, groups)


def python_paths() -> list[str]:
    """What the command needs of trainui's Python (``python3`` on its PATH is it): the
    interpreter's prefixes and the folder trainui is imported from."""
    paths = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    # the venv (the learner runs without site, so sys.prefix is not it) and the interpreter
    for executable in (sys.executable, os.path.realpath(sys.executable)):
        paths.add(os.path.dirname(os.path.dirname(executable)))
    package = os.path.dirname(os.path.abspath(__file__))
    paths.add(os.path.dirname(package))
    return sorted(p for p in paths if p and p != "/")


PYTHON_PATHS = python_paths()


def wrap(
    argv: list[str],
    *,
    readonly: list[str],
    writable: list[str],
    tmp_dir: str | None,
    hide: list[str],
    user: User | None,
    extra_readonly: list[str] = (),
    gpu_devices: list[str] | None = None,
) -> list[str]:
    """The command line that runs ``argv`` in the sandbox.

    ``readonly`` and ``writable`` are the run's folders (bound at their own paths);
    ``tmp_dir`` becomes ``/tmp``; ``hide`` (the home) is covered with an empty folder wherever
    a system path would show it; ``user``: switch to it (the caller is root); ``gpu_devices``:
    the run's GPUs' nodes (``/dev/nvidia3``), the others left out (None: every GPU's)."""
    args = [
        BWRAP, "--die-with-parent", "--new-session", "--unshare-pid", "--unshare-ipc",
        "--unshare-uts", "--unshare-cgroup-try", "--hostname", "trainui",
    ]  # fmt: skip
    if os.geteuid() != 0:
        args.append("--unshare-user")  # an unprivileged bwrap needs a user namespace
    made: set[str] = set()

    def bind(option: str, source: str, dest: str) -> None:
        # the folders above a mount point, searchable (bwrap would make them 0700, its own)
        for parent in _ancestors(dest):
            if parent not in made:
                made.add(parent)
                args.extend(("--perms", "0755", "--dir", parent))
        args.extend((option, source, dest))

    for path in SYSTEM_PATHS:
        if os.path.islink(path):  # /bin -> usr/bin
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            bind("--ro-bind", path, path)
    args += ["--proc", "/proc", "--dev", "/dev"]
    # a /dev/shm everyone may write (as /dev/shm is): POSIX semaphores and shared memory, e.g.
    # Python's multiprocessing.Queue (tensorboardX's writer), PyTorch's DataLoader workers
    args += ["--perms", "1777", "--tmpfs", "/dev/shm"]
    for device in _gpu_nodes(gpu_devices):
        args += ["--dev-bind-try", device, device]
    if tmp_dir is not None:
        args += ["--bind", tmp_dir, "/tmp"]
    else:
        args += ["--tmpfs", "/tmp"]
    made.clear()  # what was made under /tmp is covered now
    shown = [*PYTHON_PATHS, *extra_readonly]
    for path in shown:
        if os.path.exists(path):
            bind("--ro-bind", path, path)
    for path in hide:  # after what would show it
        if any(_under(path, top) for top in (*SYSTEM_PATHS, *shown)):
            args += ["--tmpfs", path]
    for path in readonly:
        bind("--ro-bind", path, path)
    for path in writable:
        bind("--bind", path, path)
    if user is not None:
        # bwrap (root, no user namespace) mounts; setpriv then becomes the user for good
        args += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID", "--cap-add", "CAP_SETPCAP"]
    if writable:
        args += ["--chdir", writable[0]]
    args.append("--")
    if user is not None:
        args += [
            "setpriv", f"--reuid={user.uid}", f"--regid={user.gid}",
            "--groups=" + ",".join(str(g) for g in user.groups or [user.gid]),
            "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs",
        ]  # fmt: skip
    args += argv
    return args


def command_group(bwrap_pid: int) -> int | None:
    """The process group of the command that the bwrap process ``bwrap_pid`` runs, None while
    the command has not started (or has ended). ``--new-session`` made it the group of the
    namespace's first process, whose pid it has; that process takes no SIGTERM from outside
    its namespace (it has no handler), so the group's SIGTERM reaches the command only."""
    first = _first_child(bwrap_pid)
    if first is None or _first_child(first) is None:
        return None
    return first


def _first_child(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            children = f.read().split()
    except OSError:
        return None
    return int(children[0]) if children else None


def give_to(user: User | None, paths: list[str]) -> None:
    """Make the run's writable folders (and what is in them) the sandbox user's."""
    if user is None:
        return
    for top in paths:
        os.chown(top, user.uid, user.gid)
        for folder, dirs, files in os.walk(top):
            for name in (*dirs, *files):
                os.chown(os.path.join(folder, name), user.uid, user.gid, follow_symlinks=False)


def exit_code(code: int) -> int:
    """bwrap reports a command killed by signal N as 128 + N: give it back as -N."""
    return -(code - 128) if 128 < code < 128 + 65 else code


def _gpu_nodes(wanted: list[str] | None) -> list[str]:
    """``/dev/nvidia*`` and ``/dev/dri``: of the GPUs' own nodes (``nvidia3``), the ``wanted``
    ones only (None: all); the shared ones (``nvidiactl``, ``nvidia-uvm``, ...) always."""
    try:
        names = sorted(os.listdir(DEVICES))
    except OSError:
        return []
    nodes = []
    for name in names:
        path = os.path.join(DEVICES, name)
        if name == "dri":
            nodes.append(path)
        elif name.startswith("nvidia"):
            own = name[6:].isdigit()  # one GPU's node
            if wanted is None or not own or path in wanted:
                nodes.append(path)
    return nodes


def _ancestors(path: str) -> list[str]:
    """The folders above ``path``, outermost first, ``/`` left out."""
    above = []
    parent = os.path.dirname(path)
    while parent not in ("/", ""):
        above.append(parent)
        parent = os.path.dirname(parent)
    return above[::-1]


def _under(path: str, top: str) -> bool:
    top = top.rstrip("/") or "/"
    return top == "/" or path == top or path.startswith(top + "/")
