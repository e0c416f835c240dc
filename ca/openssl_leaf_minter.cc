#include "ca/openssl_leaf_minter.h"

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <vector>

#include <fmt/format.h>

#include "ca/leaf_der.h"
#include "ca/x509_util.h"

namespace egressguard::ca {

namespace {

// Clients with clocks a little behind must accept a leaf minted a moment ago.
constexpr std::time_t kBackdateSeconds = 3600;
// A cached leaf is re-minted this long before it expires, so no client gets one at the edge.
constexpr std::time_t kRefreshMarginSeconds = 300;
constexpr int kMaxLeafDays = 397;  // the CA/Browser Forum ceiling for TLS server certificates
// A leaf TBS is ~0.5 KiB; the per-thread buffer keeps up to this much between mints.
constexpr std::size_t kKeptTbsCapacity = 16 * 1024;

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

std::string_view View(const ASN1_STRING* s) {
  return {reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)), static_cast<std::size_t>(ASN1_STRING_length(s))};
}


// The DER GeneralNames the leaf carries. The upstream's SAN is used as is when it holds
// only DNS and IP names (the common case: a view of the upstream's own bytes, no decode,
// no re-encode); otherwise its DNS and IP names are picked out into `storage`, and failing
// those the CN stands in.
absl::StatusOr<std::string_view> LeafSubjectAltNames(X509* upstream, std::string& storage) {
  int idx = X509_get_ext_by_NID(upstream, NID_subject_alt_name, -1);
  // Two SAN extensions make the certificate ambiguous; X509_get_ext_d2i refuses it too.
  if (idx >= 0 && X509_get_ext_by_NID(upstream, NID_subject_alt_name, idx) < 0) {
    std::string_view raw = View(X509_EXTENSION_get_data(X509_get_ext(upstream, idx)));
    if (der::IsHostOnlyGeneralNames(raw)) return raw;
  }
  GeneralNamesPtr names = HostNamesOf(upstream);
  if (!names) names = NamesFromCommonName(X509_get_subject_name(upstream));
  if (!names) return absl::InvalidArgumentError("the upstream certificate names no DNS or IP host; no leaf minted");
  auto encoded = ToDer<GENERAL_NAMES>(names.get(), i2d_GENERAL_NAMES, "encoding the leaf SAN");
  if (!encoded.ok()) return encoded.status();
  storage = std::move(*encoded);
  return std::string_view(storage);
}

// Appends a new extension to `cert` without X509_add_ext's deep copy (an i2d + d2i round
// trip per extension, ~7k instructions each), pushing it onto the certificate's extension
// list (Mint creates that list with the first extension; failing that, X509_add_ext does).
// X509_get0_extensions returns it const only as a read-only view: the list is the
// certificate's own heap object, which X509_free frees with everything pushed on it.
bool AppendExtension(X509* cert, const ASN1_OBJECT* object, int critical, std::string_view value) {
  X509ExtensionPtr ext(X509_EXTENSION_new());
  if (!ext || X509_EXTENSION_set_object(ext.get(), object) != 1 ||
      X509_EXTENSION_set_critical(ext.get(), critical) != 1 ||
      ASN1_OCTET_STRING_set(X509_EXTENSION_get_data(ext.get()), reinterpret_cast<const unsigned char*>(value.data()),
                            static_cast<int>(value.size())) != 1) {
    return false;
  }
  auto* list = const_cast<STACK_OF(X509_EXTENSION)*>(X509_get0_extensions(cert));
  if (list == nullptr) return X509_add_ext(cert, ext.get(), -1) == 1;
  if (sk_X509_EXTENSION_push(list, ext.get()) <= 0) return false;
  ext.release();
  return true;
}

bool AppendExtension(X509* cert, X509_EXTENSION* ext) {
  return AppendExtension(cert, X509_EXTENSION_get_object(ext), X509_EXTENSION_get_critical(ext),
                         View(X509_EXTENSION_get_data(ext)));
}

// The universal character string types, whose DER is their tag and their bytes as held.
bool IsCharacterStringType(int type) {
  switch (type) {
    case V_ASN1_UTF8STRING:
    case V_ASN1_NUMERICSTRING:
    case V_ASN1_PRINTABLESTRING:
    case V_ASN1_T61STRING:
    case V_ASN1_VIDEOTEXSTRING:
    case V_ASN1_IA5STRING:
    case V_ASN1_GRAPHICSTRING:
    case V_ASN1_VISIBLESTRING:
    case V_ASN1_GENERALSTRING:
    case V_ASN1_UNIVERSALSTRING:
    case V_ASN1_BMPSTRING:
      return true;
    default:
      return false;
  }
}

