"""Decoders: turn files and byte streams into float32 blocks (see ``base.AudioSource``).

``files.open_audio`` opens files, ``bytestream.open_byte_stream`` streams that arrive over time.
Nothing is imported here, so that the command line can name formats without loading numpy.
"""
