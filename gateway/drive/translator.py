"""Vendor events and stream facts → ``DriveResponse`` messages. Pure: no state, no I/O.

The one place where the gateway's event vocabulary (``core.contract.VendorEvent``) becomes
the API's (``avatar.gateway.v1.DriveResponse``); docs/architecture.md §3.
"""

from __future__ import annotations

from avatar.gateway.v1 import avatar_gateway_service_pb2 as pb
from avatar.gateway.v1 import media_pb2
from google.protobuf import duration_pb2

from core.audio import MAX_AUDIO_CHUNK_BYTES
from core.contract import EventKind, VendorEvent
from core.errors import EventReason


def duration(seconds: float) -> duration_pb2.Duration:
    """A ``Duration`` of ``seconds`` (negative values become 0)."""
    d = duration_pb2.Duration()
    d.FromNanoseconds(max(0, int(seconds * 1e9)))
    return d


def started(
    session: str, vendor: str, input_format: media_pb2.AudioFormat, vendor_rate_hertz: int
) -> pb.DriveResponse:
    """The ``started`` answer to a stream's config."""
    vendor_fmt = media_pb2.AudioFormat(
        audio_encoding=media_pb2.AUDIO_ENCODING_LINEAR16,
        sample_rate_hertz=vendor_rate_hertz,
        audio_channel_count=1,
    )
    return pb.DriveResponse(
        started=pb.DriveStarted(
            session=session,
            input_audio_format=input_format,
            vendor_audio_format=vendor_fmt,
            max_audio_chunk_bytes=MAX_AUDIO_CHUNK_BYTES,
            vendor=vendor,
        )
    )


def turn_failed(turn_id: str, reason: str, message: str) -> pb.DriveResponse:
    """``turn_failed`` for ``turn_id``."""
    return pb.DriveResponse(
        turn_failed=pb.TurnFailed(turn_id=turn_id, reason=reason, message=message)
    )


def warning(
    reason: str, message: str, turn_id: str = "", metadata: dict[str, str] | None = None
) -> pb.DriveResponse:
    """A non-fatal ``warning``."""
    return pb.DriveResponse(
        warning=pb.Warning(reason=reason, message=message, turn_id=turn_id, metadata=metadata)
    )


def interrupted(
    turn_id: str = "", vendor_acknowledged: bool = False, latency_s: float | None = None
) -> pb.DriveResponse:
    """The ``interrupted`` ack (``turn_id`` "" when nothing was there to interrupt)."""
    ack = pb.Interrupted(turn_id=turn_id, vendor_acknowledged=vendor_acknowledged)
    if latency_s is not None:
        ack.latency.CopyFrom(duration(latency_s))
    return pb.DriveResponse(interrupted=ack)


def go_away(time_left_s: float) -> pb.DriveResponse:
    """``go_away``: the server drains; ``time_left_s`` until streams are cut (s)."""
    return pb.DriveResponse(go_away=pb.GoAway(time_left=duration(time_left_s)))


def translate(event: VendorEvent, speech_start_latency_s: float = 0.0) -> pb.DriveResponse | None:
    """The response a vendor event becomes, or ``None`` for control events.

    ``INTERRUPTED`` (an ack the interrupt waits for) and ``SESSION_LOST`` (a fatal status)
    are not responses of their own. ``speech_start_latency_s``: for ``SPEECH_STARTED``, the
    time from the turn's first input to the vendor's event (s).
    """
    kind = event.kind
    if kind is EventKind.SPEECH_STARTED:
        return pb.DriveResponse(
            speech_started=pb.SpeechStarted(
                turn_id=event.turn_id, latency=duration(speech_start_latency_s)
            )
        )
    if kind is EventKind.SPEECH_ENDED:
        ended = pb.SpeechEnded(turn_id=event.turn_id, interrupted=event.interrupted)
        if event.played_s is not None:
            ended.played_duration.CopyFrom(duration(event.played_s))
        return pb.DriveResponse(speech_ended=ended)
    if kind is EventKind.TRANSCRIPT:
        role = pb.TRANSCRIPT_ROLE_USER if event.role == "user" else pb.TRANSCRIPT_ROLE_AVATAR
        return pb.DriveResponse(
            transcript=pb.Transcript(
                turn_id=event.turn_id, role=role, text=event.text, final=event.final
            )
        )
    if kind is EventKind.TURN_FAILED:
        return turn_failed(
            event.turn_id, event.reason or EventReason.VENDOR_DRIVE_FAILED, event.message
        )
    if kind is EventKind.WARNING:
        return warning(event.reason, event.message, event.turn_id, event.metadata)
    return None
