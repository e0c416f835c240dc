#include "tests/unit/ca/test_pki.h"

#include <arpa/inet.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <stdexcept>

#include "ca/x509_util.h"

namespace egressguard::ca::testing {

namespace {

void Check(bool ok, const char* what) {
  if (!ok) throw std::runtime_error(std::string(what) + ": " + DrainOpenSslErrors());
}

void AddExt(X509* cert, X509* issuer, int nid, const char* value) {
  X509V3_CTX ctx;
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
  Check(ext != nullptr, value);
  Check(X509_add_ext(cert, ext, -1) == 1, "X509_add_ext");
  X509_EXTENSION_free(ext);
}

X509Ptr NewCert(EVP_PKEY* key, const std::string& cn, long nb, long na) {
  X509Ptr cert(X509_new());
  X509_set_version(cert.get(), 2);
  Check(SetRandomSerial(cert.get()).ok(), "serial");
  if (!cn.empty()) {
    X509_NAME_add_entry_by_txt(X509_get_subject_name(cert.get()), "CN", MBSTRING_UTF8,
                               reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1, 0);
  }
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), nb);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), na);
  X509_set_pubkey(cert.get(), key);
  return cert;
}

}  // namespace

KeyAndCert MakeRoot(const std::string& cn, long not_before_offset_s, long not_after_offset_s, int pathlen) {
  KeyAndCert out;
  out.key.reset(EVP_EC_gen("P-256"));
  Check(out.key != nullptr, "keygen");
  out.cert = NewCert(out.key.get(), cn, not_before_offset_s, not_after_offset_s);
  X509_set_issuer_name(out.cert.get(), X509_get_subject_name(out.cert.get()));
  std::string bc = pathlen < 0 ? "critical,CA:TRUE" : "critical,CA:TRUE,pathlen:" + std::to_string(pathlen);
  AddExt(out.cert.get(), out.cert.get(), NID_basic_constraints, bc.c_str());
  AddExt(out.cert.get(), out.cert.get(), NID_key_usage, "critical,keyCertSign,cRLSign");
  AddExt(out.cert.get(), out.cert.get(), NID_subject_key_identifier, "hash");
  Check(X509_sign(out.cert.get(), out.key.get(), EVP_sha256()) > 0, "sign root");
  return out;
}

KeyAndCert MakeServerCert(const KeyAndCert& issuer, const ServerCertSpec& spec) {
  KeyAndCert out;
  out.key.reset(EVP_EC_gen("P-256"));
  out.cert = NewCert(out.key.get(), spec.cn, -86400, spec.not_after_offset_s);
  X509_set_issuer_name(out.cert.get(), X509_get_subject_name(issuer.cert.get()));
  AddExt(out.cert.get(), issuer.cert.get(), NID_basic_constraints, "critical,CA:FALSE");
  AddExt(out.cert.get(), issuer.cert.get(), NID_ext_key_usage, "serverAuth");
  std::string san;
  auto add = [&](const std::string& kind, const std::string& v) {
    if (!san.empty()) san += ",";
    san += kind + ":" + v;
  };
  for (const auto& d : spec.dns) add("DNS", d);
  for (const auto& i : spec.ips) add("IP", i);
  for (const auto& e : spec.emails) add("email", e);
  if (!san.empty()) AddExt(out.cert.get(), issuer.cert.get(), NID_subject_alt_name, san.c_str());
  Check(X509_sign(out.cert.get(), issuer.key.get(), EVP_sha256()) > 0, "sign server");
  return out;
}

int Verify(X509* leaf, const std::vector<X509*>& anchors, STACK_OF(X509)* untrusted, const std::string& host) {
  X509StorePtr store(X509_STORE_new());
  for (X509* a : anchors) X509_STORE_add_cert(store.get(), a);
  X509StoreCtxPtr ctx(X509_STORE_CTX_new());
  Check(X509_STORE_CTX_init(ctx.get(), store.get(), leaf, untrusted) == 1, "ctx init");
  X509_STORE_CTX_set_purpose(ctx.get(), X509_PURPOSE_SSL_SERVER);
  if (!host.empty()) X509_VERIFY_PARAM_set1_host(X509_STORE_CTX_get0_param(ctx.get()), host.c_str(), 0);
  int rc = X509_verify_cert(ctx.get());
  int err = X509_STORE_CTX_get_error(ctx.get());
  return rc == 1 ? X509_V_OK : (err == X509_V_OK ? -1 : err);
}

std::vector<std::string> SanStrings(X509* cert) {
  std::vector<std::string> out;
  auto* names = static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr));
  if (names == nullptr) return out;
  for (int i = 0; i < sk_GENERAL_NAME_num(names); ++i) {
    GENERAL_NAME* gn = sk_GENERAL_NAME_value(names, i);
    if (gn->type == GEN_DNS) {
      out.push_back("DNS:" + std::string(reinterpret_cast<const char*>(ASN1_STRING_get0_data(gn->d.dNSName)),
                                         static_cast<std::size_t>(ASN1_STRING_length(gn->d.dNSName))));
    } else if (gn->type == GEN_IPADD) {
      char text[INET6_ADDRSTRLEN] = {0};
      int family = gn->d.iPAddress->length == 4 ? AF_INET : AF_INET6;
      inet_ntop(family, gn->d.iPAddress->data, text, sizeof(text));
      out.push_back(std::string("IP:") + text);
    } else {
      out.push_back("other:" + std::to_string(gn->type));
    }
  }
  GENERAL_NAMES_free(names);
  return out;
}

std::time_t NotAfter(X509* cert) { return *TimeToUnix(X509_get0_notAfter(cert)); }

std::string WritePem(const std::string& path, X509* cert) {
  std::ofstream(path, std::ios::app) << CertificateToPem(cert);
  return path;
}

void WriteKey(const std::string& path, EVP_PKEY* key, unsigned mode) {
  std::ofstream(path, std::ios::trunc) << *PrivateKeyToPem(key);
  ::chmod(path.c_str(), mode);
}

TempDir::TempDir() {
  char tmpl[] = "/tmp/egressguard-ca-test-XXXXXX";
  Check(mkdtemp(tmpl) != nullptr, "mkdtemp");
  path_ = tmpl;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

}  // namespace egressguard::ca::testing
