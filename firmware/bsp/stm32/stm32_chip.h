// What the common STM32 board support (bsp_stm32.c) needs from one chip:
// clocks, the ST-LINK virtual COM port and the NVIC line of its UART.
// One implementation per chip: stm32f446.c, stm32l552.c.
#ifndef TINYHIL_STM32_CHIP_H_
#define TINYHIL_STM32_CHIP_H_

#include <stdint.h>

// Vector table size and the ST-LINK UART's interrupt line (RM0438 / RM0390).
#if defined(TINYHIL_STM32L552)
#define CHIP_EXTERNAL_IRQS 109
#define CHIP_UART_IRQ 66  // LPUART1
#define CHIP_UART_HANDLER LPUART1_IRQHandler
#else
#define CHIP_EXTERNAL_IRQS 97
#define CHIP_UART_IRQ 38  // USART2
#define CHIP_UART_HANDLER USART2_IRQHandler
#endif

#define REG(addr) (*(volatile uint32_t*)(addr))

// Core registers (the same on Cortex-M4 and Cortex-M33)
#define SYST_CSR REG(0xE000E010u)
#define SYST_RVR REG(0xE000E014u)
#define SYST_CVR REG(0xE000E018u)
#define SCB_ICSR REG(0xE000ED04u)
#define SCB_SHPR3 REG(0xE000ED20u)
#define NVIC_ISER(n) REG(0xE000E100u + 4u * (n))
#define NVIC_ISPR(n) REG(0xE000E200u + 4u * (n))
#define NVIC_IPR_BYTE(irq) (*(volatile uint8_t*)(0xE000E400u + (irq)))
#define DEMCR REG(0xE000EDFCu)
#define DWT_CTRL REG(0xE0001000u)
#define DWT_CYCCNT REG(0xE0001004u)

// Polls are bounded: a peripheral that never answers (a missing clock, an
// emulator that does not model RCC) costs at most this many reads, then the
// caller reports it. 200k reads are ~50 ms at 16 MHz, far above any lock time.
#define POLL_LIMIT 200000u

static inline int poll_until(volatile uint32_t* reg, uint32_t mask, uint32_t want) {
  for (uint32_t i = 0; i < POLL_LIMIT; ++i)
    if ((*reg & mask) == want) return 1;
  return 0;
}

typedef struct {
  uint32_t core_hz;          // what the core runs at after chip_clock_init()
  const char* source;        // e.g. "pll-hse-bypass-8MHz"
  const char* error;         // empty when the intended clock was reached
} chip_clock;

// Sets the core clock, flash wait states and caches. Never hangs: a source
// or PLL that does not become ready leaves the core on its reset clock and
// says so in `error`.
void chip_clock_init(chip_clock* clock);
// ST-LINK virtual COM port at `baud`, receive interrupt enabled (not yet in the NVIC).
void chip_uart_init(uint32_t baud);
void chip_uart_putc(uint8_t byte);
// Called from the UART interrupt: the received byte, or -1 (an error flag was cleared).
int chip_uart_irq_take(void);
// 1 when a received byte waits in the UART itself.
int chip_uart_rx_ready(void);
extern const char chip_name[];

#endif  // TINYHIL_STM32_CHIP_H_