// Random bytes for serial numbers, drawn from the DRBG in batches: one RAND_bytes call
// per serial costs ~6k instructions of DRBG locking and bookkeeping, 2% of a signature.
// Serials are public once issued; they only need to be unpredictable beforehand.
bool RandomSerialBytes(unsigned char* out, std::size_t n) {
  struct Batch {
    std::array<unsigned char, 1024> bytes;
    std::size_t used = 1024;
  };
  thread_local Batch batch;
  if (n > batch.bytes.size()) return false;
  if (batch.bytes.size() - batch.used < n) {
    if (RAND_bytes(batch.bytes.data(), static_cast<int>(batch.bytes.size())) != 1) return false;
    batch.used = 0;
  }
  std::memcpy(out, batch.bytes.data() + batch.used, n);
  OPENSSL_cleanse(batch.bytes.data() + batch.used, n);  // each byte is handed out once
  batch.used += n;
  return true;
}

// ASN1_TIME_set without its printf: UTCTime through 2049, GeneralizedTime from 2050
// (RFC 5280 4.1.2.5), the two forms X509 objects and their DER carry.
bool SetTime(ASN1_TIME* t, std::time_t when) {
  std::tm tm{};
  if (gmtime_r(&when, &tm) == nullptr) return false;
  int year = tm.tm_year + 1900;
  if (year < 1950 || year > 9999) return false;
  bool utc = year < 2050;
  char buf[16];
  char* p = buf;
  auto two = [&p](int v) {
    *p++ = static_cast<char>('0' + v / 10);
    *p++ = static_cast<char>('0' + v % 10);
  };
  if (!utc) two(year / 100);
  two(year % 100);
  two(tm.tm_mon + 1);
  two(tm.tm_mday);
  two(tm.tm_hour);
  two(tm.tm_min);
  two(tm.tm_sec);
  *p++ = 'Z';
  if (ASN1_STRING_set(t, buf, static_cast<int>(p - buf)) != 1) return false;
  t->type = utc ? V_ASN1_UTCTIME : V_ASN1_GENERALIZEDTIME;
  return true;
}

// The AlgorithmIdentifier the CA key signs under (as X509_sign would record it).
absl::StatusOr<X509AlgorPtr> SignatureAlgorithmOf(EVP_PKEY* key) {
  EvpMdCtxPtr ctx(EVP_MD_CTX_new());
  EVP_PKEY_CTX* pctx = nullptr;
  std::array<unsigned char, 128> der{};
  OSSL_PARAM params[] = {OSSL_PARAM_construct_octet_string(OSSL_SIGNATURE_PARAM_ALGORITHM_ID, der.data(), der.size()),
                         OSSL_PARAM_construct_end()};
  if (!ctx || EVP_DigestSignInit(ctx.get(), &pctx, EVP_sha256(), nullptr, key) != 1 ||
      EVP_PKEY_CTX_get_params(pctx, params) != 1 || !OSSL_PARAM_modified(&params[0])) {
    return OpenSslError(absl::StatusCode::kInternal, "asking the CA key for its signature algorithm");
  }
  const unsigned char* p = der.data();
  X509AlgorPtr algor(d2i_X509_ALGOR(nullptr, &p, static_cast<long>(params[0].return_size)));
  if (!algor) return OpenSslError(absl::StatusCode::kInternal, "parsing the CA signature algorithm");
  return algor;
}

