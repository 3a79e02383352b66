// Board support for the STM32 Nucleo boards (F446RE, L552ZE-Q) and their
// emulated twin (QEMU netduinoplus2 running the F446RE code). Chip-specific
// clocks and UART are in stm32f446.c / stm32l552.c.
//
// Counter: the DWT cycle counter, if CYCCNT advances when checked at boot,
// extended to 64 bits by the SysTick interrupt (the only interrupt that runs
// during a timed Invoke). Otherwise SysTick itself counts (24 bits, extended by
// its overflow interrupt) and INFO says so: on QEMU, whose DWT reads 0, this
// is what counts instructions under -icount.
#include <stdint.h>
#include <string.h>

#include "stm32_chip.h"
#include "tinyhil_bsp.h"

#ifndef TINYHIL_BOARD
#define TINYHIL_BOARD "stm32"
#endif
#if defined(TINYHIL_STM32L552)
#define CORE_NAME "cortex-m33"
#else
#define CORE_NAME "cortex-m4"
#endif
// QEMU's netduinoplus2 clocks its core (and so SysTick) at a fixed 168 MHz
// whatever RCC is told; under -icount SysTick then counts virtual time.
#define QEMU_NETDUINO_SYSCLK_HZ 168000000u

#define UART_BAUD 115200u
#define SYSTICK_MAX 0xFFFFFFu
#define SYSTICK_PERIOD (SYSTICK_MAX + 1u)
#define SCB_ICSR_PENDSTSET (1u << 26)
#define SCB_ICSR_PENDSTCLR (1u << 25)
#define DEMCR_TRCENA (1u << 24)
#define DWT_CTRL_CYCCNTENA (1u << 0)
#define DWT_CTRL_NOCYCCNT (1u << 25)
// Priorities (upper bits of the byte; F4 has 4, L5 3): SysTick above
// everything, the UART below the BASEPRI of a timed region.
#define PRIORITY_COUNTER 0x00u
#define PRIORITY_UART 0x80u
#define BASEPRI_TIMED 0x40u

static chip_clock clock;
static int use_dwt;
static char info_notes[256];

// ---- receive ring, filled by the UART interrupt ---------------------------
#define RX_RING_BYTES 512u  // power of two
static volatile uint8_t rx_ring[RX_RING_BYTES];
static volatile uint32_t rx_head, rx_tail;  // head: written by the ISR
static volatile uint32_t rx_dropped;
static volatile uint32_t other_interrupts;  // interrupts but the counter's

static void uart_isr(void) {
  other_interrupts++;
  const int byte = chip_uart_irq_take();
  if (byte < 0) return;
  const uint32_t head = rx_head;
  if (head - rx_tail >= RX_RING_BYTES) {
    rx_dropped++;  // the host resends: its frames are checked by CRC
    return;
  }
  rx_ring[head % RX_RING_BYTES] = (uint8_t)byte;
  rx_head = head + 1;
}
void CHIP_UART_HANDLER(void) { uart_isr(); }

// ---- counter --------------------------------------------------------------
// SysTick mode: ticks = overflows * period + elapsed in the current period.
// DWT mode: the SysTick interrupt folds CYCCNT into a 64-bit total at least
// every 2^24 cycles, long before the 32-bit CYCCNT can wrap.
static volatile uint32_t systick_overflows;
static volatile uint32_t dwt_sequence;  // bumped after each fold
static volatile uint64_t dwt_total;
static volatile uint32_t dwt_last;
static uint64_t epoch_ticks;  // SysTick mode: counter value at the last restart

void SysTick_Handler(void) {
  if (use_dwt) {
    const uint32_t now = DWT_CYCCNT;
    dwt_total += (uint32_t)(now - dwt_last);
    dwt_last = now;
    dwt_sequence++;
  } else {
    systick_overflows++;
  }
}

static void systick_restart(void) {
  SYST_CSR = 0;
  SCB_ICSR = SCB_ICSR_PENDSTCLR;
  systick_overflows = 0;
  SYST_RVR = SYSTICK_MAX;
  SYST_CVR = 0;
  SYST_CSR = 0x7;  // enable, interrupt, processor clock
}

// CYCCNT is checked, not trusted: a core without it (or an emulator) reads a
// constant. A few hundred loop iterations must move it.
static int dwt_advances(void) {
  DEMCR |= DEMCR_TRCENA;
  if (DWT_CTRL & DWT_CTRL_NOCYCCNT) return 0;
  DWT_CYCCNT = 0;
  DWT_CTRL |= DWT_CTRL_CYCCNTENA;
  const uint32_t before = DWT_CYCCNT;
  for (volatile int i = 0; i < 200; ++i) {
  }
  return DWT_CYCCNT != before;
}

