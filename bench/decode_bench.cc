// Throughput of the content Normalizer (dlp/decode/) on one core: plain text (the
// sniffing path every raw byte takes), JSON with escapes and base64, and gzip bodies.
// Run: build-*/bench/decode_bench --benchmark_min_time=1

#include <benchmark/benchmark.h>
#include <zlib.h>

#include <random>
#include <string>

#include "dlp/decode/normalizer.h"

namespace {

using egressguard::dlp::decode::ContentHintLite;
using egressguard::dlp::decode::DecodedSegment;
using egressguard::dlp::decode::Normalizer;
using egressguard::dlp::decode::SegmentSink;

class CountingSink : public SegmentSink {
 public:
  void OnSegment(const DecodedSegment& s) override {
    bytes += s.bytes.size();
    ++segments;
  }
  void OnUndecodable(uint64_t, uint64_t, std::string_view) override { ++undecodable; }
  uint64_t bytes = 0, segments = 0, undecodable = 0;
};

std::string PlainText(size_t size) {
  static const char* kWords[] = {"the", "customer", "account", "was", "updated", "on", "2024-03-01T12:00:00Z",
                                 "order", "id", "A-1029384", "shipping", "to", "Zurich,", "Switzerland", "and",
                                 "total", "CHF", "129.90", "request", "took", "35ms", "status=200", "GET",
                                 "/api/v2/orders?page=3", "user", "jane.doe@example.org", "\n"};
  std::mt19937 rng(42);
  std::string out;
  while (out.size() < size) {
    out += kWords[rng() % std::size(kWords)];
    out += ' ';
  }
  out.resize(size);
  return out;
}

std::string Json(size_t size) {
  std::mt19937 rng(7);
  std::string out = "[";
  while (out.size() < size) {
    out += R"({"id":)" + std::to_string(rng() % 100000) +
           R"(,"name":"Jane Doe","email":"jane\u0040example.org","note":"line1\nline2 \"quoted\"",)"
           R"("avatar":"iVBORw0KGgoAAAANSUhEUgAAABAAAAAQCAYAAAAf8/9hAAAAGXRFWHRTb2Z0d2FyZQBBZG9iZSBJbWFnZVJlYWR5ccllPAAAA",)"
           R"("tags":["a","b","c"],"created":"2024-03-01T12:00:00Z"},)";
  }
  out.back() = ']';
  return out;
}

std::string Gzip(const std::string& in) {
  uLongf n = compressBound(static_cast<uLong>(in.size())) + 32;
  std::string out(n, '\0');
  z_stream z{};
  deflateInit2(&z, 6, Z_DEFLATED, 31, 8, Z_DEFAULT_STRATEGY);
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  z.avail_in = static_cast<uInt>(in.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  deflate(&z, Z_FINISH);
  out.resize(z.total_out);
  deflateEnd(&z);
  return out;
}

void Run(benchmark::State& state, const std::string& body, const ContentHintLite& hint) {
  constexpr size_t kChunk = 16 << 10;
  CountingSink sink;
  size_t memory = 0;
  for (auto _ : state) {
    Normalizer n(hint, {}, sink);
    for (size_t at = 0; at < body.size(); at += kChunk) n.Feed(std::string_view(body).substr(at, kChunk));
    memory = std::max(memory, n.memory_bytes());
    n.Finish();
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * body.size()));
  state.counters["decoded_per_input"] = static_cast<double>(sink.bytes) / static_cast<double>(state.iterations() * body.size());
  state.counters["segments_per_MiB"] = static_cast<double>(sink.segments) / static_cast<double>(state.iterations() * body.size()) * (1 << 20);
  state.counters["memory_bytes"] = static_cast<double>(memory);
  state.counters["undecodable"] = static_cast<double>(sink.undecodable) / static_cast<double>(state.iterations());
}

void BM_PlainText(benchmark::State& state) {
  static const std::string body = PlainText(16 << 20);
  Run(state, body, {});
}
BENCHMARK(BM_PlainText)->Unit(benchmark::kMillisecond);

void BM_Json(benchmark::State& state) {
  static const std::string body = Json(16 << 20);
  ContentHintLite hint;
  hint.content_type = "application/json";
  Run(state, body, hint);
}
BENCHMARK(BM_Json)->Unit(benchmark::kMillisecond);

void BM_GzipText(benchmark::State& state) {
  static const std::string body = Gzip(PlainText(16 << 20));
  ContentHintLite hint;
  hint.content_encoding = "gzip";
  Run(state, body, hint);
  // Report decompressed bytes too: that is what the engine scans.
  state.counters["compressed_bytes"] = static_cast<double>(body.size());
}
BENCHMARK(BM_GzipText)->Unit(benchmark::kMillisecond);

void BM_GzipJson(benchmark::State& state) {
  static const std::string body = Gzip(Json(16 << 20));
  ContentHintLite hint;
  hint.content_encoding = "gzip";
  Run(state, body, hint);
}
BENCHMARK(BM_GzipJson)->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
