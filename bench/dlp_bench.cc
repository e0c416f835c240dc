// DLP engine throughput, in one run and on one core: the engine with the whole default
// pack (validators, context, counting) against one straightforward Hyperscan streaming
// database of the same patterns, RE2::Set and std::regex, over a generated corpus of
// realistic bodies (JSON, forms, logs, CSV, HTML) with sparse PII, where one body in six
// is an e-mail carrying a base64 attachment (8-256 KiB of zip, PDF-like or random binary
// payload, line-wrapped at 76 like MIME). A second table scans base64 of random bytes
// alone (the shape of a large binary upload) with the engine, decoders on and off, and
// the plain Hyperscan database.
//
//   dlp_bench [--mib N] [--pack DIR] [--chunk BYTES] [--only engine,decode,raw,floor,b64,re2,std,small] [--repeat N]
//             [--small N] [--attachments 0|1] [--b64-mib N] [--max-finding-spans N]
//
// --only runs a subset (e.g. one scanner under callgrind); ratios need "raw" in the set.
// "b64" is the base64-of-random-bytes table (--b64-mib, default 64, in 8 MiB messages).
// --attachments 0 generates the corpus without attachments (the corpus of issue 16).
// "floor" is what any correct scanner of the mixed corpus must do at least: inflate the
// zips' CSV members and scan the messages and the inflated text (engine without
// decoders; plain database), the base64 decoding and zip parsing left out. Not in the
// default set.
// --max-finding-spans sets EngineOptions.max_finding_spans (default: the engine's, 16);
// 0 collects no Finding.spans, the cost before issue 21, for a same-build comparison.
// "small" is the per-message fixed cost: N (default 100000) URL + header-block pairs
// opened, fed and finished on one Scanner (callgrind: --toggle-collect='*ScanSmall*').
// --repeat scans the corpus N times in the engine rows, so a sampling profiler sees the
// scan rather than the corpus generation.
#include <hs/hs.h>
#include <re2/re2.h>
#include <re2/set.h>
#include <zlib.h>

#include <time.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <regex>
#include <string>
#include <vector>

#include "dlp/engine.h"
#include "dlp/validators.h"
#include "rules/pack_loader.h"

namespace {

// Thread CPU time: on a shared, loaded machine wall-clock time measures the neighbours;
// CPU time of this one thread is the single-core cost.
struct Clock {
  using time_point = double;
  static double now() {
    timespec ts{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
  }
};
using egressguard::dlp::Engine;
using egressguard::dlp::EngineOptions;
using egressguard::dlp::EnginePtr;
using egressguard::dlp::Scanner;

double Seconds(double a, double b) { return b - a; }

// Deterministic generator (xorshift64*), so every run scans the same bytes.
class Rng {
 public:
  uint64_t Next() {
    s_ ^= s_ >> 12;
    s_ ^= s_ << 25;
    s_ ^= s_ >> 27;
    return s_ * 2685821657736338717ull;
  }
  uint64_t Below(uint64_t n) { return Next() % n; }
  bool OneIn(uint64_t n) { return Below(n) == 0; }

