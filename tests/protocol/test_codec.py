"""The wire codec: every message round-trips; anything malformed raises ProtocolError and nothing else."""

from __future__ import annotations

import types
from typing import Any, get_args

import msgspec
import msgspec.inspect as mi
import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from zmr.errors import OversizedMessage, ProtocolError
from zmr.protocol import messages as m
from zmr.protocol.codec import (
    COMPRESS_FROM,
    COMPRESSED_FRAME,
    VERSION_FRAME,
    Decoder,
    coordinator_decoder,
    data_decoder,
    encode,
    message_size,
    peer_decoder,
)
from zmr.protocol.messages import PROTOCOL_VERSION

SETTINGS = settings(max_examples=25, deadline=None, derandomize=True, database=None)
LIMIT = 1 << 20
DIRECTIONS: dict[str, tuple[Any, Decoder[Any]]] = {
    "to coordinator": (m.ToCoordinator, coordinator_decoder(LIMIT)),
    "from coordinator": (m.FromCoordinator, peer_decoder(LIMIT)),
    "data": (m.DataMessage, data_decoder(LIMIT)),
}
ALL = [(name, cls) for name, (union, _) in DIRECTIONS.items() for cls in get_args(union)]


def values_of(t: mi.Type) -> st.SearchStrategy[Any]:
    """Values of a msgspec type, within what msgpack can carry."""
    if isinstance(t, mi.StructType):
        return st.builds(t.cls, **{f.name: values_of(f.type) for f in t.fields})
    if isinstance(t, mi.ListType):
        return st.lists(values_of(t.item_type), max_size=3)
    if isinstance(t, mi.DictType):
        return st.dictionaries(values_of(t.key_type), values_of(t.value_type), max_size=3)
    if isinstance(t, mi.UnionType):
        return st.one_of([values_of(u) for u in t.types])
    if isinstance(t, mi.LiteralType):
        return st.sampled_from(t.values)
    if isinstance(t, mi.TupleType):
        return st.tuples(*[values_of(item) for item in t.item_types])
    if isinstance(t, mi.IntType) and (t.ge is not None or t.le is not None):
        return st.integers(t.ge if t.ge is not None else -(2**63), t.le if t.le is not None else 2**64 - 1)
    if isinstance(t, mi.FloatType) and (t.ge is not None or t.le is not None):
        return st.floats(min_value=t.ge, max_value=t.le, allow_nan=False)
    simple: dict[type, st.SearchStrategy[Any]] = {
        mi.IntType: st.integers(-(2**63), 2**64 - 1), mi.FloatType: st.floats(allow_nan=False),
        mi.StrType: st.text(max_size=12), mi.BytesType: st.binary(max_size=12), mi.BoolType: st.booleans(),
        mi.NoneType: st.none(),
    }
    return simple[type(t)]


def messages(cls: type) -> st.SearchStrategy[Any]:
    return values_of(mi.type_info(cls))


def frames_of(msg: msgspec.Struct) -> list[bytes]:
    return [bytes(f) for f in encode(msg, b"payload" if isinstance(msg, m.Batch) else None)]


def body(*fields: Any) -> bytes:
    return msgspec.msgpack.encode(list(fields))


# ---------------------------------------------------------------- round trips


def test_every_message_type_is_in_exactly_one_direction() -> None:
    classes = [cls for _, cls in ALL]
    tagged = {c for name, c in vars(m).items() if not name.startswith("_")
              and isinstance(c, type) and issubclass(c, msgspec.Struct) and mi.type_info(c).tag is not None}
    assert len(classes) == len(set(classes))
    assert set(classes) == tagged
    assert all(isinstance(union, types.UnionType) for union, _ in DIRECTIONS.values())


@pytest.mark.parametrize(("direction", "cls"), ALL, ids=[cls.__name__ for _, cls in ALL])
@SETTINGS
@given(data=st.data())
def test_every_message_round_trips(direction: str, cls: type, data: st.DataObject) -> None:
    msg = data.draw(messages(cls))
    payload = data.draw(st.binary(max_size=32)) if cls is m.Batch else None
    frames = encode(msg, payload)
    plain = msgspec.msgpack.encode(msg)
    assert frames[0] == VERSION_FRAME if len(plain) < COMPRESS_FROM else len(frames[1]) <= len(plain)
    decoded, got = DIRECTIONS[direction][1].decode(frames)
    assert decoded == msg and type(decoded) is cls
    assert got == payload


@pytest.mark.parametrize(("direction", "cls"), ALL, ids=[cls.__name__ for _, cls in ALL])
def test_a_message_is_refused_in_the_wrong_direction(direction: str, cls: type) -> None:
    msg = minimal(mi.type_info(cls))
    assert DIRECTIONS[direction][1].decode(frames_of(msg))[0] == msg
    for other, (_, decoder) in DIRECTIONS.items():
        if other != direction:
            with pytest.raises(ProtocolError):
                decoder.decode(frames_of(msg))


