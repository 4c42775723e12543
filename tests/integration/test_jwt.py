"""JWT bearer tokens against a JWKS, over real gRPC (docs/security.md §2.1).

A sandboxed gateway (ZEGOCLOUD emulator) verifies tokens signed by keys generated here
(RSA, with ``cryptography``), published as a JWKS file or served over HTTP by a real
aiohttp server. Accepted: a valid token (tenant from its claim, admin from its roles), one
expired within the allowed clock skew, one signed by a key the issuer rotated in (the URL is
fetched again for an unknown ``kid``). Refused with UNAUTHENTICATED, all in the same words:
expired, not yet valid, wrong audience, wrong issuer, no ``exp``, forged (another key, same
``kid``), ``alg: none``, HS256 keyed with the public key (algorithm confusion), unknown
``kid``, no tenant claim. JWT settings without issuer or audience stop the start.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import jwt
import pytest
from aiohttp import web
from avatar.gateway.v1 import avatar_gateway_service_pb2 as pb
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

import gateway.auth
from gateway.auth import JwksError
from gateway.server import GatewayServer
from tests.conftest import Gateway, error_info, make_settings, running_gateway

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

ISSUER = "https://issuer.example.com/"
AUDIENCE = "avatar-gateway"
C = grpc.StatusCode


class Issuer:
    """An identity provider: RSA keys by kid, and the tokens it signs."""

    def __init__(self) -> None:
        self.keys: dict[str, rsa.RSAPrivateKey] = {}
        self.add("k1")

    def add(self, kid: str) -> None:
        self.keys[kid] = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def jwks(self) -> dict[str, Any]:
        out = []
        for kid, key in self.keys.items():
            jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
            out.append({**jwk, "kid": kid, "use": "sig", "alg": "RS256"})
        return {"keys": out}

    def token(self, kid: str = "k1", key: Any = None, alg: str = "RS256", **claims: Any) -> str:
        now = int(time.time())
        body: dict[str, Any] = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "exp": now + 300,
            "iat": now,
            "tenant": "acme",
        }
        body.update(claims)
        body = {k: v for k, v in body.items() if v is not None}
        return jwt.encode(body, key or self.keys[kid], algorithm=alg, headers={"kid": kid})


def bearer(token: str) -> tuple[tuple[str, str]]:
    return (("authorization", f"Bearer {token}"),)


async def listed(gw: Gateway, token: str) -> list[pb.Session] | tuple[Any, ...]:
    try:
        page = await gw.stub.ListSessions(
            pb.ListSessionsRequest(), metadata=bearer(token), timeout=10
        )
    except grpc.aio.AioRpcError as err:
        return (*error_info(err)[:2], err.details())
    return list(page.sessions)


def jwt_settings(jwks: str, **kw: Any) -> Any:
    return make_settings(jwt_jwks=jwks, jwt_issuer=ISSUER, jwt_audience=AUDIENCE, **kw)


@pytest.fixture
async def issuer_and_gateway(tmp_path: Path) -> AsyncIterator[tuple[Issuer, Gateway]]:
    issuer = Issuer()
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(issuer.jwks()))
    async with running_gateway(jwt_settings(str(path))) as gw:
        yield issuer, gw


async def test_valid_tokens_name_the_tenant_and_the_admin(
    issuer_and_gateway: tuple[Issuer, Gateway],
) -> None:
    issuer, gw = issuer_and_gateway
    acme = issuer.token()
    made = await gw.stub.CreateSession(
        pb.CreateSessionRequest(vendor="zegocloud", avatar_id="zego_emma"),
        metadata=bearer(acme),
        timeout=30,
    )
    assert made.tenant == "acme"
    assert [s.name for s in await listed(gw, acme)] == [made.name]  # type: ignore[union-attr]
    assert await listed(gw, issuer.token(tenant="globex")) == []
    admin = issuer.token(tenant="ops", roles=["admin"])
    assert [s.name for s in await listed(gw, admin)] == [made.name]  # type: ignore[union-attr]
    # Expired 10 s ago: within the 30 s of clock skew allowed.
    got = await listed(gw, issuer.token(exp=int(time.time()) - 10))
    for session in (*got, made):
        session.usage.ClearField("vendor_session_duration")  # runs while the session lives
    assert got == [made]


async def test_bad_tokens_are_refused_alike(issuer_and_gateway: tuple[Issuer, Gateway]) -> None:
    issuer, gw = issuer_and_gateway
    now = int(time.time())
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = (
        issuer.keys["k1"]
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    unsigned = jwt.encode(
        {"iss": ISSUER, "aud": AUDIENCE, "exp": now + 300, "tenant": "acme"},
        None,
        algorithm="none",
        headers={"kid": "k1"},
    )
    bad = {
        "expired": issuer.token(exp=now - 120),
        "not yet valid": issuer.token(nbf=now + 120),
        "wrong audience": issuer.token(aud="another-service"),
        "wrong issuer": issuer.token(iss="https://evil.example.com/"),
        "no exp": issuer.token(exp=None),
        "forged": issuer.token(key=other),
        "alg none": unsigned,
        "unknown kid": issuer.token(kid="k9", key=other),
        "no tenant": issuer.token(tenant=None),
        "bad tenant": issuer.token(tenant="a/b"),
    }
    try:
        confusion = issuer.token(key=public_pem, alg="HS256")
    except jwt.InvalidKeyError:  # PyJWT refuses to even sign it: nothing to send
        confusion = None
    if confusion is not None:
        bad["alg confusion"] = confusion
    answers = {name: await listed(gw, token) for name, token in bad.items()}
    refused = {a for a in answers.values() if isinstance(a, tuple)}
    assert len(refused) == 1 and all(isinstance(a, tuple) for a in answers.values()), answers
    (answer,) = refused
    assert answer[:2] == (C.UNAUTHENTICATED, "UNAUTHENTICATED")
    # The server keeps serving the valid ones.
    assert await listed(gw, issuer.token()) == []


async def test_a_jwks_url_is_fetched_again_when_the_issuer_rotates_its_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # No cooldown between forced refreshes (30 s in service): the rotation shows at once.
    monkeypatch.setattr(gateway.auth, "JWKS_REFRESH_COOLDOWN_S", 0.0)
    issuer = Issuer()
    fetches = 0

    async def serve_jwks(_: web.Request) -> web.Response:
        nonlocal fetches
        fetches += 1
        return web.json_response(issuer.jwks())

    app = web.Application()
    app.router.add_get("/.well-known/jwks.json", serve_jwks)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        url = f"http://127.0.0.1:{port}/.well-known/jwks.json"
        async with running_gateway(jwt_settings(url)) as gw:
            assert await listed(gw, issuer.token()) == []
            assert await listed(gw, issuer.token()) == []
            assert fetches == 1  # cached
            issuer.add("k2")  # the issuer rotates: a new key, new tokens name it
            assert await listed(gw, issuer.token(kid="k2")) == []
            assert fetches == 2
            # A kid the issuer never published: one more fetch, then refused.
            other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            refused = await listed(gw, issuer.token(kid="k9", key=other))
            assert isinstance(refused, tuple) and refused[0] == C.UNAUTHENTICATED
    finally:
        await runner.cleanup()


async def test_jwt_settings_without_issuer_or_audience_stop_the_start(tmp_path: Path) -> None:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(Issuer().jwks()))
    for settings in (
        make_settings(jwt_jwks=str(path), jwt_issuer=ISSUER),
        make_settings(jwt_jwks=str(path), jwt_audience=AUDIENCE),
        jwt_settings(str(tmp_path / "missing.json")),
    ):
        with pytest.raises(JwksError):
            await GatewayServer(settings).start()
