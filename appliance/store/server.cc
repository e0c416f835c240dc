#include "appliance/store/server.h"

#include <fmt/format.h>
#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>

#include <atomic>
#include <condition_variable>
#include <ctime>
#include <mutex>
#include <thread>

#include "appliance/store/approvals.h"
#include "egressguard/v1/audit.grpc.pb.h"
#include "egressguard/v1/rule_admin.grpc.pb.h"
#include "egressguard/v1/store.grpc.pb.h"

namespace egressguard::store {

namespace {

grpc::Status ToGrpc(const absl::Status& s) {
  return s.ok() ? grpc::Status::OK
                : grpc::Status(static_cast<grpc::StatusCode>(s.code()), std::string(s.message()));
}

// Shared by the services: who may call what, and the audit of refusals.
class Gate {
 public:
  explicit Gate(Store& store) : store_(store) {}

  // OK with the caller when one of its roles is in `allowed`; otherwise the
  // refusal is audited and PERMISSION_DENIED comes back.
  grpc::Status Check(const grpc::ServerContext& ctx, const char* method, std::initializer_list<Role> allowed,
                     Caller* caller) {
    *caller = IdentifyCaller(ctx);
    for (Role r : allowed) {
      if (caller->roles.count(r)) return grpc::Status::OK;
    }
    std::string need;
    for (Role r : allowed) need += (need.empty() ? "" : " or ") + std::string(RoleName(r));
    (void)store_.Audit({caller->identity, caller->role_names, method, fmt::format("refused: needs role {}", need), false});
    return grpc::Status(grpc::StatusCode::PERMISSION_DENIED,
                        fmt::format("{} needs role {}; caller {} has role(s) {}", method, need, caller->identity,
                                    caller->role_names));
  }

  void Audit(const Caller& caller, const char* method, std::string detail) {
    (void)store_.Audit({caller.identity, caller.role_names, method, std::move(detail), true});
  }

  Store& store() { return store_; }

 private:
  Store& store_;
};

class IngestService final : public v1::VerdictIngest::Service {
 public:
  explicit IngestService(Gate& gate) : gate_(gate) {}

  grpc::Status Report(grpc::ServerContext* ctx,
                      grpc::ServerReaderWriter<v1::ReportAck, v1::ReportRequest>* stream) override {
    static constexpr const char* kMethod = "/egressguard.v1.VerdictIngest/Report";
    Caller caller;
    if (auto s = gate_.Check(*ctx, kMethod, {Role::kAppliance}, &caller); !s.ok()) return s;
    uint64_t inserted = 0, batches = 0;
    v1::ReportRequest request;
    grpc::Status result = grpc::Status::OK;
    while (stream->Read(&request)) {
      std::vector<v1::Verdict> batch(std::make_move_iterator(request.mutable_verdicts()->begin()),
                                     std::make_move_iterator(request.mutable_verdicts()->end()));
      auto r = gate_.store().Ingest(std::move(batch));
      if (!r.ok()) {
        result = ToGrpc(r.status());  // not acked: the appliance keeps them spooled and retries
        break;
      }
      ++batches;
      inserted += r->inserted;
      v1::ReportAck ack;
      for (auto& id : r->acked) ack.add_ids(std::move(id));
      for (auto& rej : r->rejected) *ack.add_rejected() = std::move(rej);
      if (!stream->Write(ack)) break;
    }
    if (inserted > 0) gate_.Audit(caller, kMethod, fmt::format("stored {} new verdicts in {} batches", inserted, batches));
    return result;
  }

 private:
  Gate& gate_;
};

class QueryService final : public v1::VerdictQuery::Service {
 public:
  explicit QueryService(Gate& gate) : gate_(gate) {}

  grpc::Status Query(grpc::ServerContext* ctx, const v1::QueryRequest* request, v1::QueryResponse* response) override {
    Caller caller;
    if (auto s = gate_.Check(*ctx, "/egressguard.v1.VerdictQuery/Query", {Role::kOfficer, Role::kAuditor}, &caller);
        !s.ok())
      return s;
    auto r = gate_.store().Query(*request);
    if (!r.ok()) return ToGrpc(r.status());
    *response = std::move(*r);
    return grpc::Status::OK;
  }

