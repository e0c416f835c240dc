// Compliance store benchmark: ingest throughput and Query/Stats latency over N stored
// verdicts, on sqlite, PostgreSQL or both. What it does and its options: kUsage below
// (`store_bench --help`).
#include <fmt/format.h>
#include <google/protobuf/util/time_util.h>

#include <fcntl.h>
#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "appliance/store/pg.h"
#include "egressguard/v1/store.grpc.pb.h"
#include "appliance/store/sqlite.h"
#include "appliance/store/store.h"
#include "tests/support/pg_server.h"

constexpr char kUsage[] = R"(Compliance store: ingest throughput (batched, one writer thread) and Query latency
p50/p99 for the common filters over N stored verdicts. Prints tables:
  store_bench [--count 1000000] [--batch 1000] [--streams 1] [--sync full|normal]
              [--queries 200] [--ingest-only] [--drop-index NAME]... [--db /tmp/store_bench.db]
              [--ids uuid7|uuid4|seq] [--key-index-rows N]
              [--backend sqlite|postgresql|both] [--pg URI] [--sweep N]
              [--keys skewed|uniform] [--replicas N] [--ceiling]
              [--grpc-replicas N] [--egressguard PATH]
Runs in-process against egressguard::store::Store, so it measures the store, not
gRPC. `--backend` picks sqlite (WAL; the default), PostgreSQL, or both one after the
other in one run (same verdicts, same queries). PostgreSQL is a server this process
starts in a temporary directory (tests/support/pg_server.h: initdb, Unix socket,
fsync on as in production), or the database of `--pg URI`, which must be empty
(a throwaway one: the bench fills it and leaves it). `--sweep N` then ingests N more verdicts with 1, 2 and 4
streams each and prints verdicts/s for each. `--streams N` ingests from N threads at once, as N appliances'
Report streams do (their batches share commits). `--drop-index` (repeatable) is an
experiment: it drops an index before ingesting, to show what that index costs.
`--ids` picks the verdict id form: uuid7 (time-ordered, what the appliance sends;
default), uuid4 (random, what older appliances sent) or seq (a counter).
`--key-index-rows N` sets Store::Options::key_index_rows (how many new verdicts wait
before the writer keys their host, client and workload; queries scan those).
`--keys` picks how workloads and destinations are drawn: skewed (default: busy and
quiet workloads, each with three destinations of its own) or uniform (1000 x 2000 at
random, the rollups' worst case). `--replicas N` (PostgreSQL) opens N Store objects
on the one database, each with its own pool and group commit; stream k ingests
through replica k % N. `--ceiling` (PostgreSQL) COPYs the stored rows again into
plain tables, with and without the verdict indexes, from 1 and 2 connections: what
the machine does without the store. `--grpc-replicas N` (PostgreSQL) starts N
`egressguard store` processes on the database (`--egressguard PATH`, default
../appliance/egressguard beside this binary; plaintext on loopback) and ingests over
one Report stream per bench stream, stream k to process k % N, waiting for each ack
as a reporter does. The store's clock follows the verdicts' times (with gRPC
replicas, which keep their own clocks, the verdicts end at the time of the run).
The database file is deleted before the run.
)";

