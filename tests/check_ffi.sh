#!/bin/sh
# The FFI examples (examples/python, examples/rust, examples/go) run the computation of
# examples/ffi_reference.c through their bindings against lib/libmae.so; their output must match
# the C program's: masks exactly, numbers to 1e-6 relative. Each runs when its toolchain is
# present (CI installs python3-numpy, rustc and golang-go) and is named as skipped otherwise;
# Python runs with every interpreter found (python3 on PATH, /usr/bin/python3), so both the numpy
# and the plain-list paths run.
set -eu
BUILD=${BUILD:-build}
if [ -n "${SANITIZE:-}" ]; then
    # a sanitized libmae.so cannot be loaded into an uninstrumented interpreter
    echo "check_ffi: skipped in the sanitizer build (runs in the plain one)"
    exit 0
fi
root=$(pwd)
lib=$root/lib
dir=$root/$BUILD/ffi
mkdir -p "$dir"
ref=$BUILD/examples/ffi_reference
[ -x "$ref" ] || make -s "$ref"
ckpt=$dir/tiny.safetensors
rm -f "$ckpt"
"$ref" "$ckpt" > "$dir/ref.txt"

# compare NAME OUTPUT: same keys in the same order, equal strings, numbers within 1e-6
compare() {
    if awk 'NR == FNR { ref[FNR] = $0; n = FNR; next }
            {
                m = FNR
                if (m > n) { print "extra line: " $0; bad = 1; next }
                split(ref[m], r, " "); k = split($0, o, " ")
                if (k != split(ref[m], r, " ") || o[1] != r[1]) { print "line " m ": " $0 " vs " ref[m]; bad = 1; next }
                for (i = 2; i <= k; i++) {
                    if (o[i] ~ /^[01]+$/ && length(o[i]) > 8) { if (o[i] != r[i]) { print r[1] " differs"; bad = 1 } continue }
                    d = o[i] - r[i]; if (d < 0) d = -d
                    s = r[i] < 0 ? -r[i] : r[i]
                    if (d > 1e-6 * s + 1e-7) { print r[1] ": " o[i] " vs " r[i]; bad = 1 }
                }
            }
            END { if (m != n) { print "got " m " lines, want " n; bad = 1 } exit bad }' "$dir/ref.txt" "$2" > "$dir/$1.cmp"; then
        ran="$ran $1"
    else
        echo "check_ffi: $1 differs from the C reference:"; cat "$dir/$1.cmp" "$2"; status=1
    fi
}
status=0
ran=""
skipped=""   # the bindings whose toolchain is missing

# Python (ctypes); the binding finds lib/libmae.so.1 itself, MAE_LIBRARY makes it explicit
seen=""
for py in python3 /usr/bin/python3; do
    p=$(command -v "$py" 2>/dev/null) || continue
    real=$(readlink -f "$p")
    case " $seen " in *" $real "*) continue ;; esac
    seen="$seen $real"
    tag=python$(echo $seen | wc -w)
    if MAE_LIBRARY="$lib/libmae.so.1" "$p" examples/python/example.py "$ckpt" > "$dir/$tag.txt" 2> "$dir/$tag.err"; then
        compare "$tag" "$dir/$tag.txt"
        sed 's/^/  /' "$dir/$tag.err"
    else
        echo "check_ffi: $p examples/python/example.py failed:"; cat "$dir/$tag.err"; status=1
    fi
done

[ -n "$seen" ] || skipped="$skipped python (no python3)"

# Rust (plain extern "C", rustc only)
if ! command -v rustc >/dev/null 2>&1; then
    skipped="$skipped rust (no rustc)"
elif command -v rustc >/dev/null 2>&1; then
    if rustc --edition 2021 -O examples/rust/main.rs -L "$lib" -l dylib=mae -o "$dir/rust_example" 2> "$dir/rust.err" &&
       LD_LIBRARY_PATH="$lib" "$dir/rust_example" "$ckpt" > "$dir/rust.txt" 2>> "$dir/rust.err"; then
        compare rust "$dir/rust.txt"
        tail -n 1 "$dir/rust.err" | sed 's/^/  /'
    else
        echo "check_ffi: the Rust example failed:"; cat "$dir/rust.err"; status=1
    fi
fi

# Go (cgo); no network: the module has no dependencies
if ! command -v go >/dev/null 2>&1; then
    skipped="$skipped go (no go)"
elif command -v go >/dev/null 2>&1; then
    if (cd examples/go && GOCACHE="$dir/gocache" GOPATH="$dir/gopath" GOPROXY=off GOFLAGS=-mod=mod GOTOOLCHAIN=local \
            CGO_ENABLED=1 CC="${CC:-cc}" go build -o "$dir/go_example" ./example) 2> "$dir/go.err" &&
       LD_LIBRARY_PATH="$lib" "$dir/go_example" "$ckpt" > "$dir/go.txt" 2>> "$dir/go.err"; then
        compare go "$dir/go.txt"
        tail -n 1 "$dir/go.err" | sed 's/^/  /'
    else
        echo "check_ffi: the Go example failed:"; cat "$dir/go.err"; status=1
    fi
fi

[ $status -eq 0 ] || exit 1
if [ -z "$ran" ]; then
    echo "check_ffi: skipped (no python3, rustc or go found)"
elif [ -n "$skipped" ]; then
    echo "check_ffi: match the C reference:$ran; skipped:$skipped"
else
    echo "check_ffi: match the C reference:$ran"
fi
