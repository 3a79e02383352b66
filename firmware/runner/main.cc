// tinyhil benchmark runner: one program for every board. Waits for framed
// requests from the host (INFO, LIST, RUN) and answers each with one frame.
// Only the board-support layer (tinyhil_bsp.h) differs between boards.
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "tinyhil_image.h"
#include "tensorflow/lite/micro/memory_helpers.h"
#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/micro/micro_profiler_interface.h"
#include "tensorflow/lite/micro/micro_time.h"
#include "tensorflow/lite/schema/schema_generated.h"
#include "tinyhil_bsp.h"
#include "tinyhil_protocol.h"

#ifndef TINYHIL_ARENA_BYTES
#error "TINYHIL_ARENA_BYTES must be set by the board's build flags"
#endif
#ifndef TINYHIL_TFLM_VERSION
#define TINYHIL_TFLM_VERSION "unknown"
#endif

namespace {

constexpr uint16_t kMaxRepeats = 1000;
constexpr int kMaxProfileEvents = 256;
constexpr size_t kLogBytes = 1024;
constexpr size_t kRunHeaderBytes = 7;  // id u16, warmup u16, repeats u16, flags u8
// first u16, count u16, warmup u16, repeats u16, flags u8; then a u32 seed per benchmark
constexpr size_t kBatchHeaderBytes = 9;
// A sample during which another interrupt ran or became pending is timed
// again, this many times at most; one that stays disturbed is reported to the
// host as such, never sent as a figure.
constexpr int kMaxReruns = 3;

alignas(16) uint8_t tensor_arena[TINYHIL_ARENA_BYTES];
uint64_t repeat_ticks[kMaxRepeats];

// Messages from TFLM (MicroPrintf -> DebugLog) collected per request, sent
// back with any ERROR so that the host can say what went wrong.
char log_text[kLogBytes];
size_t log_used = 0;

void LogAppend(const char* s) {
  size_t n = strlen(s);
  if (n > kLogBytes - 1 - log_used) n = kLogBytes - 1 - log_used;
  memcpy(log_text + log_used, s, n);
  log_used += n;
  log_text[log_used] = '\0';
}

// Per-op profile through TFLM's profiler hook: MicroGraph wraps every op's
// Invoke in BeginEvent/EndEvent with the op's name as tag.
class OpProfiler : public tflite::MicroProfilerInterface {
 public:
  uint32_t BeginEvent(const char* tag) override {
    if (count_ >= kMaxProfileEvents) return kMaxProfileEvents;
    tags_[count_] = tag;
    start_[count_] = bsp_counter_read();
    return count_++;
  }
  void EndEvent(uint32_t handle) override {
    if (handle < kMaxProfileEvents) ticks_[handle] = bsp_counter_read() - start_[handle];
  }
  void Clear() { count_ = 0; }
  int count() const { return count_; }
  const char* tag(int i) const { return tags_[i]; }
  uint64_t ticks(int i) const { return ticks_[i]; }

