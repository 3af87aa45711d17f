"""The daemon: one :class:`~echo_streamer.Streamer` kept in the room, driven over HTTP.

:mod:`.service` holds the state (the call, its retries, segments, live input), :mod:`.app` the
HTTP API on top of it; :mod:`.paths`, :mod:`.uploads`, :mod:`.metrics` and :mod:`.openapi` are
the pieces the API needs.
"""
