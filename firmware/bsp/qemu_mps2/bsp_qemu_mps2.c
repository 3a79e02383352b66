// Board support for QEMU's mps2-an386 (Cortex-M4) and mps2-an505 (Cortex-M33).
//
// QEMU does not emulate the DWT cycle counter (CYCCNT reads 0). SysTick is
// emulated; under `-icount shift=N` it advances deterministically with the
// number of guest instructions, so we count with it (counter kind
// "qemu-icount") and extend its 24 bits to 64 with an overflow interrupt.
//
// Timing hygiene: SysTick has the highest priority and every device
// interrupt a lower one, so BASEPRI holds off all but SysTick's while a
// sample is timed. QEMU's CMSDK UART takes no byte while its holding register
// is full, so a byte that arrives then stays there (the rest wait in the pty):
// nothing is lost, and the receive interrupt runs after the window.
#include <stdint.h>

#include "tinyhil_bsp.h"

#if defined(TINYHIL_MPS2_AN505)
#define UART0_BASE 0x50200000u  // secure alias: the core boots secure
#define UART0_RX_IRQ 32
#define CORE_NAME "cortex-m33"
#else
#define UART0_BASE 0x40004000u
#define UART0_RX_IRQ 0
#define CORE_NAME "cortex-m4"
#endif

#ifndef TINYHIL_BOARD
#define TINYHIL_BOARD "qemu-mps2"
#endif

#define REG(addr) (*(volatile uint32_t*)(addr))
// CMSDK APB UART
#define UART_DATA REG(UART0_BASE + 0x00)
#define UART_STATE REG(UART0_BASE + 0x04)
#define UART_CTRL REG(UART0_BASE + 0x08)
#define UART_INTCLEAR REG(UART0_BASE + 0x0C)
#define UART_BAUDDIV REG(UART0_BASE + 0x10)
#define UART_STATE_TX_FULL 0x1u
#define UART_STATE_RX_FULL 0x2u
#define UART_CTRL_TX_EN 0x1u
#define UART_CTRL_RX_EN 0x2u
#define UART_CTRL_RX_INT_EN 0x8u
#define UART_INT_RX 0x2u
// SysTick, SCB, NVIC
#define SYST_CSR REG(0xE000E010u)
#define SYST_RVR REG(0xE000E014u)
#define SYST_CVR REG(0xE000E018u)
#define SCB_ICSR REG(0xE000ED04u)
#define SCB_ICSR_PENDSTSET (1u << 26)
#define NVIC_ISER(n) REG(0xE000E100u + 4u * (n))
#define SCB_ICSR_PENDSTCLR (1u << 25)
#define SCB_SHPR3 REG(0xE000ED20u)
#define NVIC_ISPR(n) REG(0xE000E200u + 4u * (n))
#define NVIC_IPR(n) (*(volatile uint8_t*)(0xE000E400u + (n)))
#define EXTERNAL_IRQS 64  // as many as startup_mps2.c's vector table has
// Lower number, higher priority: BASEPRI = PRIORITY_DEVICES masks every
// device interrupt and leaves SysTick's (PRIORITY_COUNTER) running.
#define PRIORITY_COUNTER 0x00u
#define PRIORITY_DEVICES 0x80u
#define SYSTICK_MAX 0xFFFFFFu
#define SYSTICK_PERIOD (SYSTICK_MAX + 1u)

static volatile uint32_t systick_overflows;
static uint64_t epoch_ticks;  // counter value when SysTick was last restarted
static volatile uint32_t device_interrupts;  // handlers run, SysTick's excepted
static uint32_t device_interrupts_at_begin;

void SysTick_Handler(void) { systick_overflows++; }

static void systick_restart(void) {
  SYST_CSR = 0;
  SCB_ICSR = SCB_ICSR_PENDSTCLR;
  systick_overflows = 0;
  SYST_RVR = SYSTICK_MAX;
  SYST_CVR = 0;  // reloads from RVR on the next tick, without an interrupt
  SYST_CSR = 0x7;  // enable, interrupt, processor clock
}

