// The binary filter (text_runs.h): binary documents reach the sink only around runs that
// can hold a match, exactly as the reference definition says, however they are chunked;
// what a finding needs (its bytes, its neighbours, its keyword window) is always there;
// decoders below still get every byte.
#include <gtest/gtest.h>

#include <random>

#include "archive_test_util.h"
#include "decode_test_util.h"
#include "dlp/decode/text_runs.h"
#include "text_runs_reference.h"

namespace egressguard::dlp::decode::testing {
namespace {

std::bitset<256> Bytes(std::string_view chars) {
  std::bitset<256> s;
  for (char c : chars) s.set(static_cast<unsigned char>(c));
  return s;
}

std::bitset<256> Range(int lo, int hi) {
  std::bitset<256> s;
  for (int b = lo; b <= hi; ++b) s.set(static_cast<size_t>(b));
  return s;
}

// Shaped like the default pack: card numbers with a keyword window, e-mail addresses,
// IBAN-like upper-case tokens, and a dump header of control bytes.
std::shared_ptr<const TextRunConfig> PackLike() {
  std::vector<TextRunPattern> p;
  p.push_back({Bytes("0123456789 -"), 13, 48});
  p.push_back({Bytes("0123456789"), 9, 32});
  std::bitset<256> email = Bytes("._%+-@") | Range('a', 'z') | Range('A', 'Z') | Range('0', '9');
  p.push_back({email, 6, 0});
  p.push_back({Range('A', 'Z') | Range('0', '9'), 15, 48});
  p.push_back({Bytes("PGDM") | Range(0, 0x20), 11, 0});
  return BuildTextRunConfig(p);
}

// MIME line wrapping: CRLF after every `width` characters.
std::string Wrap(const std::string& b64, size_t width = 76) {
  std::string out;
  for (size_t at = 0; at < b64.size(); at += width) out += b64.substr(at, width) + "\r\n";
  return out;
}

std::string RandomBytes(std::mt19937_64& rng, size_t n) {
  std::string s(n, '\0');
  for (char& c : s) c = static_cast<char>(rng());
  return s;
}

// Runs the filter over one document in the given chunk sizes (cycled).
struct FilterRun {
  std::vector<std::string> out;  // the stretches between gaps
  bool gap = true;
  std::vector<Span> spans;
  std::vector<uint64_t> holds;  // held_from after each Put
  uint64_t min_begin_after_hold_violation = 0;
  bool hold_ok = true;
};

FilterRun RunFilter(std::string_view doc, const std::shared_ptr<const TextRunConfig>& config,
                    const std::vector<size_t>& chunks) {
  FilterRun r;
  TextRunFilter f(config);
  uint64_t hold = 0;  // no segment may begin below the last reported hold
  auto keep = [&](const Src& s) {
    if (s.empty()) {
      EXPECT_FALSE(r.gap) << "two gaps in a row, or a gap before anything";
      r.gap = true;
      return;
    }
    if (r.gap) r.out.emplace_back();
    r.gap = false;
    s.ForEachRun([&](std::string_view bytes, OrigSpan span, bool linear) {
      if (span.begin < hold) r.hold_ok = false;
      r.out.back().append(bytes);
      for (size_t i = 0; i < bytes.size(); ++i) {
        r.spans.push_back(linear ? Span{span.begin + i, span.begin + i + 1} : Span{span.begin, span.end});
      }
    });
  };
  f.Begin();
  size_t at = 0, k = 0;
  while (at < doc.size()) {
    const size_t n = std::min(doc.size() - at, std::max<size_t>(1, chunks[k++ % chunks.size()]));
    SinglePiece piece(doc.substr(at, n), {at, at + n}, true);
    f.Put(piece.src(), keep);
    at += n;
    hold = std::min<uint64_t>(f.held_from(), at);
    r.holds.push_back(f.held_from());
  }
  hold = 0;  // End may deliver what was held
  f.End(keep);
  return r;
}

TEST(TextRuns, ConfigCoversEveryPattern) {
  const auto c = PackLike();
  ASSERT_NE(c, nullptr);
  EXPECT_LE(c->classes.size(), kMaxTextRunClasses);
  for (const auto& cls : c->classes) EXPECT_LE(cls.min_run, kMaxTextRunLength);
  // Every pattern's alphabet lies in one class whose N and W serve it.
  auto covered = [&](std::bitset<256> a, uint32_t n, uint32_t w) {
    return std::any_of(c->classes.begin(), c->classes.end(), [&](const TextRunClass& k) {
      return (a & ~k.members).none() && k.min_run <= n && k.context >= w;
    });
  };
  EXPECT_TRUE(covered(Bytes("0123456789 -"), 13, 48));
  EXPECT_TRUE(covered(Bytes("0123456789"), 9, 32));
  EXPECT_TRUE(covered(Range('A', 'Z') | Range('0', '9'), 15, 48));
  EXPECT_TRUE(covered(Bytes("PGDM") | Range(0, 0x20), 11, 0));
  EXPECT_EQ(BuildTextRunConfig({}), nullptr);
  EXPECT_EQ(BuildTextRunConfig({{Bytes("a"), 0, 0}}), nullptr) << "a pattern matching the empty string";
  // Runs of 100 are cut to the longest the filter tracks: it keeps more, never less.
  EXPECT_EQ(BuildTextRunConfig({{Bytes("a"), 100, 0}})->classes[0].min_run, kMaxTextRunLength);
}

TEST(TextRuns, BinaryOrText) {
  std::mt19937_64 rng(1);
  for (int i = 0; i < 10000; ++i) ASSERT_TRUE(LooksBinary(RandomBytes(rng, 64))) << i;
  EXPECT_TRUE(LooksBinary(std::string_view("PK\x03\x04\x14\x00", 6)));
  EXPECT_TRUE(LooksBinary("%PDF-1.7\n%abc"));
  EXPECT_TRUE(LooksBinary(std::string_view("\x1f\x8b\x08\x00", 4)));
  EXPECT_FALSE(LooksBinary("Grüezi Zürich, {\"card\": \"4111 1111 1111 1111\"}\r\n\tname=Müller"));
  EXPECT_FALSE(LooksBinary("\x1b[31mERROR\x1b[0m coloured log line"));
  EXPECT_FALSE(LooksBinary("Z\xfcrich, Gen\xe8ve: ISO-8859-1 text with a few accented letters"));
}

// The property the whole design rests on: exactly the reference's bytes, in any chunking.
TEST(TextRuns, MatchesTheReferenceWhateverTheChunking) {
  const auto config = PackLike();
  std::mt19937_64 rng(7);
  const std::vector<std::vector<size_t>> chunkings = {{1}, {3, 1, 7}, {63, 64, 65}, {48}, {1000}, {1 << 20}};
  static const char* const kText[] = {"card 4111 1111 1111 1111", "anna.meier@corp-mail.ch", "CH9300762011623852957",
                                      "PGDMP\x01\x0e\x04\x04\x08\x01", "ssn 536904399", "t\xc3\xa9l 044 668 18 00"};
  for (int round = 0; round < 200; ++round) {
    std::string doc = "\x01\x02";  // binary from its first bytes
    const size_t pieces = 1 + rng() % 12;
    for (size_t k = 0; k < pieces; ++k) {
      doc += RandomBytes(rng, rng() % 300);
      if (rng() % 3 == 0) doc += kText[rng() % std::size(kText)];
      if (rng() % 5 == 0) doc += std::string(rng() % 100, static_cast<char>('0' + rng() % 10));
    }
    const std::vector<std::string> want = ReferenceKept(doc, *config);
    for (const auto& chunks : chunkings) {
      const FilterRun r = RunFilter(doc, config, chunks);
      ASSERT_EQ(r.out, want) << "round " << round << " chunking " << chunks[0];
      EXPECT_TRUE(r.hold_ok) << "a byte was delivered below a reported hold, round " << round;
    }
  }
}

// Runs of class bytes just short of, at and just past each class's N, and union bytes
// of several classes at block ends: the quiet-block shortcut (no per-class masks where
// nothing can qualify) must keep exactly what the reference keeps.
TEST(TextRuns, NearThresholdRunsMatchTheReference) {
  const auto config = PackLike();
  std::mt19937_64 rng(11);
  const std::string alphabets[] = {"0123456789", "0123456789 -", "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789",
                                   "abcdefghijklmnopqrstuvwxyz.@", std::string("PGDM\x01\x02\x0a \x00", 9)};
  const std::vector<std::vector<size_t>> chunkings = {{1}, {64}, {63, 65}, {5, 200}, {1 << 20}};
  for (int round = 0; round < 300; ++round) {
    std::string doc = "\x01\x02";
    const size_t pieces = 1 + rng() % 40;
    for (size_t k = 0; k < pieces; ++k) {
      doc += RandomBytes(rng, rng() % 70);
      const std::string& a = alphabets[rng() % std::size(alphabets)];
      const size_t run = 1 + rng() % 20;  // around N: 6, 9, 11, 13, 15
      for (size_t i = 0; i < run; ++i) doc += a[rng() % a.size()];
    }
    const std::vector<std::string> want = ReferenceKept(doc, *config);
    for (const auto& chunks : chunkings) {
      const FilterRun r = RunFilter(doc, config, chunks);
      ASSERT_EQ(r.out, want) << "round " << round << " chunking " << chunks[0];
      EXPECT_TRUE(r.hold_ok) << "a byte was delivered below a reported hold, round " << round;
    }
  }
}

TEST(TextRuns, TextDocumentsPassWhole) {
  const auto config = PackLike();
  const std::string doc = "id,card,name\n1,4111 1111 1111 1111,Müller\n2,5500 0000 0000 0004,Meier\n";
  EXPECT_EQ(RunFilter(doc, config, {5}).out, std::vector<std::string>{doc});
  EXPECT_EQ(RunFilter(doc.substr(0, 20), config, {7}).out, std::vector<std::string>{doc.substr(0, 20)})
      << "shorter than the sniff";
}

NormalizerLimits Filtered() {
  NormalizerLimits l;
  l.text_runs = PackLike();
  return l;
}

// Base64 of binary bytes in a text body: the decoded layer holds the card number, the
// keyword before it and the bytes between, unchanged, and little else.
TEST(TextRuns, CardInsideBinaryIsKeptWithItsContext) {
  std::mt19937_64 rng(3);
  using std::string_literals::operator""s;
  const std::string inner = RandomBytes(rng, 4096) + "\x02" "card\x00\x13" "4111 1111 1111 1111\x00"s +
                            RandomBytes(rng, 4096);
  const Recorder r = Normalize("attachment:\n" + Wrap(Base64(inner)), {}, 0, Filtered());
  EXPECT_TRUE(r.Has(std::string_view("card\x00\x13" "4111 1111 1111 1111", 25)));
  size_t decoded = 0;
  for (const auto& [id, text] : r.layers) decoded += text.size();
  EXPECT_LT(decoded, inner.size() / 10) << "random bytes should mostly stay out of the scan";
  // Without the filter every decoded byte is scanned.
  const Recorder all = Normalize("attachment:\n" + Wrap(Base64(inner)));
  EXPECT_TRUE(all.Has("4111 1111 1111 1111"));
}

TEST(TextRuns, RandomBytesEmitAlmostNothing) {
  std::mt19937_64 rng(11);
  const std::string inner = RandomBytes(rng, 256 << 10);
  const std::string body = Wrap(Base64(inner));
  const Recorder r = Normalize(body, {}, 64 << 10, Filtered());
  size_t decoded = 0;
  for (const auto& [id, text] : r.layers) decoded += text.size();
  EXPECT_LT(decoded, inner.size() / 100) << decoded;
  const Recorder all = Normalize(body, {}, 64 << 10);
  size_t unfiltered = 0;
  for (const auto& [id, text] : all.layers) unfiltered += text.size();
  EXPECT_GE(unfiltered, inner.size());
}

// The decoders of a binary document still see all of it: a gzip stream inside base64 is
// binary for the scan but is decompressed, and its text scanned.
TEST(TextRuns, CompressedStreamStillReachesItsDecoder) {
  std::string text;
  for (int i = 0; i < 200; ++i) text += "row " + std::to_string(i) + " customer Meier\n";
  text += "card 4111 1111 1111 1111\n";
  const Recorder r = Normalize("attachment: " + Base64(Gzip(text)) + "\n", {}, 100, Filtered());
  EXPECT_TRUE(r.Has("card 4111 1111 1111 1111")) << r.Reasons();
}

// And a zip attachment: its deflated member is binary for the scan of the base64's
// decoded layer, yet the zip decoder gets every byte and its member text is scanned.
TEST(TextRuns, ZipInsideBase64StillReachesItsDecoder) {
  const std::string zip = Python(R"PY(
b = io.BytesIO()
with zipfile.ZipFile(b, 'w') as zf:
    zf.writestr('export/customers.csv', b'id,name,card\n' + b'7,Meier,0000\n' * 300 + b'8,Huber,4111 1111 1111 1111\n',
                compress_type=zipfile.ZIP_DEFLATED)
out(b.getvalue())
)PY");
  ASSERT_TRUE(LooksBinary(zip.substr(0, kBinarySniff)));
  const std::string body = "From: anna@corp-mail.ch\r\nSubject: export\r\n\r\n" + Wrap(Base64(zip));
  for (size_t chunk : {0, 100}) {
    const Recorder r = Normalize(body, {}, chunk, Filtered());
    EXPECT_TRUE(r.Has("8,Huber,4111 1111 1111 1111")) << chunk << " " << r.Reasons();
    EXPECT_EQ(r.MemberOf(r.members.empty() ? 0 : r.members.front().first, 0), "export/customers.csv");
  }
}

TEST(TextRuns, NormalizerOutputDoesNotDependOnChunking) {
  std::mt19937_64 rng(5);
  const std::string inner = RandomBytes(rng, 3000) + "ssn 536-90-4399 card 4111 1111 1111 1111" +
                            RandomBytes(rng, 2000) + "anna.meier@corp-mail.ch" + RandomBytes(rng, 1000);
  const std::string body = "x=" + Wrap(Base64(inner));
  // Layer ids follow the order layers first emit, which chunking may change (it did
  // before the filter): compare the layers' bytes and spans, whatever their ids.
  auto layers = [](const Recorder& r) {
    std::vector<std::pair<std::string, std::vector<Span>>> out;
    for (const auto& [id, text] : r.layers) out.emplace_back(text, r.byte_spans.at(id));
    std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
    return out;
  };
  const Recorder whole = Normalize(body, {}, 0, Filtered());
  for (size_t chunk : {1, 7, 64, 1000}) {
    const Recorder r = Normalize(body, {}, chunk, Filtered());
    EXPECT_TRUE(layers(r) == layers(whole)) << chunk;
  }
  EXPECT_TRUE(whole.Has("anna.meier@corp-mail.ch"));
}

}  // namespace
}  // namespace egressguard::dlp::decode::testing
