// STM32L552ZE on the Nucleo-L552ZE-Q (RM0438), TrustZone disabled (TZEN=0,
// the factory setting): everything runs non-secure from the non-secure
// aliases (flash 0x08000000, SRAM 0x20000000, peripherals 0x40000000); with
// TZEN=1 the core boots secure and these addresses would be the wrong alias.
// 80 MHz as the MicroNAS paper measured (its Arduino core ran 110 MHz: why
// platformio.ini once said so); LPUART1 on PG7/PG8 = the ST-LINK virtual COM
// port, whose pins are supplied by VDDIO2 (off until PWR_CR2.IOSV is set).
#if defined(TINYHIL_STM32L552)
#include "stm32_chip.h"

#define RCC_BASE 0x40021000u
#define RCC_CR REG(RCC_BASE + 0x00)
#define RCC_CFGR REG(RCC_BASE + 0x08)
#define RCC_PLLCFGR REG(RCC_BASE + 0x0C)
#define RCC_AHB2ENR REG(RCC_BASE + 0x4C)
#define RCC_APB1ENR1 REG(RCC_BASE + 0x58)
#define RCC_APB1ENR2 REG(RCC_BASE + 0x5C)
#define RCC_CCIPR1 REG(RCC_BASE + 0x88)
#define RCC_CR_HSION (1u << 8)
#define RCC_CR_HSIRDY (1u << 10)
#define RCC_CR_PLLON (1u << 24)
#define RCC_CR_PLLRDY (1u << 25)
#define RCC_CFGR_SW_PLL 0x3u
#define RCC_CFGR_SWS_MASK (0x3u << 2)
#define RCC_CFGR_SWS_PLL (0x3u << 2)
#define RCC_AHB2ENR_GPIOGEN (1u << 6)
#define RCC_APB1ENR1_PWREN (1u << 28)
#define RCC_APB1ENR2_LPUART1EN (1u << 0)

#define PWR_CR1 REG(0x40007000u)
#define PWR_CR2 REG(0x40007004u)
#define PWR_SR2 REG(0x40007014u)
#define PWR_CR1_VOS_MASK (0x3u << 9)
#define PWR_CR1_VOS_RANGE0 (0x0u << 9)
#define PWR_CR2_IOSV (1u << 9)
#define PWR_SR2_VOSF (1u << 10)

#define FLASH_ACR REG(0x40022000u)
#define FLASH_LATENCY_3WS 3u

#define ICACHE_CR REG(0x40030400u)
#define ICACHE_SR REG(0x40030404u)
#define ICACHE_CR_EN (1u << 0)
#define ICACHE_CR_CACHEINV (1u << 1)
#define ICACHE_SR_BUSYF (1u << 0)

#define GPIOG_BASE 0x42021800u
#define GPIOG_MODER REG(GPIOG_BASE + 0x00)
#define GPIOG_PUPDR REG(GPIOG_BASE + 0x0C)
#define GPIOG_AFRL REG(GPIOG_BASE + 0x20)
#define GPIOG_AFRH REG(GPIOG_BASE + 0x24)

#define LPUART1_BASE 0x40008000u
#define LPUART_CR1 REG(LPUART1_BASE + 0x00)
#define LPUART_BRR REG(LPUART1_BASE + 0x0C)
#define LPUART_ISR REG(LPUART1_BASE + 0x1C)
#define LPUART_ICR REG(LPUART1_BASE + 0x20)
#define LPUART_RDR REG(LPUART1_BASE + 0x24)
#define LPUART_TDR REG(LPUART1_BASE + 0x28)
#define LPUART_CR1_UE (1u << 0)
#define LPUART_CR1_RE (1u << 2)
#define LPUART_CR1_TE (1u << 3)
#define LPUART_CR1_RXNEIE (1u << 5)
#define LPUART_ISR_ORE (1u << 3)
#define LPUART_ISR_RXNE (1u << 5)
#define LPUART_ISR_TXE (1u << 7)
#define LPUART_ICR_ORECF (1u << 3)

#define MSI_HZ 4000000u
#define HSI_HZ 16000000u
#define TARGET_HZ 80000000u

const char chip_name[] = "stm32l552ze";

