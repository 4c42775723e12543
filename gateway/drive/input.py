"""The input side of one Drive stream: read requests, validate them, turn them into work.

Audio is converted once (``core.audio``: channels, rate) and re-chunked to vendor frames;
text is split to the vendor's limits (streamed pieces exactly as written; otherwise at
sentence boundaries); end_turn flushes both. Work goes on a bounded queue: when it is full
the reader stops pulling, so gRPC flow control slows a client that sends faster than the
vendor takes audio (docs/architecture.md §3).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

import grpc
from avatar.gateway.v1 import avatar_gateway_service_pb2 as pb

from core.audio import (
    MAX_AUDIO_CHUNK_BYTES,
    AudioConverter,
    FrameChunker,
    unsupported_audio_format,
)
from core.contract import Capabilities
from core.errors import GatewayError, Reason, failed_precondition, invalid_argument
from core.pipeline import AudioFrame, EndAudio, EndOfInput, TextPiece, TurnMode, WorkItem
from core.queues import SingleConsumerQueue
from core.text import SentenceBuffer, split_exact, utf8_len
from gateway.drive.ledger import DriveOutcome, TurnLedger, TurnState

MAX_TEXT_CHARS = 16384
"""Largest ``TextInput.text`` accepted (characters); documented in the proto."""


class DriveInput:
    """Reads one stream's requests and queues :data:`core.pipeline.WorkItem` for the sender.

    Args:
        session: the session name (error metadata).
        vendor: the vendor id (error metadata).
        capabilities: the vendor's capabilities (audio/text support, text limits).
        config: the stream's config (input audio format).
        converter: input audio → vendor-rate mono s16le.
        chunker: vendor-rate PCM → vendor frames.
        ledger: the stream's turns.
        work: the queue to the sender (bounded: its bound is the flow-control point).
        outcome: where a fatal input error is recorded.
        on_activity: called for every request (the session is not idle).
        on_interrupt: called after an interrupt dropped queued work, with the turn the ack
            names (``None``: nothing to interrupt); it starts the vendor commands.
        send_now: the sender's fast path (:meth:`~gateway.drive.sender.DriveSender.send_now`):
            audio frames it sends at once skip the queue; ``False``: they are queued.
    """

    def __init__(
        self,
        *,
        session: str,
        vendor: str,
        capabilities: Capabilities,
        config: pb.DriveConfig,
        converter: AudioConverter,
        chunker: FrameChunker,
        ledger: TurnLedger,
        work: SingleConsumerQueue[WorkItem],
        outcome: DriveOutcome,
        on_activity: Callable[[], None],
        on_interrupt: Callable[[str | None], None],
        send_now: Callable[[TurnState, int, list[bytes]], bool] | None = None,
    ) -> None:
        self.session = session
        self.vendor = vendor
        self.caps = capabilities
        self.config = config
        self.has_audio = config.HasField("audio_format")
        self.converter = converter
        self.chunker = chunker
        self.ledger = ledger
        self.work = work
        self.outcome = outcome
        self.sentences = SentenceBuffer(capabilities.max_text_chars, capabilities.max_text_bytes)
        self._on_activity = on_activity
        self._on_interrupt = on_interrupt
        self._send_now = send_now

    async def run(self, requests: AsyncIterator[pb.DriveRequest]) -> None:
        """Read until half-close, a fatal input error or the client leaving.

        On half-close or an input error, the open turn is finished so that everything
        accepted so far reaches the vendor, then :class:`core.pipeline.EndOfInput` is queued.
        """
        try:
            async for request in requests:
                kind = request.WhichOneof("request")
                self._on_activity()
                if kind == "audio":
                    await self._on_audio(request.audio)
                elif kind == "text":
                    await self._on_text(request.text)
                elif kind == "end_turn":
                    await self.end_turn()
                elif kind == "interrupt":
                    self._on_interrupt_request()
                elif kind == "config":
                    raise invalid_argument(
                        Reason.CONFIG_ALREADY_SENT,
                        "config may only be the first request of a Drive stream",
                        session=self.session,
                    )
                else:
                    raise invalid_argument(
                        Reason.INVALID_ARGUMENT,
                        "empty DriveRequest: set one request kind",
                        field="request",
                    )
        except GatewayError as exc:
            self.outcome.fail(exc)
        except asyncio.CancelledError:
            raise
        except grpc.aio.AioRpcError:
            return  # the client went away; the stream cleans up
        with contextlib.suppress(GatewayError):
            await self.end_turn()
        await self.work.put(EndOfInput(self.ledger.generation))

    async def _on_audio(self, data: bytes) -> None:
        if len(data) > MAX_AUDIO_CHUNK_BYTES:
            raise invalid_argument(
                Reason.CHUNK_TOO_LARGE,
                f"audio chunk of {len(data)} bytes exceeds the maximum of {MAX_AUDIO_CHUNK_BYTES}",
                chunkBytes=str(len(data)),
                maxChunkBytes=str(MAX_AUDIO_CHUNK_BYTES),
            )
        if not self.has_audio:
            raise unsupported_audio_format(
                "audio sent on a stream whose config has no audio_format", self.config.audio_format
            )
        if not self.caps.audio:
            raise self._unsupported(Reason.AUDIO_NOT_SUPPORTED, "audio")
        turn = self.ledger.open_turn
        if turn is None or turn.mode != "audio":
            turn = await self._turn_of("audio")
        pcm = self.converter.convert(data)
        if not pcm:
            return
        frames = self.chunker.push(pcm)
        if not frames:
            return
        gen = self.ledger.generation
        send_now = self._send_now
        if send_now is not None and send_now(turn, gen, frames):
            return
        for frame in frames:
            await self.work.put(AudioFrame(turn.turn_id, gen, frame))

    async def _on_text(self, text_input: pb.TextInput) -> None:
        text, final = text_input.text, text_input.final
        if len(text) > MAX_TEXT_CHARS:
            raise invalid_argument(
                Reason.TEXT_TOO_LONG,
                f"text of {len(text)} characters exceeds the maximum of {MAX_TEXT_CHARS}",
                textLength=str(len(text)),
                maxTextLength=str(MAX_TEXT_CHARS),
            )
        if not self.caps.text:
            raise self._unsupported(Reason.TEXT_NOT_SUPPORTED, "text")
        open_turn = self.ledger.open_turn
        if not text and (not final or open_turn is None or open_turn.mode != "text"):
            return  # nothing to send, or a final marker for no text: nothing to close
        turn = await self._turn_of("text")
        if self.caps.streaming_text:
            # Streamed deltas go on exactly as written: vendors join them as sent, so a
            # stripped "Hello " + "world" would be spoken "Helloworld".
            limit = self.caps.max_text_bytes or self.caps.max_text_chars
            measure = utf8_len if self.caps.max_text_bytes else len
            pieces = split_exact(text, limit, measure) if text else []
        else:
            pieces = self.sentences.push(text)
            if final:
                pieces += self.sentences.flush()
        gen = self.ledger.generation
        if final:
            # The last piece carries final, so a complete text is one vendor message (Tencent
            # SEND_TEXT rather than a stream, Akool fin on the part itself).
            pieces = pieces or [""]
            self.ledger.close_open_turn()
        for n, piece in enumerate(pieces, 1):
            await self.work.put(TextPiece(turn.turn_id, gen, piece, final and n == len(pieces)))

    def _unsupported(self, reason: Reason, kind: str) -> GatewayError:
        return failed_precondition(
            reason,
            f"{self.vendor} cannot be driven by {kind}",
            vendor=self.vendor,
            session=self.session,
        )

    async def _turn_of(self, mode: TurnMode) -> TurnState:
        """The open turn of ``mode``; an open turn of the other mode is ended first."""
        open_turn = self.ledger.open_turn
        if open_turn is not None and open_turn.mode != mode:
            await self.end_turn()
        return await self.ledger.ensure_turn(mode)

    async def end_turn(self) -> None:
        """Finish the open turn: flush converter, chunker and sentence buffer to the sender."""
        turn = self.ledger.close_open_turn()
        if turn is None:
            return
        gen = self.ledger.generation
        if turn.mode == "audio":
            tail = self.converter.flush()
            frames = self.chunker.push(tail) if tail else []
            rest = self.chunker.flush()
            if rest:
                frames.append(rest)
            for frame in frames:
                await self.work.put(AudioFrame(turn.turn_id, gen, frame))
            await self.work.put(EndAudio(turn.turn_id, gen))
        else:
            pieces = self.sentences.flush() or [""]
            for n, piece in enumerate(pieces, 1):
                await self.work.put(TextPiece(turn.turn_id, gen, piece, n == len(pieces)))

    def _on_interrupt_request(self) -> None:
        """Barge-in: drop queued work and buffered input at once, then start the commands."""
        ack_turn = self.ledger.interrupt()
        while not self.work.empty():
            self.work.get_nowait()
        self.converter.reset()
        self.chunker.clear()
        self.sentences.clear()
        self._on_interrupt(ack_turn.turn_id if ack_turn is not None else None)
