"""Decoding the ``google.rpc.ErrorInfo`` the gateway puts in every failed call's status."""

from __future__ import annotations

from typing import Any

from google.rpc import error_details_pb2, status_pb2

DOMAIN = "avatargateway.dev"
"""``ErrorInfo.domain`` of every error the gateway emits."""

_DETAILS_KEY = "grpc-status-details-bin"


def error_info(err: Any) -> error_details_pb2.ErrorInfo | None:
    """The ``ErrorInfo`` of a failed call, or ``None`` when it carries none.

    ``err`` is a ``grpc.RpcError`` (synchronous stubs) or ``grpc.aio.AioRpcError``; the
    ``google.rpc.Status`` is read from its ``grpc-status-details-bin`` trailer. ``reason`` is
    one of the reasons listed in the service documentation and ``metadata`` has
    lowerCamelCase keys.
    """
    trailing = getattr(err, "trailing_metadata", None)
    metadata = trailing() if callable(trailing) else None
    for key, value in metadata or ():
        if key != _DETAILS_KEY:
            continue
        status = status_pb2.Status.FromString(value)
        for detail in status.details:
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                return info
    return None