  grpc::Status VerifyVerdict(grpc::ServerContext* ctx, const v1::VerifyVerdictRequest* request,
                             v1::VerifyVerdictResponse* response) override {
    Caller caller;
    if (auto s = gate_.Check(*ctx, "/egressguard.v1.VerdictQuery/VerifyVerdict", {Role::kOfficer, Role::kAuditor},
                             &caller);
        !s.ok())
      return s;
    if (request->id().empty()) return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "no verdict id given");
    v1::QueryRequest query;
    query.mutable_filter()->set_id(request->id());
    query.set_page_size(1);
    auto found = gate_.store().Query(query);
    if (!found.ok()) return ToGrpc(found.status());
    response->set_found(!found->verdicts().empty());
    auto chain = gate_.store().Verify();
    if (!chain.ok()) return ToGrpc(chain.status());
    for (const auto& p : chain->problems()) {
      if (p.chain() == "verdicts") response->add_problems(fmt::format("seq {}: {}: {}", p.seq(), p.kind(), p.detail()));
    }
    response->set_verdicts_checked(chain->verdicts_checked());
    response->set_verified(response->found() && response->problems().empty());
    return grpc::Status::OK;
  }

  grpc::Status Stats(grpc::ServerContext* ctx, const v1::StatsRequest* request, v1::StatsResponse* response) override {
    Caller caller;
    if (auto s = gate_.Check(*ctx, "/egressguard.v1.VerdictQuery/Stats", {Role::kOfficer, Role::kAuditor}, &caller);
        !s.ok())
      return s;
    auto r = gate_.store().Stats(*request);
    if (!r.ok()) return ToGrpc(r.status());
    *response = std::move(*r);
    return grpc::Status::OK;
  }

 private:
  Gate& gate_;
};

class RuleAdminService final : public v1::RuleAdmin::Service {
 public:
  RuleAdminService(Gate& gate, PackCompileCheck check, PackTester tester, int approvals_required,
                   std::chrono::seconds approval_ttl)
      : gate_(gate),
        check_(std::move(check)),
        tester_(std::move(tester)),
        approvals_required_(approvals_required),
        approvals_(gate.store(), approval_ttl) {}

  grpc::Status Validate(grpc::ServerContext* ctx, const v1::ValidateRequest* request,
                        v1::ValidateResponse* response) override {
    Caller caller;
    if (auto s = gate_.Check(*ctx, "/egressguard.v1.RuleAdmin/Validate", {Role::kOfficer}, &caller); !s.ok()) return s;
    for (auto& e : Problems(request->pack())) response->add_errors(std::move(e));
    response->set_ok(response->errors().empty());
    return grpc::Status::OK;
  }

  grpc::Status Push(grpc::ServerContext* ctx, const v1::PushRequest* request, v1::PackInfo* response) override {
    Caller caller;
    if (auto s = gate_.Check(*ctx, "/egressguard.v1.RuleAdmin/Push", {Role::kOfficer}, &caller); !s.ok()) return s;
    auto problems = Problems(request->pack());
    if (!problems.empty()) {
      std::string all;
      for (const auto& p : problems) all += (all.empty() ? "" : "; ") + p;
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "rule pack refused: " + all);
    }
    auto r = gate_.store().PushPack(request->pack(), caller.identity, request->reason());
    if (!r.ok()) return ToGrpc(r.status());
    *response = std::move(*r);
    return grpc::Status::OK;
  }

