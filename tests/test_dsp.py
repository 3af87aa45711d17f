"""The numeric stages: streaming resampler, framer, PCM16 conversion, downmix, the whole
conditioner, and the pause detector that marks interrupt points."""

from __future__ import annotations

import itertools
import math
import warnings

import numpy as np
import pytest
import soxr
from hypothesis import given, settings
from hypothesis import strategies as st

from echo_streamer.dsp.convert import downmix, to_pcm16
from echo_streamer.dsp.framer import Framer
from echo_streamer.dsp.pauses import MIN_PAUSE_MS, PauseDetector, first_dip
from echo_streamer.dsp.pipeline import Conditioner, OutputFormat
from echo_streamer.dsp.polyphase import LIVE_SPEC, STREAM_SPEC, FilterSpec, lowpass, ratio, supported
from echo_streamer.dsp.resample import (
    LIVE_QUALITY,
    QUALITY,
    STREAM_QUALITY,
    StreamResampler,
    resample,
)
from echo_streamer.errors import InputError

IN_RATES = (8000, 16000, 22050, 44100, 48000, 96000)
OUT_RATES = (16000, 24000)
RATE_PAIRS = [(i, o) for i in IN_RATES for o in OUT_RATES if i != o]
# files: soxr HQ; streams: our polyphase FIR; live input: the short polyphase FIR
QUALITIES = (QUALITY, STREAM_QUALITY, LIVE_QUALITY)

block_sizes = st.lists(st.integers(min_value=1, max_value=6000), min_size=1, max_size=20)


def noise(frames: int, seed: int = 0, channels: int | None = None, level: float = 0.3) -> np.ndarray:
    """Seeded Gaussian noise (float32), mono ``(frames,)`` or ``(frames, channels)``."""
    shape = (frames,) if channels is None else (frames, channels)
    return (level * np.random.default_rng(seed).standard_normal(shape)).astype(np.float32)


def split(samples: np.ndarray, sizes: list[int]) -> list[np.ndarray]:
    """Cut ``samples`` into consecutive blocks of ``sizes`` (cycled); the last block takes what is left."""
    blocks, start, k = [], 0, 0
    while start < len(samples):
        size = sizes[k % len(sizes)]
        blocks.append(samples[start : start + size])
        start += size
        k += 1
    return blocks


def stream_resample(samples: np.ndarray, in_rate: int, out_rate: int, sizes: list[int],
                    quality: str = QUALITY) -> np.ndarray:
    """Everything a :class:`StreamResampler` emits for ``samples`` pushed in blocks of ``sizes``, plus flush."""
    resampler = StreamResampler(in_rate, out_rate, quality)
    parts = [resampler.process(block) for block in split(samples, sizes)]
    parts.append(resampler.flush())
    return np.concatenate(parts)


def assert_within_one_lsb(got: np.ndarray, want: np.ndarray) -> None:
    """Two int16 vectors of equal length differing by at most one LSB anywhere."""
    assert got.dtype == np.int16 and want.dtype == np.int16
    assert len(got) == len(want)
    if len(got):
        assert np.max(np.abs(got.astype(np.int32) - want.astype(np.int32))) <= 1


# -- StreamResampler ------------------------------------------------------------------------------


@pytest.mark.parametrize("quality", QUALITIES)
@settings(max_examples=60, deadline=None)
@given(data=st.data(), sizes=block_sizes, seed=st.integers(0, 2**16))
def test_stream_equals_one_shot(quality: str, data: st.DataObject, sizes: list[int], seed: int) -> None:
    """Resampling in arbitrary blocks gives the one-shot result within 1 LSB, sample for sample."""
    in_rate, out_rate = data.draw(st.sampled_from(RATE_PAIRS), label="rates")
    samples = noise(sum(sizes), seed)
    streamed, _ = to_pcm16(stream_resample(samples, in_rate, out_rate, sizes, quality))
    reference, _ = to_pcm16(resample(samples, in_rate, out_rate, quality))
    assert_within_one_lsb(streamed, reference)


@pytest.mark.parametrize(("quality", "in_rate", "out_rate"),
                         [(quality, *rates) for quality in QUALITIES for rates in RATE_PAIRS])
def test_one_sample_blocks(in_rate: int, out_rate: int, quality: str) -> None:
    """Even one input sample at a time, the stream equals the one-shot result."""
    samples = noise(3000, seed=in_rate)
    streamed, _ = to_pcm16(stream_resample(samples, in_rate, out_rate, [1], quality))
    reference, _ = to_pcm16(resample(samples, in_rate, out_rate, quality))
    assert_within_one_lsb(streamed, reference)


