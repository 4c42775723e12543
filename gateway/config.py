"""Gateway configuration from the environment (design.md §5: these names are a contract).

pydantic-settings with prefix ``AVATAR_GATEWAY_`` and nested delimiter ``__``, e.g.
``AVATAR_GATEWAY_ZEGOCLOUD__APP_ID``. Secrets are ``SecretStr`` so they never reach logs or
reprs. A vendor counts as configured when its credentials are set; with none configured
the gateway runs in sandbox mode against the in-process emulators.
"""

from __future__ import annotations

from pydantic import BaseModel, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class ZegocloudSettings(BaseModel):
    """ZEGOCLOUD Digital Human credentials (vendor-protocols §1.2)."""

    app_id: int | None = None
    server_secret: SecretStr | None = None
    api_url: str = "https://aigc-digitalhuman-api.zegotech.cn/"
    # Secret ZEGO support configured for drive-status callbacks (§1.6).
    callback_secret: SecretStr | None = None
    # Default TTS timbre for text drives (DriveByText TTSConfig.TimbreId is required).
    timbre_id: str = "zego_timbre_en_female"

    @property
    def configured(self) -> bool:
        """Whether credentials are set."""
        return self.app_id is not None and self.server_secret is not None


class TencentSettings(BaseModel):
    """Tencent Cloud IVH credentials (vendor-protocols §2.2)."""

    appkey: str | None = None
    access_token: SecretStr | None = None
    api_url: str = "https://gw.tvs.qq.com"
    project_id: str | None = None
    heartbeat_interval_s: float = 45.0

    @property
    def configured(self) -> bool:
        """Whether credentials are set."""
        return self.appkey is not None and self.access_token is not None


class AkoolSettings(BaseModel):
    """Akool credentials and the LiveKit server the gateway joins (vendor-protocols §3.1)."""

    api_key: SecretStr | None = None
    client_id: str | None = None
    client_secret: SecretStr | None = None
    api_url: str = "https://openapi.akool.com"
    livekit_url: str | None = None
    livekit_api_key: str | None = None
    livekit_api_secret: SecretStr | None = None

    @property
    def configured(self) -> bool:
        """Whether credentials are set."""
        return self.api_key is not None or (
            self.client_id is not None and self.client_secret is not None
        )


class Settings(BaseSettings):
    """All gateway settings. See README "Configuration" for every variable."""

    model_config = SettingsConfigDict(
        env_prefix="AVATAR_GATEWAY_", env_nested_delimiter="__", extra="ignore"
    )

    listen: str = "127.0.0.1:50051"
    # Ops HTTP listener: vendor callbacks, /metrics, /healthz, /sandbox.
    ops_listen: str = "127.0.0.1:8081"
    # Public base URL of the ops listener as the vendors reach it (ZEGO callback URL).
    public_url: str | None = None
    sandbox: bool | None = None
    # Which emulators the sandbox starts (comma-separated vendor ids).
    sandbox_vendors: str = "zegocloud,tencent,akool"
    redis_url: str | None = None
    # Event loop of `avatar-gateway serve`: uvloop (less CPU per chunk, and its TLS does not
    # preallocate 256 KiB per connection as asyncio's does) or the standard asyncio loop.
    event_loop: str = "uvloop"
    log_level: str = "info"
    log_format: str = "auto"  # auto | json | console
    shutdown_grace_s: float = 20.0
    reaper_interval_s: float = 5.0
    create_timeout_s: float = 60.0
    default_idle_timeout_s: float = 300.0
    default_max_duration_s: float = 3600.0
    max_sessions: int = 1000
    zegocloud: ZegocloudSettings = ZegocloudSettings()
    tencent: TencentSettings = TencentSettings()
    akool: AkoolSettings = AkoolSettings()

    @property
    def sandbox_enabled(self) -> bool:
        """Sandbox when asked, or by default when no vendor has credentials."""
        if self.sandbox is not None:
            return self.sandbox
        return not (self.zegocloud.configured or self.tencent.configured or self.akool.configured)
