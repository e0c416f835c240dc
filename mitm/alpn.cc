#include "mitm/alpn.h"

#include <algorithm>

namespace egressguard::mitm {
namespace {

constexpr std::string_view kH2 = "h2";
constexpr std::string_view kHttp11 = "http/1.1";

// The ex_data slot that carries the origin's choice from the upstream handshake to the
// client's ALPN callback (OpenSSL calls it with the SSL only).
int OriginIndex() {
  static const int index = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return index;
}

// Finds `name` in a wire-format protocol list; its position in `in`, or nullptr.
const unsigned char* FindProtocol(const unsigned char* in, unsigned int inlen, std::string_view name) {
  unsigned int i = 0;
  while (i < inlen) {
    unsigned int len = in[i];
    if (len == 0 || i + 1 + len > inlen) return nullptr;  // malformed: OpenSSL checked, but never trust a length
    if (len == name.size() && std::equal(in + i + 1, in + i + 1 + len, name.begin())) return in + i + 1;
    i += 1 + len;
  }
  return nullptr;
}

}  // namespace

std::string AlpnOfferFor(const std::vector<std::string>& client_offer) {
  std::string wire;
  bool h2 = false;
  bool http11 = false;
  for (const auto& p : client_offer) {
    if (p == kH2 && !h2) {
      h2 = true;
    } else if (p == kHttp11 && !http11) {
      http11 = true;
    } else {
      continue;
    }
    wire += static_cast<char>(p.size());
    wire += p;
  }
  return wire;
}

AppProtocol NegotiatedProtocol(const SSL* ssl) {
  const unsigned char* data = nullptr;
  unsigned int len = 0;
  SSL_get0_alpn_selected(ssl, &data, &len);
  std::string_view p(reinterpret_cast<const char*>(data), data ? len : 0);
  if (p == kH2) return AppProtocol::kH2;
  if (p == kHttp11) return AppProtocol::kHttp11;
  return AppProtocol::kNone;
}

void SetOriginProtocol(SSL* client_ssl, AppProtocol origin) {
  // Stored +1 so that "not set" (a null slot) differs from kNone.
  SSL_set_ex_data(client_ssl, OriginIndex(), reinterpret_cast<void*>(static_cast<intptr_t>(origin) + 1));
}

int SelectClientAlpn(SSL* ssl, const unsigned char** out, unsigned char* outlen, const unsigned char* in,
                     unsigned int inlen, void*) {
  auto stored = reinterpret_cast<intptr_t>(SSL_get_ex_data(ssl, OriginIndex()));
  AppProtocol origin = stored == 0 ? AppProtocol::kNone : static_cast<AppProtocol>(stored - 1);
  auto pick = [&](std::string_view name) {
    const unsigned char* p = FindProtocol(in, inlen, name);
    if (p == nullptr) return false;
    *out = p;
    *outlen = static_cast<unsigned char>(name.size());
    return true;
  };
  if (origin == AppProtocol::kH2 && pick(kH2)) return SSL_TLSEXT_ERR_OK;
  if (pick(kHttp11)) return SSL_TLSEXT_ERR_OK;
  if (FindProtocol(in, inlen, kH2) != nullptr) return SSL_TLSEXT_ERR_ALERT_FATAL;  // h2 only, origin without it
  return SSL_TLSEXT_ERR_NOACK;
}

}  // namespace egressguard::mitm
