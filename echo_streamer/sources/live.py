"""A sound card's input through PortAudio (python-sounddevice), handed on block by block."""

from __future__ import annotations

import os
import re
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from ..errors import InputError
from .base import check_format

# PortAudio delivers this much per callback: small, so audio moves on as soon as it exists (a
# live frame is complete only when the block holding its last sample has come).
BLOCK_MS = 5.0
# A device that delivers nothing for this long (stalls of the whole process not counted) is treated as gone.
SILENT_DEVICE_S = 1.0
SILENT_POLL_S = 0.1
CLOSE_TIMEOUT_S = 1.0

_FAILED_CHECK = re.compile(rb"^Expression '.*' failed in '.*', line: \d+\r?\n?$")
_ERROR_CODE = re.compile(r" \[PaErrorCode -?\d+\]$")
_OPENING = re.compile(r"^Error (?:opening|starting) \w+: ")


@dataclass(frozen=True)
class InputDevice:
    index: int
    name: str
    host_api: str
    default_rate: float
    channels: int
    is_default: bool


def input_devices() -> list[InputDevice]:
    """Every device PortAudio can capture from; raises :class:`InputError` when PortAudio cannot
    be loaded or asked."""
    sounddevice = _sounddevice()
    try:
        apis = sounddevice.query_hostapis()
        default = sounddevice.default.device[0]
        return [InputDevice(device["index"], device["name"], apis[device["hostapi"]]["name"],
                            device["default_samplerate"], device["max_input_channels"], device["index"] == default)
                for device in sounddevice.query_devices() if device["max_input_channels"] > 0]
    except sounddevice.PortAudioError as error:
        raise InputError("PortAudio", _reason(error)) from None


def input_device_index(device: int | str) -> int:
    """The PortAudio index of the input ``device`` names (an index or a name, as
    :class:`LiveInput` takes it); raises :class:`InputError` when none matches."""
    sounddevice = _sounddevice()
    try:
        return int(_input_device(sounddevice, device)["index"])
    except (ValueError, sounddevice.PortAudioError) as error:
        raise InputError(_input_name(device), _reason(error)) from None


def _input_name(device: int | str | None) -> str:
    return f"live input {device!r}" if device is not None else "live input (default)"


def _input_device(sounddevice: ModuleType, device: int | str | None) -> dict[str, Any]:
    """PortAudio's description of the input ``device`` names (None: the default input); raises
    ValueError or PortAudioError when there is none."""
    if isinstance(device, int) and not 0 <= device < len(sounddevice.query_devices()):
        raise ValueError(f"no device with index {device} (`echo-streamer devices` lists the inputs)")
    info: dict[str, Any] = sounddevice.query_devices(device, kind="input")
    return info


def _sounddevice() -> ModuleType:
    """python-sounddevice, loaded on first use (it loads the PortAudio library)."""
    try:
        import sounddevice
    except OSError as error:  # no libportaudio on the machine
        raise InputError("live input", f"{error} (on Debian/Ubuntu: apt-get install libportaudio2)") from None
    return sounddevice


Consumer = Callable[[np.ndarray], None]