def minimal(t: mi.Type) -> Any:
    """The simplest value of a msgspec type."""
    if isinstance(t, mi.StructType):
        return t.cls(**{f.name: minimal(f.type) for f in t.fields})
    if isinstance(t, mi.UnionType):
        return minimal(t.types[0])
    if isinstance(t, mi.LiteralType):
        return t.values[0]
    if isinstance(t, mi.IntType) and t.ge is not None:
        return t.ge
    simple: dict[type, Any] = {mi.IntType: 0, mi.FloatType: 0.0, mi.StrType: "", mi.BytesType: b"",
                               mi.BoolType: False, mi.NoneType: None, mi.ListType: [], mi.DictType: {}}
    return simple[type(t)]


def test_memoryview_frames_decode_and_the_payload_is_returned_untouched() -> None:
    source = m.AttemptId(job_id="job-0001", kind="map", task=3, number=1)
    header = m.Batch(source=source, partition=2, seq=0, n_records=5)
    payload = memoryview(b"records")
    frames = [memoryview(f) for f in encode(header)] + [payload]
    decoded, got = data_decoder(LIMIT).decode(frames)
    assert decoded == header
    assert got is payload


def test_a_message_of_exactly_the_limit_is_accepted() -> None:
    frames = frames_of(m.TaskRequest(worker_id="w1"))
    size = sum(len(f) for f in frames)
    assert coordinator_decoder(size).decode(frames)[0] == m.TaskRequest(worker_id="w1")
    with pytest.raises(ProtocolError, match="exceeds"):
        coordinator_decoder(size - 1).decode(frames)


def test_an_oversized_message_is_refused_naming_the_limit_and_its_config_key() -> None:
    frames = frames_of(m.TaskRequest(worker_id="w1"))
    size = sum(len(f) for f in frames)
    with pytest.raises(OversizedMessage, match=rf"exceeds the {size - 1}-byte limit \(coordinator.max_message_bytes\)"):
        coordinator_decoder(size - 1).decode(frames)
    with pytest.raises(OversizedMessage, match=r"\(worker.max_message_bytes\)"):
        data_decoder(10).decode(frames)
    assert issubclass(OversizedMessage, ProtocolError)


def big_setup(peers: int = 1000) -> m.JobSetup:
    """A job's setup for a large cluster: a peer list that grows with it."""
    return m.JobSetup(job_id="job-0001", app_blob=b"app", args=[], n_reduce=10 * peers,
                      peers=[f"tcp://10.0.{i // 250}.{i % 250}:7000" for i in range(peers)],
                      cycle=list(range(peers)), moved={}, owners_epoch=0, push=True, batch_bytes=1 << 20,
                      window_bytes=8 << 20)


def test_a_large_body_travels_compressed_and_decodes_the_same() -> None:
    setup = big_setup()
    frames = encode(setup)
    plain = len(msgspec.msgpack.encode(setup))
    assert frames[0] == COMPRESSED_FRAME
    assert len(frames[1]) * 3 < plain
    assert peer_decoder(LIMIT).decode(frames)[0] == setup


def test_a_small_body_travels_as_it_is() -> None:
    small = m.TaskRequest(worker_id="w1")
    assert encode(small) == [VERSION_FRAME, msgspec.msgpack.encode(small)]


def test_the_limit_applies_to_a_compressed_body_as_it_decompresses() -> None:
    frames = encode(big_setup())
    size = len(msgspec.msgpack.encode(big_setup())) + len(frames[0])
    assert peer_decoder(size).decode(frames)[0] == big_setup()
    with pytest.raises(OversizedMessage, match="decompressed exceeds"):
        peer_decoder(size - 1).decode(frames)


def test_a_compressed_bomb_is_refused_before_it_is_decompressed() -> None:
    bomb = zstandard.ZstdCompressor().compress(b"\x00" * (64 << 20))
    assert len(bomb) < 10_000
    with pytest.raises(OversizedMessage):
        coordinator_decoder(LIMIT).decode([COMPRESSED_FRAME, bomb])


def test_a_compressed_body_that_does_not_state_its_size_is_refused() -> None:
    unsized = zstandard.ZstdCompressor(write_content_size=False).compress(GOOD[1])
    with pytest.raises(ProtocolError, match="state its size"):
        coordinator_decoder(LIMIT).decode([COMPRESSED_FRAME, unsized])


# ---------------------------------------------------------------- rejections

GOOD = frames_of(m.TaskRequest(worker_id="w1"))
BATCH = m.Batch(source=m.AttemptId(job_id="j", kind="map", task=0, number=1), partition=0, seq=0, n_records=1)


