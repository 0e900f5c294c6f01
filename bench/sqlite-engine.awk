# usage: awk -f bench/sqlite-engine.awk CALLGRIND_OUT_FILE
# The SQLite engine's share of a callgrind output file (bench/sql.sh): prints the inclusive
# instructions of every call from code outside the SQLite amalgamation (sqlite3.c) into it.
function nm(table, spec,    id, rest) {
    if (spec !~ /^\([0-9]+\)/) return spec
    id = substr(spec, 2, index(spec, ")") - 2)
    rest = substr(spec, index(spec, ")") + 2)
    if (rest != "") table[id] = rest
    return table[id]
}
# fl= starts a function's file; fi=/fe= move the position into (and out of) inlined code.
# A call without cfi=/cfl= goes to a function in the file of the current position.
/^fl=/ { fl = nm(files, substr($0, 4)); pos = fl; next }
/^f[ie]=/ { pos = nm(files, substr($0, 4)); next }
/^fn=/ { fnfile = fl; pos = fl; cfl = ""; next }
/^cf[il]=/ { cfl = nm(files, substr($0, 5)); next }
/^cfn=/ { callee = (cfl != "" ? cfl : pos); cfl = ""; next }
/^calls=/ { call = 1; next }
/^[0-9+*-]/ {
    if (call) {
        if (callee ~ /sqlite3\.c$/ && fnfile !~ /sqlite3\.c$/) inside += $2
        call = 0
    }
    next
}
END { printf "%d\n", inside }
