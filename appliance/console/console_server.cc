#include "appliance/console/console_server.h"

#include <utility>  // before asio: its awaitable.hpp uses std::exchange

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>

#include <atomic>
#include <fstream>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>
#include <vector>

#include "appliance/admin/admin_server.h"
#include "appliance/console/json_api.h"
#include "appliance/console/session.h"
#include "appliance/console/static_files.h"
#include "appliance/store/store.h"

// GCC 12 misreads the sized operator delete of Asio 1.74's coroutine frame allocator as
// mismatched with its operator new in coroutine lambdas (a known false positive).
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"

namespace egressguard::console {

namespace {

namespace asio = boost::asio;
namespace ssl = asio::ssl;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using Request = http::request<http::string_body>;
using Response = http::response<http::string_body>;

// __Host-: the browser keeps it only when Secure, Path=/ and without Domain, so no
// sibling host can plant or overwrite it.
constexpr std::string_view kCookie = "__Host-egressguard_session";
constexpr std::string_view kCsrfHeader = "X-CSRF-Token";
constexpr auto kLoginTtl = std::chrono::minutes(10);
constexpr const char* kLoginMethod = "console/login";
constexpr const char* kLogoutMethod = "console/logout";
constexpr size_t kMaxRevocationFileBytes = 1 << 20;

// No inline script or style anywhere: what runs is what the binary ships.
constexpr const char* kCsp =
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "font-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

struct VendorFile {
  const char* url;
  const char* path;  // under vendor_dir
  const char* type;
};
constexpr VendorFile kVendorFiles[] = {
    {"/vendor/chart.min.js", "chart.js/chart.min.js", "text/javascript; charset=utf-8"},
    {"/vendor/bootstrap.min.css", "bootstrap5/css/bootstrap.min.css", "text/css; charset=utf-8"},
};

std::string_view Sv(beast::string_view s) { return {s.data(), s.size()}; }

std::string ContentType(std::string_view name) {
  auto ends = [&](std::string_view ext) {
    return name.size() >= ext.size() && name.substr(name.size() - ext.size()) == ext;
  };
  if (ends(".html")) return "text/html; charset=utf-8";
  if (ends(".js")) return "text/javascript; charset=utf-8";
  if (ends(".css")) return "text/css; charset=utf-8";
  if (ends(".svg")) return "image/svg+xml";
  return "application/octet-stream";
}

std::string ReadFile(const std::string& path, size_t limit) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return {};
  std::string out(limit, '\0');
  in.read(out.data(), static_cast<std::streamsize>(limit));
  out.resize(static_cast<size_t>(in.gcount()));
  return out;
}

}  // namespace

struct ConsoleServer::Impl {
  ConsoleOptions options;
  std::unique_ptr<TokenSigner> signer;
  std::unique_ptr<JsonApi> api;
  store::Store* store = nullptr;
  std::map<std::string, std::string> vendor;  // url -> bytes, read once at start

  asio::io_context io;
  ssl::context tls{ssl::context::tls_server};
  tcp::acceptor acceptor{io};
  std::vector<std::thread> threads;
  std::atomic<size_t> open_connections{0};
  std::atomic<bool> stopped{false};
  std::string host;
  uint16_t port = 0;

  // Sign-in state: spent login nonces (until their token would have expired anyway),
  // sessions signed out from the page, and `console logout` revocations.
  std::mutex mu;
  std::map<std::string, int64_t> spent_logins;  // nonce -> expiry (us)
  std::set<std::string> ended_sessions;         // session nonces
  std::map<std::string, int64_t> revoked_before;  // user -> sessions issued before are void
  struct stat revocation_stat {};
  bool revocation_seen = false;

  void Audit(const TokenClaims& who, const char* method, std::string detail, bool allowed = true) {
    (void)store->Audit({"console:" + who.user, ConsoleRoleName(who.role), method, std::move(detail), allowed});
  }

