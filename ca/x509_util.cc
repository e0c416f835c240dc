#include "ca/x509_util.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>

#include <fmt/format.h>

#include "ca/key_file.h"

namespace egressguard::ca {

namespace {

// CA material is a few KB; anything bigger is not what we think it is.
constexpr std::size_t kMaxFileBytes = 1 << 20;

std::string Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return std::string(s);
}

std::string BioToString(BIO* bio) {
  char* data = nullptr;
  long len = BIO_get_mem_data(bio, &data);
  return len > 0 ? std::string(data, static_cast<std::size_t>(len)) : std::string();
}

std::string KeyIdFromKey(EVP_PKEY* key, bool* ok) {
  *ok = false;
  X509_PUBKEY* xpk = nullptr;
  if (X509_PUBKEY_set(&xpk, key) != 1) return {};
  const unsigned char* bits = nullptr;
  int bits_len = 0;
  std::string out;
  if (X509_PUBKEY_get0_param(nullptr, &bits, &bits_len, nullptr, xpk) == 1) {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    if (EVP_Digest(bits, static_cast<std::size_t>(bits_len), md, &md_len, EVP_sha1(), nullptr) == 1) {
      out.assign(reinterpret_cast<char*>(md), md_len);
      *ok = true;
    }
  }
  X509_PUBKEY_free(xpk);
  return out;
}

}  // namespace

std::string DrainOpenSslErrors() {
  std::string out;
  unsigned long e = 0;
  while ((e = ERR_get_error()) != 0) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof(buf));
    if (!out.empty()) out += "; ";
    out += buf;
  }
  return out;
}

absl::Status OpenSslError(absl::StatusCode code, std::string_view what) {
  std::string detail = DrainOpenSslErrors();
  return absl::Status(code, detail.empty() ? std::string(what) : fmt::format("{} ({})", what, detail));
}

absl::StatusOr<std::string> ReadSmallFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(fmt::format("{}: {}", path, std::strerror(errno)));
  std::string data;
  char buf[8192];
  while (in.read(buf, sizeof(buf)) || in.gcount() > 0) {
    data.append(buf, static_cast<std::size_t>(in.gcount()));
    if (data.size() > kMaxFileBytes) {
      return absl::InvalidArgumentError(fmt::format("{}: larger than {} bytes", path, kMaxFileBytes));
    }
  }
  return data;
}

absl::StatusOr<std::vector<X509Ptr>> ParseCertificatesPem(std::string_view pem, std::string_view origin) {
  if (pem.size() > kMaxFileBytes) {
    return absl::InvalidArgumentError(fmt::format("{}: larger than {} bytes", origin, kMaxFileBytes));
  }
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  if (!bio) return OpenSslError(absl::StatusCode::kInternal, "BIO_new_mem_buf");
  std::vector<X509Ptr> certs;
  ERR_clear_error();
  while (X509* x = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr)) certs.emplace_back(x);
  // Reading stops with "no start line" at the end of input; anything else is a broken PEM block.
  unsigned long err = ERR_peek_last_error();
  if (err != 0 && ERR_GET_REASON(err) != PEM_R_NO_START_LINE) {
    return OpenSslError(absl::StatusCode::kInvalidArgument,
                        fmt::format("{}: malformed PEM certificate", origin));
  }
  ERR_clear_error();
  if (certs.empty()) {
    return absl::InvalidArgumentError(fmt::format("{}: no PEM certificate found", origin));
  }
  return certs;
}

absl::StatusOr<std::vector<X509Ptr>> ReadCertificatesPem(const std::string& path) {
  auto data = ReadSmallFile(path);
  if (!data.ok()) return data.status();
  return ParseCertificatesPem(*data, path);
}