namespace {

using Clock = std::chrono::steady_clock;
using egressguard::rules::v1::Action;
namespace v1 = egressguard::v1;

const char* kCategories[] = {"credit_card", "iban", "email", "ahv", "us_ssn", "", "", "", "", ""};

enum class Ids { kUuid7, kUuid4, kSeq };

// RFC 9562 text form; v7 leads with the verdict's millisecond time.
std::string Uuid(int version, uint64_t unix_ms, std::mt19937_64& rng) {
  uint64_t hi = rng(), lo = rng();
  if (version == 7) hi = (unix_ms << 16) | (hi & 0xffff);
  hi = (hi & ~0xf000ULL) | (static_cast<uint64_t>(version) << 12);
  lo = (lo & 0x3fffffffffffffffULL) | 0x8000000000000000ULL;
  return fmt::format("{:08x}-{:04x}-{:04x}-{:04x}-{:012x}", hi >> 32, (hi >> 16) & 0xffff, hi & 0xffff, lo >> 48,
                     lo & 0xffffffffffffULL);
}

// How workloads and destinations are drawn. kSkewed (the default) is what a fleet
// sees: some workloads far busier than others, and each talking to a few destinations
// of its own (three, 60/30/10 %), with 2 % of its traffic to any of the 2000 hosts.
// kUniform draws workload and host independently and uniformly (1000 x 2000), so that
// nearly every verdict is a new workload x destination pair in its hour: the worst
// case for the rollups.
enum class Keys { kSkewed, kUniform };
Keys g_keys = Keys::kSkewed;

std::pair<uint64_t, uint64_t> WorkloadAndHost(std::mt19937_64& rng) {
  if (g_keys == Keys::kUniform) {
    const uint64_t w = rng() % 1000;
    return {w, rng() % 2000};
  }
  // Squaring a uniform draw: workload 0 is the busiest, 999 the quietest (about 1 in
  // 30 verdicts come from the busiest 1 %).
  const double u = static_cast<double>(rng() % 1000000) / 1e6;
  const auto w = static_cast<uint64_t>(u * u * 1000);
  const uint64_t pick = rng() % 100;
  if (pick < 2) return {w, rng() % 2000};
  const uint64_t nth = pick < 62 ? 0 : pick < 92 ? 1 : 2;
  // The workload's own destinations: fixed per workload, spread over the hosts.
  return {w, (w * 7919 + nth * 104729) % 2000};
}

v1::Verdict Make(uint64_t i, int64_t base_s, Ids ids, std::mt19937_64& rng) {
  v1::Verdict v;
  const int64_t time_s = base_s + static_cast<int64_t>(i / 20);
  switch (ids) {
    case Ids::kUuid7: v.set_id(Uuid(7, static_cast<uint64_t>(time_s) * 1000 + i % 20 * 50, rng)); break;
    case Ids::kUuid4: v.set_id(Uuid(4, 0, rng)); break;
    case Ids::kSeq: v.set_id(fmt::format("bench-{:012}", i)); break;
  }
  *v.mutable_time() = google::protobuf::util::TimeUtil::SecondsToTimestamp(time_s);
  v.set_appliance(fmt::format("appliance-{}", i % 4));
  v.set_client_address(fmt::format("10.{}.{}.{}", rng() % 4, rng() % 250, rng() % 250));
  const auto [workload, host] = WorkloadAndHost(rng);
  v.set_workload(fmt::format("ns{}/svc{}", workload % 20, workload / 20));
  v.set_host(fmt::format("host{}.example.com", host));
  v.set_port(443);
  v.set_method("POST");
  v.set_path("/api/v1/upload");
  v.set_mode("bump");
  v.set_bytes_out(rng() % 100000);
  v.set_bytes_in(rng() % 10000);
  v.set_rule_pack_version(i < 500000 ? "2026.11.1" : "2026.11.2");
  const char* cat = kCategories[rng() % 10];
  if (*cat) {
    auto* f = v.add_findings();
    f->set_rule_id(fmt::format("{}.r{}", cat, rng() % 3));
    f->set_category(cat);
    f->set_count(1 + rng() % 5);
    f->set_evidence("**** **** **** 1111");
    f->set_fingerprint(fmt::format("{:016x}{:016x}{:016x}{:016x}", rng(), rng(), rng(), rng()));
    v.set_action(rng() % 10 == 0 ? egressguard::rules::v1::BLOCK : egressguard::rules::v1::ALERT);
  } else {
    v.set_action(egressguard::rules::v1::ALLOW);
  }
  return v;
}

double Pct(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())))];
}

