// held_from(): after every Feed, no segment delivered later starts before what it said (the proxy forwards the bytes below it), over random nested documents and chunkings; plain text is not held back more than the lazy context.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>
#include <random>

#include "decode_test_util.h"

namespace egressguard::dlp::decode::testing {
namespace {

constexpr uint64_t kLazyContext = 256;  // unescape.cc kContext: the literal tail held
constexpr uint64_t kSeeds = 100;        // documents per kind

// Checks every segment against the decided offset: the most the proxy could have
// forwarded after the Feeds so far, max over them of min(held_from, bytes fed). A linear
// segment's bytes map from orig_begin up, so checking orig_begin checks each of them.
class HoldSink : public SegmentSink {
 public:
  void OnSegment(const DecodedSegment& s) override {
    decoded_bytes += s.bytes.size();
    text[s.layer].append(s.bytes);
    if (s.orig_begin >= decided) return;
    if (++violations == 1) {
      first = "layer " + std::to_string(s.layer) + " segment [" + std::to_string(s.orig_begin) + ", " +
              std::to_string(s.orig_end) + ") linear=" + std::to_string(s.linear) + " arrived after decided offset " +
              std::to_string(decided) + " (fed " + std::to_string(fed) + "): \"" +
              std::string(s.bytes.substr(0, 40)) + "\"";
    }
  }
  void OnUndecodable(uint64_t, uint64_t, std::string_view) override {}

  uint64_t decided = 0, fed = 0;
  size_t violations = 0, decoded_bytes = 0;
  std::string first;
  std::map<uint32_t, std::string> text;
};

struct Doc {
  std::string kind;
  std::string body;
  ContentHintLite hint;
  std::vector<std::string> planted;
};

struct RunResult {
  size_t violations = 0;
  std::string first;
  uint64_t worst_lag = 0;  // fed - min(held_from, fed), over all Feeds
  uint64_t after_finish = 0;
  bool planted_decoded = false;
};

RunResult FeedAndCheck(const Doc& doc, const std::vector<size_t>& sizes, const NormalizerLimits& limits = {}) {
  HoldSink sink;
  Normalizer n(doc.hint, limits, sink);
  RunResult r;
  const std::string_view body = doc.body;
  size_t at = 0;
  for (size_t i = 0; at < body.size(); ++i) {
    const size_t len = std::min(sizes[i % sizes.size()], body.size() - at);
    n.Feed(body.substr(at, len));
    at += len;
    sink.fed = at;
    const uint64_t decided = std::min<uint64_t>(n.held_from(), at);
    r.worst_lag = std::max<uint64_t>(r.worst_lag, at - decided);
    sink.decided = std::max(sink.decided, decided);
  }
  n.Finish();
  r.after_finish = n.held_from();
  r.violations = sink.violations;
  r.first = sink.first;
  for (const auto& value : doc.planted) {
    for (const auto& [id, t] : sink.text) r.planted_decoded |= t.find(value) != std::string::npos;
  }
  return r;
}

// Random documents: prose with planted values, wrapped in the encodings the decode tree
// undoes, nested up to the default depth (3 decoded layers).
class DocGen {
 public:
  explicit DocGen(uint64_t seed) : rng_(seed) {}

  size_t Uniform(size_t lo, size_t hi) { return std::uniform_int_distribution<size_t>(lo, hi)(rng_); }
  bool Coin(unsigned percent) { return Uniform(0, 99) < percent; }
  bool Chance(unsigned per_10k) { return Uniform(0, 9999) < per_10k; }
  // Escape density, from one in several kilobytes (long quiet stretches before an
  // escape: the lazy unescaper's before-context) to almost every other byte.
  unsigned Rate() {
    static const unsigned kRates[] = {3, 15, 60, 250, 1000, 4000};
    return kRates[Uniform(0, std::size(kRates) - 1)];
  }