absl::StatusOr<EvpPkeyPtr> TemporaryKey() {
  EvpPkeyPtr key(EVP_EC_gen("P-256"));
  if (!key) return OpenSslError(absl::StatusCode::kInternal, "generating a probe key");
  return key;
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
  auto issuer_name = ToDer<X509_NAME>(X509_get_subject_name(ca_cert), i2d_X509_NAME, "encoding the CA name");
  if (!issuer_name.ok()) return issuer_name.status();
  m->issuer_der_ = std::move(*issuer_name);
  X509_NAME* ca_name = X509_get_subject_name(ca_cert);
  for (int i = 0; i < X509_NAME_entry_count(ca_name); ++i) {
    const X509_NAME_ENTRY* e = X509_NAME_get_entry(ca_name, i);
    IssuerRdn rdn;
    rdn.entry.reset(X509_NAME_ENTRY_dup(e));
    // Multi-valued RDNs: an entry sharing the previous entry's set joins it.
    rdn.set = i > 0 && X509_NAME_ENTRY_set(e) == X509_NAME_ENTRY_set(X509_NAME_get_entry(ca_name, i - 1)) ? -1 : 0;
    if (!rdn.entry) return OpenSslError(absl::StatusCode::kInternal, "copying the CA name");
    m->issuer_rdns_.push_back(std::move(rdn));
  }
  auto signer = m->NewSigner();
  if (!signer.ok()) return signer.status();
  m->idle_signers_.push_back(std::move(*signer));
  auto algorithm = SignatureAlgorithmOf(m->ca_->key());
  if (!algorithm.ok()) return algorithm.status();
  auto algorithm_der = ToDer<X509_ALGOR>(algorithm->get(), i2d_X509_ALGOR, "encoding the signature algorithm");
  if (!algorithm_der.ok()) return algorithm_der.status();
  m->signature_algorithm_ = std::move(*algorithm);
  m->signature_algorithm_der_ = std::move(*algorithm_der);
  std::vector<absl::StatusOr<X509ExtensionPtr>> fixed;
  fixed.push_back(MakeExtension(NID_basic_constraints, "critical,CA:FALSE"));
  fixed.push_back(MakeExtension(NID_key_usage, "critical,digitalSignature"));
  fixed.push_back(MakeExtension(NID_ext_key_usage, "serverAuth"));
  fixed.push_back(MakeAuthorityKeyIdentifier(ca_cert));
  for (auto& ext : fixed) {
    if (!ext.ok()) return ext.status();
    auto der = ToDer<X509_EXTENSION>(ext->get(), i2d_X509_EXTENSION, "encoding a leaf extension");
    if (!der.ok()) return der.status();
    m->fixed_extensions_.push_back(FixedExtension{std::move(*ext), std::move(*der)});
  }
  // The AKI follows the per-key SKI, so it is kept apart from the leading three.
  m->authority_key_id_ = std::move(m->fixed_extensions_.back());
  m->fixed_extensions_.pop_back();
  // Clients need the issuing CA (and any intermediates); a self-signed root is never sent.
  m->chain_.reset(sk_X509_new_null(), [](STACK_OF(X509)* chain) { sk_X509_pop_free(chain, X509_free); });
  if (!m->chain_) return OpenSslError(absl::StatusCode::kResourceExhausted, "sk_X509_new_null");
  auto add_to_chain = [&](X509* cert) {
    X509Ptr ref = UpRef(cert);
    if (sk_X509_push(m->chain_.get(), ref.get()) <= 0) return false;
    ref.release();  // the stack holds it now
    return true;
  };
  bool chain_ok = add_to_chain(ca_cert);
  for (const auto& issuer : m->ca_->issuers()) {
    if (chain_ok && X509_check_issued(issuer.get(), issuer.get()) != X509_V_OK) chain_ok = add_to_chain(issuer.get());
  }
  if (!chain_ok) return OpenSslError(absl::StatusCode::kResourceExhausted, "building the chain");
  if (absl::Status st = m->SelfCheck(); !st.ok()) return st;
  return m;
}

OpenSslLeafMinter::OpenSslLeafMinter(std::shared_ptr<const CertificateAuthority> ca, LeafMinterOptions options)
    : ca_(std::move(ca)), options_(std::move(options)), cache_(options_.cache_capacity, options_.cache_shards) {}

std::time_t OpenSslLeafMinter::Now() const { return options_.clock ? options_.clock() : std::time(nullptr); }

