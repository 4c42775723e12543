"""TLS on the gRPC port from certificate files, rotated without a restart (docs/security.md §5).

:class:`ServerTls` reads the server certificate chain and private key (PEM), and optionally a
client CA bundle for mutual TLS, and hands gRPC a ``dynamic_ssl_server_credentials`` whose
fetcher gRPC calls before each new TLS handshake. The fetcher compares the files' identity
(inode, mtime, size: ``os.stat`` follows the symlinks a mounted Kubernetes Secret swaps
atomically when cert-manager renews it) with what was loaded; when they changed, the new
files are read, checked (the key must belong to the certificate) and returned, so new
handshakes use them while connections already open (live Drive streams) keep theirs. A
changed set that does not load keeps the last good one and says so in the log, once per
change.

Why gRPC's own dynamic credentials rather than a TLS-terminating proxy or our own
``ssl.SSLContext``: grpcio's server does its own TLS in the C core (no Python SSL object
to swap), and this is the API it offers for exactly this (``grpc.dynamic_ssl_server_credentials``,
grpcio docs "Create Server Credentials").
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import grpc
import structlog
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from gateway import metrics

log = structlog.get_logger("gateway.tls")


class TlsConfigError(ValueError):
    """The TLS files cannot be read, do not parse, or the key does not match the certificate."""


@dataclass(frozen=True)
class _Loaded:
    cert_chain: bytes
    private_key: bytes
    client_ca: bytes | None
    not_after: float
    stamp: tuple[tuple[int, int, int], ...]


def _stamp(path: Path) -> tuple[int, int, int]:
    st = os.stat(path)
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def _public_der(key: PrivateKeyTypes) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


class ServerTls:
    """The gRPC server's TLS credentials, read from files and re-read when they change.

    Args:
        cert_file: the server certificate chain (PEM, leaf first).
        key_file: its private key (PEM, unencrypted: a mounted Secret's ``tls.key``).
        client_ca_file: CA certificates (PEM) that sign accepted client certificates;
            every connection must then present one (mutual TLS). grpcio offers no "verify
            if presented" mode: with ``require_client_authentication=False`` its server
            does not ask for a client certificate at all. ``None``: server-side TLS only.

    Raises:
        TlsConfigError: a file cannot be read, does not parse, or the key is not the
            certificate's (at construction: a pod with a broken Secret must not start).
    """

    def __init__(
        self,
        cert_file: str | Path,
        key_file: str | Path,
        client_ca_file: str | Path | None = None,
    ) -> None:
        self.paths = tuple(Path(p) for p in (cert_file, key_file, client_ca_file) if p)
        self.mutual = client_ca_file is not None
        self._lock = threading.Lock()  # the fetcher runs on gRPC's threads
        self._loaded = self._load()
        self._failed_stamp: tuple[tuple[int, int, int], ...] | None = None
        self.rotations = 0
        metrics.TLS_CERT_NOT_AFTER.set(self._loaded.not_after)

    @property
    def mode(self) -> str:
        """``"mtls"`` when client certificates are verified, else ``"tls"``."""
        return "mtls" if self.mutual else "tls"

    def _load(self) -> _Loaded:
        try:
            stamp = tuple(_stamp(p) for p in self.paths)
            blobs = [p.read_bytes() for p in self.paths]
        except OSError as exc:
            raise TlsConfigError(f"{exc.filename} cannot be read: {exc.strerror}") from None
        chain, key_pem = blobs[0], blobs[1]
        try:
            certs = x509.load_pem_x509_certificates(chain)
            key = serialization.load_pem_private_key(key_pem, password=None)
        except (ValueError, TypeError) as exc:
            raise TlsConfigError(f"{self.paths[0]} or {self.paths[1]}: {exc}") from None
        if _public_der(key) != certs[0].public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        ):
            raise TlsConfigError(f"{self.paths[1]} is not the key of {self.paths[0]}")
        client_ca = blobs[2] if self.mutual else None
        if client_ca is not None:
            try:
                x509.load_pem_x509_certificates(client_ca)
            except ValueError as exc:
                raise TlsConfigError(f"{self.paths[2]}: {exc}") from None
        return _Loaded(chain, key_pem, client_ca, certs[0].not_valid_after_utc.timestamp(), stamp)

    def _configuration(self, loaded: _Loaded) -> grpc.ServerCertificateConfiguration:
        return grpc.ssl_server_certificate_configuration(
            [(loaded.private_key, loaded.cert_chain)], root_certificates=loaded.client_ca
        )

    def credentials(self) -> grpc.ServerCredentials:
        """Credentials for ``server.add_secure_port``; each new handshake checks the files."""
        return grpc.dynamic_ssl_server_credentials(
            self._configuration(self._loaded),
            # grpcio's stubs say the fetcher returns a configuration; its docs and C core
            # take None as "unchanged".
            self._fetch,  # type: ignore[arg-type]
            require_client_authentication=self.mutual,
        )

    def _fetch(self) -> grpc.ServerCertificateConfiguration | None:
        """The fetcher gRPC calls per handshake: a new configuration when the files changed.

        ``None`` when they did not, or do not load. Never raises: an exception here would
        fail the handshake of whoever happened to connect; the last good certificate keeps
        serving instead.
        """
        with self._lock:
            try:
                stamp = tuple(_stamp(p) for p in self.paths)
            except OSError:
                return None  # mid-swap: the next handshake looks again
            if stamp in (self._loaded.stamp, self._failed_stamp):
                return None
            try:
                loaded = self._load()
            except TlsConfigError as exc:
                self._failed_stamp = stamp
                log.error("tls_certificate_not_rotated", error=str(exc))
                return None
            self._loaded = loaded
            self.rotations += 1
        metrics.TLS_CERT_NOT_AFTER.set(loaded.not_after)
        log.info("tls_certificate_rotated", not_after=int(loaded.not_after))
        return self._configuration(loaded)


def peer_spiffe_id(auth_context: Mapping[str, Iterable[bytes]]) -> str | None:
    """The SPIFFE ID of the verified client certificate, from a gRPC call's auth context.

    gRPC's TLS sets ``peer_spiffe_id`` only for a client certificate it verified against the
    client CA and that carries exactly one well-formed ``spiffe://`` URI SAN (as the SPIFFE
    X509-SVID standard requires); anything else (no certificate, several URI SANs): ``None``.
    """
    values = list(auth_context.get("peer_spiffe_id", ()))
    return values[0].decode() if len(values) == 1 else None
