"""Which adapters a gateway process runs, built from settings.

Vendor ids are strings (AIP-126: vendors are added often). A vendor is enabled when it has
credentials, or in sandbox mode, where every vendor points at its in-process emulator.
"""

from __future__ import annotations

from adapters.base import VendorAdapter
from gateway.config import Settings


def build_adapters(settings: Settings, *, sandbox: bool) -> dict[str, VendorAdapter]:
    """Instantiate the adapters of every configured vendor, keyed by vendor id."""
    adapters: dict[str, VendorAdapter] = {}
    if settings.zegocloud.configured:
        from adapters.zegocloud import ZegocloudAdapter

        adapters["zegocloud"] = ZegocloudAdapter(settings.zegocloud, sandbox=sandbox)
    if settings.tencent.configured:
        try:
            from adapters.tencent import TencentAdapter
        except ImportError:  # pragma: no cover - the Tencent adapter is being added
            pass
        else:
            adapters["tencent"] = TencentAdapter(settings.tencent, sandbox=sandbox)
    if settings.akool.configured:
        try:
            from adapters.akool import AkoolAdapter
        except ImportError:  # pragma: no cover - the Akool adapter is being added
            pass
        else:
            adapters["akool"] = AkoolAdapter(settings.akool, sandbox=sandbox)
    return adapters
