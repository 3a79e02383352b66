"""Framing of the host <-> firmware link (mirror of firmware/include/tinyhil_protocol.h).

    SYNC0 SYNC1 | kind u8 | seq u8 | length u16 LE | payload | crc32 LE

The CRC-32 (zlib's) covers kind, seq, length and payload. The decoder
resynchronises after garbage: bytes before a SYNC pair are skipped, and a
frame whose CRC fails is dropped one byte at a time so that a real frame
hidden behind a false SYNC is still found.
"""
from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field
from enum import IntEnum
from functools import lru_cache

SYNC = bytes((0xA5, 0x5A))
HEADER = struct.Struct("<2sBBH")
CRC = struct.Struct("<I")
MAX_PAYLOAD = 0xFFFF
VERSION = 1
REPLY = 0x80


class Kind(IntEnum):
    INFO = 0x01
    LIST = 0x02
    RUN = 0x03
    LAYERS = 0x04  # one untimed inference, every intermediate tensor streamed back
    TENSOR = 0x05  # never a request: the frames a LAYERS request streams (| REPLY)
    BATCH = 0x06  # RUNs of consecutive benchmarks, one reply each (BatchRequest)
    ERROR = 0x7F


class RunFlag(IntEnum):
    PROFILE = 0x01
    OUTPUT_CRC = 0x02
    INPUT_SEED = 0x04


class ErrorCode(IntEnum):
    BAD_REQUEST = 1
    NO_BENCHMARK = 2
    MODEL = 3
    ALLOCATE = 4
    INVOKE = 5
    INPUT_SIZE = 6
    DISTURBED = 7  # a timed sample stayed disturbed by another interrupt: no figure


@dataclass(frozen=True)
class Frame:
    kind: int
    seq: int
    payload: bytes = b""

    def encode(self) -> bytes:
        if len(self.payload) > MAX_PAYLOAD:
            raise ValueError(f"payload of {len(self.payload)} bytes exceeds {MAX_PAYLOAD}")
        header = HEADER.pack(SYNC, self.kind, self.seq & 0xFF, len(self.payload))
        body = header[2:] + self.payload
        return SYNC + body + CRC.pack(zlib.crc32(body))


@dataclass
class FrameDecoder:
    """Turns a byte stream into frames; counts what it had to throw away."""

    max_payload: int = MAX_PAYLOAD
    buffer: bytearray = field(default_factory=bytearray)
    skipped_bytes: int = 0
    bad_frames: int = 0

    def feed(self, data: bytes) -> list[Frame]:
        self.buffer.extend(data)
        frames = []
        while True:
            frame = self._next()
            if frame is None:
                return frames
            frames.append(frame)

    def wanted(self) -> int:
        """Bytes still to come for the frame the buffer starts with, as far as its
        header tells (at least 1): what a reader may wait for in one read."""
        buf = self.buffer
        if len(buf) < HEADER.size or buf[:2] != SYNC:
            return 1
        _, _, _, length = HEADER.unpack_from(buf)
        return max(1, HEADER.size + length + CRC.size - len(buf)) if length <= self.max_payload else 1

    def _next(self) -> Frame | None:
        buf = self.buffer
        while True:
            start = buf.find(SYNC)
            if start < 0:
                # Keep a trailing SYNC0: its SYNC1 may still be on the way.
                keep = 1 if buf[-1:] == SYNC[:1] else 0
                self.skipped_bytes += len(buf) - keep
                del buf[: len(buf) - keep]
                return None
            if start:
                self.skipped_bytes += start
                del buf[:start]
            if len(buf) < HEADER.size:
                return None
            _, kind, seq, length = HEADER.unpack_from(buf)
            if length > self.max_payload:
                self._drop_one()
                continue
            end = HEADER.size + length + CRC.size
            if len(buf) < end:
                # Incomplete: wait for more bytes, unless a complete valid
                # frame already follows, which shows this header is line noise.
                if self._valid_frame_after(1):
                    self._drop_one()
                    continue
                return None
            if not self._crc_ok(0, length):
                self._drop_one()
                continue
            body = bytes(buf[HEADER.size : HEADER.size + length])
            del buf[:end]
            return Frame(kind, seq, body)

    def _crc_ok(self, start: int, length: int) -> bool:
        body = self.buffer[start + 2 : start + HEADER.size + length]
        (crc,) = CRC.unpack_from(self.buffer, start + HEADER.size + length)
        return crc == zlib.crc32(body)

    def _valid_frame_after(self, offset: int) -> bool:
        buf = self.buffer
        while (start := buf.find(SYNC, offset)) >= 0:
            offset = start + 1
            if len(buf) < start + HEADER.size:
                return False
            _, _, _, length = HEADER.unpack_from(buf, start)
            if length <= self.max_payload and len(buf) >= start + HEADER.size + length + CRC.size:
                if self._crc_ok(start, length):
                    return True
        return False

    def _drop_one(self) -> None:
        self.bad_frames += 1
        self.skipped_bytes += 1
        del self.buffer[:1]


