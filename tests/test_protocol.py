"""Framing, CRC and resynchronisation, on the host side and against the
firmware's own C implementation (compiled for the host)."""
import random
import re
import struct
import subprocess
import zlib

import pytest

from conftest import compile_host_c
from tinyhil import protocol
from tinyhil.protocol import Frame, FrameDecoder, Kind, RunReply, RunRequest


def test_frame_layout_and_crc():
    raw = Frame(Kind.RUN, 7, b"abc").encode()
    assert raw[:2] == b"\xa5\x5a"
    assert raw[2:6] == bytes([Kind.RUN, 7, 3, 0])
    assert raw[6:9] == b"abc"
    assert struct.unpack("<I", raw[9:])[0] == zlib.crc32(raw[2:9])


def test_roundtrip_many_frames_split_anywhere():
    rng = random.Random(1)
    frames = [Frame(rng.randrange(256), rng.randrange(256), rng.randbytes(rng.randrange(300)))
              for _ in range(200)]
    stream = b"".join(f.encode() for f in frames)
    decoder, out = FrameDecoder(), []
    i = 0
    while i < len(stream):
        n = rng.randrange(1, 50)
        out += decoder.feed(stream[i : i + n])
        i += n
    assert out == frames
    assert decoder.skipped_bytes == 0 and decoder.bad_frames == 0


def test_resync_after_garbage_between_frames():
    rng = random.Random(2)
    frames = [Frame(Kind.INFO | protocol.REPLY, i, rng.randbytes(40)) for i in range(100)]
    stream = bytearray()
    for f in frames:
        garbage = rng.randbytes(rng.randrange(0, 30))
        if rng.random() < 0.3:
            garbage += b"\xa5\x5a" + rng.randbytes(rng.randrange(0, 8))  # false sync
        stream += garbage + f.encode()
    out = FrameDecoder().feed(bytes(stream))
    assert out == frames


def test_corrupted_frame_is_dropped_and_next_one_found():
    good1, bad, good2 = (Frame(1, s, b"x" * 20).encode() for s in (1, 2, 3))
    bad = bytearray(bad)
    bad[10] ^= 0xFF
    decoder = FrameDecoder()
    out = decoder.feed(good1 + bytes(bad) + good2)
    assert [f.seq for f in out] == [1, 3]
    assert decoder.bad_frames >= 1


def test_oversized_length_is_not_waited_for():
    decoder = FrameDecoder(max_payload=100)
    out = decoder.feed(b"\xa5\x5a\x01\x01\xff\xff" + Frame(2, 9, b"ok").encode())
    assert out == [Frame(2, 9, b"ok")]


def test_decoder_tells_what_a_begun_frame_still_needs():
    frame = Frame(Kind.RUN | protocol.REPLY, 5, bytes(range(200))).encode()
    decoder = FrameDecoder()
    assert decoder.wanted() == 1
    assert decoder.feed(b"noise" + frame[:4]) == [] and decoder.wanted() == 1  # header not whole yet
    decoder.feed(frame[4:10])
    assert decoder.wanted() == len(frame) - 10
    assert decoder.feed(frame[10:]) == [Frame(Kind.RUN | protocol.REPLY, 5, bytes(range(200)))]
    assert decoder.wanted() == 1
    small = FrameDecoder(max_payload=100)
    small.buffer.extend(protocol.SYNC + bytes([1, 2, 0xFF, 0xFF]))
    assert small.wanted() == 1  # a length over the limit is not waited for


def test_payload_limit():
    with pytest.raises(ValueError):
        Frame(1, 1, bytes(protocol.MAX_PAYLOAD + 1)).encode()


