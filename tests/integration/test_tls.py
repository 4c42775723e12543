"""TLS and mutual TLS on the gRPC port, certificate rotation under live Drive streams, and
SPIFFE identities from client certificates (docs/security.md §5).

Every certificate is made here (tests/tlsutil.py); every call crosses a real TLS handshake
on loopback. The server certificate names ``localhost`` and 127.0.0.1, so clients dial the
IP and verify the name the certificate carries.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from avatar.gateway.v1 import avatar_gateway_service_pb2 as pb
from avatar.gateway.v1 import avatar_gateway_service_pb2_grpc as pb_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gateway.auth import hash_key
from gateway.server import GatewayServer
from tests.conftest import error_info, kinds, make_settings, paced_requests, tone
from tests.tlsutil import CertificateAuthority, KeyPair

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

# A fresh connection per channel: grpcio may otherwise share one subchannel (and its TLS
# session) between channels to the same target, and a handshake would not happen.
FRESH = [("grpc.use_local_subchannel_pool", 1)]


def install(pair: KeyPair, cert: Path, key: Path) -> None:
    """Put ``pair`` at ``cert``/``key`` the way a Secret volume updates: a rename per file."""
    for data, path in ((pair.cert_pem, cert), (pair.key_pem, key)):
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)


def channel(
    target: str,
    ca: bytes,
    client: KeyPair | None = None,
    credential: str | None = None,
) -> grpc.aio.Channel:
    """A TLS channel trusting ``ca``, presenting ``client``, sending ``credential``."""
    creds = grpc.ssl_channel_credentials(
        ca,
        client.key_pem if client else None,
        client.cert_pem if client else None,
    )
    if credential is not None:
        creds = grpc.composite_channel_credentials(
            creds, grpc.access_token_call_credentials(credential)
        )
    return grpc.aio.secure_channel(target, creds, options=FRESH)


async def list_vendors(ch: grpc.aio.Channel) -> pb.ListVendorsResponse:
    return await pb_grpc.AvatarGatewayStub(ch).ListVendors(pb.ListVendorsRequest(), timeout=10)


@contextlib.asynccontextmanager
async def tls_gateway(
    tmp_path: Path, ca: CertificateAuthority, **overrides: Any
) -> AsyncIterator[tuple[GatewayServer, Path, Path]]:
    """A sandbox gateway serving TLS from files in ``tmp_path`` (a certificate of ``ca``)."""
    cert, key = ca.server_pair().write(tmp_path / "tls", "server")
    settings = make_settings(
        plaintext=False, tls_cert_file=str(cert), tls_key_file=str(key), **overrides
    )
    server = GatewayServer(settings)
    await server.start()
    try:
        yield server, cert, key
    finally:
        await server.stop(grace_s=1.0)


async def test_tls_serves_trusting_clients_only(tmp_path: Path) -> None:
    ca = CertificateAuthority()
    async with tls_gateway(tmp_path, ca) as (server, _, _):
        assert server.transport == "tls"
        async with channel(server.grpc_target, ca.cert_pem) as ch:
            assert [v.vendor for v in (await list_vendors(ch)).vendors] == ["zegocloud"]
            health = await health_pb2_grpc.HealthStub(ch).Check(
                health_pb2.HealthCheckRequest(), timeout=10
            )
            assert health.status == health_pb2.HealthCheckResponse.SERVING
        # A client that does not trust the CA, or that speaks plaintext, gets nothing.
        async with channel(server.grpc_target, CertificateAuthority().cert_pem) as ch:
            with pytest.raises(grpc.aio.AioRpcError) as wrong_ca:
                await list_vendors(ch)
            assert wrong_ca.value.code() == grpc.StatusCode.UNAVAILABLE
        async with grpc.aio.insecure_channel(server.grpc_target, options=FRESH) as ch:
            with pytest.raises(grpc.aio.AioRpcError) as clear:
                await list_vendors(ch)
            assert clear.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_certificate_rotation_keeps_live_drive_streams(tmp_path: Path) -> None:
    """cert-manager renews the Secret: new handshakes get the new certificate (from a new
    CA, so which one a client got is unambiguous), the Drive streams already open play on
    to the end with every byte, and no restart happens."""
    old_ca, new_ca = CertificateAuthority("old CA"), CertificateAuthority("new CA")
    async with tls_gateway(tmp_path, old_ca) as (server, cert, key):
        assert server.tls is not None
        before = await asyncio.gather(
            *(tls_create(server.grpc_target, old_ca.cert_pem) for _ in range(2))
        )
        old = channel(server.grpc_target, old_ca.cert_pem)
        stub = pb_grpc.AvatarGatewayStub(old)
        pcms = [tone(2.0, freq=200.0 + 50 * i) for i in range(2)]
        started = [asyncio.Event() for _ in pcms]
        drives = [
            asyncio.create_task(
                collect_after(stub.Drive(paced_requests(s.name, p), timeout=60), started[i])
            )
            for i, (s, p) in enumerate(zip(before, pcms, strict=True))
        ]
        await asyncio.wait_for(asyncio.gather(*(e.wait() for e in started)), 30)

        install(new_ca.server_pair(), cert, key)
        # A new client trusting only the new CA is served; one trusting only the old is not.
        async with channel(server.grpc_target, new_ca.cert_pem) as fresh:
            await list_vendors(fresh)
        async with channel(server.grpc_target, old_ca.cert_pem) as stale:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await list_vendors(stale)
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        assert server.tls.rotations == 1

        for session, pcm, task in zip(before, pcms, drives, strict=True):
            responses = await task
            got = kinds(responses)
            assert "speech_ended" in got and "turn_failed" not in got, got
            assert "go_away" not in got, got
            drives_seen = server.sandbox.emulators["zegocloud"].drives_for_task(  # type: ignore[union-attr]
                session.vendor_session_id
            )
            assert [d.sha256 for d in drives_seen] == [hashlib.sha256(pcm).hexdigest()]
        await old.close()


async def tls_create(target: str, ca: bytes) -> pb.Session:
    async with channel(target, ca) as ch:
        return await pb_grpc.AvatarGatewayStub(ch).CreateSession(
            pb.CreateSessionRequest(vendor="zegocloud", avatar_id="zego_emma"), timeout=30
        )


async def collect_after(call: Any, started: asyncio.Event) -> list[pb.DriveResponse]:
    """Every response of a Drive call; ``started`` is set at its first (``started``)."""
    out = []
    async for response in call:
        out.append(response)
        started.set()
    return out


async def test_a_broken_rotation_keeps_the_last_good_certificate(tmp_path: Path) -> None:
    ca = CertificateAuthority()
    async with tls_gateway(tmp_path, ca) as (server, cert, key):
        assert server.tls is not None
        # A key that is not the certificate's (a half-written renewal): refused, logged,
        # and the certificate in use keeps serving new handshakes.
        other = ca.server_pair()
        install(KeyPair(ca.server_pair().cert_pem, other.key_pem), cert, key)
        for _ in range(2):  # the broken pair is tried once, then remembered as broken
            async with channel(server.grpc_target, ca.cert_pem) as ch:
                await list_vendors(ch)
        assert server.tls.rotations == 0
        install(other, cert, key)  # the renewal completes
        async with channel(server.grpc_target, ca.cert_pem) as ch:
            await list_vendors(ch)
        assert server.tls.rotations == 1


async def test_mutual_tls_refuses_other_cas_and_missing_certificates(tmp_path: Path) -> None:
    ca, clients, stranger = (CertificateAuthority(n) for n in ("server CA", "client CA", "x"))
    client_ca = tmp_path / "client-ca.pem"
    client_ca.write_bytes(clients.cert_pem)
    async with tls_gateway(tmp_path, ca, tls_client_ca_file=str(client_ca)) as (server, _, _):
        assert server.transport == "mtls"
        async with channel(server.grpc_target, ca.cert_pem, clients.client_pair()) as ch:
            await list_vendors(ch)
        for client in (stranger.client_pair(), ca.client_pair(), None):
            # Signed by another CA (even the server's own), or no certificate at all.
            async with channel(server.grpc_target, ca.cert_pem, client) as ch:
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await list_vendors(ch)
                assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        # Health too needs the handshake: probes use the ops listener's /healthz instead.


async def test_spiffe_id_of_the_client_certificate_names_the_tenant(tmp_path: Path) -> None:
    ca, clients = CertificateAuthority("server CA"), CertificateAuthority("client CA")
    client_ca = tmp_path / "client-ca.pem"
    client_ca.write_bytes(clients.cert_pem)
    acme_id = "spiffe://prod.example/ns/acme/sa/talker"
    keys = tmp_path / "keys"
    keys.write_text(f"acme {acme_id}\nglobex {hash_key('globex-key')}\n")
    acme = clients.client_pair(acme_id)
    unknown = clients.client_pair("spiffe://prod.example/ns/evil/sa/talker")
    async with tls_gateway(
        tmp_path, ca, tls_client_ca_file=str(client_ca), api_keys_file=str(keys)
    ) as (server, _, _):
        target = server.grpc_target
        async with channel(target, ca.cert_pem, acme) as ch:
            stub = pb_grpc.AvatarGatewayStub(ch)
            session = await stub.CreateSession(
                pb.CreateSessionRequest(vendor="zegocloud", avatar_id="zego_emma"), timeout=30
            )
            assert session.tenant == "acme"
            listed = await stub.ListSessions(pb.ListSessionsRequest(), timeout=10)
            assert [s.name for s in listed.sessions] == [session.name]
        # A bearer credential wins over the certificate: globex does not see acme's session.
        async with channel(target, ca.cert_pem, acme, credential="globex-key") as ch:
            stub = pb_grpc.AvatarGatewayStub(ch)
            assert not (await stub.ListSessions(pb.ListSessionsRequest(), timeout=10)).sessions
            with pytest.raises(grpc.aio.AioRpcError) as hidden:
                await stub.GetSession(pb.GetSessionRequest(name=session.name), timeout=10)
            assert hidden.value.code() == grpc.StatusCode.NOT_FOUND
        # A wrong credential is refused, not served as the certificate's tenant; an unknown
        # SPIFFE ID names nobody.
        for client, credential in ((acme, "not-a-key"), (unknown, None)):
            async with channel(target, ca.cert_pem, client, credential=credential) as ch:
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await list_vendors(ch)
                code, reason, _ = error_info(refused.value)
                assert (code, reason) == (grpc.StatusCode.UNAUTHENTICATED, "UNAUTHENTICATED")
        # Revoked by editing the file: the same certificate names nobody from then on.
        keys.write_text(f"globex {hash_key('globex-key')}\n")
        os.utime(keys, ns=(0, 0))

        async def revoked() -> bool:
            async with channel(target, ca.cert_pem, acme) as ch:
                try:
                    await list_vendors(ch)
                except grpc.aio.AioRpcError as exc:
                    return exc.code() == grpc.StatusCode.UNAUTHENTICATED
                return False

        for _ in range(100):
            if await revoked():
                break
            await asyncio.sleep(0.05)
        else:
            pytest.fail("a SPIFFE ID deleted from the keys file still names its tenant")
