// The toolchain probe of `tinyhil doctor` (and the end of scripts/setup.sh):
// built by PlatformIO with a board's own firmware flags, linked against the
// board's BSP with newlib-nano, booted, and heard on the board's serial port.
// It uses what TFLM needs from the toolchain -- the C++ standard headers
// (libstdc++-arm-none-eabi-newlib), libm, snprintf -- but not TFLM itself, so
// it builds in seconds and a missing package is named before a minutes-long
// TFLM build fails on it.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <new>

#include "tinyhil_bsp.h"

namespace {

void Write(const char* text) {
  bsp_uart_write(reinterpret_cast<const uint8_t*>(text), std::strlen(text));
}

}  // namespace

extern "C" void tinyhil_fatal(const char* what) {
  Write("tinyhil-probe fault: ");
  Write(what);
  Write("\n");
}

extern "C" void tinyhil_run_forever(void) {
  bsp_init();
  volatile float two = 2.0f;  // volatile: computed on the board, not folded by the compiler
  const int32_t root_milli = static_cast<int32_t>(std::lround(std::sqrt(two) * 1000.0f));
  char line[160];
  std::snprintf(line, sizeof line, "tinyhil-probe ok board=%s core=%s sqrt2_milli=%ld counter=%s\n",
                bsp_board_name(), bsp_core_name(), static_cast<long>(root_milli),
                bsp_counter_kind());
  // Repeated until the host has heard it: the host may open the port late.
  for (;;) {
    Write(line);
    const uint64_t start = bsp_counter_read();
    while (bsp_counter_read() - start < bsp_counter_hz() / 10) {
    }
  }
}