def test_run_request_and_reply_codec():
    req = RunRequest(3, b"\x01\x02", warmup=2, repeats=5, profile=True)
    assert req.encode() == struct.pack("<HHHB", 3, 2, 5, 1) + b"\x01\x02"
    payload = (struct.pack("<BIH", 0, 1234, 2) + struct.pack("<2Q", 10, 11)
               + struct.pack("<H", 1) + bytes([7]) + b"CONV_2D" + struct.pack("<Q", 9)
               + struct.pack("<BI", 0, 3) + b"\x05\x06\x07")
    reply = RunReply.decode(payload)
    assert reply.arena_used == 1234 and reply.repeat_ticks == (10, 11)
    assert reply.profile[0].op == "CONV_2D" and reply.profile[0].ticks == 9
    assert reply.output == b"\x05\x06\x07" and reply.output_crc == zlib.crc32(b"\x05\x06\x07")
    with pytest.raises(ValueError):
        RunReply.decode(payload[:-1])  # truncated output
    with pytest.raises(ValueError):
        RunReply.decode(payload + b"\x00")  # trailing byte


def test_constants_match_the_firmware_header(root):
    header = (root / "firmware/include/tinyhil_protocol.h").read_text()
    defines = dict(re.findall(r"#define (THP_\w+) (0x[0-9A-Fa-f]+|\d+)", header))
    value = {k: int(v, 0) for k, v in defines.items()}
    assert bytes([value["THP_SYNC0"], value["THP_SYNC1"]]) == protocol.SYNC
    assert value["THP_HEADER_BYTES"] == protocol.HEADER.size
    assert value["THP_VERSION"] == protocol.VERSION
    assert value["THP_REPLY"] == protocol.REPLY
    for kind in Kind:
        assert value[f"THP_{kind.name}"] == kind.value
    assert value["THP_RUN_PROFILE"] == protocol.RunFlag.PROFILE
    assert value["THP_RUN_OUTPUT_CRC"] == protocol.RunFlag.OUTPUT_CRC
    for code in protocol.ErrorCode:
        assert value[f"THP_ERR_{code.name}"] == code.value


@pytest.fixture(scope="module")
def c_echo(root, tmp_path_factory):
    out = tmp_path_factory.mktemp("c") / "protocol_echo"
    return compile_host_c([root / "firmware/runner/protocol.c", root / "tests/c/protocol_echo.c"],
                          out, root / "firmware/include")


def test_firmware_receiver_and_sender_interoperate(c_echo):
    """Python frames + garbage -> firmware receiver -> firmware sender -> Python decoder."""
    rng = random.Random(3)
    frames = [Frame(Kind.RUN, i, rng.randbytes(rng.randrange(0, 500))) for i in range(60)]
    stream = bytearray()
    corrupted = set()
    for f in frames:
        stream += rng.randbytes(rng.randrange(0, 20))  # line noise
        raw = bytearray(f.encode())
        if rng.random() < 0.2:  # flip a bit: the firmware must drop this one
            raw[rng.randrange(2, len(raw))] ^= 1 << rng.randrange(8)
            corrupted.add(f.seq)
        stream += raw
    result = subprocess.run([str(c_echo)], input=bytes(stream), capture_output=True, check=True)
    replies = FrameDecoder().feed(result.stdout)
    expected = [Frame(Kind.RUN | protocol.REPLY, f.seq, f.payload)
                for f in frames if f.seq not in corrupted]
    assert corrupted  # the test injected faults
    # A flipped length byte can swallow the next frame too; everything the
    # firmware accepted must be exact, and nothing corrupted may get through.
    assert set(r.seq for r in replies) <= set(f.seq for f in expected)
    assert all(r in expected for r in replies)
    assert len(replies) >= len(expected) - len(corrupted)
    assert int(result.stderr) >= len(corrupted) - (len(expected) - len(replies))


@pytest.mark.parametrize("seed", [0, 1, 0xDEADBEEF])
def test_seeded_inputs_match_the_firmware_generator(root, tmp_path, seed):
    exe = compile_host_c([root / "firmware/runner/protocol.c", root / "tests/c/seeded_input.c"],
                         tmp_path / "seeded_input", root / "firmware/include")
    for length in (1001, 20000):  # 20000: across the table's chunks (seeded_bytes)
        out = subprocess.run([str(exe), str(seed), str(length)], capture_output=True, check=True).stdout
        assert out == protocol.seeded_bytes(seed, length)
        assert len(set(out)) > 200  # covers the byte range


