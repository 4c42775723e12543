"""Creates an avatar session, drives it with a WAV file at real time, ends the turn,
interrupts, prints every event and closes the session.

Without --avatar, it takes the vendor's first avatar from ListAvatars.

The connection is TLS (the system's root certificates, or --ca-file) with the credential (an
API key or a JWT: --credential, or better $AVATAR_GATEWAY_CREDENTIAL, which other users
cannot read in the process list) on every call. --plaintext is for the sandbox gateway:

    .venv/bin/python clients/python/examples/drive_wav.py --target 127.0.0.1:50051 --plaintext \
        --wav clients/testdata/sample-16k-mono.wav
    AVATAR_GATEWAY_CREDENTIAL=... .venv/bin/python clients/python/examples/drive_wav.py \
        --target gateway.example.com:443 --ca-file ca.pem
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
from pathlib import Path

import grpc
from avatar.gateway.v1 import avatar_gateway_service_pb2 as pb
from avatar.gateway.v1 import avatar_gateway_service_pb2_grpc as pb_grpc
from avatar_gateway_client import DriveStream, connect, error_info, read_wav
from google.protobuf import text_format

_DEFAULT_WAV = Path(__file__).resolve().parents[2] / "testdata" / "sample-16k-mono.wav"


def describe(what: str, err: grpc.aio.AioRpcError) -> str:
    info = error_info(err)
    if info is None:
        return f"{what}: {err.code().name}: {err.details()}"
    where = f"{info.domain} {dict(info.metadata)}"
    return f"{what}: {err.code().name} {info.reason} ({where}): {err.details()}"


def one_line(message: object) -> str:
    return text_format.MessageToString(message, as_one_line=True)  # type: ignore[arg-type]


async def first_avatar(stub: pb_grpc.AvatarGatewayAsyncStub, vendor: str) -> str:
    listed = await stub.ListAvatars(
        pb.ListAvatarsRequest(parent=f"vendors/{vendor}", page_size=1), timeout=30
    )
    if not listed.avatars:
        raise SystemExit(f"vendor {vendor} lists no avatars: pass --avatar")
    return listed.avatars[0].avatar_id


async def run(args: argparse.Namespace) -> None:
    vendor, avatar = args.vendor, args.avatar
    audio = read_wav(args.wav)
    channel = connect(
        args.target,
        ca=args.ca_file,
        server_name=args.server_name,
        credential=args.credential or None,
        plaintext=args.plaintext,
        allow_plaintext_credential=args.allow_plaintext_credential,
    )
    async with channel:
        stub = pb_grpc.AvatarGatewayStub(channel)
        avatar = avatar or await first_avatar(stub, vendor)
        session = await stub.CreateSession(
            pb.CreateSessionRequest(vendor=vendor, avatar_id=avatar), timeout=60
        )
        print(f"session {session.name} ready: {one_line(session.playback)}")
        try:
            drive = await DriveStream.open(stub, session.name, audio.format)
            print(f"started: {one_line(drive.started)}")
            speaking = asyncio.Event()

            async def print_events() -> None:
                async for event in drive:
                    print(f"event: {one_line(event)}")
                    if event.HasField("speech_started"):
                        speaking.set()

            printer = asyncio.create_task(print_events())
            print(f"sending {audio.duration_s:.2f} s of audio at real time")
            await drive.send_paced(audio, chunk_ms=20)
            await drive.end_turn()
            with contextlib.suppress(TimeoutError):  # barge in once the avatar speaks
                await asyncio.wait_for(speaking.wait(), 5)
            await drive.interrupt()
            await drive.done_writing()
            await printer
            print("drive ended: OK")
        finally:
            closed = await stub.CloseSession(pb.CloseSessionRequest(name=session.name), timeout=10)
            print(f"session {closed.name} closed: {pb.SessionState.Name(closed.state)}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--target", default=os.environ.get("AVATAR_GATEWAY_TARGET", "127.0.0.1:50051")
    )
    parser.add_argument("--vendor", default="zegocloud")
    parser.add_argument("--avatar", default="", help="default: the vendor's first avatar")
    parser.add_argument("--wav", default=str(_DEFAULT_WAV))
    parser.add_argument(
        "--ca-file", default=None, help="PEM CA of the gateway's certificate (default: system)"
    )
    parser.add_argument(
        "--server-name", default=None, help="name to check the gateway's certificate against"
    )
    parser.add_argument(
        "--credential",
        default=os.environ.get("AVATAR_GATEWAY_CREDENTIAL", ""),
        help="API key or JWT (default: $AVATAR_GATEWAY_CREDENTIAL)",
    )
    parser.add_argument("--plaintext", action="store_true", help="no TLS (the sandbox gateway)")
    parser.add_argument(
        "--allow-plaintext-credential",
        action="store_true",
        help="with --plaintext, send the credential all the same (loopback only)",
    )
    args = parser.parse_args()
    try:
        asyncio.run(run(args))
    except grpc.aio.AioRpcError as err:
        print(describe("call failed", err), file=sys.stderr)
        return 1
    except (ValueError, OSError) as err:  # bad options, an unreadable WAV or PEM file
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
