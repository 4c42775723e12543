"""Secrets never leak: not into logs, not into statuses, not into API responses.

A real gateway process (``python -m gateway serve``, JSON logs at debug level) runs with known
vendor secrets against emulators started here with the same secrets: the ZEGO ServerSecret and
callback secret, the Tencent access token, the Akool API key (and legacy client secret) and the
LiveKit API secret. A representative suite of operations runs against it, including error
paths: vendor faults injected with the emulators' FaultPlan, dropped drive sockets and command
channels, a forged callback, and further gateways whose credentials are wrong
(VENDOR_AUTH_FAILED) or whose vendors are unreachable (VENDOR_UNAVAILABLE).

Everything a client or an operator can read is captured: the process's stderr and stdout
(every log line), every gRPC status (code, message, all trailing metadata, the decoded
google.rpc.Status with its ErrorInfo), every response message, and the ops endpoints. Session
fields documented as secrets for viewers (``playback.akool.viewer_token``,
``playback.tencent.play_stream_addr``) are removed from API responses before the check, and
must not appear anywhere else. None of the configured secrets, nor what is derived from them
(ZEGO request signatures, Tencent HMAC signatures for any second of the run, ZEGO WSS drive
tokens the emulator issued, LiveKit JWTs), may appear in the captured text.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import sys
import time
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from avatar.gateway.v1 import avatar_gateway_service_pb2 as pb
from avatar.gateway.v1 import avatar_gateway_service_pb2_grpc as pb_grpc
from avatar.gateway.v1 import vendor_options_pb2
from google.protobuf import text_format
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2

from emulators.akool import AkoolEmulator
from emulators.livekit_server import LiveKitServer
from emulators.tencent import TencentEmulator
from emulators.tencent import sign as tencent_sign
from emulators.zegocloud import ZegocloudEmulator, callback_signature
from gateway.auth import hash_key
from tests.conftest import audio_format, tone
from tests.integration.test_jwt import AUDIENCE, ISSUER, Issuer
from tests.tlsutil import CertificateAuthority

pytestmark = [
    pytest.mark.integration,
    pytest.mark.timeout(900 if not LiveKitServer.is_built() else 240),
]

ROOT = Path(__file__).resolve().parents[2]
ZEGO_APP_ID = 424242
TENCENT_APPKEY = "appkeySecretsSuite"
TENCENT_PROJECT = "secrets-project"
AKOOL_AVATAR = "dvp_Tristan_cloth2_1080P"
CANARY = "canaryVendorNotASecret7h6g"
JWT = re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{16,}")

# Known secret values, recognisable in a failure message and distinct per role.
ZEGO_SECRET = "zegoServerSecret0aa1bb2cc3dd4ee5"
ZEGO_CALLBACK_SECRET = "zegoCallbackSecret9f8e7d6c"
TENCENT_TOKEN = "tencentAccessTokenQ1w2E3r4T5y6"
AKOOL_API_KEY = "akoolApiKeyZ9x8C7v6B5n4M3"
AKOOL_CLIENT_SECRET = "akoolClientSecretL0k9J8h7"
TENANT_KEY = "agk_tenantKeyQ7w8e9r0t1y2u3i4o5p6"
WRONG_KEY = "agk_wrongKeyZ1x2c3v4b5n6m7a8s9d0f"
TRTC_USER_SIG = "trtcUserSigSecretP0o9I8u7"
TRTC_PRIVATE_MAP_KEY = "trtcPrivateMapKeySecretY6t5"
WRONG = {
    "zego": "wrongZegoSecretA1s2D3f4G5",
    "zego_callback": "wrongZegoCallbackH6j7K8",
    "tencent": "wrongTencentTokenL9z8X7c6",
    "akool": "wrongAkoolKeyV5b4N3m2Q1",
    "akool_client": "wrongAkoolClientSecretW0e9",
    "livekit": "wrongLiveKitApiSecretR8t7Y6u5I4o3P2a1S0d9",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---- capture: everything a client or an operator can read ---------------------------------


@dataclass
class Capture:
    """Text of everything observable, plus the viewer secrets removed from responses."""

    parts: list[str] = field(default_factory=list)
    viewer_secrets: list[str] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)

    def message(self, msg: Message) -> None:
        self.parts.append(text_format.MessageToString(msg, as_utf8=True))
        self.parts.append(msg.SerializeToString().decode("latin-1"))

    def session(self, session: pb.Session) -> pb.Session:
        shown = pb.Session()
        shown.CopyFrom(session)
        # Documented as secrets for viewers: meant for the client, checked everywhere else.
        if shown.playback.HasField("akool"):
            self.viewer_secrets.append(shown.playback.akool.viewer_token)
            shown.playback.akool.viewer_token = ""
        if shown.playback.HasField("tencent"):
            self.viewer_secrets.append(shown.playback.tencent.play_stream_addr)
            shown.playback.tencent.play_stream_addr = ""
        self.message(shown)
        return session

    def response(self, msg: Message) -> None:
        if isinstance(msg, pb.Session):
            self.session(msg)
        elif isinstance(msg, pb.ListSessionsResponse):
            for s in msg.sessions:
                self.session(s)
            self.parts.append(msg.next_page_token)
        else:
            self.message(msg)

    def error(self, err: grpc.aio.AioRpcError) -> str:
        self.parts += [err.code().name, err.details() or "", err.debug_error_string() or ""]
        reason = ""
        for key, value in list(err.trailing_metadata() or ()) + list(err.initial_metadata() or ()):
            raw = value if isinstance(value, bytes) else str(value).encode()
            self.parts += [key, raw.decode("latin-1")]
            if key == "grpc-status-details-bin":
                rich = status_pb2.Status.FromString(raw)
                self.parts.append(text_format.MessageToString(rich, as_utf8=True))
                for detail in rich.details:
                    if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                        info = error_details_pb2.ErrorInfo()
                        detail.Unpack(info)
                        self.parts.append(text_format.MessageToString(info, as_utf8=True))
                        reason = info.reason
        self.reasons.append(reason)
        return reason

    def text(self) -> str:
        return "\n".join(self.parts)


async def unary(capture: Capture, call: Awaitable[Any]) -> Any:
    """Run one unary call; capture its response or its status. Returns the response or None."""
    try:
        response = await call
    except grpc.aio.AioRpcError as err:
        capture.error(err)
        return None
    capture.response(response)
    return response


async def drive(
    capture: Capture,
    stub: pb_grpc.AvatarGatewayStub,
    requests: AsyncIterator[pb.DriveRequest],
) -> list[pb.DriveResponse]:
    """Run one Drive call; capture every response and the final status."""
    got: list[pb.DriveResponse] = []
    try:
        async for response in stub.Drive(requests, timeout=60):
            capture.message(response)
            got.append(response)
    except grpc.aio.AioRpcError as err:
        capture.error(err)
    return got


async def audio_turns(
    session: str,
    turns: list[bytes],
    *,
    text: str = "",
    between: Callable[[int], Awaitable[None]] | None = None,
    chunk: int = 1280,
) -> AsyncIterator[pb.DriveRequest]:
    """Config, then each turn's PCM (20-40 ms chunks, a little faster than real time) and
    end_turn, ``between(i)`` after turn i, then an optional final text."""
    yield pb.DriveRequest(config=pb.DriveConfig(session=session, audio_format=audio_format()))
    for i, pcm in enumerate(turns):
        for at in range(0, len(pcm), chunk):
            yield pb.DriveRequest(audio=pcm[at : at + chunk])
            await asyncio.sleep(0.02)
        yield pb.DriveRequest(end_turn=pb.EndTurn())
        if between is not None:
            await between(i)
    if text:
        yield pb.DriveRequest(text=pb.TextInput(text=text, final=True))


# ---- a gateway process --------------------------------------------------------------------


@dataclass
class GatewayProcess:
    """``python -m gateway serve`` with the given environment; its output is kept."""

    env: dict[str, str]
    output: list[str] = field(default_factory=list)
    proc: asyncio.subprocess.Process | None = None
    readers: list[asyncio.Task[None]] = field(default_factory=list)
    started: dict[str, Any] = field(default_factory=dict)
    channel: grpc.aio.Channel | None = None
    # TLS and a credential for the channel (None: plaintext, no credential).
    credentials: grpc.ChannelCredentials | None = None

    @property
    def stub(self) -> pb_grpc.AvatarGatewayStub:
        assert self.channel is not None
        return pb_grpc.AvatarGatewayStub(self.channel)

    @property
    def ops(self) -> str:
        return str(self.started["ops"])

    @property
    def callbacks(self) -> str:
        return str(self.started["callbacks"])

    async def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AVATAR_GATEWAY_")}
        env.update(
            AVATAR_GATEWAY_LISTEN="127.0.0.1:0",
            AVATAR_GATEWAY_OPS_LISTEN="127.0.0.1:0",
            AVATAR_GATEWAY_CALLBACKS_LISTEN="127.0.0.1:0",
            AVATAR_GATEWAY_PLAINTEXT="true",
            AVATAR_GATEWAY_SANDBOX="false",
            AVATAR_GATEWAY_LOG_LEVEL="debug",
            AVATAR_GATEWAY_LOG_FORMAT="json",
            AVATAR_GATEWAY_SHUTDOWN_GRACE_S="2",
            AVATAR_GATEWAY_REAPER_INTERVAL_S="1",
            AVATAR_GATEWAY_CREATE_TIMEOUT_S="20",
            PYTHONUNBUFFERED="1",
        )
        env.update(self.env)
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "gateway",
            "serve",
            cwd=ROOT,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        ready = asyncio.Event()

        async def read(stream: asyncio.StreamReader | None) -> None:
            assert stream is not None
            while line := await stream.readline():
                text = line.decode("utf-8", "replace")
                self.output.append(text)
                if '"gateway_started"' in text:
                    with_json = json.loads(text)
                    self.started.update(with_json)
                    ready.set()

        self.readers = [
            asyncio.create_task(read(self.proc.stdout)),
            asyncio.create_task(read(self.proc.stderr)),
        ]
        try:
            await asyncio.wait_for(ready.wait(), 60)
        except TimeoutError:
            raise AssertionError("gateway did not start:\n" + "".join(self.output)) from None
        self.channel = self.open_channel(self.credentials)

    def open_channel(self, credentials: grpc.ChannelCredentials | None) -> grpc.aio.Channel:
        target = str(self.started["listen"])
        if credentials is None:
            return grpc.aio.insecure_channel(target)
        return grpc.aio.secure_channel(target, credentials)

    async def stop(self) -> None:
        if self.channel is not None:
            await self.channel.close()
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), 30)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        await asyncio.gather(*self.readers, return_exceptions=True)

    def logs(self) -> str:
        return "".join(self.output)


# ---- the leak check -----------------------------------------------------------------------


def tencent_signatures(
    appkey: str, token: str, session_ids: list[str], since: float, until: float
) -> dict[str, str]:
    """Every signature ``token`` makes for our appkey in [since, until] (HTTP and WS)."""
    out: dict[str, str] = {}
    for ts in range(int(since) - 2, int(until) + 3):
        for requestid in [None, *session_ids]:
            params = {"appkey": appkey, "timestamp": str(ts)}
            if requestid is not None:
                params["requestid"] = requestid
            sig = tencent_sign(params, token)
            out[f"tencent signature {ts} {requestid}"] = sig
            out[f"tencent signature (url-encoded) {ts} {requestid}"] = urllib.parse.quote(
                sig, safe=""
            )
    return out


def assert_no_leaks(captured: str, secrets: dict[str, str]) -> None:
    leaks = []
    for label, value in secrets.items():
        if value and len(value) >= 8 and value in captured:
            at = captured.index(value)
            leaks.append(f"{label}: ...{captured[max(0, at - 150) : at + len(value) + 60]!r}")
    jwts = JWT.findall(captured)
    leaks += [f"a LiveKit/JWT token: {t[:40]}..." for t in jwts]
    assert not leaks, "secrets leaked:\n" + "\n".join(leaks)


# ---- 1. correct credentials, faults on every vendor ---------------------------------------


async def test_no_secret_leaks_on_normal_use_and_vendor_faults(
    livekit: LiveKitServer, tmp_path: Path
) -> None:
    zego = ZegocloudEmulator(
        app_id=ZEGO_APP_ID,
        server_secret=ZEGO_SECRET,
        callback_secret=ZEGO_CALLBACK_SECRET,
        task_ready_delay_s=0.1,
        text_seconds_per_char=0.005,
    )
    tencent = TencentEmulator(
        appkey=TENCENT_APPKEY, access_token=TENCENT_TOKEN, session_ready_delay_s=0.1
    )
    tencent.text_seconds_per_char = 0.005
    akool = AkoolEmulator.on_livekit(
        livekit,
        api_key=AKOOL_API_KEY,
        client_id="secrets-suite-client",
        client_secret=AKOOL_CLIENT_SECRET,
        time_scale=0.2,
    )
    for emulator in (zego, tencent, akool):
        await emulator.start()
    # The gateway's own secrets: its TLS key, a tenant's API key, the JWTs callers present.
    ca = CertificateAuthority()
    server_pair = ca.server_pair()
    cert, key = server_pair.write(tmp_path / "tls", "server")
    keys = tmp_path / "api-keys"
    keys.write_text(f"secrets {hash_key(TENANT_KEY)}\n")
    issuer = Issuer()
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps(issuer.jwks()))
    tls = grpc.ssl_channel_credentials(ca.cert_pem)
    gw = GatewayProcess(
        {
            "AVATAR_GATEWAY_PLAINTEXT": "false",
            "AVATAR_GATEWAY_TLS_CERT_FILE": str(cert),
            "AVATAR_GATEWAY_TLS_KEY_FILE": str(key),
            "AVATAR_GATEWAY_API_KEYS_FILE": str(keys),
            "AVATAR_GATEWAY_JWT_JWKS": str(jwks),
            "AVATAR_GATEWAY_JWT_ISSUER": ISSUER,
            "AVATAR_GATEWAY_JWT_AUDIENCE": AUDIENCE,
            "AVATAR_GATEWAY_ZEGOCLOUD__APP_ID": str(ZEGO_APP_ID),
            "AVATAR_GATEWAY_ZEGOCLOUD__SERVER_SECRET": ZEGO_SECRET,
            "AVATAR_GATEWAY_ZEGOCLOUD__CALLBACK_SECRET": ZEGO_CALLBACK_SECRET,
            "AVATAR_GATEWAY_ZEGOCLOUD__API_URL": zego.rest.base_url + "/",
            "AVATAR_GATEWAY_TENCENT__APPKEY": TENCENT_APPKEY,
            "AVATAR_GATEWAY_TENCENT__ACCESS_TOKEN": TENCENT_TOKEN,
            "AVATAR_GATEWAY_TENCENT__API_URL": tencent.base_url,
            "AVATAR_GATEWAY_TENCENT__PROJECT_ID": TENCENT_PROJECT,
            "AVATAR_GATEWAY_AKOOL__API_KEY": AKOOL_API_KEY,
            "AVATAR_GATEWAY_AKOOL__API_URL": akool.base_url,
            "AVATAR_GATEWAY_AKOOL__LIVEKIT_URL": livekit.url,
            "AVATAR_GATEWAY_AKOOL__LIVEKIT_API_KEY": livekit.api_key,
            "AVATAR_GATEWAY_AKOOL__LIVEKIT_API_SECRET": livekit.api_secret,
        },
        credentials=grpc.composite_channel_credentials(
            tls, grpc.access_token_call_credentials(TENANT_KEY)
        ),
    )
    tenant_jwt = issuer.token(tenant="secrets")
    expired_jwt = issuer.token(tenant="secrets", exp=int(time.time()) - 3600)
    cap = Capture()
    since = time.time()
    try:
        await gw.start()
        zego.callback_url = f"{gw.callbacks}/callbacks/zegocloud"
        stub = gw.stub
        await unary(cap, stub.ListVendors(pb.ListVendorsRequest(), timeout=10))
        # A canary the gateway must echo (status message, metadata, log): proves the capture
        # sees both channels, so a secret in the same places would be caught.
        await unary(
            cap,
            stub.CreateSession(pb.CreateSessionRequest(vendor=CANARY, avatar_id="x"), timeout=10),
        )
        for vendor in ("zegocloud", "tencent", "akool"):
            await unary(
                cap, stub.ListAvatars(pb.ListAvatarsRequest(parent=f"vendors/{vendor}"), timeout=10)
            )

        # ZEGOCLOUD: audio and text, a failed drive (HTTP 503), a dropped WSS drive socket,
        # an interrupt, a forged callback, create faults.
        s = await unary(
            cap,
            stub.CreateSession(
                pb.CreateSessionRequest(vendor="zegocloud", avatar_id="zego_emma"), timeout=30
            ),
        )
        assert s is not None and s.state == pb.SESSION_STATE_READY
        await drive(cap, stub, audio_turns(s.name, [tone(0.3)], text="Hello there."))
        zego.faults.fail_next("DriveByWsStream", http_status=503)

        async def zego_second(session: str) -> AsyncIterator[pb.DriveRequest]:
            async for r in audio_turns(session, [tone(0.1)]):  # its drive fails: HTTP 503
                yield r
            pcm = tone(0.6)  # its socket is dropped half-way
            for at in range(0, len(pcm), 1280):
                yield pb.DriveRequest(audio=pcm[at : at + 1280])
                await asyncio.sleep(0.04)
                if at == 1280 * 4:
                    assert await zego.drop_drive_sockets() >= 0
            yield pb.DriveRequest(audio=tone(0.2))
            yield pb.DriveRequest(interrupt=pb.Interrupt())

        got = await drive(cap, stub, zego_second(s.name))
        assert any(r.HasField("turn_failed") for r in got), [r.WhichOneof("response") for r in got]
        async with httpx.AsyncClient(timeout=10) as http:
            forged = {"AppId": ZEGO_APP_ID, "EventType": 4, "Nonce": "1", "Timestamp": "2"}
            forged["Signature"] = callback_signature("not-the-secret", "2", "1")
            answer = await http.post(f"{gw.callbacks}/callbacks/zegocloud", json=forged)
            assert answer.status_code == 401
            cap.parts.append(answer.text)
        await unary(cap, stub.GetSession(pb.GetSessionRequest(name=s.name), timeout=10))
        await unary(cap, stub.ListSessions(pb.ListSessionsRequest(), timeout=10))
        await unary(cap, stub.CloseSession(pb.CloseSessionRequest(name=s.name), timeout=30))
        zego.faults.fail_next("CreateDigitalHumanStreamTask", 400010001)  # no API permission
        assert (
            await unary(
                cap,
                stub.CreateSession(
                    pb.CreateSessionRequest(vendor="zegocloud", avatar_id="zego_emma"), timeout=30
                ),
            )
            is None
        )
        zego.fail_next_task_init("emulated init failure")
        failed = await unary(
            cap,
            stub.CreateSession(
                pb.CreateSessionRequest(vendor="zegocloud", avatar_id="zego_emma"), timeout=30
            ),
        )
        assert failed is not None and failed.state == pb.SESSION_STATE_FAILED

        # Tencent: TRTC options carrying the caller's own secrets, audio and text, a dropped
        # command channel whose first reconnects are refused, create faults.
        trtc = await unary(
            cap,
            stub.CreateSession(
                pb.CreateSessionRequest(
                    vendor="tencent",
                    avatar_id=TENCENT_PROJECT,
                    tencent=vendor_options_pb2.TencentOptions(
                        protocol="trtc",
                        trtc_use_external_app=True,
                        trtc_app_id=1400000001,
                        trtc_room_id=4242,
                        trtc_user_sig=TRTC_USER_SIG,
                        trtc_private_map_key=TRTC_PRIVATE_MAP_KEY,
                    ),
                ),
                timeout=30,
            ),
        )
        assert trtc is not None and trtc.state == pb.SESSION_STATE_READY
        t = await unary(
            cap,
            stub.CreateSession(
                pb.CreateSessionRequest(vendor="tencent", avatar_id=TENCENT_PROJECT), timeout=30
            ),
        )
        assert t is not None and t.state == pb.SESSION_STATE_READY

        async def tencent_faults(i: int) -> None:
            if i == 0:
                await asyncio.sleep(0.3)
                tencent.faults.fail_next("commandchannel", 100005, count=2)
                assert await tencent.drop_channels(t.vendor_session_id) == 1

        got = await drive(
            cap,
            stub,
            audio_turns(t.name, [tone(0.5), tone(0.5)], text="Hi there.", between=tencent_faults),
        )
        assert any(r.HasField("warning") for r in got), [r.WhichOneof("response") for r in got]
        assert tencent.sessions[t.vendor_session_id].channel_connects >= 2
        tencent.faults.fail_next("createsession", 100005)  # the vendor says: unauthorized
        await unary(
            cap,
            stub.CreateSession(
                pb.CreateSessionRequest(vendor="tencent", avatar_id=TENCENT_PROJECT), timeout=30
            ),
        )
        for name in (t.name, trtc.name):
            await unary(cap, stub.GetSession(pb.GetSessionRequest(name=name), timeout=10))
            await unary(cap, stub.CloseSession(pb.CloseSessionRequest(name=name), timeout=30))

        # Akool over LiveKit: audio and text, an auth fault, the vendor ending the session.
        a = await unary(
            cap,
            stub.CreateSession(
                pb.CreateSessionRequest(vendor="akool", avatar_id=AKOOL_AVATAR), timeout=60
            ),
        )
        assert a is not None and a.state == pb.SESSION_STATE_READY
        await drive(cap, stub, audio_turns(a.name, [tone(0.3)], text="Hello."))
        await unary(cap, stub.ListSessions(pb.ListSessionsRequest(vendor="akool"), timeout=10))
        akool.faults.fail_next("session/create", 1101)
        await unary(
            cap,
            stub.CreateSession(
                pb.CreateSessionRequest(vendor="akool", avatar_id=AKOOL_AVATAR), timeout=60
            ),
        )
        await akool.end_session(a.vendor_session_id)
        await asyncio.sleep(0.5)
        await drive(cap, stub, audio_turns(a.name, [tone(0.2)]))
        await unary(cap, stub.CloseSession(pb.CloseSessionRequest(name=a.name), timeout=30))

        # Callers' credentials: a valid JWT, and refused ones (a wrong key, an expired JWT).
        for credential in (tenant_jwt, WRONG_KEY, expired_jwt):
            call_creds = grpc.access_token_call_credentials(credential)
            async with gw.open_channel(grpc.composite_channel_credentials(tls, call_creds)) as ch:
                other = pb_grpc.AvatarGatewayStub(ch)
                await unary(cap, other.ListSessions(pb.ListSessionsRequest(), timeout=10))
        async with httpx.AsyncClient(timeout=10) as http:
            for path in ("/metrics", "/healthz", "/livez"):
                cap.parts.append((await http.get(gw.ops + path)).text)
    finally:
        await gw.stop()
        until = time.time()
        for emulator in (zego, tencent, akool):
            await emulator.stop()

    logs = gw.logs()
    assert CANARY in logs and CANARY in cap.text()
    assert s.name.removeprefix("sessions/") in logs  # per-session lines are captured
    # The suite did what it claims: the error paths ran and were logged.
    assert "VENDOR_AUTH_FAILED" in cap.reasons, cap.reasons
    # Driving a session the vendor ended: the gateway closes it and says SESSION_CLOSED.
    assert {"VENDOR_SESSION_LOST", "SESSION_CLOSED"} & set(cap.reasons), cap.reasons
    for event in ('"session_ready"', '"drive_started"', '"turn_failed"', '"rpc_failed"'):
        assert event in logs, event
    assert '"callback_signature_invalid"' in logs and '"tencent_channel_dropped"' in logs
    assert zego._tokens and len(zego._seen_signatures) >= 10  # WSS tokens, signed requests
    assert len(cap.viewer_secrets) >= 2
    assert "UNAUTHENTICATED" in cap.reasons, cap.reasons  # the refused credentials ran
    assert '"transport": "tls"' in logs

    secrets = {
        "ZEGO ServerSecret": ZEGO_SECRET,
        "ZEGO callback secret": ZEGO_CALLBACK_SECRET,
        "Tencent access token": TENCENT_TOKEN,
        "Akool API key": AKOOL_API_KEY,
        "Akool client secret": AKOOL_CLIENT_SECRET,
        "LiveKit API secret": livekit.api_secret,
        "TRTC UserSig option": TRTC_USER_SIG,
        "TRTC PrivateMapKey option": TRTC_PRIVATE_MAP_KEY,
        "tenant API key": TENANT_KEY,
        "a wrong API key presented": WRONG_KEY,
        "tenant JWT": tenant_jwt,
        "expired JWT": expired_jwt,
    }
    # The TLS private key, line by line (the first is the same for every P-256 key).
    body = server_pair.key_pem.decode().splitlines()[2:-1]
    secrets.update({f"TLS private key line {i}": line for i, line in enumerate(body)})
    secrets.update({f"ZEGO WSS drive Token {i}": tok for i, tok in enumerate(zego._tokens)})
    secrets.update(
        {f"ZEGO request Signature {i}": sig for i, sig in enumerate(zego._seen_signatures)}
    )
    secrets.update({f"viewer secret {i}": v for i, v in enumerate(cap.viewer_secrets)})
    secrets.update(
        tencent_signatures(TENCENT_APPKEY, TENCENT_TOKEN, list(tencent.sessions), since, until)
    )
    with pytest.raises(AssertionError, match="ZEGO ServerSecret"):
        assert_no_leaks(f"a log line ?Signature=x&secret={ZEGO_SECRET}", secrets)
    assert_no_leaks(logs, secrets)
    assert_no_leaks(cap.text(), secrets)


# ---- 2. wrong credentials, unreachable vendors -------------------------------------------


async def test_no_secret_leaks_when_credentials_are_wrong_or_vendors_unreachable(
    livekit: LiveKitServer,
) -> None:
    zego = ZegocloudEmulator(app_id=ZEGO_APP_ID, server_secret=ZEGO_SECRET)
    tencent = TencentEmulator(appkey=TENCENT_APPKEY, access_token=TENCENT_TOKEN)
    akool = AkoolEmulator.on_livekit(
        livekit,
        api_key=AKOOL_API_KEY,
        client_id="secrets-suite-client",
        client_secret=AKOOL_CLIENT_SECRET,
    )
    for emulator in (zego, tencent, akool):
        await emulator.start()
    closed = f"127.0.0.1:{free_port()}"  # nothing listens there
    wrong = GatewayProcess(
        {
            "AVATAR_GATEWAY_ZEGOCLOUD__APP_ID": str(ZEGO_APP_ID),
            "AVATAR_GATEWAY_ZEGOCLOUD__SERVER_SECRET": WRONG["zego"],
            "AVATAR_GATEWAY_ZEGOCLOUD__CALLBACK_SECRET": WRONG["zego_callback"],
            "AVATAR_GATEWAY_ZEGOCLOUD__API_URL": zego.rest.base_url + "/",
            "AVATAR_GATEWAY_TENCENT__APPKEY": TENCENT_APPKEY,
            "AVATAR_GATEWAY_TENCENT__ACCESS_TOKEN": WRONG["tencent"],
            "AVATAR_GATEWAY_TENCENT__API_URL": tencent.base_url,
            "AVATAR_GATEWAY_TENCENT__PROJECT_ID": TENCENT_PROJECT,
            "AVATAR_GATEWAY_AKOOL__API_KEY": WRONG["akool"],
            "AVATAR_GATEWAY_AKOOL__API_URL": akool.base_url,
            "AVATAR_GATEWAY_AKOOL__LIVEKIT_URL": livekit.url,
            "AVATAR_GATEWAY_AKOOL__LIVEKIT_API_KEY": livekit.api_key,
            "AVATAR_GATEWAY_AKOOL__LIVEKIT_API_SECRET": WRONG["livekit"],
        }
    )
    unreachable = GatewayProcess(
        {
            "AVATAR_GATEWAY_ZEGOCLOUD__APP_ID": str(ZEGO_APP_ID),
            "AVATAR_GATEWAY_ZEGOCLOUD__SERVER_SECRET": ZEGO_SECRET,
            "AVATAR_GATEWAY_ZEGOCLOUD__CALLBACK_SECRET": ZEGO_CALLBACK_SECRET,
            "AVATAR_GATEWAY_ZEGOCLOUD__API_URL": f"http://{closed}/",
            "AVATAR_GATEWAY_TENCENT__APPKEY": TENCENT_APPKEY,
            "AVATAR_GATEWAY_TENCENT__ACCESS_TOKEN": TENCENT_TOKEN,
            "AVATAR_GATEWAY_TENCENT__API_URL": f"http://{closed}",
            "AVATAR_GATEWAY_TENCENT__PROJECT_ID": TENCENT_PROJECT,
            # The legacy Akool flow: clientId + clientSecret traded for a bearer token.
            "AVATAR_GATEWAY_AKOOL__CLIENT_ID": "secrets-suite-client",
            "AVATAR_GATEWAY_AKOOL__CLIENT_SECRET": AKOOL_CLIENT_SECRET,
            "AVATAR_GATEWAY_AKOOL__API_URL": f"http://{closed}",
            "AVATAR_GATEWAY_AKOOL__LIVEKIT_URL": f"ws://{closed}",
            "AVATAR_GATEWAY_AKOOL__LIVEKIT_API_KEY": livekit.api_key,
            "AVATAR_GATEWAY_AKOOL__LIVEKIT_API_SECRET": livekit.api_secret,
        }
    )
    caps = {"wrong": Capture(), "unreachable": Capture()}

    async def exercise(gw: GatewayProcess, cap: Capture) -> None:
        await gw.start()
        stub = gw.stub
        for vendor, avatar in (
            ("zegocloud", "zego_emma"),
            ("tencent", TENCENT_PROJECT),
            ("akool", AKOOL_AVATAR),
        ):
            await unary(
                cap, stub.ListAvatars(pb.ListAvatarsRequest(parent=f"vendors/{vendor}"), timeout=30)
            )
            await unary(
                cap,
                stub.CreateSession(
                    pb.CreateSessionRequest(vendor=vendor, avatar_id=avatar), timeout=30
                ),
            )
        await unary(cap, stub.ListSessions(pb.ListSessionsRequest(), timeout=10))

    since = time.time()
    try:
        await asyncio.gather(
            exercise(wrong, caps["wrong"]), exercise(unreachable, caps["unreachable"])
        )
    finally:
        await asyncio.gather(wrong.stop(), unreachable.stop())
        until = time.time()
        for emulator in (zego, tencent, akool):
            await emulator.stop()

    # The error paths ran: every vendor rejected the wrong credentials, or could not be reached.
    assert caps["wrong"].reasons.count("VENDOR_AUTH_FAILED") >= 4, caps["wrong"].reasons
    unavailable = [r for r in caps["unreachable"].reasons if r.startswith("VENDOR_")]
    assert len(unavailable) >= 5 and set(unavailable) <= {"VENDOR_UNAVAILABLE", "VENDOR_TIMEOUT"}
    secrets = {
        "ZEGO ServerSecret": ZEGO_SECRET,
        "ZEGO callback secret": ZEGO_CALLBACK_SECRET,
        "Tencent access token": TENCENT_TOKEN,
        "Akool API key": AKOOL_API_KEY,
        "Akool client secret": AKOOL_CLIENT_SECRET,
        "LiveKit API secret": livekit.api_secret,
        **{f"configured wrong secret {k}": v for k, v in WRONG.items()},
    }
    secrets.update(
        {f"ZEGO request Signature {i}": sig for i, sig in enumerate(zego._seen_signatures)}
    )
    for token in (TENCENT_TOKEN, WRONG["tencent"]):
        secrets.update(tencent_signatures(TENCENT_APPKEY, token, [], since, until))
    for label, captured in (
        ("wrong-credentials gateway logs", wrong.logs()),
        ("unreachable-vendors gateway logs", unreachable.logs()),
        ("wrong-credentials API", caps["wrong"].text()),
        ("unreachable-vendors API", caps["unreachable"].text()),
    ):
        assert captured, label
        assert_no_leaks(captured, secrets)
