"""The daemon's counters in Prometheus' text exposition format (version 0.0.4)."""

from __future__ import annotations

from .service import Daemon

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# counter name -> help text (exported as echo_streamer_<name>_total)
_COUNTERS = {
    "frames_sent": "Frames handed to the Daily SDK.",
    "frames_played": "Frames the SDK has consumed (completions).",
    "frames_rested": "Frames of silence the SDK sent by itself while the stream rested (counted as each rest ends).",
    "underruns": "Times a segment ran out of audio while playing.",
    "underrun_frames": "Silent frames sent because a segment had no audio ready.",
    "interrupts": "Interrupts requested (no-ops included; one joining another counts once).",
    "late_completions": "SDK completions more than one frame late.",
    "app_messages_sent": "App messages the SDK sent (echo audio, interrupts, /send_text_message).",
    "app_messages_failed": "App messages handed to the SDK that it did not send (echo audio or interrupts "
                           "while not in a room, refusals); a /send_text_message answered 400 before is not one.",
    "segments_finished": "Segments that played to their end.",
    "segments_interrupted": "Segments cut by an interrupt.",
    "segments_failed": "Segments that failed (bad input).",
    "segments_dropped": "Segments dropped before they played.",
}
_GAUGES = {
    "lead_frames": "Frames handed to the SDK ahead of playout.",
    "lag_ms": "How far the SDK's consumption lags the wall clock, in ms.",
    "resting": "1 while idle with nothing handed to the SDK, which sends its own silence.",
    "event_subscribers": "Readers of the event feed: clients of /v1/events, and the --events log if any.",
}


def render(daemon: Daemon) -> str:
    status = daemon.status()
    counters = status["counters"]
    lines: list[str] = []

    def metric(name: str, kind: str, help_text: str, value: float, labels: str = "") -> None:
        # Whole numbers in full: "%g" turns a frame count past a million into 1.23457e+06; a flag as 0 or 1.
        text = str(int(value)) if isinstance(value, int) else repr(float(value))
        lines.extend([f"# HELP {name} {help_text}", f"# TYPE {name} {kind}", f"{name}{labels} {text}"])

    for key, help_text in _COUNTERS.items():
        metric(f"echo_streamer_{key}_total", "counter", help_text, counters[key])
    for key, help_text in _GAUGES.items():
        metric(f"echo_streamer_{key}", "gauge", help_text, counters[key])
    metric("echo_streamer_queue_length", "gauge", "Segments waiting to play.", len(status["queue"]))
    metric("echo_streamer_playing", "gauge", "1 while a segment is playing.", int(status["current"] is not None))
    metric("echo_streamer_live", "gauge", "1 while a live input is open.", int(status["live"] is not None))
    metric("echo_streamer_join_attempts_total", "counter", "Attempts to join the room.", daemon.join_attempts)
    metric("echo_streamer_participants", "gauge", "Remote participants in the room.", len(daemon.participants))
    lines.append("# HELP echo_streamer_call_state 1 for the call's current state.")
    lines.append("# TYPE echo_streamer_call_state gauge")
    lines.append(f'echo_streamer_call_state{{state="{daemon.call_state}"}} 1')
    return "\n".join(lines) + "\n"
