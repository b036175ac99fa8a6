"""Frames <-> typed records. Decoding is strict: anything malformed raises ProtocolError, nothing else.

A message is `[version, body]` or, for a batch, `[version, body, payload]`. The version frame names the
protocol and its version, so a peer speaking another version is rejected before its body is parsed.

A body of `COMPRESS_FROM` bytes or more travels zstd-compressed, marked by its own version frame
(`ZMZ` + version). The messages that grow with a cluster (a job's setup naming every peer, the
locations of every map, owner moves) are lists of similar addresses and numbers, which compress
two to ten times over; small messages, the bulk of the traffic, are left as they are, and so is a
body that would not shrink. The size limit applies to the body as it decompresses, and a compressed
body must state its size up front, so no peer can make a decoder allocate more than the limit.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Generic, TypeVar

import msgspec
import zstandard

from zmr.errors import OversizedMessage, ProtocolError
from zmr.protocol.messages import (
    PROTOCOL_VERSION,
    Batch,
    DataMessage,
    FromCoordinator,
    ToCoordinator,
)

VERSION_FRAME = b"ZMR" + bytes([PROTOCOL_VERSION])
COMPRESSED_FRAME = b"ZMZ" + bytes([PROTOCOL_VERSION])
COMPRESS_FROM = 256    # body bytes from which compressing pays for its framing and CPU (about 15 us)
_ZSTD_LEVEL = 1
_ENCODER = msgspec.msgpack.Encoder()

T = TypeVar("T")


def encode(msg: msgspec.Struct, payload: bytes | memoryview | None = None) -> list[Any]:
    """The frames of `msg` (and its payload frame, for a batch)."""
    body = _ENCODER.encode(msg)
    frames: list[Any] = [VERSION_FRAME, body]
    if len(body) >= COMPRESS_FROM:
        packed = zstandard.ZstdCompressor(level=_ZSTD_LEVEL).compress(body)
        if len(packed) < len(body):
            frames = [COMPRESSED_FRAME, packed]
    if payload is not None:
        frames.append(payload)
    return frames


def message_size(frames: Sequence[bytes | memoryview]) -> int:
    """The size a decoder holds against its limit: every frame, a compressed body as it decompresses
    (a sender checks this before it sends what the receiver would refuse)."""
    total = sum(len(f) for f in frames)
    if len(frames) >= 2 and bytes(frames[0]) == COMPRESSED_FRAME:
        stated = zstandard.frame_content_size(frames[1])
        total += max(stated, 0) - len(frames[1])
    return total


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
        version = bytes(frames[0])
        if version == VERSION_FRAME:
            body = frames[1]
        elif version == COMPRESSED_FRAME:
            body = self._decompress(frames[1], total - len(frames[1]))
        else:
            raise ProtocolError(f"unknown protocol version frame {version[:16]!r}")
        try:
            msg = self._decoder.decode(body)
        except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError) as exc:
            raise ProtocolError(f"malformed message: {exc}") from exc
        payload = frames[2] if len(frames) == 3 else None
        if (payload is None) != (not isinstance(msg, Batch)):
            raise ProtocolError("a batch needs exactly one payload frame, other messages none")
        return msg, payload

    def _decompress(self, body: bytes | memoryview, other_frames: int) -> bytes:
        """The body a compressed frame holds, if it states a size within the limit (with the other frames)."""
        try:
            size = zstandard.frame_content_size(body)
        except zstandard.ZstdError as exc:
            raise ProtocolError(f"malformed compressed body: {exc}") from exc
        if size < 0:
            raise ProtocolError("a compressed body must state its size")
        if size + other_frames > self._max_bytes:
            raise OversizedMessage(f"message of {size + other_frames} bytes decompressed exceeds {self._limit}")
        try:
            return zstandard.ZstdDecompressor().decompress(body, max_output_size=size)
        except zstandard.ZstdError as exc:
            raise ProtocolError(f"malformed compressed body: {exc}") from exc


def coordinator_decoder(max_bytes: int) -> Decoder[ToCoordinator]:
    """What the coordinator accepts from clients and workers."""
    return Decoder(ToCoordinator, max_bytes, "coordinator.max_message_bytes")


def peer_decoder(max_bytes: int, limit_name: str = "coordinator.max_message_bytes") -> Decoder[FromCoordinator]:
    """What clients and workers accept from the coordinator."""
    return Decoder(FromCoordinator, max_bytes, limit_name)


def data_decoder(max_bytes: int) -> Decoder[DataMessage]:
    """What a worker's data socket (and a pulling reducer) accepts from peers."""
    return Decoder(DataMessage, max_bytes, "worker.max_message_bytes")