absl::StatusOr<LeafCacheKey> OpenSslLeafMinter::CacheKeyFor(X509* upstream, std::string_view sni) const {
  // X509_digest would allocate a DER copy and a digest context per call (half its cost for
  // a typical certificate): each thread keeps both. A certificate parsed off the wire
  // encodes from its cached bytes, so the DER costs a copy, not an encoding.
  struct Scratch {
    EvpMdCtxPtr ctx{EVP_MD_CTX_new()};
    std::vector<unsigned char> der;
  };
  thread_local Scratch scratch;
  constexpr std::size_t kKeptDerCapacity = 16 * 1024;
  LeafCacheKey key;
  int len = upstream == nullptr ? -1 : i2d_X509(upstream, nullptr);
  bool ok = len > 0 && scratch.ctx != nullptr;
  if (ok) {
    scratch.der.resize(static_cast<std::size_t>(len));
    unsigned char* p = scratch.der.data();
    unsigned int digest_len = 0;
    ok = i2d_X509(upstream, &p) == len && EVP_DigestInit_ex(scratch.ctx.get(), sha256_.get(), nullptr) == 1 &&
         EVP_DigestUpdate(scratch.ctx.get(), scratch.der.data(), scratch.der.size()) == 1 &&
         EVP_DigestFinal_ex(scratch.ctx.get(), key.upstream_sha256.data(), &digest_len) == 1 &&
         digest_len == key.upstream_sha256.size();
    if (scratch.der.capacity() > kKeptDerCapacity) std::vector<unsigned char>().swap(scratch.der);
  }
  if (!ok) return OpenSslError(absl::StatusCode::kInvalidArgument, "hashing the upstream certificate");
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
  return cache_.Insert(std::move(*key), std::move(*leaf), fresh_until);
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

  std::string san_storage;
  auto san = LeafSubjectAltNames(upstream, san_storage);
  if (!san.ok()) return san.status();

  auto generation = key_pool_->Current(now);
  if (!generation.ok()) return generation.status();
  const PooledLeafKey& leaf_key = key_pool_->Pick(**generation);

  // The object and its TBS DER are built side by side from the same values.
  X509Ptr cert(X509_new());
  if (!cert) return OpenSslError(absl::StatusCode::kResourceExhausted, "X509_new");
  auto fail = [](const char* what) { return OpenSslError(absl::StatusCode::kInternal, what); };

  // A random, positive, non-zero 128-bit serial: the top byte is 0x01..0x7f, so the DER
  // INTEGER is exactly these 16 bytes.
  std::array<unsigned char, 16> serial{};
  if (!RandomSerialBytes(serial.data(), serial.size())) return fail("drawing a random serial");
  serial[0] = static_cast<unsigned char>((serial[0] & 0x7f) | 0x01);
  ASN1_TIME* not_before_time = X509_getm_notBefore(cert.get());
  ASN1_TIME* not_after_time = X509_getm_notAfter(cert.get());
  if (X509_set_version(cert.get(), 2) != 1 ||
      ASN1_STRING_set(X509_get_serialNumber(cert.get()), serial.data(), serial.size()) != 1 ||
      !SetTime(not_before_time, not_before) || !SetTime(not_after_time, not_after) ||
      X509_set_pubkey(cert.get(), leaf_key.key.get()) != 1 ||
      X509_ALGOR_copy(const_cast<X509_ALGOR*>(X509_get0_tbs_sigalg(cert.get())), signature_algorithm_.get()) != 1) {
    return fail("assembling the leaf certificate");
  }

  X509_NAME* issuer = X509_get_issuer_name(cert.get());
  for (const auto& rdn : issuer_rdns_) {
    if (X509_NAME_add_entry(issuer, rdn.entry.get(), -1, rdn.set) != 1) {
      return fail("setting the issuer name");
    }
  }

  // The TBS DER goes into one buffer per thread, which only ever grows.
  thread_local std::string tbs;
  tbs.clear();
  der::Writer w(tbs);
  std::size_t tbs_mark = w.Open(der::kSequence);
  w.Append({"\xa0\x03\x02\x01\x02", 5});  // [0] version v3
  w.Tlv(der::kInteger, {reinterpret_cast<const char*>(serial.data()), serial.size()});
  w.Append(signature_algorithm_der_);
  w.Append(issuer_der_);
  std::size_t validity_mark = w.Open(der::kSequence);
  w.Tlv(static_cast<std::uint8_t>(ASN1_STRING_type(not_before_time)), View(not_before_time));
  w.Tlv(static_cast<std::uint8_t>(ASN1_STRING_type(not_after_time)), View(not_after_time));
  w.Close(validity_mark);

  // Subject: every upstream CN, each its own RDN, type and bytes as the upstream has them.
  X509_NAME* upstream_subject = X509_get_subject_name(upstream);
  X509_NAME* subject = X509_get_subject_name(cert.get());
  static constexpr std::string_view kCnOid("\x06\x03\x55\x04\x03", 5);
  std::size_t subject_mark = w.Open(der::kSequence);
  for (int i = -1; (i = X509_NAME_get_index_by_NID(upstream_subject, NID_commonName, i)) >= 0;) {
    const X509_NAME_ENTRY* entry = X509_NAME_get_entry(upstream_subject, i);
    const ASN1_STRING* cn = X509_NAME_ENTRY_get_data(entry);
    int type = ASN1_STRING_type(cn);
    // A CN that is not a character string (OpenSSL also admits BIT STRING, SEQUENCE or an
    // unknown type there) names no host and does not encode as tag + bytes: not copied.
    if (!IsCharacterStringType(type)) continue;
    // The upstream's entry itself, copied as one RDN of its own (set 0).
    if (X509_NAME_add_entry(subject, entry, -1, 0) != 1) {
      return fail("copying the upstream CN");
    }
    std::size_t rdn_mark = w.Open(der::kSet);
    std::size_t attribute_mark = w.Open(der::kSequence);
    w.Append(kCnOid);
    w.Tlv(static_cast<std::uint8_t>(type), View(cn));
    w.Close(attribute_mark);
    w.Close(rdn_mark);
  }
  w.Close(subject_mark);
  w.Append(leaf_key.spki_der);

  // RFC 5280 4.2.1.6: with an empty subject the SAN extension must be critical.
  int san_critical = X509_NAME_entry_count(subject) == 0 ? 1 : 0;
  std::size_t extensions_mark = w.Open(der::kExplicit3);
  std::size_t extension_list_mark = w.Open(der::kSequence);
  // The SKI comes first: X509_add1_ext_i2d creates the certificate's extension list around
  // the encoding of a bare OCTET STRING (~0.2 us), where X509_add_ext would deep-copy a
  // whole extension (~0.5 us). The others are pushed onto that list.
  if (X509_add1_ext_i2d(cert.get(), NID_subject_key_identifier, leaf_key.subject_key_id_value.get(), 0,
                        X509V3_ADD_APPEND) != 1) {
    return fail("adding the leaf subjectKeyIdentifier");
  }
  w.Append(leaf_key.subject_key_id_der);
  for (const FixedExtension& ext : fixed_extensions_) {
    if (!AppendExtension(cert.get(), ext.ext.get())) return fail("adding a leaf extension");
    w.Append(ext.der);
  }
  if (!AppendExtension(cert.get(), authority_key_id_.ext.get()) ||
      !AppendExtension(cert.get(), OBJ_nid2obj(NID_subject_alt_name), san_critical, *san)) {
    return fail("adding a leaf extension");
  }
  w.Append(authority_key_id_.der);
  static constexpr std::string_view kSanOid("\x06\x03\x55\x1d\x11", 5);
  std::size_t san_mark = w.Open(der::kSequence);
  w.Append(kSanOid);
  if (san_critical) w.Append({"\x01\x01\xff", 3});
  w.Tlv(der::kOctetString, *san);
  w.Close(san_mark);
  w.Close(extension_list_mark);
  w.Close(extensions_mark);
  w.Close(tbs_mark);
  if (!w.ok()) return absl::InvalidArgumentError("the upstream certificate's names are too long for a leaf");

  std::array<unsigned char, 1024> signature{};  // RSA-4096 at most: checked by EVP_DigestSign
  std::size_t signature_len = signature.size();
  absl::Status signed_ok = Sign(tbs, signature.data(), &signature_len);
  // An upstream with thousands of names made this one big: the thread does not keep that.
  if (tbs.capacity() > kKeptTbsCapacity) std::string().swap(tbs);
  if (!signed_ok.ok()) return signed_ok;
  // The certificate's signature fields, filled in place as X509_sign does (see
  // AppendExtension on why the const views may be written through).
  const ASN1_BIT_STRING* signature_view = nullptr;
  const X509_ALGOR* algorithm_view = nullptr;
  X509_get0_signature(&signature_view, &algorithm_view, cert.get());
  auto* signature_bits = const_cast<ASN1_BIT_STRING*>(signature_view);
  if (ASN1_BIT_STRING_set(signature_bits, signature.data(), static_cast<int>(signature_len)) != 1 ||
      X509_ALGOR_copy(const_cast<X509_ALGOR*>(algorithm_view), signature_algorithm_.get()) != 1) {
    return fail("setting the leaf signature");
  }
  signature_bits->flags &= ~(ASN1_STRING_FLAG_BITS_LEFT | 0x07);  // no unused bits
  signature_bits->flags |= ASN1_STRING_FLAG_BITS_LEFT;

  auto leaf = std::make_shared<Leaf>();
  leaf->cert = cert.release();
  leaf->key = UpRef(leaf_key.key.get()).release();
  leaf->chain = chain_.get();
  leaf->chain_owner = chain_;
  // Cached no longer than the leaf key generation lives, so rotated keys age out of service.
  *fresh_until = std::min(not_after - kRefreshMarginSeconds, (*generation)->retire_at);
  return LeafPtr(std::move(leaf));
}