  // Words, punctuation and line breaks; no escape trigger and no word long enough to be
  // a base64 run. Planted values are marked \x01...\x02 for the encoders, which escape
  // the last character of half of them (a value completed by an escape: the case the
  // before-context exists for); Text() drops the marks.
  std::string Prose(size_t words, std::vector<std::string>* planted) {
    static const char* kWords[] = {"the", "customer", "paid", "with", "card", "and", "sent", "a", "note",
                                   "to", "Jane", "on", "Monday", "for", "order", "no.", "2024", "of", "it"};
    static const char* kValues[] = {"4539 1488 0343 6467", "jane.doe@example.org", "123-45-6789",
                                    "CH93 0076 2011 6238 5295 7", "4111-1111-1111-1111"};
    std::string out;
    for (size_t i = 0; i < words; ++i) {
      if (Coin(6)) {
        const std::string v = kValues[Uniform(0, std::size(kValues) - 1)];
        planted->push_back(v);
        out += "\x01" + v + "\x02";
      } else {
        out += kWords[Uniform(0, std::size(kWords) - 1)];
      }
      const size_t p = Uniform(0, 99);
      out += p < 85 ? " " : p < 95 ? ", " : p < 98 ? ".\n" : "\r\n";
    }
    return out;
  }

  std::string Text(size_t words, std::vector<std::string>* planted) { return Unmarked(Prose(words, planted)); }

  static std::string Unmarked(std::string_view s) {
    std::string out;
    for (char c : s) {
      if (c != '\x01' && c != '\x02') out += c;
    }
    return out;
  }

  // Walks marked prose: f(c, force) for each character, force set on the last character
  // of a value chosen to end in an escape.
  template <typename F>
  void ForEachMarked(std::string_view s, F&& f) {
    bool force = false;
    for (size_t i = 0; i < s.size(); ++i) {
      if (s[i] == '\x01') force = Coin(50);
      if (s[i] == '\x01' || s[i] == '\x02') continue;
      f(s[i], force && i + 1 < s.size() && s[i + 1] == '\x02');
    }
  }

  // Characters escaped as %XX (spaces also as '+') at the given rate; '&', '=', '%'
  // always. Spaces and line breaks stay literal otherwise: the decoder does not mind,
  // and quiet stretches are what the lazy windows are about.
  std::string Percent(std::string_view s, unsigned per_10k) {
    std::string out;
    ForEachMarked(s, [&](char c, bool force) {
      if (c == ' ' && (force || Chance(per_10k))) out += Coin(70) ? "%20" : "+";
      else if (force || Chance(per_10k) || c == '&' || c == '=' || c == '%' || c == '+') out += Hex('%', c);
      else out += c;
    });
    return out;
  }

  std::string JsonString(std::string_view s, unsigned per_10k) {
    std::string out = "\"";
    ForEachMarked(s, [&](char c, bool force) {
      if (c == '"') out += "\\\"";
      else if (c == '\\') out += "\\\\";
      else if (c == '\n') out += "\\n";
      else if (c == '\r') out += "\\r";
      else if (force || Chance(per_10k)) out += "\\u00" + Hex('\0', c);
      else if (c == '/') out += Coin(50) ? "\\/" : "/";
      else out += c;
      if (c == ' ' && Chance(per_10k / 4)) out += "\\ud83d\\ude00";  // a surrogate pair
    });
    return out + "\"";
  }

  std::string Json(size_t fields, unsigned per_10k, std::vector<std::string>* planted) {
    std::string out = "{";
    for (size_t i = 0; i < fields; ++i) {
      if (i) out += Coin(50) ? "," : ",\n  ";
      out += "\"f" + std::to_string(i) + "\":" + JsonString(Prose(Uniform(1, 120), planted), per_10k);
    }
    return out + "}";
  }

  std::string QuotedPrintable(std::string_view s, unsigned per_10k) {
    std::string out;
    size_t line = 0;
    ForEachMarked(s, [&](char c, bool force) {
      const bool esc = (c == '=' || force || Chance(per_10k)) && c != '\r' && c != '\n';
      const std::string unit = esc ? Hex('=', c) : std::string(1, c);
      if (line + unit.size() > 72) {
        out += Coin(50) ? "=\r\n" : "=\n";
        line = 0;
      }
      out += unit;
      line = c == '\n' ? 0 : line + unit.size();
    });
    return out;
  }

  static std::string Wrapped(std::string_view b64, size_t width) {
    std::string out;
    for (size_t i = 0; i < b64.size(); i += width) out += std::string(b64.substr(i, width)) + "\r\n";
    return out;
  }

