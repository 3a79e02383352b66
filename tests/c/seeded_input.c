// Host-side harness: prints thp_fill_seeded(seed, n) bytes, for comparison
// with the host's protocol.seeded_bytes(). Usage: seeded_input SEED N
#include <stdio.h>
#include <stdlib.h>

#include "tinyhil_protocol.h"

void bsp_uart_write(const uint8_t* data, size_t len) { (void)data, (void)len; }

int main(int argc, char** argv) {
  if (argc != 3) return 2;
  uint32_t seed = (uint32_t)strtoul(argv[1], NULL, 0);
  size_t n = (size_t)strtoul(argv[2], NULL, 0);
  uint8_t* out = malloc(n);
  // two calls, as for a model with two inputs: the state carries over
  uint32_t state = thp_fill_seeded(seed, out, n / 2);
  thp_fill_seeded(state, out + n / 2, n - n / 2);
  fwrite(out, 1, n, stdout);
  free(out);
  return 0;
}
