"""Python driver of the cross-language interop suite (tests/interop).

Reads one scenario as JSON on stdin, runs its steps against the gateway with the generated
stubs and the ``avatar_gateway_client`` helpers, and prints what it observes as JSON lines on
stdout. The runner compares them with the scenario's expectations; this program asserts
nothing itself.

The channel comes from ``avatar_gateway_client.connect``. Optional payload fields: ``tls``
(``ca_file``, and optionally ``server_name``, ``cert_file`` and ``key_file`` for mutual TLS;
absent: plaintext, as for the sandbox gateway) and ``credential`` (an API key or a JWT, sent
on every call as ``authorization: Bearer <credential>``). A credential over plaintext is
allowed here, for the runner's gateway on loopback: the helper's local credentials refuse any
other address.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import grpc
from avatar.gateway.v1 import avatar_gateway_service_pb2 as pb
from avatar.gateway.v1 import avatar_gateway_service_pb2_grpc as pb_grpc
from avatar_gateway_client import (
    DriveStream,
    chunks,
    connect,
    error_info,
    linear16,
    paced,
    read_wav,
)


def emit(line: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(line) + "\n")
    sys.stdout.flush()


def status_line(op: str, err: BaseException | None) -> dict[str, Any]:
    line: dict[str, Any] = {"type": "status", "op": op, "code": 0, "message": ""}
    if isinstance(err, grpc.aio.AioRpcError):
        line["code"] = err.code().value[0]
        line["message"] = err.details() or ""
        info = error_info(err)
        if info is not None:
            line["error_info"] = {
                "reason": info.reason,
                "domain": info.domain,
                "metadata": dict(info.metadata),
            }
    elif err is not None:
        line["code"] = grpc.StatusCode.UNKNOWN.value[0]
        line["message"] = repr(err)
    return line


def event_line(ev: pb.DriveResponse) -> dict[str, Any]:
    kind = ev.WhichOneof("response") or "unknown"
    line: dict[str, Any] = {"type": "event", "event": kind}
    body = getattr(ev, kind, None) if kind != "unknown" else None
    if body is not None and hasattr(body, "turn_id"):
        line["turn_id"] = body.turn_id
    if kind == "speech_ended":
        line["interrupted"] = ev.speech_ended.interrupted
    if kind in ("warning", "turn_failed"):
        line["reason"] = body.reason  # type: ignore[union-attr]
    return line


class Driver:
    def __init__(self, scenario: dict[str, Any], channel: grpc.aio.Channel) -> None:
        self.sc = scenario
        self.stub = pb_grpc.AvatarGatewayStub(channel)
        self.session = ""
        self.stream: DriveStream | None = None
        self.reader: asyncio.Task[None] | None = None
        self.events: list[dict[str, Any]] = []
        self.ended = False
        self.changed = asyncio.Condition()

    async def _notify(self) -> None:
        async with self.changed:
            self.changed.notify_all()

    async def record(self, line: dict[str, Any]) -> None:
        emit(line)
        self.events.append(line)
        await self._notify()

    async def finish(self, err: BaseException | None) -> None:
        emit(status_line("drive", err))
        self.ended = True
        await self._notify()

    async def read(self, stream: DriveStream) -> None:
        try:
            async for ev in stream:
                await self.record(event_line(ev))
        except grpc.aio.AioRpcError as err:
            await self.finish(err)
            return
        except asyncio.CancelledError:
            # A cancelled call makes read() raise CancelledError; the status is CANCELLED.
            if stream.call.cancelled():
                await self.finish(await _cancelled_error(stream))
                return
            raise
        await self.finish(None)

    def has_event(self, event: str, turn_id: str) -> bool:
        return any(
            e["event"] == event and (not turn_id or e.get("turn_id") == turn_id)
            for e in self.events
        )

    async def wait_for(self, timeout_ms: int, pred: Any) -> bool:
        async def wait() -> None:
            async with self.changed:
                await self.changed.wait_for(pred)

        try:
            await asyncio.wait_for(wait(), timeout_ms / 1000)
        except TimeoutError:
            return False
        return True

    async def sent(self, op: str, coro: Any) -> None:
        line: dict[str, Any] = {"type": "sent", "op": op}
        try:
            await coro
        except Exception as exc:  # the status line tells why; this records the send failure
            line["error"] = repr(exc)
        emit(line)

    async def run(self, s: dict[str, Any]) -> None:
        op = s["op"]
        if op == "create_session":
            try:
                sess = await self.stub.CreateSession(
                    pb.CreateSessionRequest(
                        vendor=s.get("vendor") or self.sc["vendor"],
                        avatar_id=s.get("avatar_id") or self.sc["avatar_id"],
                    ),
                    timeout=30,
                )
                self.session = sess.name
                emit(
                    {
                        "type": "session",
                        "name": sess.name,
                        "state": pb.SessionState.Name(sess.state),
                    }
                )
                emit(status_line(op, None))
            except grpc.aio.AioRpcError as err:
                emit(status_line(op, err))
        elif op in ("get_session", "close_session"):
            name = s.get("name") or self.session
            try:
                if op == "get_session":
                    await self.stub.GetSession(pb.GetSessionRequest(name=name), timeout=30)
                else:
                    await self.stub.CloseSession(pb.CloseSessionRequest(name=name), timeout=30)
                emit(status_line(op, None))
            except grpc.aio.AioRpcError as err:
                emit(status_line(op, err))
        elif op == "drive":
            timeout = s["deadline_ms"] / 1000 if s.get("deadline_ms") else None
            if s.get("config", True) is False:
                self.stream = DriveStream.open_raw(self.stub, deadline_s=timeout)
            else:
                try:
                    self.stream = await DriveStream.open(
                        self.stub,
                        s.get("session") or self.session,
                        linear16(16000, 1),
                        deadline_s=timeout,
                    )
                except grpc.aio.AioRpcError as err:
                    await self.finish(err)
                    return
                await self.record({"type": "event", "event": "started"})
            self.reader = asyncio.create_task(self.read(self.stream))
        elif op == "send_audio":
            assert self.stream is not None
            line: dict[str, Any] = {"type": "sent", "op": op}
            sent = 0
            try:
                audio = read_wav(s["wav"])
                chunk_ms = s.get("chunk_ms", 20)
                if s.get("pace", True):
                    async for c in paced(audio, chunk_ms):
                        await self.stream.send_audio(c)
                        sent += len(c)
                else:
                    for c in chunks(audio, chunk_ms):
                        await self.stream.send_audio(c)
                        sent += len(c)
            except Exception as exc:
                line["error"] = repr(exc)
            line["bytes"] = sent
            emit(line)
        elif op == "send_text":
            assert self.stream is not None
            await self.sent(op, self.stream.send_text(s.get("text", ""), s.get("final", True)))
        elif op == "end_turn":
            assert self.stream is not None
            await self.sent(op, self.stream.end_turn())
        elif op == "interrupt":
            assert self.stream is not None
            await self.sent(op, self.stream.interrupt())
        elif op == "half_close":
            assert self.stream is not None
            await self.sent(op, self.stream.done_writing())
        elif op == "cancel":
            if self.stream is not None:
                self.stream.cancel()
            emit({"type": "sent", "op": op})
        elif op == "wait_event":
            event, turn_id = s["event"], s.get("turn_id", "")
            await self.wait_for(
                s.get("timeout_ms", 15000), lambda: self.ended or self.has_event(event, turn_id)
            )
            emit(
                {
                    "type": "wait",
                    "event": event,
                    "turn_id": turn_id,
                    "ok": self.has_event(event, turn_id),
                }
            )
        elif op == "wait_status":
            ok = await self.wait_for(s.get("timeout_ms", 15000), lambda: self.ended)
            emit({"type": "wait", "event": "status", "ok": ok})
        elif op == "sleep":
            await asyncio.sleep(s.get("ms", 0) / 1000)
        elif op == "mark":
            emit({"type": "mark", "name": s.get("name", "")})
        else:
            emit({"type": "error", "op": op, "message": "unknown op"})


async def _cancelled_error(stream: DriveStream) -> grpc.aio.AioRpcError:
    code = await stream.code()
    empty = grpc.aio.Metadata()
    return grpc.aio.AioRpcError(code, empty, empty, "cancelled by the client", None)


def open_channel(scenario: dict[str, Any]) -> grpc.aio.Channel:
    """The channel the payload asks for: ``tls`` and ``credential`` (see the module doc)."""
    credential: str | None = scenario.get("credential")
    tls: dict[str, Any] | None = scenario.get("tls")
    if tls is None:
        return connect(
            scenario["target"],
            plaintext=True,
            credential=credential,
            allow_plaintext_credential=True,
        )
    return connect(
        scenario["target"],
        ca=tls.get("ca_file"),
        server_name=tls.get("server_name"),
        client_cert=tls.get("cert_file"),
        client_key=tls.get("key_file"),
        credential=credential,
    )


async def main() -> None:
    scenario = json.loads(sys.stdin.read())
    async with open_channel(scenario) as channel:
        d = Driver(scenario, channel)
        for step in scenario["steps"]:
            await d.run(step)
        if d.stream is not None and not d.ended:
            d.stream.cancel()
        if d.reader is not None:
            await asyncio.gather(d.reader, return_exceptions=True)
    emit({"type": "done"})


if __name__ == "__main__":
    asyncio.run(main())