  grpc::Status Activate(grpc::ServerContext* ctx, const v1::ActivateRequest* request, v1::PackInfo* response) override {
    static constexpr const char* kMethod = "/egressguard.v1.RuleAdmin/Activate";
    Caller caller;
    if (auto s = gate_.Check(*ctx, kMethod, {Role::kOfficer}, &caller); !s.ok()) return s;
    if (approvals_required_ > 1) {
      if (request->mode() == v1::PACK_MODE_UNSPECIFIED) {
        return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "activate needs a mode (MONITOR or ENFORCE)");
      }
      if (auto known = gate_.store().GetPack(request->version()); !known.ok()) return ToGrpc(known.status());
      return Proposed(approvals_.Propose(v1::Proposal::ACTIVATE, request->version(), request->mode(),
                                         caller.identity, caller.role_names, request->reason()));
    }
    auto r = gate_.store().ActivatePack(request->version(), request->mode(),
                                        {caller.identity, caller.role_names, kMethod, "", true}, request->reason());
    if (!r.ok()) return ToGrpc(r.status());
    *response = std::move(*r);
    return grpc::Status::OK;
  }

  grpc::Status Rollback(grpc::ServerContext* ctx, const v1::RollbackRequest* request, v1::PackInfo* response) override {
    static constexpr const char* kMethod = "/egressguard.v1.RuleAdmin/Rollback";
    Caller caller;
    if (auto s = gate_.Check(*ctx, kMethod, {Role::kOfficer}, &caller); !s.ok()) return s;
    if (approvals_required_ > 1) {
      // The approver must see what they approve: "the one before" could change
      // between proposal and approval.
      if (request->to_version().empty()) {
        return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                            "with four-eyes approval a rollback names its target version (--to VERSION)");
      }
      if (auto known = gate_.store().GetPack(request->to_version()); !known.ok()) return ToGrpc(known.status());
      return Proposed(approvals_.Propose(v1::Proposal::ROLLBACK, request->to_version(), v1::PACK_MODE_UNSPECIFIED,
                                         caller.identity, caller.role_names, request->reason()));
    }
    auto r = gate_.store().RollbackPack(request->to_version(), {caller.identity, caller.role_names, kMethod, "", true},
                                        request->reason());
    if (!r.ok()) return ToGrpc(r.status());
    *response = std::move(*r);
    return grpc::Status::OK;
  }

  grpc::Status Approve(grpc::ServerContext* ctx, const v1::ApproveRequest* request, v1::PackInfo* response) override {
    static constexpr const char* kMethod = "/egressguard.v1.RuleAdmin/Approve";
    Caller caller;
    if (auto s = gate_.Check(*ctx, kMethod, {Role::kOfficer}, &caller); !s.ok()) return s;
    auto r = approvals_.Approve(
        request->version(), caller.identity, caller.role_names, request->reason(),
        [&](const v1::Proposal& p) -> absl::StatusOr<v1::PackInfo> {
          const std::string why = fmt::format("{} (proposed by {}, approved by {})", p.reason(), p.proposer(),
                                              caller.identity);
          const AuditEntry who{caller.identity, caller.role_names, kMethod, "", true};
          return p.kind() == v1::Proposal::ROLLBACK ? gate_.store().RollbackPack(p.version(), who, why)
                                                    : gate_.store().ActivatePack(p.version(), p.mode(), who, why);
        });
    if (!r.ok()) {
      if (r.status().code() == absl::StatusCode::kPermissionDenied) {
        (void)gate_.store().Audit({caller.identity, caller.role_names, kMethod,
                                   fmt::format("refused: own proposal for {}", request->version()), false});
      }
      return ToGrpc(r.status());
    }
    *response = std::move(*r);
    return grpc::Status::OK;
  }

  grpc::Status ListProposals(grpc::ServerContext* ctx, const v1::ListProposalsRequest*,
                             v1::ListProposalsResponse* response) override {
    Caller caller;
    if (auto s = gate_.Check(*ctx, "/egressguard.v1.RuleAdmin/ListProposals", {Role::kOfficer, Role::kAuditor},
                             &caller);
        !s.ok())
      return s;
    auto r = approvals_.Pending();
    if (!r.ok()) return ToGrpc(r.status());
    for (auto& p : *r) *response->add_proposals() = std::move(p);
    response->set_approvals_required(static_cast<uint32_t>(approvals_required_));
    return grpc::Status::OK;
  }

  grpc::Status List(grpc::ServerContext* ctx, const v1::ListPacksRequest*, v1::ListPacksResponse* response) override {
    Caller caller;
    if (auto s = gate_.Check(*ctx, "/egressguard.v1.RuleAdmin/List", {Role::kOfficer, Role::kAuditor}, &caller);
        !s.ok())
      return s;
    auto r = gate_.store().ListPacks();
    if (!r.ok()) return ToGrpc(r.status());
    *response = std::move(*r);
    return grpc::Status::OK;
  }

  grpc::Status Get(grpc::ServerContext* ctx, const v1::GetPackRequest* request, v1::GetPackResponse* response) override {
    Caller caller;
    if (auto s = gate_.Check(*ctx, "/egressguard.v1.RuleAdmin/Get", {Role::kOfficer, Role::kAuditor}, &caller);
        !s.ok())
      return s;
    auto r = gate_.store().GetPack(request->version());
    if (!r.ok()) return ToGrpc(r.status());
    *response = std::move(*r);
    return grpc::Status::OK;
  }

  grpc::Status Test(grpc::ServerContext* ctx, const v1::TestPackRequest* request,
                    v1::TestPackResponse* response) override {
    Caller caller;
    if (auto s = gate_.Check(*ctx, "/egressguard.v1.RuleAdmin/Test", {Role::kOfficer}, &caller); !s.ok()) return s;
    if (!tester_) return grpc::Status(grpc::StatusCode::UNIMPLEMENTED, "this store was started without an engine to test packs with");
    rules::v1::RulePack pack = request->pack();
    if (pack.rules().empty()) {  // a stored version, or the active pack
      auto stored = gate_.store().GetPack(request->version());
      if (!stored.ok()) return ToGrpc(stored.status());
      pack = stored->pack();
    } else if (auto problems = Problems(pack); !problems.empty()) {
      std::string all;
      for (const auto& p : problems) all += (all.empty() ? "" : "; ") + p;
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "rule pack refused: " + all);
    }
    auto r = tester_(pack, *request);
    if (!r.ok()) return ToGrpc(r.status());
    *response = std::move(*r);
    return grpc::Status::OK;
  }

  grpc::Status Diff(grpc::ServerContext* ctx, const v1::DiffRequest* request, v1::DiffResponse* response) override {
    Caller caller;
    if (auto s = gate_.Check(*ctx, "/egressguard.v1.RuleAdmin/Diff", {Role::kOfficer, Role::kAuditor}, &caller);
        !s.ok())
      return s;
    auto r = gate_.store().DiffPacks(request->from_version(), request->to_version());
    if (!r.ok()) return ToGrpc(r.status());
    *response = std::move(*r);
    return grpc::Status::OK;
  }

  grpc::Status WatchActive(grpc::ServerContext* ctx, const v1::WatchActiveRequest*,
                           grpc::ServerWriter<v1::ActivePack>* writer) override {
    Caller caller;
    if (auto s = gate_.Check(*ctx, "/egressguard.v1.RuleAdmin/WatchActive", {Role::kAppliance}, &caller); !s.ok())
      return s;
    Store& store = gate_.store();
    uint64_t sent = 0;
    while (!ctx->IsCancelled() && !store.shutting_down()) {
      const uint64_t gen = store.active_generation();
      if (gen != sent) {
        auto active = store.Active();
        if (active.ok()) {
          if (!writer->Write(*active)) break;
          sent = active->generation();
        } else if (active.status().code() != absl::StatusCode::kNotFound) {
          return ToGrpc(active.status());
        } else {
          sent = gen;
        }
      }
      // Bounded wait: a cancelled caller is noticed within a second.
      store.WaitActiveChange(sent, std::chrono::seconds(1));
    }
    return store.shutting_down() ? grpc::Status(grpc::StatusCode::UNAVAILABLE, "store shutting down")
                                 : grpc::Status::OK;
  }

 private:
  // A recorded proposal is not the change yet: the caller hears so as an error, so a
  // script that activates and moves on cannot mistake it for done.
  static grpc::Status Proposed(const absl::StatusOr<v1::Proposal>& p) {
    if (!p.ok()) return ToGrpc(p.status());
    return grpc::Status(
        grpc::StatusCode::FAILED_PRECONDITION,
        fmt::format("needs approval: {} of {} proposed (id {}); a second, different officer must approve it "
                    "(`egressguard rules approve {}`) before {} UTC",
                    p->kind() == v1::Proposal::ROLLBACK ? "rollback to" : "activation", p->version(), p->id(),
                    p->version(), FormatUtc(p->expires_at().seconds())));
  }

  static std::string FormatUtc(int64_t unix_s) {
    std::time_t t = static_cast<std::time_t>(unix_s);
    std::tm tm{};
    gmtime_r(&t, &tm);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", &tm);
    return buf;
  }

  std::vector<std::string> Problems(const rules::v1::RulePack& pack) {
    auto problems = CheckPackShape(pack);
    if (problems.empty() && check_) problems = check_(pack);
    return problems;
  }

  Gate& gate_;
  PackCompileCheck check_;
  PackTester tester_;
  const int approvals_required_;
  Approvals approvals_;
};

