"""Sandbox mode: run every vendor's emulator in-process and point the adapters at them.

With no vendor credentials configured this is the default, so the gateway works on a fresh
machine (``make demo``). Credentials are generated per run; emulators verify signatures
with them exactly as the vendors would.
"""

from __future__ import annotations

import secrets
from typing import Any

import structlog
from pydantic import SecretStr

from emulators.zegocloud import ZegocloudEmulator
from gateway.config import Settings

log = structlog.get_logger("gateway.sandbox")


class Sandbox:
    """The in-process emulators of a sandboxed gateway.

    Args:
        callback_base_url: the ops listener's base URL (vendor callbacks go there).
    """

    def __init__(self, callback_base_url: str) -> None:
        self.callback_base_url = callback_base_url.rstrip("/")
        self.emulators: dict[str, Any] = {}
        self._livekit: Any = None

    async def start(self, settings: Settings) -> Settings:
        """Start the emulators; return a copy of ``settings`` pointing every vendor at them."""
        updates: dict[str, Any] = {}
        wanted = {v.strip() for v in settings.sandbox_vendors.split(",") if v.strip()}
        if "zegocloud" in wanted:
            updates.update(await self._start_zegocloud(settings))
        if "tencent" in wanted:
            updates.update(await self._start_tencent(settings))
        if "akool" in wanted:
            updates.update(await self._start_akool(settings))
        return settings.model_copy(update=updates)

    async def _start_zegocloud(self, settings: Settings) -> dict[str, Any]:
        zego_secret = secrets.token_hex(16)
        zego_callback_secret = secrets.token_hex(8)
        zego = ZegocloudEmulator(
            app_id=1234567890,
            server_secret=zego_secret,
            callback_url=f"{self.callback_base_url}/callbacks/zegocloud",
            callback_secret=zego_callback_secret,
        )
        await zego.start()
        self.emulators["zegocloud"] = zego
        return {
            "zegocloud": settings.zegocloud.model_copy(
                update={
                    "app_id": 1234567890,
                    "server_secret": SecretStr(zego_secret),
                    "callback_secret": SecretStr(zego_callback_secret),
                    "api_url": zego.rest.base_url + "/",
                }
            )
        }

    async def _start_tencent(self, settings: Settings) -> dict[str, Any]:
        try:
            from emulators.tencent import TencentEmulator
        except ImportError:
            return {}
        appkey, token = secrets.token_hex(16), secrets.token_hex(16)
        emulator = TencentEmulator(appkey=appkey, access_token=token)
        await emulator.start()
        self.emulators["tencent"] = emulator
        return {
            "tencent": settings.tencent.model_copy(
                update={
                    "appkey": appkey,
                    "access_token": SecretStr(token),
                    "api_url": emulator.base_url,
                    "project_id": settings.tencent.project_id or "sandbox-project",
                }
            )
        }

    async def _start_akool(self, settings: Settings) -> dict[str, Any]:
        try:
            from emulators.akool import AkoolEmulator
            from emulators.livekit_server import LiveKitServer
        except ImportError:
            return {}
        try:
            livekit = LiveKitServer()
            await livekit.start()
        except Exception as exc:  # no binary: the sandbox runs without Akool and says why
            log.warning("sandbox_akool_disabled", reason=str(exc))
            return {}
        self._livekit = livekit
        api_key = secrets.token_hex(16)
        emulator = AkoolEmulator.on_livekit(
            livekit,
            api_key=api_key,
            client_id="sandbox-client",
            client_secret=api_key,
        )
        await emulator.start()
        self.emulators["akool"] = emulator
        return {
            "akool": settings.akool.model_copy(
                update={
                    "api_key": SecretStr(api_key),
                    "api_url": emulator.base_url,
                    "livekit_url": livekit.url,
                    "livekit_api_key": livekit.api_key,
                    "livekit_api_secret": SecretStr(livekit.api_secret),
                }
            )
        }

    def describe(self) -> dict[str, str]:
        """Admin base URLs of the emulators (their ``/_emulator/state`` lives there)."""
        out: dict[str, str] = {}
        for vendor, emulator in self.emulators.items():
            rest = getattr(emulator, "rest", emulator)
            out[vendor] = str(rest.base_url)
        return out

    async def stop(self) -> None:
        """Stop every emulator (and the LiveKit server)."""
        for emulator in self.emulators.values():
            await emulator.stop()
        if self._livekit is not None:
            await self._livekit.stop()
