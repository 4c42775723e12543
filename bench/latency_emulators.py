"""The three vendor emulators, each in its own process, recording when each vendor command arrives.

``bench/latency_bench.py`` runs one of these per vendor (``multiprocessing`` spawn, driven
over a pipe like ``bench/emulator_proc.py``). The emulators in ``emulators/`` are used
unchanged; subclasses and wrappers only take ``time.monotonic_ns()`` when something reaches
the vendor side, before the emulator's own handling, and keep it in an event log:

``(kind, key, t_ns, detail)`` where ``key`` is the vendor's session id (ZEGOCLOUD TaskId,
Tencent SessionId, Akool session id) and ``kind`` one of

* ``ready``: the emulator made the session ready (ZEGOCLOUD: task status 1 → 3 after
  ``task_ready_delay_s``; Tencent: ``SessionStatus`` 3 → 1 at ``ready_at``, created +
  ``session_ready_delay_s``, read from the session record; Akool: the avatar finished
  joining the LiveKit room, right before the session turns ``processing``);
* ``audio``: the first audio byte of a drive (ZEGOCLOUD: first binary frame on a drive
  socket; Tencent: first ``SEND_AUDIO`` with audio of a ReqId; Akool: first chunk of an
  ``lk.audio_stream`` byte stream);
* ``text``: a whole-text command (ZEGOCLOUD ``DriveByText``; Tencent ``SEND_TEXT`` with
  text); ``stream_text``: the first ``SEND_STREAMTEXT`` packet of a ReqId (Tencent); Akool
  text (whole or streamed) is ``chat``: the first chat part of a ``mid``;
* ``stop``: a command that stops the avatar (ZEGOCLOUD ``InterruptDriveTask`` or a drive
  socket's ``Stop``; Tencent an ``Interrupt`` packet or ``IsFinal``; Akool the ``interrupt``
  command or the ``lk.clear_buffer`` RPC), ``detail`` says which.

CLOCK_MONOTONIC is system wide, so these times compare with the client's send times.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from multiprocessing.connection import Connection
from typing import Any

from spawned import commands_from

from emulators import akool as akool_mod
from emulators.akool import AkoolEmulator
from emulators.tencent import TencentEmulator
from emulators.zegocloud import ZegocloudEmulator

Event = tuple[str, str, int, str]


class EventLog:
    """The events of one emulator process (see the module docstring)."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def add(self, kind: str, key: str, detail: str = "", t_ns: int | None = None) -> None:
        self.events.append((kind, key, time.monotonic_ns() if t_ns is None else t_ns, detail))

    def take(self) -> list[Event]:
        out, self.events = self.events, []
        return out