def test_seeded_bytes_from_the_table_equal_the_step_by_step_generator():
    rng = random.Random(5)
    seeds = [0, 1, 0x80000000, 0xFFFFFFFF, 0x9E3779B9, *(rng.getrandbits(32) for _ in range(40))]
    for seed in seeds:
        for length in (0, 1, 2, 33, 4095, 8192, 8193, 17000):
            assert protocol.seeded_bytes(seed, length) == protocol.seeded_bytes_loop(seed, length), (seed, length)


def test_seeded_run_request_carries_only_the_seed():
    req = RunRequest(1, warmup=0, repeats=2, profile=False, seed=0x01020304)
    assert req.encode() == struct.pack("<HHHBI", 1, 0, 2, protocol.RunFlag.INPUT_SEED, 0x01020304)


class ScriptedBoard:
    """A pyserial-like port whose 'board' answers each request frame it gets
    with the next of `answers` (functions of that frame, giving a frame or a
    list of frames and raw bytes)."""

    def __init__(self, answers):
        self.answers = list(answers)
        self.requests: list[Frame] = []
        self.pending = bytearray()
        self.decoder = FrameDecoder()

    @property
    def in_waiting(self) -> int:
        return len(self.pending)

    def reset_input_buffer(self) -> None:
        self.pending.clear()

    def write(self, data: bytes) -> None:
        for frame in self.decoder.feed(data):
            self.requests.append(frame)
            answer = self.answers.pop(0)(frame)
            for part in answer if isinstance(answer, list) else [answer]:
                self.pending += part.encode() if isinstance(part, Frame) else part

    def flush(self) -> None:
        pass

    def read(self, n: int) -> bytes:
        chunk = bytes(self.pending[:n])
        del self.pending[:n]
        return chunk


def disturbed(request: Frame) -> Frame:
    return Frame(Kind.ERROR, request.seq, bytes([protocol.ErrorCode.DISTURBED]) +
                 b"repeat sample 3 stayed disturbed: another interrupt ran")


def run_reply(request: Frame) -> Frame:
    ticks = (1000, 1000)
    payload = struct.pack("<BIH", 0, 512, len(ticks)) + struct.pack("<2Q", *ticks)
    payload += struct.pack("<H", 0) + struct.pack("<BII", 1, 4, 0x1234)
    return Frame(Kind.RUN | protocol.REPLY, request.seq, payload)


def test_a_disturbed_sample_is_measured_again_never_taken():
    from tinyhil.device.driver import BenchDriver

    port = ScriptedBoard([disturbed, run_reply])
    reply = BenchDriver(port, "qemu-m4", timeout=5.0).run(RunRequest(0, repeats=2))
    assert reply.repeat_ticks == (1000, 1000)
    assert len(port.requests) == 2 and port.requests[0] == port.requests[1]  # the same RUN again


def test_a_sample_that_stays_disturbed_gives_no_figure():
    from tinyhil.device.driver import BenchDriver
    from tinyhil.errors import BoardNotResponding, SampleDisturbed

    port = ScriptedBoard([disturbed] * 3)
    with pytest.raises(SampleDisturbed, match=r"disturbed on 3 tries, no figure taken "
                                              r"\(repeat sample 3 stayed disturbed"):
        BenchDriver(port, "qemu-m4", timeout=5.0, retries=2).run(RunRequest(0, repeats=2))
    assert issubclass(SampleDisturbed, BoardNotResponding)  # the recovery ladder takes over


# ---- LAYERS: tensors streamed op by op ----------------------------------------

def tensor_frames(unit: int, slot: int, slots: int, tensor: int, data: bytes, chunk: int,
                  crc: int | None = None) -> list[bytes]:
    """TENSOR payloads as the firmware's LayerStreamer cuts a tensor."""
    crc, parts, offset = zlib.crc32(data) if crc is None else crc, [], 0
    while True:
        piece = data[offset:offset + chunk]
        parts.append(protocol.TENSOR_HEADER.pack(unit, slot, slots, tensor, 9, len(data), offset, crc) + piece)
        offset += len(piece)
        if offset >= len(data):
            return parts