 private:
  uint64_t s_ = 0x9e3779b97f4a7c15ull;
};

const char* const kWords[] = {
    "order", "customer", "shipping", "invoice", "account", "status", "payment", "delivery", "product", "service",
    "update", "request", "response", "session", "cart", "checkout", "the", "and", "with", "for", "from", "this",
    "that", "will", "please", "thanks", "meeting", "report", "quarterly", "budget", "review", "team", "project",
    "Zürich", "Genève", "Bern", "Basel", "Lausanne", "Müller", "Meier", "Schmid", "Keller", "Weber", "Huber",
    "Anna", "Luca", "Noah", "Mia", "Elena", "Marco", "available", "pending", "shipped", "returned", "cancelled",
    "lorem", "ipsum", "dolor", "sit", "amet", "consectetur", "adipiscing", "elit", "sed", "eiusmod", "tempor"};
constexpr size_t kWordCount = sizeof(kWords) / sizeof(kWords[0]);

std::string Words(Rng& r, int n) {
  std::string s;
  for (int i = 0; i < n; ++i) {
    if (i) s += ' ';
    s += kWords[r.Below(kWordCount)];
  }
  return s;
}

std::string Digits(Rng& r, int n) {
  std::string s;
  for (int i = 0; i < n; ++i) s.push_back(static_cast<char>('0' + r.Below(10)));
  return s;
}

std::string Hex(Rng& r, int n) {
  static const char kHex[] = "0123456789abcdef";
  std::string s;
  for (int i = 0; i < n; ++i) s.push_back(kHex[r.Below(16)]);
  return s;
}

std::string Uuid(Rng& r) { return Hex(r, 8) + "-" + Hex(r, 4) + "-4" + Hex(r, 3) + "-a" + Hex(r, 3) + "-" + Hex(r, 12); }

std::string Timestamp(Rng& r) {
  char b[64];
  std::snprintf(b, sizeof b, "2026-%02d-%02dT%02d:%02d:%02d.%03dZ", static_cast<int>(1 + r.Below(12)),
                static_cast<int>(1 + r.Below(28)), static_cast<int>(r.Below(24)), static_cast<int>(r.Below(60)),
                static_cast<int>(r.Below(60)), static_cast<int>(r.Below(1000)));
  return b;
}

std::string Price(Rng& r) { return std::to_string(1 + r.Below(5000)) + "." + Digits(r, 2); }

// One valid-looking PII value (most validate; the engine must check all of them).
std::string Pii(Rng& r) {
  switch (r.Below(7)) {
    case 0: return "4111 1111 1111 1111";
    case 1: return "CH93 0076 2011 6238 5295 7";
    case 2: return kWords[r.Below(kWordCount)] + std::string(".") + kWords[r.Below(kWordCount)] + "@corp-mail.ch";
    case 3: return "+41 44 668 18 00";
    case 4: return "756.9217.0769.85";
    case 5: return "536-90-4399";
    default: return "AKIA2E3X7PQRS4TUVWXY";
  }
}

std::string JsonBody(Rng& r) {
  std::string s = "{\"id\":" + Digits(r, 7) + ",\"uuid\":\"" + Uuid(r) + "\",\"created_at\":\"" + Timestamp(r) +
                  "\",\"customer\":{\"name\":\"" + Words(r, 2) + "\",\"city\":\"" + kWords[33 + r.Below(6)] +
                  "\",\"country\":\"CH\",\"customer_no\":\"C-" + Digits(r, 8) + "\"},\"items\":[";
  int n = 1 + static_cast<int>(r.Below(40));
  for (int i = 0; i < n; ++i) {
    if (i) s += ",";
    s += "{\"sku\":\"SKU-" + Digits(r, 6) + "\",\"qty\":" + std::to_string(1 + r.Below(9)) + ",\"price\":" + Price(r) +
         ",\"title\":\"" + Words(r, 4) + "\",\"updated\":\"" + Timestamp(r) + "\"}";
  }
  s += "],\"status\":\"" + std::string(kWords[50 + r.Below(5)]) + "\",\"note\":\"" + Words(r, 12) + "\"}";
  return s;
}

std::string FormBody(Rng& r) {
  return "grant_type=password&username=" + std::string(kWords[r.Below(kWordCount)]) + "&client_id=web-" +
         Hex(r, 8) + "&redirect_uri=https%3A%2F%2Fapp.corp.ch%2Fcallback%3Fsession%3D" + Hex(r, 16) +
         "&state=" + Hex(r, 24) + "&amount=" + Price(r) + "&comment=" + Words(r, 6) + "&ts=" + Digits(r, 10);
}

std::string LogBody(Rng& r) {
  std::string s;
  int n = 5 + static_cast<int>(r.Below(120));
  static const char* const kLevels[] = {"INFO", "DEBUG", "WARN", "ERROR"};
  for (int i = 0; i < n; ++i) {
    s += Timestamp(r) + " " + kLevels[r.Below(4)] + " [worker-" + std::to_string(r.Below(16)) + "] GET /api/v2/" +
         kWords[r.Below(10)] + "/" + Digits(r, 6) + " " + std::to_string(200 + r.Below(5) * 100) + " " +
         std::to_string(r.Below(900)) + "ms ip=10." + std::to_string(r.Below(255)) + "." +
         std::to_string(r.Below(255)) + "." + std::to_string(r.Below(255)) + " trace=" + Hex(r, 32) + " msg=\"" +
         Words(r, 5) + "\"\n";
  }
  return s;
}

std::string CsvBody(Rng& r) {
  std::string s = "id,date,amount,currency,sku,qty,warehouse\n";
  int n = 10 + static_cast<int>(r.Below(300));
  for (int i = 0; i < n; ++i) {
    s += Digits(r, 6) + ",2026-" + std::to_string(10 + r.Below(3)) + "-" + std::to_string(10 + r.Below(18)) + "," +
         Price(r) + ",CHF,SKU-" + Digits(r, 6) + "," + std::to_string(r.Below(50)) + "," + kWords[33 + r.Below(6)] +
         "\n";
  }
  return s;
}

std::string HtmlBody(Rng& r) {
  std::string s = "<!DOCTYPE html><html><head><title>" + Words(r, 4) +
                  "</title><link rel=\"stylesheet\" href=\"/static/app." + Hex(r, 8) + ".css\"></head><body>\n";
  int n = 3 + static_cast<int>(r.Below(40));
  for (int i = 0; i < n; ++i) {
    s += "  <div class=\"product-card\" data-id=\"" + Digits(r, 6) + "\">\n    <h2>" + Words(r, 3) +
         "</h2>\n    <p class=\"price\">CHF " + Price(r) + "</p>\n    <p>" + Words(r, 20) + "</p>\n    <a href=\"/p/" +
         Digits(r, 6) + "?ref=" + Hex(r, 8) + "\">" + Words(r, 2) + "</a>\n  </div>\n";
  }
  return s + "</body></html>\n";
}

// --- Attachments -------------------------------------------------------------------

void Put16(std::string& s, uint32_t v) {
  s.push_back(static_cast<char>(v & 0xff));
  s.push_back(static_cast<char>((v >> 8) & 0xff));
}
void Put32(std::string& s, uint32_t v) {
  Put16(s, v & 0xffff);
  Put16(s, v >> 16);
}

std::string RawDeflate(const std::string& in) {
  z_stream z{};
  deflateInit2(&z, 6, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY);
  std::string out(deflateBound(&z, static_cast<uLong>(in.size())), '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  z.avail_in = static_cast<uInt>(in.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  deflate(&z, Z_FINISH);
  out.resize(z.total_out);
  deflateEnd(&z);
  return out;
}

// A real zip (PKZIP 2.0: local headers, central directory, end record): a deflated CSV
// export and a stored README, what a user attaches.
std::string Zip(const std::vector<std::pair<std::string, std::string>>& files, const std::vector<bool>& deflated) {
  std::string out, central;
  for (size_t i = 0; i < files.size(); ++i) {
    const auto& [name, data] = files[i];
    const std::string body = deflated[i] ? RawDeflate(data) : data;
    const uint32_t crc = static_cast<uint32_t>(crc32(0, reinterpret_cast<const Bytef*>(data.data()),
                                                     static_cast<uInt>(data.size())));
    const uint32_t offset = static_cast<uint32_t>(out.size());
    const uint16_t method = deflated[i] ? 8 : 0;
    Put32(out, 0x04034b50);
    Put16(out, 20), Put16(out, 0), Put16(out, method), Put16(out, 0x6000), Put16(out, 0x5b21);
    Put32(out, crc), Put32(out, static_cast<uint32_t>(body.size())), Put32(out, static_cast<uint32_t>(data.size()));
    Put16(out, static_cast<uint32_t>(name.size())), Put16(out, 0);
    out += name;
    out += body;
    Put32(central, 0x02014b50);
    Put16(central, 20), Put16(central, 20), Put16(central, 0), Put16(central, method), Put16(central, 0x6000);
    Put16(central, 0x5b21);
    Put32(central, crc), Put32(central, static_cast<uint32_t>(body.size()));
    Put32(central, static_cast<uint32_t>(data.size()));
    Put16(central, static_cast<uint32_t>(name.size())), Put16(central, 0), Put16(central, 0), Put16(central, 0);
    Put16(central, 0), Put32(central, 0), Put32(central, offset);
    central += name;
  }
  const uint32_t cd_offset = static_cast<uint32_t>(out.size());
  out += central;
  Put32(out, 0x06054b50);
  Put16(out, 0), Put16(out, 0), Put16(out, static_cast<uint32_t>(files.size()));
  Put16(out, static_cast<uint32_t>(files.size()));
  Put32(out, static_cast<uint32_t>(central.size())), Put32(out, cd_offset), Put16(out, 0);
  return out;
}

std::string RandomBytes(Rng& r, size_t n) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; i += 8) {
    const uint64_t v = r.Next();
    std::memcpy(s.data() + i, &v, std::min<size_t>(8, n - i));
  }
  return s;
}

// A PDF-like file: text objects and a cross-reference table around a deflated content
// stream and an embedded font program (random bytes), as exported reports look.
std::string PdfLike(Rng& r, size_t target) {
  std::string s = "%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\n"
                  "2 0 obj\n<< /Type /Pages /Kids [3 0 R] /Count 1 >>\nendobj\n"
                  "3 0 obj\n<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R "
                  "/Resources << /Font << /F1 5 0 R >> >> >>\nendobj\n";
  std::string text;
  while (text.size() < target * 2) {
    text += "BT /F1 10 Tf 72 " + std::to_string(r.Below(800)) + " Td (" + Words(r, 8) + ") Tj ET\n";
  }
  const std::string content = RawDeflate(text);
  s += "4 0 obj\n<< /Length " + std::to_string(content.size()) + " /Filter /FlateDecode >>\nstream\n" + content +
       "\nendstream\nendobj\n";
  const size_t font = target > s.size() + 256 ? target - s.size() - 256 : 64;
  s += "5 0 obj\n<< /Type /FontFile2 /Length " + std::to_string(font) + " >>\nstream\n" + RandomBytes(r, font) +
       "\nendstream\nendobj\nxref\n0 6\n0000000000 65535 f \ntrailer\n<< /Size 6 /Root 1 0 R >>\nstartxref\n" +
       std::to_string(s.size()) + "\n%%EOF\n";
  return s;
}

// MIME base64: 76 characters a line, CRLF.
std::string Base64Wrapped(std::string_view in) {
  static const char kAlpha[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve(in.size() / 57 * 78 + 80);
  size_t line = 0;
  for (size_t i = 0; i < in.size(); i += 3) {
    const size_t n = std::min<size_t>(3, in.size() - i);
    uint32_t v = static_cast<uint32_t>(static_cast<uint8_t>(in[i])) << 16;
    if (n > 1) v |= static_cast<uint32_t>(static_cast<uint8_t>(in[i + 1])) << 8;
    if (n > 2) v |= static_cast<uint8_t>(in[i + 2]);
    out.push_back(kAlpha[(v >> 18) & 63]);
    out.push_back(kAlpha[(v >> 12) & 63]);
    out.push_back(n > 1 ? kAlpha[(v >> 6) & 63] : '=');
    out.push_back(n > 2 ? kAlpha[v & 63] : '=');
    if ((line += 4) == 76) {
      out += "\r\n";
      line = 0;
    }
  }
  if (line != 0) out += "\r\n";
  return out;
}

// Payloads built once: a handful of zips and PDF-like files of 8-256 KiB; random
// payloads are drawn per attachment.
struct Payloads {
  std::vector<std::string> zips, pdfs;
  std::vector<std::string> zip_members;  // per zip: its deflated CSV member (the floor row)
};

Payloads BuildPayloads() {
  Rng r;
  for (int i = 0; i < 7; ++i) r.Next();  // another stream than the corpus's
  Payloads p;
  for (size_t kib : {8, 24, 64, 128, 256}) {
    std::string csv;
    while (csv.size() < kib * 1024 * 5) csv += CsvBody(r);  // deflates ~5:1
    csv.insert(csv.size() / 2, "4111 1111 1111 1111,2026-11-30,19.90,CHF\n");
    std::string readme = "Export of " + Words(r, 6) + "\n" + Words(r, 200) + "\n";
    p.zips.push_back(Zip({{"export/orders.csv", csv}, {"README.txt", readme}}, {true, false}));
    p.zip_members.push_back(RawDeflate(csv));
    p.pdfs.push_back(PdfLike(r, kib * 1024));
  }
  return p;
}

// An e-mail with one attachment (an .eml upload, a webmail send): the finder, not a
// multipart parser, meets the base64 (the body does not start with a boundary).
std::string AttachmentBody(Rng& r, const Payloads& p, int* zip) {
  std::string payload, type, name;
  switch (r.Below(3)) {
    case 0:
      *zip = static_cast<int>(r.Below(p.zips.size()));
      payload = p.zips[static_cast<size_t>(*zip)];
      type = "application/zip", name = "export.zip";
      break;
    case 1:
      payload = p.pdfs[r.Below(p.pdfs.size())];
      type = "application/pdf", name = "report.pdf";
      break;
    default: {
      // Log-uniform 8-256 KiB of incompressible bytes behind a JPEG header.
      const size_t n = static_cast<size_t>(8192.0 * std::pow(32.0, static_cast<double>(r.Below(1000)) / 1000.0));
      payload = "\xff\xd8\xff\xe0" + RandomBytes(r, n);
      type = "image/jpeg", name = "scan.jpg";
    }
  }
  const std::string boundary = "b1_" + Hex(r, 24);
  std::string s = "From: " + std::string(kWords[44 + r.Below(6)]) + "@corp-mail.ch\r\nTo: partner@example.org\r\n" +
                  "Subject: " + Words(r, 5) + "\r\nDate: " + Timestamp(r) +
                  "\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"" + boundary + "\"\r\n\r\n--" +
                  boundary + "\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n" + Words(r, 40) + "\r\n\r\n--" +
                  boundary + "\r\nContent-Type: " + type + "; name=\"" + name +
                  "\"\r\nContent-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=\"" + name +
                  "\"\r\n\r\n";
  s += Base64Wrapped(payload);
  s += "\r\n--" + boundary + "--\r\n";
  return s;
}

// zip_of: per message, the index in `payloads->zips` of its zip attachment, or -1.
std::vector<std::string> Corpus(size_t target_bytes, bool attachments, size_t* total, Payloads* payloads,
                                std::vector<int>* zip_of) {
  Rng r;
  *payloads = attachments ? BuildPayloads() : Payloads{};
  std::vector<std::string> msgs;
  *total = 0;
  while (*total < target_bytes) {
    std::string m;
    if (attachments && r.OneIn(6)) {
      int zip = -1;
      m = AttachmentBody(r, *payloads, &zip);
      *total += m.size();
      msgs.push_back(std::move(m));
      zip_of->push_back(zip);
      continue;
    }
    zip_of->push_back(-1);
    switch (r.Below(5)) {
      case 0: m = JsonBody(r); break;
      case 1: m = FormBody(r); break;
      case 2: m = LogBody(r); break;
      case 3: m = CsvBody(r); break;
      default: m = HtmlBody(r); break;
    }
    if (r.OneIn(20)) {  // sparse PII: one message in twenty carries a value
      size_t at = r.Below(m.size());
      while (at < m.size() && m[at] != ' ' && m[at] != ',' && m[at] != '\n') ++at;
      m.insert(at, " " + Pii(r) + " ");
    }
    *total += m.size();
    msgs.push_back(std::move(m));
  }
  return msgs;
}

struct Row {
  std::string name;
  uint64_t bytes;
  double secs;
};

// A named, out-of-line function so a profiler can collect just this
// (valgrind --tool=callgrind --collect-atstart=no --toggle-collect='*ScanAll*').
[[gnu::noinline]] uint64_t ScanAll(const EnginePtr& e, const std::vector<std::string>& msgs, size_t chunk,
                                   uint64_t* findings) {
  Scanner scanner;
  uint64_t bytes = 0;
  *findings = 0;
  for (const auto& m : msgs) {
    auto scan = scanner.Open(e, {});
    for (size_t at = 0; at < m.size(); at += chunk) scan->Feed(std::string_view(m).substr(at, chunk));
    *findings += scan->Finish().findings.size();
    bytes += m.size();
  }
  return bytes;
}

// The per-message fixed cost the proxy pays twice on every keep-alive request: open,
// feed and finish a percent-decoded request target and a header block (no body).
const char kSmallUrl[] =
    "/api/v2/orders/4471093/items?session=9f2c1e7ab04d5c63&ref=web-checkout&lang=de-CH&page=2&sort=desc";
const char kSmallHeaders[] =
    "Host: shop.corp-mail.ch\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 "
    "Firefox/128.0\r\nAccept: application/json, text/plain, */*\r\nAccept-Language: de-CH,de;q=0.8,en;q=0.5\r\n"
    "Accept-Encoding: gzip, deflate, br, zstd\r\nReferer: https://shop.corp-mail.ch/checkout\r\n"
    "Cookie: sid=4be1c0d2a9f7e3c5b6d8a1f0e2c4b6d8\r\nConnection: keep-alive\r\n";

// Scans `iterations` URL + header-block pairs with one Scanner, as a proxy worker does.
[[gnu::noinline]] uint64_t ScanSmall(Scanner& scanner, const EnginePtr& e, size_t iterations, uint64_t* findings) {
  egressguard::dlp::ContentHint url_hint;
  url_hint.is_url = true;
  const egressguard::dlp::ContentHint header_hint;
  uint64_t messages = 0;
  for (size_t i = 0; i < iterations; ++i) {
    auto url = scanner.Open(e, url_hint);
    url->Feed(kSmallUrl);
    *findings += url->Finish().findings.size();
    auto headers = scanner.Open(e, header_hint);
    headers->Feed(kSmallHeaders);
    *findings += headers->Finish().findings.size();
    messages += 2;
  }
  return messages;
}

void PrintRow(const Row& row, double baseline_gbps) {
  double gbps = row.bytes / row.secs / 1e9;
  std::printf("%-58s %10.1f MiB %8.3f s %8.3f GB/s %7.2fx\n", row.name.c_str(), row.bytes / 1048576.0, row.secs, gbps,
              baseline_gbps > 0 ? gbps / baseline_gbps : 0.0);
}

}  // namespace

int main(int argc, char** argv) {
  size_t mib = 256;
  size_t chunk = 64 << 10;
  std::string pack_dir = EGRESSGUARD_DEFAULT_PACK_DIR;
  std::string only = "engine,decode,raw,b64,re2,std,small";
  size_t small_iterations = 100000;
  size_t repeat = 1;
  bool attachments = true;
  size_t b64_mib = 64;
  long max_finding_spans = -1;  // the engine's default
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--only")) only = argv[i + 1];
    if (!std::strcmp(argv[i], "--mib")) mib = std::strtoul(argv[i + 1], nullptr, 10);
    if (!std::strcmp(argv[i], "--pack")) pack_dir = argv[i + 1];
    if (!std::strcmp(argv[i], "--chunk")) chunk = std::strtoul(argv[i + 1], nullptr, 10);
    if (!std::strcmp(argv[i], "--small")) small_iterations = std::strtoul(argv[i + 1], nullptr, 10);
    if (!std::strcmp(argv[i], "--repeat")) repeat = std::max<size_t>(1, std::strtoul(argv[i + 1], nullptr, 10));
    if (!std::strcmp(argv[i], "--attachments")) attachments = std::strcmp(argv[i + 1], "0") != 0;
    if (!std::strcmp(argv[i], "--b64-mib")) b64_mib = std::strtoul(argv[i + 1], nullptr, 10);
    if (!std::strcmp(argv[i], "--max-finding-spans")) max_finding_spans = std::strtol(argv[i + 1], nullptr, 10);
  }
  egressguard::rules::LoadOptions load;
  load.known_validator = [](std::string_view n) { return egressguard::dlp::FindValidator(n) != nullptr; };
  auto pack = egressguard::rules::LoadPackAny(pack_dir, load);
  if (!pack.ok()) {
    std::fprintf(stderr, "pack: %s\n", std::string(pack.status().message()).c_str());
    return 2;
  }

