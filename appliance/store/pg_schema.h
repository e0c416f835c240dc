#pragma once
// Numbered schema migrations of the compliance store on PostgreSQL. schema_version
// holds the number applied; migrations run in order, each in its own transaction,
// under an advisory lock so that store replicas starting together apply each once.

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "appliance/store/pg.h"

namespace egressguard::store::pg {

// Advisory lock keys (pg_advisory_xact_lock): arbitrary constants, "eg" + purpose.
inline constexpr int64_t kLockMigrate = 0x6567'0001;
inline constexpr int64_t kLockVerdictChain = 0x6567'0002;
inline constexpr int64_t kLockAuditChain = 0x6567'0003;
inline constexpr int64_t kLockPacks = 0x6567'0004;

int LatestSchemaVersion();
// 0 for a database without the store's tables.
absl::StatusOr<int> SchemaVersion(Connection& c);
// Applies the missing migrations up to `target` (default: the latest); a database
// newer than this build is refused. Returns the version before.
absl::StatusOr<int> Migrate(Connection& c, int target = -1);

}  // namespace egressguard::store::pg