def test_layers_request_asks_for_what_is_missing_only():
    header = protocol.LAYERS_HEADER
    assert header.size == 8
    whole = protocol.LayersRequest(3, b"in")
    assert whole.encode() == header.pack(3, 0, 0xFFFFFFFF) + b"in"
    gaps = protocol.LayersRequest.for_units(0, b"", [9, 5, 7, 40])
    # units 5, 7 and 9 by the mask; 40 is past it: sent anyway, as every unit from first + 32 is
    assert (gaps.first, gaps.mask) == (5, 0b10101)
    none = protocol.LayersRequest.for_units(0, b"", [])
    assert none.mask == 0 and none.first == 0xFFFF  # the reply alone


def test_layer_capture_puts_tensors_together_from_any_order():
    rng = random.Random(4)
    tensors = {(0, 0): rng.randbytes(10), (1, 0): rng.randbytes(9000), (2, 0): b"", (2, 1): rng.randbytes(5)}
    slots = [1, 1, 2]
    frames = [p for (u, s), data in tensors.items() for p in tensor_frames(u, s, slots[u], 10 * u + s, data, 4096)]
    assert len(frames) == 6  # 9000 bytes: three chunks; an empty tensor still one frame
    capture = protocol.LayerCapture(slots)
    order = frames + frames[:2]  # duplicates, as a faulty line makes them
    rng.shuffle(order)
    for payload in order:
        capture.add(protocol.TensorChunk.decode(payload))
    assert not capture.missing_units() and not capture.complete  # no LAYERS reply yet
    capture.reply = protocol.LayersReply.decode(protocol.LAYERS_REPLY.pack(0, 3, 100, 6))
    assert capture.complete
    for (u, s), data in tensors.items():
        assert capture.tensors[(u, s)].data == data and capture.tensors[(u, s)].tensor == 10 * u + s
    assert capture.tensors[(1, 0)].dtype == "int8" and capture.received == 8 and capture.rejected == 0


def test_layer_capture_never_takes_a_tensor_whose_crc_fails():
    data = bytes(range(200))
    good = tensor_frames(1, 0, 1, 7, data, 64)
    forged = tensor_frames(1, 0, 1, 7, bytes(200), 64, crc=zlib.crc32(data))  # the right CRC, other bytes
    capture = protocol.LayerCapture([1, 1])
    for payload in good[:2] + forged[2:]:  # pieces of two streams
        capture.add(protocol.TensorChunk.decode(payload))
    assert (1, 0) not in capture.tensors and capture.rejected == 1  # started again, not taken
    assert capture.missing_units() == [0, 1]
    for payload in good:
        capture.add(protocol.TensorChunk.decode(payload))
    assert capture.tensors[(1, 0)].data == data and capture.missing_units() == [0]


def test_layer_capture_refuses_chunks_the_model_cannot_have():
    capture = protocol.LayerCapture([1, 1])
    capture.add(protocol.TensorChunk.decode(tensor_frames(5, 0, 1, 3, b"x", 8)[0]))  # no unit 5
    capture.add(protocol.TensorChunk.decode(tensor_frames(1, 0, 2, 3, b"x", 8)[0]))  # unit 1 has 1 tensor
    assert capture.rejected == 2 and not capture.tensors
    with pytest.raises(ValueError):
        protocol.TensorChunk.decode(protocol.TENSOR_HEADER.pack(1, 0, 1, 3, 9, 4, 2, 0) + b"abc")  # past its end
    with pytest.raises(ValueError):
        protocol.LayersReply.decode(protocol.LAYERS_REPLY.pack(1, 3, 0, 0))  # status not ok


class TricklingBoard(ScriptedBoard):
    """Says one byte is waiting at a time, as a pty fed byte by byte by QEMU's
    UART does, while read(n) waits for n bytes as pyserial's does."""

    reads = 0

    @property
    def in_waiting(self) -> int:
        return min(1, len(self.pending))

    def read(self, n: int) -> bytes:
        self.reads += 1
        return super().read(n)


def big_reply(request: Frame) -> Frame:
    payload = struct.pack("<BIH", 0, 512, 1) + struct.pack("<Q", 1000) + struct.pack("<H", 0)
    payload += struct.pack("<BI", 0, 2000) + bytes(2000)
    return Frame(Kind.RUN | protocol.REPLY, request.seq, payload)


