"""Channels to the gateway: TLS by default, mutual TLS on request, a credential on every call.

:func:`connect` returns a ``grpc.aio.Channel`` and :func:`connect_sync` a synchronous
``grpc.Channel``; both take the same options and are thin wrappers over grpcio's own
credentials (``grpc.ssl_channel_credentials``, ``grpc.access_token_call_credentials``,
``grpc.composite_channel_credentials``)::

    channel = connect("gateway.example.com:443", credential=api_key)  # system roots
    stub = pb_grpc.AvatarGatewayStub(channel)
    drive = await DriveStream.open(stub, session.name, audio.format)

The credential (a tenant API key or a JWT, both opaque here) goes on every call, unary and
streaming, as ``authorization: Bearer <credential>``. It is never sent in clear text unless
asked twice: ``plaintext=True`` and ``allow_plaintext_credential=True``.

Every call also carries the caller's OpenTelemetry trace context (W3C ``traceparent`` and
``tracestate``, plus the global propagator's fields), through the client interceptors of
:mod:`avatar_gateway_client.tracing`, so the gateway's spans join the caller's trace.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import grpc

from avatar_gateway_client.tracing import TraceContextInterceptor, aio_trace_context_interceptors

Pem = str | os.PathLike[str] | bytes
"""A PEM document: ``bytes`` are its contents, a ``str`` or path-like is the file to read."""

_TOKEN = re.compile(r"[\x21-\x7e]+")
"""What a credential may hold: visible ASCII, no space (an HTTP/2 header value, token68-ish)."""
_UDS_SCHEMES = ("unix:", "unix-abstract:")


def _read_pem(what: str, pem: Pem) -> bytes:
    if isinstance(pem, str) and pem.lstrip().startswith("-----BEGIN"):
        raise ValueError(f"{what}: PEM contents must be bytes; a str is a file path")
    data = pem if isinstance(pem, bytes) else Path(pem).read_bytes()
    if b"-----BEGIN" not in data:  # never echo the bytes: they may be a key
        source = "the bytes given" if isinstance(pem, bytes) else os.fspath(pem)
        raise ValueError(f"{what}: not PEM ({source} has no -----BEGIN line)")
    return data


def _channel_args(
    target: str,
    *,
    ca: Pem | None,
    client_cert: Pem | None,
    client_key: Pem | None,
    server_name: str | None,
    credential: str | None,
    plaintext: bool,
    allow_plaintext_credential: bool,
    options: Sequence[tuple[str, Any]],
) -> tuple[grpc.ChannelCredentials | None, list[tuple[str, Any]]]:
    """The channel credentials (``None``: an insecure channel) and options for the arguments."""
    opts = list(options)
    if (client_cert is None) != (client_key is None):
        raise ValueError("client_cert and client_key go together (mutual TLS needs both)")
    if credential is not None and not _TOKEN.fullmatch(credential):
        raise ValueError(
            "credential must be a non-empty API key or JWT of visible ASCII characters "
            "(no spaces or newlines, no 'Bearer ' prefix)"
        )
    call_creds = grpc.access_token_call_credentials(credential) if credential is not None else None

    if plaintext:
        tls_options = {
            "ca": ca,
            "client_cert": client_cert,
            "client_key": client_key,
            "server_name": server_name,
        }
        given = [name for name, value in tls_options.items() if value is not None]
        if given:
            raise ValueError(f"plaintext=True conflicts with the TLS option(s) {', '.join(given)}")
        if call_creds is None:
            return None, opts
        if not allow_plaintext_credential:
            raise ValueError(
                "refusing to send a credential in clear text: use TLS, or pass "
                "allow_plaintext_credential=True for a local sandbox on loopback"
            )
        # grpcio attaches call credentials only to a secure channel. Local credentials count
        # as one, send nothing more on the wire than an insecure channel, and connect only to
        # a loopback address or a Unix socket: the credential never leaves this host.
        kind = (
            grpc.LocalConnectionType.UDS
            if target.startswith(_UDS_SCHEMES)
            else grpc.LocalConnectionType.LOCAL_TCP
        )
        local = grpc.local_channel_credentials(kind)
        return grpc.composite_channel_credentials(local, call_creds), opts

    tls = grpc.ssl_channel_credentials(
        root_certificates=_read_pem("ca", ca) if ca is not None else None,
        private_key=_read_pem("client_key", client_key) if client_key is not None else None,
        certificate_chain=_read_pem("client_cert", client_cert)
        if client_cert is not None
        else None,
    )
    if server_name is not None:
        opts.append(("grpc.ssl_target_name_override", server_name))
    if call_creds is None:
        return tls, opts
    return grpc.composite_channel_credentials(tls, call_creds), opts


def connect(
    target: str,
    *,
    ca: Pem | None = None,
    client_cert: Pem | None = None,
    client_key: Pem | None = None,
    server_name: str | None = None,
    credential: str | None = None,
    plaintext: bool = False,
    allow_plaintext_credential: bool = False,
    options: Sequence[tuple[str, Any]] = (),
    propagate_trace_context: bool = True,
) -> grpc.aio.Channel:
    """A ``grpc.aio`` channel to the gateway at ``target``, TLS unless ``plaintext``.

    The channel is lazy, like every gRPC channel: it connects on the first call, and a
    failed TLS handshake (untrusted or misnamed server certificate, client certificate
    refused) fails that call with ``UNAVAILABLE``. Close it with ``await channel.close()``
    or ``async with``.

    Args:
        target: ``host:port`` (or any gRPC target URI, e.g. ``dns:///host:port``).
        ca: the CA certificate(s) that sign the server's certificate, PEM (``bytes``, or the
            path of a file). ``None``: the system's root certificates.
        client_cert: the client certificate chain for mutual TLS, PEM (bytes or path);
            requires ``client_key``.
        client_key: the client certificate's private key, PEM (bytes or path), unencrypted.
        server_name: the name to verify the server's certificate against, instead of the
            target's host (the ``grpc.ssl_target_name_override`` option), e.g.
            ``"localhost"`` when dialing ``127.0.0.1`` with a certificate for localhost.
        credential: a tenant API key or a JWT, without the ``Bearer`` prefix. Sent on every
            call (unary and streaming) as ``authorization: Bearer <credential>`` through
            grpcio's call credentials. ``None``: no credential.
        plaintext: no TLS at all, for a local sandbox or development. Must be asked for: the
            default is TLS.
        allow_plaintext_credential: with ``plaintext``, send ``credential`` in clear text all
            the same. For a local sandbox only: the channel then uses
            ``grpc.local_channel_credentials()`` (grpcio attaches call credentials only to a
            secure channel), which connects only to a loopback address (``127.0.0.1``,
            ``[::1]``, ``localhost``) or a Unix socket, so the credential never crosses a
            network; any other target fails its calls with ``UNAVAILABLE``. Ignored with TLS.
        options: more channel options (``(key, value)`` pairs, e.g.
            ``("grpc.max_receive_message_length", 8 << 20)``).
        propagate_trace_context: send the caller's OpenTelemetry trace context with every
            call (see :mod:`avatar_gateway_client.tracing`): the span of the current context
            when the call is made, as W3C ``traceparent``/``tracestate`` metadata, plus the
            fields of the global propagator (by default W3C baggage). Nothing is sent without
            a span. ``False`` when another instrumentation (such as
            ``opentelemetry-instrumentation-grpc``) already propagates it.

    Raises:
        ValueError: ``client_cert`` without ``client_key`` or the reverse; ``plaintext``
            together with a TLS option (``ca``, ``client_cert``, ``client_key``,
            ``server_name``); a ``credential`` with ``plaintext`` but without
            ``allow_plaintext_credential``; an empty credential, or one with spaces,
            newlines or non-ASCII characters; a PEM argument that is not PEM (or PEM text
            given as ``str``, which means a path: encode it to bytes).
        OSError: a PEM file cannot be read.
    """
    creds, opts = _channel_args(
        target,
        ca=ca,
        client_cert=client_cert,
        client_key=client_key,
        server_name=server_name,
        credential=credential,
        plaintext=plaintext,
        allow_plaintext_credential=allow_plaintext_credential,
        options=options,
    )
    interceptors = aio_trace_context_interceptors() if propagate_trace_context else None
    if creds is None:
        return grpc.aio.insecure_channel(target, options=opts, interceptors=interceptors)
    return grpc.aio.secure_channel(target, creds, options=opts, interceptors=interceptors)


def connect_sync(
    target: str,
    *,
    ca: Pem | None = None,
    client_cert: Pem | None = None,
    client_key: Pem | None = None,
    server_name: str | None = None,
    credential: str | None = None,
    plaintext: bool = False,
    allow_plaintext_credential: bool = False,
    options: Sequence[tuple[str, Any]] = (),
    propagate_trace_context: bool = True,
) -> grpc.Channel:
    """A synchronous ``grpc.Channel`` to the gateway at ``target``: :func:`connect`'s options.

    For the synchronous stub (``pb_grpc.AvatarGatewayStub(channel)``, e.g. with
    :func:`avatar_gateway_client.drive_requests`). Close it with ``channel.close()`` or
    ``with``. With ``propagate_trace_context`` (the default), the channel is wrapped by
    ``grpc.intercept_channel``.

    Raises:
        ValueError: as :func:`connect`.
        OSError: a PEM file cannot be read.
    """
    creds, opts = _channel_args(
        target,
        ca=ca,
        client_cert=client_cert,
        client_key=client_key,
        server_name=server_name,
        credential=credential,
        plaintext=plaintext,
        allow_plaintext_credential=allow_plaintext_credential,
        options=options,
    )
    if creds is None:
        channel = grpc.insecure_channel(target, options=opts)
    else:
        channel = grpc.secure_channel(target, creds, options=opts)
    if not propagate_trace_context:
        return channel
    return grpc.intercept_channel(channel, TraceContextInterceptor())