@pytest.mark.parametrize("quality", QUALITIES)
@settings(max_examples=40, deadline=None)
@given(data=st.data(), length=st.integers(1, 50_000), sizes=block_sizes)
def test_tail_is_flushed(quality: str, data: st.DataObject, length: int, sizes: list[int]) -> None:
    """The flushed output is as long as the input lasts: in_len * out_rate / in_rate within 2 samples."""
    in_rate, out_rate = data.draw(st.sampled_from(RATE_PAIRS), label="rates")
    out = stream_resample(noise(length), in_rate, out_rate, sizes, quality)
    assert abs(len(out) - length * out_rate / in_rate) <= 2


@pytest.mark.parametrize(("quality", "in_rate"), [(QUALITY, 22050), (STREAM_QUALITY, 22050),
                                                  (LIVE_QUALITY, 48000), (LIVE_QUALITY, 44100)])
def test_clear_forgets_the_last_stream(quality: str, in_rate: int) -> None:
    """After clear() (mid-stream, as an interrupt does) a new signal comes out as from a fresh resampler."""
    resampler = StreamResampler(in_rate, 24000, quality)
    resampler.process(noise(5000, seed=1))
    resampler.clear()
    fresh = noise(4000, seed=2)
    again = np.concatenate((resampler.process(fresh), resampler.flush()))
    np.testing.assert_array_equal(again, stream_resample(fresh, in_rate, 24000, [4000], quality))


def test_unknown_quality_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown resampler quality"):
        StreamResampler(22050, 24000, "best")


