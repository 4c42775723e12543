"""Akool Streaming Avatar plugin (docs/vendors/akool.md): REST sessions, LiveKit-room drive."""

from __future__ import annotations

from adapters.akool.adapter import AkoolAdapter
from adapters.akool.settings import AkoolSettings
from core.plugin import VendorSpec

SPEC = VendorSpec(
    adapter_type=AkoolAdapter,
    settings_type=AkoolSettings,
    options_field="akool",
    emulator="adapters.akool.sandbox:start",
    standalone_emulator="adapters.akool.sandbox:standalone",
)

__all__ = ["SPEC", "AkoolAdapter", "AkoolSettings"]
