"""Sandbox mode: run vendors' emulators in-process and point their adapters at them.

Only when asked for (``--sandbox``, ``AVATAR_GATEWAY_SANDBOX=true``): it lets the gateway
work on a fresh machine (``make demo``) and is never a fallback for missing credentials. Each
vendor plugin names its emulator factory (:attr:`core.plugin.VendorSpec.emulator`); it is
imported only here, only when asked.
Credentials are generated per run; emulators verify signatures with them exactly as the
vendors would.
"""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

import structlog

from core.plugin import EmulatorFactory, SandboxContext, SandboxVendor, VendorSettings
from gateway.vendors import PluginError, VendorRegistry

log = structlog.get_logger("gateway.sandbox")
T = TypeVar("T")


class Sandbox(SandboxContext):
    """The in-process emulators of a sandboxed gateway.

    Args:
        callback_base_url: the ops listener's base URL (vendor callbacks go there).
    """

    def __init__(self, callback_base_url: str) -> None:
        self.callback_base_url = callback_base_url.rstrip("/")
        self.vendors: dict[str, SandboxVendor] = {}
        self._shared: dict[str, tuple[Any, Callable[[Any], Awaitable[None]]]] = {}

    @property
    def emulators(self) -> dict[str, Any]:
        """The running emulators by vendor id (tests read their records)."""
        return {vendor: sv.emulator for vendor, sv in self.vendors.items()}

    async def shared(
        self,
        key: str,
        start: Callable[[], Awaitable[T]],
        stop: Callable[[T], Awaitable[None]],
    ) -> T:
        """See :meth:`core.plugin.SandboxContext.shared`."""
        if key not in self._shared:
            resource = await start()
            self._shared[key] = (resource, cast(Callable[[Any], Awaitable[None]], stop))
        return cast(T, self._shared[key][0])

    async def start(
        self,
        registry: VendorRegistry,
        wanted: list[str],
        vendor_settings: dict[str, VendorSettings],
    ) -> dict[str, VendorSettings]:
        """Start the emulators of ``wanted``; return ``vendor_settings`` pointing at them.

        A vendor whose emulator cannot start (e.g. no livekit-server binary) is left out
        with a warning that says why and how to fix it.

        Raises:
            PluginError: ``wanted`` names a vendor that is not registered or has no emulator,
                or no emulator of ``wanted`` could start (the message gives each reason).
        """
        out = dict(vendor_settings)
        # Every name is checked before anything starts, so a typo leaves nothing running.
        factories: list[tuple[str, str]] = []
        for vendor in wanted:
            spec = registry.get(vendor)
            if spec is None or spec.emulator is None:
                known = sorted(registry.specs)
                raise PluginError(f"sandbox vendor {vendor!r} has no emulator (known: {known})")
            factories.append((vendor, spec.emulator))
        failures: dict[str, str] = {}
        for vendor, emulator in factories:
            module_name, _, func = emulator.partition(":")
            try:
                module = importlib.import_module(module_name)
            except ImportError as exc:
                failures[vendor] = (
                    f"{exc}; the emulators need the 'sandbox' extra: "
                    f"pip install -c constraints.txt -e '.[sandbox]' (or `make venv`)"
                )
                log.warning("sandbox_vendor_disabled", vendor=vendor, reason=failures[vendor])
                continue
            factory = cast(EmulatorFactory, getattr(module, func))
            try:
                running = await factory(self, vendor_settings[vendor])
            except Exception as exc:
                failures[vendor] = str(exc)
                log.warning("sandbox_vendor_disabled", vendor=vendor, reason=failures[vendor])
                continue
            self.vendors[vendor] = running
            out[vendor] = running.settings
        if factories and not self.vendors:
            await self.stop()
            reasons = "; ".join(f"{vendor}: {why}" for vendor, why in failures.items())
            raise PluginError(f"no sandbox vendor could start ({reasons})")
        return out

    def describe(self) -> dict[str, str]:
        """Admin base URLs of the emulators (their ``/_emulator/state`` lives there)."""
        return {vendor: sv.admin_url for vendor, sv in self.vendors.items()}

    async def stop(self) -> None:
        """Stop every emulator, then the shared resources (e.g. the LiveKit server)."""
        for running in self.vendors.values():
            await running.stop()
        for resource, stop in reversed(list(self._shared.values())):
            await stop(resource)
        self._shared.clear()