void chip_clock_init(chip_clock* clock) {
  clock->core_hz = MSI_HZ;
  clock->source = "msi-4MHz";
  clock->error = "";

  // HSI16 clocks the PLL and, independently of it, LPUART1 (so the port works
  // at the reset clock too). The Nucleo-144 has no HSE fitted by default.
  RCC_CR |= RCC_CR_HSION;
  if (!poll_until(&RCC_CR, RCC_CR_HSIRDY, RCC_CR_HSIRDY)) {
    clock->error = "HSI16 not ready (HSIRDY); running on MSI 4 MHz";
    return;
  }
  RCC_APB1ENR1 |= RCC_APB1ENR1_PWREN;
  (void)RCC_APB1ENR1;
  // Voltage range 0 (up to 110 MHz) like ST's own 110 MHz Nucleo examples.
  PWR_CR1 = (PWR_CR1 & ~PWR_CR1_VOS_MASK) | PWR_CR1_VOS_RANGE0;
  if (!poll_until(&PWR_SR2, PWR_SR2_VOSF, 0)) {
    clock->error = "voltage range 0 not reached (VOSF); running on MSI 4 MHz";
    return;
  }
  // PLL: HSI16 / M 4 = 4 MHz, x N 40 = 160 MHz VCO, / R 2 = 80 MHz.
  RCC_PLLCFGR = 0x2u /* PLLSRC HSI16 */ | (3u << 4) /* M-1 */ | (40u << 8) |
                (1u << 24) /* PLLREN */ | (0u << 25) /* R = 2 */;
  RCC_CR |= RCC_CR_PLLON;
  if (!poll_until(&RCC_CR, RCC_CR_PLLRDY, RCC_CR_PLLRDY)) {
    clock->error = "PLL did not lock (PLLRDY never set); running on MSI 4 MHz";
    return;
  }
  // RM0438 flash table: 20 MHz per wait state in range 0, so 3 WS at 80 MHz.
  FLASH_ACR = (FLASH_ACR & ~0xFu) | FLASH_LATENCY_3WS;
  if ((FLASH_ACR & 0xFu) != FLASH_LATENCY_3WS) {
    clock->error = "flash did not take 3 wait states; running on MSI 4 MHz";
    return;
  }
  // AHB, APB1, APB2 all /1 (80 MHz is within every bus's limit).
  RCC_CFGR = (RCC_CFGR & ~0x3FF3u) | RCC_CFGR_SW_PLL;
  if (!poll_until(&RCC_CFGR, RCC_CFGR_SWS_MASK, RCC_CFGR_SWS_PLL)) {
    clock->error = "the switch to the PLL did not happen (SWS); running on MSI 4 MHz";
    RCC_CFGR &= ~0x3u;
    return;
  }
  clock->core_hz = TARGET_HZ;
  clock->source = "pll-hsi16";
  // The instruction cache in front of flash (ST enables it in every example).
  ICACHE_CR |= ICACHE_CR_CACHEINV;
  if (poll_until(&ICACHE_SR, ICACHE_SR_BUSYF, 0))
    ICACHE_CR |= ICACHE_CR_EN;
  else
    clock->error = "instruction cache invalidation did not finish; ICACHE off";
}

void chip_uart_init(uint32_t baud) {
  RCC_APB1ENR1 |= RCC_APB1ENR1_PWREN;
  PWR_CR2 |= PWR_CR2_IOSV;  // VDDIO2 valid: PG2..PG15 get their supply
  RCC_AHB2ENR |= RCC_AHB2ENR_GPIOGEN;
  RCC_APB1ENR2 |= RCC_APB1ENR2_LPUART1EN;
  RCC_CCIPR1 = (RCC_CCIPR1 & ~(0x3u << 10)) | (0x2u << 10);  // LPUART1 kernel clock: HSI16
  (void)RCC_APB1ENR2;
  // PG7 (TX), PG8 (RX): alternate function 8; pull-up on RX.
  GPIOG_MODER = (GPIOG_MODER & ~(0xFu << 14)) | (0xAu << 14);
  GPIOG_AFRL = (GPIOG_AFRL & ~(0xFu << 28)) | (0x8u << 28);
  GPIOG_AFRH = (GPIOG_AFRH & ~0xFu) | 0x8u;
  GPIOG_PUPDR = (GPIOG_PUPDR & ~(0x3u << 16)) | (0x1u << 16);
  // LPUART: BRR = 256 * f_ck / baud (RM0438 LPUART baud rate generation).
  LPUART_BRR = (uint32_t)(((uint64_t)HSI_HZ * 256u + baud / 2) / baud);
  LPUART_CR1 = LPUART_CR1_UE | LPUART_CR1_TE | LPUART_CR1_RE | LPUART_CR1_RXNEIE;
}

void chip_uart_putc(uint8_t byte) {
  poll_until(&LPUART_ISR, LPUART_ISR_TXE, LPUART_ISR_TXE);
  LPUART_TDR = byte;
}

int chip_uart_irq_take(void) {
  const uint32_t isr = LPUART_ISR;
  if (isr & LPUART_ISR_ORE) LPUART_ICR = LPUART_ICR_ORECF;
  return (isr & LPUART_ISR_RXNE) ? (int)(LPUART_RDR & 0xFFu) : -1;
}

int chip_uart_rx_ready(void) { return (LPUART_ISR & LPUART_ISR_RXNE) != 0; }

#endif  // TINYHIL_STM32L552
