"""The Tencent IVH emulator for the sandbox (imported only when a sandbox asks for it)."""

from __future__ import annotations

import secrets

from pydantic import SecretStr

from adapters.tencent.settings import TencentSettings
from core.plugin import SandboxContext, SandboxVendor
from emulators.tencent import TencentEmulator


async def start(ctx: SandboxContext, current: TencentSettings) -> SandboxVendor:
    """Start a Tencent IVH emulator with a fresh appkey and access token."""
    appkey, token = secrets.token_hex(16), secrets.token_hex(16)
    emulator = TencentEmulator(appkey=appkey, access_token=token)
    await emulator.start()
    settings = current.model_copy(
        update={
            "appkey": appkey,
            "access_token": SecretStr(token),
            "api_url": emulator.base_url,
            "project_id": current.project_id or "sandbox-project",
        }
    )
    return SandboxVendor(settings, emulator, str(emulator.base_url), emulator.stop)