  auto want = [&](std::string_view name) {
    std::string_view rest = only;
    while (!rest.empty()) {
      size_t comma = rest.find(',');
      if (rest.substr(0, comma) == name) return true;
      rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
    }
    return false;
  };

  size_t total = 0;
  auto t0 = Clock::now();
  Payloads payloads;
  std::vector<int> zip_of;
  std::vector<std::string> corpus = Corpus(mib << 20, attachments, &total, &payloads, &zip_of);
  std::printf("corpus: %zu messages, %.1f MiB, generated in %.1f s; feed chunk %zu bytes\n", corpus.size(),
              total / 1048576.0, Seconds(t0, Clock::now()), chunk);
  if (attachments) {
    size_t n = 0, bytes = 0;
    for (const auto& m : corpus) {
      if (m.rfind("From: ", 0) == 0) ++n, bytes += m.size();
    }
    std::printf("attachments: %zu e-mails with a base64 attachment, %.1f MiB (%.0f%% of the bytes)\n", n,
                bytes / 1048576.0, 100.0 * static_cast<double>(bytes) / static_cast<double>(total));
  }
  {
    // Message sizes decide how much per-message setup weighs against per-byte work.
    std::vector<size_t> sizes;
    for (const auto& m : corpus) sizes.push_back(m.size());
    std::sort(sizes.begin(), sizes.end());
    auto pct = [&](double p) { return sizes[std::min(sizes.size() - 1, static_cast<size_t>(p * sizes.size()))]; };
    std::printf("message bytes: min %zu, p10 %zu, median %zu, mean %zu, p90 %zu, max %zu\n", sizes.front(), pct(0.1),
                pct(0.5), total / sizes.size(), pct(0.9), sizes.back());
  }

