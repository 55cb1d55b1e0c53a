#!/bin/sh
# `mae probe --official`, the paper's linear probe (examples/cli/linprobe.h):
#  - its BatchNorm1d (training mode over batches, running statistics, eval mode) and its LARS
#    steps against PyTorch float64 (tests/gen_linprobe.py, a fresh seed each run; skipped without
#    /usr/bin/python3 and torch); build/tests/test_linprobe checks them against direct formulas;
#  - a smoke run on a few hundred Fashion-MNIST images (skipped without the dataset) with the
#    committed encoder, cls token and --global-pool, and on pixels: each learns (test accuracy
#    well above chance);
#  - misplaced options are usage errors, a batch above the images a runtime error, one line each.
set -eu
BUILD=${BUILD:-build}
CC=${CC:-cc}
SANITIZE=${SANITIZE:-}
mae=$BUILD/examples/mae
test_bin=$BUILD/tests/test_linprobe
[ -x "$mae" ] || make -s CC="$CC" SANITIZE="$SANITIZE" "$mae"
[ -x "$test_bin" ] || make -s CC="$CC" SANITIZE="$SANITIZE" "$test_bin"
dir=$BUILD/check_linprobe
rm -rf "$dir"
mkdir -p "$dir"
fail() { echo "check_linprobe: FAILED: $*"; exit 1; }
done_parts=""

py=/usr/bin/python3
if [ -x $py ] && $py -c "import torch" 2>/dev/null; then
    $py tests/gen_linprobe.py "$dir/torch.txt"
    "$test_bin" --torch "$dir/torch.txt" > "$dir/torch.log" 2>&1 || { cat "$dir/torch.log"; fail "against torch"; }
    done_parts="BatchNorm and LARS within float32 of torch float64"
else
    done_parts="torch comparison skipped (no /usr/bin/python3 with torch)"
fi

data=${FASHION_MNIST:-/usr/share/datasets/fashion-mnist}
model=examples/data/mae-fmnist.safetensors
if [ -f "$data/train-images-idx3-ubyte.gz" ] || [ -f "$data/train-images-idx3-ubyte" ]; then
    small="--data $data --max-train 512 --max-test 500 --batch 64 --epochs 20 --warmup 2 --lr 6.4"
    accs=""
    for run in "cls:$model" "gp:$model --global-pool" "pixels:--pixels"; do
        name=${run%%:*}
        # shellcheck disable=SC2086
        "$mae" probe ${run#*:} --official $small > "$dir/$name.log" 2> "$dir/$name.err" ||
            { cat "$dir/$name.log" "$dir/$name.err"; fail "probe --official ($name)"; }
        grep -q "official protocol" "$dir/$name.log" || { cat "$dir/$name.log"; fail "$name: no protocol line"; }
        acc=$(sed -n 's/.*test accuracy \([0-9.]*\) %.*/\1/p' "$dir/$name.log")
        awk -v a="$acc" 'BEGIN { exit !(a > 50 && a <= 100) }' || fail "$name: test accuracy '$acc' (expected > 50 %)"
        accs="$accs $name $acc %"
    done
    done_parts="$done_parts; smoke runs on 512 images:$accs"
    expect_error() {
        code=$1; shift
        set +e
        "$mae" "$@" > "$dir/err.out" 2> "$dir/err.txt"
        rc=$?
        set -e
        [ "$rc" -eq "$code" ] || fail "mae $* exited $rc, expected $code"
        [ "$(wc -l < "$dir/err.txt")" -eq 1 ] || fail "mae $* printed $(wc -l < "$dir/err.txt") lines on stderr"
    }
    expect_error 2 probe "$model" --global-pool
    expect_error 2 probe "$model" --blr 0.1
    expect_error 2 probe --pixels --official --global-pool
    expect_error 2 probe "$model" --official --epochs 5 --warmup 5
    expect_error 2 probe "$model" --official --batch 1
    expect_error 1 probe "$model" --official --data "$data" --max-train 10 --max-test 10 --batch 64
else
    done_parts="$done_parts; smoke runs skipped (no Fashion-MNIST in $data)"
fi
echo "check_linprobe: $done_parts"
