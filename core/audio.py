"""Audio path of a Drive stream: validate, convert (channels, rate), re-chunk, pace.

Input is LINEAR16 (s16le) PCM, 1 or 2 interleaved channels, 8000–48000 Hz, in chunks of any
size. The vendor receives mono s16le at one of its native rates, in frames of its declared
duration, released on a monotonic clock by its declared :class:`core.contract.PacingRule`.
Resampling is done once, statefully, with soxr (architecture.md §3): a stream resampler
keeps its filter state across chunks, so chunk boundaries leave no clicks; its tail is
flushed at end of turn and dropped on interrupt.
"""

from __future__ import annotations

import time

import numpy as np
import soxr
from avatar.gateway.v1 import media_pb2

from core.contract import PacingRule
from core.errors import (
    GatewayError,
    Reason,
    invalid_argument,
)

MIN_SAMPLE_RATE_HERTZ = 8000
MAX_SAMPLE_RATE_HERTZ = 48000
MAX_AUDIO_CHUNK_BYTES = 65536
"""Largest ``DriveRequest.audio`` accepted (bytes); documented in the proto."""


def validate_audio_format(fmt: media_pb2.AudioFormat) -> None:
    """Check a Drive input format.

    Raises:
        GatewayError: INVALID_ARGUMENT ``UNSUPPORTED_AUDIO_FORMAT`` unless the encoding is
            LINEAR16, the rate within 8000–48000 Hz and the channel count 1 or 2.
    """
    ok = (
        fmt.audio_encoding == media_pb2.AUDIO_ENCODING_LINEAR16
        and MIN_SAMPLE_RATE_HERTZ <= fmt.sample_rate_hertz <= MAX_SAMPLE_RATE_HERTZ
        and fmt.audio_channel_count in (1, 2)
    )
    if not ok:
        encoding = encoding_name(fmt.audio_encoding)
        raise unsupported_audio_format(
            f"unsupported audio format {encoding}, {fmt.sample_rate_hertz} Hz, "
            f"{fmt.audio_channel_count} channel(s); LINEAR16, 8000-48000 Hz, 1 or 2 channels "
            "are accepted",
            fmt,
        )


def encoding_name(value: int) -> str:
    """The enum name of an AudioEncoding, or the number for values the enum does not name.

    Proto3 enums are open: a client may send any number, and ``Name`` would raise.
    """
    try:
        return media_pb2.AudioEncoding.Name(value)  # type: ignore[arg-type]
    except ValueError:
        return str(value)


def unsupported_audio_format(message: str, fmt: media_pb2.AudioFormat) -> GatewayError:
    """INVALID_ARGUMENT ``UNSUPPORTED_AUDIO_FORMAT`` with the format in metadata."""
    return invalid_argument(
        Reason.UNSUPPORTED_AUDIO_FORMAT,
        message,
        audioEncoding=encoding_name(fmt.audio_encoding),
        sampleRateHertz=str(fmt.sample_rate_hertz),
        audioChannelCount=str(fmt.audio_channel_count),
    )


class AudioConverter:
    """Converts s16le PCM chunks of any size to mono s16le at the vendor rate.

    Bytes that do not complete a sample frame (an odd byte, or half a stereo frame) are
    carried into the next chunk, never dropped (Drive contract). Stereo is averaged to
    mono before resampling, which halves the resampler's work.

    Args:
        input_rate_hertz: input sample rate (Hz).
        channels: input channels, 1 or 2 (interleaved).
        output_rate_hertz: vendor sample rate (Hz).
    """

    def __init__(self, input_rate_hertz: int, channels: int, output_rate_hertz: int) -> None:
        self.input_rate_hertz = input_rate_hertz
        self.channels = channels
        self.output_rate_hertz = output_rate_hertz
        self._sample_frame_bytes = 2 * channels
        self._carry = b""
        self._resampler: soxr.ResampleStream | None = None
        self.reset()

    @property
    def passthrough(self) -> bool:
        """Whether input bytes go out unchanged (mono at the vendor rate)."""
        return self.channels == 1 and self.input_rate_hertz == self.output_rate_hertz

    def reset(self) -> None:
        """Drop carried bytes and resampler state (interrupt)."""
        self._carry = b""
        self._resampler = (
            None
            if self.input_rate_hertz == self.output_rate_hertz
            else soxr.ResampleStream(
                self.input_rate_hertz, self.output_rate_hertz, 1, dtype="int16", quality="HQ"
            )
        )

    def convert(self, data: bytes) -> bytes:
        """Convert one input chunk; returns mono s16le at the vendor rate (maybe empty)."""
        if self._carry:
            data = self._carry + data
            self._carry = b""
        remainder = len(data) % self._sample_frame_bytes
        if remainder:
            self._carry = data[-remainder:]
            data = data[:-remainder]
        if not data or self.passthrough:
            return data
        samples = np.frombuffer(data, dtype="<i2")
        if self.channels == 2:
            samples = ((samples[0::2].astype(np.int32) + samples[1::2]) >> 1).astype(np.int16)
        if self._resampler is None:
            return samples.tobytes()
        out: np.ndarray = self._resampler.resample_chunk(samples)
        return out.tobytes()

    def flush(self) -> bytes:
        """End of turn: return the resampler's held-back tail and start fresh.

        A carried partial sample frame is dropped here: half a sample cannot be played.
        """
        tail = b""
        if self._resampler is not None:
            out: np.ndarray = self._resampler.resample_chunk(np.zeros(0, dtype=np.int16), last=True)
            tail = out.tobytes()
        self.reset()
        return tail


