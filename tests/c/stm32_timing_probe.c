// Probe of the STM32 board support's timed region, run on the twin (QEMU
// netduinoplus2): 'q' times a quiet region, 'b' a region during which the host
// sends a byte. Replies "<letter><bsp_timing_end()>" and then echoes what the
// UART received, which must arrive only after the region ends.
#include <stdint.h>
#include <string.h>

#include "stm32_chip.h"
#include "tinyhil_bsp.h"

void bsp_timing_begin(void);
int bsp_timing_end(void);

void tinyhil_fatal(const char* what) { bsp_uart_write((const uint8_t*)what, strlen(what)); }

static int read_byte(void) {
  int byte;
  while ((byte = bsp_uart_read()) < 0) bsp_wait_for_input();
  return byte;
}

void tinyhil_run_forever(void) {
  bsp_init();
  for (;;) {
    const int command = read_byte();
    if (command == 'p') {  // ping: QEMU drops bytes sent before the UART is on
      bsp_uart_write((const uint8_t*)"!", 1);
      continue;
    }
    uint8_t reply[4] = {(uint8_t)command, 0, 0, '\n'};
    bsp_timing_begin();
    int received_inside = bsp_uart_read() >= 0;  // nothing may reach the ring now
    if (command == 'b') {
      bsp_uart_write((const uint8_t*)"R", 1);  // in the region: the host sends now
      for (uint32_t i = 0; i < 400000000u && !NVIC_ISPR(CHIP_UART_IRQ / 32); ++i) {
      }
      received_inside |= bsp_uart_read() >= 0;
    }
    reply[1] = (uint8_t)('0' + bsp_timing_end());
    reply[2] = (uint8_t)('0' + received_inside);
    bsp_uart_write(reply, sizeof reply);
    if (command == 'b') {
      uint8_t late = (uint8_t)read_byte();  // the byte, delivered after the region
      bsp_uart_write(&late, 1);
    }
  }
}
