"""ZEGOCLOUD Digital Human adapter (vendor-protocols §1)."""

from adapters.zegocloud.adapter import ZegocloudAdapter

__all__ = ["ZegocloudAdapter"]
