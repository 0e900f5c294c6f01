#!/usr/bin/env bash
# What a request costs: instructions (callgrind) and allocations per request for every
# variant and scenario, then optionally wall-clock time (criterion).
#
# usage: bench/run.sh [--n N] [--one-cgu] [--criterion [SECONDS] | --only-criterion [SECONDS]]
#   --n N             measured requests per run (default 2000; the setup is not counted)
#   --one-cgu         build with one codegen unit (into target/one-cgu): what gets inlined then
#                     no longer depends on how the compiler splits the bench crate into units,
#                     which moves a variant by up to ~170 instructions when unrelated code
#                     changes; use it to compare two versions of the code. Targets are checked
#                     on the default release build, as users build.
#   --criterion [S]   also run the criterion bench, S seconds of measurement per benchmark
#                     (default 2), and print its table
#   --only-criterion [S]  the criterion bench alone, without the callgrind sweep
#   -- FILTER         passed to criterion, e.g. `-- ours/` or `-- /read`
#
# Needs valgrind (Debian: `apt-get install valgrind`). Builds into the main workspace's
# target/ directory; run it from anywhere.
set -euo pipefail

cd "$(dirname "$0")/.."
N=2000
ONE_CGU=""
CRITERION=""
CALLGRIND=1
FILTER=()
while [ $# -gt 0 ]; do
    case "$1" in
        --n) N="$2"; shift 2 ;;
        --one-cgu) ONE_CGU=1; shift ;;
        --criterion|--only-criterion)
            [ "$1" = --only-criterion ] && CALLGRIND=""
            CRITERION=2; shift
            if [ $# -gt 0 ] && [[ "$1" =~ ^[0-9]+$ ]]; then CRITERION="$1"; shift; fi ;;
        --) shift; FILTER=("$@"); break ;;
        -h|--help) sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
done

VARIANTS="bare ours tower-sessions ours-configured ours-around empty-around ours-cookie-signed ours-cookie-private"
SCENARIOS="no-cookie read write"
TARGET=target
if [ -n "$ONE_CGU" ]; then
    export CARGO_PROFILE_RELEASE_CODEGEN_UNITS=1 CARGO_PROFILE_BENCH_CODEGEN_UNITS=1
    TARGET=target/one-cgu
fi
CARGO_ARGS=(--release --manifest-path bench/Cargo.toml --target-dir "$TARGET")

