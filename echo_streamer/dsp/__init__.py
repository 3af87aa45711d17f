"""Numeric stages between a decoder and the output: downmix, resample, PCM16, exact frames."""