class AuditService final : public v1::Audit::Service {
 public:
  explicit AuditService(Gate& gate) : gate_(gate) {}

  grpc::Status List(grpc::ServerContext* ctx, const v1::AuditListRequest* request,
                    v1::AuditListResponse* response) override {
    Caller caller;
    if (auto s = gate_.Check(*ctx, "/egressguard.v1.Audit/List", {Role::kAuditor}, &caller); !s.ok()) return s;
    auto r = gate_.store().ListAudit(*request);
    if (!r.ok()) return ToGrpc(r.status());
    *response = std::move(*r);
    return grpc::Status::OK;
  }

  grpc::Status Verify(grpc::ServerContext* ctx, const v1::VerifyRequest*, v1::VerifyResponse* response) override {
    Caller caller;
    if (auto s = gate_.Check(*ctx, "/egressguard.v1.Audit/Verify", {Role::kAuditor}, &caller); !s.ok()) return s;
    auto r = gate_.store().Verify();
    if (!r.ok()) return ToGrpc(r.status());
    *response = std::move(*r);
    return grpc::Status::OK;
  }

 private:
  Gate& gate_;
};

}  // namespace

struct StoreServer::Impl {
  StoreServerOptions options;
  StorePtr store;
  std::unique_ptr<Gate> gate;
  std::unique_ptr<IngestService> ingest;
  std::unique_ptr<QueryService> query;
  std::unique_ptr<RuleAdminService> rules;
  std::unique_ptr<AuditService> audit;
  std::unique_ptr<grpc::Server> server;
  int port = 0;
  std::string host;