@pytest.mark.parametrize(("decoder", "frames"), [
    pytest.param(coordinator_decoder(LIMIT), [], id="no frames"),
    pytest.param(coordinator_decoder(LIMIT), GOOD[:1], id="one frame"),
    pytest.param(coordinator_decoder(LIMIT), [*GOOD, b"", b""], id="four frames"),
    pytest.param(coordinator_decoder(LIMIT), [b"ZMR" + bytes([PROTOCOL_VERSION + 1]), GOOD[1]], id="another version"),
    pytest.param(coordinator_decoder(LIMIT), [b"ZMQ\x01", GOOD[1]], id="another protocol"),
    pytest.param(coordinator_decoder(LIMIT), [b"", GOOD[1]], id="empty version frame"),
    pytest.param(coordinator_decoder(8), GOOD, id="oversized"),
    pytest.param(coordinator_decoder(LIMIT), [VERSION_FRAME, b""], id="empty body"),
    pytest.param(coordinator_decoder(LIMIT), [VERSION_FRAME, b"\xc1"], id="not msgpack"),
    pytest.param(coordinator_decoder(LIMIT), [VERSION_FRAME, GOOD[1][:-1]], id="truncated"),
    pytest.param(coordinator_decoder(LIMIT), [VERSION_FRAME, body("Nope", "w1")], id="unknown tag"),
    pytest.param(coordinator_decoder(LIMIT), [VERSION_FRAME, body()], id="no tag"),
    pytest.param(coordinator_decoder(LIMIT), [VERSION_FRAME, body(7, "w1")], id="tag not a string"),
    pytest.param(coordinator_decoder(LIMIT), [VERSION_FRAME, msgspec.msgpack.encode(
        {"type": "TaskRequest", "worker_id": "w1"})], id="a map, not an array"),
    pytest.param(coordinator_decoder(LIMIT), [VERSION_FRAME, body("TaskRequest")], id="missing field"),
    pytest.param(coordinator_decoder(LIMIT), [VERSION_FRAME, body("TaskRequest", "w1", "x")], id="extra field"),
    pytest.param(coordinator_decoder(LIMIT), [VERSION_FRAME, body("TaskRequest", 1)], id="int for str"),
    pytest.param(coordinator_decoder(LIMIT), [VERSION_FRAME, body(
        "Register", "w1", "tcp://a:1", "3.11", "1234", "h")], id="str for int"),
    pytest.param(coordinator_decoder(LIMIT), [VERSION_FRAME, body(
        "MapDone", "w1", "j", 0, 1.5, 0, 0)], id="float for int"),
    pytest.param(coordinator_decoder(LIMIT), [VERSION_FRAME, body(
        "TaskFailed", "w1", "j", 0, 1, "oops", "error")], id="literal out of range"),
    pytest.param(coordinator_decoder(LIMIT), [VERSION_FRAME, body(
        "TaskFailed", "w1", "j", 0, 1, "app", "error", "", ["x"])], id="wrong list items"),
    pytest.param(coordinator_decoder(LIMIT), [VERSION_FRAME, body("SubmitJob", ["wc"])], id="nested too short"),
    pytest.param(coordinator_decoder(LIMIT), [*GOOD, b"payload"], id="payload on a control message"),
    pytest.param(coordinator_decoder(LIMIT), [COMPRESSED_FRAME, GOOD[1]], id="compressed frame, plain body"),
    pytest.param(coordinator_decoder(LIMIT), [COMPRESSED_FRAME, zstandard.ZstdCompressor().compress(GOOD[1])[:-3]],
                 id="compressed body cut short"),
    pytest.param(coordinator_decoder(LIMIT), [COMPRESSED_FRAME, zstandard.ZstdCompressor().compress(b"\xc1")],
                 id="compressed body not msgpack"),
    pytest.param(coordinator_decoder(LIMIT), [b"ZMZ" + bytes([PROTOCOL_VERSION + 1]),
                                              zstandard.ZstdCompressor().compress(GOOD[1])],
                 id="compressed, another version"),
    pytest.param(data_decoder(LIMIT), frames_of(m.StreamEnd(source=BATCH.source, counts={})) + [b"payload"],
                 id="payload on a non-batch"),
    pytest.param(data_decoder(LIMIT), encode(BATCH), id="batch without payload"),
    pytest.param(data_decoder(LIMIT), [VERSION_FRAME, body("StreamEnd", "j", 0, 1, {"0": 1})],
                 id="dict key of the wrong type"),
])
def test_malformed_messages_raise_protocol_error(decoder: Decoder[Any], frames: list[bytes]) -> None:
    with pytest.raises(ProtocolError):
        decoder.decode(frames)


