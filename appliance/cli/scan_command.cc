// `egressguard scan`: grep-like DLP scan of files or stdin through the same engine the
// proxy uses (same pack, same decoders, same findings), 64 KiB at a time.
#include <fmt/format.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "appliance/build_info.h"
#include "appliance/cli/command.h"
#include "appliance/cli/rule_names.h"
#include "appliance/engine_setup.h"
#include "dlp/engine.h"
#include "dlp/validators.h"
#include "rules/pack_loader.h"

namespace egressguard::cli {

namespace {

constexpr size_t kChunk = 64 << 10;
// --each-match: occurrences listed per finding (rule) and file at most, so a file of
// millions of matches cannot hold the engine's memory without bound (each costs about
// 200 bytes while the file is scanned). Past it, stderr says how many were listed.
constexpr uint32_t kEachMatchMax = 100'000;
// Where packaged installs put the default pack (the source tree's copy is tried first).
struct ScanOptions {
  std::string rules;
  std::string format = "text";
  std::string content_type;
  std::string content_encoding;
  std::string fingerprint_key_file;
  std::string db_cache_dir;
  bool no_db_cache = false;
  bool each_match = false;
  std::vector<std::string> paths;
};

std::string ActionName(rules::v1::Action a) {
  switch (a) {
    case rules::v1::ALLOW: return "allow";
    case rules::v1::ALERT: return "alert";
    case rules::v1::BLOCK: return "block";
    default: return "unspecified";
  }
}

// JSON string literal; bytes that are not printable ASCII are escaped so any file
// name or evidence byte gives valid JSON.
std::string Json(std::string_view s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20 || c >= 0x7f) {
          out += fmt::format("\\u{:04x}", c);
        } else {
          out.push_back(static_cast<char>(c));
        }
    }
  }
  return out + "\"";
}

// Shows "scanning PATH: N MiB" on a terminal's stderr for scans longer than a second.
class Progress {
 public:
  Progress(std::string path) : path_(std::move(path)), tty_(isatty(STDERR_FILENO) == 1) {}
  ~Progress() {
    if (shown_) std::fputs("\r\033[K", stderr);
  }
  void Update(uint64_t bytes) {
    if (!tty_) return;
    auto now = std::chrono::steady_clock::now();
    if (now - start_ < std::chrono::seconds(1) || now - last_ < std::chrono::milliseconds(250)) return;
    last_ = now;
    double secs = std::chrono::duration<double>(now - start_).count();
    std::fprintf(stderr, "\r\033[Kscanning %s: %.1f MiB (%.0f MiB/s)", path_.c_str(), bytes / 1048576.0,
                 bytes / 1048576.0 / secs);
    shown_ = true;
  }

 private:
  std::string path_;
  bool tty_;
  bool shown_ = false;
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
  std::chrono::steady_clock::time_point last_ = start_;
};

void PrintOne(const ScanOptions& o, const std::string& path, const v1::Finding& f) {
  if (o.format == "jsonl") {
    std::cout << "{\"path\":" << Json(path) << ",\"rule\":" << Json(f.rule_id()) << ",\"category\":"
              << Json(f.category()) << ",\"start\":" << f.start() << ",\"end\":" << f.end()
              << ",\"count\":" << f.count() << ",\"action\":" << Json(ActionName(f.action()))
              << ",\"evidence\":" << Json(f.evidence()) << ",\"severity\":" << Json(SeverityName(f.severity()));
    if (!f.fingerprint().empty()) std::cout << ",\"fingerprint\":" << Json(f.fingerprint());
    if (!f.member().empty()) std::cout << ",\"member\":" << Json(f.member());
    std::cout << "}\n";
  } else {
    // Inside a container the member is named after the file: upload.zip!customers.csv.
    std::cout << path << (f.member().empty() ? "" : "!") << f.member() << ":" << f.start() << "-" << f.end() << ": " << f.category() << " " << f.rule_id() << " "
              << f.evidence();
    if (f.count() > 1) std::cout << " (x" << f.count() << ")";
    std::cout << "\n";
  }
}

// One line per finding; with --each-match one per located occurrence: the finding's
// fields with that occurrence's offsets, evidence, fingerprint and member, count 1.
// Findings that locate no occurrence of their own (bulk_pii, undecodable, encrypted
// content) keep their one line.
void Print(const ScanOptions& o, const std::string& path, const v1::Finding& f) {
  if (!o.each_match || f.spans().empty()) {
    PrintOne(o, path, f);
    return;
  }
  v1::Finding one = f;
  one.clear_spans();
  one.set_count(1);
  for (const auto& span : f.spans()) {
    one.set_start(span.start());
    one.set_end(span.end());
    one.set_evidence(span.evidence());
    one.set_fingerprint(span.fingerprint());
    one.set_member(span.member());
    PrintOne(o, path, one);
  }
  if (f.spans_truncated()) {
    std::cerr << "egressguard scan: " << path << ": " << f.rule_id() << ": more than " << f.spans_size()
              << " occurrences; the first " << f.spans_size() << " are listed\n";
  }
}