  std::mutex mu;
  std::condition_variable cv;
  bool stopped = false;
  std::thread retention;
  std::thread health;

  // grpc.health.v1 per service: the reading services follow whether the database
  // answers, the writing ones also whether the last commit worked; "" is the whole
  // server (SERVING only when everything is, the key index pass included).
  void PublishHealth() {
    auto* service = server->GetHealthCheckService();
    const StoreHealth h = store->Health();
    service->SetServingStatus(v1::VerdictQuery::service_full_name(), h.read.ok());
    service->SetServingStatus(v1::Audit::service_full_name(), h.read.ok());
    service->SetServingStatus(v1::VerdictIngest::service_full_name(), h.write.ok());
    service->SetServingStatus(v1::RuleAdmin::service_full_name(), h.write.ok());
    service->SetServingStatus("", h.read.ok() && h.write.ok() && h.index.ok());
  }

  void HealthLoop() {
    std::unique_lock lock(mu);
    for (;;) {
      lock.unlock();
      PublishHealth();
      lock.lock();
      if (cv.wait_for(lock, std::chrono::seconds(1), [&] { return stopped; })) return;
    }
  }

  void RetentionLoop() {
    std::unique_lock lock(mu);
    for (;;) {
      lock.unlock();
      (void)store->ApplyRetention(options.retention_days, "store");
      lock.lock();
      if (cv.wait_for(lock, std::chrono::hours(1), [&] { return stopped; })) return;
    }
  }
};

