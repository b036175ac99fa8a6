"""Frames <-> typed records. Decoding is strict: anything malformed raises ProtocolError, nothing else.

A message is `[version, body]` or, for a batch, `[version, body, payload]`. The version frame names the
protocol and its version, so a peer speaking another version is rejected before its body is parsed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Generic, TypeVar

import msgspec

from zmr.errors import OversizedMessage, ProtocolError
from zmr.protocol.messages import (
    PROTOCOL_VERSION,
    Batch,
    DataMessage,
    FromCoordinator,
    ToCoordinator,
)

VERSION_FRAME = b"ZMR" + bytes([PROTOCOL_VERSION])
_ENCODER = msgspec.msgpack.Encoder()

T = TypeVar("T")


def encode(msg: msgspec.Struct, payload: bytes | memoryview | None = None) -> list[Any]:
    """The frames of `msg` (and its payload frame, for a batch)."""
    frames: list[Any] = [VERSION_FRAME, _ENCODER.encode(msg)]
    if payload is not None:
        frames.append(payload)
    return frames


class Decoder(Generic[T]):
    """Decodes one direction's messages; `max_bytes` caps the whole message, not only a frame."""

    def __init__(self, union: Any, max_bytes: int, limit_name: str = "") -> None:
        """`limit_name`: the config key of `max_bytes`, named in the error so the sender knows what to raise."""
        self._decoder: msgspec.msgpack.Decoder[T] = msgspec.msgpack.Decoder(union)
        self._max_bytes = max_bytes
        self._limit = f"the {max_bytes}-byte limit" + (f" ({limit_name})" if limit_name else "")

    def decode(self, frames: Sequence[bytes | memoryview]) -> tuple[T, bytes | memoryview | None]:
        """Check framing, size and version, then parse; the payload frame is returned untouched."""
        if len(frames) not in (2, 3):
            raise ProtocolError(f"expected 2 or 3 frames, got {len(frames)}")
        total = sum(len(f) for f in frames)
        if total > self._max_bytes:
            raise OversizedMessage(f"message of {total} bytes exceeds {self._limit}")
        if bytes(frames[0]) != VERSION_FRAME:
            raise ProtocolError(f"unknown protocol version frame {bytes(frames[0])[:16]!r}")
        try:
            msg = self._decoder.decode(frames[1])
        except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError) as exc:
            raise ProtocolError(f"malformed message: {exc}") from exc
        payload = frames[2] if len(frames) == 3 else None
        if (payload is None) != (not isinstance(msg, Batch)):
            raise ProtocolError("a batch needs exactly one payload frame, other messages none")
        return msg, payload


def coordinator_decoder(max_bytes: int) -> Decoder[ToCoordinator]:
    """What the coordinator accepts from clients and workers."""
    return Decoder(ToCoordinator, max_bytes, "coordinator.max_message_bytes")


def peer_decoder(max_bytes: int, limit_name: str = "coordinator.max_message_bytes") -> Decoder[FromCoordinator]:
    """What clients and workers accept from the coordinator."""
    return Decoder(FromCoordinator, max_bytes, limit_name)


def data_decoder(max_bytes: int) -> Decoder[DataMessage]:
    """What a worker's data socket (and a pulling reducer) accepts from peers."""
    return Decoder(DataMessage, max_bytes, "worker.max_message_bytes")
