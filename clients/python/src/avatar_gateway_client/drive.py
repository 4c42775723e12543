"""A config-first ``Drive`` stream.

The protocol requires ``config`` as the first request; :meth:`DriveStream.open` sends it and
waits for the server's ``started`` answer, so every later call is a plain send or read.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, cast

import grpc
from avatar.gateway.v1 import avatar_gateway_service_pb2 as pb
from avatar.gateway.v1 import avatar_gateway_service_pb2_grpc as pb_grpc
from avatar.gateway.v1 import media_pb2

from avatar_gateway_client.pacing import paced
from avatar_gateway_client.wav import Audio

if TYPE_CHECKING:  # the async stub type exists only in the generated .pyi
    Stub = pb_grpc.AvatarGatewayStub | pb_grpc.AvatarGatewayAsyncStub
else:
    Stub = pb_grpc.AvatarGatewayStub

_EOF = cast(Any, grpc.aio).EOF
"""``grpc.aio.EOF`` (missing from the grpc type stubs)."""

DEFAULT_MAX_AUDIO_CHUNK_BYTES = 65536
"""Largest ``DriveRequest.audio`` the API accepts."""


def config_request(
    session: str, audio_format: media_pb2.AudioFormat | None = None, *, preempt: bool = False
) -> pb.DriveRequest:
    """The first request of a Drive stream."""
    return pb.DriveRequest(
        config=pb.DriveConfig(session=session, audio_format=audio_format, preempt=preempt)
    )


def drive_requests(
    session: str,
    audio_format: media_pb2.AudioFormat | None,
    requests: Iterable[pb.DriveRequest | bytes],
    *,
    preempt: bool = False,
) -> Iterator[pb.DriveRequest]:
    """A request iterator for the synchronous stub: config first, then ``requests``.

    ``bytes`` items become audio requests (split to the API's size limit), e.g.
    ``stub.Drive(drive_requests(name, audio.format, paced_sync(audio)))``.
    """
    yield config_request(session, audio_format, preempt=preempt)
    for item in requests:
        if isinstance(item, bytes | bytearray | memoryview):
            data = bytes(item)
            for off in range(0, len(data), DEFAULT_MAX_AUDIO_CHUNK_BYTES):
                yield pb.DriveRequest(audio=data[off : off + DEFAULT_MAX_AUDIO_CHUNK_BYTES])
        else:
            yield item


class DriveStream:
    """An open ``Drive`` call on ``grpc.aio``.

    Iterate it (``async for event in stream``) for the events after ``started``; the loop ends
    when the call ends with OK and raises ``grpc.aio.AioRpcError`` otherwise (see
    :func:`avatar_gateway_client.error_info`). Sends wait while gRPC flow control holds the
    stream. One task may send while another reads.
    """

    def __init__(self, call: Any, started: pb.DriveStarted | None = None) -> None:
        self.call = call
        self.started = started

    @classmethod
    def open_raw(
        cls,
        stub: Stub,
        *,
        deadline_s: float | None = None,
        metadata: Sequence[tuple[str, str | bytes]] | None = None,
    ) -> DriveStream:
        """Opens a Drive call without sending anything (see :meth:`open` for the usual way).

        ``deadline_s`` is the call's gRPC timeout in seconds (``None``: no deadline).
        """
        # A stream-stream call without a request iterator: written with write()/done_writing().
        return cls(cast(Any, stub).Drive(timeout=deadline_s, metadata=metadata))

    @classmethod
    async def open(
        cls,
        stub: Stub,
        session: str,
        audio_format: media_pb2.AudioFormat | None = None,
        *,
        preempt: bool = False,
        deadline_s: float | None = None,
        metadata: Sequence[tuple[str, str | bytes]] | None = None,
    ) -> DriveStream:
        """Opens a Drive call on ``session`` (``sessions/{id}``), sends the config and waits for
        ``started``. ``audio_format`` may be ``None`` for a text-only stream.

        Raises:
            grpc.aio.AioRpcError: the server rejected the config (e.g. ``SESSION_NOT_FOUND``).
        """
        stream = cls.open_raw(stub, deadline_s=deadline_s, metadata=metadata)
        await stream.call.write(config_request(session, audio_format, preempt=preempt))
        first = await stream.next()
        if first is None or not first.HasField("started"):
            stream.cancel()
            raise RuntimeError(f"first Drive response is not started: {first}")
        stream.started = first.started
        return stream

    async def next(self) -> pb.DriveResponse | None:
        """The next event; ``None`` once the call has ended with OK."""
        response = await self.call.read()
        if response is _EOF:
            return None
        result: pb.DriveResponse = response
        return result

    async def __aiter__(self) -> AsyncIterator[pb.DriveResponse]:
        while (event := await self.next()) is not None:
            yield event

    async def send(self, request: pb.DriveRequest) -> None:
        """Sends one request."""
        await self.call.write(request)

    async def send_audio(self, pcm: bytes) -> None:
        """Sends PCM in the configured format, split into requests the server accepts."""
        limit = (self.started.max_audio_chunk_bytes if self.started else 0) or (
            DEFAULT_MAX_AUDIO_CHUNK_BYTES
        )
        for off in range(0, len(pcm), limit):
            await self.call.write(pb.DriveRequest(audio=pcm[off : off + limit]))

    async def send_paced(self, audio: Audio, chunk_ms: int = 20) -> None:
        """Sends ``audio`` at real time in chunks of ``chunk_ms``, as a live source would."""
        async for chunk in paced(audio, chunk_ms):
            await self.send_audio(chunk)

    async def send_text(self, text: str, final: bool = True) -> None:
        """Text for the vendor's TTS; ``final`` ends the turn."""
        await self.call.write(pb.DriveRequest(text=pb.TextInput(text=text, final=final)))

    async def end_turn(self) -> None:
        """The current turn is complete: the server flushes it and tells the vendor."""
        await self.call.write(pb.DriveRequest(end_turn=pb.EndTurn()))

    async def interrupt(self) -> None:
        """Barge-in: drop queued audio and stop the avatar; answered by ``interrupted``."""
        await self.call.write(pb.DriveRequest(interrupt=pb.Interrupt()))

    async def done_writing(self) -> None:
        """Half-closes: the server finishes the current turn, then ends the call with OK."""
        await self.call.done_writing()

    def cancel(self) -> bool:
        """Abandons the call (status CANCELLED)."""
        result: bool = self.call.cancel()
        return result

    async def code(self) -> grpc.StatusCode:
        """The call's final status code (waits for the end of the call)."""
        code: grpc.StatusCode = await self.call.code()
        return code