# ---- payloads ---------------------------------------------------------------

RUN_HEADER = struct.Struct("<HHHB")


def seeded_bytes(seed: int, length: int) -> bytes:
    """The input bytes the firmware makes from `seed` (thp_fill_seeded); for
    several input tensors the generator runs on from one to the next.

    xorshift32 is linear over GF(2): the state after k steps is the XOR of
    the states that each set bit of the seed alone would reach after k steps.
    Those are tabled once (_XorshiftTable), so a seed's bytes are a few
    vectorised XORs instead of a Python loop per byte (1 ms for 2 KB)."""
    state = (seed & 0xFFFFFFFF) or 0x9E3779B9
    table = _xorshift_table()
    out = bytearray()
    while len(out) < length:
        low, state = table.run(state, min(length - len(out), table.steps))
        out += low
    return bytes(out)


def seeded_bytes_loop(seed: int, length: int) -> bytes:
    """seeded_bytes, step by step as the firmware does it (the reference the table is tested against)."""
    state = (seed & 0xFFFFFFFF) or 0x9E3779B9
    out = bytearray(length)
    for i in range(len(out)):
        state ^= (state << 13) & 0xFFFFFFFF
        state ^= state >> 17
        state ^= (state << 5) & 0xFFFFFFFF
        out[i] = state & 0xFF
    return bytes(out)


class _XorshiftTable:
    """states[k, b]: the xorshift32 state k + 1 steps after the state with only bit b set."""

    def __init__(self, steps: int = 8192):
        import numpy as np

        self.steps = steps
        states = np.empty((steps, 32), np.uint32)
        states[0] = [_xorshift(1 << b) for b in range(32)]
        done = 1
        while done < steps:  # doubling: the next `done` rows are the first ones `done` steps on
            n = min(done, steps - done)
            ahead = states[done - 1]  # where each bit's state is `done` steps on
            block = np.zeros((n, 32), np.uint32)
            for bit in range(32):
                block ^= np.where((states[:n] >> np.uint32(bit)) & np.uint32(1), ahead[bit], np.uint32(0))
            states[done:done + n] = block
            done += n
        self.states = states
        self.low = (states & 0xFF).astype(np.uint8)

    def run(self, state: int, n: int) -> tuple[bytes, int]:
        """The low bytes of the n states after `state`, and the last state."""
        import numpy as np

        bits = [b for b in range(32) if state >> b & 1]
        low = np.bitwise_xor.reduce(self.low[:n, bits], axis=1)
        last = int(np.bitwise_xor.reduce(self.states[n - 1, bits]))
        return low.tobytes(), last


def _xorshift(state: int) -> int:
    state ^= (state << 13) & 0xFFFFFFFF
    state ^= state >> 17
    return state ^ ((state << 5) & 0xFFFFFFFF)


@lru_cache(maxsize=1)
def _xorshift_table() -> _XorshiftTable:
    return _XorshiftTable()  # 0.1 s, once a process, on first use


@dataclass(frozen=True)
class RunRequest:
    """Runs benchmark `benchmark`: with `input` bytes, or (seed given) with
    inputs the firmware generates itself, which spares uploading them."""

    benchmark: int
    input: bytes = b""
    warmup: int = 1
    repeats: int = 10
    profile: bool = True
    output_crc_only: bool = False
    seed: int | None = None

    def encode(self) -> bytes:
        flags = (RunFlag.PROFILE if self.profile else 0) | (
            RunFlag.OUTPUT_CRC if self.output_crc_only else 0
        ) | (RunFlag.INPUT_SEED if self.seed is not None else 0)
        data = self.input if self.seed is None else struct.pack("<I", self.seed & 0xFFFFFFFF)
        return RUN_HEADER.pack(self.benchmark, self.warmup, self.repeats, flags) + data


BATCH_HEADER = struct.Struct("<HHHHB")
SEED = struct.Struct("<I")
MAX_BATCH = 255  # replies are told apart by seq + k, which counts modulo 256