  // Compile time (best of 3) and stream state.
  EngineOptions options;
  options.fingerprint_key = "bench";
  options.decode = false;
  if (max_finding_spans >= 0) options.max_finding_spans = static_cast<uint32_t>(max_finding_spans);
  std::printf("max_finding_spans: %u\n", options.max_finding_spans);
  double best_compile = 1e9;
  EnginePtr engine;
  const int compiles = want("raw") ? 3 : 1;  // a subset run is a profile: compile once
  for (int i = 0; i < compiles; ++i) {
    auto c0 = Clock::now();
    auto e = Engine::Compile(*pack, options);
    best_compile = std::min(best_compile, Seconds(c0, Clock::now()));
    if (!e.ok()) {
      std::fprintf(stderr, "compile: %s\n", std::string(e.status().message()).c_str());
      return 2;
    }
    engine = *e;
  }
  EngineOptions decode_options = options;
  decode_options.decode = true;
  EnginePtr decode_engine =
      want("decode") || want("small") || want("b64") ? *Engine::Compile(*pack, decode_options) : nullptr;

  // The patterns, for the peers.
  std::vector<std::string> patterns;
  std::vector<unsigned> flags;
  for (const auto& rule : pack->rules()) {
    if (!rule.enabled() || rule.category() == "bulk_pii") continue;
    for (const auto& p : rule.patterns()) {
      patterns.push_back(p);
      flags.push_back(rule.case_insensitive() ? HS_FLAG_CASELESS : 0u);
    }
  }