def test_a_reply_is_read_in_a_few_reads_not_one_a_byte():
    from tinyhil.device.driver import BenchDriver

    port = TricklingBoard([big_reply])
    reply = BenchDriver(port, "qemu-m4", timeout=5.0).run(RunRequest(0, warmup=0, repeats=1))
    assert reply.output == bytes(2000)
    assert port.reads <= 8  # the header byte by byte, then the rest at once


def sent(frame: Frame) -> RunRequest:
    benchmark, warmup, repeats, flags = protocol.RUN_HEADER.unpack_from(frame.payload)
    return RunRequest(benchmark, warmup=warmup, repeats=repeats, profile=bool(flags & 1))


def test_a_short_run_of_unknown_cost_is_sent_alone():
    """A characterization's RUN (one profiled and one timed inference) of a
    benchmark not seen yet goes out alone: a one-inference RUN before it would
    double the requests. It is waited for one timeout per inference."""
    from tinyhil.device.driver import BenchDriver

    port = ScriptedBoard([run_reply, run_reply])
    driver = BenchDriver(port, "qemu-m4", timeout=5.0, ticks_per_second=1e6)
    request = RunRequest(3, warmup=0, repeats=1, profile=True)
    assert driver.run_timeout(request) == 10.0
    driver.run(request)
    assert [sent(f) for f in port.requests] == [request]
    # its cost is known now: the next RUN of it waits for its work (3x) beyond the timeout
    assert driver.run_timeout(request) == pytest.approx(5.0 + 3 * 2 * 1000 / 1e6)


def test_a_long_run_of_unknown_cost_is_sized_by_one_inference_first():
    from tinyhil.device.driver import BenchDriver

    port = ScriptedBoard([run_reply, run_reply])
    driver = BenchDriver(port, "qemu-m4", timeout=5.0, ticks_per_second=1e6)
    driver.run(RunRequest(3, warmup=1, repeats=2, profile=True))
    assert [sent(f) for f in port.requests] == [
        RunRequest(3, warmup=0, repeats=1, profile=False), RunRequest(3, warmup=1, repeats=2, profile=True)]


def ticks_reply(seq: int, ticks: int, crc: int = 0x1234) -> Frame:
    payload = struct.pack("<BIH", 0, 512, 1) + struct.pack("<Q", ticks) + struct.pack("<H", 0)
    return Frame(Kind.RUN | protocol.REPLY, seq, payload + struct.pack("<BII", 1, 4, crc))


def test_batch_request_layout_and_capacity():
    batch = protocol.BatchRequest(5, (1, 2, 0xFFFFFFFF), warmup=0, repeats=1)
    flags = protocol.RunFlag.INPUT_SEED | protocol.RunFlag.PROFILE | protocol.RunFlag.OUTPUT_CRC
    assert batch.encode() == struct.pack("<HHHHBIII", 5, 3, 0, 1, flags, 1, 2, 0xFFFFFFFF)
    assert batch.run(2) == RunRequest(7, warmup=0, repeats=1, profile=True, output_crc_only=True,
                                      seed=0xFFFFFFFF)
    assert protocol.BatchRequest.capacity(64) == 13 and protocol.BatchRequest.capacity(4096) == 255
    with pytest.raises(ValueError):
        protocol.BatchRequest(0, ())


def test_a_batch_is_answered_reply_by_reply_in_order():
    from tinyhil.device.driver import BenchDriver

    def board(request):  # one reply per RUN, seq + k; a stale frame of an earlier request first
        return [ticks_reply(request.seq - 1, 1)] + [ticks_reply(request.seq + k, 100 + k) for k in range(4)]

    port = ScriptedBoard([board, run_reply])
    driver = BenchDriver(port, "qemu-m4", timeout=5.0)
    answers = list(driver.run_batch(protocol.BatchRequest(3, (9, 8, 7, 6))))
    assert [(k, r.repeat_ticks) for k, r in answers] == [(k, (100 + k,)) for k in range(4)]
    assert port.requests[0].kind == Kind.BATCH
    assert driver.inference_ticks == {3: 100, 4: 101, 5: 102, 6: 103}  # learnt: later timeouts fit
    driver.run(RunRequest(0, repeats=2))  # the next request's seq follows the batch's
    assert port.requests[1].seq == (port.requests[0].seq + 4) & 0xFF


