#include "dlp/db_cache.h"

#include <fcntl.h>
#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>
#include <openssl/evp.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <climits>
#include <cstdint>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fmt/format.h>

#include "absl/status/status.h"

namespace egressguard::dlp {

namespace {

constexpr std::string_view kMagic = "EGHSDB1\n";
constexpr size_t kDigest = 32;
constexpr uint64_t kMaxFileBytes = 1ull << 30;  // a pack's databases are a few MiB

class Sha256 {
 public:
  Sha256() : ctx_(EVP_MD_CTX_new()) { EVP_DigestInit_ex(ctx_, EVP_sha256(), nullptr); }
  ~Sha256() { EVP_MD_CTX_free(ctx_); }
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;
  void Add(std::string_view s) { EVP_DigestUpdate(ctx_, s.data(), s.size()); }
  void Add32(uint32_t v) {
    const unsigned char b[4] = {static_cast<unsigned char>(v), static_cast<unsigned char>(v >> 8),
                                static_cast<unsigned char>(v >> 16), static_cast<unsigned char>(v >> 24)};
    EVP_DigestUpdate(ctx_, b, 4);
  }
  std::string Raw() {
    unsigned char d[kDigest];
    unsigned n = 0;
    EVP_DigestFinal_ex(ctx_, d, &n);
    return std::string(reinterpret_cast<char*>(d), n);
  }
  std::string Hex() {
    const std::string raw = Raw();
    std::string out;
    for (unsigned char c : raw) out += fmt::format("{:02x}", c);
    return out;
  }

 private:
  EVP_MD_CTX* ctx_;
};

void Put32(std::string& s, uint32_t v) {
  for (int i = 0; i < 4; ++i) s.push_back(static_cast<char>(v >> (8 * i)));
}
void Put64(std::string& s, uint64_t v) {
  for (int i = 0; i < 8; ++i) s.push_back(static_cast<char>(v >> (8 * i)));
}

// Reads the file's fields with every length checked against what is left.
class Reader {
 public:
  explicit Reader(std::string_view s) : s_(s) {}
  bool Take(size_t n, std::string_view* out) {
    if (n > s_.size()) return false;
    *out = s_.substr(0, n);
    s_.remove_prefix(n);
    return true;
  }
  bool Get32(uint32_t* v) { return GetN(4, v); }
  bool Get64(uint64_t* v) { return GetN(8, v); }
  size_t left() const { return s_.size(); }

 private:
  template <typename T>
  bool GetN(size_t n, T* v) {
    std::string_view b;
    if (!Take(n, &b)) return false;
    *v = 0;
    for (size_t i = 0; i < n; ++i) *v |= static_cast<T>(static_cast<unsigned char>(b[i])) << (8 * i);
    return true;
  }
  std::string_view s_;
};

absl::Status ErrnoStatus(std::string_view what, const std::string& path) {
  return absl::InternalError(fmt::format("{} {}: {}", what, path, std::strerror(errno)));
}

// A cache file is trusted only when this user wrote it and nobody else may. Read into
// an uninitialized buffer: the file is a few MiB and read on every start.
absl::Status ReadPrivateFile(const std::string& path, DbCacheFile* out) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return absl::NotFoundError(path);
    return ErrnoStatus("open", path);
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const absl::Status s = ErrnoStatus("stat", path);
    ::close(fd);
    return s;
  }
  if (!S_ISREG(st.st_mode) || st.st_uid != ::geteuid() || (st.st_mode & 022) != 0) {
    ::close(fd);
    return absl::PermissionDeniedError("not a regular file of this user, or writable by others");
  }
  if (static_cast<uint64_t>(st.st_size) > kMaxFileBytes) {
    ::close(fd);
    return absl::InvalidArgumentError("larger than any database file");
  }
  const auto size = static_cast<size_t>(st.st_size);
  out->data.reset(new char[size == 0 ? 1 : size]);
  size_t got = 0;
  while (got < size) {
    const ssize_t n = ::read(fd, out->data.get() + got, size - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    got += static_cast<size_t>(n);
  }
  ::close(fd);
  out->size = got;
  return absl::OkStatus();
}

absl::Status WriteAtomically(const std::string& path, std::string_view contents) {
  static std::atomic<unsigned> counter{0};
  const std::string tmp = fmt::format("{}.tmp-{}-{}", path, ::getpid(), counter.fetch_add(1));
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) return ErrnoStatus("create", tmp);
  auto fail = [&](absl::Status st) {
    ::close(fd);
    ::unlink(tmp.c_str());
    return st;
  };
  if (::fchmod(fd, 0600) != 0) return fail(ErrnoStatus("chmod", tmp));
  while (!contents.empty()) {
    const ssize_t n = ::write(fd, contents.data(), contents.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return fail(ErrnoStatus("write", tmp));
    contents.remove_prefix(static_cast<size_t>(n));
  }
  if (::fsync(fd) != 0) return fail(ErrnoStatus("fsync", tmp));
  if (::close(fd) != 0) {
    ::unlink(tmp.c_str());
    return ErrnoStatus("close", tmp);
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const absl::Status st = ErrnoStatus("rename", tmp);
    ::unlink(tmp.c_str());
    return st;
  }
  return absl::OkStatus();
}

// Creates the directory (and its parents) when missing; what is created gets 0700.
absl::Status EnsureDirectory(const std::string& dir) {
  std::error_code ec;
  if (std::filesystem::is_directory(dir, ec)) return absl::OkStatus();
  const std::filesystem::path p(dir);
  if (p.has_parent_path() && p.parent_path() != p) {
    if (auto st = EnsureDirectory(p.parent_path().string()); !st.ok()) return st;
  }
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) return ErrnoStatus("mkdir", dir);
  return absl::OkStatus();
}