  auto run_engine = [&](const EnginePtr& e, const std::vector<std::string>& msgs, uint64_t* findings) {
    auto s0 = Clock::now();
    uint64_t bytes = 0;
    for (size_t r = 0; r < repeat; ++r) bytes += ScanAll(e, msgs, chunk, findings);
    return Row{"", bytes, Seconds(s0, Clock::now())};
  };

  std::vector<Row> rows;
  double base = 0;
  uint64_t findings = 0, dec_findings = 0, raw_matches = 0, re2_hits = 0, std_hits = 0;
  double raw_compile = 0;
  size_t raw_state = 0;

  if (want("engine")) {
    Row eng = run_engine(engine, corpus, &findings);
    eng.name = "egressguard engine, default pack + validators (raw bytes)";
    rows.push_back(eng);
  }
  if (want("decode")) {
    Row dec = run_engine(decode_engine, corpus, &dec_findings);
    dec.name = "egressguard engine, same + content decoders";
    rows.push_back(dec);
  }

  // One straightforward streaming database of the same patterns, no validators: what a
  // first attempt looks like (a stream opened per message, no SOM, no prefilter).
  hs_database_t* raw_db = nullptr;
  hs_scratch_t* raw_scratch = nullptr;
  if (want("raw") || want("b64") || want("floor")) {
    std::vector<const char*> cpats;
    std::vector<unsigned> ids;
    for (size_t i = 0; i < patterns.size(); ++i) {
      cpats.push_back(patterns[i].c_str());
      ids.push_back(static_cast<unsigned>(i));
    }
    hs_compile_error_t* err = nullptr;
    auto h0 = Clock::now();
    if (hs_compile_multi(cpats.data(), flags.data(), ids.data(), static_cast<unsigned>(cpats.size()),
                         HS_MODE_STREAM, nullptr, &raw_db, &err) != HS_SUCCESS) {
      std::fprintf(stderr, "hs: %s\n", err->message);
      return 2;
    }
    raw_compile = Seconds(h0, Clock::now());
    hs_stream_size(raw_db, &raw_state);
    hs_alloc_scratch(raw_db, &raw_scratch);
  }
  auto run_raw = [&](const std::vector<std::string>& msgs, uint64_t* matches) {
    auto count = [](unsigned, unsigned long long, unsigned long long, unsigned, void* ctx) -> int {
      ++*static_cast<uint64_t*>(ctx);
      return 0;
    };
    uint64_t bytes = 0;
    auto r0 = Clock::now();
    for (const auto& m : msgs) {
      hs_stream_t* st = nullptr;
      hs_open_stream(raw_db, 0, &st);
      for (size_t at = 0; at < m.size(); at += chunk) {
        size_t n = std::min(chunk, m.size() - at);
        hs_scan_stream(st, m.data() + at, static_cast<unsigned>(n), 0, raw_scratch, count, matches);
      }
      hs_close_stream(st, raw_scratch, count, matches);
      bytes += m.size();
    }
    return Row{"raw Hyperscan, one streaming db, same patterns, no validators", bytes, Seconds(r0, Clock::now())};
  };
  if (want("raw")) {
    Row raw = run_raw(corpus, &raw_matches);
    base = raw.bytes / raw.secs / 1e9;
    rows.push_back(raw);
  }

