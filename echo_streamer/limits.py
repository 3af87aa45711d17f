"""The ranges of the numeric settings, shared by the Python API's checks and the CLI's and the
daemon's options. Free of imports, so that ``--help`` stays fast."""

GAP_MS = (0, 60_000)
BUFFER_MS = (1, None)
LEAD_MS = (1, 200)
STREAM_START_MS = (0, 1000)
BITRATE = (6_000, 510_000)  # bit/s: what Opus encodes
JOIN_TIMEOUT_S = (0.1, 600.0)
MAX_WAIT_MS = (0, 60_000)  # how long a soft interrupt may wait for a pause
