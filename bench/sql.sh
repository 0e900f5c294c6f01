#!/usr/bin/env bash
# Our SQL backend (sessionkit-sql) against tower-sessions 0.14 + tower-sessions-sqlx-store 0.15,
# on SQLite (a temp file) and PostgreSQL, in one run, in-process (tower::ServiceExt::oneshot,
# current-thread runtime), read and write scenarios:
#   - instructions per request (callgrind): every thread of the process during the measured
#     requests (sqlx runs each SQLite connection on a thread of its own, so for SQLite this
#     includes the SQLite engine; a PostgreSQL server works in its own process, not counted);
#     for SQLite also the request thread alone, and the engine's share (every call into the
#     SQLite library, with what it calls): the client side is everything else, as for
#     PostgreSQL it is everything but the server;
#   - time per request (timed batches, native run);
#   - statements per request (sqlx's statement log) and, for PostgreSQL, round trips per
#     request (a counting TCP relay between the stack and the server); allocations.
#
# usage: bench/sql.sh [--n N] [--time-ms T] [--sessions S]
#   --n N         measured requests per run (default 1000)
#   --time-ms T   timed batches per native run, in ms (default 3000)
#   --sessions S  distinct sessions per stack (default 1000)
#
# Needs valgrind and the PostgreSQL at DATABASE_URL (default
# postgres://postgres@127.0.0.1:5432/test). Each stack gets a table of its own
# (bench_<stack>_<pid>_<time>), dropped before the program exits; SQLite databases are temp
# files of their own, deleted likewise. SQLite files go to SQLITE_DIR, by default /dev/shm
# (memory) when it exists: there an fsync costs nothing, so the time is the stacks' and not
# this machine's disk (a disk costs both stacks the same per commit). Set SQLITE_DIR=/tmp for
# a disk. Likewise both stacks' PostgreSQL connections set synchronous_commit = off.
# Builds into the main workspace's target/; run it from anywhere.
set -euo pipefail

cd "$(dirname "$0")/.."
N=1000
TIME_MS=3000
SESSIONS=1000
while [ $# -gt 0 ]; do
    case "$1" in
        --n) N="$2"; shift 2 ;;
        --time-ms) TIME_MS="$2"; shift 2 ;;
        --sessions) SESSIONS="$2"; shift 2 ;;
        -h|--help) sed -n '2,27p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
done

export DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}"
if [ -z "${SQLITE_DIR:-}" ]; then
    if [ -d /dev/shm ] && [ -w /dev/shm ]; then SQLITE_DIR=/dev/shm; else SQLITE_DIR="${TMPDIR:-/tmp}"; fi
fi
# std::env::temp_dir(), where the bench puts its SQLite files, follows TMPDIR.
export TMPDIR="$SQLITE_DIR"
VARIANTS="bare ours-sqlite ts-sqlite ours-postgres ts-postgres"
SCENARIOS="read write"

command -v valgrind >/dev/null || { echo "valgrind is not installed (apt-get install valgrind)" >&2; exit 1; }
if command -v pg_isready >/dev/null; then
    pg_isready -d "$DATABASE_URL" >/dev/null || { echo "no PostgreSQL at $DATABASE_URL" >&2; exit 1; }
fi