def test_a_batch_skips_a_lost_reply_and_says_what_failed():
    from tinyhil.device.driver import BenchDriver
    from tinyhil.errors import DeviceError, SampleDisturbed

    def board(request):
        garbled = bytearray(ticks_reply(request.seq + 1, 101).encode())
        garbled[12] ^= 0xFF  # fails its CRC: lost
        return [ticks_reply(request.seq, 100), bytes(garbled),
                Frame(Kind.ERROR, request.seq + 2, bytes([protocol.ErrorCode.DISTURBED]) + b"stayed disturbed"),
                Frame(Kind.ERROR, request.seq + 3, bytes([protocol.ErrorCode.INVOKE]) + b"Invoke failed"),
                ticks_reply(request.seq + 4, 104)]

    driver = BenchDriver(ScriptedBoard([board]), "qemu-m4", timeout=5.0)
    answers = dict(driver.run_batch(protocol.BatchRequest(0, (1, 2, 3, 4, 5))))
    assert sorted(answers) == [0, 2, 3, 4]  # 1 lost: the caller runs it again
    assert isinstance(answers[2], SampleDisturbed) and isinstance(answers[3], DeviceError)
    assert answers[4].repeat_ticks == (104,)


def test_a_batch_ends_at_a_device_fault_or_when_the_board_goes_quiet(monkeypatch):
    import time as time_module

    from tinyhil.device import driver as driver_module
    from tinyhil.device.driver import BenchDriver

    def faulting(request):
        return [ticks_reply(request.seq, 100),
                Frame(Kind.ERROR, request.seq + 1, bytes([protocol.ErrorCode.INVOKE]) + b"device fault: hard fault")]

    driver = BenchDriver(ScriptedBoard([faulting]), "qemu-m4", timeout=0.2)
    monkeypatch.setattr(driver_module, "RUN_FLOOR_SECONDS", 0.0)
    started = time_module.monotonic()
    assert [k for k, _ in driver.run_batch(protocol.BatchRequest(0, (1, 2, 3)))] == [0, 1]
    assert time_module.monotonic() - started < 0.2  # not waited for: nothing follows a fault
    quiet = BenchDriver(ScriptedBoard([lambda request: [ticks_reply(request.seq, 100)]]), "qemu-m4", timeout=0.2)
    assert [k for k, _ in quiet.run_batch(protocol.BatchRequest(0, (1, 2, 3)))] == [0]


def test_boot_waits_start_short_and_double_up_to_the_longest():
    from tinyhil.device.driver import boot_waits

    waits = boot_waits(5.0, 15.0)
    assert waits[:5] == [0.25, 0.5, 1.0, 2.0, 4.0] and max(waits) == 5.0
    assert sum(waits) >= 15.0 and sum(waits[:-1]) < 15.0


def test_an_info_lost_while_the_board_boots_is_sent_again_not_waited_out():
    """A UART enabled late drops the first INFO (QEMU's STM32 USART does): the
    boot handshake sends it again after its first short wait."""
    from tinyhil.device.driver import BenchDriver, boot_waits

    info = (f"protocol={protocol.VERSION}\nboard=qemu-stm32f4\ncore=cortex-m4\nclock_hz=168000000\n"
            "counter=qemu-icount\ncounter_hz=168000000\ntflm=x\nbuild_id=abc\narena_bytes=1024\n"
            "benchmarks=1\nmax_request=512\n").encode()
    port = ScriptedBoard([lambda _r: b"", lambda r: Frame(Kind.INFO | protocol.REPLY, r.seq, info)])
    driver = BenchDriver(port, "qemu-stm32f4", timeout=5.0)
    assert driver.info(boot_waits(5.0, 15.0)).build_id == "abc"
    assert len(port.requests) == 2 and driver.resends == 1
