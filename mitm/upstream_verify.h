#pragma once
// Upstream certificate checks beyond chain + hostname verification, and the stand-in
// certificate a refusal page's leaf is minted from.
//
// OpenSSL's chain verification (with the TLS server purpose libssl sets) leaves some things
// a browser refuses: a leaf that is itself a CA, or whose key usage does not cover the way
// the handshake used its key. Those are checked here, after the handshake, on the leaf the
// origin presented; the name check (no subject-CN fallback) is a verify-param flag set
// before the handshake (Connection::Bump).

#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <ctime>
#include <string>
#include <string_view>

#include "ca/openssl_types.h"

namespace egressguard::mitm {

// How the handshake made the origin prove it holds the leaf's key.
enum class ServerKeyUse {
  kSignature,     // TLS 1.3, or TLS 1.2 (EC)DHE: the origin signed (needs digitalSignature)
  kKeyTransport,  // TLS 1.2 RSA key exchange: the origin decrypted (needs keyEncipherment)
};

// What the completed handshake on `ssl` used the origin's key for.
ServerKeyUse KeyUseOf(const SSL* ssl);

// Why `leaf` must not be accepted as a TLS server certificate for a handshake that used
// its key as `use`, or "" when it may. Only the leaf is judged here; the chain and the
// name are verified by OpenSSL during the handshake.
std::string ServerLeafProblem(X509* leaf, ServerKeyUse use);

// A stand-in "upstream certificate" naming exactly `name` (a DNS name, or an IP literal
// which gets an IP SAN), valid for about a day around `now`, for minting the leaf that a
// refusal page is served with: the client then sees the proxy's 502 and why, not a name
// error. It is unsigned and carries a fixed marker issuer, so its fingerprint (the leaf
// cache key) can never equal a real, verified certificate's; its dates are aligned to the
// hour so repeated refusals for one name share one cached leaf. Null when `name` is not a
// plain host name or IP literal.
ca::X509Ptr RefusalSurrogate(std::string_view name, std::time_t now);

}  // namespace egressguard::mitm
