// Board support for the ESP32 (Xtensa, no DWT): time is the core's CCOUNT
// register (counter kind "ccount-cycles"), the host link is `Serial`.
#include <Arduino.h>

#include "tinyhil_bsp.h"

#ifndef TINYHIL_BAUD
#define TINYHIL_BAUD 115200
#endif
#ifndef TINYHIL_BOARD
#define TINYHIL_BOARD "esp32"
#endif

static uint32_t counter_high;
static uint32_t counter_last;

extern "C" {

void bsp_init(void) {
  Serial.begin(TINYHIL_BAUD);
  while (!Serial) {
  }
}

void bsp_uart_write(const uint8_t* data, size_t len) {
  Serial.write(data, len);
  Serial.flush();
}

int bsp_uart_read(void) { return Serial.available() > 0 ? Serial.read() : -1; }

void bsp_wait_for_input(void) { delay(0); }  // lets the FreeRTOS idle task run

uint64_t bsp_counter_read(void) {
  uint32_t now = ESP.getCycleCount();
  if (now < counter_last) counter_high++;
  counter_last = now;
  return ((uint64_t)counter_high << 32) | now;
}

uint32_t bsp_counter_hz(void) { return getCpuFrequencyMhz() * 1000000u; }
const char* bsp_counter_kind(void) { return "ccount-cycles"; }
uint32_t bsp_core_clock_hz(void) { return getCpuFrequencyMhz() * 1000000u; }
const char* bsp_board_name(void) { return TINYHIL_BOARD; }
const char* bsp_core_name(void) { return "xtensa-lx6"; }

// Timing hygiene. CCOUNT is per core; masking this core's interrupts (up to
// the level FreeRTOS masks) keeps the task on it and the UART, Wi-Fi and tick
// handlers out of the count; the other core's work does not touch CCOUNT. A
// byte that arrives waits in the UART's 128-byte FIFO. An interrupt that
// became pending meanwhile marks the sample disturbed, except FreeRTOS's
// tick (this core's CCOMPARE0 timer): held off, it runs no code in the
// window, and would otherwise mark every sample over one tick.
#if defined(XT_TIMER_INTNUM)
#define TINYHIL_TICK_INTERRUPT XT_TIMER_INTNUM
#else
#define TINYHIL_TICK_INTERRUPT 6  // ESP32: CCOMPARE0, the FreeRTOS tick on each core
#endif

static uint32_t pending_at_begin;

static uint32_t pending_interrupts(void) {
  uint32_t pending, enabled;
  __asm__ __volatile__("rsr %0, interrupt" : "=a"(pending));
  __asm__ __volatile__("rsr %0, intenable" : "=a"(enabled));
  return pending & enabled & ~(1u << TINYHIL_TICK_INTERRUPT);
}

void bsp_timing_begin(void) {
  portDISABLE_INTERRUPTS();
  pending_at_begin = pending_interrupts();
}

int bsp_timing_end(void) {
  const uint32_t became_pending = pending_interrupts() & ~pending_at_begin;
  portENABLE_INTERRUPTS();  // whatever was held off runs now, after the window
  return became_pending != 0;
}

}  // extern "C"

// The Arduino core owns main(); the runner never returns from setup().
extern "C" void tinyhil_run_forever(void);
void setup() { tinyhil_run_forever(); }
void loop() {}
