// What a firmware image holds; the host renders image.cc (models and op
// resolver) from host/tinyhil/build/templates/ for every image it builds.
#ifndef TINYHIL_IMAGE_H_
#define TINYHIL_IMAGE_H_

#include <stdint.h>

// Declared, not included: image.cc (megabytes of model bytes) then compiles
// without TFLM's headers, which took nearly all of an image's compile time.
namespace tflite {
class MicroOpResolver;
}  // namespace tflite

struct TinyhilBenchmark {
  const char* name;
  const uint8_t* model;  // .tflite flatbuffer, 16-byte aligned
  uint32_t model_bytes;
};

extern const TinyhilBenchmark kTinyhilBenchmarks[];
extern const uint16_t kTinyhilBenchmarkCount;
extern const char kTinyhilImageId[];
// Largest request payload this image accepts: RUN header + largest input.
extern const uint32_t kTinyhilMaxRequestBytes;
extern uint8_t tinyhil_request_buffer[];

// Resolver holding exactly the ops that the image's models use.
const tflite::MicroOpResolver& TinyhilOpResolver();

#endif  // TINYHIL_IMAGE_H_