  // The floor on the mixed corpus: what any scanner that finds the CSV rows inside the
  // zips must do at least, leaving out the base64 decoding and the zip parsing: inflate
  // each message's zip member (zlib), and scan the message's own bytes and the inflated
  // text, with the engine without decoders (its cheapest correct scan) or with the plain
  // streaming database. Throughput is over the corpus's bytes, like the other rows.
  uint64_t floor_findings = 0, floor_matches = 0, inflated_total = 0;
  if (want("floor") && attachments) {
    std::string inflated;
    auto inflate_member = [&](int zip) {
      const std::string& in = payloads.zip_members[static_cast<size_t>(zip)];
      z_stream z{};
      inflateInit2(&z, -15);
      inflated.resize(std::max<size_t>(inflated.size(), 64 << 10));
      size_t out = 0;
      z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
      z.avail_in = static_cast<uInt>(in.size());
      int rc = Z_OK;
      while (rc == Z_OK) {
        if (out == inflated.size()) inflated.resize(2 * inflated.size());
        z.next_out = reinterpret_cast<Bytef*>(inflated.data() + out);
        z.avail_out = static_cast<uInt>(inflated.size() - out);
        rc = inflate(&z, Z_NO_FLUSH);
        out = inflated.size() - z.avail_out;
      }
      inflateEnd(&z);
      return std::string_view(inflated.data(), out);
    };
    // Inflating alone.
    {
      auto f0 = Clock::now();
      for (int zip : zip_of) {
        if (zip >= 0) inflated_total += inflate_member(zip).size();
      }
      rows.push_back(Row{"floor: inflate the zip members only (zlib)", total, Seconds(f0, Clock::now())});
    }
    // Inflating plus the engine without decoders over message and inflated text.
    {
      Scanner scanner;
      auto f0 = Clock::now();
      for (size_t i = 0; i < corpus.size(); ++i) {
        for (std::string_view text : {std::string_view(corpus[i]),
                                      zip_of[i] >= 0 ? inflate_member(zip_of[i]) : std::string_view()}) {
          if (text.empty()) continue;
          auto scan = scanner.Open(engine, {});
          for (size_t at = 0; at < text.size(); at += chunk) scan->Feed(text.substr(at, chunk));
          floor_findings += scan->Finish().findings.size();
        }
      }
      rows.push_back(Row{"floor: inflate + engine (no decoders) on both texts", total, Seconds(f0, Clock::now())});
    }
    // Inflating plus the plain streaming database over message and inflated text.
    if (raw_db != nullptr) {
      auto count = [](unsigned, unsigned long long, unsigned long long, unsigned, void* ctx) -> int {
        ++*static_cast<uint64_t*>(ctx);
        return 0;
      };
      auto f0 = Clock::now();
      for (size_t i = 0; i < corpus.size(); ++i) {
        for (std::string_view text : {std::string_view(corpus[i]),
                                      zip_of[i] >= 0 ? inflate_member(zip_of[i]) : std::string_view()}) {
          if (text.empty()) continue;
          hs_stream_t* st = nullptr;
          hs_open_stream(raw_db, 0, &st);
          for (size_t at = 0; at < text.size(); at += chunk) {
            const size_t n = std::min(chunk, text.size() - at);
            hs_scan_stream(st, text.data() + at, static_cast<unsigned>(n), 0, raw_scratch, count, &floor_matches);
          }
          hs_close_stream(st, raw_scratch, count, &floor_matches);
        }
      }
      rows.push_back(Row{"floor: inflate + plain Hyperscan db on both texts", total, Seconds(f0, Clock::now())});
    }
  }

