"""Akool Streaming Avatar adapter (vendor-protocols §3): REST sessions, LiveKit-room drive."""

from __future__ import annotations

from adapters.akool.adapter import AkoolAdapter

__all__ = ["AkoolAdapter"]