  // Self-describing content for a nested layer (no hint reaches it): what a base64 run,
  // a compressed stream or a multipart part may hold. `budget`: decoded layers left.
  std::string Content(unsigned budget, std::vector<std::string>* planted) {
    const size_t pick = budget <= 1 ? Uniform(0, 2) : Uniform(0, 7);
    switch (pick) {
      case 0: return Text(Uniform(5, 120), planted);
      case 1: return Json(Uniform(1, 5), Rate(), planted);
      case 2: return "a=" + Percent(Prose(Uniform(3, 60), planted), Rate()) + "&b=1";
      case 3: return WithRuns(budget, planted);
      case 4: return Gzip(Content(budget - 1, planted));
      case 5: return Zstd(Content(budget - 1, planted));
      case 6: return Deflate(Content(budget - 1, planted), 15);
      default: return Multipart(Boundary(), budget, planted);
    }
  }

  // Prose or JSON with base64 runs of nested content inside.
  std::string WithRuns(unsigned budget, std::vector<std::string>* planted) {
    std::string out;
    for (size_t k = Uniform(1, 3); k > 0; --k) {
      out += Text(Uniform(0, 30), planted);
      std::string inner = budget > 1 ? Content(budget - 1, planted) : Text(Uniform(3, 40), planted);
      std::string b64 = Base64(inner, Coin(20), Coin(70));
      if (Coin(20)) b64 = Wrapped(b64, 64);
      out += Coin(50) ? "data:" + b64 + " " : "{\"blob\":\"" + b64 + "\"} ";
      std::vector<std::string> unused;
      if (Coin(30)) out += Base64(Text(2, &unused)).substr(0, Uniform(4, 15)) + " ";  // too short for a run
    }
    return out + Text(Uniform(0, 20), planted);
  }

