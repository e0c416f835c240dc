// Every decoder fed at every chunk split of its samples yields the same decoded bytes and spans as when fed one buffer.
#include <gtest/gtest.h>

#include <algorithm>

#include "decode_test_util.h"

namespace egressguard::dlp::decode::testing {
namespace {

struct Sample {
  const char* name;
  std::string body;
  ContentHintLite hint;
  bool exact_spans = true;  // decompressed spans end where the input seen so far ends
};

std::vector<Sample> Samples() {
  const std::string b64 = Base64("secret 4111 1111 1111 1111 and more text here");
  std::string wrapped;
  const std::string long_b64 = Base64(std::string(200, 'k') + "IBAN CH9300762011623852957");
  for (size_t i = 0; i < long_b64.size(); i += 64) wrapped += long_b64.substr(i, 64) + "\r\n";
  return {
      {"percent", "/p?q=john%40example.com&n=Jane+Doe%20X&bad=%zz%4", H("", "", true)},
      {"json", R"({"e":"a\u0040b.c","pem":"-----BEGIN-----\nAAA\n","emoji":"\ud83d\ude00","x":"\u12")", {}},
      {"base64", "data " + b64 + "= and " + Base64("url-safe \xfb\xff run!!", true, false) + " end", {}},
      {"wrapped", "body:\r\n" + wrapped + "\r\n--\r\n", {}},
      // A run that starts just before a 64-byte block: a chunk cut inside its first 16
      // characters leaves a candidate split across the block and the tail after it.
      {"straddle", std::string(60, '.') + b64 + " end", {}},
      {"multipart",
       "--bb\r\nContent-Transfer-Encoding: base64\r\n\r\n" + b64 +
           "\r\n--bb\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nk=3Dv=\r\nw\r\n--bb\r\n"
           "Content-Type: application/json\r\n\r\n{\"a\":\"x\\u0040y\"}\r\n--bb--\r\n",
       H("multipart/form-data; boundary=bb")},
      {"multipart-preamble",
       std::string(100, 'p') + "junk--bb\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nnot=3Da part\r\n"
       "--bb\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nk=3Dv\r\n--bb--\r\n",
       H("multipart/mixed; boundary=bb")},
      {"gzip", Gzip("compressed {\"k\":\"v\\u0040w\"} " + b64), H("", "gzip"), false},
      {"br", Brotli("brotli body " + b64), H("", "br"), false},
      {"zstd", Zstd("zstd body " + b64), {}, false},
      {"truncated-gzip", Gzip(std::string(500, 'a') + b64).substr(0, 40), {}, false},
  };
}

struct Outcome {
  std::vector<std::pair<std::string, std::vector<Span>>> layers;  // sorted: ids may differ
  std::vector<std::string> undecodable;
};

Outcome RunSample(const Sample& s, const std::vector<std::string_view>& chunks) {
  Recorder rec;
  Normalizer n(s.hint, {}, rec);
  for (auto c : chunks) n.Feed(c);
  n.Finish();
  Outcome o;
  for (const auto& [id, text] : rec.layers) {
    o.layers.emplace_back(text, s.exact_spans ? rec.byte_spans[id] : std::vector<Span>{});
  }
  std::sort(o.layers.begin(), o.layers.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  for (const auto& u : rec.undecodable) o.undecodable.push_back(u.why);
  return o;
}

void ExpectSame(const Outcome& want, const Outcome& got, const std::string& what) {
  ASSERT_EQ(want.layers.size(), got.layers.size()) << what;
  for (size_t i = 0; i < want.layers.size(); ++i) {
    ASSERT_EQ(want.layers[i].first, got.layers[i].first) << what;
    ASSERT_TRUE(want.layers[i].second == got.layers[i].second) << what << " spans differ in layer " << i;
  }
  ASSERT_EQ(want.undecodable, got.undecodable) << what;
}

TEST(Chunking, EverySplitPointMatchesOneBuffer) {
  for (const Sample& s : Samples()) {
    const std::string_view body = s.body;
    const Outcome whole = RunSample(s, {body});
    ASSERT_FALSE(whole.layers.empty()) << s.name;
    for (size_t cut = 0; cut <= body.size(); ++cut) {
      ExpectSame(whole, RunSample(s, {body.substr(0, cut), body.substr(cut)}), std::string(s.name) + " cut " + std::to_string(cut));
    }
  }
}

TEST(Chunking, ByteByByteAndOddSizesMatchOneBuffer) {
  for (const Sample& s : Samples()) {
    const std::string_view body = s.body;
    const Outcome whole = RunSample(s, {body});
    for (size_t size : {1, 2, 3, 5, 7, 13, 64}) {
      std::vector<std::string_view> chunks;
      for (size_t at = 0; at < body.size(); at += size) {
        chunks.push_back(body.substr(at, size));
        chunks.push_back("");  // empty feeds are harmless
      }
      ExpectSame(whole, RunSample(s, chunks), std::string(s.name) + " size " + std::to_string(size));
    }
  }
}

}  // namespace
}  // namespace egressguard::dlp::decode::testing
