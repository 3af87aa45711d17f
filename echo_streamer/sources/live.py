"""A sound card's input through PortAudio (python-sounddevice), captured into a bounded queue."""

from __future__ import annotations

import os
import queue
import re
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
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


def _sounddevice() -> ModuleType:
    """python-sounddevice, loaded on first use (it loads the PortAudio library)."""
    try:
        import sounddevice
    except OSError as error:  # no libportaudio on the machine
        raise InputError("live input", f"{error} (on Debian/Ubuntu: apt-get install libportaudio2)") from None
    return sounddevice


class LiveInput:
    """Captures ``device`` (a PortAudio index or name; None for the default input) from construction
    until :meth:`close`.

    PortAudio calls back with ``BLOCK_MS`` of audio at a time; the callback only copies each block's
    bytes into a queue holding at most ``max_buffer_ms`` (in blocks of ``BLOCK_MS``, or of what the
    reader asked for at once). When it is full the oldest block is dropped, and counted in
    ``overflows`` while :meth:`blocks` is being read, so a consumer that falls behind loses audio
    instead of adding delay. ``device_overflows`` counts the callbacks in which PortAudio reported
    that the device itself lost input before it reached us (an overrun of the card or the sound
    server, e.g. when the machine stalls), so the two causes can be told apart.
    :meth:`blocks` yields float32 ``(frames, channels)`` blocks as they arrive (joined, when the
    reader asked for more at once with :meth:`wake_after`); each call starts fresh, dropping what
    was captured before it. Raises :class:`InputError` naming the device when it cannot be opened
    (missing, busy, unsupported rate) or stops delivering audio.
    """

    duration: float | None = None

    def __init__(self, device: int | str | None = None, rate: int | None = None, channels: int | None = None,
                 max_buffer_ms: int = 200) -> None:
        sounddevice = _sounddevice()
        self.name = f"live input {device!r}" if device is not None else "live input (default)"
        self.overflows = 0
        self.device_overflows = 0
        self._reading = False
        # Captured blocks not handed over yet, until the reader's wake_after() count is reached.
        self._held: list[bytes] = []
        self._held_frames = 0
        self._wanted = 0
        # Set by a new reader: the callback forgets the blocks it holds (only it touches them).
        self._restart = False
        # The device went away: PortAudio may hang or abort when it is shut down at exit.
        self.lost = False
        self.callbacks = 0  # PortAudio's calls so far: whether the device still delivers, read or not
        try:
            if isinstance(device, int) and not 0 <= device < len(sounddevice.query_devices()):
                raise ValueError(f"no device with index {device} (`echo-streamer devices` lists the inputs)")
            info: dict[str, Any] = sounddevice.query_devices(device, kind="input")  # type: ignore[assignment]
            self.rate = int(rate or info["default_samplerate"])
            self.channels = int(channels or min(2, info["max_input_channels"]))
            check_format(self.name, self.rate, self.channels)
            most = info["max_input_channels"]
            if self.channels > most:
                raise ValueError(f"{self.channels} channels asked for, it captures at most {most}")
            block = max(1, round(self.rate * BLOCK_MS / 1000))
            # A SimpleQueue: put and get run in C, which matters 200 times a second on two threads.
            # The callback is its only producer, so it keeps the bound itself.
            self._queue: queue.SimpleQueue[bytes] = queue.SimpleQueue()
            self._max_blocks = max(2, round(max_buffer_ms / BLOCK_MS))
            # Raw: the callback copies bytes, and the reader's thread makes the arrays. A numpy
            # array made per callback there cost the callback thread 0.55 % of a core, not 0.39 %.
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

    def blocks(self) -> Iterator[np.ndarray]:
        """Captured blocks from now on, as they arrive (blocking while none are queued)."""
        self._wanted = 0
        self._restart = True
        self._drain()
        self._reading = True
        try:
            while True:
                raw = self._next_block()
                if raw is None:
                    if self._stream.closed:
                        return
                    self.lost = True
                    raise InputError(self.name, f"no audio for {SILENT_DEVICE_S:g} s: the device stopped, went "
                                                "away, or delivers in bursts further apart than that")
                yield np.frombuffer(raw, np.float32).reshape(-1, self.channels)
        finally:
            self._reading = False

    def _next_block(self) -> bytes | None:
        """The next captured block, or None after ``SILENT_DEVICE_S`` of waiting in vain (at once
        once the input is closed).

        Waits in polls of ``SILENT_POLL_S``, each counted for at most twice its length: when the
        whole process was stopped (the machine stalled, a laptop slept), the time the callback
        thread was stopped too is not taken for the device's silence.
        """
        waited = 0.0
        while waited < SILENT_DEVICE_S and not self._stream.closed:
            began = time.monotonic()
            try:
                return self._queue.get(timeout=SILENT_POLL_S)
            except queue.Empty:
                waited += min(time.monotonic() - began, 2 * SILENT_POLL_S)
        return None

    def wake_after(self, frames: int) -> None:
        """Hand the next blocks over only once ``frames`` samples (per channel) have been captured.

        For a reader that can do nothing useful with less (a live segment whose next output frame
        needs that much input): it is woken once instead of once per block. Holds for one hand-over;
        never delays audio beyond the block that reaches the count.
        """
        self._wanted = frames

    def close(self) -> None:
        """Stop capturing; waits at most ``CLOSE_TIMEOUT_S``.

        PortAudio's close can hang when the device (or the sound server behind it) has gone away,
        so it runs in a daemon thread that is abandoned after the timeout.
        """
        if not self._stream.closed:
            closer = threading.Thread(target=self._stream.close, name="echo-streamer-live-close", daemon=True)
            closer.start()
            closer.join(CLOSE_TIMEOUT_S)
            self.lost = self.lost or closer.is_alive()

    def _captured(self, data: Any, frames: int, _time: Any, status: Any) -> None:
        """PortAudio's thread: copy and queue, never wait. ``data``: a buffer of interleaved float32."""
        self.callbacks += 1
        if status.input_overflow:
            self.device_overflows += 1
        if self._restart:
            self._held, self._held_frames, self._restart = [], 0, False
        self._held.append(bytes(data))
        self._held_frames += frames
        if self._held_frames < self._wanted:
            return
        held = self._held[0] if len(self._held) == 1 else b"".join(self._held)
        self._held, self._held_frames, self._wanted = [], 0, 0
        while self._queue.qsize() >= self._max_blocks:
            self._drop_oldest()
        self._queue.put(held)

    def _drop_oldest(self) -> None:
        try:
            self._queue.get_nowait()
            self.overflows += self._reading
        except queue.Empty:
            pass

    def _drain(self) -> None:
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                return


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