// Scans one file ("-" = stdin); false on an I/O error (reported on stderr).
bool ScanOne(const ScanOptions& o, const dlp::EnginePtr& engine, dlp::Scanner& scanner, const std::string& path,
             bool* found) {
  std::FILE* in = path == "-" ? stdin : std::fopen(path.c_str(), "rb");
  if (in == nullptr) {
    std::cerr << "egressguard scan: " << path << ": " << std::strerror(errno) << "\n";
    return false;
  }
  std::error_code ec;
  if (path != "-" && std::filesystem::is_directory(path, ec)) {
    std::fclose(in);
    std::cerr << "egressguard scan: " << path << ": is a directory\n";
    return false;
  }
  dlp::ContentHint hint;
  hint.content_type = o.content_type;
  hint.content_encoding = o.content_encoding;
  auto scan = scanner.Open(engine, hint);
  std::vector<char> buf(kChunk);
  uint64_t total = 0;
  Progress progress(path);
  bool ok = true;
  for (;;) {
    size_t n = std::fread(buf.data(), 1, buf.size(), in);
    if (n > 0) {
      scan->Feed(std::string_view(buf.data(), n));
      total += n;
      progress.Update(total);
    }
    if (n < buf.size()) {
      if (std::ferror(in)) {
        std::cerr << "egressguard scan: " << path << ": read error: " << std::strerror(errno) << "\n";
        ok = false;
      }
      break;
    }
  }
  if (in != stdin) std::fclose(in);
  dlp::MessageResult result = scan->Finish();
  for (const auto& f : result.findings) Print(o, path == "-" ? "(stdin)" : path, f);
  if (!result.findings.empty()) *found = true;
  if (result.reason.find("scan_error") != std::string::npos) {
    std::cerr << "egressguard scan: " << path << ": the engine could not scan all of it\n";
    ok = false;
  }
  return ok;
}

int RunScan(const ScanOptions& o) {
  if (o.format != "text" && o.format != "jsonl") {
    std::cerr << "egressguard scan: --format must be text or jsonl\n";
    return kExitError;
  }
  const std::string pack_path = o.rules.empty() ? appliance::DefaultPackPath() : o.rules;
  dlp::EngineOptions options;
  if (!o.fingerprint_key_file.empty()) {
    auto key = appliance::ReadFingerprintKey(o.fingerprint_key_file);
    if (!key.ok()) {
      std::cerr << "egressguard scan: " << key.status().message() << "\n";
      return kExitError;
    }
    options.fingerprint_key = *std::move(key);
  }
  if (!o.no_db_cache) options.db_cache_dir = o.db_cache_dir.empty() ? appliance::DefaultDbCacheDir() : o.db_cache_dir;
  options.warm_validators = false;  // one run: a phone number, if any, pays for its data
  // The default output shows no spans: the engine need not collect them.
  options.max_finding_spans = o.each_match ? kEachMatchMax : 0;
  auto engine = appliance::LoadAndCompile(pack_path, options);
  if (!engine.ok()) {
    std::cerr << "egressguard scan: " << engine.status().message() << "\n";
    return kExitError;
  }
  dlp::Scanner scanner;
  bool found = false;
  bool ok = true;
  for (const auto& path : o.paths) ok = ScanOne(o, *engine, scanner, path, &found) && ok;
  std::cout.flush();
  if (!ok) return kExitError;
  return found ? kExitFindings : kExitOk;
}

}  // namespace

void RegisterScan(CLI::App& app, Context& ctx) {
  auto opts = std::make_shared<ScanOptions>();
  auto* cmd = app.add_subcommand("scan", "Scan files or stdin with the DLP engine, like grep");
  cmd->add_option("--rules", opts->rules, "Rule pack file or directory (default: the shipped pack)");
  cmd->add_option("--format", opts->format, "Output: text (path[!member]:start-end: category rule evidence; member = the archive member a finding lies in) or jsonl (adds \"member\")")
      ->check(CLI::IsMember({"text", "jsonl"}));
  cmd->add_option("--content-type", opts->content_type, "Treat the input as this Content-Type (a hint)");
  cmd->add_option("--content-encoding", opts->content_encoding, "Treat the input as this Content-Encoding");
  cmd->add_option("--fingerprint-key-file", opts->fingerprint_key_file,
                  "HMAC key for match fingerprints (without it no fingerprints are printed)");
  cmd->add_option("--db-cache-dir", opts->db_cache_dir,
                  "Where compiled rule-pack databases are kept for the next run (default: "
                  "$XDG_CACHE_HOME/egressguard/db, else ~/.cache/egressguard/db)");
  cmd->add_flag("--no-db-cache", opts->no_db_cache, "Compile the rule pack afresh and keep nothing");
  cmd->add_flag("--each-match", opts->each_match,
                fmt::format("One line per occurrence instead of per finding: the finding's fields with that "
                            "occurrence's start/end, evidence, fingerprint and member, count 1 (repeats of one "
                            "value are occurrences too; the same bytes seen raw and decoded are one). Findings "
                            "without occurrences of their own (bulk_pii, undecodable, encrypted_content) keep one "
                            "line with their count. Safety bound: at most {} occurrences per finding and file are "
                            "listed; past it stderr says so",
                            kEachMatchMax));
  cmd->add_option("paths", opts->paths, "Files to scan, or - for stdin")->required();
  cmd->footer("Exit status: 0 nothing found, 1 findings, 2 error.");
  cmd->callback([&ctx, opts] { ctx.exit_code = RunScan(*opts); });
}

}  // namespace egressguard::cli