// Keeps the newest kMaxDbCacheFiles database files.
void Prune(const std::string& dir) {
  std::error_code ec;
  std::vector<std::pair<std::filesystem::file_time_type, std::filesystem::path>> files;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
    if (e.path().extension() == ".hsdb" && e.is_regular_file(ec)) files.emplace_back(e.last_write_time(ec), e.path());
  }
  if (files.size() <= kMaxDbCacheFiles) return;
  std::sort(files.begin(), files.end());
  for (size_t i = 0; i + kMaxDbCacheFiles < files.size(); ++i) std::filesystem::remove(files[i].second, ec);
}

}  // namespace

std::string DbCacheKey(const rules::v1::RulePack& pack) {
  std::string bytes;
  {
    google::protobuf::io::StringOutputStream out(&bytes);
    google::protobuf::io::CodedOutputStream coded(&out);
    coded.SetSerializationDeterministic(true);
    pack.SerializeToCodedStream(&coded);
  }
  hs_platform_info_t platform{};
  hs_populate_platform(&platform);
  Sha256 h;
  h.Add("egressguard hyperscan database cache 1\n");
  h.Add(hs_version());
  h.Add32(platform.tune);
  h.Add32(static_cast<uint32_t>(platform.cpu_features));
  h.Add32(static_cast<uint32_t>(platform.cpu_features >> 32));
  h.Add(bytes);
  return h.Hex();
}

std::string DbFingerprint(unsigned mode, const std::vector<const char*>& texts, const std::vector<unsigned>& flags,
                          const std::vector<unsigned>& ids) {
  Sha256 h;
  h.Add32(mode);
  h.Add32(static_cast<uint32_t>(texts.size()));
  for (size_t i = 0; i < texts.size(); ++i) {
    const std::string_view t(texts[i]);
    h.Add32(static_cast<uint32_t>(t.size()));
    h.Add(t);
    h.Add32(flags[i]);
    h.Add32(ids[i]);
  }
  return h.Raw();
}