// Only wakes the core from WFI; the main loop reads the byte itself.
void Uart0Rx_Handler(void) {
  device_interrupts++;
  UART_INTCLEAR = UART_INT_RX;
}

static void set_basepri(uint32_t priority) {
  __asm volatile("msr basepri, %0\n isb" ::"r"(priority) : "memory");
}

void bsp_init(void) {
  UART_BAUDDIV = 16;  // any legal value: QEMU ignores the baud rate
  UART_CTRL = UART_CTRL_TX_EN | UART_CTRL_RX_EN | UART_CTRL_RX_INT_EN;
  SCB_SHPR3 = (SCB_SHPR3 & 0x00FFFFFFu) | (PRIORITY_COUNTER << 24);
  for (int irq = 0; irq < EXTERNAL_IRQS; ++irq) NVIC_IPR(irq) = PRIORITY_DEVICES;
  NVIC_ISER(UART0_RX_IRQ / 32) = 1u << (UART0_RX_IRQ % 32);

  systick_restart();
  __asm volatile("cpsie i" ::: "memory");
}

void bsp_uart_write(const uint8_t* data, size_t len) {
  for (size_t i = 0; i < len; ++i) {
    while (UART_STATE & UART_STATE_TX_FULL) {
    }
    UART_DATA = data[i];
  }
}

int bsp_uart_read(void) {
  if (UART_STATE & UART_STATE_RX_FULL) return (int)(UART_DATA & 0xFF);
  return -1;
}

void bsp_wait_for_input(void) {
  // Masked WFI: an interrupt that becomes pending between the check and the
  // WFI still wakes the core, so no byte is waited on forever.
  __asm volatile("cpsid i" ::: "memory");
  if (!(UART_STATE & UART_STATE_RX_FULL)) __asm volatile("wfi");
  __asm volatile("cpsie i" ::: "memory");
}

// Ticks since boot. SysTick counts RVR..0 and reloads; its interrupt fires on
// the 1 -> 0 step. Counting ticks from one tick before the first reload, the
// count is overflows * period + (value ? period - value : 0), where a
// pending-but-unserviced 1 -> 0 step counts as an overflow.
uint64_t bsp_counter_read(void) {
  uint32_t high, value, pending;
  do {
    high = systick_overflows;
    value = SYST_CVR;
    pending = SCB_ICSR & SCB_ICSR_PENDSTSET;
  } while (high != systick_overflows);
  // A value near the top means the step to 0 happened before we read it; a
  // small value with pending set means it happened after: not counted yet.
  if (pending && (value == 0 || value > SYSTICK_PERIOD / 2)) high++;
  return epoch_ticks + (uint64_t)high * SYSTICK_PERIOD + (value ? SYSTICK_PERIOD - value : 0);
}

uint32_t bsp_counter_hz(void) { return F_CPU; }
const char* bsp_counter_kind(void) { return "qemu-icount"; }
uint32_t bsp_core_clock_hz(void) { return F_CPU; }
const char* bsp_board_name(void) { return TINYHIL_BOARD; }
const char* bsp_core_name(void) { return CORE_NAME; }


// Restarting SysTick here puts its wrap-around (and the interrupt that
// extends it) at the same point of every timed run, whatever idle time came
// before: counts are then identical from run to run. SysTick's interrupt
// stays on (it extends the counter); every other one is held off.
void bsp_timing_begin(void) {
  set_basepri(PRIORITY_DEVICES);
  device_interrupts_at_begin = device_interrupts;
  const uint64_t now = bsp_counter_read();
  systick_restart();
  epoch_ticks = now;
}

int bsp_timing_end(void) {
  uint32_t pending = 0;
  for (int word = 0; word < EXTERNAL_IRQS / 32; ++word) pending |= NVIC_ISPR(word) & NVIC_ISER(word);
  const int ran = device_interrupts != device_interrupts_at_begin;
  set_basepri(0);  // a held-off interrupt is taken here, after the window
  return ran || pending != 0;
}
