// Board-support interface: the only thing the benchmark runner needs from a
// board. One implementation per board family lives in firmware/bsp/<name>/.
#ifndef TINYHIL_BSP_H_
#define TINYHIL_BSP_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// Clocks, UART and the cycle counter; called once before anything else.
void bsp_init(void);

// Blocking write of raw bytes to the host link.
void bsp_uart_write(const uint8_t* data, size_t len);
// Next received byte, or -1 when none is waiting.
int bsp_uart_read(void);
// Sleeps (or returns at once) until a byte may have arrived; saves host CPU.
void bsp_wait_for_input(void);

// Free-running 64-bit counter, in counter ticks (see bsp_counter_hz()).
uint64_t bsp_counter_read(void);
// Counter ticks per second.
uint32_t bsp_counter_hz(void);
// How the counter counts: "dwt-cycles", "qemu-icount" or "ccount-cycles".
const char* bsp_counter_kind(void);

// Core clock in Hz, board and core names, for the INFO reply.
uint32_t bsp_core_clock_hz(void);
const char* bsp_board_name(void);
const char* bsp_core_name(void);

// Timing hygiene: between these calls only the counter's own interrupt may run.
// Brackets each timed sample (one Invoke(), the profiled Invoke()); the runner
// re-runs a sample that bsp_timing_end() reports disturbed, and reports it to
// the host as disturbed (never as a figure) if it stays so. A byte that
// arrives in the window stays in the UART (FIFO, holding register) or the
// host resends it: the held-off interrupt runs right after the window.
void bsp_timing_begin(void);   // holds off every other interrupt (e.g. UART receive)
int bsp_timing_end(void);      // re-enables them; nonzero if another interrupt ran or became pending in the window

#ifdef __cplusplus
}
#endif

#endif  // TINYHIL_BSP_H_
