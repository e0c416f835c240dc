#include "ca/key_file.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstring>

#include <fmt/format.h>

namespace egressguard::ca {

absl::Status CheckPrivateKeyPermissions(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    return absl::NotFoundError(fmt::format("{}: {}", path, std::strerror(errno)));
  }
  if (!S_ISREG(st.st_mode)) {
    return absl::FailedPreconditionError(fmt::format("{}: not a regular file", path));
  }
  if ((st.st_mode & (S_IRWXG | S_IRWXO)) != 0) {
    return absl::PermissionDeniedError(fmt::format(
        "{}: private key is accessible by group or others (mode {:04o}); run: chmod 600 {}", path,
        st.st_mode & 07777, path));
  }
  return absl::OkStatus();
}

}  // namespace egressguard::ca
