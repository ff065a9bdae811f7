"""A throw-away single-node OpenStack Swift ("SAIO") on free loopback ports, for the tests.

Account, container, object and proxy servers of the ``swift`` package (PyPI) run as four
processes under a temporary folder, with no background daemons; they are stopped by PID.
Authentication is v1 tempauth (``/auth/v1.0``, user ``test:tester``, key ``testing``; a second
account ``test2:tester2`` / ``testing2``), and the proxy also speaks S3 (``s3api``: access key
``test:tester``, secret ``testing``), an S3 server that checks signatures.

    with SwiftAIO(tmp_path) as swift:
        swift.auth_url, swift.user, swift.key, swift.s3_endpoint
        short = swift.add_proxy("short", token_life=1)  # a second proxy: tokens live 1 s
"""

from __future__ import annotations

import getpass
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent

COMMON = """[DEFAULT]
bind_ip = 127.0.0.1
bind_port = {port}
workers = 0
user = {user}
swift_dir = {etc}
devices = {devices}
mount_check = false
disable_fallocate = true
recon_cache_path = {cache}
log_level = {log_level}
"""
BACKEND = """
[pipeline:main]
pipeline = healthcheck {kind}-server

[app:{kind}-server]
use = egg:swift#{kind}

[filter:healthcheck]
use = egg:swift#healthcheck
"""
PROXY = """
[pipeline:main]
pipeline = catch_errors gatekeeper healthcheck proxy-logging fakecache listing_formats bulk
    tempurl s3api tempauth copy slo dlo versioned_writes symlink proxy-logging proxy-server

[app:proxy-server]
use = egg:swift#proxy
account_autocreate = true
allow_account_management = true

[filter:fakecache]
paste.filter_factory = saio_fakecache:filter_factory

[filter:tempauth]
use = egg:swift#tempauth
token_life = {token_life}
user_admin_admin = admin .admin .reseller_admin
user_test_tester = testing .admin
user_test2_tester2 = testing2 .admin
user_test_tester3 = testing3

[filter:s3api]
use = egg:swift#s3api
""" + "".join(
    f"[filter:{name}]\nuse = egg:swift#{entry}\n"
    for name, entry in [
        ("catch_errors", "catch_errors"),
        ("gatekeeper", "gatekeeper"),
        ("healthcheck", "healthcheck"),
        ("proxy-logging", "proxy_logging"),
        ("listing_formats", "listing_formats"),
        ("bulk", "bulk"),
        ("tempurl", "tempurl"),
        ("copy", "copy"),
        ("slo", "slo"),
        ("dlo", "dlo"),
        ("versioned_writes", "versioned_writes"),
        ("symlink", "symlink"),
    ]
)
SWIFT_CONF = """[swift-hash]
swift_hash_path_prefix = saioprefix
swift_hash_path_suffix = saiosuffix

[storage-policy:0]
name = gold
default = yes
policy_type = replication
"""
RINGS = """\
import sys
from swift.common.ring import RingBuilder
etc = sys.argv[1]
for kind, port in zip(("object", "container", "account"), map(int, sys.argv[2:])):
    builder = RingBuilder(8, 1, 1)
    builder.add_dev({"id": 0, "region": 1, "zone": 1, "ip": "127.0.0.1", "port": port,
                     "device": "sdb1", "weight": 1.0})
    builder.rebalance()
    builder.get_ring().save(f"{etc}/{kind}.ring.gz")
"""
KINDS = ("account", "container", "object", "proxy")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SwiftAIO:
    user, key = "test:tester", "testing"

    def __init__(self, base: Path, python: str = sys.executable, log_level: str = "WARNING"):
        self.base = Path(base)
        self.python = python
        self.log_level = log_level
        self.ports = {kind: free_port() for kind in KINDS}
        self.procs: dict[str, subprocess.Popen] = {}
        self.proxies = {"proxy"}  # the proxy servers, by name (add_proxy adds some)

    @property
    def proxy_port(self) -> int:
        return self.ports["proxy"]

    @property
    def auth_url(self) -> str:
        return f"http://127.0.0.1:{self.proxy_port}/auth/v1.0"

    @property
    def s3_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.proxy_port}"

    def connection(self, **changes: str) -> dict[str, str]:
        """A manifest connection for this server (bluemix_objectstore)."""
        return {"auth_url": self.auth_url, "user_name": self.user, "password": self.key, **changes}

    def build(self) -> None:
        etc, devices = self.base / "etc", self.base / "node"
        for folder in (etc, devices / "sdb1", self.base / "cache", self.base / "log"):
            folder.mkdir(parents=True, exist_ok=True)
        (etc / "swift.conf").write_text(SWIFT_CONF)
        for kind in KINDS:
            body = PROXY.format(token_life=86400) if kind == "proxy" else BACKEND.format(kind=kind)
            self._configure(kind, body)
        # the RingBuilder API: the swift-ring-builder CLI costs about 1.5 s a call
        ports = [str(self.ports[k]) for k in ("object", "container", "account")]
        subprocess.run([self.python, "-c", RINGS, str(etc), *ports], check=True)

    def _configure(self, name: str, body: str) -> None:
        common = COMMON.format(
            port=self.ports[name],
            user=getpass.getuser(),
            etc=self.base / "etc",
            devices=self.base / "node",
            cache=self.base / "cache",
            log_level=self.log_level,
        )
        (self.base / "etc" / f"{name}-server.conf").write_text(common + body)

    def add_proxy(self, name: str, token_life: int = 86400) -> str:
        """Start another proxy server, ``name``, in front of the same storage, whose tempauth
        tokens expire after ``token_life`` seconds; its auth URL. (Tokens of one proxy are
        not known to the other: each keeps them in its own cache.) ``stop([name])`` ends it."""
        port = self.ports[name] = free_port()
        self.proxies.add(name)
        self._configure(name, PROXY.format(token_life=token_life))
        self.start(kinds=(name,))
        return f"http://127.0.0.1:{port}/auth/v1.0"

    def start(self, kinds=KINDS, timeout: float = 60) -> None:
        pythonpath = os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")]))
        env = dict(os.environ, PYTHONPATH=pythonpath)
        bindir = Path(self.python).parent
        for kind in kinds:
            with open(self.base / "log" / f"{kind}.log", "ab") as log:
                self.procs[kind] = subprocess.Popen(
                    [
                        self.python,
                        str(bindir / f"swift-{'proxy' if kind in self.proxies else kind}-server"),
                        str(self.base / "etc" / f"{kind}-server.conf"),
                        "-v",
                    ],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    env=env,
                )
        deadline = time.monotonic() + timeout
        for kind in kinds:
            port = self.ports[kind]
            while True:
                if self.procs[kind].poll() is not None:
                    log = (self.base / "log" / f"{kind}.log").read_text(errors="replace")
                    raise RuntimeError(f"swift {kind} server died: {log[-2000:]}")
                try:
                    with urllib.request.urlopen(
                        f"http://127.0.0.1:{port}/healthcheck", timeout=1
                    ) as answer:
                        answer.read()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"swift {kind} not healthy on port {port}") from None
                    time.sleep(0.05)

    def stop(self, kinds=None) -> None:
        """Stop the servers of ``kinds`` (default: all) by PID (SIGTERM, then SIGKILL after
        10 s)."""
        kinds = list(self.procs) if kinds is None else kinds
        procs = [self.procs.pop(kind) for kind in kinds if kind in self.procs]
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def kill_proxy(self) -> None:
        """Kill the proxy at once (SIGKILL by PID), as a crashing server would end."""
        proc = self.procs.pop("proxy", None)
        if proc is not None:
            proc.kill()
            proc.wait()

    def __enter__(self) -> SwiftAIO:
        self.build()
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