absl::StatusOr<EvpPkeyPtr> ReadPrivateKeyPem(const std::string& path) {
  if (auto st = CheckPrivateKeyPermissions(path); !st.ok()) return st;
  auto data = ReadSmallFile(path);
  if (!data.ok()) return data.status();
  BioPtr bio(BIO_new_mem_buf(data->data(), static_cast<int>(data->size())));
  // A null passphrase callback with an empty string makes encrypted keys fail instead of prompting.
  EVP_PKEY* key = PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, const_cast<char*>(""));
  OPENSSL_cleanse(data->data(), data->size());
  if (key == nullptr) {
    return OpenSslError(absl::StatusCode::kInvalidArgument,
                        fmt::format("{}: not an unencrypted PEM private key", path));
  }
  return EvpPkeyPtr(key);
}

std::string CertificateToPem(X509* cert) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  PEM_write_bio_X509(bio.get(), cert);
  return BioToString(bio.get());
}

absl::StatusOr<std::string> PrivateKeyToPem(EVP_PKEY* key) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr) != 1) {
    return OpenSslError(absl::StatusCode::kInternal, "encoding the private key");
  }
  std::string pem = BioToString(bio.get());
  // The memory BIO's buffer held the key too: wipe it before it is freed.
  char* data = nullptr;
  long len = BIO_get_mem_data(bio.get(), &data);
  if (len > 0) OPENSSL_cleanse(data, static_cast<std::size_t>(len));
  return pem;
}

std::string Sha256Fingerprint(X509* cert) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (X509_digest(cert, EVP_sha256(), md, &len) != 1) return "?";
  std::string out;
  for (unsigned int i = 0; i < len; ++i) {
    if (i != 0) out += ':';
    out += fmt::format("{:02X}", md[i]);
  }
  return out;
}

std::string NameToString(const X509_NAME* name) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  // RFC 2253 escaping, but in the order the name was written (as --subject takes it).
  X509_NAME_print_ex(bio.get(), name, 0, XN_FLAG_RFC2253 & ~(ASN1_STRFLGS_ESC_MSB | XN_FLAG_DN_REV));
  return BioToString(bio.get());
}

