// Host-side harness for firmware/runner/protocol.c: reads a byte stream on
// stdin, and for every valid frame writes back a reply frame (kind | 0x80,
// same seq and payload) on stdout, using the firmware's own sender. The
// number of dropped frames goes to stderr.
#include <stdio.h>

#include "tinyhil_protocol.h"

void bsp_uart_write(const uint8_t* data, size_t len) { fwrite(data, 1, len, stdout); }

int main(void) {
  static uint8_t buffer[4096];
  thp_receiver rx;
  thp_receiver_init(&rx, buffer, sizeof buffer);
  int c;
  while ((c = getchar()) != EOF) {
    if (!thp_receiver_feed(&rx, (uint8_t)c)) continue;
    thp_sender tx;
    thp_send_begin(&tx, rx.kind | THP_REPLY, rx.seq, rx.length);
    thp_send_bytes(&tx, rx.payload, rx.length / 2);
    thp_send_bytes(&tx, rx.payload + rx.length / 2, rx.length - rx.length / 2);
    thp_send_end(&tx);
  }
  fprintf(stderr, "%u\n", (unsigned)rx.dropped_frames);
  return 0;
}
