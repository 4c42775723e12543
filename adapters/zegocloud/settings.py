"""ZEGOCLOUD settings: ``AVATAR_GATEWAY_ZEGOCLOUD__*`` (zegocloud.md §2)."""

from __future__ import annotations

from pydantic import SecretStr

from core.plugin import VendorSettings, vendor_settings_config


class ZegocloudSettings(VendorSettings):
    """ZEGOCLOUD Digital Human credentials (zegocloud.md §2).

    Attributes:
        app_id: the project's AppId.
        server_secret: the ServerSecret that signs REST calls.
        api_url: REST base URL.
        callback_secret: the secret ZEGO support configured for drive-status callbacks
            (zegocloud.md §6).
        timbre_id: default TTS timbre of text drives (DriveByText ``TTSConfig.TimbreId`` is
            required).
        prepare_drive_socket: ask for each audio turn's ``DriveByWsStream`` and open its
            socket while the task is idle, so the turn's first frame only waits for ``Start``
            (zegocloud.md §8.6). Costs one DriveByWsStream per session that is never used.
    """

    credential_sets = (("app_id", "server_secret"),)
    model_config = vendor_settings_config("zegocloud")

    app_id: int | None = None
    server_secret: SecretStr | None = None
    api_url: str = "https://aigc-digitalhuman-api.zegotech.cn/"
    callback_secret: SecretStr | None = None
    timbre_id: str = "zego_timbre_en_female"
    prepare_drive_socket: bool = True

    @property
    def account_id(self) -> str:
        """The AppId: ZEGO limits each Action, counted per AppId (inferred, zegocloud.md §1)."""
        return str(self.app_id) if self.app_id is not None else "default"
