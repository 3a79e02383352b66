// STM32F446RE on the Nucleo-F446RE (RM0390): 180 MHz from the ST-LINK's
// 8 MHz clock (HSE bypass), USART2 on PA2/PA3 = the ST-LINK virtual COM port.
// The same code runs on QEMU's netduinoplus2 (STM32F405: same RCC, GPIO and
// USART2 addresses), where RCC is not modelled and every poll below times out.
#if defined(TINYHIL_STM32F446)
#include "stm32_chip.h"

#define RCC_BASE 0x40023800u
#define RCC_CR REG(RCC_BASE + 0x00)
#define RCC_PLLCFGR REG(RCC_BASE + 0x04)
#define RCC_CFGR REG(RCC_BASE + 0x08)
#define RCC_AHB1ENR REG(RCC_BASE + 0x30)
#define RCC_APB1ENR REG(RCC_BASE + 0x40)
#define RCC_CR_HSEON (1u << 16)
#define RCC_CR_HSERDY (1u << 17)
#define RCC_CR_HSEBYP (1u << 18)
#define RCC_CR_PLLON (1u << 24)
#define RCC_CR_PLLRDY (1u << 25)
#define RCC_CFGR_SW_PLL 0x2u
#define RCC_CFGR_SWS_MASK (0x3u << 2)
#define RCC_CFGR_SWS_PLL (0x2u << 2)
#define RCC_AHB1ENR_GPIOAEN (1u << 0)
#define RCC_APB1ENR_USART2EN (1u << 17)
#define RCC_APB1ENR_PWREN (1u << 28)

#define PWR_CR REG(0x40007000u)
#define PWR_CSR REG(0x40007004u)
#define PWR_CR_VOS_SCALE1 (0x3u << 14)
#define PWR_CR_ODEN (1u << 16)
#define PWR_CR_ODSWEN (1u << 17)
#define PWR_CSR_ODRDY (1u << 16)
#define PWR_CSR_ODSWRDY (1u << 17)

#define FLASH_ACR REG(0x40023C00u)
#define FLASH_ACR_LATENCY_5WS 5u
#define FLASH_ACR_PRFTEN (1u << 8)
#define FLASH_ACR_ICEN (1u << 9)
#define FLASH_ACR_DCEN (1u << 10)
#define FLASH_ACR_ICRST (1u << 11)
#define FLASH_ACR_DCRST (1u << 12)

#define GPIOA_BASE 0x40020000u
#define GPIOA_MODER REG(GPIOA_BASE + 0x00)
#define GPIOA_PUPDR REG(GPIOA_BASE + 0x0C)
#define GPIOA_AFRL REG(GPIOA_BASE + 0x20)

#define USART2_BASE 0x40004400u
#define USART_SR REG(USART2_BASE + 0x00)
#define USART_DR REG(USART2_BASE + 0x04)
#define USART_BRR REG(USART2_BASE + 0x08)
#define USART_CR1 REG(USART2_BASE + 0x0C)
#define USART_SR_ORE (1u << 3)
#define USART_SR_RXNE (1u << 5)
#define USART_SR_TXE (1u << 7)
#define USART_CR1_RE (1u << 2)
#define USART_CR1_TE (1u << 3)
#define USART_CR1_RXNEIE (1u << 5)
#define USART_CR1_UE (1u << 13)

#define HSI_HZ 16000000u
#define TARGET_HZ 180000000u

const char chip_name[] = "stm32f446re";
static uint32_t apb1_hz = HSI_HZ;

// PLL: input 8 MHz / M 4 = 2 MHz (RM0390 wants 1..2 MHz), x N 180 = 360 MHz
// VCO, / P 2 = 180 MHz; Q 8 (48 MHz domain unused), R 2 (reset value).
static uint32_t pllcfgr(uint32_t m, int from_hse) {
  return m | (180u << 6) | (0u << 16) | ((from_hse ? 1u : 0u) << 22) | (8u << 24) | (2u << 28);
}

