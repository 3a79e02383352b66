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
    several input tensors the generator runs on from one to the next."""
    state = (seed & 0xFFFFFFFF) or 0x9E3779B9
    out = bytearray(length)
    for i in range(len(out)):
        state ^= (state << 13) & 0xFFFFFFFF
        state ^= state >> 17
        state ^= (state << 5) & 0xFFFFFFFF
        out[i] = state & 0xFF
    return bytes(out)


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