StoreServer::StoreServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

StoreServer::~StoreServer() { Stop(); }

absl::StatusOr<std::unique_ptr<StoreServer>> StoreServer::Start(const StoreServerOptions& options) {
  if (options.db_path.empty()) return absl::InvalidArgumentError("no database given (--db FILE or --db postgresql://...)");
  auto creds = MakeServerCredentials(options.listen, options.tls);
  if (!creds.ok()) return creds.status();
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  Store::Options so;
  so.path = options.db_path;
  auto store = Store::Open(so);
  if (!store.ok()) return store.status();
  impl->store = std::move(*store);
  impl->gate = std::make_unique<Gate>(*impl->store);
  impl->ingest = std::make_unique<IngestService>(*impl->gate);
  impl->query = std::make_unique<QueryService>(*impl->gate);
  if (options.approvals_required < 1 || options.approvals_required > 2) {
    return absl::InvalidArgumentError("approvals_required is 1 or 2");
  }
  impl->rules = std::make_unique<RuleAdminService>(*impl->gate, options.compile_check, options.pack_tester,
                                                   options.approvals_required, options.approval_ttl);
  impl->audit = std::make_unique<AuditService>(*impl->gate);

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  builder.AddListeningPort(options.listen, *creds, &impl->port);
  builder.RegisterService(impl->ingest.get());
  builder.RegisterService(impl->query.get());
  builder.RegisterService(impl->rules.get());
  builder.RegisterService(impl->audit.get());
  impl->server = builder.BuildAndStart();
  if (!impl->server || impl->port == 0) {
    return absl::UnavailableError(fmt::format("cannot listen on {}", options.listen));
  }
  auto colon = options.listen.rfind(':');
  impl->host = colon == std::string::npos ? options.listen : options.listen.substr(0, colon);
  if (impl->host == "0.0.0.0" || impl->host.empty()) impl->host = "127.0.0.1";
  if (impl->host == "[::]") impl->host = "[::1]";
  Impl* raw = impl.get();
  if (options.retention_days > 0) impl->retention = std::thread([raw] { raw->RetentionLoop(); });
  if (impl->server->GetHealthCheckService() != nullptr) {
    // Published once before Start returns (and so before the address is announced):
    // a client that checks a service right after start must not get NOT_FOUND.
    raw->PublishHealth();
    impl->health = std::thread([raw] { raw->HealthLoop(); });
  }
  return std::unique_ptr<StoreServer>(new StoreServer(std::move(impl)));
}

int StoreServer::port() const { return impl_->port; }
std::string StoreServer::address() const { return fmt::format("{}:{}", impl_->host, impl_->port); }
Store& StoreServer::store() { return *impl_->store; }
std::shared_ptr<grpc::Channel> StoreServer::InProcessChannel() {
  return impl_->server->InProcessChannel(grpc::ChannelArguments());
}

void StoreServer::Wait() {
  std::unique_lock lock(impl_->mu);
  impl_->cv.wait(lock, [&] { return impl_->stopped; });
}

void StoreServer::Stop() {
  {
    std::lock_guard lock(impl_->mu);
    if (impl_->stopped) return;
    impl_->stopped = true;
  }
  impl_->cv.notify_all();
  if (impl_->health.joinable()) impl_->health.join();  // before Shutdown marks every service NOT_SERVING
  impl_->store->Shutdown();  // ends WatchActive streams
  impl_->server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  if (impl_->retention.joinable()) impl_->retention.join();
}

}  // namespace egressguard::store