  // Slices for the slow peers.
  auto slice = [&](size_t bytes) {
    std::vector<std::string> s;
    size_t n = 0;
    for (const auto& m : corpus) {
      if (n >= bytes) break;
      s.push_back(m);
      n += m.size();
    }
    return s;
  };

  if (want("re2")) {
    RE2::Options ro;
    ro.set_encoding(RE2::Options::EncodingLatin1);
    ro.set_max_mem(1ll << 30);
    ro.set_never_capture(true);
    ro.set_log_errors(false);
    RE2::Set set(ro, RE2::UNANCHORED);
    int added = 0;
    for (const auto& p : patterns) {
      std::string e;
      if (set.Add(p, &e) >= 0) ++added;
    }
    set.Compile();
    auto re2_slice = slice(32 << 20);
    uint64_t re2_bytes = 0;
    auto e0 = Clock::now();
    std::vector<int> hits;
    for (const auto& m : re2_slice) {
      if (set.Match(m, &hits)) re2_hits += hits.size();
      re2_bytes += m.size();
    }
    rows.push_back(Row{"RE2::Set, same patterns (" + std::to_string(added) + " accepted), 32 MiB slice", re2_bytes,
                       Seconds(e0, Clock::now())});
  }

  if (want("std")) {
    std::string alternation;
    int std_added = 0;
    for (const auto& p : patterns) {
      try {
        std::regex test(p);
        if (!alternation.empty()) alternation += "|";
        alternation += "(?:" + p + ")";
        ++std_added;
      } catch (const std::regex_error&) {
      }
    }
    std::regex re(alternation, std::regex::optimize);
    auto std_slice = slice(1 << 20);
    uint64_t std_bytes = 0;
    auto x0 = Clock::now();
    for (const auto& m : std_slice) {
      for (auto it = std::sregex_iterator(m.begin(), m.end(), re); it != std::sregex_iterator(); ++it) ++std_hits;
      std_bytes += m.size();
    }
    rows.push_back(Row{"std::regex, one alternation (" + std::to_string(std_added) + " patterns), 1 MiB slice",
                       std_bytes, Seconds(x0, Clock::now())});
  }

