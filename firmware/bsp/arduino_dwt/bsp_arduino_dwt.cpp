// Board support for physical Cortex-M3/M4/M7/M33 boards on the Arduino
// framework: the host link is `Serial` (USB CDC or the ST-Link VCP), time is
// the DWT cycle counter (counter kind "dwt-cycles"), as in MicroNAS.
#include <Arduino.h>

#include "tinyhil_bsp.h"

#ifndef TINYHIL_BAUD
#define TINYHIL_BAUD 115200
#endif
#ifndef TINYHIL_BOARD
#define TINYHIL_BOARD "arduino"
#endif
#ifndef TINYHIL_CORE
#define TINYHIL_CORE "cortex-m"
#endif

// Armv8-M CMSIS names the debug block DCB; Armv7-M calls it CoreDebug.
#if defined(DCB)
#define TINYHIL_DEMCR DCB->DEMCR
#define TINYHIL_TRCENA DCB_DEMCR_TRCENA_Msk
#else
#define TINYHIL_DEMCR CoreDebug->DEMCR
#define TINYHIL_TRCENA CoreDebug_DEMCR_TRCENA_Msk
#endif

static uint32_t counter_high;
static uint32_t counter_last;

extern "C" {

void bsp_init(void) {
  Serial.begin(TINYHIL_BAUD);
  while (!Serial) {
  }
  TINYHIL_DEMCR |= TINYHIL_TRCENA;
#if defined(__ARM_ARCH_7EM__) && defined(DWT_LAR_KEY)
  DWT->LAR = DWT_LAR_KEY;  // Cortex-M7 locks the DWT until unlocked
#endif
  DWT->CYCCNT = 0;
  DWT->CTRL |= DWT_CTRL_CYCCNTENA_Msk;
}

void bsp_uart_write(const uint8_t* data, size_t len) {
  Serial.write(data, len);
  Serial.flush();
}

int bsp_uart_read(void) { return Serial.available() > 0 ? Serial.read() : -1; }

void bsp_wait_for_input(void) {}

// CYCCNT is 32 bits (about 24 s at 180 MHz): extend it in software. Reads are
// far more frequent than wraps during a measurement.
uint64_t bsp_counter_read(void) {
  uint32_t now = DWT->CYCCNT;
  if (now < counter_last) counter_high++;
  counter_last = now;
  return ((uint64_t)counter_high << 32) | now;
}

uint32_t bsp_counter_hz(void) { return SystemCoreClock; }
const char* bsp_counter_kind(void) { return "dwt-cycles"; }
uint32_t bsp_core_clock_hz(void) { return SystemCoreClock; }
const char* bsp_board_name(void) { return TINYHIL_BOARD; }
const char* bsp_core_name(void) { return TINYHIL_CORE; }

// Timing hygiene. Every interrupt is masked (PRIMASK) while a sample is
// timed, as MicroNAS measured: CYCCNT needs no interrupt, and USB, UART and
// SysTick handlers would otherwise be counted as model time. A device
// interrupt that became pending meanwhile (a byte on the UART, USB traffic)
// marks the sample disturbed; a byte waits in the UART's receive register
// (a second one overruns it: the host resends after its timeout). SysTick,
// the Arduino millisecond tick, is no NVIC interrupt and is left out: held
// off, it runs no code in the window, and would otherwise mark every sample
// over 1 ms.
static const size_t kNvicWords = sizeof(NVIC->ISPR) / sizeof(NVIC->ISPR[0]);
static uint32_t pending_at_begin[sizeof(NVIC->ISPR) / sizeof(NVIC->ISPR[0])];

void bsp_timing_begin(void) {
  noInterrupts();
  for (size_t i = 0; i < kNvicWords; ++i) pending_at_begin[i] = NVIC->ISPR[i];
}

int bsp_timing_end(void) {
  uint32_t became_pending = 0;
  for (size_t i = 0; i < kNvicWords; ++i)
    became_pending |= NVIC->ISPR[i] & NVIC->ISER[i] & ~pending_at_begin[i];
  interrupts();  // whatever was held off runs now, after the window
  return became_pending != 0;
}

}  // extern "C"

// The Arduino core owns main(); the runner never returns from setup().
extern "C" void tinyhil_run_forever(void);
void setup() { tinyhil_run_forever(); }
void loop() {}
