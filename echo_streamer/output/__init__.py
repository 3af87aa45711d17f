"""Where frames go: the Daily SDK (the real-time sink) and a WAV capture of what it was given."""