double CpuNow(clockid_t clock) {
  timespec ts{};
  clock_gettime(clock, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

// The machine's ceiling for PostgreSQL ingest, without the store: the rows the store
// wrote (binary COPY out of `verdicts`, in seq order) are COPYed again, in batches of
// `batch` rows with one durable commit each, into a plain table with no index (and then
// into one with the same indexes as `verdicts`), from 1 and 2 connections at once. No
// hashing, no chain lock, no rollups, no id claims: what any store design could reach
// on this server and these cores. Prints one table row per case.
int Ceiling(const std::string& uri, size_t batch) {
  namespace pg = egressguard::store::pg;
  auto c = pg::Connection::Open(uri);
  if (!c.ok()) {
    std::fprintf(stderr, "ceiling: %s\n", std::string(c.status().message()).c_str());
    return 2;
  }
  const char* cols =
      "id, time_us, appliance, client_address, workload, host, action, rule_pack_version, bytes_out, bytes_in, "
      "categories, rule_ids, body, seq, received_us, prev_hash, hash";
  PGresult* r = PQexec((*c)->raw(), fmt::format("COPY (SELECT {} FROM verdicts ORDER BY seq) TO STDOUT (FORMAT binary)", cols).c_str());
  if (PQresultStatus(r) != PGRES_COPY_OUT) {
    std::fprintf(stderr, "ceiling: %s\n", PQerrorMessage((*c)->raw()));
    PQclear(r);
    return 2;
  }
  PQclear(r);
  std::string all;
  for (;;) {
    char* buf = nullptr;
    const int n = PQgetCopyData((*c)->raw(), &buf, 0);
    if (n < 0) break;
    all.append(buf, static_cast<size_t>(n));
    PQfreemem(buf);
  }
  while ((r = PQgetResult((*c)->raw())) != nullptr) PQclear(r);
  // Split into tuples: a 19-byte header, then per tuple int16 fields and per field an
  // int32 length and that many bytes; an int16 -1 ends it.
  auto be32 = [&](size_t at) {
    return static_cast<uint32_t>(static_cast<unsigned char>(all[at])) << 24 |
           static_cast<uint32_t>(static_cast<unsigned char>(all[at + 1])) << 16 |
           static_cast<uint32_t>(static_cast<unsigned char>(all[at + 2])) << 8 |
           static_cast<uint32_t>(static_cast<unsigned char>(all[at + 3]));
  };
  std::vector<std::string_view> tuples;
  size_t at = 19;
  while (at + 2 <= all.size()) {
    const auto fields = static_cast<int16_t>(static_cast<unsigned char>(all[at]) << 8 | static_cast<unsigned char>(all[at + 1]));
    if (fields < 0) break;
    size_t end = at + 2;
    for (int f = 0; f < fields; ++f) {
      const uint32_t len = be32(end);
      end += 4 + (len == 0xffffffffu ? 0 : len);
    }
    tuples.emplace_back(all.data() + at, end - at);
    at = end;
  }
  const std::string header = all.substr(0, 19);
  std::vector<std::string> batches;
  for (size_t i = 0; i < tuples.size(); i += batch) {
    std::string b = header;
    for (size_t j = i; j < std::min(tuples.size(), i + batch); ++j) b.append(tuples[j]);
    b.append("\xff\xff", 2);
    batches.push_back(std::move(b));
  }
  std::printf("\n| ceiling: plain COPY of the same %zu rows, batches of %zu, one commit each | verdicts/s |\n|---|---|\n",
              tuples.size(), batch);
  for (bool indexed : {false, true}) {
    for (size_t conns : {size_t{1}, size_t{2}}) {
      const std::string table = fmt::format("ceiling_{}_{}", indexed ? "indexed" : "plain", conns);
      // LIKE a partitioned table makes a plain one; INCLUDING INDEXES copies its indexes.
      if (auto s = (*c)->Run(fmt::format("DROP TABLE IF EXISTS {0}; CREATE TABLE {0} (LIKE verdicts{1})", table,
                                         indexed ? " INCLUDING INDEXES" : ""));
          !s.ok()) {
        std::fprintf(stderr, "ceiling: %s\n", std::string(s.message()).c_str());
        return 2;
      }
      std::atomic<size_t> next{0};
      std::atomic<bool> failed{false};
      const auto t0 = Clock::now();
      std::vector<std::thread> threads;
      for (size_t k = 0; k < conns; ++k) {
        threads.emplace_back([&] {
          auto w = pg::Connection::Open(uri);
          if (!w.ok()) {
            failed = true;
            return;
          }
          for (size_t i = next++; i < batches.size(); i = next++) {
            if (!(*w)->Run("BEGIN").ok() ||
                !(*w)->CopyIn(fmt::format("COPY {} ({}) FROM STDIN (FORMAT binary)", table, cols), batches[i]).ok() ||
                !(*w)->Run("COMMIT").ok()) {
              failed = true;
              return;
            }
          }
        });
      }
      for (auto& t : threads) t.join();
      const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
      if (failed) {
        std::fprintf(stderr, "ceiling: a COPY failed\n");
        return 2;
      }
      std::printf("| %s, %zu connection(s) | %.0f |\n",
                  indexed ? "into a table with the indexes of verdicts" : "into a table with no index", conns,
                  static_cast<double>(tuples.size()) / secs);
      (void)(*c)->Run(fmt::format("DROP TABLE {}", table));
    }
  }
  return 0;
}

// `egressguard store` as a child process on the bench's database, plaintext on a
// loopback port the kernel picks; its address comes from its "listening on" line.
struct ReplicaProcess {
  pid_t pid = -1;
  std::string address;
};

ReplicaProcess StartReplica(const std::string& binary, const std::string& uri, const std::string& log) {
  ReplicaProcess r;
  int out[2];
  if (pipe(out) != 0) return r;
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, out[1], 1);
  posix_spawn_file_actions_addclose(&fa, out[0]);
  posix_spawn_file_actions_addopen(&fa, 2, log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  std::vector<std::string> args = {binary, "store", "--listen", "127.0.0.1:0", "--db", uri};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  const int rc = posix_spawn(&r.pid, binary.c_str(), &fa, nullptr, argv.data(), ::environ);
  posix_spawn_file_actions_destroy(&fa);
  close(out[1]);
  if (rc != 0) {
    r.pid = -1;
    close(out[0]);
    return r;
  }
  std::string line;
  char ch;
  while (read(out[0], &ch, 1) == 1 && ch != '\n') line.push_back(ch);
  close(out[0]);  // the replica's later stdout lines go nowhere; it writes none
  constexpr std::string_view kOn = "listening on ";
  if (auto at = line.find(kOn); at != std::string::npos) {
    const auto start = at + kOn.size();
    r.address = line.substr(start, line.find(' ', start) - start);
  }
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  uint64_t count = 1000000;
  size_t batch = 1000;
  size_t streams = 1;
  int queries = 200;
  bool ingest_only = false;
  std::string db = "/tmp/store_bench.db";
  std::string sync = "full";
  std::vector<std::string> drop;  // experiment: what an index costs the ingest
  Ids ids = Ids::kUuid7;
  int64_t key_index_rows = egressguard::store::Store::Options{}.key_index_rows;
  std::string backend = "sqlite";
  std::string pg_uri;
  uint64_t sweep = 0;
  bool ceiling = false;
  size_t replicas = 1;
  size_t grpc_replicas = 0;
  std::string egressguard_bin = (std::filesystem::path(argv[0]).parent_path() / "../appliance/egressguard").string();
  // A long run's tables appear as each is done, also when the output goes to a file.
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  static const std::set<std::string_view> kValued = {
      "--count", "--batch", "--streams", "--queries", "--db", "--sync", "--drop-index", "--backend", "--pg",
      "--sweep", "--replicas", "--grpc-replicas", "--egressguard", "--keys", "--key-index-rows", "--ids"};
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    }
    if (arg == "--ingest-only") {
      ingest_only = true;
      continue;
    }
    if (arg == "--ceiling") {
      ceiling = true;
      continue;
    }
    if (!kValued.count(arg)) {
      std::fprintf(stderr, "store_bench: unknown option %s (--help lists them)\n", argv[i]);
      return 2;
    }
    if (i + 1 >= argc) {
      std::fprintf(stderr, "store_bench: %s wants a value\n", argv[i]);
      return 2;
    }
    try {
      if (!std::strcmp(argv[i], "--count")) count = std::stoull(argv[i + 1]);
      if (!std::strcmp(argv[i], "--batch")) batch = std::stoul(argv[i + 1]);
      if (!std::strcmp(argv[i], "--streams")) streams = std::max<size_t>(1, std::stoul(argv[i + 1]));
      if (!std::strcmp(argv[i], "--queries")) queries = std::stoi(argv[i + 1]);
      if (!std::strcmp(argv[i], "--db")) db = argv[i + 1];
      if (!std::strcmp(argv[i], "--sync")) sync = argv[i + 1];
      if (!std::strcmp(argv[i], "--drop-index")) drop.push_back(argv[i + 1]);
      if (!std::strcmp(argv[i], "--backend")) backend = argv[i + 1];
      if (!std::strcmp(argv[i], "--pg")) pg_uri = argv[i + 1];
      if (!std::strcmp(argv[i], "--sweep")) sweep = std::stoull(argv[i + 1]);
      if (!std::strcmp(argv[i], "--replicas")) replicas = std::max<size_t>(1, std::stoul(argv[i + 1]));
      if (!std::strcmp(argv[i], "--grpc-replicas")) grpc_replicas = std::stoul(argv[i + 1]);
      if (!std::strcmp(argv[i], "--egressguard")) egressguard_bin = argv[i + 1];
      if (!std::strcmp(argv[i], "--keys")) {
        const std::string_view k = argv[i + 1];
        if (k != "skewed" && k != "uniform") {
          std::fprintf(stderr, "--keys wants skewed or uniform\n");
          return 2;
        }
        g_keys = k == "skewed" ? Keys::kSkewed : Keys::kUniform;
      }
      if (!std::strcmp(argv[i], "--key-index-rows")) key_index_rows = std::max<int64_t>(1, std::stoll(argv[i + 1]));
      if (!std::strcmp(argv[i], "--ids")) {
        const std::string_view form = argv[i + 1];
        if (form != "uuid7" && form != "uuid4" && form != "seq") {
          std::fprintf(stderr, "--ids wants uuid7, uuid4 or seq\n");
          return 2;
        }
        ids = form == "uuid7" ? Ids::kUuid7 : form == "uuid4" ? Ids::kUuid4 : Ids::kSeq;
      }
    } catch (const std::exception&) {
      std::fprintf(stderr, "store_bench: %s wants a number, not %s\n", argv[i], argv[i + 1]);
      return 2;
    }
    ++i;
  }
  if (backend != "sqlite" && backend != "postgresql" && backend != "both") {
    std::fprintf(stderr, "--backend wants sqlite, postgresql or both\n");
    return 2;
  }
  std::unique_ptr<egressguard::testing::PgServer> pg_server;
  auto run = [&](bool pg) -> int {
  std::string database = db;
  if (pg) {
    if (pg_uri.empty()) {
      if (!pg_server) {
        auto started = egressguard::testing::PgServer::Start(/*fsync=*/true);
        if (!started.ok()) {
          std::fprintf(stderr, "postgresql: %s\n", std::string(started.status().message()).c_str());
          return 2;
        }
        pg_server = std::move(*started);
      }
      auto name = pg_server->CreateDatabase();
      if (!name.ok()) {
        std::fprintf(stderr, "postgresql: %s\n", std::string(name.status().message()).c_str());
        return 2;
      }
      database = pg_server->Uri(*name);
    } else {
      database = pg_uri;
    }
    std::printf("\n## PostgreSQL\n\n");
  } else {
    for (const char* suffix : {"", "-wal", "-shm"}) std::filesystem::remove(db + suffix);
    std::printf("\n## sqlite\n\n");
  }
  // The store's clock follows the verdicts (a second after the newest one made so far),
  // as a store receiving them live would: its receive times, month partitions and the
  // days it closes for the daily rollups are those of the verdicts, not of the hour
  // the bench happens to run in (which would make every verdict a late one).
  // gRPC replicas run on their own (real) clocks: the verdicts then end about now, so
  // that they are not late ones of long-closed days for the daily rollups.
  const int64_t base_s = pg && grpc_replicas > 0
                             ? static_cast<int64_t>(::time(nullptr)) - static_cast<int64_t>((count + 3 * sweep) / 20) - 60
                             : 1'790'000'000;
  auto sim_us = std::make_shared<std::atomic<int64_t>>(base_s * 1000000);
  egressguard::store::Store::Options options{database, 4, [sim_us] { return sim_us->load(); }};
  options.synchronous = sync == "normal" ? "NORMAL" : "FULL";
  options.key_index_rows = key_index_rows;
  auto store = egressguard::store::Store::Open(options);
  if (!store.ok()) {
    std::fprintf(stderr, "open: %s\n", std::string(store.status().message()).c_str());
    return 2;
  }
  // Replicas: more Store objects on the same PostgreSQL database, each with its own
  // connection pool and its own group commit, as separate store processes have; stream
  // k ingests through replica k % N. In one process (no gRPC between), so this measures
  // the database side of several replicas, not their network hop.
  std::vector<egressguard::store::Store*> writers{store->get()};
  std::vector<std::unique_ptr<egressguard::store::Store>> extra;
  for (size_t k = 1; k < replicas && pg; ++k) {
    auto more = egressguard::store::Store::Open(options);
    if (!more.ok()) {
      std::fprintf(stderr, "open replica: %s\n", std::string(more.status().message()).c_str());
      return 2;
    }
    extra.push_back(std::move(*more));
    writers.push_back(extra.back().get());
  }
  // gRPC replicas: `egressguard store` processes on the same database; stream k sends
  // its batches over one Report stream to process k % N and waits for each ack, as an
  // appliance's reporter does. This includes the gRPC hop and the replicas' own group
  // commit; the in-process Store above then only answers the queries.
  std::vector<ReplicaProcess> procs;
  struct ReportStream {
    std::unique_ptr<grpc::ClientContext> context;
    std::unique_ptr<grpc::ClientReaderWriter<v1::ReportRequest, v1::ReportAck>> rw;
  };
  std::vector<std::unique_ptr<v1::VerdictIngest::Stub>> stubs;
  std::vector<ReportStream> report_streams(8);
  struct StopProcs {
    std::vector<ReplicaProcess>* procs;
    ~StopProcs() {
      for (auto& p : *procs) {
        if (p.pid > 0) {
          kill(p.pid, SIGTERM);
          int st = 0;
          waitpid(p.pid, &st, 0);
        }
      }
    }
  } stop_procs{&procs};
  if (pg && grpc_replicas > 0) {
    for (size_t k = 0; k < grpc_replicas; ++k) {
      auto p = StartReplica(egressguard_bin, database, fmt::format("/tmp/store_bench_replica{}.log", k));
      if (p.pid > 0) procs.push_back(p);
      if (p.address.empty()) {
        std::fprintf(stderr, "replica %zu did not start (%s; see /tmp/store_bench_replica%zu.log)\n", k,
                     egressguard_bin.c_str(), k);
        return 2;
      }
      stubs.push_back(v1::VerdictIngest::NewStub(grpc::CreateChannel(p.address, grpc::InsecureChannelCredentials())));
    }
  }
  // Ingests one batch as stream k: through a gRPC replica, or an in-process one.
  auto ingest = [&](size_t k, std::vector<v1::Verdict> b) -> std::string {
    if (stubs.empty()) {
      auto r = writers[k % writers.size()]->Ingest(std::move(b));
      return r.ok() ? "" : std::string(r.status().message());
    }
    auto& rs = report_streams.at(k);
    if (!rs.rw) {
      rs.context = std::make_unique<grpc::ClientContext>();
      rs.rw = stubs[k % stubs.size()]->Report(rs.context.get());
    }
    v1::ReportRequest req;
    const size_t n = b.size();
    for (auto& v : b) *req.add_verdicts() = std::move(v);
    v1::ReportAck ack;
    if (!rs.rw->Write(req) || !rs.rw->Read(&ack)) return "the Report stream broke";
    if (static_cast<size_t>(ack.ids_size() + ack.rejected_size()) != n) return "an ack does not cover its batch";
    return "";
  };
  if (!drop.empty() && pg) {
    std::fprintf(stderr, "--drop-index is a sqlite experiment\n");
    return 2;
  }
  if (!drop.empty()) {
    auto raw = egressguard::store::Database::Open(db, {});
    for (const auto& d : drop) {
      if (!raw.ok() || !(*raw)->Exec("DROP INDEX " + d).ok()) {
        std::fprintf(stderr, "cannot drop index %s\n", d.c_str());
        return 2;
      }
    }
  }
  std::mt19937_64 rng(42);

  // Ingest: verdicts are built outside the timed sections, a round of `streams`
  // batches at a time; the timers cover the Store::Ingest calls of each round.
  double ingest_s = 0, ingest_cpu_s = 0;
  for (uint64_t done = 0; done < count;) {
    std::vector<std::vector<v1::Verdict>> round(streams);
    for (auto& b : round) {
      for (size_t j = 0; j < batch && done < count; ++j, ++done) b.push_back(Make(done, base_s, ids, rng));
    }
    sim_us->store((base_s + static_cast<int64_t>(done / 20) + 1) * 1000000);
    std::vector<std::string> errors(streams);
    auto t0 = Clock::now();
    const double c0 = CpuNow(CLOCK_PROCESS_CPUTIME_ID);  // the writer thread's work; callers only wait
    std::vector<std::thread> threads;
    for (size_t k = 0; k < streams; ++k) {
      threads.emplace_back([&, k] {
        if (round[k].empty()) return;
        errors[k] = ingest(k, std::move(round[k]));
      });
    }
    for (auto& t : threads) t.join();
    ingest_cpu_s += CpuNow(CLOCK_PROCESS_CPUTIME_ID) - c0;
    ingest_s += std::chrono::duration<double>(Clock::now() - t0).count();
    for (const auto& e : errors) {
      if (!e.empty()) {
        std::fprintf(stderr, "ingest: %s\n", e.c_str());
        return 2;
      }
    }
  }
  std::printf("| measurement | value |\n|---|---|\n");
  std::printf("| keys | %s; %zu %s replica(s) |\n",
              g_keys == Keys::kSkewed ? "skewed (each workload a few destinations)" : "uniform (1000 x 2000 at random)",
              stubs.empty() ? writers.size() : stubs.size(), stubs.empty() ? "in-process" : "gRPC (egressguard store)");
  std::printf("| ingest, %llu verdicts (%s ids), batches of %zu, %zu stream(s), synchronous=%s | %.0f verdicts/s (%.1f s) |\n",
              static_cast<unsigned long long>(count), ids == Ids::kUuid7 ? "uuid7" : ids == Ids::kUuid4 ? "uuid4" : "seq",
              batch, streams, options.synchronous.c_str(),
              static_cast<double>(count) / ingest_s, ingest_s);
  std::printf("| ingest per CPU-second (one core, excludes waiting for the CPU/disk) | %.0f verdicts/s (%.1f CPU s) |\n",
              static_cast<double>(count) / ingest_cpu_s, ingest_cpu_s);
  if (!pg) std::printf("| database size | %.0f MiB |\n",
              static_cast<double>(std::filesystem::file_size(db) + std::filesystem::file_size(db + "-wal")) /
                  (1 << 20));

  if (pg) {
    // Statistics for the planner, as autovacuum gathers them within a minute of a load:
    // planned without them (right after the bulk load), two filters were read through
    // bitmap scans of most of the table and sorted (240 ms and more for a page).
    auto c = egressguard::store::pg::Connection::Open(database);
    const auto t0 = Clock::now();
    if (!c.ok() || !(*c)->Run("ANALYZE").ok()) {
      std::fprintf(stderr, "ANALYZE failed\n");
      return 2;
    }
    std::printf("| ANALYZE before the queries (what autovacuum does within a minute) | %.0f ms |\n",
                std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
  }
  if (pg && ceiling) {
    if (int rc = Ceiling(database, batch); rc != 0) return rc;
  }
  if (ingest_only) return 0;

  // A write queued now runs after any keying the last ingest started, so the queries
  // below do not share the core with it; then count what keyed filters still scan.
  if (auto s = (*store)->Audit({"store_bench", "bench", "bench", "queries follow", true}); !s.ok()) {
    std::fprintf(stderr, "audit: %s\n", std::string(s.message()).c_str());
    return 2;
  }
  if (!pg) {
    auto raw = egressguard::store::Database::Open(db, {});
    auto st = raw.ok() ? (*raw)->Prepare("SELECT COUNT(*) FROM verdicts WHERE seq > (SELECT upto_seq FROM key_index)")
                       : absl::StatusOr<egressguard::store::Statement>(raw.status());
    if (st.ok() && st->Step().ok()) {
      std::printf("| verdicts not keyed yet (host/client/workload filters scan them) | %lld |\n",
                  static_cast<long long>(st->Int(0)));
    }
  }

  struct Case {
    const char* name;
    std::function<void(v1::QueryRequest&, std::mt19937_64&)> fill;
  };
  const int64_t span_s = static_cast<int64_t>(count / 20);
  std::vector<Case> cases = {
      {"newest 100, no filter", [](v1::QueryRequest&, std::mt19937_64&) {}},
      {"host = X", [](v1::QueryRequest& q, std::mt19937_64& r) {
         q.mutable_filter()->set_host(fmt::format("host{}.example.com", r() % 2000));
       }},
      {"client = X", [](v1::QueryRequest& q, std::mt19937_64& r) {
         q.mutable_filter()->set_client_address(fmt::format("10.{}.{}.{}", r() % 4, r() % 250, r() % 250));
       }},
      {"category = credit_card", [](v1::QueryRequest& q, std::mt19937_64&) {
         q.mutable_filter()->set_category("credit_card");
       }},
      {"rule = iban.r1", [](v1::QueryRequest& q, std::mt19937_64&) { q.mutable_filter()->set_rule_id("iban.r1"); }},
      {"action = BLOCK", [](v1::QueryRequest& q, std::mt19937_64&) {
         q.mutable_filter()->set_action(egressguard::rules::v1::BLOCK);
       }},
      {"last hour + category = iban", [&](v1::QueryRequest& q, std::mt19937_64&) {
         q.mutable_filter()->set_category("iban");
         *q.mutable_filter()->mutable_since() =
             google::protobuf::util::TimeUtil::SecondsToTimestamp(base_s + span_s - 3600);
       }},
      {"workload = X, 1 day window", [&](v1::QueryRequest& q, std::mt19937_64& r) {
         q.mutable_filter()->set_workload(fmt::format("ns{}/svc{}", r() % 20, r() % 50));
         int64_t start = base_s + static_cast<int64_t>(r() % static_cast<uint64_t>(std::max<int64_t>(span_s, 1)));
         *q.mutable_filter()->mutable_since() = google::protobuf::util::TimeUtil::SecondsToTimestamp(start);
         *q.mutable_filter()->mutable_until() = google::protobuf::util::TimeUtil::SecondsToTimestamp(start + 86400);
       }},
      {"pack version + action = ALERT, page 2", [&](v1::QueryRequest& q, std::mt19937_64&) {
         q.mutable_filter()->set_rule_pack_version("2026.11.1");
         q.mutable_filter()->set_action(egressguard::rules::v1::ALERT);
         auto first = (*store)->Query(q);
         if (first.ok()) q.set_page_token(first->next_page_token());
       }},
  };
  std::printf("\n| Query (page of 100, newest first) | p50 ms | p99 ms | rows |\n|---|---|---|---|\n");
  for (const auto& c : cases) {
    std::vector<double> ms;
    size_t rows = 0;
    for (int i = 0; i < queries; ++i) {
      v1::QueryRequest q;
      q.set_page_size(100);
      c.fill(q, rng);
      auto t0 = Clock::now();
      auto r = (*store)->Query(q);
      ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
      if (!r.ok()) {
        std::fprintf(stderr, "%s: %s\n", c.name, std::string(r.status().message()).c_str());
        return 2;
      }
      rows += static_cast<size_t>(r->verdicts_size());
    }
    std::printf("| %s | %.2f | %.2f | %.0f |\n", c.name, Pct(ms, 0.5), Pct(ms, 0.99),
                static_cast<double>(rows) / queries);
  }
  std::printf("\n| Stats over all verdicts (full aggregate) | ms |\n|---|---|\n");
  for (auto g : {v1::CATEGORY, v1::DESTINATION, v1::DAY, v1::ACTION, v1::WORKLOAD, v1::WORKLOAD_DESTINATION}) {
    v1::StatsRequest s;
    s.set_group_by(g);
    auto t0 = Clock::now();
    auto r = (*store)->Stats(s);
    double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
    std::printf("| group by %s | %.0f (%d rows) |\n", v1::GroupBy_Name(g).c_str(), ms, r.ok() ? r->rows_size() : -1);
  }
  for (auto g : {v1::ACTION, v1::WORKLOAD_DESTINATION}) {
    // Since one microsecond before the first verdict: the same answer, but not on a
    // whole hour, so the store scans the verdicts (what every Stats cost before the
    // rollups).
    v1::StatsRequest s;
    s.set_group_by(g);
    *s.mutable_filter()->mutable_since() = google::protobuf::util::TimeUtil::MicrosecondsToTimestamp(base_s * 1000000 - 1);
    auto t0 = Clock::now();
    auto r = (*store)->Stats(s);
    double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
    std::printf("| group by %s, scanning the verdicts (no rollup) | %.0f (%d rows) |\n", v1::GroupBy_Name(g).c_str(), ms,
                r.ok() ? r->rows_size() : -1);
  }
  auto t0 = Clock::now();
  auto verify = (*store)->Verify();
  std::printf("| Verify (both chains, rollups rebuilt) | %.0f (%s) |\n",
              std::chrono::duration<double, std::milli>(Clock::now() - t0).count(),
              verify.ok() && verify->ok() ? "ok" : "FAILED");
  if (sweep > 0) {
    std::printf("\n| ingest of %llu more verdicts, batches of %zu | verdicts/s |\n|---|---|\n",
                static_cast<unsigned long long>(sweep), batch);
    uint64_t next = count;
    for (size_t n : {size_t{1}, size_t{2}, size_t{4}}) {
      const uint64_t end = next + sweep;
      double secs = 0;
      while (next < end) {
        std::vector<std::vector<v1::Verdict>> round(n);
        for (auto& b : round) {
          for (size_t j = 0; j < batch && next < end; ++j, ++next) b.push_back(Make(next, base_s, ids, rng));
        }
        sim_us->store((base_s + static_cast<int64_t>(next / 20) + 1) * 1000000);
        std::vector<std::thread> threads;
        std::atomic<bool> failed{false};
        auto r0 = Clock::now();
        for (size_t k = 0; k < n; ++k) {
          threads.emplace_back([&, k] {
            if (!round[k].empty() && !ingest(k, std::move(round[k])).empty()) failed = true;
          });
        }
        for (auto& t : threads) t.join();
        secs += std::chrono::duration<double>(Clock::now() - r0).count();
        if (failed) {
          std::fprintf(stderr, "sweep ingest failed\n");
          return 2;
        }
      }
      std::printf("| %zu concurrent stream(s) | %.0f |\n", n, static_cast<double>(sweep) / secs);
    }
  }
  return 0;
  };
  for (bool pg : {false, true}) {
    if ((pg && backend == "sqlite") || (!pg && backend == "postgresql")) continue;
    if (int rc = run(pg); rc != 0) return rc;
  }
  return 0;
}
