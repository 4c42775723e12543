"""The echo vendor's adapter: REST sessions over httpx, a WebSocket drive channel."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import httpx
from pydantic import SecretStr
from websockets.asyncio.client import ClientConnection, connect

from core.contract import (
    Capabilities,
    DriveChannel,
    EventKind,
    PacingRule,
    ReadyState,
    SessionSpec,
    SessionStatus,
    VendorAdapter,
    VendorEvent,
    VendorSessionHandle,
)
from core.errors import vendor_unavailable
from core.plugin import VendorSettings, vendor_settings_config
from core.telemetry import vendor_http_client


def _endpoint(request: httpx.Request) -> str:
    """The endpoint a request calls, for metrics: method and path, the session id left out."""
    collection = "/".join(request.url.path.strip("/").split("/")[:2])
    return f"{request.method} {collection}"


class EchoSettings(VendorSettings):
    credential_sets = (("api_url", "token"),)
    model_config = vendor_settings_config("echo")

    api_url: str | None = None
    token: SecretStr | None = None


class EchoChannel(DriveChannel):
    def __init__(self, ws: ClientConnection) -> None:
        super().__init__()
        self._ws = ws
        self._started: set[str] = set()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        kinds = {
            "speech_started": EventKind.SPEECH_STARTED,
            "speech_ended": EventKind.SPEECH_ENDED,
            "interrupted": EventKind.INTERRUPTED,
        }
        async for raw in self._ws:
            msg = json.loads(raw)
            self.emit(
                VendorEvent(
                    kinds[msg["type"]],
                    turn_id=msg["turn"],
                    interrupted=msg.get("interrupted", False),
                    played_s=msg.get("played_ms", 0) / 1000,
                )
            )

    async def _send(self, payload: bytes | dict[str, Any]) -> None:
        try:
            await self._ws.send(payload if isinstance(payload, bytes) else json.dumps(payload))
        except Exception as exc:
            raise vendor_unavailable("echo", str(exc)) from exc
        self.mark_activity()

    async def send_audio(self, turn_id: str, pcm: bytes, sample_rate_hertz: int) -> None:
        if turn_id not in self._started:
            self._started.add(turn_id)
            await self._send({"type": "audio_start", "turn": turn_id, "rate": sample_rate_hertz})
        await self._send(pcm)

    async def end_audio(self, turn_id: str) -> None:
        await self._send({"type": "audio_end", "turn": turn_id})

    async def send_text(self, turn_id: str, text: str, final: bool) -> None:
        await self._send({"type": "text", "turn": turn_id, "text": text, "final": final})

    async def interrupt(self, turn_id: str) -> None:
        await self._send({"type": "interrupt", "turn": turn_id})

    async def aclose(self) -> None:
        self.closed = True
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._reader
        await self._ws.close()


class EchoAdapter(VendorAdapter):
    capabilities = Capabilities(
        vendor="echo",
        display_name="Echo (test vendor)",
        sample_rates_hertz=(16000,),
        pacing=PacingRule(frame_ms=20, burst_frames=50, interval_ms=20),
        streaming_text=True,
        interrupt_ack=True,
        list_avatars=False,
        # Echo answers at once: a short wait for a missing end keeps its tests short.
        speech_end_timeout_s=2.0,
    )

    def __init__(self, settings: EchoSettings, *, sandbox: bool = False) -> None:
        super().__init__(sandbox=sandbox)
        assert settings.api_url is not None and settings.token is not None
        self.base = settings.api_url.rstrip("/")
        self.http = vendor_http_client(
            "echo",
            _endpoint,
            base_url=self.base,
            headers={"Authorization": f"Bearer {settings.token.get_secret_value()}"},
        )

    async def create_session(self, spec: SessionSpec) -> VendorSessionHandle:
        r = await self.http.post("/v1/sessions", json={"avatar_id": spec.avatar_id})
        r.raise_for_status()
        return VendorSessionHandle(r.json()["id"])

    async def session_status(self, handle: VendorSessionHandle) -> SessionStatus:
        r = await self.http.get(f"/v1/sessions/{handle.vendor_session_id}")
        if r.status_code == 404:
            return SessionStatus(ReadyState.CLOSED)
        return SessionStatus(ReadyState(r.json()["state"]))

    async def close_session(self, handle: VendorSessionHandle) -> None:
        r = await self.http.delete(f"/v1/sessions/{handle.vendor_session_id}")
        if r.status_code != 404:
            r.raise_for_status()

    async def open_channel(self, handle: VendorSessionHandle, session_id: str) -> DriveChannel:
        ws_url = self.base.replace("http://", "ws://", 1)
        ws = await connect(
            f"{ws_url}/v1/sessions/{handle.vendor_session_id}/drive",
            additional_headers=dict(self.http.headers),
        )
        return EchoChannel(ws)

    async def aclose(self) -> None:
        await self.http.aclose()