@dataclass(frozen=True)
class BatchRequest:
    """The seeded RUNs of benchmarks first, first + 1, ... (one seed each) in
    one request: the board runs them one after the other as if each had come
    alone and answers the k-th at once, as its own RUN reply (or ERROR), with
    the request's sequence number + k."""

    first: int
    seeds: tuple[int, ...]
    warmup: int = 0
    repeats: int = 1
    profile: bool = True
    output_crc_only: bool = True

    def __post_init__(self):
        if not 1 <= len(self.seeds) <= MAX_BATCH:
            raise ValueError(f"a batch holds 1..{MAX_BATCH} benchmarks, not {len(self.seeds)}")

    def run(self, k: int) -> RunRequest:
        """The RUN the k-th reply answers."""
        return RunRequest(self.first + k, warmup=self.warmup, repeats=self.repeats, profile=self.profile,
                          output_crc_only=self.output_crc_only, seed=self.seeds[k])

    def encode(self) -> bytes:
        flags = RunFlag.INPUT_SEED | (RunFlag.PROFILE if self.profile else 0) | (
            RunFlag.OUTPUT_CRC if self.output_crc_only else 0)
        return BATCH_HEADER.pack(self.first, len(self.seeds), self.warmup, self.repeats, flags) + b"".join(
            SEED.pack(seed & 0xFFFFFFFF) for seed in self.seeds)

    @staticmethod
    def capacity(max_request: int) -> int:
        """Benchmarks one batch may hold on a board whose requests hold `max_request` bytes."""
        return max(0, min(MAX_BATCH, (max_request - BATCH_HEADER.size) // SEED.size))


@dataclass(frozen=True)
class OpTicks:
    op: str
    ticks: int


@dataclass(frozen=True)
class RunReply:
    arena_used: int
    repeat_ticks: tuple[int, ...]
    profile: tuple[OpTicks, ...]
    output_size: int
    output: bytes | None  # None when only the CRC was sent
    output_crc: int

    @classmethod
    def decode(cls, payload: bytes) -> RunReply:
        try:
            return cls._decode(payload)
        except (struct.error, IndexError, UnicodeDecodeError) as error:
            raise ValueError(f"malformed RUN reply of {len(payload)} bytes: {error}") from error

    @classmethod
    def _decode(cls, p: bytes) -> RunReply:
        status, arena_used, n = struct.unpack_from("<BIH", p, 0)
        if status != 0:
            raise ValueError(f"RUN reply status {status}")
        offset = 7
        ticks = struct.unpack_from(f"<{n}Q", p, offset)
        offset += 8 * n
        (n_ops,) = struct.unpack_from("<H", p, offset)
        offset += 2
        profile = []
        for _ in range(n_ops):
            tag_len = p[offset]
            tag = p[offset + 1 : offset + 1 + tag_len].decode("ascii")
            offset += 1 + tag_len
            (op_ticks,) = struct.unpack_from("<Q", p, offset)
            offset += 8
            profile.append(OpTicks(tag, op_ticks))
        mode, size = struct.unpack_from("<BI", p, offset)
        offset += 5
        if mode == 0:
            output = bytes(p[offset : offset + size])
            if len(output) != size:
                raise ValueError(f"output of {len(output)} bytes, header says {size}")
            offset += size
            crc = zlib.crc32(output)
        else:
            output = None
            (crc,) = struct.unpack_from("<I", p, offset)
            offset += 4
        if offset != len(p):
            raise ValueError(f"{len(p) - offset} unexpected trailing bytes")
        return cls(arena_used, tuple(ticks), tuple(profile), size, output, crc)


# ---- LAYERS: every tensor of one inference, streamed op by op ----------------

LAYERS_HEADER = struct.Struct("<HHI")  # benchmark, first unit, mask
TENSOR_HEADER = struct.Struct("<HBBHBIII")  # unit, slot, slots, tensor, type, total, offset, crc
LAYERS_REPLY = struct.Struct("<BHII")  # status, units, arena used, TENSOR frames sent
MASK_BITS = 32
# TfLiteType codes (tensorflow/lite/core/c/c_api_types.h) -> numpy dtype names
TFLITE_TYPES = {1: "float32", 2: "int32", 3: "uint8", 4: "int64", 6: "bool", 7: "int16", 9: "int8"}


@dataclass(frozen=True)
class LayersRequest:
    """One untimed inference of `benchmark` on `input`, streaming units
    (0: the graph's inputs as the device wrote them, i + 1: op i's outputs)
    from `first` on: the next 32 as `mask` selects, every later one."""

    benchmark: int
    input: bytes
    first: int = 0
    mask: int = 0xFFFFFFFF

    @classmethod
    def for_units(cls, benchmark: int, input: bytes, units) -> LayersRequest:
        """The request that streams at least `units` (sorted or not), and as
        few others as its first-and-mask form allows."""
        wanted = sorted(set(units))
        if not wanted:
            return cls(benchmark, input, 0xFFFF, 0)  # nothing: the reply alone
        first = wanted[0]
        mask = sum(1 << (u - first) for u in wanted if u - first < MASK_BITS)
        return cls(benchmark, input, first, mask)

    def encode(self) -> bytes:
        return LAYERS_HEADER.pack(self.benchmark, self.first, self.mask & 0xFFFFFFFF) + self.input


@dataclass(frozen=True)
class TensorChunk:
    unit: int
    slot: int  # which output of the op (which input of the graph)
    slots: int
    tensor: int  # the tensor's index in the subgraph
    dtype: str
    total: int  # the whole tensor's bytes
    offset: int
    crc: int  # CRC-32 of the whole tensor
    data: bytes

    @classmethod
    def decode(cls, payload: bytes) -> TensorChunk:
        if len(payload) < TENSOR_HEADER.size:
            raise ValueError(f"TENSOR frame of {len(payload)} bytes is shorter than its header")
        unit, slot, slots, tensor, type_code, total, offset, crc = TENSOR_HEADER.unpack_from(payload)
        data = bytes(payload[TENSOR_HEADER.size:])
        if slot >= slots or offset + len(data) > total:
            raise ValueError(f"TENSOR frame of unit {unit}: slot {slot} of {slots}, bytes "
                             f"{offset}..{offset + len(data)} of {total}")
        dtype = TFLITE_TYPES.get(type_code, f"tflite-type-{type_code}")
        return cls(unit, slot, slots, tensor, dtype, total, offset, crc, data)


@dataclass(frozen=True)
class LayersReply:
    units: int
    arena_used: int
    frames: int

    @classmethod
    def decode(cls, payload: bytes) -> LayersReply:
        if len(payload) != LAYERS_REPLY.size:
            raise ValueError(f"malformed LAYERS reply of {len(payload)} bytes")
        status, units, arena_used, frames = LAYERS_REPLY.unpack(payload)
        if status != 0:
            raise ValueError(f"LAYERS reply status {status}")
        return cls(units, arena_used, frames)


@dataclass(frozen=True)
class StreamedTensor:
    tensor: int
    dtype: str
    data: bytes


@dataclass
class LayerCapture:
    """What a LAYERS request has brought back so far, put together from its
    TENSOR frames in whatever order, twice or with gaps they came: a tensor
    counts once all its bytes are in and their CRC-32 is the device's.
    `slots[u]` is how many tensors unit u has (from the model)."""

    slots: list[int]
    tensors: dict[tuple[int, int], StreamedTensor] = field(default_factory=dict)
    reply: LayersReply | None = None
    _parts: dict[tuple[int, int], dict[int, bytes]] = field(default_factory=dict)
    _chunk: dict[tuple[int, int], TensorChunk] = field(default_factory=dict)
    rejected: int = 0  # chunks that disagreed with the model or with each other
    received: int = 0  # chunks taken in, repeats included

    def add(self, chunk: TensorChunk) -> bool:
        """Takes one chunk; True if it completed a tensor."""
        self.received += 1
        key = (chunk.unit, chunk.slot)
        if chunk.unit >= len(self.slots) or chunk.slots != self.slots[chunk.unit]:
            self.rejected += 1
            return False
        if key in self.tensors:
            return False
        first = self._chunk.setdefault(key, chunk)
        if (first.total, first.crc, first.tensor, first.dtype) != (chunk.total, chunk.crc, chunk.tensor,
                                                                    chunk.dtype):
            self.rejected += 1
            return False
        parts = self._parts.setdefault(key, {})
        parts[chunk.offset] = chunk.data
        data = bytearray()
        while len(data) < chunk.total:
            part = parts.get(len(data))
            if not part:
                return False
            data += part
        if zlib.crc32(data) != chunk.crc:  # pieces of different streams: start this tensor again
            self.rejected += 1
            del self._parts[key], self._chunk[key]
            return False
        self.tensors[key] = StreamedTensor(chunk.tensor, chunk.dtype, bytes(data))
        del self._parts[key], self._chunk[key]
        return True

    def missing_units(self) -> list[int]:
        return [u for u, n in enumerate(self.slots) if any((u, s) not in self.tensors for s in range(n))]

    @property
    def complete(self) -> bool:
        return self.reply is not None and not self.missing_units()

    def unit(self, unit: int) -> list[StreamedTensor]:
        return [self.tensors[(unit, s)] for s in range(self.slots[unit])]


def decode_error(payload: bytes) -> tuple[int, str]:
    if not payload:
        return 0, "empty ERROR frame"
    return payload[0], payload[1:].decode("utf-8", errors="replace")


def parse_key_values(payload: bytes) -> dict[str, str]:
    """INFO replies are `key=value` lines."""
    pairs = {}
    for line in payload.decode("utf-8", errors="replace").splitlines():
        key, sep, value = line.partition("=")
        if sep:
            pairs[key.strip()] = value.strip()
    return pairs
