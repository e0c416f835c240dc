#include "ca/openssl_leaf_minter.h"

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include <algorithm>

#include <fmt/format.h>

#include "ca/x509_util.h"

namespace egressguard::ca {

namespace {

// Clients with clocks a little behind must accept a leaf minted a moment ago.
constexpr std::time_t kBackdateSeconds = 3600;
// A cached leaf is re-minted this long before it expires, so no client gets one at the edge.
constexpr std::time_t kRefreshMarginSeconds = 300;
constexpr int kMaxLeafDays = 397;  // the CA/Browser Forum ceiling for TLS server certificates

// The upstream's DNS and IP SANs (other kinds are not copied), or null when there are none.
GeneralNamesPtr HostNamesOf(X509* upstream) {
  auto* all = static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(upstream, NID_subject_alt_name, nullptr, nullptr));
  if (all == nullptr) return nullptr;
  GeneralNamesPtr out(sk_GENERAL_NAME_new_null());
  for (int i = 0; i < sk_GENERAL_NAME_num(all); ++i) {
    GENERAL_NAME* gn = sk_GENERAL_NAME_value(all, i);
    if (gn->type != GEN_DNS && gn->type != GEN_IPADD) continue;
    sk_GENERAL_NAME_push(out.get(), gn);
    sk_GENERAL_NAME_set(all, i, nullptr);  // ownership moved to `out`
  }
  GENERAL_NAMES_free(all);
  if (sk_GENERAL_NAME_num(out.get()) == 0) return nullptr;
  return out;
}

// A SAN list holding the CN as a DNS name, for upstreams that predate SANs (clients
// today ignore the CN, so the leaf must carry the name as a SAN to be usable at all).
GeneralNamesPtr NamesFromCommonName(X509_NAME* subject) {
  int idx = X509_NAME_get_index_by_NID(subject, NID_commonName, -1);
  if (idx < 0) return nullptr;
  ASN1_STRING* cn = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, idx));
  unsigned char* utf8 = nullptr;
  int len = ASN1_STRING_to_UTF8(&utf8, cn);
  if (len <= 0) return nullptr;
  std::string name(reinterpret_cast<char*>(utf8), static_cast<std::size_t>(len));
  OPENSSL_free(utf8);
  bool hostname_like = !name.empty() && name.size() <= 253 &&
                       std::all_of(name.begin(), name.end(), [](char c) {
                         return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                                c == '-' || c == '.' || c == '*';
                       });
  if (!hostname_like) return nullptr;
  GeneralNamesPtr out(sk_GENERAL_NAME_new_null());
  GENERAL_NAME* gn = GENERAL_NAME_new();
  ASN1_IA5STRING* ia5 = ASN1_IA5STRING_new();
  ASN1_STRING_set(ia5, name.data(), static_cast<int>(name.size()));
  GENERAL_NAME_set0_value(gn, GEN_DNS, ia5);
  sk_GENERAL_NAME_push(out.get(), gn);
  return out;
}

}  // namespace