std::string TimeToString(const ASN1_TIME* t) {
  struct tm tm {};
  if (ASN1_TIME_to_tm(t, &tm) != 1) return "?";
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z", tm.tm_year + 1900, tm.tm_mon + 1,
                     tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

absl::StatusOr<std::time_t> TimeToUnix(const ASN1_TIME* t) {
  struct tm tm {};
  if (t == nullptr || ASN1_TIME_to_tm(t, &tm) != 1) {
    return absl::InvalidArgumentError("unreadable certificate time");
  }
  return timegm(&tm);
}

std::string DescribeKey(const EVP_PKEY* key) {
  int bits = EVP_PKEY_get_bits(key);
  if (EVP_PKEY_is_a(key, "EC")) {
    char group[64] = {0};
    std::size_t len = 0;
    if (EVP_PKEY_get_utf8_string_param(key, "group", group, sizeof(group), &len) == 1 &&
        std::string_view(group) == "prime256v1") {
      return "ecdsa-p256";
    }
    return fmt::format("ecdsa-{}", group[0] != '\0' ? group : "unknown");
  }
  if (EVP_PKEY_is_a(key, "RSA")) return fmt::format("rsa-{}", bits);
  const char* type = EVP_PKEY_get0_type_name(key);
  return fmt::format("{}-{}", type != nullptr ? type : "unknown", bits);
}

absl::StatusOr<X509NamePtr> ParseSubject(std::string_view subject) {
  std::vector<std::string> parts;
  char sep = ',';
  if (!subject.empty() && subject.front() == '/') {
    sep = '/';
    subject.remove_prefix(1);
  }
  std::size_t start = 0;
  while (start <= subject.size()) {
    std::size_t end = subject.find(sep, start);
    if (end == std::string_view::npos) end = subject.size();
    parts.push_back(Trim(subject.substr(start, end - start)));
    start = end + 1;
  }
  X509NamePtr name(X509_NAME_new());
  for (const auto& part : parts) {
    if (part.empty()) continue;
    auto eq = part.find('=');
    if (eq == std::string::npos || eq == 0 || eq + 1 == part.size()) {
      return absl::InvalidArgumentError(
          fmt::format("subject component '{}' is not KEY=VALUE (e.g. CN=egressguard CA,O=Example)", part));
    }
    std::string key = Trim(std::string_view(part).substr(0, eq));
    std::string value = Trim(std::string_view(part).substr(eq + 1));
    if (X509_NAME_add_entry_by_txt(name.get(), key.c_str(), MBSTRING_UTF8,
                                   reinterpret_cast<const unsigned char*>(value.c_str()), -1, -1, 0) != 1) {
      ERR_clear_error();
      return absl::InvalidArgumentError(
          fmt::format("subject component '{}': unknown attribute or bad value", part));
    }
  }
  if (X509_NAME_entry_count(name.get()) == 0) {
    return absl::InvalidArgumentError("subject is empty");
  }
  return name;
}

absl::Status SetRandomSerial(X509* cert) {
  unsigned char bytes[16];
  if (RAND_bytes(bytes, sizeof(bytes)) != 1) {
    return OpenSslError(absl::StatusCode::kInternal, "RAND_bytes");
  }
  // DER INTEGERs are signed: clear the top bit so the serial is positive, and never zero.
  bytes[0] &= 0x7f;
  bytes[0] |= 0x01;
  BignumPtr bn(BN_bin2bn(bytes, sizeof(bytes), nullptr));
  if (!bn || BN_to_ASN1_INTEGER(bn.get(), X509_get_serialNumber(cert)) == nullptr) {
    return OpenSslError(absl::StatusCode::kInternal, "setting the serial number");
  }
  return absl::OkStatus();
}

absl::StatusOr<X509ExtensionPtr> MakeSubjectKeyIdentifier(EVP_PKEY* key) {
  bool ok = false;
  std::string id = KeyIdFromKey(key, &ok);
  if (!ok) return OpenSslError(absl::StatusCode::kInternal, "computing the subject key identifier");
  ASN1_OCTET_STRING* oct = ASN1_OCTET_STRING_new();
  ASN1_OCTET_STRING_set(oct, reinterpret_cast<const unsigned char*>(id.data()), static_cast<int>(id.size()));
  X509_EXTENSION* ext = X509V3_EXT_i2d(NID_subject_key_identifier, 0, oct);
  ASN1_OCTET_STRING_free(oct);
  if (ext == nullptr) return OpenSslError(absl::StatusCode::kInternal, "encoding subjectKeyIdentifier");
  return X509ExtensionPtr(ext);
}

absl::StatusOr<X509ExtensionPtr> MakeAuthorityKeyIdentifier(X509* issuer) {
  std::string id;
  if (const ASN1_OCTET_STRING* ski = X509_get0_subject_key_id(issuer); ski != nullptr) {
    id.assign(reinterpret_cast<const char*>(ASN1_STRING_get0_data(ski)),
              static_cast<std::size_t>(ASN1_STRING_length(ski)));
  } else {
    bool ok = false;
    id = KeyIdFromKey(X509_get0_pubkey(issuer), &ok);
    if (!ok) return OpenSslError(absl::StatusCode::kInternal, "computing the issuer key identifier");
  }
  AUTHORITY_KEYID* akid = AUTHORITY_KEYID_new();
  akid->keyid = ASN1_OCTET_STRING_new();
  ASN1_OCTET_STRING_set(akid->keyid, reinterpret_cast<const unsigned char*>(id.data()),
                        static_cast<int>(id.size()));
  X509_EXTENSION* ext = X509V3_EXT_i2d(NID_authority_key_identifier, 0, akid);
  AUTHORITY_KEYID_free(akid);
  if (ext == nullptr) return OpenSslError(absl::StatusCode::kInternal, "encoding authorityKeyIdentifier");
  return X509ExtensionPtr(ext);
}

absl::StatusOr<X509ExtensionPtr> MakeExtension(int nid, const char* value) {
  X509_EXTENSION* ext = X509V3_EXT_nconf_nid(nullptr, nullptr, nid, value);
  if (ext == nullptr) {
    return OpenSslError(absl::StatusCode::kInternal, fmt::format("building extension {}", value));
  }
  return X509ExtensionPtr(ext);
}

}  // namespace egressguard::ca
