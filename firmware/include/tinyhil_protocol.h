// Host <-> firmware framing. The host side is host/tinyhil/protocol.py;
// tests/test_protocol.py checks that both agree on every constant here.
//
// Frame: SYNC0 SYNC1 | kind u8 | seq u8 | length u16 LE | payload | crc32 LE
// The CRC-32 (IEEE, as zlib.crc32) covers kind, seq, length and payload.
#ifndef TINYHIL_PROTOCOL_H_
#define TINYHIL_PROTOCOL_H_

#include <stddef.h>
#include <stdint.h>

#define THP_SYNC0 0xA5
#define THP_SYNC1 0x5A
#define THP_HEADER_BYTES 6  // sync x2, kind, seq, length x2
#define THP_CRC_BYTES 4
#define THP_MAX_PAYLOAD 65535
#define THP_VERSION 1

// Requests (host -> device)
#define THP_INFO 0x01
#define THP_LIST 0x02
#define THP_RUN 0x03
// LAYERS: one untimed inference whose every intermediate tensor is streamed
// back op by op (never kept: the arena holds what TFLM holds). Payload:
//   benchmark u16 | first unit u16 | mask u32 | input bytes
// Units: 0 = the graph's inputs as written before Invoke, i + 1 = op i's
// outputs right after op i ran. Unit u is sent if u >= first and (u - first
// >= 32 or mask bit (u - first) is set): the host asks again only for what
// it lacks. Each tensor goes out as TENSOR frames, then one LAYERS reply.
#define THP_LAYERS 0x04
// TENSOR: never a request; the kind (| THP_REPLY) of the frames a LAYERS
// request streams, with its sequence number. Payload:
//   unit u16 | slot u8 | slots u8 | tensor u16 | type u8 (TfLiteType) |
//   total u32 | offset u32 | crc32 of the whole tensor u32 | bytes
#define THP_TENSOR 0x05
#define THP_BATCH 0x06  // RUNs of consecutive benchmarks (seeded), one reply each, seq + k
// Replies (device -> host): request | 0x80, or ERROR
#define THP_REPLY 0x80
#define THP_ERROR 0x7F

// RUN flags
#define THP_RUN_PROFILE 0x01     // one extra profiled Invoke(): per-op ticks
#define THP_RUN_OUTPUT_CRC 0x02  // send the outputs' CRC-32 instead of bytes
#define THP_RUN_INPUT_SEED 0x04  // payload holds a u32 seed, not input bytes:
                                 // inputs come from thp_fill_seeded() (no upload)

#define THP_LAYERS_HEADER_BYTES 8  // benchmark u16, first u16, mask u32
#define THP_TENSOR_HEADER_BYTES 19
#define THP_TENSOR_CHUNK_BYTES 4096  // tensor bytes per TENSOR frame at most
// LAYERS reply: status u8 (0) | units u16 | arena used u32 | TENSOR frames sent u32

// ERROR codes
#define THP_ERR_BAD_REQUEST 1
#define THP_ERR_NO_BENCHMARK 2
#define THP_ERR_MODEL 3      // schema version, missing op, bad tensors
#define THP_ERR_ALLOCATE 4   // AllocateTensors failed: arena too small
#define THP_ERR_INVOKE 5
#define THP_ERR_INPUT_SIZE 6
#define THP_ERR_DISTURBED 7  // a timed sample stayed disturbed by another interrupt

#ifdef __cplusplus
extern "C" {
#endif

uint32_t thp_crc32_update(uint32_t crc, const uint8_t* data, size_t len);

// Deterministic input bytes from a seed (xorshift32, low byte of each step);
// the host generates the same bytes for its reference interpreter. Returns
// the generator state, to continue into the next tensor.
uint32_t thp_fill_seeded(uint32_t state, uint8_t* out, size_t len);

// Incremental frame receiver: feed bytes one by one; returns 1 when a
// complete frame with a valid CRC is in rx->payload. Bytes before a SYNC
// pair, and frames whose CRC fails, are dropped (resynchronisation).
typedef struct {
  uint8_t* payload;
  size_t capacity;
  uint8_t header[THP_HEADER_BYTES];
  uint8_t kind;
  uint8_t seq;
  uint16_t length;
  size_t got;
  int state;
  uint32_t crc_rx;
  uint32_t dropped_frames;  // CRC failures and oversize frames seen
} thp_receiver;

void thp_receiver_init(thp_receiver* rx, uint8_t* buffer, size_t capacity);
int thp_receiver_feed(thp_receiver* rx, uint8_t byte);
// Drops a partly received frame (called when the line has gone quiet in the
// middle of one: its header was line noise). Returns 1 if one was dropped.
int thp_receiver_abandon(thp_receiver* rx);

// Streams one frame out without buffering the payload: begin, any number of
// writes adding up to `length`, end.
typedef struct {
  uint32_t crc;
  size_t remaining;
} thp_sender;

void thp_send_begin(thp_sender* tx, uint8_t kind, uint8_t seq, uint16_t length);
void thp_send_bytes(thp_sender* tx, const void* data, size_t len);
void thp_send_u8(thp_sender* tx, uint8_t v);
void thp_send_u16(thp_sender* tx, uint16_t v);
void thp_send_u32(thp_sender* tx, uint32_t v);
void thp_send_u64(thp_sender* tx, uint64_t v);
void thp_send_end(thp_sender* tx);

#ifdef __cplusplus
}
#endif

#endif  // TINYHIL_PROTOCOL_H_
