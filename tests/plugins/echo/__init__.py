"""A test-only vendor plugin: proves a vendor is added without touching shared code.

Loaded through ``AVATAR_GATEWAY_PLUGINS=tests.plugins.echo`` like any out-of-tree vendor.
Its "cloud" (``emulator.py``) is a real HTTP + WebSocket server that checks a bearer token,
records the audio and text it receives, and answers with speech events.
"""

from __future__ import annotations

from core.plugin import VendorSpec
from tests.plugins.echo.adapter import EchoAdapter, EchoSettings

SPEC = VendorSpec(
    adapter_type=EchoAdapter,
    settings_type=EchoSettings,
    emulator="tests.plugins.echo.emulator:start_for_sandbox",
)
