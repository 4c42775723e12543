"""The ZEGOCLOUD emulator for the sandbox (imported only when a sandbox asks for it)."""

from __future__ import annotations

import secrets

from pydantic import SecretStr

from adapters.zegocloud.settings import ZegocloudSettings
from core.plugin import SandboxContext, SandboxVendor
from emulators.zegocloud import ZegocloudEmulator

SANDBOX_APP_ID = 1234567890


async def start(ctx: SandboxContext, current: ZegocloudSettings) -> SandboxVendor:
    """Start a ZEGOCLOUD emulator with fresh secrets; its callbacks go to the gateway."""
    server_secret, callback_secret = secrets.token_hex(16), secrets.token_hex(8)
    emulator = ZegocloudEmulator(
        app_id=SANDBOX_APP_ID,
        server_secret=server_secret,
        callback_url=f"{ctx.callback_base_url}/callbacks/zegocloud",
        callback_secret=callback_secret,
    )
    await emulator.start()
    settings = current.model_copy(
        update={
            "app_id": SANDBOX_APP_ID,
            "server_secret": SecretStr(server_secret),
            "callback_secret": SecretStr(callback_secret),
            "api_url": emulator.rest.base_url + "/",
        }
    )
    return SandboxVendor(settings, emulator, str(emulator.rest.base_url), emulator.stop)
