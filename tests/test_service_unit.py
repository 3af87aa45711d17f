"""scripts/echo-streamer.service: the settings the daemon relies on, and systemd's own checks of the file."""

from __future__ import annotations

import configparser
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parent.parent / "scripts" / "echo-streamer.service"
PROGRAM = "/opt/echo-streamer/.venv/bin/echo-streamer"


@pytest.fixture(scope="module")
def unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=True, interpolation=None)  # strict: no key set twice
    parser.optionxform = str  # systemd keys are case-sensitive
    parser.read_string(UNIT.read_text(encoding="utf-8"))
    return parser


def systemd_analyze() -> str:
    path = shutil.which("systemd-analyze")
    assert path, "systemd-analyze is missing: run scripts/setup"
    return path


def test_runs_the_daemon_on_loopback(unit: configparser.ConfigParser) -> None:
    service = unit["Service"]
    command = shlex.split(service["ExecStart"])
    assert command[:2] == [PROGRAM, "daemon"]
    options = dict(zip(command[2::2], command[3::2]))
    assert options == {"--listen": "127.0.0.1:8765", "--allow-dir": "/srv/echo-streamer", "--token-file": "%d/token"}
    assert service["LoadCredential"] == "token:/etc/echo-streamer/token"
    # The room comes from the environment file, not the command line (which any user can read).
    assert service["EnvironmentFile"] == "/etc/echo-streamer/env"
    # ProtectHome hides /home and /root, PrivateTmp replaces /tmp: the allow-dir must be elsewhere.
    assert not options["--allow-dir"].startswith(("/home", "/root", "/tmp", "/var/tmp"))
    assert unit["Unit"]["After"] == unit["Unit"]["Wants"] == "network-online.target"
    assert unit["Install"]["WantedBy"] == "multi-user.target"


def test_stops_and_restarts(unit: configparser.ConfigParser) -> None:
    service = unit["Service"]
    assert service["Restart"] == "on-failure"
    assert service["KillSignal"] == "SIGTERM"
    assert service["KillMode"] == "mixed"
    timeout = re.fullmatch(r"(\d+(?:\.\d+)?)s", service["TimeoutStopSec"])
    assert timeout and 3 < float(timeout[1]) <= 6, "the daemon needs 3 s to stop; SIGKILL soon after"


def test_is_hardened_but_keeps_the_network(unit: configparser.ConfigParser) -> None:
    service = unit["Service"]
    expected = {"DynamicUser": "yes", "NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes",
                "PrivateTmp": "yes", "PrivateDevices": "yes", "CapabilityBoundingSet": ""}
    assert {key: service.get(key) for key in expected} == expected
    assert {"AF_INET", "AF_INET6", "AF_NETLINK"} <= set(service["RestrictAddressFamilies"].split())
    assert "PrivateNetwork" not in service and "IPAddressDeny" not in service


def test_systemd_verify_accepts_it(tmp_path: Path) -> None:
    """``systemd-analyze verify`` finds nothing to say. It checks that the program exists, so the copy it
    checks runs a stand-in at a path of its own; nothing else in the file changes."""
    stand_in = tmp_path / "echo-streamer"
    stand_in.write_text("#!/bin/sh\n")
    stand_in.chmod(0o755)
    text = UNIT.read_text(encoding="utf-8")
    assert text.count(PROGRAM) == 1
    copy = tmp_path / "echo-streamer.service"
    copy.write_text(text.replace(PROGRAM, str(stand_in)), encoding="utf-8")
    result = subprocess.run([systemd_analyze(), "verify", str(copy)], capture_output=True, text=True, timeout=60)
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_systemd_security_rates_it_ok(tmp_path: Path) -> None:
    """``systemd-analyze security`` rates the exposure below 2.5 of 10 (OK; an unhardened service is 9.6)."""
    result = subprocess.run([systemd_analyze(), "security", "--offline=yes", str(UNIT)], capture_output=True,
                            text=True, timeout=60)
    level = re.search(r"Overall exposure level for echo-streamer\.service: (\d+\.\d+) (\w+)", result.stdout)
    assert level, result.stdout + result.stderr
    assert float(level[1]) < 2.5 and level[2] == "OK", level[0]
