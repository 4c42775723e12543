"""The Drive pipeline: input → turn ledger → sender → channel; events → translator."""

from __future__ import annotations

from gateway.drive.stream import DriveStream

__all__ = ["DriveStream"]