absl::StatusOr<DbCacheFile> ReadDbCacheFile(const std::string& path, std::string_view key) {
  DbCacheFile file;
  if (absl::Status st = ReadPrivateFile(path, &file); !st.ok()) return st;
  const std::string_view data(file.data.get(), file.size);
  if (data.size() < kMagic.size() + kDigest) return absl::DataLossError("truncated");
  const std::string_view body = data.substr(0, data.size() - kDigest);
  Sha256 h;
  h.Add(body);
  if (h.Raw() != data.substr(body.size())) return absl::DataLossError("bad checksum");
  Reader r(body);
  std::string_view magic, file_key;
  uint32_t key_len = 0, count = 0;
  if (!r.Take(kMagic.size(), &magic) || magic != kMagic) return absl::DataLossError("not a database cache file");
  if (!r.Get32(&key_len) || !r.Take(key_len, &file_key)) return absl::DataLossError("truncated");
  if (file_key != key) return absl::FailedPreconditionError("made for another pack or platform");
  if (!r.Get32(&count)) return absl::DataLossError("truncated");
  for (uint32_t i = 0; i < count; ++i) {
    uint32_t fp_len = 0;
    uint64_t db_len = 0;
    DbCacheFile::Entry e;
    if (!r.Get32(&fp_len) || !r.Take(fp_len, &e.fingerprint) || !r.Get64(&db_len) || db_len > r.left() ||
        !r.Take(static_cast<size_t>(db_len), &e.bytes)) {
      return absl::DataLossError("truncated");
    }
    file.dbs.push_back(e);
  }
  if (r.left() != 0) return absl::DataLossError("trailing bytes");
  return file;
}

absl::Status WriteDbCacheFile(const std::string& path, std::string_view key, const std::vector<CachedDb>& dbs) {
  std::string out(kMagic);
  Put32(out, static_cast<uint32_t>(key.size()));
  out += key;
  Put32(out, static_cast<uint32_t>(dbs.size()));
  for (const CachedDb& d : dbs) {
    Put32(out, static_cast<uint32_t>(d.fingerprint.size()));
    out += d.fingerprint;
    Put64(out, d.bytes.size());
    out += d.bytes;
  }
  Sha256 h;
  h.Add(out);
  out += h.Raw();
  return WriteAtomically(path, out);
}

DbCacheSession::DbCacheSession(std::string dir, const rules::v1::RulePack& pack) : dir_(std::move(dir)) {
  if (dir_.empty()) return;
  key_ = DbCacheKey(pack);
  path_ = (std::filesystem::path(dir_) / (key_ + ".hsdb")).string();
  auto file = ReadDbCacheFile(path_, key_);
  if (file.ok()) {
    cached_ = *std::move(file);
  } else if (!absl::IsNotFound(file.status())) {
    spdlog::warn("rule pack database cache {}: refused ({}); compiling", path_, std::string(file.status().message()));
  }
}

hs_database_t* DbCacheSession::Take(const std::string& fingerprint) {
  if (!valid_ || next_ >= cached_.dbs.size() || cached_.dbs[next_].fingerprint != fingerprint) {
    valid_ = false;
    ++misses_;
    return nullptr;
  }
  const DbCacheFile::Entry& c = cached_.dbs[next_];
  hs_database_t* db = nullptr;
  if (hs_deserialize_database(c.bytes.data(), c.bytes.size(), &db) != HS_SUCCESS) {
    spdlog::warn("rule pack database cache {}: refused (a database Hyperscan cannot read); compiling", path_);
    valid_ = false;
    ++misses_;
    return nullptr;
  }
  built_.push_back(Built{fingerprint, {}, next_++});
  ++hits_;
  return db;
}

void DbCacheSession::Record(const std::string& fingerprint, const hs_database_t* db) {
  if (dir_.empty()) return;
  valid_ = false;  // what follows is compiled too: the cached order no longer holds
  char* bytes = nullptr;
  size_t n = 0;
  if (hs_serialize_database(db, &bytes, &n) != HS_SUCCESS) {
    unsaveable_ = true;  // a file without it would not match the build order
    return;
  }
  built_.push_back(Built{fingerprint, std::string(bytes, n)});
  std::free(bytes);
}

void DbCacheSession::Save() {
  if (dir_.empty() || misses_ == 0 || unsaveable_) return;
  std::vector<CachedDb> dbs;
  for (const Built& b : built_) {
    const std::string_view bytes = b.cached == SIZE_MAX ? std::string_view(b.bytes) : cached_.dbs[b.cached].bytes;
    dbs.push_back(CachedDb{b.fingerprint, std::string(bytes)});
  }
  absl::Status st = EnsureDirectory(dir_);
  if (st.ok()) st = WriteDbCacheFile(path_, key_, dbs);
  if (!st.ok()) {
    spdlog::warn("rule pack database cache: cannot write {}: {}", path_, std::string(st.message()));
    return;
  }
  Prune(dir_);
}

}  // namespace egressguard::dlp