  // Reads the spent login nonces back from the audit trail: a restart must not make a
  // used sign-in link good again.
  void LoadSpentLogins() {
    v1::AuditListRequest req;
    req.set_method(kLoginMethod);
    req.set_limit(1000);
    const int64_t now = NowMicros();
    for (;;) {
      auto page = store->ListAudit(req);
      if (!page.ok() || page->records().empty()) return;
      for (const auto& r : page->records()) {
        auto at = r.detail().find("nonce=");
        auto exp = r.detail().find("expires=");
        if (at == std::string::npos || exp == std::string::npos) continue;
        int64_t expires = std::strtoll(r.detail().c_str() + exp + 8, nullptr, 10);
        if (expires > now) spent_logins[r.detail().substr(at + 6, 32)] = expires;
      }
      req.set_after_seq(page->records().rbegin()->seq());
    }
  }

  // Re-reads console.revoked when it changed since the last look (a stat per request).
  void RefreshRevocations() {
    const std::string path = RevocationPath(options.state_dir);
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) return;
    if (revocation_seen && st.st_size == revocation_stat.st_size && st.st_mtim.tv_sec == revocation_stat.st_mtim.tv_sec &&
        st.st_mtim.tv_nsec == revocation_stat.st_mtim.tv_nsec) {
      return;
    }
    const bool announce = revocation_seen;
    revocation_seen = true;
    revocation_stat = st;
    std::istringstream lines(ReadFile(path, kMaxRevocationFileBytes));
    std::string user;
    int64_t at = 0;
    while (lines >> user >> at) {
      if (!ValidUserName(user)) continue;
      auto& before = revoked_before[user];
      if (at > before) {
        if (announce) {
          (void)store->Audit({"console logout (store host)", "admin", kLogoutMethod,
                              fmt::format("user={} sessions revoked", user), true});
        }
        before = at;
      }
    }
  }

  // The session named by the cookie, or why there is none.
  absl::StatusOr<TokenClaims> Session(const Request& req) {
    auto header = req.find(http::field::cookie);
    if (header == req.end()) return absl::UnauthenticatedError("not signed in");
    auto value = CookieValue(std::string_view(header->value().data(), header->value().size()), kCookie);
    if (!value) return absl::UnauthenticatedError("not signed in");
    auto claims = signer->VerifySession(*value, NowMicros());
    if (!claims.ok()) return claims.status();
    std::lock_guard lock(mu);
    RefreshRevocations();
    if (ended_sessions.count(claims->nonce)) return absl::UnauthenticatedError("signed out");
    auto revoked = revoked_before.find(claims->user);
    if (revoked != revoked_before.end() && claims->issued_us <= revoked->second) {
      return absl::UnauthenticatedError("session revoked");
    }
    return claims;
  }

  static Response Reply(const Request& req, http::status status, std::string body, std::string type) {
    Response res{status, req.version()};
    res.set(http::field::content_type, type);
    res.keep_alive(req.keep_alive());
    res.body() = std::move(body);
    return res;
  }

  static Response Json(const Request& req, int status, std::string body) {
    return Reply(req, static_cast<http::status>(status), std::move(body), "application/json");
  }

  static Response JsonError(const Request& req, int status, std::string_view code, std::string_view message) {
    return Json(req, status, ErrorJson(code, message));
  }

  Response Login(const Request& req, std::string_view query) {
    std::string token;
    if (query.substr(0, 2) == "t=") token = std::string(query.substr(2));
    auto claims = signer->VerifyLogin(token, NowMicros());
    auto page = [&](http::status status, std::string_view text) {
      return Reply(req, status, fmt::format("<!doctype html><title>egressguard console</title><p>{}</p>", text),
                   "text/html; charset=utf-8");
    };
    if (!claims.ok()) {
      return page(http::status::unauthorized,
                  "This sign-in link is not valid or has expired. Ask for a new one: egressguard console login.");
    }
    {
      std::lock_guard lock(mu);
      const int64_t now = NowMicros();
      std::erase_if(spent_logins, [now](const auto& e) { return e.second <= now; });
      if (!spent_logins.emplace(claims->nonce, claims->expires_us).second) {
        return page(http::status::unauthorized, "This sign-in link was already used. Ask for a new one.");
      }
    }
    TokenClaims session;
    session.user = claims->user;
    session.role = claims->role;
    session.issued_us = NowMicros();
    session.expires_us =
        session.issued_us + std::chrono::duration_cast<std::chrono::microseconds>(options.session_ttl).count();
    session.nonce = TokenSigner::NewNonce();
    Audit(session, kLoginMethod, fmt::format("signed in; nonce={} expires={}", claims->nonce, claims->expires_us));
    Response res{http::status::see_other, req.version()};
    res.set(http::field::location, "/");
    res.set(http::field::set_cookie,
            fmt::format("{}={}; Path=/; Max-Age={}; HttpOnly; Secure; SameSite=Strict", kCookie,
                        signer->MakeSession(session), options.session_ttl.count()));
    res.keep_alive(req.keep_alive());
    return res;
  }

  // Cross-site requests cannot carry the CSRF header without a preflight we never
  // grant; the Origin and Fetch Metadata checks refuse them even before that.
  std::string CrossSiteProblem(const Request& req, const TokenClaims& session) {
    auto origin = req.find(http::field::origin);
    auto host = req.find(http::field::host);
    if (origin != req.end()) {
      if (host == req.end() || Sv(origin->value()) != fmt::format("https://{}", Sv(host->value()))) {
        return "cross-origin request refused";
      }
    }
    auto site = req.find("Sec-Fetch-Site");
    if (site != req.end() && Sv(site->value()) != "same-origin" && Sv(site->value()) != "none") {
      return "cross-site request refused";
    }
    auto token = req.find(beast::string_view(kCsrfHeader.data(), kCsrfHeader.size()));
    if (token == req.end() || !signer->CheckCsrf(session, Sv(token->value()))) {
      return "missing or wrong X-CSRF-Token";
    }
    auto type = req.find(http::field::content_type);
    if (type == req.end() || Sv(type->value()).substr(0, 16) != "application/json") {
      return "Content-Type must be application/json";
    }
    return "";
  }

  Response Api(const Request& req, std::string_view path) {
    auto session = Session(req);
    if (!session.ok()) return JsonError(req, 401, "UNAUTHENTICATED", std::string(session.status().message()));
    if (path == "/api/v1/session" && req.method() == http::verb::get) {
      return Json(req, 200,
                  fmt::format(R"({{"user":"{}","role":"{}","csrf_token":"{}","expires_unix":{}}})", session->user,
                              ConsoleRoleName(session->role), signer->CsrfFor(*session),
                              session->expires_us / 1'000'000));
    }
    if (path == "/api/v1/health" && req.method() == http::verb::get) {
      // What grpc.health.v1 publishes, for the overview; no data, any signed-in role.
      const store::StoreHealth h = store->Health();
      auto text = [](const absl::Status& s) { return s.ok() ? std::string("ok") : std::string(s.message()); };
      return Json(req, 200,
                  fmt::format(R"({{"read":{},"write":{},"index":{}}})", JsonQuoted(text(h.read)),
                              JsonQuoted(text(h.write)), JsonQuoted(text(h.index))));
    }
    if (req.method() != http::verb::post) {
      auto res = JsonError(req, 405, "METHOD_NOT_ALLOWED", "the API takes POST with a JSON body");
      res.set(http::field::allow, "POST");
      return res;
    }
    if (auto problem = CrossSiteProblem(req, *session); !problem.empty()) {
      Audit(*session, "console/refused", fmt::format("{} {}", problem, path), false);
      return JsonError(req, 403, "PERMISSION_DENIED", problem);
    }
    if (path == "/api/v1/session/logout") {
      {
        std::lock_guard lock(mu);
        ended_sessions.insert(session->nonce);
      }
      Audit(*session, kLogoutMethod, "signed out from the page");
      auto res = Json(req, 200, "{}");
      res.set(http::field::set_cookie, fmt::format("{}=; Path=/; Max-Age=0; HttpOnly; Secure; SameSite=Strict", kCookie));
      return res;
    }
    std::string_view rest = path.substr(std::string_view("/api/v1/").size());
    auto slash = rest.find('/');
    if (slash == std::string_view::npos) return JsonError(req, 404, "NOT_FOUND", "no such API method");
    auto result = api->Call(rest.substr(0, slash), rest.substr(slash + 1), req.body(), *session);
    return Json(req, result.http_status, std::move(result.json));
  }

  Response Answer(const Request& req) {
    const std::string_view target(req.target().data(), req.target().size());
    const auto q = target.find('?');
    const std::string_view path = target.substr(0, q);
    const std::string_view query = q == std::string_view::npos ? std::string_view() : target.substr(q + 1);
    if (path.substr(0, 8) == "/api/v1/") return Api(req, path);
    if (req.method() != http::verb::get && req.method() != http::verb::head) {
      auto res = Reply(req, http::status::method_not_allowed, "only GET and HEAD here\n", "text/plain; charset=utf-8");
      res.set(http::field::allow, "GET, HEAD");
      return res;
    }
    if (path == "/login") return Login(req, query);
    for (const auto& v : kVendorFiles) {
      if (path == v.url) {
        auto it = vendor.find(v.url);
        if (it == vendor.end()) return Reply(req, http::status::not_found, "not installed\n", "text/plain; charset=utf-8");
        return Reply(req, http::status::ok, it->second, v.type);
      }
    }
    std::string_view name = path == "/" ? std::string_view("index.html") : path.substr(1);
    if (name.substr(0, 7) == "static/") name.remove_prefix(7);
    if (const StaticFile* f = FindStaticFile(name)) {
      return Reply(req, http::status::ok, std::string(f->body), ContentType(name));
    }
    return Reply(req, http::status::not_found, "not found\n", "text/plain; charset=utf-8");
  }

  static void Harden(Response& res) {
    res.set("Content-Security-Policy", kCsp);
    res.set("X-Content-Type-Options", "nosniff");
    res.set("X-Frame-Options", "DENY");
    res.set("Referrer-Policy", "no-referrer");
    res.set("Cross-Origin-Opener-Policy", "same-origin");
    res.set("Cross-Origin-Resource-Policy", "same-origin");
    res.set(http::field::strict_transport_security, "max-age=31536000");
    res.set(http::field::cache_control, "no-store");
  }

  asio::awaitable<void> Serve(tcp::socket socket) {
    beast::ssl_stream<beast::tcp_stream> stream(std::move(socket), tls);
    beast::error_code ec;
    beast::get_lowest_layer(stream).expires_after(options.timeout);
    co_await stream.async_handshake(ssl::stream_base::server, asio::redirect_error(asio::use_awaitable, ec));
    beast::flat_buffer buffer;
    while (!ec) {
      http::request_parser<http::string_body> parser;
      parser.header_limit(static_cast<std::uint32_t>(options.max_header_bytes));
      parser.body_limit(options.max_body_bytes);
      beast::get_lowest_layer(stream).expires_after(options.timeout);
      co_await http::async_read(stream, buffer, parser, asio::redirect_error(asio::use_awaitable, ec));
      if (ec == http::error::end_of_stream || ec == beast::error::timeout || ec == asio::error::operation_aborted ||
          ec == ssl::error::stream_truncated || ec == asio::error::connection_reset || ec == asio::error::eof) {
        break;
      }
      Response res;
      bool keep_alive = false;
      if (ec) {
        // Unparseable or over a bound: say so once, then close.
        res = Response{ec == http::error::body_limit ? http::status::payload_too_large : http::status::bad_request, 11};
        res.set(http::field::content_type, "application/json");
        res.body() = ErrorJson("BAD_REQUEST", fmt::format("bad request: {}", ec.message()));
      } else {
        const Request& req = parser.get();
        res = Answer(req);
        keep_alive = res.keep_alive();
        if (req.method() == http::verb::head) {
          auto length = res.body().size();
          res.body().clear();
          res.content_length(length);
        }
      }
      res.keep_alive(keep_alive);
      Harden(res);
      if (res.body().size() > 0 || !res.has_content_length()) res.prepare_payload();
      beast::get_lowest_layer(stream).expires_after(options.timeout);
      co_await http::async_write(stream, res, asio::redirect_error(asio::use_awaitable, ec));
      if (!keep_alive) break;
    }
    if (!ec) {
      beast::get_lowest_layer(stream).expires_after(std::chrono::seconds(2));
      co_await stream.async_shutdown(asio::redirect_error(asio::use_awaitable, ec));
    }
    beast::get_lowest_layer(stream).close();
    open_connections.fetch_sub(1);
  }

  asio::awaitable<void> Accept() {
    asio::steady_timer backoff(io);
    while (acceptor.is_open()) {
      beast::error_code ec;
      tcp::socket socket = co_await acceptor.async_accept(asio::redirect_error(asio::use_awaitable, ec));
      if (!acceptor.is_open() || ec == asio::error::operation_aborted) break;
      if (ec) {
        backoff.expires_after(std::chrono::milliseconds(50));
        co_await backoff.async_wait(asio::redirect_error(asio::use_awaitable, ec));
        continue;
      }
      if (open_connections.load() >= options.max_connections) {
        socket.close(ec);
        continue;
      }
      open_connections.fetch_add(1);
      asio::co_spawn(io, Serve(std::move(socket)), asio::detached);
    }
  }
};