  std::printf("\n%-58s %14s %10s %13s %8s\n", "scanner (one thread, CPU time)", "bytes", "cpu", "throughput",
              "vs raw");
  for (const auto& row : rows) PrintRow(row, base);

  // Base64 of random bytes alone: a large binary upload as text (8 MiB messages, MIME
  // line wrapping), through the same three scanners.
  uint64_t b64_findings = 0, b64_dec_findings = 0, b64_matches = 0;
  if (want("b64") && b64_mib > 0) {
    Rng r;
    for (int i = 0; i < 13; ++i) r.Next();
    std::vector<std::string> b64;
    size_t b64_total = 0;
    while (b64_total < (b64_mib << 20)) {
      b64.push_back(Base64Wrapped(RandomBytes(r, 6 << 20)));
      b64_total += b64.back().size();
    }
    std::vector<Row> brows;
    Row dec = run_engine(decode_engine, b64, &b64_dec_findings);
    dec.name = "egressguard engine + content decoders";
    Row eng = run_engine(engine, b64, &b64_findings);
    eng.name = "egressguard engine, raw bytes only";
    Row raw = run_raw(b64, &b64_matches);
    const double b64_base = raw.bytes / raw.secs / 1e9;
    std::printf("\nbase64 of random bytes, %zu messages of %.1f MiB (76-character lines)\n", b64.size(),
                b64.front().size() / 1048576.0);
    std::printf("%-58s %14s %10s %13s %8s\n", "scanner (one thread, CPU time)", "bytes", "cpu", "throughput",
                "vs raw");
    for (const Row& row : {dec, eng, raw}) PrintRow(row, b64_base);
  }
  if (want("small") && small_iterations > 0) {
    uint64_t small_findings = 0;
    Scanner scanner;  // one worker's, warmed first (scratch, spare buffers)
    ScanSmall(scanner, decode_engine, std::min<size_t>(small_iterations, 1000), &small_findings);
    small_findings = 0;
    const double s0 = Clock::now();
    const uint64_t messages = ScanSmall(scanner, decode_engine, small_iterations, &small_findings);
    const double secs = Seconds(s0, Clock::now());
    std::printf("\nsmall messages (decoders on, open+feed+finish): %llu messages (%zu-byte URL + %zu-byte header "
                "block), %.0f ns/message CPU, findings %llu\n",
                static_cast<unsigned long long>(messages), sizeof kSmallUrl - 1, sizeof kSmallHeaders - 1,
                secs * 1e9 / static_cast<double>(messages), static_cast<unsigned long long>(small_findings));
  }
  std::printf("\nengine: %zu patterns (%zu rules), compile %.3f s (best of 3), stream state %zu bytes/stream\n",
              patterns.size(), static_cast<size_t>(pack->rules_size()), best_compile, engine->stream_state_bytes());
  if (want("raw")) std::printf("raw db: compile %.3f s, stream state %zu bytes/stream\n", raw_compile, raw_state);
  std::printf("findings: engine %llu, engine+decoders %llu; raw hs matches %llu; re2 hits %llu; std::regex hits %llu\n",
              static_cast<unsigned long long>(findings), static_cast<unsigned long long>(dec_findings),
              static_cast<unsigned long long>(raw_matches), static_cast<unsigned long long>(re2_hits),
              static_cast<unsigned long long>(std_hits));
  if (want("floor") && attachments) {
    std::printf("floor: %.1f MiB inflated from the zips; findings engine %llu, raw hs matches %llu\n",
                inflated_total / 1048576.0, static_cast<unsigned long long>(floor_findings),
                static_cast<unsigned long long>(floor_matches));
  }
  if (want("b64")) {
    std::printf("base64 table: findings engine+decoders %llu, engine %llu; raw hs matches %llu\n",
                static_cast<unsigned long long>(b64_dec_findings), static_cast<unsigned long long>(b64_findings),
                static_cast<unsigned long long>(b64_matches));
  }
  if (raw_scratch != nullptr) hs_free_scratch(raw_scratch);
  if (raw_db != nullptr) hs_free_database(raw_db);
  return 0;
}
