"""``avatar-gateway emulate <vendor>``: one vendor's emulator as a server of its own.

For a docker-compose stack or a staging cluster: the emulator reads the settings the
gateway reads for that vendor (its :class:`core.plugin.VendorSettings`,
``AVATAR_GATEWAY_<VENDOR>__*``), so one env file configures both sides, and accepts exactly
those credentials. What only the emulator needs comes from the command line or from
``AVATAR_GATEWAY_EMULATOR__*`` (:class:`EmulatorOptions`). The vendor plugin names its
standalone factory (:attr:`core.plugin.VendorSpec.standalone_emulator`); it is imported only
here, only when this command runs, as the sandbox imports its emulator factory
(docs/architecture.md §2.2).
"""

from __future__ import annotations

import asyncio
import importlib
import signal
import sys
from typing import cast
from urllib.parse import urlsplit

import structlog
from pydantic import ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from core.plugin import MissingSettingsError, StandaloneContext, StandaloneFactory
from gateway.vendors import VendorRegistry

log = structlog.get_logger("gateway.emulate")


class EmulateError(Exception):
    """The emulator cannot run as asked; the message is the one line to show the operator."""


class EmulatorOptions(BaseSettings):
    """What only a standalone emulator needs: ``AVATAR_GATEWAY_EMULATOR__*`` or flags.

    Attributes:
        listen: ``host:port`` to bind; port 0 picks a free one (the start line says which).
        public_url: ``http(s)://host:port`` clients reach the emulator by; every URL it hands
            out is built from it. Default: derived from ``listen`` (``0.0.0.0`` → 127.0.0.1).
        tls: serve https/wss with a self-signed certificate (the gateway's REST clients
            verify certificates, so compose stacks leave it off).
        callback_url: where vendor callbacks go (ZEGOCLOUD: the gateway's
            ``http://gateway:8080/callbacks/zegocloud``).
        internal_livekit_url: the LiveKit URL the emulator's avatars join by, when it
            differs from the vendor's ``livekit_url`` the gateway uses (Akool).
    """

    model_config = SettingsConfigDict(env_prefix="AVATAR_GATEWAY_EMULATOR__", extra="ignore")

    listen: str = "127.0.0.1:0"
    public_url: str | None = None
    tls: bool = False
    callback_url: str | None = None
    internal_livekit_url: str | None = None

    def context(self) -> StandaloneContext:
        """The :class:`StandaloneContext` these options describe.

        Raises:
            EmulateError: ``listen`` is not ``host:port``, or ``public_url`` is not an
                ``http(s)://host[:port]`` URL.
        """
        host, sep, port = self.listen.rpartition(":")
        if not sep or not port.isdigit() or int(port) > 65535:
            raise EmulateError(f"--listen must be HOST:PORT, got {self.listen!r}")
        public_url = self.public_url
        if public_url is not None:
            parts = urlsplit(public_url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise EmulateError(f"--public-url must be http(s)://HOST:PORT, got {public_url!r}")
            public_url = public_url.rstrip("/")
        return StandaloneContext(
            host=host.strip("[]") or "0.0.0.0",
            port=int(port),
            tls=self.tls,
            public_url=public_url,
            callback_url=self.callback_url,
            internal_livekit_url=self.internal_livekit_url,
        )


def load_factory(registry: VendorRegistry, vendor: str) -> StandaloneFactory:
    """The standalone emulator factory of ``vendor``, imported now.

    Raises:
        EmulateError: the vendor is not registered, has no standalone emulator, or its
            emulator's dependencies are not installed.
    """
    spec = registry.get(vendor)
    if spec is None or spec.standalone_emulator is None:
        known = sorted(s.vendor for s in registry if s.standalone_emulator is not None)
        raise EmulateError(f"vendor {vendor!r} has no standalone emulator (known: {known})")
    module_name, _, func = spec.standalone_emulator.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:  # e.g. trustme: the emulators' dependencies are an extra
        raise EmulateError(
            f"cannot load the {vendor} emulator ({exc}); the emulators need the 'sandbox' "
            f"extra: pip install -c constraints.txt -e '.[sandbox]'"
        ) from exc
    return cast(StandaloneFactory, getattr(module, func))


async def run(registry: VendorRegistry, vendor: str, options: EmulatorOptions) -> None:
    """Serve ``vendor``'s emulator until SIGTERM or SIGINT, then stop it.

    Logs ``emulator_started`` once it serves (vendor, listen address with the bound port,
    public URL, admin state URL): a supervisor or a test waits for that line.

    Raises:
        EmulateError: the vendor has no standalone emulator, options are malformed, a
            setting it needs is missing (the message names the variables), or it cannot
            bind its address.
    """
    ctx = options.context()
    factory = load_factory(registry, vendor)
    spec = registry.specs[vendor]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    # Installed before the start, so a SIGTERM during it still stops cleanly.
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        running = await factory(ctx, spec.settings_type())
    except MissingSettingsError as exc:
        raise EmulateError(f"cannot emulate {vendor}: missing {', '.join(exc.missing)}") from exc
    except OSError as exc:  # the address is taken or not local: say which, without a trace
        raise EmulateError(f"cannot listen on {options.listen}: {exc}") from exc
    try:
        log.info(
            "emulator_started",
            vendor=vendor,
            listen=f"{ctx.host}:{running.port}",
            public_url=running.url,
            admin_state_url=f"{running.admin_url}/_emulator/state",
        )
        await stop.wait()
        log.info("emulator_stopping", vendor=vendor)
    finally:
        await running.stop()


def main(vendor: str, overrides: dict[str, object], plugin_modules: list[str]) -> int:
    """Run ``avatar-gateway emulate``; returns the exit code (0 after SIGTERM/SIGINT).

    Args:
        vendor: the vendor id.
        overrides: :class:`EmulatorOptions` fields given as flags (they win over the env).
        plugin_modules: extra vendor plugin modules (``AVATAR_GATEWAY_PLUGINS``).

    Returns:
        0 when stopped by a signal; 2 when the emulator cannot run as asked (one line on
        stderr says why, e.g. the missing variables).
    """
    try:
        options = EmulatorOptions.model_validate(overrides)
        asyncio.run(run(VendorRegistry.discover(plugin_modules), vendor, options))
    except (EmulateError, ValidationError) as exc:
        message = str(exc).replace("\n", "; ")
        print(f"avatar-gateway emulate: {message}", file=sys.stderr)
        return 2
    return 0
