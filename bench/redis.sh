#!/usr/bin/env bash
# Our Redis backend against tower-sessions 0.14 + tower-sessions-redis-store 0.16, in one run:
#   1. in-process (tower::ServiceExt::oneshot, current-thread runtime): client-side
#      instructions per request (callgrind), time per request (timed batches, native run),
#      Redis commands per request (INFO commandstats deltas) and allocations per request;
#   2. HTTP on loopback (--http, on by default): each stack served by `axum::serve` pinned to
#      core 0, driven by wrk pinned to core 1; requests/s, latency, commands per request.
#
# usage: bench/redis.sh [--n N] [--time-ms T] [--sessions S] [--http SECONDS | --no-http]
#                       [--warmup SECONDS] [--connections C] [--rounds R]
#   --n N            measured requests per in-process run (default 2000)
#   --time-ms T      timed batches per native in-process run, in ms (default 3000)
#   --sessions S     distinct sessions per stack (default 2000)
#   --http SECONDS   length of each measured wrk run (default 10); --no-http skips part 2
#   --warmup SECONDS wrk warm-up before each measured run (default 2)
#   --connections C  wrk connections (default 32)
#   --rounds R       measured runs per stack and scenario, the stacks taking turns (default 2)
#
# Needs the Redis at REDIS_URL (default redis://127.0.0.1:6379), valgrind, and for part 2 wrk
# (installed with apt-get when missing) and taskset. Keys live under a prefix of their own
# (ours) or are the exact ids the run created (tower-sessions' store has no prefix); both are
# deleted before each program exits. INFO commandstats counts every client of that Redis:
# the command counts are exact only while nothing else uses it (other traffic shows up as
# fractions or foreign commands). Builds into the main workspace's target/; run from anywhere.
set -euo pipefail

cd "$(dirname "$0")/.."
N=2000
TIME_MS=3000
SESSIONS=2000
HTTP=10
WARMUP=2
CONNECTIONS=32
ROUNDS=2
while [ $# -gt 0 ]; do
    case "$1" in
        --n) N="$2"; shift 2 ;;
        --time-ms) TIME_MS="$2"; shift 2 ;;
        --sessions) SESSIONS="$2"; shift 2 ;;
        --http) HTTP="$2"; shift 2 ;;
        --no-http) HTTP=""; shift ;;
        --warmup) WARMUP="$2"; shift 2 ;;
        --connections) CONNECTIONS="$2"; shift 2 ;;
        --rounds) ROUNDS="$2"; shift 2 ;;
        -h|--help) sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
done

export REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379}"
VARIANTS="bare ours-redis ts-redis"
SCENARIOS="read write"

command -v valgrind >/dev/null || { echo "valgrind is not installed (apt-get install valgrind)" >&2; exit 1; }
command -v redis-cli >/dev/null || { echo "redis-cli is not installed (apt-get install redis-tools)" >&2; exit 1; }
redis-cli -u "$REDIS_URL" ping >/dev/null 2>&1 || { echo "no Redis at $REDIS_URL" >&2; exit 1; }
if [ -n "$HTTP" ]; then
    command -v taskset >/dev/null || { echo "taskset is missing (apt-get install util-linux)" >&2; exit 1; }
    if ! command -v wrk >/dev/null; then
        echo "installing wrk" >&2
        apt-get install -y wrk >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y wrk >/dev/null; }
    fi
fi

