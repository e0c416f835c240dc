#pragma once
// ALPN on both legs of a bumped connection. Internal to mitm/.
//
// The proxy speaks to the client what the origin speaks: it offers the origin the
// protocols the client offered (of those it can inspect: h2 and http/1.1, in the
// client's order), then selects for the client the one the origin chose. So no leg ever
// carries a protocol the other leg does not, and nothing needs translating.

#include <openssl/ssl.h>

#include <string>
#include <string_view>
#include <vector>

namespace egressguard::mitm {

enum class AppProtocol { kNone, kHttp11, kH2 };

// The client's ALPN list (ClientHello order) reduced to what the proxy inspects, in the
// wire format of SSL_set_alpn_protos; empty when none is left.
std::string AlpnOfferFor(const std::vector<std::string>& client_offer);
// What a TLS session negotiated (kNone: no ALPN, i.e. HTTP/1.1 by default).
AppProtocol NegotiatedProtocol(const SSL* ssl);
// Before the client handshake: what the origin chose, for SelectClientAlpn.
void SetOriginProtocol(SSL* client_ssl, AppProtocol origin);
// The client context's ALPN callback. With the origin's choice set: that protocol when the
// client offered it (h2), else http/1.1 when offered, else no ALPN at all; refuses the
// handshake (no_application_protocol) when the client offered only h2 and the origin
// did not choose it, since an h2 client cannot be served over an HTTP/1.1 origin here.
int SelectClientAlpn(SSL* ssl, const unsigned char** out, unsigned char* outlen, const unsigned char* in,
                     unsigned int inlen, void* arg);

}  // namespace egressguard::mitm
