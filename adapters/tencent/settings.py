"""Tencent IVH settings: ``AVATAR_GATEWAY_TENCENT__*`` (tencent.md §2)."""

from __future__ import annotations

from pydantic import SecretStr

from core.plugin import VendorSettings, vendor_settings_config


class TencentSettings(VendorSettings):
    """Tencent Cloud IVH credentials (tencent.md §2).

    Attributes:
        appkey: the appkey that signs requests.
        access_token: the access token (HMAC-SHA256 key).
        api_url: https base URL; the command channel's wss URL is derived from it.
        project_id: the virtual-person project (``VirtualmanProjectId``).
        heartbeat_interval_s: SEND_HEARTBEAT interval (s) on an idle channel (tencent.md §7).
    """

    credential_sets = (("appkey", "access_token"),)
    model_config = vendor_settings_config("tencent")

    appkey: str | None = None
    access_token: SecretStr | None = None
    api_url: str = "https://gw.tvs.qq.com"
    project_id: str | None = None
    heartbeat_interval_s: float = 45.0
