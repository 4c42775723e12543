"""ZEGOCLOUD Digital Human plugin (docs/vendors/zegocloud.md)."""

from __future__ import annotations

from adapters.zegocloud.adapter import ZegocloudAdapter
from adapters.zegocloud.settings import ZegocloudSettings
from core.plugin import VendorSpec

SPEC = VendorSpec(
    adapter_type=ZegocloudAdapter,
    settings_type=ZegocloudSettings,
    options_field="zegocloud",
    emulator="adapters.zegocloud.sandbox:start",
    standalone_emulator="adapters.zegocloud.sandbox:standalone",
)

__all__ = ["SPEC", "ZegocloudAdapter", "ZegocloudSettings"]
