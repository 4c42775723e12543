"""The typed items that travel through a Drive stream's pipeline.

input (reader) ──WorkItem──▶ sender ──▶ vendor drive channel ──VendorEvent──▶ translator
(docs/architecture.md §3). Work items are immutable ``slots`` dataclasses: every item is
tagged with the turn it belongs to and the interrupt generation it was queued in, so the
sender can skip what an interrupt made stale without looking inside it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

TurnMode = Literal["audio", "text"]
"""How a turn drives the avatar: PCM audio, or text the vendor speaks."""


@dataclass(frozen=True, slots=True)
class AudioFrame:
    """One vendor frame of a turn's audio.

    Attributes:
        turn_id: the gateway turn ("1", "2", ...).
        generation: the interrupt generation it was queued in.
        pcm: mono s16le PCM at the stream's vendor rate, ``PacingRule.frame_ms`` long (the
            last frame of a turn may be shorter).
    """

    turn_id: str
    generation: int
    pcm: bytes


@dataclass(frozen=True, slots=True)
class EndAudio:
    """The turn's audio is complete: the vendor is told promptly (ZEGO Stop, Tencent IsFinal).

    Attributes:
        turn_id: the gateway turn.
        generation: the interrupt generation it was queued in.
    """

    turn_id: str
    generation: int


@dataclass(frozen=True, slots=True)
class TextPiece:
    """One piece of a text turn, already split to the vendor's limits.

    Attributes:
        turn_id: the gateway turn.
        generation: the interrupt generation it was queued in.
        text: the piece ("" only for a bare end-of-text marker).
        final: the turn's last piece.
    """

    turn_id: str
    generation: int
    text: str
    final: bool


@dataclass(frozen=True, slots=True)
class EndOfInput:
    """The client half-closed (or input failed): the sender finishes and winds down.

    Attributes:
        generation: the interrupt generation it was queued in.
    """

    generation: int


WorkItem = AudioFrame | EndAudio | TextPiece | EndOfInput
"""What the input queues for the sender, in order."""