absl::StatusOr<std::unique_ptr<OpenSslLeafMinter>> OpenSslLeafMinter::Create(
    std::shared_ptr<const CertificateAuthority> ca, LeafMinterOptions options) {
  if (!ca) return absl::InvalidArgumentError("no CA");
  if (options.leaf_days < 1 || options.leaf_days > kMaxLeafDays) {
    return absl::InvalidArgumentError(fmt::format("leaf lifetime must be 1..{} days", kMaxLeafDays));
  }
  std::unique_ptr<OpenSslLeafMinter> m(new OpenSslLeafMinter(std::move(ca), std::move(options)));
  auto pool = LeafKeyPool::Create(m->options_.key_pool_size, m->options_.key_rotation, m->Now());
  if (!pool.ok()) return pool.status();
  m->key_pool_ = std::move(*pool);

  m->sha256_.reset(EVP_MD_fetch(nullptr, "SHA256", nullptr));
  if (!m->sha256_) return OpenSslError(absl::StatusCode::kInternal, "fetching SHA-256");
  X509* ca_cert = m->ca_->cert();
  auto ca_end = TimeToUnix(X509_get0_notAfter(ca_cert));
  if (!ca_end.ok()) return ca_end.status();
  m->ca_not_after_ = *ca_end;
  X509_NAME* ca_name = X509_get_subject_name(ca_cert);
  for (int i = 0; i < X509_NAME_entry_count(ca_name); ++i) {
    const X509_NAME_ENTRY* e = X509_NAME_get_entry(ca_name, i);
    const ASN1_STRING* value = X509_NAME_ENTRY_get_data(e);
    IssuerRdn rdn;
    rdn.object.reset(OBJ_dup(X509_NAME_ENTRY_get_object(e)));
    rdn.type = ASN1_STRING_type(value);
    rdn.value.assign(reinterpret_cast<const char*>(ASN1_STRING_get0_data(value)),
                     static_cast<std::size_t>(ASN1_STRING_length(value)));
    // Multi-valued RDNs: an entry sharing the previous entry's set joins it (-1 = previous set).
    rdn.new_set = i > 0 && X509_NAME_ENTRY_set(e) == X509_NAME_ENTRY_set(X509_NAME_get_entry(ca_name, i - 1)) ? -1 : 0;
    if (!rdn.object) return OpenSslError(absl::StatusCode::kInternal, "copying the CA name");
    m->issuer_rdns_.push_back(std::move(rdn));
  }
  auto basic = MakeExtension(NID_basic_constraints, "critical,CA:FALSE");
  auto usage = MakeExtension(NID_key_usage, "critical,digitalSignature");
  auto eku = MakeExtension(NID_ext_key_usage, "serverAuth");
  auto aki = MakeAuthorityKeyIdentifier(ca_cert);
  for (const absl::Status& st : {basic.status(), usage.status(), eku.status(), aki.status()}) {
    if (!st.ok()) return st;
  }
  m->basic_constraints_ = std::move(*basic);
  m->key_usage_ = std::move(*usage);
  m->extended_key_usage_ = std::move(*eku);
  m->authority_key_id_ = std::move(*aki);
  // Clients need the issuing CA (and any intermediates); a self-signed root is never sent.
  m->chain_.push_back(ca_cert);
  for (const auto& issuer : m->ca_->issuers()) {
    if (X509_check_issued(issuer.get(), issuer.get()) != X509_V_OK) m->chain_.push_back(issuer.get());
  }
  return m;
}

OpenSslLeafMinter::OpenSslLeafMinter(std::shared_ptr<const CertificateAuthority> ca, LeafMinterOptions options)
    : ca_(std::move(ca)), options_(std::move(options)), cache_(options_.cache_capacity, options_.cache_shards) {}

std::time_t OpenSslLeafMinter::Now() const { return options_.clock ? options_.clock() : std::time(nullptr); }

absl::StatusOr<LeafCacheKey> OpenSslLeafMinter::CacheKeyFor(X509* upstream, std::string_view sni) const {
  LeafCacheKey key;
  unsigned int len = 0;
  if (upstream == nullptr || X509_digest(upstream, sha256_.get(), key.upstream_sha256.data(), &len) != 1 ||
      len != key.upstream_sha256.size()) {
    return OpenSslError(absl::StatusCode::kInvalidArgument, "hashing the upstream certificate");
  }
  key.sni.assign(sni.data(), sni.size());
  return key;
}

absl::StatusOr<LeafPtr> OpenSslLeafMinter::MintFor(X509* verified_upstream, std::string_view sni) {
  auto key = CacheKeyFor(verified_upstream, sni);
  if (!key.ok()) return key.status();
  std::time_t now = Now();
  if (LeafPtr hit = cache_.Lookup(*key, now)) return hit;
  std::time_t fresh_until = 0;
  auto leaf = Mint(verified_upstream, now, &fresh_until);
  if (!leaf.ok()) return leaf.status();
  return cache_.Insert(*key, std::move(*leaf), fresh_until);
}

absl::StatusOr<LeafPtr> OpenSslLeafMinter::MintUncached(X509* verified_upstream) {
  std::time_t fresh_until = 0;
  return Mint(verified_upstream, Now(), &fresh_until);
}