class LiveInput:
    """Captures ``device`` (a PortAudio index or name; None for the default input) from construction
    until :meth:`close`.

    PortAudio calls back with ``BLOCK_MS`` of audio at a time, on its own thread. While a consumer
    is set (:meth:`deliver`), each block goes to it there and then, as a float32 ``(frames,
    channels)`` array of its own; otherwise it is dropped. Nothing is queued in between: the
    consumer (a streamer's live segment, :class:`~echo_streamer.engine.livefeed.LiveFeed`) keeps
    its own bounded buffer, so audio moves on as soon as it exists, with no thread woken for it.
    ``callbacks`` counts PortAudio's calls, read or not (:class:`SilenceWatch` tells from it a device
    that stopped delivering); ``device_overflows`` the calls in which PortAudio reported that the
    device itself lost input before it reached us (an overrun of the card or the sound server,
    e.g. when the machine stalls). Raises :class:`InputError` naming the device when it cannot be
    opened (missing, busy, unsupported rate).
    """

    def __init__(self, device: int | str | None = None, rate: int | None = None,
                 channels: int | None = None) -> None:
        sounddevice = _sounddevice()
        self.name = _input_name(device)
        self.device_overflows = 0
        self._consumer: Consumer | None = None
        # The device went away: PortAudio may hang or abort when it is shut down at exit.
        self.lost = False
        self.callbacks = 0
        try:
            info = _input_device(sounddevice, device)
            self.device_index = int(info["index"])
            self.rate = int(rate or info["default_samplerate"])
            self.channels = int(channels or min(2, info["max_input_channels"]))
            check_format(self.name, self.rate, self.channels)
            most = info["max_input_channels"]
            if self.channels > most:
                raise ValueError(f"{self.channels} channels asked for, it captures at most {most}")
            block = max(1, round(self.rate * BLOCK_MS / 1000))
            with portaudio_checks_hidden():
                self._stream = sounddevice.RawInputStream(device=device, samplerate=self.rate, channels=self.channels,
                                                       dtype="float32", blocksize=block, callback=self._captured)
                try:
                    self._stream.start()
                except sounddevice.PortAudioError:
                    self.close()  # opened: the device stays held until closed
                    raise
        except (ValueError, sounddevice.PortAudioError) as error:
            raise InputError(self.name, _reason(error)) from None

    @property
    def closed(self) -> bool:
        return bool(self._stream.closed)

    def deliver(self, consumer: Consumer | None) -> None:
        """Hand every block captured from now on to ``consumer`` (None: to no one), called on
        PortAudio's thread: it must neither block nor raise (python-sounddevice stops calling
        back after an exception, which then looks like a device that stopped delivering). Once
        this returns, the consumer set before gets no block it has not begun with already."""
        self._consumer = consumer

    def close(self) -> None:
        """Stop capturing; waits at most ``CLOSE_TIMEOUT_S``.

        PortAudio's close can hang when the device (or the sound server behind it) has gone away,
        so it runs in a daemon thread that is abandoned after the timeout.
        """
        if not self.closed:
            closer = threading.Thread(target=self._stream.close, name="echo-streamer-live-close", daemon=True)
            closer.start()
            closer.join(CLOSE_TIMEOUT_S)
            self.lost = self.lost or closer.is_alive()

    def _captured(self, data: Any, _frames: int, _time: Any, status: Any) -> None:
        """PortAudio's thread. ``data``: a buffer of interleaved float32, PortAudio's own (copied)."""
        self.callbacks += 1
        if status.input_overflow:
            self.device_overflows += 1
        consumer = self._consumer
        if consumer is not None:
            consumer(np.frombuffer(bytes(data), np.float32).reshape(-1, self.channels))


class SilenceWatch:
    """Tells a device that stopped delivering (no callback for ``SILENT_DEVICE_S``) from a process
    that was stopped as a whole (the machine stalled, a laptop slept): :meth:`check` is called
    about every ``SILENT_POLL_S``, and each time between two calls counts for at most twice that."""

    def __init__(self, live_input: LiveInput) -> None:
        self._input = live_input
        self._seen = live_input.callbacks
        self._asked = time.monotonic()
        self._silent_s = 0.0

    def check(self, *, muted: bool = False) -> None:
        """Raise :class:`InputError` naming the device (and marking it lost) once it has been silent
        that long; ``muted``: nothing reads it meanwhile, which the message says."""
        now = time.monotonic()
        if self._input.callbacks != self._seen:
            self._seen, self._silent_s = self._input.callbacks, 0.0
        else:
            self._silent_s += min(now - self._asked, 2 * SILENT_POLL_S)
        self._asked = now
        if self._silent_s >= SILENT_DEVICE_S:
            self._input.lost = True
            raise InputError(self._input.name, f"no audio for {SILENT_DEVICE_S:g} s{' while muted' if muted else ''}: "
                                               "the device stopped, went away, or delivers in bursts further apart "
                                               "than that")


def _reason(error: Exception) -> str:
    """sounddevice's message, less its function name and PortAudio's error code:
    "Error opening RawInputStream: Invalid sample rate [PaErrorCode -9997]" -> "cannot open it: Invalid sample rate"."""
    first, *more = str(error).splitlines()
    text = _ERROR_CODE.sub("", first)
    if text == "Error querying device -1":  # what PortAudio says when there is no default input
        return "no default input device (no sound card, or no sound server running)"
    if more:  # sounddevice lists the devices an ambiguous name matches on the lines after
        text += " " + "; ".join(line.strip() for line in more if line.strip())
    return _OPENING.sub("cannot open it: ", text)


@contextmanager
def portaudio_checks_hidden() -> Iterator[None]:
    """Keep PortAudio's failed-check lines off stderr meanwhile; pass everything else on, after.

    PortAudio's ALSA host API prints each check that fails while it opens a stream ("Expression
    '...' failed in 'src/hostapi/alsa/pa_linux_alsa.c', line: 1514") straight to file descriptor 2,
    before it returns the error that says the same in one line. The descriptor is redirected to a
    file while the block runs, so output from other threads then is delayed, not lost.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as caught:
        os.dup2(caught.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            caught.seek(0)
            kept = [line for line in caught.read().splitlines(keepends=True) if not _FAILED_CHECK.match(line)]
            if kept:
                os.write(2, b"".join(kept))