 private:
  const char* tags_[kMaxProfileEvents];
  uint64_t start_[kMaxProfileEvents];
  uint64_t ticks_[kMaxProfileEvents];
  int count_ = 0;
};

OpProfiler profiler;
uint8_t current_seq = 0;
// Counter ticks spent waiting for the host (in bsp_wait_for_input) since
// bsp_init: INFO reports the others as busy_ticks, the work the core did.
uint64_t idle_ticks = 0;

void SendError(uint8_t code, const char* fmt, ...) {
  char message[256];
  va_list args;
  va_start(args, fmt);
  int n = vsnprintf(message, sizeof message, fmt, args);
  va_end(args);
  if (n < 0) n = 0;
  if (n > (int)sizeof message - 1) n = sizeof message - 1;
  uint16_t length = (uint16_t)(1 + n + (log_used ? 1 + log_used : 0));
  thp_sender tx;
  thp_send_begin(&tx, THP_ERROR, current_seq, length);
  thp_send_u8(&tx, code);
  thp_send_bytes(&tx, message, n);
  if (log_used) {
    thp_send_u8(&tx, '\n');
    thp_send_bytes(&tx, log_text, log_used);
  }
  thp_send_end(&tx);
}

void SendText(uint8_t kind, const char* text, size_t len) {
  thp_sender tx;
  thp_send_begin(&tx, kind | THP_REPLY, current_seq, (uint16_t)len);
  thp_send_bytes(&tx, text, len);
  thp_send_end(&tx);
}

// Optional extra INFO lines ("key=value\n") from a board-support layer that
// has more to say (the clock it reached, a counter fallback); weak, so boards
// without it need nothing.
extern "C" const char* bsp_info_notes(void) __attribute__((weak));

// Decimal digits of v (newlib-nano's printf has no %llu).
const char* FormatU64(uint64_t v, char (&out)[21]) {
  char* p = out + sizeof out - 1;
  *p = '\0';
  do {
    *--p = (char)('0' + v % 10);
    v /= 10;
  } while (v != 0);
  return p;
}

void HandleInfo() {
  char text[768];
  char busy[21];
  int n = snprintf(text, sizeof text,
                   "protocol=%d\nboard=%s\ncore=%s\nclock_hz=%lu\ncounter=%s\n"
                   "counter_hz=%lu\ntflm=%s\nbuild_id=%s\narena_bytes=%lu\n"
                   "benchmarks=%u\nmax_request=%lu\nbatch=1\nbusy_ticks=%s\n",
                   THP_VERSION, bsp_board_name(), bsp_core_name(),
                   (unsigned long)bsp_core_clock_hz(), bsp_counter_kind(),
                   (unsigned long)bsp_counter_hz(), TINYHIL_TFLM_VERSION, kTinyhilImageId,
                   (unsigned long)sizeof tensor_arena, (unsigned)kTinyhilBenchmarkCount,
                   (unsigned long)kTinyhilMaxRequestBytes,
                   FormatU64(bsp_counter_read() - idle_ticks, busy));
  if (bsp_info_notes != nullptr && n >= 0 && n < (int)sizeof text)
    n += snprintf(text + n, sizeof text - n, "%s", bsp_info_notes());
  if (n > (int)sizeof text - 1) n = sizeof text - 1;
  SendText(THP_INFO, text, (size_t)n);
}

void HandleList() {
  // Sent in one frame: names are short and images hold a few hundred at most.
  uint32_t length = 0;
  char line[96];
  for (uint16_t i = 0; i < kTinyhilBenchmarkCount; ++i)
    length += snprintf(line, sizeof line, "%u\t%s\t%lu\n", i, kTinyhilBenchmarks[i].name,
                       (unsigned long)kTinyhilBenchmarks[i].model_bytes);
  thp_sender tx;
  thp_send_begin(&tx, THP_LIST | THP_REPLY, current_seq, (uint16_t)length);
  for (uint16_t i = 0; i < kTinyhilBenchmarkCount; ++i) {
    int n = snprintf(line, sizeof line, "%u\t%s\t%lu\n", i, kTinyhilBenchmarks[i].name,
                     (unsigned long)kTinyhilBenchmarks[i].model_bytes);
    thp_send_bytes(&tx, line, (size_t)n);
  }
  thp_send_end(&tx);
}

uint16_t ReadU16(const uint8_t* p) { return (uint16_t)(p[0] | (p[1] << 8)); }

size_t TotalBytes(tflite::MicroInterpreter& interpreter, bool inputs) {
  size_t total = 0;
  size_t count = inputs ? interpreter.inputs_size() : interpreter.outputs_size();
  for (size_t i = 0; i < count; ++i)
    total += inputs ? interpreter.input(i)->bytes : interpreter.output(i)->bytes;
  return total;
}

// Where a RUN's input comes from: bytes sent by the host, or a seed.
struct InputSource {
  const uint8_t* data;  // nullptr: seeded
  size_t bytes;
  uint32_t seed;
};

// TFLM's planner reuses the input buffer for later activations, so inputs
// are written again before every Invoke() (outside the timed region).
void FillInputs(tflite::MicroInterpreter& interpreter, const InputSource& input) {
  const uint8_t* data = input.data;
  uint32_t state = input.seed;
  for (size_t i = 0; i < interpreter.inputs_size(); ++i) {
    TfLiteTensor* t = interpreter.input(i);
    if (data != nullptr) {
      memcpy(t->data.raw, data, t->bytes);
      data += t->bytes;
    } else {
      state = thp_fill_seeded(state, t->data.uint8, t->bytes);
    }
  }
}

// Allocates tensors and checks that the host sent the input the model wants.
bool Prepare(tflite::MicroInterpreter& interpreter, const InputSource& input) {
  if (interpreter.AllocateTensors() != kTfLiteOk) {
    SendError(THP_ERR_ALLOCATE, "AllocateTensors failed (arena %lu bytes)",
              (unsigned long)sizeof tensor_arena);
    return false;
  }
  const size_t want = TotalBytes(interpreter, true);
  if (input.data != nullptr && input.bytes != want) {
    SendError(THP_ERR_INPUT_SIZE, "input of %u bytes, model wants %u", (unsigned)input.bytes,
              (unsigned)want);
    return false;
  }
  return true;
}

// Writes the inputs, then times one Invoke() with nothing but the counter's
// interrupt allowed (bsp_timing_begin/end), again while it comes out
// disturbed; a warm-up's time is not kept (keep false), so it is not re-run.
// Returns false, after telling the host, if Invoke fails or the sample stays
// disturbed. `what` and `index` name the sample; `events`, if given, is the
// interpreter's profiler, cleared before each try; `ticks`, if given, gets
// the Invoke's ticks (the profiled run's figures are the profiler's).
bool TimeSample(tflite::MicroInterpreter& interpreter, const InputSource& input,
                OpProfiler* events, bool keep, const char* what, unsigned index,
                uint64_t* ticks) {
  for (int attempt = 0;; ++attempt) {
    if (events != nullptr) events->Clear();
    FillInputs(interpreter, input);
    bsp_timing_begin();
    const uint64_t start = ticks != nullptr ? bsp_counter_read() : 0;
    const TfLiteStatus status = interpreter.Invoke();
    const uint64_t end = ticks != nullptr ? bsp_counter_read() : 0;
    const bool disturbed = bsp_timing_end() != 0;
    if (status != kTfLiteOk) {
      SendError(THP_ERR_INVOKE, "Invoke failed on %s %u", what, index);
      return false;
    }
    if (ticks != nullptr) *ticks = end - start;
    if (!disturbed || !keep) return true;
    if (attempt == kMaxReruns) {
      SendError(THP_ERR_DISTURBED,
                "%s sample %u stayed disturbed: another interrupt ran or was pending while it "
                "was timed, %d times in a row",
                what, index, kMaxReruns + 1);
      return false;
    }
  }
}

void HandleRun(const uint8_t* payload, size_t payload_bytes) {
  if (payload_bytes < kRunHeaderBytes) {
    SendError(THP_ERR_BAD_REQUEST, "RUN payload of %u bytes is shorter than its header",
              (unsigned)payload_bytes);
    return;
  }
  const uint16_t id = ReadU16(payload);
  const uint16_t warmup = ReadU16(payload + 2);
  const uint16_t repeats = ReadU16(payload + 4);
  const uint8_t flags = payload[6];
  InputSource input = {payload + kRunHeaderBytes, payload_bytes - kRunHeaderBytes, 0};
  if (flags & THP_RUN_INPUT_SEED) {
    if (input.bytes != 4) {
      SendError(THP_ERR_BAD_REQUEST, "seeded RUN needs a 4-byte seed, got %u bytes",
                (unsigned)input.bytes);
      return;
    }
    input.seed = (uint32_t)input.data[0] | ((uint32_t)input.data[1] << 8) |
                 ((uint32_t)input.data[2] << 16) | ((uint32_t)input.data[3] << 24);
    input.data = nullptr;
  }
  if (id >= kTinyhilBenchmarkCount) {
    SendError(THP_ERR_NO_BENCHMARK, "no benchmark %u (image has %u)", id,
              kTinyhilBenchmarkCount);
    return;
  }
  if (repeats == 0 || repeats > kMaxRepeats) {
    SendError(THP_ERR_BAD_REQUEST, "repeats must be 1..%u, got %u", kMaxRepeats, repeats);
    return;
  }
  const tflite::Model* model = tflite::GetModel(kTinyhilBenchmarks[id].model);
  if (model->version() != TFLITE_SCHEMA_VERSION) {
    SendError(THP_ERR_MODEL, "model schema %lu, runtime supports %d",
              (unsigned long)model->version(), TFLITE_SCHEMA_VERSION);
    return;
  }

  // Profiled run first: its interpreter reuses the arena, and the outputs
  // of the last timed repeat below must survive until they are sent.
  profiler.Clear();
  if (flags & THP_RUN_PROFILE) {
    tflite::MicroInterpreter interpreter(model, TinyhilOpResolver(), tensor_arena,
                                         sizeof tensor_arena, nullptr, &profiler);
    if (!Prepare(interpreter, input)) return;
    if (!TimeSample(interpreter, input, &profiler, true, "the profiled run", 0, nullptr)) return;
  }

  size_t arena_used = 0;
  uint32_t output_bytes = 0;
  uint32_t output_crc = 0;
  const uint8_t* output_data = nullptr;  // points into the arena
  {
    tflite::MicroInterpreter interpreter(model, TinyhilOpResolver(), tensor_arena,
                                         sizeof tensor_arena);
    if (!Prepare(interpreter, input)) return;
    for (uint16_t i = 0; i < warmup + repeats; ++i) {
      uint64_t ticks;
      if (!TimeSample(interpreter, input, nullptr, i >= warmup, "repeat", i, &ticks)) return;
      if (i >= warmup) repeat_ticks[i - warmup] = ticks;
    }
    arena_used = interpreter.arena_used_bytes();
    // Outputs of the last repeat; a single output is sent as is, several are
    // concatenated in order (CRC over the concatenation).
    output_bytes = (uint32_t)TotalBytes(interpreter, false);
    for (size_t i = 0; i < interpreter.outputs_size(); ++i) {
      TfLiteTensor* t = interpreter.output(i);
      output_crc = thp_crc32_update(output_crc, t->data.uint8, t->bytes);
    }
    output_data = interpreter.outputs_size() == 1 ? interpreter.output(0)->data.uint8 : nullptr;
  }
  // The arena still holds the outputs: nothing has run since.


  bool send_bytes = !(flags & THP_RUN_OUTPUT_CRC) && output_data != nullptr;
  uint32_t profile_bytes = 0;
  for (int i = 0; i < profiler.count(); ++i) profile_bytes += 1 + strlen(profiler.tag(i)) + 8;
  uint32_t length = 1 + 4 + 2 + 8u * repeats + 2 + profile_bytes + 1 + 4 +
                    (send_bytes ? output_bytes : 4);
  if (length > THP_MAX_PAYLOAD) {
    send_bytes = false;
    length = length - output_bytes + 4;
  }

  thp_sender tx;
  thp_send_begin(&tx, THP_RUN | THP_REPLY, current_seq, (uint16_t)length);
  thp_send_u8(&tx, 0);  // status: ok
  thp_send_u32(&tx, (uint32_t)arena_used);
  thp_send_u16(&tx, repeats);
  for (uint16_t i = 0; i < repeats; ++i) thp_send_u64(&tx, repeat_ticks[i]);
  thp_send_u16(&tx, (uint16_t)profiler.count());
  for (int i = 0; i < profiler.count(); ++i) {
    const uint8_t n = (uint8_t)strlen(profiler.tag(i));
    thp_send_u8(&tx, n);
    thp_send_bytes(&tx, profiler.tag(i), n);
    thp_send_u64(&tx, profiler.ticks(i));
  }
  thp_send_u8(&tx, send_bytes ? 0 : 1);  // 0: output bytes follow, 1: CRC-32
  thp_send_u32(&tx, output_bytes);
  if (send_bytes)
    thp_send_bytes(&tx, output_data, output_bytes);
  else
    thp_send_u32(&tx, output_crc);
  thp_send_end(&tx);
}

// ---- LAYERS: every intermediate tensor of one untimed inference ------------
// Nothing here runs for a RUN: the timed path above neither calls nor shares
// any of it (its own interpreter class and profiler).

uint32_t ReadU32(const uint8_t* p) {
  return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

// A MicroInterpreter whose tensors can be read by index while it runs (the
// base class keeps its context protected).
class TensorReadingInterpreter : public tflite::MicroInterpreter {
 public:
  TensorReadingInterpreter(const tflite::Model* model, const tflite::MicroOpResolver& resolver,
                           uint8_t* arena, size_t arena_bytes,
                           tflite::MicroProfilerInterface* profiler)
      : tflite::MicroInterpreter(model, resolver, arena, arena_bytes, nullptr, profiler) {}
  TfLiteEvalTensor* eval_tensor(int index) { return context().GetEvalTensor(&context(), index); }
};

// Sends the tensors of each wanted unit (0: the graph's inputs, i + 1: op
// i's outputs) as TENSOR frames. As TFLM's profiler, it hears of each op's
// end (MicroGraph ends an op's event after its Invoke): the op's outputs are
// sent then, before the next op can reuse their memory.
class LayerStreamer : public tflite::MicroProfilerInterface {
 public:
  LayerStreamer(const tflite::SubGraph* graph, uint16_t first, uint32_t mask)
      : graph_(graph), first_(first), mask_(mask) {}
  void set_interpreter(TensorReadingInterpreter* interpreter) { interpreter_ = interpreter; }
  uint32_t BeginEvent(const char*) override { return ops_++; }
  void EndEvent(uint32_t handle) override {
    SendUnit((uint16_t)(handle + 1), graph_->operators()->Get(handle)->outputs());
  }
  void SendInputs() { SendUnit(0, graph_->inputs()); }
  uint32_t ops() const { return ops_; }
  uint32_t frames() const { return frames_; }

 private:
  bool Wanted(uint16_t unit) const {
    if (unit < first_) return false;
    const uint32_t bit = (uint32_t)(unit - first_);
    return bit >= 32 || ((mask_ >> bit) & 1u);
  }
  void SendUnit(uint16_t unit, const flatbuffers::Vector<int32_t>* tensors) {
    if (!Wanted(unit) || tensors == nullptr) return;
    const uint8_t slots = (uint8_t)tensors->size();
    for (uint8_t slot = 0; slot < slots; ++slot) {
      const int32_t index = tensors->Get(slot);
      if (index < 0) continue;
      TfLiteEvalTensor* t = interpreter_->eval_tensor(index);
      size_t bytes = 0;
      if (tflite::TfLiteEvalTensorByteLength(t, &bytes) != kTfLiteOk) bytes = 0;
      const uint8_t* data = t->data.uint8;
      const uint32_t crc = thp_crc32_update(0, data, bytes);
      size_t offset = 0;
      do {  // a tensor of 0 bytes still sends one (empty) frame
        size_t n = bytes - offset;
        if (n > THP_TENSOR_CHUNK_BYTES) n = THP_TENSOR_CHUNK_BYTES;
        thp_sender tx;
        thp_send_begin(&tx, THP_TENSOR | THP_REPLY, current_seq,
                       (uint16_t)(THP_TENSOR_HEADER_BYTES + n));
        thp_send_u16(&tx, unit);
        thp_send_u8(&tx, slot);
        thp_send_u8(&tx, slots);
        thp_send_u16(&tx, (uint16_t)index);
        thp_send_u8(&tx, (uint8_t)t->type);
        thp_send_u32(&tx, (uint32_t)bytes);
        thp_send_u32(&tx, (uint32_t)offset);
        thp_send_u32(&tx, crc);
        thp_send_bytes(&tx, data + offset, n);
        thp_send_end(&tx);
        ++frames_;
        offset += n;
      } while (offset < bytes);
    }
  }

  const tflite::SubGraph* graph_;
  TensorReadingInterpreter* interpreter_ = nullptr;
  uint16_t first_;
  uint32_t mask_;
  uint32_t ops_ = 0;
  uint32_t frames_ = 0;
};

void HandleLayers(const uint8_t* payload, size_t payload_bytes) {
  if (payload_bytes < THP_LAYERS_HEADER_BYTES) {
    SendError(THP_ERR_BAD_REQUEST, "LAYERS payload of %u bytes is shorter than its header",
              (unsigned)payload_bytes);
    return;
  }
  const uint16_t id = ReadU16(payload);
  const uint16_t first = ReadU16(payload + 2);
  const uint32_t mask = ReadU32(payload + 4);
  const uint8_t* input = payload + THP_LAYERS_HEADER_BYTES;
  const size_t input_bytes = payload_bytes - THP_LAYERS_HEADER_BYTES;
  if (id >= kTinyhilBenchmarkCount) {
    SendError(THP_ERR_NO_BENCHMARK, "no benchmark %u (image has %u)", id,
              kTinyhilBenchmarkCount);
    return;
  }
  const tflite::Model* model = tflite::GetModel(kTinyhilBenchmarks[id].model);
  if (model->version() != TFLITE_SCHEMA_VERSION) {
    SendError(THP_ERR_MODEL, "model schema %lu, runtime supports %d",
              (unsigned long)model->version(), TFLITE_SCHEMA_VERSION);
    return;
  }
  if (model->subgraphs()->size() != 1) {
    SendError(THP_ERR_MODEL, "LAYERS streams models of one subgraph, this one has %u",
              (unsigned)model->subgraphs()->size());
    return;
  }
  LayerStreamer streamer(model->subgraphs()->Get(0), first, mask);
  TensorReadingInterpreter interpreter(model, TinyhilOpResolver(), tensor_arena,
                                       sizeof tensor_arena, &streamer);
  streamer.set_interpreter(&interpreter);
  // Prepare() and FillInputs() are not called from here: a second caller
  // would change how the compiler lays out the RUN path that uses them.
  if (interpreter.AllocateTensors() != kTfLiteOk) {
    SendError(THP_ERR_ALLOCATE, "AllocateTensors failed (arena %lu bytes)",
              (unsigned long)sizeof tensor_arena);
    return;
  }
  size_t want = 0;
  for (size_t i = 0; i < interpreter.inputs_size(); ++i) want += interpreter.input(i)->bytes;
  if (input_bytes != want) {
    SendError(THP_ERR_INPUT_SIZE, "input of %u bytes, model wants %u", (unsigned)input_bytes,
              (unsigned)want);
    return;
  }
  for (size_t i = 0, offset = 0; i < interpreter.inputs_size(); ++i) {
    TfLiteTensor* t = interpreter.input(i);
    memcpy(t->data.raw, input + offset, t->bytes);
    offset += t->bytes;
  }
  streamer.SendInputs();
  if (interpreter.Invoke() != kTfLiteOk) {
    SendError(THP_ERR_INVOKE, "Invoke failed after op %lu of %u", (unsigned long)streamer.ops(),
              (unsigned)model->subgraphs()->Get(0)->operators()->size());
    return;
  }
  thp_sender tx;
  thp_send_begin(&tx, THP_LAYERS | THP_REPLY, current_seq, 1 + 2 + 4 + 4);
  thp_send_u8(&tx, 0);  // status: ok
  thp_send_u16(&tx, (uint16_t)(streamer.ops() + 1));
  thp_send_u32(&tx, (uint32_t)interpreter.arena_used_bytes());
  thp_send_u32(&tx, streamer.frames());
  thp_send_end(&tx);
}

// BATCH: the RUNs of benchmarks first .. first + count - 1, one seed each,
// run one after the other as if each had come alone (HandleRun, the same
// timed windows), each answered at once with its own RUN reply or ERROR, the
// k-th with sequence number seq + k. One request instead of `count`: the
// host's round trip and a request's bytes (QEMU's UART takes one byte per
// event-loop turn) no longer come between benchmarks.
void HandleBatch(const uint8_t* payload, size_t payload_bytes) {
  const uint8_t seq = current_seq;
  if (payload_bytes < kBatchHeaderBytes) {
    SendError(THP_ERR_BAD_REQUEST, "BATCH payload of %u bytes is shorter than its header",
              (unsigned)payload_bytes);
    return;
  }
  const uint16_t first = ReadU16(payload);
  const uint16_t count = ReadU16(payload + 2);
  const uint8_t flags = payload[8];
  if (count == 0 || count > 255 || payload_bytes != kBatchHeaderBytes + 4u * count ||
      !(flags & THP_RUN_INPUT_SEED)) {
    SendError(THP_ERR_BAD_REQUEST,
              "BATCH of %u benchmarks needs 1..255 seeds (4 bytes each, flag INPUT_SEED), "
              "got %u bytes",
              (unsigned)count, (unsigned)payload_bytes);
    return;
  }
  uint8_t run[kRunHeaderBytes + 4];
  for (uint16_t k = 0; k < count; ++k) {
    current_seq = (uint8_t)(seq + k);
    log_used = 0;
    log_text[0] = '\0';
    const uint16_t id = (uint16_t)(first + k);
    run[0] = (uint8_t)id;
    run[1] = (uint8_t)(id >> 8);
    memcpy(run + 2, payload + 4, 4);  // warm-up, repeats
    run[6] = flags;
    memcpy(run + kRunHeaderBytes, payload + kBatchHeaderBytes + 4u * k, 4);
    HandleRun(run, sizeof run);
  }
}

}  // namespace

// ---- hooks TFLM expects from the platform --------------------------------
extern "C" void DebugLog(const char* s) { LogAppend(s); }

namespace tflite {
uint32_t ticks_per_second() { return bsp_counter_hz(); }
uint32_t GetCurrentTimeTicks() { return (uint32_t)bsp_counter_read(); }
}  // namespace tflite

// Called by a board's fault handler: tell the host instead of going silent.
extern "C" void tinyhil_fatal(const char* what) {
  SendError(THP_ERR_INVOKE, "device fault: %s", what);
}

// Entry point, called by the board's startup code (or Arduino setup()).
extern "C" void tinyhil_run_forever(void) {
  bsp_init();
  thp_receiver rx;
  thp_receiver_init(&rx, tinyhil_request_buffer, kTinyhilMaxRequestBytes);
  // A frame is sent in one go: a pause of kQuietTicks inside one means its
  // header was noise, and waiting for its "length" would eat real requests.
  const uint64_t kQuietTicks = bsp_counter_hz() / 20;
  uint64_t last_byte = bsp_counter_read();
  for (;;) {
    int byte = bsp_uart_read();
    if (byte < 0) {
      const uint64_t waiting_from = bsp_counter_read();
      if (waiting_from - last_byte > kQuietTicks) thp_receiver_abandon(&rx);
      bsp_wait_for_input();
      idle_ticks += bsp_counter_read() - waiting_from;
      continue;
    }
    last_byte = bsp_counter_read();
    if (!thp_receiver_feed(&rx, (uint8_t)byte)) continue;
    current_seq = rx.seq;
    log_used = 0;
    log_text[0] = '\0';
    switch (rx.kind) {
      case THP_INFO: HandleInfo(); break;
      case THP_LIST: HandleList(); break;
      case THP_RUN: HandleRun(rx.payload, rx.length); break;
      case THP_LAYERS: HandleLayers(rx.payload, rx.length); break;
      case THP_BATCH: HandleBatch(rx.payload, rx.length); break;
      default: SendError(THP_ERR_BAD_REQUEST, "unknown request kind 0x%02x", rx.kind);
    }
  }
}
