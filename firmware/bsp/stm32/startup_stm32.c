// Reset and vector table for the STM32 boards: copy .data, zero .bss, enable
// the FPU, run C++ constructors, start the benchmark runner.
#include <stdint.h>
#include <string.h>

#include "stm32_chip.h"

#define EXTERNAL_IRQS CHIP_EXTERNAL_IRQS
#define UART_IRQ CHIP_UART_IRQ
#define UART_HANDLER CHIP_UART_HANDLER

extern uint32_t _sidata, _sdata, _edata, _sbss, _ebss, _estack;
extern void tinyhil_run_forever(void);
extern void __libc_init_array(void);
extern void tinyhil_fatal(const char* what);
void SysTick_Handler(void);
void UART_HANDLER(void);
void Reset_Handler(void);

#define SCB_CPACR (*(volatile uint32_t*)0xE000ED88u)
#define SCB_VTOR (*(volatile uint32_t*)0xE000ED08u)

static void Fault_Handler(void) {
  tinyhil_fatal("hard fault");
  for (;;) {
  }
}

static void Unexpected_Handler(void) {
  tinyhil_fatal("unexpected interrupt");
  for (;;) {
  }
}

typedef void (*vector_t)(void);

__attribute__((section(".isr_vector"), used)) const vector_t vector_table[16 + EXTERNAL_IRQS] = {
    [0] = (vector_t)&_estack,
    [1] = Reset_Handler,
    [2 ... 10] = Fault_Handler,  // NMI, HardFault, MemManage, BusFault, UsageFault, SecureFault
    [11 ... 14] = Unexpected_Handler,  // SVC, DebugMon, PendSV
    [15] = SysTick_Handler,
    [16 ... 16 + EXTERNAL_IRQS - 1] = Unexpected_Handler,
    [16 + UART_IRQ] = UART_HANDLER,
};

void Reset_Handler(void) {
  SCB_VTOR = (uint32_t)vector_table;
  memcpy(&_sdata, &_sidata, (size_t)((char*)&_edata - (char*)&_sdata));
  memset(&_sbss, 0, (size_t)((char*)&_ebss - (char*)&_sbss));
  SCB_CPACR |= 0xFu << 20;  // CP10, CP11 full access: the FPU
  __asm volatile("dsb\n isb" ::: "memory");
  __libc_init_array();
  tinyhil_run_forever();
  for (;;) {
  }
}
