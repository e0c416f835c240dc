#pragma once
// Numbered schema migrations of the compliance store. The database's
// PRAGMA user_version is the number of migrations applied; opening a store applies
// the missing ones in order, each in its own transaction.

#include "absl/status/status.h"
#include "appliance/store/sqlite.h"

namespace egressguard::store {

// The number of migrations this build knows; a database beyond it is refused.
int LatestSchemaVersion();
absl::StatusOr<int> SchemaVersion(Database& db);
// Applies migrations until the database is at `target` (default: latest).
absl::Status Migrate(Database& db, int target = -1);

}  // namespace egressguard::store
