"""The Akool emulator for the sandbox (with its LiveKit server) and ``avatar-gateway emulate``.

Imported only when a sandbox or that command asks for it.
"""

from __future__ import annotations

import secrets

from pydantic import SecretStr

from adapters.akool.settings import AkoolSettings
from core.plugin import (
    MissingSettingsError,
    SandboxContext,
    SandboxVendor,
    StandaloneContext,
    StandaloneEmulator,
)
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


async def standalone(ctx: StandaloneContext, current: AkoolSettings) -> StandaloneEmulator:
    """Serve an Akool emulator that accepts the gateway's credentials, on its LiveKit server.

    The LiveKit server is the gateway's (``livekit_url``, a service of its own in compose):
    the emulator verifies and mints room tokens with its key pair, hands ``livekit_url`` out
    to clients, and its avatars join by ``ctx.internal_livekit_url`` when that is set (the
    emulator reaches LiveKit by another name than the gateway), else by the URL a session's
    credentials name. An auth flow the settings leave unset (API key, or client id and
    secret) gets an unguessable credential, so it rejects every caller.

    Raises:
        MissingSettingsError: no API key nor client id and secret, or a LiveKit setting unset.
    """
    missing = current.unset_variables("livekit_url", "livekit_api_key", "livekit_api_secret")
    # Checked field by field: whether the settings count as "configured" is the gateway's
    # rule, and this message must name the auth variables only when they are what is missing.
    if current.api_key is None and (current.client_id is None or current.client_secret is None):
        prefix = "AVATAR_GATEWAY_AKOOL__"
        missing.insert(0, f"{prefix}API_KEY (or {prefix}CLIENT_ID and {prefix}CLIENT_SECRET)")
    if (
        missing
        or current.livekit_url is None
        or current.livekit_api_key is None
        or current.livekit_api_secret is None
    ):
        raise MissingSettingsError(missing)
    emulator = AkoolEmulator(
        api_key=_secret_or_random(current.api_key),
        client_id=current.client_id or secrets.token_hex(16),
        client_secret=_secret_or_random(current.client_secret),
        livekit_url=current.livekit_url,
        livekit_api_key=current.livekit_api_key,
        livekit_api_secret=current.livekit_api_secret.get_secret_value(),
        host=ctx.host,
        port=ctx.port,
        tls=ctx.tls,
        public_url=ctx.public_url,
        avatar_livekit_url=ctx.internal_livekit_url,
    )
    await emulator.start()
    return StandaloneEmulator(
        emulator, emulator.port, emulator.base_url, emulator.base_url, emulator.stop
    )


def _secret_or_random(value: SecretStr | None) -> str:
    return value.get_secret_value() if value is not None else secrets.token_hex(32)