void chip_clock_init(chip_clock* clock) {
  clock->core_hz = HSI_HZ;
  clock->source = "hsi-16MHz";
  clock->error = "";

  RCC_APB1ENR |= RCC_APB1ENR_PWREN;
  PWR_CR |= PWR_CR_VOS_SCALE1;  // 180 MHz needs scale 1 + over-drive

  // The Nucleo's ST-LINK feeds its 8 MHz MCO to OSC_IN: an external clock, so
  // bypass. Without it (solder bridges changed) the PLL runs from HSI instead.
  RCC_CR |= RCC_CR_HSEBYP;
  RCC_CR |= RCC_CR_HSEON;
  const int hse = poll_until(&RCC_CR, RCC_CR_HSERDY, RCC_CR_HSERDY);
  if (!hse) RCC_CR &= ~(RCC_CR_HSEON | RCC_CR_HSEBYP);
  RCC_PLLCFGR = hse ? pllcfgr(4, 1) : pllcfgr(8, 0);
  RCC_CR |= RCC_CR_PLLON;
  if (!poll_until(&RCC_CR, RCC_CR_PLLRDY, RCC_CR_PLLRDY)) {
    clock->error = hse ? "PLL did not lock (PLLRDY never set); running on HSI 16 MHz"
                       : "HSE (ST-LINK 8 MHz) not ready and PLL did not lock; running on HSI 16 MHz";
    return;
  }
  // Over-drive before raising the clock above 168 MHz (RM0390 5.1.4).
  PWR_CR |= PWR_CR_ODEN;
  const int overdrive = poll_until(&PWR_CSR, PWR_CSR_ODRDY, PWR_CSR_ODRDY) &&
                        (PWR_CR |= PWR_CR_ODSWEN,
                         poll_until(&PWR_CSR, PWR_CSR_ODSWRDY, PWR_CSR_ODSWRDY));
  if (!overdrive) {
    clock->error = "over-drive did not become ready (ODRDY/ODSWRDY); running on HSI 16 MHz";
    return;
  }
  // 5 wait states at 180 MHz and 3.3 V; ART caches reset, then on with prefetch.
  FLASH_ACR = FLASH_ACR_ICRST | FLASH_ACR_DCRST;
  FLASH_ACR = FLASH_ACR_LATENCY_5WS;
  FLASH_ACR = FLASH_ACR_LATENCY_5WS | FLASH_ACR_PRFTEN | FLASH_ACR_ICEN | FLASH_ACR_DCEN;
  if ((FLASH_ACR & 0xFu) != FLASH_ACR_LATENCY_5WS) {
    clock->error = "flash did not take 5 wait states; running on HSI 16 MHz";
    return;
  }
  // AHB /1 = 180 MHz, APB1 /4 = 45 MHz (max 45), APB2 /2 = 90 MHz (max 90).
  RCC_CFGR = (RCC_CFGR & ~0xFCF3u) | (0x5u << 10) | (0x4u << 13) | RCC_CFGR_SW_PLL;
  if (!poll_until(&RCC_CFGR, RCC_CFGR_SWS_MASK, RCC_CFGR_SWS_PLL)) {
    clock->error = "the switch to the PLL did not happen (SWS); running on HSI 16 MHz";
    RCC_CFGR &= ~0xFCF3u;
    return;
  }
  clock->core_hz = TARGET_HZ;
  clock->source = hse ? "pll-hse-bypass-8MHz" : "pll-hsi-16MHz";
  if (!hse) clock->error = "HSE (ST-LINK 8 MHz) not ready; PLL runs from HSI (less accurate)";
  apb1_hz = TARGET_HZ / 4;
}

void chip_uart_init(uint32_t baud) {
  RCC_AHB1ENR |= RCC_AHB1ENR_GPIOAEN;
  RCC_APB1ENR |= RCC_APB1ENR_USART2EN;
  (void)RCC_APB1ENR;  // a read-back: the clock is on before the first access
  // PA2 (TX), PA3 (RX): alternate function 7; pull-up on RX against noise.
  GPIOA_MODER = (GPIOA_MODER & ~(0xFu << 4)) | (0xAu << 4);
  GPIOA_AFRL = (GPIOA_AFRL & ~(0xFFu << 8)) | (0x77u << 8);
  GPIOA_PUPDR = (GPIOA_PUPDR & ~(0x3u << 6)) | (0x1u << 6);
  // Oversampling by 16: BRR holds APB1 / baud as mantissa.fraction in 1/16.
  USART_BRR = (apb1_hz + baud / 2) / baud;
  USART_CR1 = USART_CR1_UE | USART_CR1_TE | USART_CR1_RE | USART_CR1_RXNEIE;
}

void chip_uart_putc(uint8_t byte) {
  // Bounded: a UART without a clock must not hang the board, only lose bytes.
  poll_until(&USART_SR, USART_SR_TXE, USART_SR_TXE);
  USART_DR = byte;
}

int chip_uart_irq_take(void) {
  // Reading SR then DR clears RXNE and an overrun (ORE) alike.
  const uint32_t sr = USART_SR;
  const int byte = (int)(USART_DR & 0xFFu);
  return (sr & USART_SR_RXNE) ? byte : -1;
}

int chip_uart_rx_ready(void) { return (USART_SR & USART_SR_RXNE) != 0; }

#endif  // TINYHIL_STM32F446
