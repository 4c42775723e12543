"""The Akool emulator and its LiveKit server for the sandbox (imported only by a sandbox)."""

from __future__ import annotations

import secrets

from pydantic import SecretStr

from adapters.akool.settings import AkoolSettings
from core.plugin import SandboxContext, SandboxVendor
from emulators.akool import AkoolEmulator
from emulators.livekit_server import LiveKitServer


async def _start_livekit() -> LiveKitServer:
    livekit = LiveKitServer()
    await livekit.start()
    return livekit


async def _stop_livekit(livekit: LiveKitServer) -> None:
    await livekit.stop()


async def start(ctx: SandboxContext, current: AkoolSettings) -> SandboxVendor:
    """Start the Akool emulator on the sandbox's LiveKit server (started on first use)."""
    livekit = await ctx.shared("livekit", _start_livekit, _stop_livekit)
    api_key = secrets.token_hex(16)
    emulator = AkoolEmulator.on_livekit(
        livekit, api_key=api_key, client_id="sandbox-client", client_secret=api_key
    )
    await emulator.start()
    settings = current.model_copy(
        update={
            "api_key": SecretStr(api_key),
            "api_url": emulator.base_url,
            "livekit_url": livekit.url,
            "livekit_api_key": livekit.api_key,
            "livekit_api_secret": SecretStr(livekit.api_secret),
        }
    )
    return SandboxVendor(settings, emulator, str(emulator.base_url), emulator.stop)
