#!/bin/sh
# The bindings (examples/python, examples/rust, examples/go) as packages: each runs the
# computation of examples/ffi_reference.c (forward passes and mae_embed) and must match the C
# program's output: masks exactly, numbers to 1e-6 relative. Then each package's own tests:
#   Python: pip-installed (offline, --no-build-isolation) into a fresh virtualenv
#           (--system-site-packages, for numpy), its unittest suite run there;
#   (every package's classifier tests also compare their logits with `mae classify --json`:
#   $MAE_CLI, set here; a skipped comparison fails this check)
#   Rust:   the workspace examples/rust (mae-sys: declarations + build.rs; mae: the safe crate),
#           cargo build/test --offline against lib/, no crates;
#   Go:     libmae installed to a temporary prefix (make install), the module built through
#           `#cgo pkg-config: mae`, go test.
# A missing toolchain is reported as skipped (CI installs python3-numpy, python3-setuptools,
# python3-pip, python3-venv, cargo, rustc, golang-go, pkg-config). Python's example runs with
# every interpreter found (python3 on PATH, /usr/bin/python3), so the numpy and plain-list paths
# both run.
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
# the classifier tests of every binding compare their logits with the CLI's `mae classify --json`
cli=$root/$BUILD/examples/mae
[ -x "$cli" ] || make -s "$BUILD/examples/mae"
export MAE_CLI="$cli"

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

# Python package: installed into a fresh virtualenv from a copy (the build leaves files behind)
pydone=""
for py in /usr/bin/python3 python3; do
    p=$(command -v "$py" 2>/dev/null) || continue
    if ! "$p" -c "import setuptools, venv, ensurepip" >/dev/null 2>&1 && ! "$p" -c "import setuptools, venv" >/dev/null 2>&1; then
        continue
    fi
    rm -rf "$dir/pysrc" "$dir/venv"
    cp -r examples/python "$dir/pysrc"
    rm -rf "$dir/pysrc/build" "$dir/pysrc"/*.egg-info
    if "$p" -m venv --system-site-packages "$dir/venv" > "$dir/pip.log" 2>&1 &&
       "$dir/venv/bin/python" -m pip install --no-index --no-build-isolation "$dir/pysrc" >> "$dir/pip.log" 2>&1 &&
       (cd "$dir" && MAE_LIBRARY="$lib/libmae.so.1" "$dir/venv/bin/python" -m unittest discover -v -s "$root/examples/python/tests" -t "$root/examples/python/tests") > "$dir/pytest.log" 2>&1; then
        where=$(cd "$dir" && MAE_LIBRARY="$lib/libmae.so.1" "$dir/venv/bin/python" -c "import mae, os; print(os.path.dirname(mae.__file__))")
        case "$where" in "$dir/venv"/*) ;; *) echo "check_ffi: the tests imported mae from $where, not the venv"; status=1 ;; esac
        # the comparison with the CLI must run here (MAE_CLI is set above)
        if grep -q "skipped 'MAE_CLI" "$dir/pytest.log"; then
            echo "check_ffi: Python tests were skipped:"; cat "$dir/pytest.log"; status=1
        fi
        ran="$ran python-package"
        echo "  python package ($p): $(tail -n 3 "$dir/pytest.log" | tr '\n' ' ')"
    else
        echo "check_ffi: the Python package failed to install or test ($p):"; cat "$dir/pip.log" "$dir/pytest.log" 2>/dev/null; status=1
    fi
    pydone=1
    break
done
[ -n "$pydone" ] || skipped="${skipped:-} python-package (no python3 with setuptools and venv)"

# Rust: cargo, offline, no crates; mae-sys's build.rs links lib/ and sets the rpath
if command -v cargo >/dev/null 2>&1; then
    export CARGO_TARGET_DIR="$dir/cargo"
    if (cd examples/rust && cargo build --offline --release --quiet) > "$dir/rust.err" 2>&1 &&
       "$dir/cargo/release/mae_example" "$ckpt" > "$dir/rust.txt" 2>> "$dir/rust.err"; then
        compare rust "$dir/rust.txt"
        tail -n 1 "$dir/rust.err" | sed 's/^/  /'
    else
        echo "check_ffi: the Rust example failed:"; cat "$dir/rust.err"; status=1
    fi
    if (cd examples/rust && cargo test --offline --quiet) > "$dir/rust_test.log" 2>&1; then
        ran="$ran rust-tests"
        echo "  rust: $(grep -h 'test result' "$dir/rust_test.log" | awk '{p += $4} END {print p " tests passed"}')"
    else
        echo "check_ffi: cargo test failed:"; cat "$dir/rust_test.log"; status=1
    fi
else
    skipped="${skipped:-} rust (no cargo)"
fi

# Go: cgo flags from pkg-config, after installing libmae to a temporary prefix
if command -v go >/dev/null 2>&1 && command -v pkg-config >/dev/null 2>&1; then
    prefix=$dir/prefix
    rm -rf "$prefix"
    if make -s install PREFIX="$prefix" > "$dir/install.log" 2>&1; then
        export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"
        # go's build cache does not track headers outside the module: key it by mae.h's contents
        hsum=$(cksum < include/mae.h | cut -d' ' -f1)
        for c in "$dir"/gocache "$dir"/gocache-*; do
            [ "$c" = "$dir/gocache-$hsum" ] || rm -rf "$c"
        done
        goenv="GOCACHE=$dir/gocache-$hsum GOPATH=$dir/gopath GOPROXY=off GOFLAGS=-mod=mod GOTOOLCHAIN=local CGO_ENABLED=1"
        if (cd examples/go && env $goenv CC="${CC:-cc}" go build -o "$dir/go_example" ./example) 2> "$dir/go.err" &&
           LD_LIBRARY_PATH="$prefix/lib" "$dir/go_example" "$ckpt" > "$dir/go.txt" 2>> "$dir/go.err"; then
            compare go "$dir/go.txt"
            tail -n 1 "$dir/go.err" | sed 's/^/  /'
        else
            echo "check_ffi: the Go example failed:"; cat "$dir/go.err"; status=1
        fi
        if (cd examples/go && env $goenv CC="${CC:-cc}" LD_LIBRARY_PATH="$prefix/lib" go test -v ./...) > "$dir/go_test.log" 2>&1 &&
           ! grep -- '--- SKIP' "$dir/go_test.log"; then
            ran="$ran go-tests"
            echo "  go: $(grep -c '^--- PASS' "$dir/go_test.log") tests passed; $(grep '^ok' "$dir/go_test.log" | tr '\n' ' ')"
        else
            echo "check_ffi: go test failed:"; cat "$dir/go_test.log"; status=1
        fi
    else
        echo "check_ffi: make install to $prefix failed:"; cat "$dir/install.log"; status=1
    fi
else
    skipped="${skipped:-} go (no go or no pkg-config)"
fi

[ $status -eq 0 ] || exit 1
if [ -z "$ran" ]; then
    echo "check_ffi: skipped (no python3, cargo or go found)"
elif [ -n "${skipped:-}" ]; then
    echo "check_ffi: match the C reference:$ran; skipped:$skipped"
else
    echo "check_ffi: match the C reference:$ran"
fi
