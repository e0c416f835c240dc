// The admin listener over real loopback HTTP, and the verdict-counting sink.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "appliance/admin/admin_server.h"
#include "appliance/admin/bounded_labels.h"
#include "appliance/admin/counting_sink.h"
#include "appliance/admin/metrics.h"

namespace egressguard::admin {
namespace {

// Sends `request` raw and reads until the server closes.
std::string Exchange(uint16_t port, const std::string& request) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  EXPECT_GE(fd, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    ADD_FAILURE() << "connect failed";
    return "";
  }
  size_t sent = 0;
  while (sent < request.size()) {
    ssize_t n = send(fd, request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) break;  // the server may close early on an oversized request
    sent += static_cast<size_t>(n);
  }
  std::string out;
  char buf[4096];
  for (;;) {
    ssize_t n = recv(fd, buf, sizeof(buf), 0);
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  close(fd);
  return out;
}

std::string Get(uint16_t port, const std::string& path, const std::string& method = "GET") {
  return Exchange(port, method + " " + path + " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
}

int StatusOf(const std::string& response) {
  if (response.size() < 12 || response.compare(0, 9, "HTTP/1.1 ") != 0) return 0;
  return std::stoi(response.substr(9, 3));
}

std::string BodyOf(const std::string& response) {
  auto end = response.find("\r\n\r\n");
  return end == std::string::npos ? "" : response.substr(end + 4);
}

class AdminServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    AdminOptions options;
    options.listen = "127.0.0.1:0";
    options.max_request_bytes = 1024;
    AdminHandlers handlers;
    handlers.metrics = [this] { return metrics_.Render(); };
    handlers.ready.push_back({"rules", [this] { return engine_ready_ ? "" : "no compiled rule pack"; }});
    handlers.ready.push_back({"store", [this] { return store_ready_ ? "" : "store unreachable and spool full"; }});
    auto server = AdminServer::Start(options, std::move(handlers));
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    port_ = server_->port();
    ASSERT_NE(port_, 0);
  }