ConsoleServer::ConsoleServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
ConsoleServer::~ConsoleServer() { Stop(); }

absl::StatusOr<std::unique_ptr<ConsoleServer>> ConsoleServer::Start(const ConsoleOptions& options,
                                                                    std::shared_ptr<grpc::Channel> in_process,
                                                                    store::Store& store) {
  if (options.cert_chain_pem.empty() || options.key_pem.empty()) {
    return absl::InvalidArgumentError("the console serves HTTPS only: it needs a server certificate and key");
  }
  std::string host;
  uint16_t port = 0;
  if (!admin::SplitHostPort(options.listen, host, port)) {
    return absl::InvalidArgumentError(fmt::format("console listen address '{}' is not ADDR:PORT", options.listen));
  }
  auto key = LoadOrCreateConsoleKey(ConsoleKeyPath(options.state_dir));
  if (!key.ok()) return key.status();

  auto impl = std::make_unique<Impl>();
  impl->options = options;
  impl->signer = std::make_unique<TokenSigner>(*std::move(key));
  impl->api = std::make_unique<JsonApi>(std::move(in_process));
  impl->store = &store;
  for (const auto& v : kVendorFiles) {
    std::string body = ReadFile(options.vendor_dir + "/" + v.path, 8 << 20);
    if (body.empty()) {
      spdlog::warn("console: {}/{} is missing (install libjs-chart.js and libjs-bootstrap5); {} answers 404",
                   options.vendor_dir, v.path, v.url);
      continue;
    }
    impl->vendor[v.url] = std::move(body);
  }

  beast::error_code ec;
  impl->tls.set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 | ssl::context::no_sslv3 |
                        ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1);
  impl->tls.use_certificate_chain(asio::buffer(options.cert_chain_pem), ec);
  if (!ec) impl->tls.use_private_key(asio::buffer(options.key_pem), ssl::context::pem, ec);
  if (ec) return absl::InvalidArgumentError(fmt::format("console certificate or key refused: {}", ec.message()));

  auto address = asio::ip::make_address(host, ec);
  if (ec) return absl::InvalidArgumentError(fmt::format("console listen host '{}' is not an IP address", host));
  tcp::endpoint endpoint(address, port);
  impl->acceptor.open(endpoint.protocol(), ec);
  if (!ec) impl->acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) impl->acceptor.bind(endpoint, ec);
  if (!ec) impl->acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return absl::UnavailableError(fmt::format("console cannot listen on {}: {}", options.listen, ec.message()));
  impl->port = impl->acceptor.local_endpoint(ec).port();
  impl->host = address.is_v6() ? fmt::format("[{}]", host) : host;
  if (impl->host == "0.0.0.0") impl->host = "127.0.0.1";

  impl->LoadSpentLogins();
  {
    std::lock_guard lock(impl->mu);
    impl->RefreshRevocations();
  }
  Impl* raw = impl.get();
  asio::co_spawn(raw->io, raw->Accept(), asio::detached);
  for (int i = 0; i < std::max(1, options.threads); ++i) raw->threads.emplace_back([raw] { raw->io.run(); });
  return std::unique_ptr<ConsoleServer>(new ConsoleServer(std::move(impl)));
}

void ConsoleServer::Stop() {
  if (impl_->stopped.exchange(true)) return;
  asio::post(impl_->io, [raw = impl_.get()] {
    beast::error_code ignored;
    raw->acceptor.close(ignored);
  });
  impl_->io.stop();
  for (auto& t : impl_->threads) {
    if (t.joinable()) t.join();
  }
}

uint16_t ConsoleServer::port() const { return impl_->port; }

std::string ConsoleServer::address() const { return fmt::format("{}:{}", impl_->host, port()); }

}  // namespace egressguard::console
