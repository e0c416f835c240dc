#pragma once
// Archive fixtures from real writers: Python's zipfile and tarfile run at test time
// (EGRESSGUARD_PYTHON, /usr/bin/python3), and what the recorder saw, by member.

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <random>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "decode_test_util.h"

#ifndef EGRESSGUARD_PYTHON
#define EGRESSGUARD_PYTHON "/usr/bin/python3"
#endif

namespace egressguard::dlp::decode::testing {

// Helpers every fixture script may use: Z(members, method) builds a zip in memory,
// Unseekable() is a sink zipfile must write data descriptors to, out() writes the result.
inline constexpr std::string_view kPyPrelude = R"PY(
import io, sys, struct, zipfile, tarfile, zlib
class Unseekable(io.RawIOBase):
    def __init__(self):
        self.buf = bytearray()
    def writable(self):
        return True
    def write(self, b):
        self.buf += b
        return len(b)
def Z(members, method=zipfile.ZIP_STORED):
    b = io.BytesIO()
    with zipfile.ZipFile(b, 'w', method) as zf:
        for name, data in members:
            zf.writestr(name, data)
    return b.getvalue()
def out(b):
    sys.stdout.buffer.write(bytes(b))
)PY";

// Runs a Python script (after kPyPrelude) and returns what it wrote to stdout.
inline std::string Python(std::string_view script) {
  char path[] = "/tmp/egressguard_archive_XXXXXX";
  const int fd = mkstemp(path);
  EXPECT_GE(fd, 0);
  if (fd < 0) return "";
  std::string text(kPyPrelude);
  text.append(script);
  EXPECT_EQ(write(fd, text.data(), text.size()), static_cast<ssize_t>(text.size()));
  close(fd);
  const std::string cmd = std::string(EGRESSGUARD_PYTHON) + " " + path;
  FILE* p = popen(cmd.c_str(), "r");
  std::string out;
  if (p != nullptr) {
    char buf[1 << 16];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
    EXPECT_EQ(pclose(p), 0) << script;
  }
  unlink(path);
  EXPECT_FALSE(out.empty()) << "fixture script wrote nothing: " << script;
  return out;
}

// Member paths under which `needle` appears, over all layers.
inline std::set<std::string> MembersWith(const Recorder& r, std::string_view needle) {
  std::set<std::string> found;
  for (const auto& [id, text] : r.layers) {
    for (size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) {
      found.insert(r.MemberOf(id, at));
    }
  }
  return found;
}

inline bool HasReason(const Recorder& r, std::string_view part) {
  return r.Reasons().find(part) != std::string::npos;
}

// Feeds in the given chunk sizes (cycled).
inline Recorder NormalizeChunks(std::string_view input, const std::vector<size_t>& sizes,
                                const ContentHintLite& hint = {}, const NormalizerLimits& limits = {}) {
  Recorder rec;
  Normalizer n(hint, limits, rec);
  size_t at = 0;
  for (size_t i = 0; at < input.size(); ++i) {
    const size_t len = std::min(sizes[i % sizes.size()], input.size() - at);
    n.Feed(input.substr(at, len));
    at += len;
    rec.max_memory = std::max(rec.max_memory, n.memory_bytes());
  }
  n.Finish();
  return rec;
}

inline std::vector<size_t> RandomChunks(uint64_t seed, size_t max) {
  std::mt19937_64 rng(seed);
  std::vector<size_t> sizes;
  for (int i = 0; i < 97; ++i) sizes.push_back(std::uniform_int_distribution<size_t>(1, max)(rng));
  return sizes;
}

// What must not depend on how the body was cut: each layer's text (and, where asked,
// every byte's span) with its member changes and where in its text they fall, the
// reasons and the encrypted reports. Layers are compared as a sorted list, not by id:
// ids are given as layers are first needed, and which layer needs one first depends on
// the reads (layers are fed one after the other, a read at a time; a run finder's layer
// may start inside an archive header before the archive's next member does).
struct Observed {
  struct ObservedLayer {
    std::string text;
    std::vector<Span> spans;
    std::vector<std::pair<size_t, std::string>> members;
    auto operator<=>(const ObservedLayer&) const = default;
  };
  std::vector<ObservedLayer> layers;
  std::multiset<std::string> reasons, encrypted;
  bool operator==(const Observed&) const = default;
};

inline Observed Observe(const Recorder& r, bool spans) {
  Observed o;
  std::set<uint32_t> seen;
  for (const auto& [id, text] : r.layers) {
    const auto m = r.member_at.find(id);
    o.layers.push_back({text, spans ? r.byte_spans.at(id) : std::vector<Span>{},
                        m == r.member_at.end() ? std::vector<std::pair<size_t, std::string>>{} : m->second});
    seen.insert(id);
  }
  for (const auto& [id, list] : r.member_at) {
    if (!seen.count(id)) o.layers.push_back({"", {}, list});  // members of a layer that emitted nothing
  }
  std::sort(o.layers.begin(), o.layers.end());
  for (const auto& u : r.undecodable) o.reasons.insert(u.why);
  for (const auto& e : r.encrypted) o.encrypted.insert(e.member + ":" + e.what);
  return o;
}

inline std::string Describe(const Observed& o) {
  std::string s;
  for (const auto& l : o.layers) {
    s += "layer[" + std::to_string(l.text.size()) + "] ";
    for (const auto& [at, m] : l.members) s += "member@" + std::to_string(at) + ":" + m + " ";
  }
  for (const auto& r : o.reasons) s += "why:" + r + " ";
  return s;
}

}  // namespace egressguard::dlp::decode::testing