if [ -n "$CALLGRIND" ]; then
    command -v valgrind >/dev/null || { echo "valgrind is not installed" >&2; exit 1; }
    WORK=$(mktemp -d)
    trap 'rm -rf "$WORK"' EXIT
    # Two binaries: the variants of the table, and (feature `floor`) the do-nothing layer
    # under `Router::layer` with its own bare, built apart because one more layer type in the
    # binary changes how axum's routing code is inlined for every variant. The default one is
    # built last, so that it is the one left in $TARGET/release for profiling by hand.
    cargo build "${CARGO_ARGS[@]}" --bin calls --features floor
    cp "$TARGET/release/calls" "$WORK/calls-floor"
    cargo build "${CARGO_ARGS[@]}" --bin calls
    cp "$TARGET/release/calls" "$WORK/calls"
    RESULTS="$WORK/results"
    for scenario in $SCENARIOS; do
        for variant in $VARIANTS floor-bare empty-layer; do
            BIN="$WORK/calls"; name="$variant"
            case "$variant" in
                floor-bare) BIN="$WORK/calls-floor"; name=bare ;;
                empty-layer) BIN="$WORK/calls-floor" ;;
            esac
            # Collection is on only inside `measured_loop`: the n measured requests.
            out=$(valgrind --tool=callgrind --callgrind-out-file=/dev/null \
                --toggle-collect='*measured_loop*' "$BIN" "$name" "$scenario" "$N" 2>&1) || {
                echo "$out" >&2; echo "calls $variant $scenario failed" >&2; exit 1; }
            collected=$(echo "$out" | sed -n 's/.*Collected : \([0-9]*\).*/\1/p' | tail -n 1)
            allocs=$(echo "$out" | sed -n 's/.* allocs_per_req=\([0-9.]*\).*/\1/p')
            reallocs=$(echo "$out" | sed -n 's/.*reallocs_per_req=\([0-9.]*\).*/\1/p')
            [ -n "$collected" ] && [ -n "$allocs" ] || {
                echo "$out" >&2; echo "no result from calls $variant $scenario" >&2; exit 1; }
            echo "$scenario $variant $collected $allocs $reallocs" >> "$RESULTS"
            echo "  measured $variant / $scenario" >&2
        done
    done

    echo
    echo "Instructions per request (callgrind, n=$N measured requests, setup excluded)"
    echo
    awk -v n="$N" '
        { key = $1 SUBSEP $2; instr[key] = $3 / n; allocs[key] = $4; reallocs[key] = $5
          order[++count] = key; scen[count] = $1; var[count] = $2 }
        END {
            printf "| %-19s | %-9s | %9s | %9s | %9s | %14s | %14s | %10s |\n", "variant",
                "scenario", "instr/req", "x bare", "overhead", "ours/ts overhd", "cookie/mem ovh",
                "allocs/req"
            printf "|%s|%s|%s|%s|%s|%s|%s|%s|\n", "---------------------", "-----------",
                "----------:", "----------:", "----------:", "---------------:", "---------------:",
                "-----------:"
            for (i = 1; i <= count; i++) {
                s = scen[i]; v = var[i]; k = order[i]
                if (v == "floor-bare" || v == "empty-layer") continue
                bare = instr[s SUBSEP "bare"]; ts = instr[s SUBSEP "tower-sessions"] - bare
                mem = instr[s SUBSEP "ours"] - bare
                over = instr[k] - bare
                share = ""; vsmem = ""
                if (v == "ours" || v == "ours-around" || v == "ours-configured") share = sprintf("%.3f", over / ts)
                if (v ~ /^ours-cookie-/) vsmem = sprintf("%.3f", over / mem)
                a = allocs[k]; if (reallocs[k] + 0 > 0) a = a " +" reallocs[k] "r"
                printf "| %-19s | %-9s | %9.0f | %9.3f | %+9.0f | %14s | %14s | %10s |\n",
                    v, s, instr[k], instr[k] / bare, over, share, vsmem, a
            }
            print ""
            print "Bounds:"
            for (j = 1; j <= 3; j++) {
                s = (j == 1 ? "no-cookie" : j == 2 ? "read" : "write")
                bare = instr[s SUBSEP "bare"]
                r = (instr[s SUBSEP "ours"] - bare) / (instr[s SUBSEP "tower-sessions"] - bare)
                printf "  %-9s ours overhead / tower-sessions overhead = %.3f (bound <= 0.5): %s\n",
                    s, r, (r <= 0.5 ? "kept" : "NOT kept")
                r = (instr[s SUBSEP "ours-configured"] - bare) / (instr[s SUBSEP "tower-sessions"] - bare)
                printf "  %-9s ours-configured overhead / tower-sessions overhead = %.3f (bound <= 0.5): %s\n",
                    s, r, (r <= 0.5 ? "kept" : "NOT kept")
            }
            # What axum spends on any layer mounted with `Router::layer` (the overhead of the
            # do-nothing layer), and what is left of the bound for the session layer itself.
            for (j = 1; j <= 3; j++) {
                s = (j == 1 ? "no-cookie" : j == 2 ? "read" : "write")
                floor = instr[s SUBSEP "empty-layer"] - instr[s SUBSEP "floor-bare"]
                bare = instr[s SUBSEP "bare"]
                own = instr[s SUBSEP "ours"] - bare - floor
                left = 0.5 * (instr[s SUBSEP "tower-sessions"] - bare) - floor
                printf "  %-9s axum per layer mounted with Router::layer (empty-layer - bare) = %4.0f; ours beyond it = %4.0f; room the bound leaves = %4.0f\n",
                    s, floor, own, left
            }
            # The cookie backend against the memory backend, both under `Router::layer`.
            for (j = 2; j <= 3; j++) {
                s = (j == 2 ? "read" : "write")
                bare = instr[s SUBSEP "bare"]; mem = instr[s SUBSEP "ours"] - bare
                for (m = 1; m <= 2; m++) {
                    v = (m == 1 ? "ours-cookie-signed" : "ours-cookie-private")
                    over = instr[s SUBSEP v] - bare
                    r = over / mem
                    # The bound is on the private mode: the signed mode HMAC runs software
                    # SHA-256 under valgrind, which hides SHA-NI (see README.md).
                    verdict = (m == 2 ? (r <= 2 ? "kept" : "NOT kept") : "no bound (SHA-NI hidden under valgrind)")
                    printf "  %-5s %-19s overhead / ours (memory) overhead = %6.0f / %5.0f = %.3f%s: %s\n",
                        s, v, over, mem, r, (m == 2 ? " (bound <= 2)" : ""), verdict
                }
            }
        }' "$RESULTS"
    echo
    echo "x bare: instructions relative to bare; overhead: instructions over bare;"
    echo "ours/ts overhd: our overhead as a fraction of tower-sessions' overhead;"
    echo "cookie/mem ovh: a cookie variant's overhead as a multiple of ours' (memory backend);"
    echo "allocs/req: heap allocations per request (+Nr: reallocations)."
fi

if [ -n "$CRITERION" ]; then
    # Criterion would otherwise put its reports under bench/target/.
    export CRITERION_HOME="$PWD/$TARGET/criterion"
    cargo bench --manifest-path bench/Cargo.toml --target-dir "$TARGET" --bench time -- \
        --warm-up-time 1 --measurement-time "$CRITERION" --noplot "${FILTER[@]}"
    echo
    echo "Time per request (criterion median of the latest run of each benchmark; wall-clock time is noisy on a shared machine)"
    echo
    for scenario in $SCENARIOS; do
        for variant in $VARIANTS; do
            # Criterion turns the `/` of the id `variant/scenario` into `_`.
            f="$CRITERION_HOME/requests/${variant}_${scenario}/new/estimates.json"
            [ -f "$f" ] || continue
            # The median's point estimate, in nanoseconds.
            ns=$(tr -d ' \n' < "$f" | sed -n 's/.*"median":{[^}]*}[^}]*"point_estimate":\([0-9.e+-]*\).*/\1/p')
            echo "$scenario $variant $ns"
        done
    done | awk '
        { t[$1 SUBSEP $2] = $3; order[++count] = $1 SUBSEP $2; scen[count] = $1; var[count] = $2 }
        END {
            printf "| %-19s | %-9s | %10s | %9s | %10s |\n", "variant", "scenario", "ns/req", "x bare", "overhead"
            printf "|%s|%s|%s|%s|%s|\n", "---------------------", "-----------", "-----------:",
                "----------:", "-----------:"
            for (i = 1; i <= count; i++) {
                bare = t[scen[i] SUBSEP "bare"]
                printf "| %-19s | %-9s | %10.0f | %9.3f | %+10.0f |\n", var[i], scen[i],
                    t[order[i]], t[order[i]] / bare, t[order[i]] - bare
            }
        }'
fi
