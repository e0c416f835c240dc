#include "ca/atomic_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include <fmt/format.h>

namespace egressguard::ca {

namespace {

absl::Status ErrnoError(std::string_view what, const std::string& path) {
  int e = errno;
  std::string msg = fmt::format("{} {}: {}", what, path, std::strerror(e));
  return e == EACCES || e == EPERM ? absl::PermissionDeniedError(msg) : absl::InternalError(msg);
}

std::string DirName(const std::string& path) {
  auto parent = std::filesystem::path(path).parent_path();
  return parent.empty() ? std::string(".") : parent.string();
}

absl::Status WriteAll(int fd, std::string_view data, const std::string& path) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoError("write", path);
    }
    data.remove_prefix(static_cast<std::size_t>(n));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status WriteFileAtomically(const std::string& path, std::string_view contents, unsigned mode) {
  static std::atomic<unsigned> counter{0};
  std::string tmp;
  int fd = -1;
  for (int attempt = 0; attempt < 100 && fd < 0; ++attempt) {
    tmp = fmt::format("{}.tmp-{}-{}", path, ::getpid(), counter.fetch_add(1));
    fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode & 0777);
    if (fd < 0 && errno != EEXIST) return ErrnoError("create", tmp);
  }
  if (fd < 0) return ErrnoError("create", tmp);
  auto fail = [&](absl::Status st) {
    ::close(fd);
    ::unlink(tmp.c_str());
    return st;
  };
  // The umask only ever removes bits from `mode`; fchmod makes the result exact either way.
  if (::fchmod(fd, mode & 0777) != 0) return fail(ErrnoError("chmod", tmp));
  if (auto st = WriteAll(fd, contents, tmp); !st.ok()) return fail(st);
  if (::fsync(fd) != 0) return fail(ErrnoError("fsync", tmp));
  if (::close(fd) != 0) {
    ::unlink(tmp.c_str());
    return ErrnoError("close", tmp);
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    absl::Status st = ErrnoError("rename to", path);
    ::unlink(tmp.c_str());
    return st;
  }
  // Make the rename itself durable.
  std::string dir = DirName(path);
  int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
  return absl::OkStatus();
}

absl::Status EnsurePrivateDirectory(const std::string& dir) {
  struct stat st {};
  if (::stat(dir.c_str(), &st) == 0) {
    if (!S_ISDIR(st.st_mode)) return absl::FailedPreconditionError(fmt::format("{}: not a directory", dir));
    return absl::OkStatus();
  }
  std::error_code ec;
  auto parent = std::filesystem::path(dir).parent_path();
  if (!parent.empty()) std::filesystem::create_directories(parent, ec);
  if (ec) return absl::InternalError(fmt::format("create {}: {}", parent.string(), ec.message()));
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) return ErrnoError("mkdir", dir);
  return absl::OkStatus();
}

}  // namespace egressguard::ca
