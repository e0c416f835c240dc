#include "dlp/validators.h"

namespace egressguard::dlp {

bool LuhnValid(std::string_view value) {
  int sum = 0;
  int digits = 0;
  for (auto it = value.rbegin(); it != value.rend(); ++it) {
    if (*it < '0' || *it > '9') continue;
    int d = *it - '0';
    if (digits % 2 == 1) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
    ++digits;
  }
  return digits >= 2 && sum % 10 == 0;
}

}  // namespace egressguard::dlp
