"""Streaming resamplers for pipes and live input: how long they hold audio back, and how clean they are.

A real espeak-ng sentence (22050 Hz, as piper and espeak write it; ``--in-rate`` to change) is
fed to each candidate in 10 ms chunks, as a TTS process writing in real time would deliver it,
and resampled to 24 kHz (``--out-rate``). For every chunk, the audio held back is the input time
received minus the output time emitted, plus the output's own delay (found by cross-correlation
against the reference); the worst value over the sentence is the resampler's latency. SNR is
the aligned stream output against a one-shot python-soxr VHQ resample of the whole sentence
(the first and last 50 ms left out), over the whole band and below 7/8 of the input's Nyquist
frequency (``BAND``): where the two differ, the difference is in the top of the band, where
the candidates' low-pass filters roll off earlier than VHQ's. Candidates: python-soxr
``ResampleStream`` at every quality, libsamplerate through the ``samplerate`` package at every
converter that exists, and echo-streamer's own polyphase FIRs (``dsp.polyphase``: ``fir`` for
streams, the shorter ``fir_live`` for live input).
Verdict: among the candidates with SNR >= 50 dB (``--min-snr``), live input's ``fir_live`` left
out, the one that holds back least must be the one echo-streamer uses for streams
(``dsp.resample.STREAM_QUALITY``).

espeak-ng speaks at 22050 Hz; for a higher ``--in-rate`` the sentence is upsampled and so has
nothing above 11 kHz, where a resampler that aliases would go unnoticed (soxr QQ, a cubic
interpolator, would score 54-79 dB). Such inputs get white noise across their whole band,
``NOISE_DB`` below the speech, as a microphone's hiss would add.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import soundfile
import soxr
from _common import out_path, print_table, verdict

from echo_streamer.dsp.resample import FIR_SPECS, LIVE_QUALITY, STREAM_QUALITY, StreamResampler

TEXT = "Streaming speech arrives in small pieces, and every millisecond of delay is heard as lag."
CHUNK_MS = 10
EDGE_MS = 50
BAND = 7 / 8  # of the input's Nyquist frequency, for the in-band SNR
ESPEAK_RATE = 22050
NOISE_DB = -30.0  # full-band noise under speech upsampled from ESPEAK_RATE

Process = Callable[[np.ndarray, bool], np.ndarray]


@dataclass(frozen=True)
class Figures:
    name: str
    latency_ms: float
    delay_ms: float
    snr_db: float
    band_snr_db: float
    seconds_per_audio_hour: float


def speech(in_rate: int) -> np.ndarray:
    path = out_path(f"resampler-speech-{in_rate}.wav")
    if not path.exists():
        raw = out_path("resampler-speech.wav")
        subprocess.run(["espeak-ng", "-w", str(raw), TEXT], check=True)
        subprocess.run(["sox", str(raw), "-r", str(in_rate), str(path)], check=True)
    samples, _ = soundfile.read(path, dtype="float32")
    if in_rate > ESPEAK_RATE:
        rms = np.sqrt(np.mean(samples.astype(np.float64) ** 2))
        hiss = np.random.default_rng(0).standard_normal(len(samples)) * rms * 10 ** (NOISE_DB / 20)
        samples = (samples + hiss).astype(np.float32)
    return samples


def candidates(in_rate: int, out_rate: int) -> dict[str, Callable[[], Process]]:
    """name -> factory of a fresh streaming ``process(chunk, last)``."""
    made: dict[str, Callable[[], Process]] = {}

    for fir in FIR_SPECS:  # the streams' filter, and live input's shorter one
        def fir_stream(fir: str = fir) -> Process:
            resampler = StreamResampler(in_rate, out_rate, fir)
            return lambda chunk, last: np.concatenate((resampler.process(chunk), resampler.flush())) if last else \
                resampler.process(chunk)
        made[f"echo-streamer {fir}"] = fir_stream
    for quality in ("QQ", "LQ", "MQ", "HQ", "VHQ"):
        def soxr_stream(quality: str = quality) -> Process:
            stream = soxr.ResampleStream(in_rate, out_rate, 1, dtype="float32", quality=quality)
            return lambda chunk, last: stream.resample_chunk(chunk, last=last)
        made[f"soxr {quality}"] = soxr_stream
    try:
        import samplerate
    except ImportError:
        print("samplerate is not installed: libsamplerate candidates skipped", file=sys.stderr)
        return made
    for converter in ("sinc_best", "sinc_medium", "sinc_fastest", "linear"):
        def libsamplerate_stream(converter: str = converter) -> Process:
            resampler = samplerate.Resampler(converter, channels=1)
            return lambda chunk, last: resampler.process(chunk, out_rate / in_rate, end_of_input=last).astype(
                np.float32)
        made[f"libsamplerate {converter}"] = libsamplerate_stream
    return made


def run_stream(process: Process, samples: np.ndarray, in_rate: int) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Feed ``samples`` in 10 ms chunks; return the output and (input so far, output so far) per chunk."""
    chunk = in_rate * CHUNK_MS // 1000
    pieces, progress, emitted = [], [], 0
    for start in range(0, len(samples), chunk):
        piece = samples[start:start + chunk]
        out = process(piece, start + chunk >= len(samples))
        pieces.append(out)
        emitted += len(out)
        progress.append((start + len(piece), emitted))
    return np.concatenate(pieces), progress


