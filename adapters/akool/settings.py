"""Akool settings: ``AVATAR_GATEWAY_AKOOL__*`` (akool.md §1)."""

from __future__ import annotations

from pydantic import SecretStr

from core.plugin import VendorSettings, vendor_settings_config


class AkoolSettings(VendorSettings):
    """Akool credentials and the LiveKit server the gateway joins (akool.md §1, §4).

    Attributes:
        api_key: the ``x-api-key`` (or use ``client_id`` + ``client_secret``).
        client_id: client id of the token flow.
        client_secret: client secret of the token flow.
        api_url: REST base URL.
        livekit_url: the LiveKit server the sessions' rooms live on.
        livekit_api_key: LiveKit API key (the gateway mints room tokens).
        livekit_api_secret: LiveKit API secret.
    """

    # Audio drive exists only on the caller's own LiveKit server (akool.md §6), so the
    # LiveKit credentials belong to every set.
    credential_sets = (
        ("api_key", "livekit_url", "livekit_api_key", "livekit_api_secret"),
        ("client_id", "client_secret", "livekit_url", "livekit_api_key", "livekit_api_secret"),
    )
    endpoint_fields = ("api_url", "livekit_url")
    model_config = vendor_settings_config("akool")

    api_key: SecretStr | None = None
    client_id: str | None = None
    client_secret: SecretStr | None = None
    api_url: str = "https://openapi.akool.com"
    livekit_url: str | None = None
    livekit_api_key: str | None = None
    livekit_api_secret: SecretStr | None = None