absl::StatusOr<std::unique_ptr<OpenSslLeafMinter::Signer>> OpenSslLeafMinter::NewSigner() const {
  auto signer = std::make_unique<Signer>();
  signer->digest.reset(EVP_MD_CTX_new());
  signer->sign.reset(EVP_PKEY_CTX_new_from_pkey(nullptr, ca_->key(), nullptr));
  // The signature md makes RSA wrap the digest in a DigestInfo (PKCS#1 v1.5), as
  // DigestSign would; ECDSA checks the digest length against it.
  if (!signer->digest || !signer->sign || EVP_PKEY_sign_init(signer->sign.get()) != 1 ||
      EVP_PKEY_CTX_set_signature_md(signer->sign.get(), sha256_.get()) != 1) {
    return OpenSslError(absl::StatusCode::kInternal, "setting up CA signing");
  }
  return signer;
}

absl::Status OpenSslLeafMinter::Sign(std::string_view tbs, unsigned char* signature, std::size_t* signature_len) {
  std::unique_ptr<Signer> signer;
  {
    std::lock_guard lock(signers_mu_);
    if (!idle_signers_.empty()) {
      signer = std::move(idle_signers_.back());
      idle_signers_.pop_back();
    }
  }
  if (!signer) {
    auto fresh = NewSigner();
    if (!fresh.ok()) return fresh.status();
    signer = std::move(*fresh);
  }
  std::array<unsigned char, EVP_MAX_MD_SIZE> digest{};
  unsigned int digest_len = 0;
  bool ok = EVP_DigestInit_ex(signer->digest.get(), sha256_.get(), nullptr) == 1 &&
            EVP_DigestUpdate(signer->digest.get(), tbs.data(), tbs.size()) == 1 &&
            EVP_DigestFinal_ex(signer->digest.get(), digest.data(), &digest_len) == 1 &&
            EVP_PKEY_sign(signer->sign.get(), signature, signature_len, digest.data(), digest_len) == 1;
  if (!ok) return OpenSslError(absl::StatusCode::kInternal, "signing the leaf certificate");
  std::lock_guard lock(signers_mu_);
  idle_signers_.push_back(std::move(signer));
  return absl::OkStatus();
}