  std::string Boundary() {
    static const char kChars[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    std::string b = "----eg";
    for (size_t i = Uniform(4, 24); i > 0; --i) b += kChars[Uniform(0, sizeof kChars - 2)];
    return b;
  }

  // Parts: plain, QP, base64, compressed (declared by the part's Content-Encoding) and
  // nested content. Starts with its delimiter line so it is sniffed when nested.
  std::string Multipart(const std::string& boundary, unsigned budget, std::vector<std::string>* planted,
                        int only = -1) {
    std::string out;
    const size_t parts = Uniform(1, 5);
    for (size_t i = 0; i < parts; ++i) {
      out += "--" + boundary + "\r\nContent-Disposition: form-data; name=\"p" + std::to_string(i) + "\"\r\n";
      const int kind = only >= 0 ? only : static_cast<int>(Uniform(0, 5));
      std::string body;
      switch (kind) {
        case 0:
          body = Text(Uniform(0, 80), planted);
          break;
        case 1:
          out += "Content-Transfer-Encoding: quoted-printable\r\n";
          body = QuotedPrintable(Prose(Uniform(0, 120), planted), Rate());
          break;
        case 2:
          out += "Content-Transfer-Encoding: base64\r\n";
          body = Wrapped(Base64(budget > 1 ? Content(budget - 1, planted) : Text(Uniform(0, 80), planted)), 76);
          break;
        case 3: {
          const bool br = Coin(50);
          out += br ? "Content-Encoding: br\r\n" : "Content-Encoding: gzip\r\n";
          const std::string inner = budget > 1 ? Content(budget - 1, planted) : Text(Uniform(1, 80), planted);
          body = br ? Brotli(inner) : Gzip(inner);
          break;
        }
        case 4:
          out += "Content-Type: application/json\r\n";
          body = Json(Uniform(1, 4), Rate(), planted);
          break;
        default:
          body = budget > 1 ? Content(budget - 1, planted) : Text(Uniform(0, 30), planted);
          break;
      }
      out += "\r\n" + body + "\r\n";
    }
    return out + "--" + boundary + "--\r\n" + (Coin(30) ? "epilogue text\r\n" : "");
  }

  Doc Make(const std::string& kind) {
    Doc d;
    d.kind = kind;
    std::vector<std::string>* p = &d.planted;
    if (kind == "plain") {
      d.body = Text(Uniform(10, 600), p);
      d.hint = H("text/plain");
    } else if (kind == "percent") {
      const bool url = Coin(50);
      d.body = (url ? "/submit?q=" : "q=") + Percent(Prose(Uniform(5, 400), p), Rate()) + "&n=" +
               Percent(Prose(Uniform(1, 20), p), Rate());
      d.hint = url ? H("", "", true) : H("application/x-www-form-urlencoded");
    } else if (kind == "json") {
      d.body = Json(Uniform(1, 12), Rate(), p);
      d.hint = H("application/json");
    } else if (kind == "qp" || kind == "b64body" || kind == "multipart") {
      const std::string b = Boundary();
      const int only = kind == "qp" ? 1 : kind == "b64body" ? 2 : -1;
      d.body = (Coin(30) ? "preamble, ignored\r\n" : "") + Multipart(b, 2, p, only);
      d.hint = H("multipart/form-data; boundary=" + b);
    } else if (kind == "b64runs") {
      d.body = WithRuns(2, p);
    } else if (kind == "gzip") {
      d.body = Gzip(Content(2, p));
      if (Coin(40)) d.body += Gzip(Content(2, p));  // members back to back
      d.hint = H("", "gzip");
    } else if (kind == "deflate") {
      d.body = Deflate(Content(2, p), Coin(50) ? 15 : -15);
      d.hint = H("", "deflate");
    } else if (kind == "zstd") {
      d.body = Zstd(Content(2, p));
      d.hint = H("", "zstd");
    } else if (kind == "br") {
      d.body = Brotli(Content(2, p));
      d.hint = H("", "br");
    } else {
      d.body = Content(3, p);
    }
    return d;
  }

  // Chunk sizes to cycle through: byte by byte, small, mixed small and large, one size.
  std::vector<size_t> Chunking(int style) {
    std::vector<size_t> sizes;
    switch (style) {
      case 0:
        return {1};
      case 1:
        for (int i = 0; i < 64; ++i) sizes.push_back(Uniform(1, 17));
        return sizes;
      case 2:
        for (int i = 0; i < 64; ++i) sizes.push_back(size_t{1} << Uniform(0, 13));
        for (auto& s : sizes) s = Uniform(1, s);
        return sizes;
      default:  // 3, 4
        return {Uniform(1, 5000)};
    }
  }

 private:
  static std::string Hex(char lead, char c) {
    static const char kHex[] = "0123456789ABCDEF";
    const auto u = static_cast<unsigned char>(c);
    std::string out;
    if (lead) out += lead;
    out += kHex[u >> 4];
    out += kHex[u & 15];
    return out;
  }

  std::mt19937_64 rng_;
};

// Feeds chunks one by one; returns held_from() after each.
std::vector<uint64_t> HoldsAfterEachFeed(Normalizer& n, const std::vector<std::string_view>& chunks) {
  std::vector<uint64_t> holds;
  for (auto c : chunks) {
    n.Feed(c);
    holds.push_back(n.held_from());
  }
  return holds;
}

TEST(HeldFrom, TextBeforeAnEscapeIsHeldAsItsContext) {
  // The raw layer never holds a whole card: "\u0037" completes it in the decoded layer,
  // whose window begins with the digits sent before the escape.
  const std::string head = R"({"note":")" + std::string(300, 'x') + " card 4539 1488 0343 646";
  const std::string tail = R"(\u0037 thanks"})";
  HoldSink sink;
  Normalizer n(H("application/json"), {}, sink);
  const auto holds = HoldsAfterEachFeed(n, {head, tail});
  EXPECT_LE(holds[0], head.find("4539"));
  n.Finish();
  EXPECT_NE(sink.text[1].find("4539 1488 0343 6467"), std::string::npos);
}

TEST(HeldFrom, PlainTextIsHeldOnlyByTheLazyTail) {
  std::string text;
  while (text.size() < (1 << 20)) text += "the customer paid with card and sent a note to Jane on Monday. ";
  HoldSink sink;
  Normalizer n(H("text/plain"), {}, sink);
  uint64_t fed = 0, worst = 0;
  for (size_t at = 0; at < text.size(); at += 997) {
    const std::string_view chunk = std::string_view(text).substr(at, 997);
    n.Feed(chunk);
    fed += chunk.size();
    const uint64_t h = n.held_from();
    worst = std::max<uint64_t>(worst, fed - std::min<uint64_t>(h, fed));
  }
  EXPECT_LE(worst, kLazyContext);
  n.Finish();
  EXPECT_EQ(n.held_from(), UINT64_MAX);
  EXPECT_EQ(sink.decoded_bytes, 0u);
}

