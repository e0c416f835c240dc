#!/usr/bin/env bash
# Makes the real database dumps the DLP corpus is scored on: starts throwaway
# PostgreSQL and MariaDB instances on loopback in a temp dir, creates a small table of
# synthetic customers (values that pass their check digits), and writes
#   tests/data/dumps/pg_plain.sql      pg_dump plain format (COPY ... FROM stdin)
#   tests/data/dumps/pg_inserts.sql    pg_dump --inserts
#   tests/data/dumps/pg_custom.dump    pg_dump -Fc -Z0 (PGDMP archive)
#   tests/data/dumps/mysqldump.sql     mysqldump / mariadb-dump (extended INSERT)
#   tests/data/dumps/pg_schema_only.sql       pg_dump --schema-only (DDL, no rows)
#   tests/data/dumps/mysqldump_no_data.sql    mariadb-dump --no-data (DDL, no rows)
# each with a .expect sidecar (tests/data/corpus/README.md) that label.py fills with the
# located occurrences of the rows' values. Run once by hand (root,
# needs apt for postgresql and mariadb-server if missing) and commit the outputs;
# the test suite never runs it.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=$ROOT/tests/data/dumps
ROWS=${ROWS:-60}

need=()
command -v /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
command -v mariadb-install-db >/dev/null 2>&1 || need+=(mariadb-server mariadb-client)
if ((${#need[@]})); then
  echo "gen-dumps: installing ${need[*]}" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
PGBIN=$(dirname "$(ls /usr/lib/postgresql/*/bin/initdb | sort -V | tail -1)")

WORK=$(mktemp -d /tmp/egressguard-dumps.XXXXXX)
chmod 755 "$WORK"
PG_PID="" MY_PID=""
cleanup() {
  [[ -n $PG_PID ]] && su postgres -s /bin/sh -c "$PGBIN/pg_ctl -D $WORK/pg -m immediate stop" >/dev/null 2>&1 || true
  [[ -n $MY_PID ]] && kill "$MY_PID" 2>/dev/null && wait "$MY_PID" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Synthetic rows: name, e-mail, phone, IBAN (mod-97), AHV (EAN-13), card (Luhn).
/usr/bin/python3 - "$ROWS" > "$WORK/rows.tsv" <<'PY'
import random, sys
rng = random.Random(42)
def digits(n): return "".join(rng.choice("0123456789") for _ in range(n))
def luhn(s):
    t = 0
    for i, c in enumerate(reversed(s)):
        d = int(c) * (2 if i % 2 == 0 else 1)
        t += d - 9 if d > 9 else d
    return str((10 - t % 10) % 10)
def iban():
    bban = "00" + digits(15)
    chk = 98 - int("".join(str(int(c, 36)) for c in bban + "CH00")) % 97
    return f"CH{chk:02d}{bban}"
def ahv():
    s = "756" + digits(9)
    t = sum(int(c) * (1 if i % 2 == 0 else 3) for i, c in enumerate(s))
    s += str((10 - t % 10) % 10)
    return f"{s[:3]}.{s[3:7]}.{s[7:11]}.{s[11:]}"
first = ["Anna", "Luca", "Sofia", "Noah", "Mia", "Elias", "Lea", "Leon", "Laura", "Jonas"]
last = ["Mueller", "Meier", "Schmid", "Keller", "Weber", "Huber", "Steiner", "Fischer"]
for i in range(int(sys.argv[1])):
    f, l = rng.choice(first), rng.choice(last)
    card = "4" + digits(14); card += luhn(card)
    print("\t".join([str(i + 1), f"{f} {l}", f"{f.lower()}.{l.lower()}{i}@bluewin.ch",
                     f"+41 79 {rng.randint(200, 999)} {digits(2)} {digits(2)}", iban(), ahv(), card]))
PY

SCHEMA="CREATE TABLE customers (id integer PRIMARY KEY, name text NOT NULL, email text, phone text,
  iban text, ahv text, card text);"

# ---- PostgreSQL
PGPORT=$(free_port)
mkdir "$WORK/pg" && chown postgres "$WORK/pg"
cp "$WORK/rows.tsv" "$WORK/pg.tsv" && chown postgres "$WORK/pg.tsv"
su postgres -s /bin/sh -c "$PGBIN/initdb -D $WORK/pg -A trust -U postgres >/dev/null"
su postgres -s /bin/sh -c "$PGBIN/pg_ctl -D $WORK/pg -l $WORK/pg/log -w -o '-k $WORK/pg -h 127.0.0.1 -p $PGPORT' start >/dev/null"
PG_PID=started
PSQL="$PGBIN/psql -h 127.0.0.1 -p $PGPORT -U postgres -v ON_ERROR_STOP=1 -q"
$PSQL -c "CREATE DATABASE shop;"
$PSQL -d shop -c "$SCHEMA"
$PSQL -d shop -c "\\copy customers FROM '$WORK/pg.tsv'"
$PGBIN/pg_dump -h 127.0.0.1 -p "$PGPORT" -U postgres shop > "$OUT/pg_plain.sql"
$PGBIN/pg_dump -h 127.0.0.1 -p "$PGPORT" -U postgres --inserts shop > "$OUT/pg_inserts.sql"
# -Z0: table data stored uncompressed, so the expected categories do not depend on
# whether the engine inflates zlib blocks inside a binary archive.
$PGBIN/pg_dump -h 127.0.0.1 -p "$PGPORT" -U postgres -Fc -Z0 shop > "$OUT/pg_custom.dump"
$PGBIN/pg_dump -h 127.0.0.1 -p "$PGPORT" -U postgres --schema-only shop > "$OUT/pg_schema_only.sql"
su postgres -s /bin/sh -c "$PGBIN/pg_ctl -D $WORK/pg -m fast stop >/dev/null"
PG_PID=""

# ---- MariaDB
MYPORT=$(free_port)
mkdir "$WORK/my" && chown mysql "$WORK/my" 2>/dev/null || true
mariadb-install-db --no-defaults --user=mysql --datadir="$WORK/my/data" --auth-root-authentication-method=normal \
  >/dev/null 2>&1
mariadbd --no-defaults --user=mysql --datadir="$WORK/my/data" --socket="$WORK/my/sock" --port="$MYPORT" \
  --bind-address=127.0.0.1 --skip-grant-tables --pid-file="$WORK/my/pid" >"$WORK/my/log" 2>&1 &
MY_PID=$!
for _ in $(seq 1 60); do mariadb-admin --no-defaults --socket="$WORK/my/sock" ping >/dev/null 2>&1 && break; sleep 0.5; done
MY="mariadb --no-defaults --socket=$WORK/my/sock -uroot"
$MY -e "CREATE DATABASE shop;"
$MY shop -e "${SCHEMA//text NOT NULL/varchar(80) NOT NULL}"
chmod 644 "$WORK/rows.tsv"
$MY --local-infile=1 shop -e "LOAD DATA LOCAL INFILE '$WORK/rows.tsv' INTO TABLE customers FIELDS TERMINATED BY '\t';"
mariadb-dump --no-defaults --socket="$WORK/my/sock" -uroot --skip-dump-date shop > "$OUT/mysqldump.sql"
mariadb-dump --no-defaults --socket="$WORK/my/sock" -uroot --skip-dump-date --no-data shop > "$OUT/mysqldump_no_data.sql"
kill "$MY_PID"; wait "$MY_PID" 2>/dev/null || true
MY_PID=""

# ---- sidecars: every dump with rows is a dump; the rows carry PII of these categories,
# and are more than min_records (50) records of people.
for f in pg_plain.sql pg_inserts.sql pg_custom.dump mysqldump.sql; do
  printf 'db_dump\nbulk_pii\nemail\nphone\niban\nahv\ncredit_card\n' > "$OUT/$f.expect"
done
# A dump without rows is no data leaving: the schema only (low, alert).
for f in pg_schema_only.sql mysqldump_no_data.sql; do
  printf 'db_schema\n' > "$OUT/$f.expect"
done
# Every occurrence of the rows' values, located for the per-occurrence score.
/usr/bin/python3 "$OUT/label.py" "$WORK/rows.tsv" "$OUT"
ls -l "$OUT"
