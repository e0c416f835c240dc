#include "appliance/reporter/pack_cache.h"

#include <fmt/format.h>
#include <openssl/sha.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string_view>

#include "ca/atomic_file.h"

namespace egressguard::reporter {

namespace {

constexpr std::string_view kMagic = "egressguard-active-pack-cache 1\n";
constexpr std::string_view kShaPrefix = "sha256 ";

std::string Sha256Hex(std::string_view bytes) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size(), digest);
  std::string hex;
  hex.reserve(2 * sizeof(digest));
  for (unsigned char b : digest) hex += fmt::format("{:02x}", b);
  return hex;
}

}  // namespace

std::string PackCachePath(const std::string& spool_path) {
  const auto slash = spool_path.rfind('/');
  const size_t name_at = slash == std::string::npos ? 0 : slash + 1;
  std::string base = spool_path;
  const auto dot = spool_path.rfind('.');
  if (dot != std::string::npos && dot > name_at) base = spool_path.substr(0, dot);  // not a leading dot
  return base + ".pack-cache";
}

absl::StatusOr<std::string> WritePackCache(const std::string& path, const v1::ActivePack& active) {
  std::string body;
  if (!active.SerializeToString(&body)) return absl::InternalError("the active pack does not serialize");
  if (body.size() + 128 > kMaxPackCacheBytes) {
    return absl::InvalidArgumentError(
        fmt::format("rule pack {} is too large to cache ({} bytes)", active.info().version(), body.size()));
  }
  std::string sha = Sha256Hex(body);
  std::string file;
  file.reserve(body.size() + 128);
  file.append(kMagic).append(kShaPrefix).append(sha).append("\n").append(body);
  if (auto st = ca::WriteFileAtomically(path, file, 0600); !st.ok()) {
    return absl::Status(st.code(), fmt::format("cannot write the pack cache {}: {}", path, std::string(st.message())));
  }
  return sha;
}

absl::StatusOr<CachedPack> ReadPackCache(const std::string& path) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return absl::NotFoundError(fmt::format("no pack cache {}", path));
    return absl::UnavailableError(fmt::format("cannot read the pack cache {}: {}", path, std::strerror(errno)));
  }
  if (!S_ISREG(st.st_mode)) return absl::PermissionDeniedError(fmt::format("pack cache {} is not a regular file", path));
  if ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0) {
    return absl::PermissionDeniedError(
        fmt::format("pack cache {} may be written by group or others (mode {:o}); refusing it", path, st.st_mode & 07777));
  }
  if (static_cast<uint64_t>(st.st_size) > kMaxPackCacheBytes) {
    return absl::DataLossError(fmt::format("pack cache {} is larger than {} bytes", path, kMaxPackCacheBytes));
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::UnavailableError(fmt::format("cannot read the pack cache {}", path));
  std::string file((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (file.size() > kMaxPackCacheBytes) {
    return absl::DataLossError(fmt::format("pack cache {} is larger than {} bytes", path, kMaxPackCacheBytes));
  }
  std::string_view rest(file);
  if (rest.substr(0, kMagic.size()) != kMagic) {
    return absl::DataLossError(fmt::format("pack cache {} is not an egressguard pack cache", path));
  }
  rest.remove_prefix(kMagic.size());
  const size_t line_end = rest.find('\n');
  if (rest.substr(0, kShaPrefix.size()) != kShaPrefix || line_end != kShaPrefix.size() + 64) {
    return absl::DataLossError(fmt::format("pack cache {} has no sha256 line", path));
  }
  const std::string want(rest.substr(kShaPrefix.size(), 64));
  rest.remove_prefix(line_end + 1);
  const std::string got = Sha256Hex(rest);
  if (got != want) {
    return absl::DataLossError(
        fmt::format("pack cache {} is corrupt or was edited: sha256 {} does not match the recorded {}", path, got, want));
  }
  CachedPack out;
  if (!out.active.ParseFromString(std::string(rest)) || out.active.info().version().empty()) {
    return absl::DataLossError(fmt::format("pack cache {} does not hold an active pack", path));
  }
  out.sha256 = got;
  return out;
}

}  // namespace egressguard::reporter
