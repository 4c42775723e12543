"""Tencent Cloud IVH plugin (docs/vendors/tencent.md)."""

from __future__ import annotations

from adapters.tencent.adapter import TencentAdapter
from adapters.tencent.settings import TencentSettings
from core.plugin import VendorSpec

SPEC = VendorSpec(
    adapter_type=TencentAdapter,
    settings_type=TencentSettings,
    options_field="tencent",
    emulator="adapters.tencent.sandbox:start",
    standalone_emulator="adapters.tencent.sandbox:standalone",
)

__all__ = ["SPEC", "TencentAdapter", "TencentSettings"]