class LatencyZegoEmulator(ZegocloudEmulator):
    """ZEGOCLOUD: REST actions, drive-socket frames and task readiness, timestamped."""

    def __init__(self, log: EventLog, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.log = log
        self._first_binary: set[str] = set()

    async def _become_ready(self, task: Any) -> None:
        await super()._become_ready(task)
        self.log.add("ready", task.task_id, str(task.status))

    def _drive_by_text(self, body: dict[str, Any]) -> dict[str, Any]:
        self.log.add("text", str(body.get("TaskId", "")), "DriveByText")
        return super()._drive_by_text(body)

    def _interrupt_drive_task(self, body: dict[str, Any]) -> None:
        self.log.add("stop", str(body.get("TaskId", "")), "InterruptDriveTask")
        super()._interrupt_drive_task(body)

    def _on_text(self, session: Any, data: str) -> str | None:
        t_ns = time.monotonic_ns()
        if '"Stop"' in data:
            self.log.add("stop", session.drive.task_id, "Stop", t_ns)
        return super()._on_text(session, data)

    def _on_binary(self, session: Any, data: bytes) -> str | None:
        drive = session.drive
        if drive.drive_id not in self._first_binary:
            self._first_binary.add(drive.drive_id)
            self.log.add("audio", drive.task_id, drive.drive_id)
        return super()._on_binary(session, data)


class LatencyTencentEmulator(TencentEmulator):
    """Tencent IVH: every command-channel frame, timestamped on arrival; readiness from records."""

    def __init__(self, log: EventLog, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.log = log
        self._seen: set[str] = set()
        self._ready_logged: set[str] = set()

    async def _on_frame(self, session: Any, connection: int, raw: str) -> None:
        t_ns = time.monotonic_ns()
        with contextlib.suppress(ValueError, AttributeError, TypeError):
            payload = json.loads(raw)["Payload"]
            command = str(payload.get("Command") or "")
            req_id = str(payload.get("ReqId") or "")
            data = payload.get("Data") or {}
            key = session.session_id
            if data.get("Interrupt"):
                self.log.add("stop", key, f"{command} Interrupt", t_ns)
            elif command == "SEND_AUDIO":
                if data.get("Audio") and req_id not in self._seen:
                    self._seen.add(req_id)
                    self.log.add("audio", key, req_id, t_ns)
                if data.get("IsFinal"):
                    self.log.add("stop", key, "SEND_AUDIO IsFinal", t_ns)
            elif command == "SEND_TEXT" and data.get("Text"):
                self.log.add("text", key, req_id, t_ns)
            elif command == "SEND_STREAMTEXT":
                if req_id not in self._seen:
                    self._seen.add(req_id)
                    self.log.add("stream_text", key, req_id, t_ns)
                if data.get("IsFinal"):
                    self.log.add("stop", key, "SEND_STREAMTEXT IsFinal", t_ns)
        await super()._on_frame(session, connection, raw)

    def ready_events(self) -> None:
        """Log ``ready`` for sessions that became ready (at their record's ``ready_at``)."""
        now = time.monotonic()
        offset_ns = time.monotonic_ns() - int(now * 1e9)
        for session in self.sessions.values():
            # Closed sessions count too: what matters is that they were ready at ready_at.
            if (
                session.session_id in self._ready_logged
                or session.will_fail
                or session.ready_at > now
            ):
                continue
            self._ready_logged.add(session.session_id)
            self.log.add("ready", session.session_id, "", int(session.ready_at * 1e9) + offset_ns)


class LatencyAkoolEmulator(AkoolEmulator):
    """Akool: the avatar's room join, chat parts, commands, clear_buffer and audio chunks."""

    def __init__(self, log: EventLog, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.log = log
        _patch_akool_avatar(log)


def _patch_akool_avatar(log: EventLog) -> None:
    """Wrap the avatar participant's handlers (this process only) to log arrival times."""
    avatar_cls: Any = akool_mod._Avatar
    if getattr(avatar_cls, "_latency_patched", False):
        return
    avatar_cls._latency_patched = True
    join, on_data, on_clear, on_stream = (
        avatar_cls.join,
        avatar_cls._on_data,
        avatar_cls._on_clear_buffer,
        avatar_cls._on_stream,
    )

    async def timed_join(self: Any, url: str, token: str) -> None:
        await join(self, url, token)
        # _run_session sets status 2 (processing) right after this returns.
        log.add("ready", self.record.id, "joined")

    def timed_on_data(self: Any, packet: Any) -> None:
        t_ns = time.monotonic_ns()
        with contextlib.suppress(ValueError, AttributeError, TypeError):
            message = json.loads(packet.data)
            pld = message.get("pld") or {}
            if message.get("type") == "chat" and message.get("idx") == 0:
                log.add("chat", self.record.id, str(message.get("mid")), t_ns)
            elif message.get("type") == "command" and pld.get("cmd") == "interrupt":
                log.add("stop", self.record.id, "interrupt command", t_ns)
        on_data(self, packet)

    def timed_on_clear(self: Any, data: Any) -> str:
        log.add("stop", self.record.id, "lk.clear_buffer")
        return str(on_clear(self, data))

    def timed_on_stream(self: Any, reader: Any, sender: str) -> None:
        on_stream(self, reader, sender)
        turn = self.record.audio_turns[-1]
        add = turn.add
        record_id = self.record.id

        def first_add(chunk: bytes) -> None:
            log.add("audio", record_id, turn.stream_id)
            del turn.__dict__["add"]  # back to the class's method; to_json stays clean
            add(chunk)

        turn.add = first_add  # type: ignore[method-assign]

    avatar_cls.join = timed_join
    avatar_cls._on_data = timed_on_data
    avatar_cls._on_clear_buffer = timed_on_clear
    avatar_cls._on_stream = timed_on_stream


async def _main(conn: Connection, config: dict[str, Any]) -> None:
    config = dict(config)
    vendor = config.pop("vendor")
    log = EventLog()
    emulator: Any
    if vendor == "zegocloud":
        emulator = LatencyZegoEmulator(log, **config)
        await emulator.start()
        rest_url = emulator.rest.base_url
    elif vendor == "tencent":
        emulator = LatencyTencentEmulator(log, **config)
        await emulator.start()
        rest_url = emulator.base_url
    else:
        emulator = LatencyAkoolEmulator(log, **config)
        await emulator.start()
        rest_url = emulator.base_url
    commands = commands_from(conn)
    conn.send({"rest_url": rest_url, "pid": os.getpid()})
    try:
        while True:
            command = await commands.get()
            if command[0] == "stop":
                break
            if command[0] == "events":
                if isinstance(emulator, LatencyTencentEmulator):
                    emulator.ready_events()
                reply: Any = log.take()
            else:
                reply = {"error": f"unknown command {command[0]!r}"}
            os.set_blocking(conn.fileno(), True)
            conn.send(reply)
    finally:
        with contextlib.suppress(Exception):
            asyncio.get_running_loop().remove_reader(conn.fileno())
        await emulator.stop()
        with contextlib.suppress(Exception):
            conn.send(True)


def serve(conn: Connection, config: dict[str, Any]) -> None:
    """Process entry point: run the emulator of ``config["vendor"]`` until told to stop."""
    asyncio.run(_main(conn, config))
