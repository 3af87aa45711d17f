"""A live segment made in the sound card's own thread, block by block, as PortAudio delivers."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable

import numpy as np

from ..dsp.fade import FADE_MS, fade_out
from ..dsp.pauses import PauseDetector
from ..dsp.pipeline import Conditioner
from .segment import Frame, Segment


class LiveFeed:
    """Conditions one live segment's blocks in the thread that delivers them (``push``, from
    :meth:`LiveInput.deliver <echo_streamer.sources.live.LiveInput.deliver>`), so that no thread
    of ours wakes for them.

    Once the segment plays, blocks are held until the next frame can complete
    (:meth:`DriftControl.input_for_next_frame
    <echo_streamer.engine.drift.DriftControl.input_for_next_frame>`); then they are corrected by
    the segment's drift control, conditioned, marked for pauses, and their frames put into the
    segment's queue at once; after :meth:`finish`, the next frame made is faded out and is the
    last. After every block, ``after_block(arrived_at)`` runs with the
    block's ``time.monotonic()`` arrival: the streamer settles a write that waits for this
    segment's next frame. Waits for nothing but that (the streamer's lock, held briefly by SDK
    callbacks, and the SDK's write): a frame that finds the segment's queue full (drift control
    keeps the backlog well under it) is dropped and counted as an overflow. :meth:`wait` returns
    once the feed has ended: its last frame was made, the segment was cut or dropped, or an
    exception on the way (kept in ``error``) ended it.
    """

    def __init__(self, segment: Segment, conditioner: Conditioner, after_block: Callable[[float], None]) -> None:
        assert segment.drift is not None
        self.segment = segment
        self.drift = segment.drift
        self.conditioner = conditioner
        self.error: Exception | None = None
        self._pauses = PauseDetector(conditioner.output.frame_ms)
        self._frame_ms = conditioner.output.frame_ms
        self._after_block = after_block
        self._held: list[np.ndarray] = []
        self._held_samples = 0
        self._finishing = False
        self._ended = threading.Event()

    def push(self, block: np.ndarray) -> None:
        """Take one captured float32 ``(frames, channels)`` block (the capture's thread)."""
        arrived_at = time.monotonic()
        if self._ended.is_set():
            return
        segment = self.segment
        if segment.discarded:
            self._ended.set()
            return
        try:
            self._condition(block, segment.turn_at is not None)
            self._after_block(arrived_at)
        except Exception as error:
            self.error = error
            self._ended.set()

    def finish(self) -> None:
        """End the segment as if the card's input ended here (any thread): the next frame made
        fades out, as a cut's would, and no frame follows it."""
        self._finishing = True

    def wait(self, timeout: float) -> bool:
        """Block up to ``timeout`` seconds; True once the feed has ended."""
        return self._ended.wait(timeout)

    def _condition(self, block: np.ndarray, its_turn: bool) -> None:
        if its_turn:  # (before its turn, drift control keeps the newest blocks itself)
            self._held.append(block)
            self._held_samples += len(block)
            needed = self.drift.input_for_next_frame(self.conditioner.samples)
            if self._held_samples + self.drift.kept_samples < needed:
                return
            block = self._held[0] if len(self._held) == 1 else np.concatenate(self._held)
            self._held.clear()
            self._held_samples = 0
        taken = self.drift.take(block, self.conditioner.samples, self.segment.handed_frames, its_turn)
        if taken is None:
            return
        frames = self.conditioner.push(taken)
        if not len(frames):
            return
        now = time.monotonic()
        for pcm, pause in zip(frames, self._pauses.mark(frames).tolist(), strict=True):
            last = self._finishing
            data = fade_out(pcm.tobytes(), self.conditioner.output.rate * FADE_MS // 1000) if last else pcm.tobytes()
            try:
                self.segment.frames.put_nowait(Frame(data, pause, now))
            except queue.Full:
                self.drift.overflow(self._frame_ms)
            if last:
                self._ended.set()
                return
