"""A private PulseAudio server with a virtual sound card, for the live tests through ALSA's pulse plugin.

``pulse_server(root, env)`` starts a PulseAudio server of its own (runtime directory, home and
socket under ``root``, so parallel runs and anyone else's server never meet) with:

- ``virt``: a null sink at 48 kHz. Test audio is played into it (``paplay --device=virt``) and
  its monitor, ``virt.monitor``, is the default source: the "sound card" that is captured.
- ``silence`` (a null source, at most 20 ms latency) looped into ``virt`` with 20 ms latency.
  A null sink that nothing plays into runs at its 2 s configured latency, and a capture stream
  opened on its monitor then gets its first data 0-2 s late (it looks like PortAudio's capture
  through the pulse plugin stalling). A low-latency stream that always plays into the sink keeps
  its latency low, so capture starts at once and runs in real time. The sink is created before
  the loopback connects, so it starts with 2 s of latency that takes 2 s to drain: the server is
  not handed over until it has (``MAX_SINK_LATENCY_US``).

Volumes are set to 100 % and unmuted explicitly, so what is played reaches the monitor at its
level. The environment yielded (``XDG_RUNTIME_DIR``, ``HOME``, ``PULSE_SERVER``) selects the
server for pactl/paplay and for PortAudio's ALSA ``pulse`` and ``default`` devices.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

RATE = 48_000
SINK = "virt"
MONITOR = f"{SINK}.monitor"
MODULES = (
    "module-native-protocol-unix",
    f"module-null-sink sink_name={SINK} rate={RATE}",
    f"module-null-source source_name=silence rate={RATE} max_latency_msec=20",
    f"module-loopback source=silence sink={SINK} latency_msec=20",
)
START_TIMEOUT_S = 10.0
# The sink's latency (pactl's "Latency: N usec") once it has drained; it runs at a few ms.
MAX_SINK_LATENCY_US = 30_000
STOP_TIMEOUT_S = 10.0


def pactl(env: dict[str, str], *args: str, timeout: float = 10) -> str:
    """Run ``pactl ARGS`` against the server ``env`` selects; fail with its stderr; return its stdout."""
    result = subprocess.run(["pactl", *args], capture_output=True, text=True, env=env, timeout=timeout)
    if result.returncode != 0:
        raise AssertionError(f"pactl {' '.join(args)} failed ({result.returncode}): {result.stderr.strip()}")
    return result.stdout


def sink_latency_us(env: dict[str, str], sink: str = SINK) -> int:
    """The sink's current latency in microseconds, as ``pactl list sinks`` reports it."""
    for block in pactl(env, "list", "sinks").split("Sink #")[1:]:
        if re.search(rf"^\s*Name: {re.escape(sink)}$", block, re.MULTILINE):
            latency = re.search(r"^\s*Latency: (\d+) usec", block, re.MULTILINE)
            assert latency, f"pactl list sinks gives no latency for {sink}: {block}"
            return int(latency[1])
    raise AssertionError(f"no sink {sink}")


def answers(env: dict[str, str]) -> bool:
    """Whether the server ``env`` selects answers ``pactl info``."""
    try:
        return subprocess.run(["pactl", "info"], capture_output=True, env=env, timeout=5).returncode == 0
    except subprocess.TimeoutExpired:
        return False


@contextmanager
def pulse_server(root: Path, env: dict[str, str]) -> Iterator[dict[str, str]]:
    """A PulseAudio server private to ``root`` (see the module's docstring); yields ``env`` extended
    to select it. Fails, with the server's log, if it does not answer, or its sink's latency has not
    drained, within ``START_TIMEOUT_S``."""
    run_dir, home = root / "run", root / "home"
    run_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    home.mkdir(parents=True, exist_ok=True)
    env = {key: value for key, value in env.items() if not key.startswith("PULSE_")}
    env.update(XDG_RUNTIME_DIR=str(run_dir), HOME=str(home), PULSE_SERVER=f"unix:{run_dir}/pulse/native")
    log_path = root / "pulseaudio.log"
    # Not daemonized, so that the process started here is the server and can be stopped by its PID.
    with open(log_path, "wb") as log:
        server = subprocess.Popen(["pulseaudio", "--daemonize=no", "--exit-idle-time=-1", "--no-cpu-limit", "-n",
                                   "--log-target=stderr", *[f"--load={module}" for module in MODULES]],
                                  stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not answers(env):
            if server.poll() is not None or time.monotonic() > deadline:
                why = f"exited with status {server.returncode}" if server.poll() is not None else \
                    f"did not answer pactl info within {START_TIMEOUT_S:g} s"
                raise AssertionError(f"pulseaudio {why}; its log:\n{_tail(log_path)}")
            time.sleep(0.05)
        while (latency := sink_latency_us(env)) > MAX_SINK_LATENCY_US:
            if time.monotonic() > deadline:
                raise AssertionError(f"the null sink's latency is still {latency} us after {START_TIMEOUT_S:g} s: "
                                     f"the silent loopback does not run; the server's log:\n{_tail(log_path)}")
            time.sleep(0.05)
        pactl(env, "set-default-sink", SINK)
        pactl(env, "set-default-source", MONITOR)
        pactl(env, "set-sink-volume", SINK, "100%")
        pactl(env, "set-sink-mute", SINK, "0")
        pactl(env, "set-source-volume", MONITOR, "100%")
        pactl(env, "set-source-mute", MONITOR, "0")
        yield env
    finally:
        _stop(server, env)


def _stop(server: subprocess.Popen[bytes], env: dict[str, str]) -> None:
    """Stop the server: ``pulseaudio -k`` against it, then SIGTERM, then SIGKILL, by its PID only."""
    if server.poll() is None:
        subprocess.run(["pulseaudio", "-k"], capture_output=True, env=env, timeout=STOP_TIMEOUT_S)
        try:
            server.wait(timeout=STOP_TIMEOUT_S / 2)
        except subprocess.TimeoutExpired:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(timeout=STOP_TIMEOUT_S / 2)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as error:
        return f"(no log: {error})"


if __name__ == "__main__":  # a manual check: start one, show it, stop it
    import tempfile

    with tempfile.TemporaryDirectory() as tmp, pulse_server(Path(tmp), dict(os.environ)) as pulse_env:
        print(pactl(pulse_env, "info"))
        print(pactl(pulse_env, "list", "short", "sources"))
