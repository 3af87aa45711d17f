"""The command line's own surface: version, help with examples, and option checks made before any audio."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

import echo_streamer
from echo_streamer.cli import main as cli_main
from echo_streamer.output.tavus import conversation_id_from_url, interrupt_message
from echo_streamer.sources.files import open_audio

Cli = Callable[..., subprocess.CompletedProcess[str]]
SAMPLES = sorted((Path(__file__).resolve().parent.parent / "samples").glob("*.wav"))


def test_version(cli: Cli) -> None:
    """``--version`` prints the package version and exits 0."""
    result = cli("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"echo-streamer, version {echo_streamer.__version__}"


@pytest.mark.parametrize("command", [(), *((name,) for name in sorted(cli_main.commands))],
                         ids=lambda command: command[0] if command else "main")
def test_help_has_examples(command: tuple[str, ...], cli: Cli) -> None:
    """Every command's ``--help`` exits 0 and shows examples, which use commands that exist (a
    command's own among them), and says what its exit status means."""
    result = cli(*command, "--help")
    assert result.returncode == 0
    assert not command or re.search(r"(?i)\bexit(s [0-9]| status)", result.stdout), result.stdout
    examples = result.stdout.split("Examples:", 1)
    assert len(examples) == 2, result.stdout
    used = set(re.findall(r"echo-streamer ([a-z][a-z-]*)", examples[1]))
    assert used and used <= set(cli_main.commands), used
    assert not command or command[0] in used, used


HEAVY_MODULES = ("numpy", "soundfile", "soxr", "sounddevice", "daily", "aiohttp", "asyncio",
                 "urllib.request")


def test_help_loads_none_of_the_heavy_modules() -> None:
    """``--help`` (of the group and of every command) loads only click and light standard modules:
    the audio libraries, the SDK, the HTTP stack and asyncio load inside the commands."""
    script = ("import sys\nfrom echo_streamer.cli import main\n"
              "for args in [['--help']] + [[name, '--help'] for name in main.commands]:\n"
              "    try:\n        main(args)\n    except SystemExit:\n        pass\n"
              f"print(sorted(m for m in {HEAVY_MODULES!r} if m in sys.modules), file=sys.stderr)")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stderr.strip() == "[]", result.stderr


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (("--transport", "virtual-mic"), "--transport virtual-mic needs --room"),
        (("--room", "not-a-url"), "is not an http(s) URL"),
        (("--rate", "44100"), "'44100' is not one of '16000', '24000'"),
        (("--frame-ms", "15"), "'15' is not one of '10', '20'"),
        (("--tavus-interrupt",), "--tavus-interrupt and --transport app-message need --room or --conversation-id"),
        (("--tavus-interrupt", "--room", "https://tavus.daily.co/"), "has no path segment"),
        (("--conversation-id", "c1"), "--conversation-id is used only by --tavus-interrupt and --transport"),
        (("--events", "/no-such-dir/events.jsonl"), "/no-such-dir/events.jsonl: no such directory /no-such-dir"),
        (("--message-log", "/no-such-dir/m.jsonl"), "/no-such-dir/m.jsonl: no such directory /no-such-dir"),
        (("--sdk-log", "/"), "'/' is a directory"),
        (("--events", str(SAMPLES[0])), f"{SAMPLES[0]} is the input {SAMPLES[0]}: writing it would destroy it"),
    ],
    ids=["virtual-mic-offline", "bad-room-url", "bad-rate", "bad-frame", "tavus-without-id", "tavus-url-without-id",
         "conversation-id-unused", "events-in-missing-dir", "message-log-in-missing-dir", "sdk-log-a-directory",
         "events-over-the-input"],
)
def test_play_rejects_bad_options_before_streaming(args: tuple[str, ...], complaint: str, cli: Cli,
                                                   tmp_path: Path) -> None:
    """Options that cannot work are usage errors (status 2) naming the problem, and nothing is captured."""
    capture = tmp_path / "capture.wav"
    result = cli("play", SAMPLES[0], "--capture", capture, *args)
    assert result.returncode == 2
    assert complaint in result.stderr
    assert "Traceback" not in result.stderr
    assert not capture.exists()


def test_samples_are_short_speech() -> None:
    """The clips the README's first command plays: a few small, decodable mono speech files."""
    assert len(SAMPLES) >= 3
    for path in SAMPLES:
        source = open_audio(str(path))
        try:
            seconds = sum(len(block) for block in source.blocks()) / source.rate
        finally:
            source.close()
        assert source.channels == 1 and 1.0 <= seconds <= 6.0, (path, seconds)
        assert path.stat().st_size < 300_000


def test_play_progress_line(cli: Cli) -> None:
    """``--progress`` draws a status line per file: a bar, elapsed / total, and the file name."""
    short = min(SAMPLES, key=lambda path: path.stat().st_size)
    result = cli("play", short, "--gap-ms", "0", "--progress")
    assert result.returncode == 0, result.stderr
    updates = [line for line in result.stderr.split("\r") if short.name in line]
    assert len(updates) >= 5  # refreshed ten times a second while the file plays
    assert all(line.startswith("[") and " / 00:0" in line for line in updates)
    # The last drawing of the line is the whole file: the bar full, elapsed = total (to 0.1 s).
    elapsed, total = (float(clock.split(":")[1]) for clock in updates[-1].split("] ")[1].split("  ")[0].split(" / "))
    assert updates[-1].startswith("[" + "#" * 24 + "]") and abs(elapsed - total) <= 0.11, updates[-1]