absl::StatusOr<LeafPtr> OpenSslLeafMinter::Mint(X509* upstream, std::time_t now, std::time_t* fresh_until) {
  if (upstream == nullptr) return absl::InvalidArgumentError("no upstream certificate");
  auto upstream_end = TimeToUnix(X509_get0_notAfter(upstream));
  if (!upstream_end.ok()) return upstream_end.status();
  // Never longer than the upstream vouches for, the configured lifetime, or the CA itself.
  std::time_t not_before = now - kBackdateSeconds;
  std::time_t not_after = std::min({*upstream_end, now + static_cast<std::time_t>(options_.leaf_days) * 86400,
                                    ca_not_after_});
  if (not_after <= now) {
    return absl::FailedPreconditionError("the upstream certificate (or the CA) has expired; no leaf minted");
  }

  X509_NAME* upstream_subject = X509_get_subject_name(upstream);
  GeneralNamesPtr names = HostNamesOf(upstream);
  if (!names) names = NamesFromCommonName(upstream_subject);
  if (!names) {
    return absl::InvalidArgumentError("the upstream certificate names no DNS or IP host; no leaf minted");
  }

  auto generation = key_pool_->Current(now);
  if (!generation.ok()) return generation.status();
  const PooledLeafKey& leaf_key = key_pool_->Pick(**generation);

  X509Ptr cert(X509_new());
  if (!cert) return OpenSslError(absl::StatusCode::kResourceExhausted, "X509_new");
  // Names are filled in place from raw values: X509_set_*_name would deep-copy them
  // through a DER round trip, a measurable share of a miss.
  X509_NAME* subject = X509_get_subject_name(cert.get());
  for (int i = -1; (i = X509_NAME_get_index_by_NID(upstream_subject, NID_commonName, i)) >= 0;) {
    const ASN1_STRING* cn = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(upstream_subject, i));
    if (X509_NAME_add_entry_by_NID(subject, NID_commonName, ASN1_STRING_type(cn), ASN1_STRING_get0_data(cn),
                                   ASN1_STRING_length(cn), -1, 0) != 1) {
      return OpenSslError(absl::StatusCode::kInternal, "copying the upstream CN");
    }
  }
  X509_NAME* issuer = X509_get_issuer_name(cert.get());
  for (const auto& rdn : issuer_rdns_) {
    if (X509_NAME_add_entry_by_OBJ(issuer, rdn.object.get(), rdn.type,
                                   reinterpret_cast<const unsigned char*>(rdn.value.data()),
                                   static_cast<int>(rdn.value.size()), -1, rdn.new_set) != 1) {
      return OpenSslError(absl::StatusCode::kInternal, "setting the issuer name");
    }
  }
  // RFC 5280 4.2.1.6: with an empty subject the SAN extension must be critical.
  int san_critical = X509_NAME_entry_count(subject) == 0 ? 1 : 0;
  if (X509_set_version(cert.get(), 2) != 1 || !SetRandomSerial(cert.get()).ok() ||
      ASN1_TIME_set(X509_getm_notBefore(cert.get()), not_before) == nullptr ||
      ASN1_TIME_set(X509_getm_notAfter(cert.get()), not_after) == nullptr ||
      X509_set_pubkey(cert.get(), leaf_key.key.get()) != 1 ||
      X509_add_ext(cert.get(), basic_constraints_.get(), -1) != 1 ||
      X509_add_ext(cert.get(), key_usage_.get(), -1) != 1 ||
      X509_add_ext(cert.get(), extended_key_usage_.get(), -1) != 1 ||
      X509_add_ext(cert.get(), leaf_key.subject_key_id.get(), -1) != 1 ||
      X509_add_ext(cert.get(), authority_key_id_.get(), -1) != 1 ||
      X509_add1_ext_i2d(cert.get(), NID_subject_alt_name, names.get(), san_critical, X509V3_ADD_DEFAULT) != 1) {
    return OpenSslError(absl::StatusCode::kInternal, "assembling the leaf certificate");
  }
  if (X509_sign(cert.get(), ca_->key(), EVP_sha256()) <= 0) {
    return OpenSslError(absl::StatusCode::kInternal, "signing the leaf certificate");
  }

  auto leaf = std::make_shared<Leaf>();
  leaf->cert = cert.release();
  leaf->key = UpRef(leaf_key.key.get()).release();
  leaf->chain = sk_X509_new_null();
  if (leaf->chain == nullptr) return OpenSslError(absl::StatusCode::kResourceExhausted, "sk_X509_new_null");
  for (X509* c : chain_) {
    X509_up_ref(c);
    if (sk_X509_push(leaf->chain, c) <= 0) {
      X509_free(c);
      return OpenSslError(absl::StatusCode::kResourceExhausted, "building the chain");
    }
  }
  // Cached no longer than the leaf key generation lives, so rotated keys age out of service.
  *fresh_until = std::min(not_after - kRefreshMarginSeconds, (*generation)->retire_at);
  return LeafPtr(std::move(leaf));
}

}  // namespace egressguard::ca
