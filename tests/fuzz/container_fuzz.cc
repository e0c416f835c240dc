// Archives (zip, tar, xz) through the whole Normalizer: arbitrary bytes whole and chunked give the same layers, members and reasons and never a segment below a reported hold; zips and tars written here from the input give back every member's data under its name.
#include <zlib.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <set>

#include "decode_fuzz_common.h"

using namespace egressguard::dlp::decode;

namespace {

class Sink : public fuzz::CheckingSink {
 public:
  using CheckingSink::CheckingSink;
  void OnMember(uint32_t layer, std::string_view path) override {
    members.emplace_back(layer, std::string(path));
    member_at[layer].emplace_back(layers[layer].size(), std::string(path));
  }
  void OnEncrypted(uint64_t b, uint64_t e, std::string_view member, std::string_view what) override {
    if (b > e) std::abort();
    encrypted.insert(std::string(member) + ":" + std::string(what));
  }
  // Whether `needle` occurs in some layer under member `name`.
  bool FoundIn(std::string_view needle, const std::string& name) const {
    for (const auto& [id, text] : layers) {
      auto it = member_at.find(id);
      if (it == member_at.end()) continue;
      for (size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) {
        std::string m;
        for (const auto& [from, path] : it->second) {
          if (from <= at) m = path;
        }
        if (m == name) return true;
      }
    }
    return false;
  }
  std::vector<std::pair<uint32_t, std::string>> members;
  std::map<uint32_t, std::vector<std::pair<size_t, std::string>>> member_at;
  std::multiset<std::string> encrypted;
};

struct Outcome {
  std::vector<std::string> layers;
  // The member paths reported, not which layer reported which when: a layer at the same
  // depth as an archive's members but not decoded from it (the parent's base64 runs)
  // takes the member open when it emits, which depends on the reads (Context keys
  // members by depth; reported to the lead).
  std::set<std::string> members;
  std::vector<std::string> reasons;
  std::multiset<std::string> encrypted;
  bool limited = false;
};

Outcome Run(std::string_view body, size_t chunk, const NormalizerLimits& limits, Sink* keep = nullptr) {
  Sink local(body.size());
  Sink& sink = keep ? *keep : local;
  Normalizer n({}, limits, sink);
  for (size_t at = 0; at < body.size(); at += chunk) {
    n.Feed(body.substr(at, chunk));
    sink.Decided(n.held_from(), std::min(body.size(), at + chunk));
    if (n.memory_bytes() > limits.max_memory_bytes + (1 << 20)) std::abort();
  }
  n.Finish();
  if (n.held_from() != UINT64_MAX) std::abort();
  Outcome o;
  for (auto& [id, text] : sink.layers) o.layers.push_back(text);
  std::sort(o.layers.begin(), o.layers.end());
  for (const auto& [id, path] : sink.members) {
    if (!path.empty()) o.members.insert(path);
  }
  o.reasons = sink.reasons;
  std::sort(o.reasons.begin(), o.reasons.end());
  o.encrypted = sink.encrypted;
  for (const auto& r : o.reasons) {
    // Where a limit cuts depends on how output was grouped: not comparable.
    if (r.find("limit") != std::string::npos || r.find("layers") != std::string::npos ||
        r.find("bomb") != std::string::npos) {
      o.limited = true;
    }
  }
  return o;
}

void Differential(std::string_view body, size_t chunk) {
  NormalizerLimits limits;
  limits.max_decoded_bytes = 1 << 20;
  limits.max_memory_bytes = 12 << 20;
  const Outcome whole = Run(body, body.size() + 1, limits);
  const Outcome split = Run(body, chunk, limits);
  {  // Torn down mid-body without Finish (a reset connection).
    fuzz::CheckingSink sink(body.size());
    Normalizer n({}, limits, sink);
    n.Feed(body.substr(0, body.size() / 2));
  }
  if (whole.limited || split.limited) return;
  if (whole.layers != split.layers || whole.members != split.members || whole.reasons != split.reasons ||
      whole.encrypted != split.encrypted) {
    std::abort();
  }
}

std::string Le(uint64_t v, int bytes) {
  std::string s;
  for (int i = 0; i < bytes; ++i) s += static_cast<char>((v >> (8 * i)) & 0xff);
  return s;
}

std::string RawDeflate(std::string_view in) {
  z_stream z{};
  deflateInit2(&z, 6, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY);
  std::string out(deflateBound(&z, in.size()) + 16, '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  z.avail_in = static_cast<uInt>(in.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  deflate(&z, Z_FINISH);
  out.resize(z.total_out);
  deflateEnd(&z);
  return out;
}

// Splits the input into up to four members, each with its own options from `opts`.
std::vector<std::string_view> Members(std::string_view payload, uint8_t count) {
  std::vector<std::string_view> parts;
  const size_t k = 1 + count % 4;
  const size_t each = payload.size() / k;
  for (size_t i = 0; i < k; ++i) {
    parts.push_back(payload.substr(i * each, i + 1 == k ? std::string_view::npos : each));
  }
  return parts;
}

// A zip as the writers make them: stored or deflated, with or without a data
// descriptor, zip64 or not (bits of opts, per member).
void RoundTripZip(std::string_view payload, uint8_t opts) {
  std::string zip, central;
  const auto parts = Members(payload, opts);
  std::vector<std::pair<std::string, std::string_view>> expect;
  for (size_t i = 0; i < parts.size(); ++i) {
    const std::string_view data = parts[i];
    const unsigned o = (opts >> i) ^ static_cast<unsigned>(i * 5);
    const bool deflate = o & 1, descriptor = o & 2, zip64 = (o & 4) && !descriptor;
    // Stored data of unknown size ends at the first matching descriptor: data that
    // carries its own signature could end it early (an ambiguity of the format).
    if (descriptor && !deflate && data.find("PK\x07\x08") != std::string_view::npos) return;
    const std::string name = "m" + std::to_string(i) + ".bin";
    const std::string body = deflate ? RawDeflate(data) : std::string(data);
    const uint32_t crc = static_cast<uint32_t>(crc32(0, reinterpret_cast<const Bytef*>(data.data()), static_cast<uInt>(data.size())));
    std::string extra;
    uint64_t c32 = descriptor ? 0 : body.size(), u32 = descriptor ? 0 : data.size();
    if (zip64) {
      extra = Le(1, 2) + Le(16, 2) + Le(data.size(), 8) + Le(body.size(), 8);
      c32 = u32 = 0xffffffff;
    }
    const size_t offset = zip.size();
    zip += "PK\x03\x04" + Le(45, 2) + Le(descriptor ? 8 : 0, 2) + Le(deflate ? 8 : 0, 2) + Le(0, 4) +
           Le(descriptor ? 0 : crc, 4) + Le(c32, 4) + Le(u32, 4) + Le(name.size(), 2) + Le(extra.size(), 2) + name +
           extra + body;
    if (descriptor) zip += "PK\x07\x08" + Le(crc, 4) + Le(body.size(), 4) + Le(data.size(), 4);
    central += "PK\x01\x02" + Le(45, 2) + Le(45, 2) + Le(0, 2) + Le(deflate ? 8 : 0, 2) + Le(0, 4) + Le(crc, 4) +
               Le(body.size(), 4) + Le(data.size(), 4) + Le(name.size(), 2) + Le(0, 2) + Le(0, 2) + Le(0, 2) +
               Le(0, 2) + Le(0, 4) + Le(offset, 4) + name;
    if (!data.empty()) expect.emplace_back(name, data);
  }
  zip += central + "PK\x05\x06" + Le(0, 4) + Le(parts.size(), 2) + Le(parts.size(), 2) + Le(central.size(), 4) +
         Le(zip.size(), 4) + Le(0, 2);
  NormalizerLimits limits;
  limits.max_depth = 1;  // members are not decoded further: their text is what went in
  limits.max_expansion_ratio = 1u << 30;
  for (size_t chunk : {zip.size() + 1, size_t{1} + opts % 13}) {
    Sink sink(zip.size());
    Run(zip, chunk, limits, &sink);
    for (const auto& r : sink.reasons) {
      if (r.find("nested deeper") == std::string::npos) std::abort();
    }
    for (const auto& [name, data] : expect) {
      if (!sink.FoundIn(data, name)) std::abort();
    }
  }
}

std::string Octal(uint64_t v, size_t width) {
  std::string s(width - 1, '0');
  for (size_t i = width - 1; i > 0 && v; --i, v >>= 3) s[i - 1] = static_cast<char>('0' + (v & 7));
  return s + '\0';
}

void RoundTripTar(std::string_view payload, uint8_t opts) {
  std::string tar;
  std::vector<std::pair<std::string, std::string_view>> expect;
  for (const std::string_view data : Members(payload, opts)) {
    const std::string name = "dir/m" + std::to_string(expect.size() + tar.size()) + ".bin";
    std::string h(512, '\0');
    h.replace(0, name.size(), name);
    h.replace(100, 8, Octal(0644, 8));
    h.replace(108, 8, Octal(0, 8));
    h.replace(116, 8, Octal(0, 8));
    h.replace(124, 12, Octal(data.size(), 12));
    h.replace(136, 12, Octal(0, 12));
    h[156] = '0';
    h.replace(257, 8, std::string("ustar\0" "00", 8));
    h.replace(148, 8, "        ");
    unsigned sum = 0;
    for (char c : h) sum += static_cast<uint8_t>(c);
    h.replace(148, 8, Octal(sum, 7) + " ");
    tar += h + std::string(data) + std::string((512 - data.size() % 512) % 512, '\0');
    if (!data.empty()) expect.emplace_back(name, data);
  }
  tar += std::string(1024, '\0');
  NormalizerLimits limits;
  limits.max_depth = 1;
  for (size_t chunk : {tar.size() + 1, size_t{1} + opts % 29}) {
    Sink sink(tar.size());
    Run(tar, chunk, limits, &sink);
    for (const auto& r : sink.reasons) {
      if (r.find("nested deeper") == std::string::npos) std::abort();
    }
    for (const auto& [name, data] : expect) {
      if (!sink.FoundIn(data, name)) std::abort();
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2 || size > (64 << 10)) return 0;
  const uint8_t mode = data[0] % 5;
  const uint8_t opts = data[1];
  const std::string_view rest(reinterpret_cast<const char*>(data) + 2, size - 2);
  const size_t chunk = 1 + opts % 61;
  switch (mode) {
    case 0:  // seeds: real zips, tars, tarballs, .xz
      Differential(rest, chunk);
      break;
    case 1:
      Differential(std::string("PK\x03\x04", 4) + std::string(rest), chunk);
      break;
    case 2:
      Differential(std::string("\xfd" "7zXZ\0", 6) + std::string(rest), chunk);
      break;
    case 3:
      RoundTripZip(rest, opts);
      break;
    default:
      RoundTripTar(rest, opts);
      break;
  }
  return 0;
}
