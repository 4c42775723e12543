"""The Tencent IVH emulator for the sandbox and for ``avatar-gateway emulate tencent``.

Imported only when a sandbox or that command asks for it.
"""

from __future__ import annotations

import secrets

from pydantic import SecretStr

from adapters.tencent.settings import TencentSettings
from core.plugin import (
    MissingSettingsError,
    SandboxContext,
    SandboxVendor,
    StandaloneContext,
    StandaloneEmulator,
)
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


async def standalone(ctx: StandaloneContext, current: TencentSettings) -> StandaloneEmulator:
    """Serve a Tencent IVH emulator that accepts the gateway's appkey and access token.

    The command channel is on the same port; clients derive its ``ws(s)://`` URL from the
    API URL (tencent.md §1), so the emulator hands out no URL of its own.

    Raises:
        MissingSettingsError: appkey or access token unset.
    """
    missing = current.unset_variables("appkey", "access_token")
    if missing or current.appkey is None or current.access_token is None:
        raise MissingSettingsError(missing)
    emulator = TencentEmulator(
        appkey=current.appkey,
        access_token=current.access_token.get_secret_value(),
        host=ctx.host,
        port=ctx.port,
        tls=ctx.tls,
        public_url=ctx.public_url,
    )
    await emulator.start()
    return StandaloneEmulator(
        emulator, emulator.port, emulator.base_url, emulator.base_url, emulator.stop
    )