cargo build --release --manifest-path bench/Cargo.toml --target-dir target --bin stores --bin serve
BIN=target/release
WORK=$(mktemp -d)
SERVER_PIDS=""
cleanup() {
    # The servers remove their sessions from Redis when they get SIGTERM.
    for pid in $SERVER_PIDS; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in $SERVER_PIDS; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

field() { # field NAME LINE
    echo "$2" | tr ' ' '\n' | sed -n "s/^$1=//p" | head -n 1
}

# ------------------------------------------------------------------------------------------
# 1. In-process

RESULTS="$WORK/inproc"
for scenario in $SCENARIOS; do
    for variant in $VARIANTS; do
        # Native: commands per request, allocations, time.
        native=$("$BIN/stores" "$variant" "$scenario" "$N" --sessions "$SESSIONS" --time-ms "$TIME_MS") || {
            echo "stores $variant $scenario failed" >&2; exit 1; }
        line=$(echo "$native" | grep '^RESULT')
        # Round trips, counted by a relay between the stack and Redis (a run of its own: the
        # relay adds a hop to every request).
        counted=$("$BIN/stores" "$variant" "$scenario" "$N" --sessions "$SESSIONS" --count) || {
            echo "stores $variant $scenario --count failed" >&2; exit 1; }
        counted=$(echo "$counted" | grep '^RESULT')
        # Callgrind: client-side instructions of the n measured requests only.
        out=$(valgrind --tool=callgrind --callgrind-out-file=/dev/null \
            --toggle-collect='*measured_loop*' "$BIN/stores" "$variant" "$scenario" "$N" \
            --sessions "$SESSIONS" 2>&1) || { echo "$out" >&2; echo "callgrind $variant $scenario failed" >&2; exit 1; }
        collected=$(echo "$out" | sed -n 's/.*Collected : \([0-9]*\).*/\1/p' | tail -n 1)
        [ -n "$collected" ] || { echo "$out" >&2; echo "no instruction count for $variant $scenario" >&2; exit 1; }
        echo "$scenario $variant $collected $(field allocs_per_req "$line") $(field time_median_ns "$line") $(field roundtrips_per_req "$counted") $(field cmds_per_req "$line")" >> "$RESULTS"
        echo "  measured $variant / $scenario in-process" >&2
    done
done

echo
echo "In-process, per request (n=$N measured requests over $SESSIONS sessions; Redis at $REDIS_URL)"
echo
awk -v n="$N" '
    { k = $1 SUBSEP $2; instr[k] = $3 / n; allocs[k] = $4; ns[k] = $5; rt[k] = $6; cmds[k] = $7
      order[++count] = k; scen[count] = $1; var[count] = $2 }
    END {
        printf "| %-10s | %-8s | %9s | %9s | %10s | %9s | %17s | %10s |\n", "variant", "scenario",
            "instr/req", "overhead", "ours/ts", "ns/req", "commands/req", "allocs/req"
        printf "|%s|%s|%s|%s|%s|%s|%s|%s|\n", "------------", "----------", "----------:",
            "----------:", "-----------:", "----------:", "-------------------", "-----------:"
        for (i = 1; i <= count; i++) {
            s = scen[i]; v = var[i]; k = order[i]; bare = instr[s SUBSEP "bare"]
            r = ""
            if (v == "ours-redis") r = sprintf("%.3f", instr[k] / instr[s SUBSEP "ts-redis"])
            printf "| %-10s | %-8s | %9.0f | %+9.0f | %10s | %9.0f | %17s | %10s |\n", v, s,
                instr[k], instr[k] - bare, r, ns[k], (v == "bare" ? "-" : cmds[k]), allocs[k]
        }
        print ""
        print "Targets (in-process):"
        for (j = 1; j <= 2; j++) {
            s = (j == 1 ? "read" : "write")
            o = s SUBSEP "ours-redis"; t = s SUBSEP "ts-redis"; bare = instr[s SUBSEP "bare"]
            # INFO commandstats is server-wide: another client of the same Redis during the
            # window adds commands, which shows as counts that are not whole numbers.
            clean = (rt[o] == int(rt[o] + 0.005) && rt[t] == int(rt[t] + 0.005))
            verdict = !clean ? "UNCLEAR: counts are not whole numbers, another client used this Redis meanwhile; rerun" : (rt[o] <= rt[t] ? "met" : "NOT met")
            printf "  %-5s round trips: ours %.2f, tower-sessions %.2f (target: no more): %s\n",
                s, rt[o], rt[t], verdict
            r = instr[o] / instr[t]
            printf "  %-5s client-side instructions: ours %.0f / tower-sessions %.0f = %.3f (target <= 0.5): %s\n",
                s, instr[o], instr[t], r, (r <= 0.5 ? "met" : "NOT met")
            printf "  %-5s   (over bare: ours %.0f / tower-sessions %.0f = %.3f)\n",
                s, instr[o] - bare, instr[t] - bare, (instr[o] - bare) / (instr[t] - bare)
        }
    }' "$RESULTS"
echo
echo "instr/req: client-side instructions per request (callgrind, this process only: the Redis"
echo "  server's work runs in its own process and is not counted; nor is the kernel's);"
echo "overhead: instr/req minus bare's; ours/ts: ours-redis instr/req over ts-redis';"
echo "ns/req: median of timed batches of 500 requests, native (noisy on a shared machine);"
echo "commands/req: Redis commands per request, INFO commandstats deltas over the n requests,"
echo "  the commands a server-side script runs included (the save script's GET and SET); the"
echo "  round trips in the targets are counted by a relay between the stack and Redis."

[ -n "$HTTP" ] || exit 0

# ------------------------------------------------------------------------------------------
# 2. HTTP on loopback

commandstats() { # total calls of the commands a session store sends, "get=.. set=.. total=.."
    redis-cli -u "$REDIS_URL" info commandstats | tr -d '\r' | awk -F'[:=,]' '
        /^cmdstat_/ { name = substr($1, 9)
            if (name == "info" || name == "hello" || name == "select" || name ~ /^client/) next
            calls[name] = $3; total += $3 }
        END { printf "get=%d set=%d total=%d\n", calls["get"], calls["set"], total }'
}

cpu_ticks() { # user + system CPU time of process $1 so far, in clock ticks
    sed 's/^.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'
}
CLK_TCK=$(getconf CLK_TCK)

HTTP_RESULTS="$WORK/http"
declare -A ADDR PID
for variant in $VARIANTS; do
    # Every stack is served at once (idle ones cost nothing) so that the runs can alternate.
    log="$WORK/serve-$variant.log"
    taskset -c 0 "$BIN/serve" "$variant" 127.0.0.1:0 "$WORK/cookies-$variant" "$SESSIONS" > "$log" 2>&1 &
    PID[$variant]=$!
    SERVER_PIDS="$SERVER_PIDS ${PID[$variant]}"
    for _ in $(seq 1 600); do
        grep -q '^LISTENING' "$log" && break
        kill -0 "${PID[$variant]}" 2>/dev/null || { cat "$log" >&2; echo "serve $variant failed" >&2; exit 1; }
        sleep 0.1
    done
    ADDR[$variant]=$(sed -n 's/^LISTENING //p' "$log")
    [ -n "${ADDR[$variant]}" ] || { cat "$log" >&2; echo "serve $variant did not start" >&2; exit 1; }
done
echo "  load average before the HTTP runs: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
for scenario in $SCENARIOS; do
    path=$([ "$scenario" = read ] && echo /read || echo /incr)
    for round in $(seq 1 "$ROUNDS"); do
        # The stacks take turns, so that a change in the machine's other load hits all of them.
        for variant in $VARIANTS; do
            url="http://${ADDR[$variant]}$path"
            cookies="$WORK/cookies-$variant"
            taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d"${WARMUP}s" -s bench/wrk-cookies.lua "$url" -- "$cookies" > /dev/null
            before=$(commandstats)
            cpu_before=$(cpu_ticks "${PID[$variant]}")
            out=$(taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d"${HTTP}s" -s bench/wrk-cookies.lua "$url" -- "$cookies")
            cpu_after=$(cpu_ticks "${PID[$variant]}")
            after=$(commandstats)
            line=$(echo "$out" | grep '^WRK')
            errors=$(( $(field status_errors "$line") + $(field connect_errors "$line") + $(field read_errors "$line") + $(field write_errors "$line") + $(field timeouts "$line") ))
            echo "$scenario $variant $(field requests "$line") $(field duration_us "$line") $(field p50_us "$line") $(field p99_us "$line") $errors $(field get "$before") $(field get "$after") $(field set "$before") $(field set "$after") $(field total "$before") $(field total "$after") $((cpu_after - cpu_before))" >> "$HTTP_RESULTS"
            echo "  measured $variant / $scenario over HTTP, round $round: $(field requests "$line") requests" >&2
        done
    done
done
echo "  load average after the HTTP runs: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
for variant in $VARIANTS; do
    kill -TERM "${PID[$variant]}"
    wait "${PID[$variant]}" || { cat "$WORK/serve-$variant.log" >&2; echo "serve $variant exited with an error" >&2; exit 1; }
done
SERVER_PIDS=""

echo
echo "HTTP/1.1 on loopback: axum::serve (current-thread runtime) on core 0, wrk -t1 -c$CONNECTIONS on core 1;"
echo "$ROUNDS runs of ${HTTP} s per stack and scenario, taking turns, each after ${WARMUP} s of warm-up;"
echo "$SESSIONS sessions per stack (the Redis server is not pinned: it shares the cores)"
echo
awk -v tck="$CLK_TCK" '
    # One line per run: requests, duration, p50, p99, errors, commandstats before/after, the
    # server process CPU ticks the run took.
    { k = $1 SUBSEP $2
      if (!(k in req)) { order[++count] = k; scen[count] = $1; var[count] = $2 }
      req[k] += $3; dur[k] += $4; rate = $3 / ($4 / 1e6)
      if (!(k in lo) || rate < lo[k]) lo[k] = rate
      if (!(k in hi) || rate > hi[k]) hi[k] = rate
      if ($5 > p50[k]) p50[k] = $5
      if ($6 > p99[k]) p99[k] = $6
      err[k] += $7; get[k] += $9 - $8; set[k] += $11 - $10; tot[k] += $13 - $12
      cpu[k] += $14 / tck }
    END {
        printf "| %-10s | %-8s | %10s | %13s | %7s | %11s | %7s | %7s | %8s | %8s | %8s | %6s |\n", "variant",
            "scenario", "requests/s", "runs min-max", "ours/ts", "srv CPU us/req", "srv CPU",
            "ours/ts", "p50 us", "p99 us", "cmds/req", "errors"
        printf "|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|\n", "------------", "----------", "-----------:",
            "--------------:", "--------:", "---------------:", "--------:", "--------:", "---------:",
            "---------:", "---------:", "-------:"
        for (i = 1; i <= count; i++) {
            k = order[i]; rps[k] = req[k] / (dur[k] / 1e6); cpr[k] = cpu[k] * 1e6 / req[k]
        }
        for (i = 1; i <= count; i++) {
            s = scen[i]; v = var[i]; k = order[i]; t = s SUBSEP "ts-redis"
            r = (v == "ours-redis") ? sprintf("%.3f", rps[k] / rps[t]) : ""
            c = (v == "ours-redis") ? sprintf("%.3f", cpr[k] / cpr[t]) : ""
            printf "| %-10s | %-8s | %10.0f | %6.0f-%-6.0f | %7s | %14.1f | %6.0f%% | %7s | %8d | %8d | %8.2f | %6d |\n",
                v, s, rps[k], lo[k], hi[k], r, cpr[k], 100 * cpu[k] / (dur[k] / 1e6), c, p50[k], p99[k],
                tot[k] / req[k], err[k]
        }
        print ""
        print "Targets (HTTP):"
        for (j = 1; j <= 2; j++) {
            s = (j == 1 ? "read" : "write")
            o = s SUBSEP "ours-redis"; t = s SUBSEP "ts-redis"
            printf "  %-5s requests/s: ours %.0f, tower-sessions %.0f (target: at least equal): %s\n",
                s, rps[o], rps[t], (rps[o] >= rps[t] ? "met" : "NOT met")
            printf "  %-5s   server CPU per request: ours %.1f us, tower-sessions %.1f us (%s)\n",
                s, cpr[o], cpr[t], (cpr[o] <= cpr[t] ? "ours cheaper" : "ours dearer")
        }
    }' "$HTTP_RESULTS"
echo
echo "requests/s: all runs' requests over all runs' time; runs min-max: the slowest and fastest run;"
echo "srv CPU us/req: the serving process's CPU time (user + system, /proc/PID/stat) over the"
echo "  requests it answered: what one request costs the server side, kernel networking included;"
echo "  srv CPU: that time over the wall-clock time (100 % = core 0 saturated by this stack;"
echo "  less means the bottleneck was elsewhere: wrk, Redis, or other load on the machine);"
echo "p50/p99: the worst run's; cmds/req: Redis commands (all but INFO) per request, INFO"
echo "  commandstats deltas over the measured runs divided by the requests wrk completed"
echo "  (requests in flight at the end of a run make these a hair above the true ratio);"
echo "errors: non-2xx answers plus socket errors and timeouts (must be 0)."
