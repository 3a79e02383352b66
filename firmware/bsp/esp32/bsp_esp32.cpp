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

// CCOUNT is per core; masking interrupts keeps the task on this core and
// keeps Wi-Fi/tick handlers out of the count.
void bsp_timed_region_begin(void) { portDISABLE_INTERRUPTS(); }
void bsp_timed_region_end(void) { portENABLE_INTERRUPTS(); }

}  // extern "C"

// The Arduino core owns main(); the runner never returns from setup().
extern "C" void tinyhil_run_forever(void);
void setup() { tinyhil_run_forever(); }
void loop() {}
