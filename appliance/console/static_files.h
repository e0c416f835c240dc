#pragma once
// The console's pages, styles and scripts (appliance/console/static/), embedded at
// build time (cmake/embed_files.cmake) so the binary serves exactly what it was
// built and tested with, wherever it is installed.

#include <string_view>

namespace egressguard::console {

struct StaticFile {
  std::string_view name;  // path under static/, e.g. "js/api.js"
  std::string_view body;
};

// Null when there is no such file.
const StaticFile* FindStaticFile(std::string_view name);

}  // namespace egressguard::console