cargo build --release --manifest-path bench/Cargo.toml --target-dir target --bin stores
BIN=target/release/stores
WORK=$(mktemp -d "${TMPDIR}/sessions-bench-sql.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

field() { # field NAME LINE
    echo "$2" | tr ' ' '\n' | sed -n "s/^$1=//p" | head -n 1
}

RESULTS="$WORK/results"
for scenario in $SCENARIOS; do
    for variant in $VARIANTS; do
        args=("$variant" "$scenario" "$N" --sessions "$SESSIONS")
        # Counting run: statements (and round trips through the relay), allocations.
        count=$("$BIN" "${args[@]}" --count | grep '^RESULT') || { echo "stores $variant $scenario --count failed" >&2; exit 1; }
        # Timed run, straight to the database.
        timed=$("$BIN" "${args[@]}" --time-ms "$TIME_MS" | grep '^RESULT') || { echo "stores $variant $scenario failed" >&2; exit 1; }
        # Callgrind: costs of every thread between entering measured_loop and measured_done.
        rm -f "$WORK/cg.out"*
        out=$(valgrind --tool=callgrind --callgrind-out-file="$WORK/cg.out" \
            --dump-before='*measured_loop*' --dump-before='*measured_done*' "$BIN" "${args[@]}" 2>&1) || {
            echo "$out" >&2; echo "callgrind $variant $scenario failed" >&2; exit 1; }
        all=$(sed -n 's/^summary: //p' "$WORK/cg.out.2")
        [ -n "$all" ] || { echo "$out" >&2; echo "no instruction count for $variant $scenario" >&2; exit 1; }
        engine=$(awk -f bench/sqlite-engine.awk "$WORK/cg.out.2")
        # No engine found in a SQLite run: the profile has no line info for sqlite3.c (a
        # system libsqlite3, or debug info off), and the client side would silently be all.
        if [[ "$variant" == *sqlite ]] && [ "${engine:-0}" -eq 0 ]; then
            echo "no SQLite engine found in the profile of $variant $scenario (is sqlite3.c built with line info?)" >&2
            exit 1
        fi
        # SQLite: the request thread alone too (toggle-collect is per thread).
        main="-"
        if [[ "$variant" == *sqlite ]]; then
            out=$(valgrind --tool=callgrind --callgrind-out-file=/dev/null \
                --toggle-collect='*measured_loop*' "$BIN" "${args[@]}" 2>&1) || {
                echo "$out" >&2; echo "callgrind $variant $scenario failed" >&2; exit 1; }
            main=$(echo "$out" | sed -n 's/.*Collected : \([0-9]*\).*/\1/p' | tail -n 1)
        fi
        statements=$(field statements_per_req "$count"); statements=${statements:-0}
        trips=$(field roundtrips_per_req "$count"); trips=${trips:--}
        echo "$scenario $variant $all $main $(field allocs_per_req "$count") $(field time_median_ns "$timed") $statements $trips $engine" >> "$RESULTS"
        echo "  measured $variant / $scenario" >&2
    done
done

echo
echo "In-process, per request (n=$N measured requests over $SESSIONS sessions; SQLite files in $SQLITE_DIR;"
echo "PostgreSQL at $DATABASE_URL)"
echo
awk -v n="$N" '
    { k = $1 SUBSEP $2; instr[k] = $3 / n; main[k] = ($4 == "-" ? "-" : sprintf("%.0f", $4 / n))
      allocs[k] = $5; ns[k] = $6; st[k] = $7; rt[k] = $8; engine[k] = $9 / n
      client[k] = instr[k] - engine[k]
      order[++count] = k; scen[count] = $1; var[count] = $2 }
    END {
        printf "| %-13s | %-8s | %9s | %11s | %7s | %11s | %9s | %8s | %9s | %10s | %11s | %10s |\n", "variant",
            "scenario", "instr/req", "req thread", "engine", "client side", "overhead", "ours/ts",
            "ns/req", "stmts/req", "round trips", "allocs/req"
        printf "|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|\n", "---------------", "----------", "----------:",
            "------------:", "--------:", "------------:", "----------:", "---------:", "----------:",
            "-----------:", "------------:", "-----------:"
        for (i = 1; i <= count; i++) {
            s = scen[i]; v = var[i]; k = order[i]; bare = client[s SUBSEP "bare"]
            r = ""
            if (v ~ /^ours-/) { peer = v; sub(/^ours-/, "ts-", peer); r = sprintf("%.3f", client[k] / client[s SUBSEP peer]) }
            printf "| %-13s | %-8s | %9.0f | %11s | %7s | %11.0f | %+9.0f | %8s | %9.0f | %10s | %11s | %10s |\n",
                v, s, instr[k], main[k], (v ~ /sqlite/ ? sprintf("%.0f", engine[k]) : "-"), client[k],
                client[k] - bare, r, ns[k], (v == "bare" ? "-" : st[k]), (v == "bare" ? "-" : rt[k]),
                allocs[k]
        }
        print ""
        print "Targets:"
        for (d = 1; d <= 2; d++) {
            db = (d == 1 ? "sqlite" : "postgres")
            for (j = 1; j <= 2; j++) {
                s = (j == 1 ? "read" : "write"); ops = j   # read: load; write: load + update
                o = s SUBSEP "ours-" db; t = s SUBSEP "ts-" db
                if (db == "postgres")
                    printf "  %-8s %-5s one round trip per operation: ours %s round trips for %d operation(s) (tower-sessions %s): %s\n",
                        db, s, rt[o], ops, rt[t], (rt[o] + 0 == ops ? "met" : "NOT met")
                else
                    printf "  %-8s %-5s one statement per operation: ours %s statements for %d operation(s) (tower-sessions %s): %s\n",
                        db, s, st[o], ops, st[t], (st[o] + 0 == ops ? "met" : "NOT met")
                r = client[o] / client[t]
                printf "  %-8s %-5s client-side instructions: ours %.0f / tower-sessions %.0f = %.3f (target <= 0.5): %s\n",
                    db, s, client[o], client[t], r, (r <= 0.5 ? "met" : "NOT met")
                if (db == "sqlite")
                    printf "  %-8s %-5s   with the SQLite engine counted too: ours %.0f / tower-sessions %.0f = %.3f\n",
                        db, s, instr[o], instr[t], instr[o] / instr[t]
            }
        }
    }' "$RESULTS"
echo
echo "instr/req: instructions per request of every thread of this process while the measured"
echo "  requests ran (callgrind --dump-before on measured_loop and measured_done): for SQLite,"
echo "  the SQLite engine on sqlx's connection threads included; for PostgreSQL the client side"
echo "  only (the server runs in its own processes); nor is the kernel's work counted;"
echo "req thread: the request thread alone (--toggle-collect), SQLite only; for PostgreSQL it"
echo "  equals instr/req (sqlx's PostgreSQL driver runs on the request thread);"
echo "engine: SQLite only, the instructions of every call into the SQLite library (sqlite3.c)"
echo "  from outside it, with everything it calls (allocator, memcpy): the database's own work;"
echo "client side: instr/req minus engine: the stack, sqlx and its connection threads' own work,"
echo "  what the PostgreSQL figures count too (their server's work is in another process);"
echo "overhead: client side minus bare's; ours/ts: ours' client side over tower-sessions' on"
echo "  the same database; ns/req: median of timed batches of 500 requests, native (noisy on a shared"
echo "  machine); stmts/req: statements sqlx executed per request (its sqlx::query log events:"
echo "  BEGIN and COMMIT count, pings do not); round trips: PostgreSQL only, counted by a TCP relay"
echo "  (client writes that follow a server answer: statements, pings and transaction control);"
echo "  on SQLite each statement is one hand-off to sqlx's connection thread and back."
