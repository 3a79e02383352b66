// Framing of the host link; see include/tinyhil_protocol.h.
#include "tinyhil_protocol.h"

#include "tinyhil_bsp.h"

enum { WAIT_SYNC0, WAIT_SYNC1, HEADER, PAYLOAD, CRC };

uint32_t thp_crc32_update(uint32_t crc, const uint8_t* data, size_t len) {
  // Bitwise CRC-32 (reflected, poly 0xEDB88320): no table, frames are small.
  crc = ~crc;
  for (size_t i = 0; i < len; ++i) {
    crc ^= data[i];
    for (int bit = 0; bit < 8; ++bit) crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
  }
  return ~crc;
}

uint32_t thp_fill_seeded(uint32_t state, uint8_t* out, size_t len) {
  if (state == 0) state = 0x9E3779B9u;  // xorshift must not start at 0
  for (size_t i = 0; i < len; ++i) {
    state ^= state << 13;
    state ^= state >> 17;
    state ^= state << 5;
    out[i] = (uint8_t)state;
  }
  return state;
}

void thp_receiver_init(thp_receiver* rx, uint8_t* buffer, size_t capacity) {
  rx->payload = buffer;
  rx->capacity = capacity;
  rx->state = WAIT_SYNC0;
  rx->got = 0;
  rx->dropped_frames = 0;
}

int thp_receiver_abandon(thp_receiver* rx) {
  if (rx->state == WAIT_SYNC0) return 0;
  rx->state = WAIT_SYNC0;
  rx->dropped_frames++;
  return 1;
}

static uint32_t frame_crc(const thp_receiver* rx) {
  uint32_t crc = thp_crc32_update(0, rx->header + 2, THP_HEADER_BYTES - 2);
  return thp_crc32_update(crc, rx->payload, rx->length);
}

int thp_receiver_feed(thp_receiver* rx, uint8_t byte) {
  switch (rx->state) {
    case WAIT_SYNC0:
      if (byte == THP_SYNC0) rx->state = WAIT_SYNC1;
      return 0;
    case WAIT_SYNC1:
      if (byte == THP_SYNC1) {
        rx->header[0] = THP_SYNC0;
        rx->header[1] = THP_SYNC1;
        rx->got = 2;
        rx->state = HEADER;
      } else if (byte != THP_SYNC0) {
        rx->state = WAIT_SYNC0;
      }
      return 0;
    case HEADER:
      rx->header[rx->got++] = byte;
      if (rx->got == THP_HEADER_BYTES) {
        rx->kind = rx->header[2];
        rx->seq = rx->header[3];
        rx->length = (uint16_t)(rx->header[4] | (rx->header[5] << 8));
        if (rx->length > rx->capacity) {  // cannot be ours: resynchronise
          rx->dropped_frames++;
          rx->state = WAIT_SYNC0;
          return 0;
        }
        rx->got = 0;
        rx->state = rx->length ? PAYLOAD : CRC;
        rx->crc_rx = 0;
      }
      return 0;
    case PAYLOAD:
      rx->payload[rx->got++] = byte;
      if (rx->got == rx->length) {
        rx->got = 0;
        rx->state = CRC;
      }
      return 0;
    case CRC:
      rx->crc_rx |= (uint32_t)byte << (8 * rx->got++);
      if (rx->got < THP_CRC_BYTES) return 0;
      rx->state = WAIT_SYNC0;
      if (rx->crc_rx == frame_crc(rx)) return 1;
      rx->dropped_frames++;
      return 0;
  }
  rx->state = WAIT_SYNC0;
  return 0;
}

void thp_send_begin(thp_sender* tx, uint8_t kind, uint8_t seq, uint16_t length) {
  uint8_t header[THP_HEADER_BYTES] = {THP_SYNC0, THP_SYNC1, kind, seq,
                                      (uint8_t)(length & 0xFF), (uint8_t)(length >> 8)};
  bsp_uart_write(header, sizeof header);
  tx->crc = thp_crc32_update(0, header + 2, THP_HEADER_BYTES - 2);
  tx->remaining = length;
}

void thp_send_bytes(thp_sender* tx, const void* data, size_t len) {
  tx->crc = thp_crc32_update(tx->crc, (const uint8_t*)data, len);
  tx->remaining -= len;
  bsp_uart_write((const uint8_t*)data, len);
}

void thp_send_u8(thp_sender* tx, uint8_t v) { thp_send_bytes(tx, &v, 1); }

void thp_send_u16(thp_sender* tx, uint16_t v) {
  uint8_t b[2] = {(uint8_t)v, (uint8_t)(v >> 8)};
  thp_send_bytes(tx, b, 2);
}

void thp_send_u32(thp_sender* tx, uint32_t v) {
  uint8_t b[4];
  for (int i = 0; i < 4; ++i) b[i] = (uint8_t)(v >> (8 * i));
  thp_send_bytes(tx, b, 4);
}

void thp_send_u64(thp_sender* tx, uint64_t v) {
  thp_send_u32(tx, (uint32_t)v);
  thp_send_u32(tx, (uint32_t)(v >> 32));
}

void thp_send_end(thp_sender* tx) {
  uint8_t b[4];
  for (int i = 0; i < 4; ++i) b[i] = (uint8_t)(tx->crc >> (8 * i));
  bsp_uart_write(b, 4);
}