absl::Status OpenSslLeafMinter::SelfCheck() {
  auto probe_key = TemporaryKey();
  if (!probe_key.ok()) return probe_key.status();
  X509Ptr probe(X509_new());
  X509_NAME* name = probe ? X509_get_subject_name(probe.get()) : nullptr;
  auto san = MakeExtension(NID_subject_alt_name, "DNS:self-check.egressguard.invalid,IP:192.0.2.1,IP:2001:db8::1");
  if (!san.ok()) return san.status();
  std::time_t now = Now();
  if (name == nullptr ||
      X509_NAME_add_entry_by_NID(name, NID_commonName, MBSTRING_ASC,
                                 reinterpret_cast<const unsigned char*>("self-check.egressguard.invalid"), -1, -1,
                                 0) != 1 ||
      ASN1_TIME_set(X509_getm_notBefore(probe.get()), now - 86400) == nullptr ||
      ASN1_TIME_set(X509_getm_notAfter(probe.get()), now + 86400) == nullptr ||
      X509_set_pubkey(probe.get(), probe_key->get()) != 1 || X509_add_ext(probe.get(), san->get(), -1) != 1) {
    return OpenSslError(absl::StatusCode::kInternal, "building the self-check upstream");
  }
  std::time_t fresh_until = 0;
  auto leaf = Mint(probe.get(), now, &fresh_until);
  if (!leaf.ok()) return leaf.status();
  // X509_verify re-encodes the TBS from the object, exactly as a handshake will send it.
  if (X509_verify((*leaf)->cert, X509_get0_pubkey(ca_->cert())) != 1) {
    return OpenSslError(absl::StatusCode::kInternal,
                        "leaf self-check: the certificate object does not re-encode to the signed bytes");
  }
  return absl::OkStatus();
}

}  // namespace egressguard::ca
