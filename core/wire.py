"""Shared building blocks of the pydantic models vendor packages parse their payloads into.

Each vendor's ``models.py`` parses REST answers, callbacks and channel messages once, at its
``api.py``/channel boundary (docs/architecture.md §2.1); these are the parts every vendor's
models share. The emulators keep their own, independent parsing.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict


class VendorPayload(BaseModel):
    """Base of a vendor payload model: wire names as aliases, unknown fields ignored, immutable.

    Vendors add fields over time; ignoring unknown ones keeps an answer readable.
    """

    model_config = ConfigDict(populate_by_name=True, extra="ignore", frozen=True)


def lenient_int(value: Any) -> int:
    """``int(value or 0)``, and 0 when that fails: a vendor number that may be absent or junk."""
    try:
        return int(value or 0)
    except (TypeError, ValueError, OverflowError):
        return 0


LenientInt = Annotated[int, BeforeValidator(lenient_int)]
"""A vendor number read leniently (see :func:`lenient_int`): 0 when absent or not a number."""
