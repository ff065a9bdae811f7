"""The TCP listener's limits: whom a connection counts against, the caps, the settings."""

from __future__ import annotations

import subprocess
import sys

import pytest

from trainui.config import ConfigError, ConnectionLimits, connection_limits
from trainui.service.connections import Gate, client_address


def test_a_connection_counts_against_its_ipv4_address_or_its_ipv6_64():
    assert client_address("192.0.2.7") == "192.0.2.7"
    assert client_address("::ffff:192.0.2.7") == "192.0.2.7"  # IPv4 on a dual-stack listener
    assert client_address("2001:db8:1:2:aaaa::1") == client_address("2001:db8:1:2:bbbb::9")
    assert client_address("2001:db8:1:2::1") == "2001:db8:1:2::/64"
    assert client_address("2001:db8:1:3::1") != client_address("2001:db8:1:2::1")


def test_the_gate_refuses_past_each_cap_and_counts_leaving_connections_out():
    gate = Gate(ConnectionLimits(header_timeout=10, keep_alive=5, max_connections=3,
                                 max_per_address=2))  # fmt: skip
    assert gate.enter("a") is None and gate.enter("a") is None
    assert gate.enter("a") == (
        "too many connections from a (at most 2 at a time); close some and try again"
    )
    assert gate.enter("b") is None
    assert gate.enter("c") == "the service has too many connections (at most 3); try again later"
    gate.leave("a")
    assert gate.enter("c") is None
    assert gate.total == 3 and dict(gate.by_address) == {"a": 1, "b": 1, "c": 1}


def test_the_limits_are_read_from_the_environment():
    assert connection_limits({}) == ConnectionLimits(10.0, 5.0, 1024, 64)
    limits = connection_limits(
        {
            "TRAINUI_HEADER_TIMEOUT": "1.5",
            "TRAINUI_KEEP_ALIVE": "2",
            "TRAINUI_MAX_CONNECTIONS": "100",
            "TRAINUI_MAX_CONNECTIONS_PER_ADDRESS": "8",
        }
    )
    assert limits == ConnectionLimits(1.5, 2.0, 100, 8)
    with pytest.raises(ConfigError, match="TRAINUI_HEADER_TIMEOUT must be a number, not 'soon'"):
        connection_limits({"TRAINUI_HEADER_TIMEOUT": "soon"})
    with pytest.raises(ConfigError, match="TRAINUI_MAX_CONNECTIONS must be at least 1, not '0'"):
        connection_limits({"TRAINUI_MAX_CONNECTIONS": "0"})


def test_too_few_open_files_lower_the_total_cap_and_say_so():
    # in a process of its own: the limit of open files is the process's
    script = (
        "import resource\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (300, 300))\n"
        "from trainui.config import connection_limits\n"
        "from trainui.service.connections import fit_open_files\n"
        "print(fit_open_files(connection_limits({})).max_connections)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "22"  # (300 - 256) // 2: a socket and a log each
    assert "TRAINUI_MAX_CONNECTIONS lowered to 22: this process may open only 300" in result.stderr
