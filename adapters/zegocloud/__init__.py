"""ZEGOCLOUD Digital Human plugin (docs/vendors/zegocloud.md)."""

from __future__ import annotations

from adapters.zegocloud.adapter import ZegocloudAdapter
from adapters.zegocloud.settings import ZegocloudSettings
from core.plugin import VendorSpec


def _create(settings: ZegocloudSettings, sandbox: bool) -> ZegocloudAdapter:
    return ZegocloudAdapter(settings, sandbox=sandbox)


SPEC = VendorSpec(
    vendor="zegocloud",
    capabilities=ZegocloudAdapter.capabilities,
    settings_type=ZegocloudSettings,
    create_adapter=_create,
    options_field="zegocloud",
    emulator="adapters.zegocloud.sandbox:start",
)

__all__ = ["SPEC", "ZegocloudAdapter", "ZegocloudSettings"]
