#include "appliance/admin/metrics.h"

#include <prometheus/text_serializer.h>

#include <chrono>
#include <sstream>

#include "appliance/reporter/reporter.h"
#include "appliance/reporter/rule_watcher.h"
#include "ca/openssl_leaf_minter.h"
#include "mitm/proxy_server.h"

namespace egressguard::admin {

using prometheus::MetricType;

prometheus::MetricFamily Family(std::string name, std::string help, MetricType type) {
  prometheus::MetricFamily f;
  f.name = std::move(name);
  f.help = std::move(help);
  f.type = type;
  return f;
}

void AddSample(prometheus::MetricFamily& family, std::vector<prometheus::ClientMetric::Label> labels, double value) {
  prometheus::ClientMetric m;
  m.label = std::move(labels);
  switch (family.type) {
    case MetricType::Counter: m.counter.value = value; break;
    case MetricType::Gauge: m.gauge.value = value; break;
    default: m.untyped.value = value; break;
  }
  family.metric.push_back(std::move(m));
}

Metrics::Metrics() : registry_(std::make_shared<prometheus::Registry>()) {}

void Metrics::AddSource(MetricSource source) {
  std::lock_guard lock(mu_);
  sources_.push_back(std::move(source));
}

std::string Metrics::Render() const {
  Families families = registry_->Collect();
  {
    std::lock_guard lock(mu_);
    for (const auto& source : sources_) source(families);
  }
  std::ostringstream out;
  prometheus::TextSerializer().Serialize(out, families);
  return out.str();
}

namespace {

double Load(const std::atomic<uint64_t>& c) { return static_cast<double>(c.load(std::memory_order_relaxed)); }

}  // namespace

MetricSource ProxySource(const mitm::ProxyServer& proxy) {
  return [&proxy](Families& out) {
    const auto& m = proxy.metrics();
    auto connections = Family("egressguard_connections_total",
                              "Client connections by how they were handled (mode) and how they ended (outcome)",
                              MetricType::Counter);
    for (size_t mode = 0; mode < mitm::kConnectionModeNames.size(); ++mode) {
      for (size_t outcome = 0; outcome < mitm::kConnectionOutcomeNames.size(); ++outcome) {
        AddSample(connections,
                  {{"mode", std::string(mitm::kConnectionModeNames[mode])},
                   {"outcome", std::string(mitm::kConnectionOutcomeNames[outcome])}},
                  Load(m.connections[mode][outcome]));
      }
    }
    out.push_back(std::move(connections));

    auto handshakes = Family("egressguard_tls_handshake_failures_total",
                             "TLS handshakes that did not complete, by side and reason", MetricType::Counter);
    for (size_t i = 0; i < mitm::kHandshakeSideNames.size(); ++i) {
      AddSample(handshakes,
                {{"side", std::string(mitm::kHandshakeSideNames[i])}, {"reason", std::string(mitm::kHandshakeReasonNames[i])}},
                Load(m.handshake_failures[i]));
    }
    out.push_back(std::move(handshakes));

    auto verify = Family("egressguard_upstream_verify_failures_total",
                         "Origin certificates refused, by reason", MetricType::Counter);
    for (size_t i = 0; i < mitm::kUpstreamVerifyFailureNames.size(); ++i) {
      AddSample(verify, {{"reason", std::string(mitm::kUpstreamVerifyFailureNames[i])}}, Load(m.upstream_verify_failures[i]));
    }
    out.push_back(std::move(verify));

    auto scans = Family("egressguard_dlp_scans_total", "Messages scanned by the DLP engine", MetricType::Counter);
    AddSample(scans, {}, Load(m.scans));
    out.push_back(std::move(scans));
    auto scan_bytes = Family("egressguard_dlp_scan_bytes_total", "Bytes fed to the DLP engine", MetricType::Counter);
    AddSample(scan_bytes, {}, Load(m.scan_bytes));
    out.push_back(std::move(scan_bytes));
    auto scan_seconds = Family("egressguard_dlp_scan_seconds_total",
                               "Time spent in the DLP engine, summed over worker threads", MetricType::Counter);
    AddSample(scan_seconds, {}, Load(m.scan_nanoseconds) / 1e9);
    out.push_back(std::move(scan_seconds));

    auto ws_sessions = Family("egressguard_websocket_sessions_total", "WebSocket sessions inspected", MetricType::Counter);
    AddSample(ws_sessions, {}, Load(m.ws_sessions));
    out.push_back(std::move(ws_sessions));
    auto ws_messages = Family("egressguard_websocket_messages_total", "WebSocket data messages, by direction",
                              MetricType::Counter);
    auto ws_bytes = Family("egressguard_websocket_bytes_total",
                           "WebSocket message payload bytes (as sent, before inflating), by direction",
                           MetricType::Counter);
    for (size_t i = 0; i < 2; ++i) {
      const std::string dir = i == 0 ? "out" : "in";
      AddSample(ws_messages, {{"direction", dir}}, Load(m.ws_messages[i]));
      AddSample(ws_bytes, {{"direction", dir}}, Load(m.ws_bytes[i]));
    }
    out.push_back(std::move(ws_messages));
    out.push_back(std::move(ws_bytes));
    auto ws_blocked = Family("egressguard_websocket_blocked_messages_total",
                             "WebSocket messages blocked (closed 1008) before they reached the origin", MetricType::Counter);
    AddSample(ws_blocked, {}, Load(m.ws_blocked));
    out.push_back(std::move(ws_blocked));

    auto streams = Family("egressguard_streams_total",
                          "HTTP/2 streams (gRPC calls counted as grpc), by protocol and how they ended", MetricType::Counter);
    for (size_t p = 0; p < mitm::kStreamProtocolNames.size(); ++p) {
      for (size_t o = 0; o < mitm::kStreamOutcomeNames.size(); ++o) {
        AddSample(streams, {{"protocol", std::string(mitm::kStreamProtocolNames[p])},
                            {"outcome", std::string(mitm::kStreamOutcomeNames[o])}},
                  Load(m.streams[p][o]));
      }
    }
    out.push_back(std::move(streams));
    auto goaways = Family("egressguard_h2_goaways_total", "HTTP/2 connections the proxy sent GOAWAY for abuse or errors, by reason",
                          MetricType::Counter);
    for (size_t i = 0; i < mitm::kGoawayReasonNames.size(); ++i) {
      AddSample(goaways, {{"reason", std::string(mitm::kGoawayReasonNames[i])}}, Load(m.h2_goaways[i]));
    }
    out.push_back(std::move(goaways));

    auto fail = Family("egressguard_fail_events_total",
                       "Transactions that met a failure policy: open (forwarded unscanned or unreported) or closed "
                       "(refused), by cause",
                       MetricType::Counter);
    AddSample(fail, {{"policy", "open"}, {"cause", "engine_unavailable"}}, Load(m.fail_open));
    AddSample(fail, {{"policy", "closed"}, {"cause", "engine_unavailable"}}, Load(m.fail_closed));
    AddSample(fail, {{"policy", "open"}, {"cause", "verdict_unrecordable"}}, Load(m.unrecordable_open));
    AddSample(fail, {{"policy", "closed"}, {"cause", "verdict_unrecordable"}}, Load(m.unrecordable_closed));
    out.push_back(std::move(fail));

    auto stats = proxy.stats();
    auto active = Family("egressguard_connections_active", "Client connections open now", MetricType::Gauge);
    AddSample(active, {}, static_cast<double>(stats.active));
    out.push_back(std::move(active));
    auto rejected = Family("egressguard_connections_rejected_total",
                           "Connections closed at accept, by reason", MetricType::Counter);
    AddSample(rejected, {{"reason", "client_not_allowed"}}, static_cast<double>(stats.rejected_clients));
    AddSample(rejected, {{"reason", "connection_limit"}}, static_cast<double>(stats.rejected_limit));
    out.push_back(std::move(rejected));
  };
}

MetricSource LeafCacheSource(const ca::OpenSslLeafMinter& minter) {
  return [&minter](Families& out) {
    auto s = minter.cache_stats();
    auto lookups = Family("egressguard_leaf_cache_lookups_total", "Leaf certificate cache lookups by result",
                          MetricType::Counter);
    AddSample(lookups, {{"result", "hit"}}, static_cast<double>(s.hits));
    AddSample(lookups, {{"result", "miss"}}, static_cast<double>(s.misses));
    out.push_back(std::move(lookups));
    auto size = Family("egressguard_leaf_cache_entries", "Leaf certificates cached now", MetricType::Gauge);
    AddSample(size, {}, static_cast<double>(s.size));
    out.push_back(std::move(size));
  };
}

MetricSource ReporterSource(const reporter::Reporter& reporter) {
  return [&reporter](Families& out) {
    auto s = reporter.stats();
    auto depth = Family("egressguard_spool_depth", "Verdicts in the local spool, not yet acked by the store",
                        MetricType::Gauge);
    AddSample(depth, {}, static_cast<double>(s.spool_depth));
    out.push_back(std::move(depth));
    auto bytes = Family("egressguard_spool_bytes", "Serialized bytes of the verdicts in the local spool",
                        MetricType::Gauge);
    AddSample(bytes, {}, static_cast<double>(s.spool_bytes));
    out.push_back(std::move(bytes));
    const auto& limits = reporter.spool_options();
    auto limit_verdicts = Family("egressguard_spool_limit_verdicts",
                                 "Verdicts the spool holds at most (reporter.spool_max_rows)", MetricType::Gauge);
    AddSample(limit_verdicts, {}, static_cast<double>(limits.max_rows));
    out.push_back(std::move(limit_verdicts));
    auto limit_bytes = Family("egressguard_spool_limit_bytes",
                              "Serialized verdict bytes the spool holds at most (reporter.spool_max_bytes)",
                              MetricType::Gauge);
    AddSample(limit_bytes, {}, static_cast<double>(limits.max_bytes));
    out.push_back(std::move(limit_bytes));
    auto age = Family("egressguard_spool_oldest_age_seconds",
                      "Age of the oldest verdict waiting in the spool (0 when empty)", MetricType::Gauge);
    double age_s = 0;
    if (auto oldest = reporter.OldestSpooledUnix()) {
      auto now = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch());
      age_s = std::max<double>(0, static_cast<double>(now.count() - *oldest));
    }
    AddSample(age, {}, age_s);
    out.push_back(std::move(age));
    auto verdicts = Family("egressguard_reporter_verdicts_total", "Verdicts through the reporter, by result",
                           MetricType::Counter);
    AddSample(verdicts, {{"result", "spooled"}}, static_cast<double>(s.spooled));
    AddSample(verdicts, {{"result", "acked"}}, static_cast<double>(s.acked));
    AddSample(verdicts, {{"result", "rejected"}}, static_cast<double>(s.rejected));
    out.push_back(std::move(verdicts));
    auto fail = Family("egressguard_spool_fail_events_total",
                       "Verdicts met with a full spool: open (dropped, traffic flowed) or closed (transaction refused)",
                       MetricType::Counter);
    AddSample(fail, {{"policy", "open"}}, static_cast<double>(s.dropped));
    AddSample(fail, {{"policy", "closed"}}, static_cast<double>(s.refused));
    out.push_back(std::move(fail));
    auto unrecorded = Family("egressguard_verdicts_unrecorded_total",
                             "Verdicts the spool could not take (full or failing), so the store will never see them, by "
                             "the mode of the transaction",
                             MetricType::Counter);
    AddSample(unrecorded, {{"mode", "enforce"}}, static_cast<double>(s.unrecorded_enforce));
    AddSample(unrecorded, {{"mode", "monitor"}}, static_cast<double>(s.unrecorded_monitor));
    out.push_back(std::move(unrecorded));
    auto connected = Family("egressguard_store_connected", "1 while a verdict stream to the store is up",
                            MetricType::Gauge);
    AddSample(connected, {}, s.connected ? 1 : 0);
    out.push_back(std::move(connected));
  };
}

