// The HTTP/2 client leg with the scan path behind it: arbitrary bytes after a valid
// connection preface are fed to the relay's server session as a client would send them
// (in pieces the input chooses), an in-memory nghttp2 origin answers whatever reaches it,
// and the real engine with the shipped pack scans every stream in enforce mode. The relay
// must never crash, leak or grow without bound; it must never hold more streams than it
// advertised, nor write a verdict that carries a card number it was shown.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "dlp/engine.h"
#include "dlp/validators.h"
#include "rules/pack_loader.h"
#include "tests/unit/mitm/h2_test_peers.h"

namespace {

using namespace egressguard;

constexpr char kCard[] = "4539148803436467";

const dlp::EnginePtr& Engine() {
  static const dlp::EnginePtr engine = [] {
    rules::LoadOptions opts;
    opts.known_validator = [](std::string_view name) { return dlp::FindValidator(name) != nullptr; };
    auto pack = rules::LoadPackAny(EGRESSGUARD_DEFAULT_PACK_DIR, opts);
    if (!pack.ok()) std::abort();
    auto engine = dlp::Engine::Compile(*pack, dlp::EngineOptions{});
    if (!engine.ok()) std::abort();
    return *engine;
  }();
  return engine;
}

class Host : public mitm::H2Relay::Host {
 public:
  bool EngineReady() override { return true; }
  dlp::MessageScanPtr OpenScan(const dlp::ContentHint& hint) override { return scanner_.Open(Engine(), hint); }
  bool MethodAllowed(std::string_view method) override { return method != "DELETE"; }
  bool SameOrigin(std::string_view authority) override { return authority.empty() || authority == "origin.test"; }
  v1::Verdict NewVerdict() override { return v1::Verdict(); }
  void Report(v1::Verdict verdict) override {
    // Redaction: neither the path nor the reason ever holds the value itself.
    if (verdict.path().find(kCard) != std::string::npos || verdict.reason().find(kCard) != std::string::npos) std::abort();
  }
  void CountStream(mitm::StreamProtocol, mitm::StreamOutcome) override {}
  void CountGoaway(mitm::GoawayReason) override {}
  bool Recordable(bool) override { return true; }

 private:
  dlp::Scanner scanner_;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  std::string_view in(reinterpret_cast<const char*>(data), size);
  // The first byte picks the piece size; the rest is what the client sends after its preface.
  const size_t step = 1 + static_cast<uint8_t>(in[0]) * 37 % 4096;
  in.remove_prefix(1);
  Host host;
  mitm::H2Relay::Options options;
  options.enforce = true;
  options.hold_limit = 64 * 1024;
  options.limits.max_concurrent_streams = 16;
  mitm::H2Relay relay(host, options);
  if (!relay.Start()) std::abort();
  mitm::testing::Peer origin(/*server=*/true);
  std::string preface = std::string("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n") + mitm::testing::Frame(4, 0, 0, "");
  bool ok = relay.RecvClient(preface);
  for (size_t pos = 0; ok && pos < in.size(); pos += step) {
    ok = relay.RecvClient(in.substr(pos, step));
    if (relay.open_streams() > options.limits.max_concurrent_streams) std::abort();
    std::string up;
    relay.PullUpstream(&up, SIZE_MAX);
    origin.Push(up);
    std::string answer = origin.Pull();
    if (!answer.empty()) relay.RecvUpstream(answer);
    std::string down;
    relay.PullClient(&down, SIZE_MAX);
  }
  if (ok) relay.UpstreamGone();
  std::string down;
  relay.PullClient(&down, SIZE_MAX);
  relay.ClientGone();
  relay.Close("fuzz");
  return 0;
}
