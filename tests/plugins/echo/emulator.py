"""The echo vendor's cloud: a real aiohttp server that checks its token and records drives."""

from __future__ import annotations

import secrets
from collections import defaultdict
from dataclasses import dataclass, field

from aiohttp import WSMsgType, web
from pydantic import SecretStr

from core.plugin import SandboxContext, SandboxVendor
from tests.plugins.echo.adapter import EchoSettings


@dataclass
class EchoSession:
    avatar_id: str
    open: bool = True
    audio: dict[str, bytearray] = field(default_factory=lambda: defaultdict(bytearray))
    rates: dict[str, int] = field(default_factory=dict)
    text: dict[str, str] = field(default_factory=lambda: defaultdict(str))
    interrupts: int = 0


class EchoEmulator:
    def __init__(self, token: str) -> None:
        self.token = token
        self.sessions: dict[str, EchoSession] = {}
        self.rejected = 0
        # True: audio turns get no speech_ended (a vendor that never reports the end).
        self.hold_speech_end = False
        app = web.Application(middlewares=[self._auth])
        app.router.add_post("/v1/sessions", self._create)
        app.router.add_get("/v1/sessions/{sid}", self._get)
        app.router.add_delete("/v1/sessions/{sid}", self._delete)
        app.router.add_get("/v1/sessions/{sid}/drive", self._drive)
        self._runner = web.AppRunner(app)
        self.base_url = ""

    @web.middleware
    async def _auth(self, request: web.Request, handler: web.RequestHandler) -> web.StreamResponse:
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            self.rejected += 1
            raise web.HTTPUnauthorized()
        return await handler(request)

    async def start(self) -> None:
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.base_url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        await self._runner.cleanup()

    def _session(self, request: web.Request) -> EchoSession:
        session = self.sessions.get(request.match_info["sid"])
        if session is None or not session.open:
            raise web.HTTPNotFound()
        return session

    async def _create(self, request: web.Request) -> web.Response:
        body = await request.json()
        if not body.get("avatar_id"):
            raise web.HTTPBadRequest(text="avatar_id is required")
        sid = secrets.token_hex(6)
        self.sessions[sid] = EchoSession(body["avatar_id"])
        return web.json_response({"id": sid})

    async def _get(self, request: web.Request) -> web.Response:
        self._session(request)
        return web.json_response({"state": "ready"})

    async def _delete(self, request: web.Request) -> web.Response:
        self._session(request).open = False
        return web.json_response({})

    async def _drive(self, request: web.Request) -> web.WebSocketResponse:
        session = self._session(request)
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        turn = ""
        async for msg in ws:
            if msg.type == WSMsgType.BINARY:
                if not turn:  # audio before audio_start: the protocol is broken
                    await ws.close(code=4400, message=b"audio before audio_start")
                    break
                session.audio[turn] += msg.data
                continue
            data = msg.json()
            if data["type"] == "audio_start":
                turn = data["turn"]
                session.rates[turn] = data["rate"]
                await ws.send_json({"type": "speech_started", "turn": turn})
            elif data["type"] == "audio_end" and self.hold_speech_end:
                turn = ""
            elif data["type"] == "audio_end":
                played_ms = len(session.audio[data["turn"]]) * 1000 // (2 * session.rates[turn])
                await ws.send_json(
                    {"type": "speech_ended", "turn": data["turn"], "played_ms": played_ms}
                )
                turn = ""
            elif data["type"] == "text":
                if not session.text[data["turn"]]:
                    await ws.send_json({"type": "speech_started", "turn": data["turn"]})
                session.text[data["turn"]] += data["text"]
                if data["final"]:
                    await ws.send_json({"type": "speech_ended", "turn": data["turn"]})
            elif data["type"] == "interrupt":
                session.interrupts += 1
                await ws.send_json({"type": "interrupted", "turn": data["turn"]})
        return ws


async def start_for_sandbox(ctx: SandboxContext, current: EchoSettings) -> SandboxVendor:
    del ctx
    token = secrets.token_hex(8)
    emulator = EchoEmulator(token)
    await emulator.start()
    settings = current.model_copy(update={"api_url": emulator.base_url, "token": SecretStr(token)})
    return SandboxVendor(settings, emulator, emulator.base_url, emulator.stop)
