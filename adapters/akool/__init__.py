"""Akool Streaming Avatar plugin (docs/vendors/akool.md): REST sessions, LiveKit-room drive."""

from __future__ import annotations

from adapters.akool.adapter import AkoolAdapter
from adapters.akool.settings import AkoolSettings
from core.plugin import VendorSpec


def _create(settings: AkoolSettings, sandbox: bool) -> AkoolAdapter:
    return AkoolAdapter(settings, sandbox=sandbox)


SPEC = VendorSpec(
    vendor="akool",
    capabilities=AkoolAdapter.capabilities,
    settings_type=AkoolSettings,
    create_adapter=_create,
    options_field="akool",
    emulator="adapters.akool.sandbox:start",
)

__all__ = ["SPEC", "AkoolAdapter", "AkoolSettings"]