def delay_of(output: np.ndarray, reference: np.ndarray) -> int:
    """Output samples by which ``output`` lags ``reference`` (cross-correlation over +-100 ms)."""
    span = min(len(output), len(reference))
    lags = range(-2400, 2401)
    scores = [float(np.dot(output[max(0, lag):span + min(0, lag)], reference[max(0, -lag):span - max(0, lag)]))
              for lag in lags]
    return lags[int(np.argmax(scores))]


def measure(name: str, factory: Callable[[], Process], samples: np.ndarray, in_rate: int, out_rate: int,
            reference: np.ndarray) -> Figures:
    import time

    started = time.perf_counter()
    output, progress = run_stream(factory(), samples, in_rate)
    elapsed = time.perf_counter() - started
    delay = delay_of(output, reference)
    held = max(1000 * (taken / in_rate - (emitted - delay) / out_rate) for taken, emitted in progress)
    aligned = output[delay:delay + len(reference)] if delay >= 0 else np.concatenate((np.zeros(-delay), output))
    edge = out_rate * EDGE_MS // 1000
    span = min(len(aligned), len(reference)) - edge
    snr = snr_db(aligned[edge:span], reference[edge:span])
    band_snr = snr_db(aligned[edge:span], reference[edge:span], BAND * in_rate / 2 / (out_rate / 2))
    return Figures(name, held, 1000 * delay / out_rate, snr, band_snr, elapsed * 3600 / (len(samples) / in_rate))


def snr_db(output: np.ndarray, reference: np.ndarray, below: float = 1.0) -> float:
    """SNR of ``output`` against ``reference`` (same length), counting only frequencies under
    ``below`` times the Nyquist frequency of their rate."""
    if below < 1.0:
        keep = np.fft.rfftfreq(len(output)) < below / 2
        output, reference = (np.fft.irfft(np.fft.rfft(x) * keep, len(x)) for x in (output, reference))
    error = output - reference
    return float(10 * np.log10(np.sum(reference ** 2) / max(np.sum(error ** 2), 1e-30)))


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--in-rate", type=int, default=22050, help="input rate (default: 22050)")
    parser.add_argument("--out-rate", type=int, default=24000, help="output rate (default: 24000)")
    parser.add_argument("--min-snr", type=float, default=50.0, help="SNR floor in dB (default: 50)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    samples = speech(args.in_rate)
    reference = soxr.resample(samples, args.in_rate, args.out_rate, quality="VHQ").astype(np.float32)
    results = [measure(name, factory, samples, args.in_rate, args.out_rate, reference)
               for name, factory in candidates(args.in_rate, args.out_rate).items()]
    print(f"{len(samples) / args.in_rate:.2f} s of espeak-ng speech, {args.in_rate} -> {args.out_rate} Hz, "
          f"{CHUNK_MS} ms chunks")
    print_table(["resampler", "held back ms (worst)", "output delay ms", "SNR dB",
                 f"SNR dB below {BAND * args.in_rate / 2:.0f} Hz", "CPU s per audio hour"],
                [[r.name, f"{r.latency_ms:.2f}", f"{r.delay_ms:.2f}", f"{r.snr_db:.1f}", f"{r.band_snr_db:.1f}",
                  f"{r.seconds_per_audio_hour:.2f}"] for r in results])
    # fir_live is live input's (flat to 5/6 of Nyquist only): streams are judged without it.
    clean = [r for r in results if r.snr_db >= args.min_snr and r.name != f"echo-streamer {LIVE_QUALITY}"]
    best = min(clean, key=lambda r: r.latency_ms)
    used = f"echo-streamer {STREAM_QUALITY}"
    return verdict(best.name == used, f"least held back with SNR >= {args.min_snr:g} dB: {best.name} "
                                      f"({best.latency_ms:.2f} ms); echo-streamer's streams use {used}")


if __name__ == "__main__":
    sys.exit(main())