uint64_t bsp_counter_read(void) {
  if (use_dwt) {
    uint32_t sequence, last, now;
    uint64_t total;
    do {
      sequence = dwt_sequence;
      total = dwt_total;
      last = dwt_last;
      now = DWT_CYCCNT;
    } while (sequence != dwt_sequence);
    return total + (uint32_t)(now - last);
  }
  uint32_t high, value, pending;
  do {
    high = systick_overflows;
    value = SYST_CVR;
    pending = SCB_ICSR & SCB_ICSR_PENDSTSET;
  } while (high != systick_overflows);
  // A pending 1 -> 0 step not yet serviced counts as an overflow when the
  // value read has already reloaded (near the top) or is the 0 itself.
  if (pending && (value == 0 || value > SYSTICK_PERIOD / 2)) high++;
  return epoch_ticks + (uint64_t)high * SYSTICK_PERIOD + (value ? SYSTICK_PERIOD - value : 0);
}

static uint32_t systick_hz(void) {
#if defined(TINYHIL_QEMU_TWIN)
  return QEMU_NETDUINO_SYSCLK_HZ;
#else
  return clock.core_hz;
#endif
}

uint32_t bsp_counter_hz(void) { return use_dwt ? clock.core_hz : systick_hz(); }

const char* bsp_counter_kind(void) {
  if (use_dwt) return "dwt-cycles";
#if defined(TINYHIL_QEMU_TWIN)
  return "qemu-icount";
#else
  return "systick-cycles";
#endif
}

uint32_t bsp_core_clock_hz(void) {
#if defined(TINYHIL_QEMU_TWIN)
  return QEMU_NETDUINO_SYSCLK_HZ;
#else
  return clock.core_hz;
#endif
}
const char* bsp_board_name(void) { return TINYHIL_BOARD; }
const char* bsp_core_name(void) { return CORE_NAME; }

// Extra INFO lines (key=value): the clock reached and anything that went
// wrong on the way; the host shows `warning` to the user.
const char* bsp_info_notes(void) { return info_notes; }

static void append(const char* text) {
  strncat(info_notes, text, sizeof info_notes - strlen(info_notes) - 1);
}

void bsp_init(void) {
  chip_clock_init(&clock);
  use_dwt = dwt_advances();

  info_notes[0] = '\0';
  append("chip=");
  append(chip_name);
  append("\nclock_source=");
  append(clock.source);
  append("\n");
  int warned = 0;
  if (clock.error[0]) {
    append("warning=clock: ");
    append(clock.error);
    warned = 1;
  }
  if (!use_dwt) {
    append(warned ? "; " : "warning=");
    append("DWT CYCCNT did not advance, SysTick counts instead");
    warned = 1;
  }
  if (warned) append("\n");

  chip_uart_init(UART_BAUD);
  SCB_SHPR3 = (SCB_SHPR3 & 0x00FFFFFFu) | ((uint32_t)PRIORITY_COUNTER << 24);
  NVIC_IPR_BYTE(CHIP_UART_IRQ) = PRIORITY_UART;
  NVIC_ISER(CHIP_UART_IRQ / 32) = 1u << (CHIP_UART_IRQ % 32);
  if (use_dwt) dwt_last = DWT_CYCCNT;
  systick_restart();
  __asm volatile("cpsie i" ::: "memory");
}

void bsp_uart_write(const uint8_t* data, size_t len) {
  for (size_t i = 0; i < len; ++i) chip_uart_putc(data[i]);
}

int bsp_uart_read(void) {
  const uint32_t tail = rx_tail;
  if (tail == rx_head) return -1;
  const int byte = rx_ring[tail % RX_RING_BYTES];
  rx_tail = tail + 1;
  return byte;
}

void bsp_wait_for_input(void) {
  // Masked WFI: an interrupt pending between the check and the WFI still
  // wakes the core. SysTick wakes it too, so idle time is bounded anyway.
  __asm volatile("cpsid i" ::: "memory");
  if (rx_tail == rx_head) __asm volatile("wfi");
  __asm volatile("cpsie i" ::: "memory");
}

static uint32_t other_before;

static int other_pending(void) {
  // Any NVIC line pending (SysTick is not an NVIC line), e.g. a UART byte.
  for (int word = 0; word < 4; ++word)
    if (NVIC_ISPR(word)) return 1;
  return 0;
}

// Holds off every interrupt but the counter's for a timed Invoke (BASEPRI
// masks the UART, SysTick sits above it). In SysTick mode the counter is
// restarted so that its wrap (and the interrupt that extends it) falls at the
// same point of every run: counts are then identical from run to run.
void bsp_timing_begin(void) {
  if (!use_dwt) {
    const uint64_t now = bsp_counter_read();
    systick_restart();
    epoch_ticks = now;
  }
  __asm volatile("msr basepri, %0\n isb" ::"r"(BASEPRI_TIMED) : "memory");
  other_before = other_interrupts;
}

int bsp_timing_end(void) {
  const int disturbed = other_interrupts != other_before || other_pending();
  __asm volatile("msr basepri, %0\n isb" ::"r"(0u) : "memory");
  return disturbed;
}

// The interface's older pair, kept while the runner still calls it.
void bsp_timed_region_begin(void) { bsp_timing_begin(); }
void bsp_timed_region_end(void) { (void)bsp_timing_end(); }