MetricSource RulePackSource(std::shared_ptr<dlp::EngineHolder> engines, const reporter::RuleWatcher* watcher) {
  return [engines = std::move(engines), watcher](Families& out) {
    auto active = Family("egressguard_rule_pack_active", "The rule pack the engine runs (1 for the active version)",
                         MetricType::Gauge);
    if (auto engine = engines ? engines->Current() : nullptr) AddSample(active, {{"version", engine->pack_version()}}, 1);
    out.push_back(std::move(active));
    if (watcher == nullptr) return;
    auto s = watcher->status();
    auto swaps = Family("egressguard_rule_pack_swaps_total", "Rule packs compiled and swapped in", MetricType::Counter);
    AddSample(swaps, {}, static_cast<double>(s.swaps));
    out.push_back(std::move(swaps));
    auto failures = Family("egressguard_rule_pack_compile_failures_total", "Rule packs that did not compile",
                           MetricType::Counter);
    AddSample(failures, {}, static_cast<double>(s.failures));
    out.push_back(std::move(failures));
    auto cached = Family("egressguard_rule_pack_cached",
                         "1 (labelled with its version) while the engine runs the pack cached beside the spool because "
                         "the store has not sent its active pack since start",
                         MetricType::Gauge);
    if (s.from_cache) AddSample(cached, {{"version", s.version}}, 1);
    out.push_back(std::move(cached));
  };
}

MetricSource StoreIngestLagSource(std::function<std::optional<int64_t>()> last_ingested_unix) {
  return [get = std::move(last_ingested_unix)](Families& out) {
    auto lag = Family("egressguard_store_ingest_lag_seconds",
                      "Now minus the time of the newest verdict in the last batch the store ingested", MetricType::Gauge);
    if (auto last = get()) {
      auto now = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch());
      AddSample(lag, {}, std::max<double>(0, static_cast<double>(now.count() - *last)));
    }
    out.push_back(std::move(lag));
  };
}

}  // namespace egressguard::admin
