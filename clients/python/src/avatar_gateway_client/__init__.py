"""Helpers over the generated ``avatar.gateway.v1`` stubs.

* :func:`connect` / :func:`connect_sync` — a ``grpc.aio`` / synchronous channel: TLS (custom
  CA, mutual TLS) and a credential (API key or JWT) on every call.
* :class:`DriveStream` — a config-first ``Drive`` call on ``grpc.aio``;
  :func:`drive_requests` does the same for a synchronous request iterator.
* :func:`read_wav` / :class:`Audio` — 16-bit PCM WAV files.
* :func:`paced` / :func:`chunks` — audio in chunks at real time.
* :func:`error_info` — the ``google.rpc.ErrorInfo`` of a failed call.
"""

from avatar_gateway_client.channel import Pem, connect, connect_sync
from avatar_gateway_client.drive import (
    DEFAULT_MAX_AUDIO_CHUNK_BYTES,
    DriveStream,
    config_request,
    drive_requests,
)
from avatar_gateway_client.errors import DOMAIN, error_info
from avatar_gateway_client.pacing import chunks, paced, paced_sync
from avatar_gateway_client.wav import Audio, linear16, parse_wav, read_wav

__all__ = [
    "DEFAULT_MAX_AUDIO_CHUNK_BYTES",
    "DOMAIN",
    "Audio",
    "DriveStream",
    "Pem",
    "chunks",
    "config_request",
    "connect",
    "connect_sync",
    "drive_requests",
    "error_info",
    "linear16",
    "paced",
    "paced_sync",
    "parse_wav",
    "read_wav",
]
