"""Audio in chunks, released at real time as a live source (TTS, a microphone) would."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator

from avatar_gateway_client.wav import Audio


def chunks(audio: Audio, chunk_ms: int = 20) -> Iterator[bytes]:
    """Splits ``audio`` into chunks of ``chunk_ms`` (whole frames; the last may be shorter)."""
    frame = audio.channels * 2
    size = max(frame, audio.sample_rate_hertz * chunk_ms // 1000 * frame)
    for off in range(0, len(audio.pcm), size):
        yield audio.pcm[off : off + size]


async def paced(audio: Audio, chunk_ms: int = 20) -> AsyncIterator[bytes]:
    """Yields chunks of ``audio`` at real time: chunk i at start + i*chunk_ms (monotonic clock,
    so scheduling jitter does not accumulate)."""
    start = time.monotonic()
    sent_s = 0.0
    for chunk in chunks(audio, chunk_ms):
        wait = start + sent_s - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        yield chunk
        sent_s += len(chunk) / audio.bytes_per_second


def paced_sync(audio: Audio, chunk_ms: int = 20) -> Iterator[bytes]:
    """:func:`paced` for synchronous code (blocks in ``time.sleep``)."""
    start = time.monotonic()
    sent_s = 0.0
    for chunk in chunks(audio, chunk_ms):
        wait = start + sent_s - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        yield chunk
        sent_s += len(chunk) / audio.bytes_per_second