class FrameChunker:
    """Re-chunks a byte stream into frames of ``frame_bytes`` (the vendor's frame).

    Args:
        frame_bytes: frame size in bytes (even: s16 samples).
    """

    def __init__(self, frame_bytes: int) -> None:
        self.frame_bytes = frame_bytes
        self._buffer = bytearray()

    def push(self, data: bytes) -> list[bytes]:
        """Add bytes; return the complete frames now available (possibly none)."""
        size = self.frame_bytes
        if not self._buffer:
            if len(data) == size:
                return [data]  # the common case of matching chunk sizes: no copy
            if len(data) % size == 0:
                # Whole frames (e.g. 100 ms client chunks): cut them without the buffer.
                return [data[i : i + size] for i in range(0, len(data), size)]
        self._buffer += data
        n = len(self._buffer) // self.frame_bytes
        if n == 0:
            return []
        cut = n * self.frame_bytes
        frames = [
            bytes(self._buffer[i : i + self.frame_bytes]) for i in range(0, cut, self.frame_bytes)
        ]
        del self._buffer[:cut]
        return frames

    def flush(self) -> bytes:
        """Return the partial last frame (maybe empty) and empty the buffer."""
        rest = bytes(self._buffer)
        self._buffer.clear()
        return rest

    def clear(self) -> None:
        """Drop buffered bytes (interrupt)."""
        self._buffer.clear()

    @property
    def buffered_bytes(self) -> int:
        """Bytes waiting for a complete frame."""
        return len(self._buffer)


class Pacer:
    """Releases frames on a monotonic clock by a :class:`PacingRule` (token bucket).

    The bucket holds at most ``burst_frames`` tokens, starts full at :meth:`reset` and
    gains one token per ``interval_ms``. :meth:`reserve` takes a token and returns how long
    to wait before sending; tokens may go negative (frames reserved ahead), so successive
    reservations queue up at exactly one per interval. A sender slower than real time
    refills the bucket, but never beyond the burst, so the vendor's rate window holds.
    """

    def __init__(self, rule: PacingRule) -> None:
        self.rule = rule
        self._interval_s = rule.interval_ms / 1000.0
        self._tokens = float(rule.burst_frames)
        self._updated = time.monotonic()

    def reset(self) -> None:
        """Start a new turn: the bucket is full again."""
        self._tokens = float(self.rule.burst_frames)
        self._updated = time.monotonic()

    def reserve(self, now: float | None = None) -> float:
        """Take one frame's token; return the seconds to wait before sending it (>= 0)."""
        if now is None:
            now = time.monotonic()
        elapsed = now - self._updated
        self._updated = now
        self._tokens = min(float(self.rule.burst_frames), self._tokens + elapsed / self._interval_s)
        self._tokens -= 1.0
        if self._tokens >= 0.0:
            return 0.0
        return -self._tokens * self._interval_s

    def available(self, now: float | None = None) -> float:
        """Tokens in the bucket at ``now`` (refilled up to it): frames that need no wait.

        ``available() >= n`` means :meth:`reserve` would return 0 for each of ``n`` frames
        reserved now; :meth:`take` then takes their tokens.
        """
        if now is None:
            now = time.monotonic()
        self._tokens = min(
            float(self.rule.burst_frames), self._tokens + (now - self._updated) / self._interval_s
        )
        self._updated = now
        return self._tokens

    def take(self, frames: int) -> None:
        """Take ``frames`` tokens found :meth:`available` just now (frames sent at once)."""
        self._tokens -= frames


def frame_bytes_for(rule: PacingRule, sample_rate_hertz: int) -> int:
    """Bytes in one mono s16le frame of ``rule.frame_ms`` at ``sample_rate_hertz``."""
    return sample_rate_hertz * rule.frame_ms // 1000 * 2


def duration_s(num_bytes: int, sample_rate_hertz: int, channels: int = 1) -> float:
    """Duration (s) of ``num_bytes`` of s16le PCM."""
    return num_bytes / (2 * channels * sample_rate_hertz)