@pytest.mark.parametrize("quality", QUALITIES)
@settings(max_examples=20, deadline=None)
@given(data=st.data(), sizes=block_sizes)
def test_no_click_at_block_boundaries(quality: str, data: st.DataObject, sizes: list[int]) -> None:
    """A 1 kHz sine resampled in blocks stays a clean sine: no jump beyond its slope, no sample lost or repeated."""
    in_rate, out_rate = data.draw(st.sampled_from(RATE_PAIRS), label="rates")
    freq, level = 1000.0, 0.5
    samples = (level * np.sin(2 * np.pi * freq * np.arange(in_rate) / in_rate)).astype(np.float32)  # 1 s
    out = stream_resample(samples, in_rate, out_rate, sizes, quality).astype(np.float64)
    inner = slice(out_rate // 50, len(out) - out_rate // 50)  # leave out the 20 ms edges (onset, abrupt end)
    max_step = 2 * level * math.sin(math.pi * freq / out_rate)  # largest step between samples of the sine
    assert np.max(np.abs(np.diff(out[inner]))) <= max_step * 1.01
    ideal = level * np.sin(2 * np.pi * freq * np.arange(len(out)) / out_rate)
    # A dropped/duplicated sample is off by ~0.2; the live FIR's passband ripple (+-0.007 dB)
    # alone is up to 4e-4 at this level.
    tolerance = 1e-3 if quality == LIVE_QUALITY else 1e-4
    assert np.max(np.abs(out[inner] - ideal[inner])) < tolerance


def test_equal_rates_pass_through() -> None:
    """With equal rates the stream is untouched and flush emits nothing."""
    samples = noise(1000)
    resampler = StreamResampler(24000, 24000)
    assert np.array_equal(resampler.process(samples), samples)
    assert len(resampler.flush()) == 0
    assert np.array_equal(resample(samples, 24000, 24000), samples)


# -- our polyphase FIRs (streams; live input) -----------------------------------------------------

# quality, input rate, output rate: every ratio shape (down, up, both; small and large factors)
FIR_CASES = [(LIVE_QUALITY, 48000, 24000), (LIVE_QUALITY, 48000, 16000), (LIVE_QUALITY, 96000, 24000),
             (LIVE_QUALITY, 44100, 24000), (LIVE_QUALITY, 44100, 16000), (LIVE_QUALITY, 16000, 24000),
             (STREAM_QUALITY, 16000, 24000), (STREAM_QUALITY, 8000, 24000), (STREAM_QUALITY, 48000, 24000),
             (STREAM_QUALITY, 24000, 16000), (STREAM_QUALITY, 22050, 24000), (STREAM_QUALITY, 22050, 16000),
             (STREAM_QUALITY, 44100, 16000)]
# Per quality: the largest passband error in dB, and the least stopband attenuation in dB.
FIR_BOUNDS = {LIVE_QUALITY: (0.1, 60.0), STREAM_QUALITY: (0.001, 88.0)}
FIR_SPEC_OF = {LIVE_QUALITY: LIVE_SPEC, STREAM_QUALITY: STREAM_SPEC}


def tone(freq: float, rate: int, seconds: float = 0.5, level: float = 0.5) -> np.ndarray:
    """A float32 sine of ``freq`` Hz at ``rate`` Hz, starting at phase 0."""
    return (level * np.sin(2 * np.pi * freq * np.arange(round(rate * seconds)) / rate)).astype(np.float32)


def inner(samples: np.ndarray, rate: int) -> np.ndarray:
    """``samples`` without their first and last 20 ms (onset and abrupt end)."""
    return samples[rate // 50 : len(samples) - rate // 50]


@pytest.mark.parametrize("in_rate", [8000, 11025, 12000, 16000, 22050, 24000, 32000, 37800, 44100, 48000, 64000,
                                     88200, 96000, 176400, 192000])
@pytest.mark.parametrize("out_rate", [16000, 24000])
def test_every_common_rate_gets_a_polyphase_bank(in_rate: int, out_rate: int) -> None:
    assert supported(in_rate, out_rate)


@pytest.mark.parametrize("quality", [STREAM_QUALITY, LIVE_QUALITY])
def test_an_odd_rate_falls_back_to_soxr_hq(quality: str) -> None:
    """44101 Hz -> 24 kHz would need a polyphase bank of gigabytes: that stream (and the one-shot
    call) is soxr HQ's instead, equal to its one-shot result."""
    assert not supported(44101, 24000)
    samples = noise(44101 // 2, seed=5)
    streamed, _ = to_pcm16(stream_resample(samples, 44101, 24000, [220], quality))
    reference, _ = to_pcm16(soxr.resample(samples, 44101, 24000, quality="HQ"))
    assert_within_one_lsb(streamed, reference)
    assert np.array_equal(resample(samples, 44101, 24000, quality), soxr.resample(samples, 44101, 24000, quality="HQ"))


@pytest.mark.parametrize(("in_rate", "out_rate"), [(0, 24000), (16000, -1)])
def test_fir_refuses_rates_that_are_not_positive(in_rate: int, out_rate: int) -> None:
    with pytest.raises(ValueError, match="rates must be positive"):
        ratio(in_rate, out_rate)


@pytest.mark.parametrize(("quality", "in_rate", "out_rate"), FIR_CASES)
@pytest.mark.parametrize("size", [239, 240, 241])
def test_fir_stream_equals_one_shot_in_float(quality: str, in_rate: int, out_rate: int, size: int) -> None:
    """In capture-sized blocks (5 ms at 48 kHz, and one sample either side) the stream is the
    one-shot result to float32 rounding, not just to the LSB of PCM16: ceil(n L / M) samples."""
    samples = noise(in_rate // 4 + 1, seed=size)
    streamed = stream_resample(samples, in_rate, out_rate, [size], quality)
    reference = resample(samples, in_rate, out_rate, quality)
    assert streamed.dtype == reference.dtype == np.float32
    assert len(streamed) == len(reference) == -(-len(samples) * out_rate // in_rate)
    np.testing.assert_allclose(streamed, reference, rtol=0, atol=1e-6)


@pytest.mark.parametrize(("quality", "in_rate", "out_rate"), FIR_CASES)
def test_fir_stream_of_blocks_larger_than_a_batch_equals_one_shot(quality: str, in_rate: int, out_rate: int) -> None:
    """A block holding many batches of windows (a whole array, a large upload chunk) gives the
    one-shot result too, batch edges included."""
    samples = noise(in_rate * 3, seed=7)
    streamed = stream_resample(samples, in_rate, out_rate, [len(samples) // 2 + 1], quality)
    np.testing.assert_allclose(streamed, resample(samples, in_rate, out_rate, quality), rtol=0, atol=1e-6)


@pytest.mark.parametrize(("in_rate", "out_rate"), [(48000, 24000), (48000, 16000), (32000, 16000)])
def test_a_large_block_is_resampled_in_little_memory(in_rate: int, out_rate: int) -> None:
    """The windows of a block, which overlap in memory, are copied out in batches for the matrix
    product: a 20 s block takes a few MB beyond itself, not gigabytes (1.3 GB at 48 -> 24 kHz
    when it was one product)."""
    import tracemalloc

    samples = noise(in_rate * 20, seed=3)
    resampler = StreamResampler(in_rate, out_rate, STREAM_QUALITY)
    tracemalloc.start()
    try:
        resampler.process(samples)
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * samples.nbytes + (8 << 20), f"{peak / 2**20:.0f} MB for a {samples.nbytes / 2**20:.1f} MB block"


@pytest.mark.parametrize(("quality", "in_rate", "out_rate"), FIR_CASES)
def test_fir_frequency_response(quality: str, in_rate: int, out_rate: int) -> None:
    """The taps' exact response (their DTFT, finely sampled): flat up to the spec's passband edge,
    attenuated from its stopband edge up (as fractions of the lower Nyquist frequency); the
    streams' filter has soxr's bandwidth, its -3 dB point at 95 % of that Nyquist frequency."""
    spec: FilterSpec = FIR_SPEC_OF[quality]
    up, down = ratio(in_rate, out_rate)
    taps = lowpass(up, down, spec).astype(np.float64)
    size = 1 << 20
    nyquists = np.fft.rfftfreq(size) * 2 * max(up, down)  # in units of the lower Nyquist frequency
    gain_db = 20 * np.log10(np.maximum(np.abs(np.fft.rfft(taps, size)) / up, 1e-12))
    ripple_db, stop_db = FIR_BOUNDS[quality]
    assert np.max(np.abs(gain_db[nyquists <= spec.passband])) <= ripple_db
    assert np.max(gain_db[nyquists >= spec.stopband]) <= -stop_db
    if quality == STREAM_QUALITY:
        assert 0.945 <= nyquists[np.argmax(gain_db < -3)] <= 0.955


@pytest.mark.parametrize(("quality", "in_rate", "out_rate", "freq"),
                         [(LIVE_QUALITY, 48000, 24000, 1000), (LIVE_QUALITY, 48000, 24000, 9900),
                          (LIVE_QUALITY, 48000, 16000, 6600), (LIVE_QUALITY, 96000, 24000, 9900),
                          (LIVE_QUALITY, 44100, 24000, 9900), (LIVE_QUALITY, 44100, 16000, 6600),
                          (LIVE_QUALITY, 16000, 24000, 6600),
                          (STREAM_QUALITY, 16000, 24000, 1000), (STREAM_QUALITY, 16000, 24000, 7000),
                          (STREAM_QUALITY, 8000, 24000, 3600), (STREAM_QUALITY, 48000, 24000, 11000),
                          (STREAM_QUALITY, 24000, 16000, 7000), (STREAM_QUALITY, 22050, 24000, 10000),
                          (STREAM_QUALITY, 22050, 16000, 7000)])
def test_fir_passes_a_tone_in_the_passband(quality: str, in_rate: int, out_rate: int, freq: float) -> None:
    """A tone in the passband, fed in 5 ms blocks, comes out as the same sine at the output rate
    (level, frequency and phase) sample for sample, within the passband error; upsampled, its
    images are in that error too."""
    out = stream_resample(tone(freq, in_rate), in_rate, out_rate, [in_rate // 200], quality)
    ideal = tone(freq, out_rate).astype(np.float64)
    assert len(out) == len(ideal)
    ripple_db, _ = FIR_BOUNDS[quality]
    assert np.max(np.abs(inner(out - ideal, out_rate))) <= 0.5 * (10 ** (ripple_db / 20) - 1)


@pytest.mark.parametrize(("quality", "in_rate", "out_rate", "freq"),
                         [(LIVE_QUALITY, 48000, 24000, 12100), (LIVE_QUALITY, 48000, 24000, 13000),
                          (LIVE_QUALITY, 48000, 24000, 23000), (LIVE_QUALITY, 48000, 16000, 8100),
                          (LIVE_QUALITY, 96000, 24000, 12100), (LIVE_QUALITY, 96000, 24000, 40000),
                          (LIVE_QUALITY, 44100, 24000, 12100), (LIVE_QUALITY, 44100, 24000, 20000),
                          (LIVE_QUALITY, 44100, 16000, 8100),
                          (STREAM_QUALITY, 48000, 24000, 11900), (STREAM_QUALITY, 48000, 24000, 20000),
                          (STREAM_QUALITY, 16000, 24000, 7950), (STREAM_QUALITY, 24000, 16000, 9000),
                          (STREAM_QUALITY, 22050, 16000, 7950), (STREAM_QUALITY, 22050, 16000, 10000)])
def test_fir_removes_a_tone_in_the_stopband(quality: str, in_rate: int, out_rate: int, freq: float) -> None:
    """A tone that would fold back into the output band, or whose images would reach it, comes
    out attenuated at least as far as the spec's stopband."""
    samples = tone(freq, in_rate)
    out = stream_resample(samples, in_rate, out_rate, [in_rate // 200], quality).astype(np.float64)
    rms_in = np.sqrt(np.mean(inner(samples, in_rate).astype(np.float64) ** 2))
    rms_out = np.sqrt(np.mean(inner(out, out_rate) ** 2))
    assert 20 * np.log10(rms_out / rms_in) <= -FIR_BOUNDS[quality][1]


@pytest.mark.parametrize(("quality", "in_rate", "out_rate", "block_ms", "bound_ms"),
                         [(LIVE_QUALITY, 48000, 24000, 5, 1.5), (LIVE_QUALITY, 48000, 16000, 5, 1.5),
                          (LIVE_QUALITY, 96000, 24000, 5, 1.5), (LIVE_QUALITY, 44100, 24000, 5, 1.5),
                          (LIVE_QUALITY, 44100, 16000, 5, 1.5), (STREAM_QUALITY, 16000, 24000, 10, 6.0),
                          (STREAM_QUALITY, 48000, 24000, 10, 4.0), (STREAM_QUALITY, 8000, 24000, 10, 12.0),
                          (STREAM_QUALITY, 22050, 24000, 10, 4.5), (STREAM_QUALITY, 22050, 16000, 10, 6.0)])
def test_fir_holds_back_little(quality: str, in_rate: int, out_rate: int, block_ms: int, bound_ms: float) -> None:
    """Fed blocks of ``block_ms``, its output (aligned with the input: see the passband tone) never
    trails the input received by more than ``bound_ms``: the live FIR 1.5 ms, the streams' FIR
    its half length, whatever the ratio (4.3 ms at 22050 Hz to 24 kHz, 6 ms at 16 kHz to 24 kHz
    or at 22050 Hz to 16 kHz, 12 ms at 8 kHz in)."""
    resampler = StreamResampler(in_rate, out_rate, quality)
    taken = emitted = 0
    held_ms = []
    for block in split(noise(in_rate // 2), [in_rate * block_ms // 1000]):
        emitted += len(resampler.process(block))
        taken += len(block)
        held_ms.append(1000 * (taken / in_rate - emitted / out_rate))
    assert 0 < max(held_ms) <= bound_ms + 1e-9

# -- Framer ---------------------------------------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(frame_samples=st.sampled_from([1, 7, 160, 240, 320, 480]), pushes=st.lists(st.integers(0, 2000), max_size=30))
def test_framer_loses_and_duplicates_nothing(frame_samples: int, pushes: list[int]) -> None:
    """Frames are exactly frame_samples long and, concatenated, are the input then zero padding."""
    rng = np.random.default_rng(len(pushes))
    pcm = rng.integers(-32768, 32768, size=sum(pushes), dtype=np.int16)
    framer = Framer(frame_samples)
    outputs, start = [], 0
    for size in pushes:
        frames = framer.push(pcm[start : start + size].copy())
        start += size
        assert frames.dtype == np.int16 and frames.ndim == 2 and frames.shape[1] == frame_samples
        outputs.append(frames)
    last, real = framer.flush()
    assert real == len(pcm) % frame_samples
    assert len(last) == (1 if real else 0)
    outputs.append(last)
    joined = np.concatenate(outputs).reshape(-1)
    assert len(joined) == math.ceil(len(pcm) / frame_samples) * frame_samples
    assert np.array_equal(joined[: len(pcm)], pcm)
    assert not joined[len(pcm) :].any()


def test_framer_flush_resets() -> None:
    """After flush the framer starts afresh: a second flush returns nothing."""
    framer = Framer(160)
    framer.push(np.ones(100, dtype=np.int16))
    assert framer.flush()[1] == 100
    frames, real = framer.flush()
    assert real == 0 and frames.shape == (0, 160)


# -- to_pcm16 -------------------------------------------------------------------------------------


def test_int16_values_round_trip_exactly() -> None:
    """Every int16 value v, as v/32768, converts back to v with nothing clipped."""
    values = np.arange(-32768, 32768, dtype=np.int32).astype(np.int16)
    pcm, clipped = to_pcm16(values.astype(np.float32) / 32768.0)
    assert pcm.dtype == np.int16
    assert np.array_equal(pcm, values)
    assert clipped == 0


@given(st.lists(st.floats(min_value=-1.0, max_value=32767 / 32768, width=32), min_size=1, max_size=200))
def test_rounds_to_nearest(values: list[float]) -> None:
    """In range, each sample becomes the nearest int16 of x * 32768 (never more than half an LSB away)."""
    samples = np.array(values, dtype=np.float32)
    pcm, clipped = to_pcm16(samples)
    assert clipped == 0
    assert np.all(np.abs(pcm.astype(np.float64) - samples.astype(np.float64) * 32768) <= 0.5)


@pytest.mark.parametrize(
    ("value", "expected"),
    [(0.3 / 32768, 0), (0.7 / 32768, 1), (-0.7 / 32768, -1), (100.4 / 32768, 100), (-100.6 / 32768, -101)],
)
def test_rounding_examples(value: float, expected: int) -> None:
    """Fractions of an LSB round to the nearest step, not towards zero."""
    pcm, _ = to_pcm16(np.array([value], dtype=np.float32))
    assert int(pcm[0]) == expected


@pytest.mark.parametrize("value", [1.0, 32767.5 / 32768, 32767.9 / 32768])
def test_full_scale_is_one_step_short_and_not_clipped(value: float) -> None:
    """+1.0, and what rounds up to it, become 32767 (the int16 maximum) without being counted as clipped."""
    pcm, clipped = to_pcm16(np.array([0.5, value, -0.25], dtype=np.float32))
    assert pcm.tolist() == [16384, 32767, -8192]
    assert clipped == 0


# Beyond half an LSB past -1.0 (closer values round to -32768 exactly, with no clipping).
BELOW_FULL_SCALE = float(np.float32(-32768.6 / 32768))


@given(
    inside=st.lists(st.floats(-1.0, 32767 / 32768, width=32), max_size=50),
    above=st.lists(st.floats(1.0, 1e6, width=32, exclude_min=True), max_size=50),
    below=st.lists(st.floats(-1e6, BELOW_FULL_SCALE, width=32), max_size=50),
)
def test_clipping_is_counted(inside: list[float], above: list[float], below: list[float]) -> None:
    """Samples beyond ±1.0 are clipped to full scale and each one counted; the others are untouched."""
    samples = np.array(inside + above + below, dtype=np.float32)
    pcm, clipped = to_pcm16(samples)
    assert clipped == len(above) + len(below)
    n_in, n_above = len(inside), len(above)
    assert np.all(pcm[n_in : n_in + n_above] == 32767)
    assert np.all(pcm[n_in + n_above :] == -32768)
    expected_inside, _ = to_pcm16(np.array(inside, dtype=np.float32))
    assert np.array_equal(pcm[:n_in], expected_inside)


# -- downmix --------------------------------------------------------------------------------------


@pytest.mark.parametrize("channels", [1, 2, 3, 6])
def test_downmix_is_the_mean(channels: int) -> None:
    """The mono result is the mean of the channels, float32, one value per frame."""
    block = noise(1000, seed=channels, channels=channels)
    mono = downmix(block)
    assert mono.dtype == np.float32 and mono.shape == (1000,)
    assert np.allclose(mono, block.astype(np.float64).mean(axis=1), rtol=0, atol=1e-6)


NON_FINITE = [[np.nan], [np.inf], [-np.inf], [np.inf, -np.inf]]


@pytest.mark.parametrize("bad", NON_FINITE)
def test_to_pcm16_refuses_non_finite(bad: list[float]) -> None:
    """NaN or infinity anywhere (both infinities too) raises ValueError, with no warning."""
    samples = noise(100)
    samples[37 : 37 + len(bad)] = bad
    with pytest.raises(ValueError, match="NaN or infinite"), warnings.catch_warnings():
        warnings.simplefilter("error")
        to_pcm16(samples)


def test_huge_finite_samples_clip_counted() -> None:
    """Finite samples far beyond full scale are not mistaken for infinity: they clip, counted."""
    block = np.array([[3e30, 1e30], [0.1, 0.3]], dtype=np.float32)
    assert np.allclose(downmix(block), [2e30, 0.2])
    assert to_pcm16(downmix(block))[1] == 1
    conditioner = Conditioner("loud.wav", 48000, 2, OutputFormat(), quality=LIVE_QUALITY)
    frames = np.concatenate((conditioner.push(np.repeat(block, 240, axis=0)), conditioner.finish()))
    assert conditioner.clipped > 0 and np.abs(frames.astype(np.int32)).max() == 32768


# -- Conditioner ----------------------------------------------------------------------------------


def conditioner_reference(block: np.ndarray, in_rate: int, output: OutputFormat) -> tuple[np.ndarray, int, int]:
    """One-shot: downmix, resample, PCM16, pad to whole frames; returns (frames, real samples, clipped)."""
    pcm, clipped = to_pcm16(resample(block.astype(np.float64).mean(axis=1).astype(np.float32), in_rate, output.rate))
    frames = math.ceil(len(pcm) / output.frame_samples)
    padded = np.zeros(frames * output.frame_samples, dtype=np.int16)
    padded[: len(pcm)] = pcm
    return padded.reshape(frames, output.frame_samples), len(pcm), clipped


def run_conditioner(block: np.ndarray, conditioner: Conditioner, sizes: list[int]) -> np.ndarray:
    """Push ``block`` in pieces of ``sizes`` then finish; return every frame emitted, checking each shape."""
    outputs = [conditioner.push(piece) for piece in split(block, sizes)]
    outputs.append(conditioner.finish())
    return np.concatenate(outputs)


@pytest.mark.parametrize(
    "sizes",
    [[1_000_000], [1], [441], [4096, 7, 1], [160, 16000, 3]],
    ids=["whole", "ones", "441", "mixed", "frame-ish"],
)
@pytest.mark.parametrize("in_rate", [24000, 44100, 48000])
@pytest.mark.parametrize("output", [OutputFormat(16000, 10), OutputFormat(24000, 20)], ids=["16k10", "24k20"])
def test_conditioner_equals_reference(output: OutputFormat, in_rate: int, sizes: list[int]) -> None:
    """Stereo blocks in any split give the one-shot reference's frames; samples/clipped are counted right."""
    seconds = 0.3 if sizes == [1] else 1.013  # not a whole number of frames
    block = noise(round(in_rate * seconds), seed=in_rate, channels=2, level=0.5)
    block[100:400] *= 6  # loud enough to clip
    conditioner = Conditioner("in.wav", in_rate, 2, output)
    frames = run_conditioner(block, conditioner, sizes)
    reference, real, clipped = conditioner_reference(block, in_rate, output)
    assert frames.dtype == np.int16 and frames.shape == reference.shape
    assert np.max(np.abs(frames.astype(np.int32) - reference)) <= 1
    assert not frames.reshape(-1)[real:].any()
    assert conditioner.samples == real
    assert clipped > 0 and conditioner.clipped == clipped


def test_conditioner_same_rate_is_exact() -> None:
    """At the output rate, PCM16-derived mono input comes out bit for bit, then zero padding."""
    output = OutputFormat(24000, 10)
    pcm = np.random.default_rng(5).integers(-32768, 32768, size=1234, dtype=np.int16)
    conditioner = Conditioner("in.wav", 24000, 1, output)
    frames = run_conditioner((pcm.astype(np.float32) / 32768).reshape(-1, 1), conditioner, [100, 33])
    flat = frames.reshape(-1)
    assert len(flat) == 1440
    assert np.array_equal(flat[:1234], pcm) and not flat[1234:].any()
    assert conditioner.samples == 1234 and conditioner.clipped == 0


@pytest.mark.parametrize("quality", QUALITIES)
@pytest.mark.parametrize(("in_rate", "channels"), [(48000, 2), (44100, 1), (22050, 3), (24000, 2), (24000, 1)])
@pytest.mark.parametrize("bad", NON_FINITE)
def test_conditioner_rejects_non_finite_naming_the_source(quality: str, in_rate: int, channels: int,
                                                          bad: list[float]) -> None:
    """NaN or infinity in any channel of a pushed block raises InputError naming the source, by
    ``finish()`` at the latest (a resampler holds input back), after the frames before it, with
    no warning: every resampler, equal rates included (the mean passes straight through)."""
    block = noise(in_rate * 3 // 10, channels=channels)
    at = in_rate // 5 + 7  # 200 ms in
    block[at : at + len(bad), channels - 1] = bad
    conditioner = Conditioner("music/broken.wav", in_rate, channels, OutputFormat(), quality=quality)
    frames = []
    with pytest.raises(InputError) as caught, warnings.catch_warnings():
        warnings.simplefilter("error")
        for piece in split(block, [in_rate // 100]):
            frames.append(conditioner.push(piece))
        conditioner.finish()
    assert caught.value.source == "music/broken.wav"
    assert str(caught.value) == "music/broken.wav: contains NaN or infinite samples"
    assert len(np.concatenate(frames)) >= 12  # the frames well before the bad sample came out


def test_conditioner_refuses_a_block_of_another_channel_count() -> None:
    """A stereo stream's conditioner refuses a mono block rather than read it as interleaved."""
    conditioner = Conditioner("in.wav", 48000, 2, OutputFormat(), quality=LIVE_QUALITY)
    with pytest.raises(ValueError, match=r"a block of shape \(480, 1\) in a stream of 2 channels"):
        conditioner.push(noise(480, channels=1))
    with pytest.raises(ValueError, match=r"a block of shape \(960,\) in a stream of 2 channels"):
        conditioner.push(noise(960))


# -- PauseDetector --------------------------------------------------------------------------------

FRAME_MS = 10
FRAME = 240  # samples per 10 ms frame at 24 kHz


def bursts(pattern: list[tuple[str, int]], seed: int = 0) -> np.ndarray:
    """24 kHz int16 frames built from ``(kind, ms)`` pieces: "tone" (-9 dBFS 300 Hz), "soft" (the
    tone 25 dB lower, like an unvoiced consonant) or "silence"."""
    pieces = []
    for kind, ms in pattern:
        t = np.arange(24 * ms) / 24000
        level = {"tone": 0.5, "soft": 0.5 * 10 ** (-25 / 20), "silence": 0.0}[kind]
        pieces.append(level * np.sin(2 * np.pi * 300 * t))
    return to_pcm16(np.concatenate(pieces).astype(np.float32))[0].reshape(-1, FRAME)


def marked_ranges(marks: np.ndarray) -> list[tuple[int, int]]:
    """(first, end) frame indices of each run of marked frames."""
    edges = np.diff(np.concatenate(([0], marks.astype(np.int8), [0])))
    return list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist(), strict=True))


def test_a_pause_is_marked_from_its_100th_ms_to_its_end() -> None:
    """Silences of 150 and 400 ms are marked from the frame that completes 100 ms of quiet to
    their last frame; a 60 ms gap (a stop closure inside a word) and a long soft passage 25 dB
    down (an unvoiced consonant) are not."""
    frames = bursts([("tone", 300), ("silence", 60), ("tone", 300), ("silence", 150), ("tone", 300),
                     ("soft", 150), ("tone", 200), ("silence", 400), ("tone", 100)])
    marks = PauseDetector(FRAME_MS).mark(frames)
    first_pause = (300 + 60 + 300) // FRAME_MS
    second_pause = (300 + 60 + 300 + 150 + 300 + 150 + 200) // FRAME_MS
    assert marked_ranges(marks) == [(first_pause + 9, first_pause + 15), (second_pause + 9, second_pause + 40)]
    assert MIN_PAUSE_MS == 100


def test_leading_silence_is_a_pause_and_a_steady_tone_has_none() -> None:
    detector = PauseDetector(FRAME_MS)
    assert marked_ranges(detector.mark(bursts([("silence", 200), ("tone", 2000)]))) == [(9, 20)]
    detector.clear()
    assert not detector.mark(bursts([("tone", 3000)])).any()


def test_pauses_in_background_noise_are_found() -> None:
    """With noise at -50 dBFS under everything, the noise-only stretches still count as pauses."""
    clean = bursts([("tone", 500), ("silence", 300), ("tone", 500), ("silence", 300), ("tone", 200)])
    hiss = np.random.default_rng(3).standard_normal(clean.shape) * 32768 * 10 ** (-50 / 20)
    frames = np.clip(np.rint(clean + hiss), -32768, 32767).astype(np.int16)
    assert [start for start, _end in marked_ranges(PauseDetector(FRAME_MS).mark(frames))] == [59, 139]


@settings(max_examples=40, deadline=None)
@given(cuts=st.lists(st.integers(min_value=0, max_value=300), max_size=8))
def test_marks_do_not_depend_on_how_frames_are_grouped(cuts: list[int]) -> None:
    """Causal and stateful: marking in any grouping gives the one-shot marks."""
    frames = bursts([("silence", 120), ("tone", 400), ("silence", 250), ("soft", 300), ("silence", 900),
                     ("tone", 1000)])
    one_shot = PauseDetector(FRAME_MS).mark(frames)
    detector = PauseDetector(FRAME_MS)
    edges = [0, *sorted(cuts), len(frames)]
    grouped = np.concatenate([detector.mark(frames[a:b]) for a, b in itertools.pairwise(edges)])
    np.testing.assert_array_equal(grouped, one_shot)
    assert one_shot.any() and not one_shot.all()


@pytest.mark.parametrize("frame_ms", [10, 20])
def test_pause_length_does_not_depend_on_frame_length(frame_ms: int) -> None:
    """The first marked frame is where 100 ms of quiet completes, at either frame length."""
    silence_then_tone = np.concatenate([np.zeros(24 * 300, np.int16), bursts([("tone", 300)]).reshape(-1)])
    frames = silence_then_tone.reshape(-1, 24 * frame_ms)
    marks = PauseDetector(frame_ms).mark(frames)
    assert int(np.flatnonzero(marks)[0]) * frame_ms == 100 - frame_ms


@pytest.mark.parametrize(("dips_db", "expected"), [
    ((-20.0, -24.0), 3), ((-10.0, -30.0), 7), ((-3.0, -6.0), None), ((-30.0, -30.0), 3)],
    ids=["nearly-as-deep-sooner", "only-the-deep-one", "no-dip-deep-enough", "the-first-of-equals"])
def test_first_dip_is_the_first_frame_nearly_as_quiet_as_the_quietest(dips_db: tuple[float, float],
                                                                       expected: int | None) -> None:
    """Ten frames of a steady tone with two quieter ones, at frames 3 and 7."""
    gains = np.ones(10)
    gains[[3, 7]] = [10 ** (db / 20) for db in dips_db]
    frames = np.rint(np.sin(np.arange(240) * 0.3)[None, :] * 16000 * gains[:, None]).astype(np.int16)
    assert first_dip(frames) == expected
