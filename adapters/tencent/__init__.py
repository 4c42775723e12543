"""Tencent Cloud IVH plugin (docs/vendors/tencent.md)."""

from __future__ import annotations

from adapters.tencent.adapter import TencentAdapter
from adapters.tencent.settings import TencentSettings
from core.plugin import VendorSpec


def _create(settings: TencentSettings, sandbox: bool) -> TencentAdapter:
    return TencentAdapter(settings, sandbox=sandbox)


SPEC = VendorSpec(
    vendor="tencent",
    capabilities=TencentAdapter.capabilities,
    settings_type=TencentSettings,
    create_adapter=_create,
    options_field="tencent",
    emulator="adapters.tencent.sandbox:start",
)

__all__ = ["SPEC", "TencentAdapter", "TencentSettings"]