TEST(HeldFrom, CompressedStreamIsHeldOnlyWhereInputIsNotYetOutput) {
  // Decompressed segments span from the input not yet fully turned into output
  // (compress.cc), so a long stream fed in pieces is held back by about one piece, not
  // from its first byte (NothingDeliveredBelowAReportedHold checks that this is sound).
  std::string text;
  for (int i = 0; i < 2000; ++i) text += "row " + std::to_string(i) + " card 4111 1111 1111 1111\n";
  const std::string body = "--b\r\nContent-Encoding: gzip\r\n\r\n" + Gzip(text) + "\r\n--b--\r\n";
  const size_t stream_start = body.find("\r\n\r\n") + 4;
  HoldSink sink;
  Normalizer n(H("multipart/form-data; boundary=b"), {}, sink);
  std::vector<std::string_view> chunks;
  for (size_t at = 0; at < body.size(); at += 100) chunks.push_back(std::string_view(body).substr(at, 100));
  const auto holds = HoldsAfterEachFeed(n, chunks);
  size_t advanced = 0;
  for (size_t i = (stream_start + 99) / 100; i + 1 < holds.size(); ++i) {
    EXPECT_LE(holds[i], (i + 1) * 100) << i;
    if (holds[i] > stream_start + 100) ++advanced;
  }
  EXPECT_GT(advanced, 0u) << "the hold never moved past the stream's start";
  // The closing delimiter ends the part and its stream: nothing is held any more.
  EXPECT_EQ(holds.back(), UINT64_MAX);
  n.Finish();
}

const std::vector<std::string> kKinds = {"plain", "percent", "json", "qp", "b64body", "b64runs", "multipart",
                                         "gzip", "deflate", "zstd", "br", "nested"};

TEST(HeldFrom, NothingDeliveredBelowAReportedHold) {
  const auto t0 = std::chrono::steady_clock::now();
  std::map<std::string, uint64_t> worst_lag, worst_lag_top;  // top: max_depth 1, the top decoder alone
  std::map<std::string, size_t> docs, with_planted;
  size_t failures = 0;
  for (uint64_t seed = 1; seed <= kSeeds; ++seed) {
    for (const std::string& kind : kKinds) {
      DocGen gen(seed * 1000 + std::hash<std::string>{}(kind) % 1000);
      const Doc doc = gen.Make(kind);
      ++docs[kind];
      bool planted = false;
      for (int style = 0; style < 6; ++style) {
        // Run 4 under tight limits: a decoded-size cap that stops decoding midway and a
        // shallower tree. Run 5 one layer deep: what the top decoder holds by itself.
        NormalizerLimits limits;
        if (style == 4) {
          limits.max_decoded_bytes = gen.Uniform(16, 4000);
          limits.max_depth = static_cast<uint32_t>(gen.Uniform(1, 3));
        }
        if (style == 5) limits.max_depth = 1;
        const RunResult r = FeedAndCheck(doc, gen.Chunking(style == 5 ? 2 : style), limits);
        if (style < 4) worst_lag[kind] = std::max(worst_lag[kind], r.worst_lag);
        if (style == 5) worst_lag_top[kind] = std::max(worst_lag_top[kind], r.worst_lag);
        if (style < 4) planted |= r.planted_decoded;
        EXPECT_EQ(r.after_finish, UINT64_MAX) << kind << " seed " << seed;
        if (r.violations > 0 && ++failures <= 5) {
          ADD_FAILURE() << kind << " seed " << seed << " chunking " << style << ": " << r.violations
                        << " violation(s), first: " << r.first;
        }
      }
      with_planted[kind] += planted;
    }
  }
  EXPECT_EQ(failures, 0u);
  for (const auto& kind : kKinds) {
    std::printf("[ held     ] %-9s worst lag %5llu bytes (top decoder alone %5llu); planted value decoded in %zu/%zu\n",
                kind.c_str(), static_cast<unsigned long long>(worst_lag[kind]),
                static_cast<unsigned long long>(worst_lag_top[kind]), with_planted[kind], docs[kind]);
    // Every kind but plain text must actually reach a decoder, or the property says little.
    if (kind != "plain") {
      EXPECT_GT(with_planted[kind], docs[kind] / 2) << kind;
    }
  }
  // Plain text holds at most the lazy unescaper's tail (the sniff prefix is shorter).
  EXPECT_LE(worst_lag["plain"], kLazyContext);
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0);
  std::printf("[ held     ] %zu documents in %lld ms\n", docs.size() * kSeeds, static_cast<long long>(ms.count()));
}

}  // namespace
}  // namespace egressguard::dlp::decode::testing