@pytest.mark.parametrize(
    ("url", "conversation_id"),
    [("https://tavus.daily.co/c123456", "c123456"), ("https://tavus.daily.co/c123456/", "c123456"),
     ("https://tavus.daily.co/c9?t=abc#x", "c9"), ("https://example.daily.co/rooms/team-1", "team-1")],
)
def test_conversation_id_is_the_last_path_segment(url: str, conversation_id: str) -> None:
    assert conversation_id_from_url(url) == conversation_id
    assert interrupt_message(conversation_id) == {"message_type": "conversation",
                                                  "event_type": "conversation.interrupt",
                                                  "conversation_id": conversation_id}


@pytest.mark.parametrize("where", ["output-in-missing-dir", "points-in-missing-dir", "output-over-the-input",
                                   "capture-in-missing-dir"])
def test_output_paths_that_cannot_work_are_usage_errors(where: str, cli: Cli, tmp_path: Path) -> None:
    """An output that cannot be written, or that is the input, is refused in one line (status 2)
    before anything is decoded or streamed, and the input is left as it was."""
    source = tmp_path / "in.wav"
    source.write_bytes(SAMPLES[0].read_bytes())
    missing = tmp_path / "missing" / "out"
    command, complaint = {
        "output-in-missing-dir": (("render", source, "-o", missing), f"no such directory {missing.parent}"),
        "points-in-missing-dir": (("render", source, "-o", tmp_path / "o.wav", "--points", missing),
                                  f"no such directory {missing.parent}"),
        "output-over-the-input": (("render", source, "-o", source), "writing it would destroy it"),
        "capture-in-missing-dir": (("play", source, "--capture", missing), f"no such directory {missing.parent}"),
    }[where]
    result = cli(*command)
    assert result.returncode == 2, result.stderr
    assert complaint in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert source.read_bytes() == SAMPLES[0].read_bytes()
    assert not (tmp_path / "o.wav").exists()


def test_constants_the_cli_repeats_to_start_fast_equal_the_engine_s() -> None:
    """The CLI keeps a few of the engine's constants as literals (importing them would put
    asyncio and numpy into every --help): they must not drift apart."""
    from echo_streamer.cli.client import CLOSED_EVENT
    from echo_streamer.engine.events import CLOSED

    assert CLOSED_EVENT == CLOSED


def test_a_message_clears_the_progress_line_first(capsys: pytest.CaptureFixture[str]) -> None:
    """A message while the progress line is drawn (it ends in no newline) starts a line of its own:
    the progress line is cleared first (it was glued on: "...  long.wavecho-streamer: ...")."""
    from echo_streamer.cli.session import _Progress, say
    from echo_streamer.engine.segment import Segment

    loop = asyncio.new_event_loop()
    try:
        segment = Segment("seg-1", "/music/long.wav", None, 24_000, 2, loop)
    finally:
        loop.close()
    segment.duration = 3.0
    _Progress._draw(segment)
    say("echo-streamer: other.wav: no such file")
    say("echo-streamer: one more")
    # (click leaves out the line's erase-to-end code where stderr is no terminal)
    drawn, cleared = capsys.readouterr().err.replace("\x1b[K", "").rsplit("\r", 1)
    assert drawn.endswith("00:00.0 / 00:03.0  long.wav") and "\n" not in drawn
    assert cleared == "echo-streamer: other.wav: no such file\necho-streamer: one more\n"


def test_the_drift_line_says_when_nothing_was_measured(capsys: pytest.CaptureFixture[str]) -> None:
    """A live run that ends before any audio came through (Ctrl-C at once) measured no drift: its
    closing line says so, not "+0 ppm (to within 0 ppm)"."""
    from software_card import SoftwareCard

    from echo_streamer import Streamer, StreamerConfig
    from echo_streamer.cli.live import _report_drift
    from echo_streamer.engine.live import LiveSession

    card = SoftwareCard("card")
    try:
        report = LiveSession(Streamer(StreamerConfig()), card).drift_report()  # type: ignore[arg-type]
    finally:
        card.close()
    _report_drift("card", report)
    assert capsys.readouterr().err == ("echo-streamer: card: clock drift not measured (no audio came through; 0 "
                                       "samples dropped, 0 repeated, +0 of them placing the frames), 0 blocks dropped "
                                       "(overflow), 0 overruns in the device, 0 underruns\n")


def test_a_signal_both_noted_and_delivered_at_start_interrupts_once() -> None:
    """A SIGUSR1 that comes while the event loop's handlers are being put in place is noted by the
    start-up handler and delivered by the loop as well (its wakeup byte was written): it is carried
    out once. (play interrupted twice, the second cutting what the first had kept with --keep-queue.)
    Two noted, one of them delivered too: two."""
    from echo_streamer import Streamer, StreamerConfig
    from echo_streamer.cli.session import _InterruptSignals

    async def session() -> int:
        async with Streamer(StreamerConfig()) as streamer:
            signals = _InterruptSignals(keep_queue=True, max_wait_ms=400, wait_for_work=True)
            signals.noted(["now", "now"])
            signals.request(streamer, "now")  # held: not ready yet
            signals.ready(streamer)
            return int(streamer.stats()["interrupts"])

    assert asyncio.run(session()) == 2
