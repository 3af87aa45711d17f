"""Decoding through an ffmpeg subprocess: everything libsndfile does not read (AAC/M4A, Opus, WebM, MP4...).

pydub would load the whole file into memory first; a subprocess that streams float32 WAV to a
pipe keeps memory flat however long the file is, and starts producing audio at once.
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import tempfile
from collections.abc import Iterator
from typing import BinaryIO

import numpy as np

from ..errors import InputError
from .base import check_complete
from .rawpcm import SampleDecoder
from .wavheader import read_wav_header

# The input's duration and start (the line, not a tag whose value reads "Duration: ...").
_DURATION = re.compile(rb"^(?:\[info\] )?  Duration: (\d+):(\d\d):(\d\d(?:\.\d+)?)(?:, start: (-?[\d.]+))?",
                       re.MULTILINE)
_MP3_INPUT = b"Input #0, mp3, "
# The input's streams are listed before the mapping to the output's; an MP3's or an M4A's cover
# art is one too, which never outlasts the sound.
_INPUT_STREAM = re.compile(rb"^(?:\[info\] )?  Stream #0:\d+.*$", re.MULTILINE)
_STREAM_MAPPING = b"Stream mapping:"
_COVER_ART = b"(attached pic)"
# A lossy codec's frame, in samples, at most (MP3's 1152; AAC's 1024): an MP3's declared length
# counts whole frames, the last one's padding included (up to 72 ms at 8 kHz), which its decoder trims.
_CODEC_FRAME = 1152
# A duration ffmpeg guessed from the bitrate (ADTS AAC, some MP3s) is no header's promise.
_GUESSED_DURATION = b"Estimating duration from bitrate"
# An error line: the log contexts that name who logged it, if any ("[mov,mp4,m4a,3gp,3g2,mj2 @
# 0x55a5...] [error] moov atom not found"), then the message.
_ERROR_LINE = re.compile(rb"^((?:\[[^\]\n]+ @ 0x[0-9a-f]+\] )*)\[(?:error|fatal|panic)\] (.*)$", re.MULTILINE)
# ffmpeg's own contexts (its input files and streams, decoders, ...), which newer ffmpeg (its
# current source, fftools/) names where 5.1 logged with none: "[aist#0:0/mp3 @ 0x...]
# [dec:mp3float @ 0x...] [error] Decoding error: ...", in 5.1 "[error] Error while decoding
# stream #0:0: ...". Not a library's demuxer or decoder ("[mp3float @ 0x...]").
_OWN_CONTEXT = re.compile(rb"^\[(?:in#|out#|[a-z]?ist#|[a-z]?ost#|dec[\d:]|enc[\d:])")


class FfmpegSource:
    """Streams ``path`` (or, for ``"-"``, the given ``stdin``) through ``ffmpeg`` as float32 PCM.

    Blocks of ``block_seconds`` are read from ffmpeg's stdout as it decodes; the first audio stream
    is used. Decoder errors reported by ffmpeg raise :class:`InputError` (naming ``name``, by
    default ``path``) at the end of the stream. ``streaming=True`` is for input that arrives over
    time: ffmpeg decides the format from the first 512 bytes (with its default, 32 KiB, a
    64 kbit/s MP3 written in real time was decoded 1.3 s late) and flushes every packet, and each
    block is whatever has been decoded so far (at most ``block_seconds``), so audio moves on as
    soon as it exists.
    """

    def __init__(self, path: str, block_seconds: float, stdin: BinaryIO | None = None, *, name: str | None = None,
                 streaming: bool = False) -> None:
        self.name = name or path
        # file: keeps a name such as "take:1.mp3" from being read as a protocol ("take").
        self._input = "pipe:0" if path == "-" else f"file:{path}"
        self._streaming = streaming
        self._log = tempfile.TemporaryFile()
        low_delay = ["-probesize", "512"] if streaming else []
        command = [
            "ffmpeg", "-nostdin", "-hide_banner", "-nostats", "-loglevel", "level+info", *low_delay,
            "-i", self._input,
            "-map", "0:a:0", "-f", "wav", "-acodec", "pcm_f32le",
            *(["-flush_packets", "1"] if streaming else []), "pipe:1",
        ]  # fmt: skip
        try:
            self._process = subprocess.Popen(
                command,
                stdin=stdin if path == "-" else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=self._log,
            )
        except OSError as error:
            self._log.close()
            missing = isinstance(error, FileNotFoundError)
            raise InputError(path, "needs ffmpeg, which is not installed" if missing
                             else f"cannot run ffmpeg: {error.strerror or error}") from error
        assert isinstance(self._process.stdout, io.BufferedReader)
        self._stdout = self._process.stdout
        try:
            header = read_wav_header(self._stdout, self.name)
        except InputError as error:
            reason = self._ffmpeg_reason(error.reason)
            if "matches no streams" in reason:  # our -map 0:a:0 found nothing to map
                raise self._failure("no audio stream in it") from None
            # No demuxer took it, or the container is damaged: ffmpeg's words for it vary ("Invalid data
            # found when processing input", "Invalid argument", "End of file", ...).
            raise self._failure(f"cannot decode: not a known audio format, or damaged ({reason})") from None
        if header.sample_format != "f32le":
            raise self._failure("ffmpeg did not deliver float32 PCM")
        self.rate = header.rate
        self.channels = header.channels
        log = self._log_text()
        self.duration, self._declared_duration = _logged_durations(log)
        self._block_frames = max(1, round(block_seconds * self.rate))

    def blocks(self) -> Iterator[np.ndarray]:
        samples = SampleDecoder(self.name, "f32le", self.channels)
        read = self._stdout.read1 if self._streaming else self._stdout.read
        decoded = 0
        while data := read(self._block_frames * 4 * self.channels):
            block = samples.push(data)
            decoded += len(block)
            if len(block):
                yield block
        self._process.wait()
        if self._process.returncode != 0 or self._damaged(decoded / self.rate):
            default = f"ffmpeg exited with status {self._process.returncode}"
            raise self._failure(f"corrupt audio data ({self._ffmpeg_reason(default)})")
        check_complete(self.name, decoded / self.rate, self._declared_duration,
                       padding_seconds=_CODEC_FRAME / self.rate)
        if not decoded:
            raise self._failure("no audio in it: not one sample")

    def close(self) -> None:
        self._stop()
        self._stdout.close()
        self._log.close()

    def _stop(self) -> None:
        if self._process.poll() is None:
            self._process.kill()
        self._process.wait()

    def _failure(self, reason: str) -> InputError:
        self.close()
        return InputError(self.name, reason)

    def _ffmpeg_reason(self, default: str) -> str:
        """What ffmpeg said went wrong (:func:`logged_reason`), or ``default`` if it said nothing."""
        self._stop()
        return logged_reason(self._log_text(), self._input) or default

    def _log_text(self) -> bytes:
        # Read at an offset, not by seeking: the file offset is ffmpeg's too (its stderr shares
        # the open file), and a line it wrote after a seek to 0 would overwrite the log's start.
        fd = self._log.fileno()
        return os.pread(fd, os.fstat(fd).st_size, 0)

    def _damaged(self, decoded_seconds: float) -> bool:
        """Whether ffmpeg logged an error of its own (a demuxer's or decoder's alone, as for a
        damaged frame it skipped, does not fail the input); not when no demuxer or decoder said
        a word of it and the whole declared length decoded (within a codec frame): bytes after
        the last frame (a stray byte, a Lyrics3 tag), which the decoder drops silently."""
        errors = logged_errors(self._log_text())
        if not any(own for own, _text in errors):
            return False
        whole = (self._declared_duration is not None
                 and decoded_seconds >= self._declared_duration - _CODEC_FRAME / self.rate)
        return not (whole and all(own for own, _text in errors))


def logged_errors(log: bytes) -> list[tuple[bool, str]]:
    """The errors in an ffmpeg log written with ``-loglevel level+...``, in order: whether ffmpeg
    itself logged it (not a library's demuxer or decoder), and the message."""
    return [(not match[1] or bool(_OWN_CONTEXT.match(match[1])), match[2].decode(errors="replace").strip())
            for match in _ERROR_LINE.finditer(log)]


def logged_reason(log: bytes, input_path: str) -> str | None:
    """ffmpeg's last error of its own, less the ``input_path`` it often starts with, after the last
    demuxer's or decoder's error before it, which says more ("moov atom not found; Invalid data
    found when processing input"); None when ffmpeg logged no error of its own."""
    cause = last = component = None
    for own, text in logged_errors(log):
        if own:
            last, cause = text.removeprefix(f"{input_path}: "), component
        else:
            component = text
    if last is None:
        return None
    return f"{cause}; {last}" if cause else last


def _logged_durations(log: bytes) -> tuple[float | None, float | None]:
    """The decoded audio's duration as ffmpeg's log states it, and the least it may last (what a
    truncated file is measured against), in seconds; None where the log does not tell.

    The duration is the input's ``Duration`` less, for an MP3, its ``start``: the encoder delay,
    up to 0.14 s (at 8 kHz), that the decoder trims and the duration counts. Elsewhere ``start``
    is a timestamp, and ``Duration`` the input's span (MPEG-TS, 1.4 s in) or its end (an MP4
    whose sound begins later): the least is ``Duration`` less ``start`` whatever the format. No
    least for a duration ffmpeg only guessed from the bitrate, nor for an input with streams
    other than the sound and its cover art, whose ``Duration`` may be a longer video's."""
    match = _DURATION.search(log)
    if match is None:
        return None, None
    hours, minutes, seconds, start = match.groups()
    whole = int(hours) * 3600 + int(minutes) * 60 + float(seconds)
    least = max(0.0, whole - max(0.0, float(start or 0)))
    streams = [line for line in _INPUT_STREAM.findall(log.split(_STREAM_MAPPING, 1)[0]) if _COVER_ART not in line]
    promised = len(streams) == 1 and _GUESSED_DURATION not in log
    return (least if _MP3_INPUT in log else whole), (least if promised else None)
