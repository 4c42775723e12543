"""16-bit PCM WAV files and LINEAR16 audio formats."""

from __future__ import annotations

import io
import os
import wave
from dataclasses import dataclass

from avatar.gateway.v1 import media_pb2


def linear16(sample_rate_hertz: int, channels: int = 1) -> media_pb2.AudioFormat:
    """The ``AudioFormat`` of signed 16-bit little-endian PCM."""
    return media_pb2.AudioFormat(
        audio_encoding=media_pb2.AUDIO_ENCODING_LINEAR16,
        sample_rate_hertz=sample_rate_hertz,
        audio_channel_count=channels,
    )


@dataclass(frozen=True)
class Audio:
    """16-bit little-endian PCM (LINEAR16), channels interleaved."""

    pcm: bytes
    sample_rate_hertz: int
    channels: int = 1

    @property
    def format(self) -> media_pb2.AudioFormat:
        """The ``AudioFormat`` to put in the ``DriveConfig`` for this audio."""
        return linear16(self.sample_rate_hertz, self.channels)

    @property
    def bytes_per_second(self) -> int:
        """Bytes of one second of this audio."""
        return self.sample_rate_hertz * self.channels * 2

    @property
    def duration_s(self) -> float:
        """Duration in seconds."""
        return len(self.pcm) / self.bytes_per_second


def parse_wav(data: bytes) -> Audio:
    """Parses a WAV file of 16-bit integer PCM; raises ``ValueError`` for anything else."""
    try:
        with wave.open(io.BytesIO(data), "rb") as w:
            if w.getsampwidth() != 2 or w.getcomptype() != "NONE":
                raise ValueError(
                    f"not a 16-bit PCM WAV: {w.getsampwidth() * 8}-bit {w.getcomptype()}"
                )
            return Audio(w.readframes(w.getnframes()), w.getframerate(), w.getnchannels())
    except (wave.Error, EOFError) as exc:
        raise ValueError(f"not a 16-bit PCM WAV: {exc}") from exc


def read_wav(path: str | os.PathLike[str]) -> Audio:
    """Reads a 16-bit PCM WAV file."""
    with open(path, "rb") as f:
        return parse_wav(f.read())
