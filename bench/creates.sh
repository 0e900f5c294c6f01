#!/usr/bin/env bash
# Creating sessions on the memory backend's default store, empty and full: instructions per
# create (callgrind, the measured requests only) and the full store's cost over the empty
# store's (bound: 2). A full store evicts on every create; neither may scan the store.
#
# usage: bench/creates.sh [N]   (N measured creates, default 2000)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-2000}
command -v valgrind >/dev/null || { echo "valgrind is not installed" >&2; exit 1; }
cargo build --release --manifest-path bench/Cargo.toml --target-dir target --bin creates
for store in empty full; do
    out=$(valgrind --tool=callgrind --callgrind-out-file=/dev/null \
        --toggle-collect='*measured_loop*' target/release/creates "$store" "$N" 2>&1)
    collected=$(echo "$out" | sed -n 's/.*Collected : \([0-9]*\).*/\1/p' | tail -n 1)
    native=$(target/release/creates "$store" "$N" | sed -n 's/.*ns_per_create=\([0-9]*\).*/\1/p')
    echo "$store $collected $native"
done | awk -v n="$N" '
    { instr[$1] = $2 / n; ns[$1] = $3 }
    END {
        printf "| store | instr/create | ns/create (native, noisy) |\n|---|---:|---:|\n"
        printf "| empty | %.0f | %s |\n| full (100,000, evicting) | %.0f | %s |\n",
            instr["empty"], ns["empty"], instr["full"], ns["full"]
        r = instr["full"] / instr["empty"]
        printf "\nfull / empty = %.3f (bound <= 2): %s\n", r, (r <= 2 ? "kept" : "NOT kept")
    }'
