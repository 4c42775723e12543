"""The vendor registry: which vendor plugins exist, their settings, and their adapters.

Vendor ids are strings (AIP-126: vendors are added often). Plugins are found through the
``avatar_gateway.vendors`` entry-point group (``pyproject.toml`` registers the shipped
vendors) and through ``AVATAR_GATEWAY_PLUGINS`` (modules exporting ``SPEC``). The server
imports no vendor package by name (docs/architecture.md §2).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Iterator
from importlib.metadata import entry_points

from core.contract import VendorAdapter
from core.plugin import VendorSettings, VendorSpec
from core.resilience import RateLimitStorage
from gateway.config import Settings

ENTRY_POINT_GROUP = "avatar_gateway.vendors"


class PluginError(Exception):
    """A plugin could not be loaded, or two plugins claim one vendor id."""


def _load_module_spec(module_name: str) -> VendorSpec:
    module_name, _, attr = module_name.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise PluginError(f"vendor plugin {module_name!r} cannot be imported: {exc}") from exc
    spec = getattr(module, attr or "SPEC", None)
    if not isinstance(spec, VendorSpec):
        raise PluginError(f"vendor plugin {module_name!r} has no VendorSpec {attr or 'SPEC'!r}")
    return spec


class NoVendorConfigured(PluginError):
    """Production mode with no vendor's credentials set: the gateway would serve nothing."""


class VendorRegistry:
    """The registered vendor specs of one process, by vendor id.

    Args:
        specs: the specs; vendor ids must be unique.

    Raises:
        PluginError: two specs share a vendor id.
    """

    def __init__(self, specs: Iterable[VendorSpec]) -> None:
        self.specs: dict[str, VendorSpec] = {}
        for spec in specs:
            if spec.vendor in self.specs:
                raise PluginError(f"two vendor plugins claim the vendor id {spec.vendor!r}")
            self.specs[spec.vendor] = spec

    @classmethod
    def discover(cls, extra_modules: Iterable[str] = ()) -> VendorRegistry:
        """Specs from the entry-point group, then from ``extra_modules`` (``module[:attr]``).

        Raises:
            PluginError: a plugin cannot be loaded, or a vendor id is claimed twice.
        """
        specs: list[VendorSpec] = []
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            spec = ep.load()
            if not isinstance(spec, VendorSpec):
                raise PluginError(f"entry point {ep.name!r} is not a VendorSpec")
            specs.append(spec)
        specs.extend(_load_module_spec(name) for name in extra_modules)
        return cls(specs)

    def __iter__(self) -> Iterator[VendorSpec]:
        return iter(self.specs.values())

    def __contains__(self, vendor: object) -> bool:
        return vendor in self.specs

    def get(self, vendor: str) -> VendorSpec | None:
        """The spec of ``vendor``, or ``None``."""
        return self.specs.get(vendor)

    def vendor_settings(self, settings: Settings) -> dict[str, VendorSettings]:
        """Every vendor's settings: given in ``settings.vendors``, else read from the env."""
        out: dict[str, VendorSettings] = {}
        for spec in self:
            given = settings.vendors.get(spec.vendor)
            if given is None:
                given = spec.settings_type()
            elif not isinstance(given, spec.settings_type):
                given = spec.settings_type.model_validate(given)
            out[spec.vendor] = given
        return out

    def offered(self, vendor_settings: dict[str, VendorSettings]) -> list[str]:
        """The vendors whose credentials are complete, in registration order."""
        return [v for v, vs in vendor_settings.items() if v in self.specs and vs.configured]

    def require_offered(self, vendor_settings: dict[str, VendorSettings]) -> list[str]:
        """:meth:`offered`, refusing an empty result (production mode never falls back).

        Raises:
            NoVendorConfigured: no vendor has complete credentials; the one-line message
                names, per vendor, the variables to set.
        """
        offered = self.offered(vendor_settings)
        if not offered:
            needed = "; ".join(
                f"{spec.vendor}: {spec.settings_type.required_variables()}" for spec in self
            )
            raise NoVendorConfigured(
                f"no vendor is configured, so there is nothing to serve. Set the credentials "
                f"of at least one vendor ({needed}), or run `avatar-gateway serve --sandbox` "
                f"for the local vendor emulators"
            )
        return offered

    def build_adapters(
        self,
        vendor_settings: dict[str, VendorSettings],
        *,
        sandbox: bool,
        rate_limits: RateLimitStorage | None = None,
    ) -> dict[str, VendorAdapter]:
        """Instantiate the adapter of every configured vendor, keyed by vendor id.

        Args:
            vendor_settings: every vendor's settings.
            sandbox: whether the vendors are the local emulators.
            rate_limits: where vendor rate limits are counted when replicas share them
                (Redis); ``None``: in each adapter's process.
        """
        adapters: dict[str, VendorAdapter] = {}
        for spec in self:
            vs = vendor_settings.get(spec.vendor)
            if vs is not None and vs.configured:
                adapter = spec.create_adapter(vs, sandbox)
                if rate_limits is not None:
                    adapter.share_rate_limits(rate_limits, vs.account_id)
                adapters[spec.vendor] = adapter
        return adapters