  Metrics metrics_;
  std::atomic<bool> engine_ready_{false};
  std::atomic<bool> store_ready_{true};
  std::unique_ptr<AdminServer> server_;
  uint16_t port_ = 0;
};

TEST_F(AdminServerTest, HealthzAnswersOk) {
  auto r = Get(port_, "/healthz");
  EXPECT_EQ(StatusOf(r), 200) << r;
  EXPECT_EQ(BodyOf(r), "ok\n");
}

TEST_F(AdminServerTest, ReadyzListsEveryFailingCheckThenTurnsReady) {
  store_ready_ = false;
  auto r = Get(port_, "/readyz");
  EXPECT_EQ(StatusOf(r), 503) << r;
  EXPECT_NE(BodyOf(r).find("rules: no compiled rule pack"), std::string::npos) << r;
  EXPECT_NE(BodyOf(r).find("store: store unreachable"), std::string::npos) << r;
  engine_ready_ = true;
  store_ready_ = true;
  r = Get(port_, "/readyz");
  EXPECT_EQ(StatusOf(r), 200) << r;
  EXPECT_EQ(BodyOf(r), "ready\n");
}

TEST_F(AdminServerTest, MetricsServesRegistryAndScrapeTimeSources) {
  auto& family = prometheus::BuildCounter().Name("egressguard_test_events_total").Help("test").Register(metrics_.registry());
  family.Add({{"kind", "a"}}).Increment(3);
  std::atomic<int> scrapes{0};
  metrics_.AddSource([&scrapes](Families& out) {
    auto f = Family("egressguard_test_gauge", "scrape-time", prometheus::MetricType::Gauge);
    AddSample(f, {{"n", "1"}}, ++scrapes);
    out.push_back(std::move(f));
  });
  auto r = Get(port_, "/metrics");
  EXPECT_EQ(StatusOf(r), 200) << r;
  EXPECT_NE(r.find("text/plain; version=0.0.4"), std::string::npos) << r;
  EXPECT_NE(BodyOf(r).find("egressguard_test_events_total{kind=\"a\"} 3"), std::string::npos) << r;
  EXPECT_NE(BodyOf(r).find("egressguard_test_gauge{n=\"1\"} 1"), std::string::npos) << r;
  r = Get(port_, "/metrics?x=1");
  EXPECT_NE(BodyOf(r).find("egressguard_test_gauge{n=\"1\"} 2"), std::string::npos) << r;
}

TEST_F(AdminServerTest, HeadHasNoBody) {
  auto r = Get(port_, "/healthz", "HEAD");
  EXPECT_EQ(StatusOf(r), 200) << r;
  EXPECT_NE(r.find("Content-Length: 3"), std::string::npos) << r;
  EXPECT_EQ(BodyOf(r), "");
}

TEST_F(AdminServerTest, RefusesUnknownPathsMethodsAndGarbage) {
  EXPECT_EQ(StatusOf(Get(port_, "/nope")), 404);
  EXPECT_EQ(StatusOf(Get(port_, "/metricsx")), 404);
  auto r = Get(port_, "/metrics", "POST");
  EXPECT_EQ(StatusOf(r), 405) << r;
  EXPECT_NE(r.find("Allow: GET, HEAD"), std::string::npos) << r;
  EXPECT_EQ(StatusOf(Get(port_, "/readyz", "DELETE")), 405);
  EXPECT_EQ(StatusOf(Exchange(port_, "NOT HTTP AT ALL\r\n\r\n")), 400);
}

TEST_F(AdminServerTest, RefusesOversizedRequestsAndKeepsServing) {
  std::string big = "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: " + std::string(4096, 'a') + "\r\n\r\n";
  EXPECT_EQ(StatusOf(Exchange(port_, big)), 400);
  std::string body = "GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n" + std::string(5000, 'b');
  EXPECT_EQ(StatusOf(Exchange(port_, body)), 400);
  EXPECT_EQ(StatusOf(Get(port_, "/healthz")), 200);
}

TEST_F(AdminServerTest, ServesKeepAliveRequestsOnOneConnection) {
  auto r = Exchange(port_, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  EXPECT_EQ(StatusOf(r), 200) << r;
  EXPECT_NE(r.find("HTTP/1.1 503"), std::string::npos) << r;
}

TEST(AdminServer, RefusesBadListenAddresses) {
  AdminOptions o;
  o.listen = "nonsense";
  EXPECT_FALSE(AdminServer::Start(o, {}).ok());
  o.listen = "not-an-ip:9090";
  EXPECT_FALSE(AdminServer::Start(o, {}).ok());
}

TEST(BoundedLabels, KeepsTheFirstValuesThenSaysOther) {
  BoundedLabels labels(2);
  EXPECT_EQ(labels.Bound("a"), "a");
  EXPECT_EQ(labels.Bound("b"), "b");
  EXPECT_EQ(labels.Bound("c"), "other");
  EXPECT_EQ(labels.Bound("a"), "a");
}

class RecordingSink final : public mitm::VerdictSink {
 public:
  bool Submit(v1::Verdict verdict) override {
    got.push_back(std::move(verdict));
    return accept;
  }
  std::vector<v1::Verdict> got;
  bool accept = true;
};

double Value(prometheus::Registry& registry, const std::string& name,
             const std::vector<prometheus::ClientMetric::Label>& labels) {
  for (const auto& f : registry.Collect()) {
    if (f.name != name) continue;
    for (const auto& m : f.metric) {
      bool all = true;
      for (const auto& l : labels) all = all && std::find(m.label.begin(), m.label.end(), l) != m.label.end();
      if (all && m.label.size() == labels.size()) return m.counter.value;
    }
  }
  return -1;
}

TEST(CountingSink, CountsVerdictFieldsAndForwards) {
  prometheus::Registry registry;
  auto next = std::make_shared<RecordingSink>();
  CountingSink sink(next, registry);
  v1::Verdict v;
  v.set_host("api.example.com");
  v.set_workload("payments");
  v.set_mode("bump");
  v.set_action(rules::v1::BLOCK);
  v.set_bytes_out(100);
  v.set_bytes_in(7);
  auto* f = v.add_findings();
  f->set_category("credit_card");
  f->set_action(rules::v1::BLOCK);
  EXPECT_TRUE(sink.Submit(v));
  v.clear_findings();
  v.set_action(rules::v1::ALLOW);
  v.set_workload("");
  EXPECT_TRUE(sink.Submit(v));
  next->accept = false;
  EXPECT_FALSE(sink.Submit(v)) << "a refusal from the real sink must reach the proxy";
  ASSERT_EQ(next->got.size(), 3u);

  EXPECT_EQ(Value(registry, "egressguard_verdicts_total", {{"mode", "bump"}, {"action", "block"}}), 1);
  EXPECT_EQ(Value(registry, "egressguard_verdicts_total", {{"mode", "bump"}, {"action", "allow"}}), 2);
  EXPECT_EQ(Value(registry, "egressguard_findings_total", {{"category", "credit_card"}, {"action", "block"}}), 1);
  EXPECT_EQ(Value(registry, "egressguard_destination_bytes_total", {{"destination", "api.example.com"}, {"direction", "out"}}),
            300);
  EXPECT_EQ(Value(registry, "egressguard_workload_requests_total", {{"workload", "payments"}, {"destination", "api.example.com"}}),
            1);
  EXPECT_EQ(Value(registry, "egressguard_workload_requests_total", {{"workload", "unmapped"}, {"destination", "api.example.com"}}),
            2);
  EXPECT_EQ(Value(registry, "egressguard_workload_bytes_total",
                  {{"workload", "payments"}, {"destination", "api.example.com"}, {"direction", "in"}}),
            7);
}

TEST(CountingSink, BoundsDestinationLabels) {
  prometheus::Registry registry;
  CountingSinkLimits limits;
  limits.destinations = 5;
  CountingSink sink(nullptr, registry, limits);
  for (int i = 0; i < 20; ++i) {
    v1::Verdict v;
    v.set_host("host" + std::to_string(i) + ".example");
    v.set_bytes_out(1);
    sink.Submit(v);
  }
  size_t series = 0;
  for (const auto& f : registry.Collect()) {
    if (f.name == "egressguard_destination_bytes_total") series = f.metric.size();
  }
  EXPECT_EQ(series, 6u * 2u);  // 5 hosts + "other", two directions
  EXPECT_EQ(Value(registry, "egressguard_destination_bytes_total", {{"destination", "other"}, {"direction", "out"}}), 15);
}

// Past its bound the counter cache stops keeping label sets; every verdict is still counted
// under its own labels.
TEST(CountingSink, CountsEveryVerdictPastItsCounterCache) {
  prometheus::Registry registry;
  CountingSinkLimits limits;
  limits.destinations = 10;
  limits.workloads = 1;
  limits.workload_destinations = 1;  // the pair cache keeps 4 x (1 + 10 + 1) = 48 label sets
  CountingSink sink(nullptr, registry, limits);
  for (int w = 0; w < 30; ++w) {  // 300 (workload, host) pairs
    for (int h = 0; h < 10; ++h) {
      v1::Verdict v;
      v.set_host("host" + std::to_string(h) + ".example");
      v.set_workload("w" + std::to_string(w));
      v.set_bytes_out(1);
      sink.Submit(v);
    }
  }
  for (int h = 0; h < 10; ++h) {
    const std::string host = "host" + std::to_string(h) + ".example";
    EXPECT_EQ(Value(registry, "egressguard_destination_bytes_total", {{"destination", host}, {"direction", "out"}}), 30)
        << host;
  }
  EXPECT_EQ(Value(registry, "egressguard_workload_requests_total", {{"workload", "w0"}, {"destination", "host0.example"}}),
            1);
  EXPECT_EQ(Value(registry, "egressguard_workload_requests_total", {{"workload", "other"}, {"destination", "other"}}),
            290);
}

}  // namespace
}  // namespace egressguard::admin
