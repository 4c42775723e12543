"""The ZEGOCLOUD emulator for the sandbox and for ``avatar-gateway emulate zegocloud``.

Imported only when a sandbox or that command asks for it.
"""

from __future__ import annotations

import secrets

from pydantic import SecretStr

from adapters.zegocloud.settings import ZegocloudSettings
from core.plugin import (
    MissingSettingsError,
    SandboxContext,
    SandboxVendor,
    StandaloneContext,
    StandaloneEmulator,
)
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


async def standalone(ctx: StandaloneContext, current: ZegocloudSettings) -> StandaloneEmulator:
    """Serve a ZEGOCLOUD emulator that accepts the gateway's credentials (``current``).

    REST and the drive socket share the one port of ``ctx`` (``WssAddress`` is
    ``ws(s)://<public URL>/ws``), and drive-status callbacks, which the gateway needs to know
    when the avatar speaks, go to ``ctx.callback_url`` signed with ``callback_secret``.

    Raises:
        MissingSettingsError: app id, server secret, callback secret or callback URL unset.
    """
    missing = current.unset_variables("app_id", "server_secret", "callback_secret")
    if ctx.callback_url is None:
        missing.append("--callback-url (or AVATAR_GATEWAY_EMULATOR__CALLBACK_URL)")
    if missing or current.app_id is None or current.server_secret is None:
        raise MissingSettingsError(missing)
    emulator = ZegocloudEmulator(
        app_id=current.app_id,
        server_secret=current.server_secret.get_secret_value(),
        callback_url=ctx.callback_url,
        callback_secret=(
            current.callback_secret.get_secret_value() if current.callback_secret else ""
        ),
        host=ctx.host,
        port=ctx.port,
        tls=ctx.tls,
        public_url=ctx.public_url,
        single_port=True,
    )
    await emulator.start()
    url = emulator.rest.base_url
    return StandaloneEmulator(emulator, emulator.rest.port, url + "/", url, emulator.stop)
