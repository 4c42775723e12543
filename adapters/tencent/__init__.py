"""Tencent Cloud IVH adapter (``docs/vendor-protocols.md`` section 2)."""

from __future__ import annotations

from adapters.tencent.adapter import TencentAdapter

__all__ = ["TencentAdapter"]