def test_a_protocol_error_is_a_zmr_error_and_chains_the_cause() -> None:
    with pytest.raises(ProtocolError) as caught:
        coordinator_decoder(LIMIT).decode([VERSION_FRAME, b"\xc1"])
    assert isinstance(caught.value.__cause__, msgspec.DecodeError)




def test_a_string_that_is_not_utf8_raises_protocol_error() -> None:
    frames = [VERSION_FRAME, GOOD[1].replace(b"\xa2w1", b"\xa2\x80w")]
    with pytest.raises(ProtocolError):
        coordinator_decoder(LIMIT).decode(frames)


# ---------------------------------------------------------------- fuzz: ProtocolError or a message, nothing else

MSGPACK_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats() | st.text(max_size=8)
    | st.binary(max_size=8),
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=4), inner, max_size=4),
    max_leaves=20)
TAGS = st.sampled_from([cls.__name__ for _, cls in ALL] + ["Nope", ""])


def decode_or_protocol_error(decoder: Decoder[Any], frames: list[bytes]) -> None:
    try:
        msg, _ = decoder.decode(frames)
    except ProtocolError:
        return
    assert isinstance(msg, msgspec.Struct)


@settings(SETTINGS, max_examples=200)
@given(frames=st.lists(st.binary(max_size=40), max_size=4),
       version=st.sampled_from([None, VERSION_FRAME, COMPRESSED_FRAME]))
def test_random_frames(frames: list[bytes], version: bytes | None) -> None:
    if version and frames:
        frames[0] = version
    for _, decoder in DIRECTIONS.values():
        decode_or_protocol_error(decoder, frames)


@settings(SETTINGS, max_examples=200)
@given(tag=TAGS, fields=st.lists(MSGPACK_VALUES, max_size=9), payload=st.none() | st.binary(max_size=8))
def test_random_msgpack_bodies(tag: str, fields: list[Any], payload: bytes | None) -> None:
    frames = [VERSION_FRAME, body(tag, *fields)] + ([] if payload is None else [payload])
    for _, decoder in DIRECTIONS.values():
        decode_or_protocol_error(decoder, frames)


@settings(SETTINGS, max_examples=200)
@given(data=st.data(), which=st.sampled_from(ALL))
def test_mutated_valid_messages(data: st.DataObject, which: tuple[str, type]) -> None:
    frames = frames_of(data.draw(messages(which[1])))
    raw = bytearray(frames[1])
    for _ in range(data.draw(st.integers(1, 3))):
        at = data.draw(st.integers(0, len(raw) - 1))
        raw[at] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(raw)))
    for candidate in ([frames[0], bytes(raw), *frames[2:]], [frames[0], bytes(raw[:cut]), *frames[2:]]):
        for _, decoder in DIRECTIONS.values():
            decode_or_protocol_error(decoder, candidate)


@pytest.mark.parametrize("timeout", [-1.0, 60.5, float("nan"), float("inf")])
def test_a_wait_held_out_of_bounds_is_rejected(timeout: float) -> None:
    frames = [VERSION_FRAME, body("WaitJob", "job-0001", timeout)]
    with pytest.raises(ProtocolError):
        coordinator_decoder(LIMIT).decode(frames)


@pytest.mark.parametrize(("kind", "task", "number"), [("map", -1, 1), ("reduce", 0, 0), ("merge", 0, 1)])
def test_an_attempt_out_of_range_or_of_an_unknown_kind_is_rejected(kind: str, task: int, number: int) -> None:
    frames = [VERSION_FRAME, body("MapDone", "w-1", ["job-0001", kind, task, number], 1, 1)]
    with pytest.raises(ProtocolError):
        coordinator_decoder(LIMIT).decode(frames)
    good = [VERSION_FRAME, body("MapDone", "w-1", ["job-0001", "map", 0, 1], 1, 1)]
    assert coordinator_decoder(LIMIT).decode(good)[0].attempt.label == "job-0001/map-0.1"


COMPRESSED = encode(big_setup(100))


@settings(SETTINGS, max_examples=100)
@given(data=st.data())
def test_mutated_compressed_bodies(data: st.DataObject) -> None:
    raw = bytearray(COMPRESSED[1])
    for _ in range(data.draw(st.integers(1, 3))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(raw)))
    for candidate in ([COMPRESSED_FRAME, bytes(raw)], [COMPRESSED_FRAME, bytes(raw[:cut])]):
        for _, decoder in DIRECTIONS.values():
            decode_or_protocol_error(decoder, candidate)


def test_a_message_size_counts_a_compressed_body_as_it_decompresses() -> None:
    frames = encode(big_setup())
    assert frames[0] == COMPRESSED_FRAME
    assert message_size(frames) == len(frames[0]) + len(msgspec.msgpack.encode(big_setup()))
    small = encode(m.TaskRequest(worker_id="w1"))
    assert message_size(small) == sum(len(f) for f in small)
