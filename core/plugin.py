"""What a vendor plugin declares: one :class:`VendorSpec` per vendor package.

The server finds specs through the ``avatar_gateway.vendors`` entry-point group (the
packages this distribution ships) and through ``AVATAR_GATEWAY_PLUGINS`` (extra modules,
each exporting ``SPEC``). Configuration, the sandbox, ``ListVendors`` and the check of
``CreateSessionRequest.vendor_options`` all loop over the registered specs, so adding a
vendor adds a package (and its proto options message) and touches no shared file
(docs/architecture.md §2).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from pydantic_settings import SettingsConfigDict

from core.contract import Capabilities, VendorAdapter
from core.settings import FileSettings

T = TypeVar("T")


class VendorSettings(FileSettings):
    """Base of every vendor's settings model.

    Each vendor subclasses it with its credentials and URLs, sets
    ``model_config = vendor_settings_config("<vendor>")`` (so its variables are
    ``AVATAR_GATEWAY_<VENDOR>__<FIELD>``, the configuration contract of the README; each may
    also come from a file, :mod:`core.settings`) and names its credentials in
    ``credential_sets``. Secrets are ``pydantic.SecretStr`` so they never reach logs or reprs.

    Attributes:
        credential_sets: the alternative sets of fields that authenticate the vendor (e.g.
            an API key, or a client id with its secret); the vendor is configured when every
            field of one set is given.
        endpoint_fields: the fields holding the vendor URLs the gateway calls (logged at start).
    """

    model_config = SettingsConfigDict(extra="ignore")
    credential_sets: ClassVar[tuple[tuple[str, ...], ...]] = ()
    endpoint_fields: ClassVar[tuple[str, ...]] = ("api_url",)

    @property
    def configured(self) -> bool:
        """Whether every field of one credential set is given (the vendor is then offered)."""
        return any(
            all(getattr(self, name) is not None for name in fields)
            for fields in self.credential_sets
        )

    @property
    def partially_configured(self) -> bool:
        """Some credential is given but no set is complete (a Secret mounted in part)."""
        given = any(
            getattr(self, name) is not None for fields in self.credential_sets for name in fields
        )
        return given and not self.configured

    @classmethod
    def variable(cls, field: str) -> str:
        """The environment variable of ``field``, e.g. ``AVATAR_GATEWAY_AKOOL__API_KEY``."""
        return f"{cls.model_config.get('env_prefix', '')}{field}".upper()

    @classmethod
    def required_variables(cls) -> str:
        """The credential variables in words, e.g. ``A, B and either C or D with E``."""
        sets = cls.credential_sets
        if not sets:
            return "(nothing: the vendor needs no credentials)"
        common = [f for f in sets[0] if all(f in fields for fields in sets)]
        alternatives = [[f for f in fields if f not in common] for fields in sets]
        words = [cls.variable(f) for f in common]
        if len(alternatives) == 1:
            words += [cls.variable(f) for f in alternatives[0]]
        else:
            words.append(
                "either "
                + " or ".join(" with ".join(cls.variable(f) for f in a) for a in alternatives)
            )
        return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]

    def unset_variables(self, *fields: str) -> list[str]:
        """The environment variables of those of ``fields`` that are unset (``None``).

        Raises:
            KeyError: a field is not a field of the settings model (a typo, not an unset value).
        """
        for name in fields:
            if name not in type(self).model_fields:
                raise KeyError(f"{type(self).__name__} has no field {name!r}")
        return [self.variable(name) for name in fields if getattr(self, name) is None]

    @property
    def account_id(self) -> str:
        """Public id of the vendor account the credentials belong to; never a secret.

        Vendor rate limits are per account, so replicas with one ``account_id`` share one
        count (``VendorAdapter.share_rate_limits``). Default ``"default"``: one account per
        deployment; a vendor whose account has a public id (ZEGO AppId) returns it, so two
        deployments with different accounts on one Redis do not throttle each other.
        """
        return "default"

    def endpoints(self) -> dict[str, str]:
        """The vendor URLs the gateway calls, by field name (for the start-up log line)."""
        return {
            name: str(getattr(self, name))
            for name in self.endpoint_fields
            if getattr(self, name, None) is not None
        }


def vendor_settings_config(vendor: str) -> SettingsConfigDict:
    """The pydantic-settings config of vendor ``vendor``: prefix ``AVATAR_GATEWAY_<VENDOR>__``."""
    return SettingsConfigDict(env_prefix=f"AVATAR_GATEWAY_{vendor.upper()}__", extra="ignore")


class SandboxContext(ABC):
    """What the gateway's sandbox offers a vendor's emulator factory.

    Attributes:
        callback_base_url: base URL of the gateway's ops listener, where vendor callbacks
            go (``{callback_base_url}/callbacks/<vendor>``).
    """

    callback_base_url: str

    @abstractmethod
    async def shared(
        self,
        key: str,
        start: Callable[[], Awaitable[T]],
        stop: Callable[[T], Awaitable[None]],
    ) -> T:
        """One resource shared by the vendors of a sandbox (e.g. one LiveKit server).

        The first caller of ``key`` starts it with ``start``; later callers get the same
        object; the sandbox calls ``stop`` once, after every emulator stopped. Exceptions of
        ``start`` propagate (the vendor is then left out of the sandbox, with a warning).
        """


@dataclass(frozen=True, slots=True)
class SandboxVendor:
    """A vendor's emulator running for the sandbox.

    Attributes:
        settings: the vendor's settings pointing at the emulator (fresh credentials).
        emulator: the emulator object (tests read its records).
        admin_url: base URL of the emulator's HTTP API (its ``/_emulator/state``).
        stop: stops the emulator.
    """

    settings: VendorSettings
    emulator: Any
    admin_url: str
    stop: Callable[[], Awaitable[None]]


EmulatorFactory = Callable[[SandboxContext, Any], Awaitable[SandboxVendor]]
"""``(context, current settings) -> running emulator``, for the sandbox only."""


@dataclass(frozen=True, slots=True)
class StandaloneContext:
    """Where and how a standalone emulator serves (``avatar-gateway emulate``).

    Attributes:
        host: address to bind (``0.0.0.0`` in a container).
        port: port to bind; 0 picks a free one.
        tls: serve https/wss with a self-signed certificate (off for compose: the gateway's
            REST clients verify certificates).
        public_url: ``http(s)://host:port`` clients reach the emulator by; every URL the
            emulator hands out is built from it. ``None``: the bound address (a wildcard
            address stands for loopback).
        callback_url: where a vendor that posts callbacks posts them (the gateway's
            ``http://gateway:8080/callbacks/<vendor>``), or ``None``.
        internal_livekit_url: the LiveKit URL the emulator's own participants connect to,
            when it reaches LiveKit by another name than the gateway does, or ``None``.
    """

    host: str = "127.0.0.1"
    port: int = 0
    tls: bool = False
    public_url: str | None = None
    callback_url: str | None = None
    internal_livekit_url: str | None = None


@dataclass(frozen=True, slots=True)
class StandaloneEmulator:
    """A vendor's emulator serving on its own (``avatar-gateway emulate``).

    Attributes:
        emulator: the emulator object.
        port: the port it bound (the context's, or the one the OS picked for port 0).
        url: the base URL clients reach it by (what the gateway's ``api_url`` points at).
        admin_url: base URL of its HTTP API (its ``/_emulator/state``).
        stop: stops the emulator.
    """

    emulator: Any
    port: int
    url: str
    admin_url: str
    stop: Callable[[], Awaitable[None]]


class MissingSettingsError(Exception):
    """A standalone emulator lacks settings it needs; ``missing`` names them (env names).

    Args:
        missing: each missing setting as the operator sets it, e.g.
            ``AVATAR_GATEWAY_TENCENT__APPKEY`` or ``--callback-url``.
    """

    def __init__(self, missing: list[str]) -> None:
        super().__init__("missing " + ", ".join(missing))
        self.missing = missing


StandaloneFactory = Callable[[StandaloneContext, Any], Awaitable[StandaloneEmulator]]
"""``(context, the vendor's settings) -> running emulator`` for ``avatar-gateway emulate``.

The settings are the ones the gateway reads for the vendor; the emulator accepts exactly
those credentials. Raises :class:`MissingSettingsError` when a credential it needs is unset.
"""


@dataclass(frozen=True, slots=True)
class VendorSpec:
    """One vendor plugin.

    Attributes:
        adapter_type: the vendor's adapter class; it is built as
            ``adapter_type(settings, sandbox=...)`` (``sandbox``: the vendor is an emulator,
            whose self-signed TLS is accepted) and its ``capabilities`` name the vendor.
        settings_type: the vendor's settings model (a :class:`VendorSettings` subclass).
        options_field: the field of ``CreateSessionRequest.vendor_options`` that carries the
            vendor's typed options, or ``None`` when the vendor takes none.
        emulator: ``"module:function"`` of the :data:`EmulatorFactory` the sandbox runs, or
            ``None``. A string, so that emulators are imported only when a sandbox asks.
        standalone_emulator: ``"module:function"`` of the :data:`StandaloneFactory` that
            ``avatar-gateway emulate <vendor>`` runs, or ``None``; imported only then.
    """

    adapter_type: type[VendorAdapter]
    settings_type: type[VendorSettings]
    options_field: str | None = None
    emulator: str | None = None
    standalone_emulator: str | None = None

    @property
    def capabilities(self) -> Capabilities:
        """What the vendor can do (``ListVendors``; shared code acts on it)."""
        return self.adapter_type.capabilities

    @property
    def vendor(self) -> str:
        """The vendor id, ``CreateSessionRequest.vendor`` (lower case, ``[a-z0-9_]``)."""
        return self.capabilities.vendor

    def create_adapter(self, settings: VendorSettings, sandbox: bool) -> VendorAdapter:
        """Build the adapter from the vendor's settings."""
        factory: Callable[..., VendorAdapter] = self.adapter_type
        return factory(settings, sandbox=sandbox)
