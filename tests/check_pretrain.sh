#!/bin/sh
# `mae train` and `mae probe` on Fashion-MNIST (Debian's dataset-fashion-mnist; skipped without
# it), with a tiny model so that it takes seconds:
#   - a run writes its model, checkpoint, loss.csv (one finite row per step), loss.png and
#     reconstruction.png, and the model loads;
#   - 3 steps, then --resume for 3 more (on 1 thread instead of 2) gives byte-identical weights
#     and the same per-step losses as 6 uninterrupted steps;
#   - the loss falls over a short run;
#   - the raw-pixel probe learns (test accuracy far above chance: > 70 %), and an encoder probe
#     runs and beats chance;
#   - bad data directories and options fail with one line and a non-zero exit.
set -eu
BUILD=${BUILD:-build}
CC=${CC:-cc}
SANITIZE=${SANITIZE:-}
mae=$BUILD/examples/mae
data=${FASHION_MNIST:-/usr/share/datasets/fashion-mnist}
if [ ! -f "$data/train-images-idx3-ubyte.gz" ] && [ ! -f "$data/train-images-idx3-ubyte" ]; then
    echo "check_pretrain: skipped (no Fashion-MNIST in $data: apt-get install dataset-fashion-mnist)"
    exit 0
fi
[ -x "$mae" ] || make -s CC="$CC" SANITIZE="$SANITIZE" "$mae"
dir=$BUILD/check_pretrain
rm -rf "$dir"
mkdir -p "$dir"
fail() { echo "check_pretrain: FAILED: $*"; exit 1; }

tiny="--patch 7 --embed-dim 32 --depth 1 --heads 2 --decoder-dim 16 --decoder-depth 1 --decoder-heads 2"
common="--data $data --max-images 256 --batch 32 --epochs 2 --warmup 1 --blr 1e-2 --log-every 2"

# shellcheck disable=SC2086
"$mae" train $tiny $common --out "$dir/a" --max-steps 6 --threads 2 > "$dir/a.log" 2>&1 ||
    { cat "$dir/a.log"; fail "train"; }
for f in model.safetensors checkpoint.safetensors loss.csv loss.png reconstruction.png; do
    [ -s "$dir/a/$f" ] || fail "train wrote no $f"
done
rows=$(tail -n +2 "$dir/a/loss.csv" | wc -l)
[ "$rows" -eq 6 ] || fail "loss.csv has $rows rows, expected 6"
awk -F, 'NR > 1 && !($3 + 0 > 0 && $3 + 0 < 100) { bad = 1 } END { exit bad }' "$dir/a/loss.csv" ||
    fail "loss.csv holds a loss that is not a finite positive number"
"$mae" info "$dir/a/model.safetensors" > "$dir/info.log" 2>&1 || { cat "$dir/info.log"; fail "info on the trained model"; }
grep -q "^encoder: *width 32, depth 1, heads 2" "$dir/info.log" &&
    grep -q "^image: *28x28, patch 7, 1 channel" "$dir/info.log" || fail "info does not show the trained config"
# the reconstruction grid: 8 rows of 4 panels; PNG width/height from the IHDR bytes
wh=$(od -An -tu1 -j16 -N8 "$dir/a/reconstruction.png" | awk '{ print ($1*16777216+$2*65536+$3*256+$4) "x" ($5*16777216+$6*65536+$7*256+$8) }')
w=${wh%x*}; h=${wh#*x}
{ [ "$w" -gt 0 ] && [ "$h" -gt "$w" ]; } || fail "reconstruction.png is $wh, expected 8 rows of 4 panels (taller than wide)"

# resume: 3 + 3 steps, the second half on one thread, equal the 6-step run byte for byte
# shellcheck disable=SC2086
"$mae" train $tiny $common --out "$dir/b" --max-steps 3 --threads 2 > "$dir/b1.log" 2>&1 ||
    { cat "$dir/b1.log"; fail "train (first half)"; }
# shellcheck disable=SC2086
"$mae" train $common --out "$dir/b" --max-steps 3 --threads 1 --resume "$dir/b/checkpoint.safetensors" \
    > "$dir/b2.log" 2>&1 || { cat "$dir/b2.log"; fail "train --resume"; }
cmp -s "$dir/a/model.safetensors" "$dir/b/model.safetensors" ||
    fail "3 steps + resume + 3 steps differ from 6 uninterrupted steps"
cut -d, -f1-5 "$dir/a/loss.csv" > "$dir/a.csv"
cut -d, -f1-5 "$dir/b/loss.csv" > "$dir/b.csv"
cmp -s "$dir/a.csv" "$dir/b.csv" || fail "the resumed run's loss.csv differs"

# the loss falls: mean of the last 5 of 40 steps below the mean of the first 5
# shellcheck disable=SC2086
"$mae" train $tiny --data "$data" --max-images 1280 --batch 32 --epochs 2 --warmup 1 --blr 1e-2 \
    --max-steps 40 --out "$dir/c" --log-every 40 > "$dir/c.log" 2>&1 || { cat "$dir/c.log"; fail "train (40 steps)"; }
awk -F, 'NR >= 2 && NR <= 6 { a += $3 } NR >= 37 && NR <= 41 { b += $3 } END { exit !(b < 0.8 * a) }' \
    "$dir/c/loss.csv" || fail "the loss did not fall by 20% over 40 steps"

# probes: raw pixels learn; a (tiny, barely trained) encoder's features beat chance clearly
"$mae" probe --pixels --data "$data" --max-train 2000 --epochs 5 > "$dir/p.log" 2>&1 ||
    { cat "$dir/p.log"; fail "probe --pixels"; }
pacc=$(sed -n 's/.*test accuracy \([0-9.]*\) %.*/\1/p' "$dir/p.log")
awk -v a="$pacc" 'BEGIN { exit !(a > 70 && a <= 100) }' || fail "pixel probe test accuracy '$pacc' (expected > 70 %)"
"$mae" probe "$dir/c/model.safetensors" --data "$data" --max-train 2000 --epochs 5 > "$dir/e.log" 2>&1 ||
    { cat "$dir/e.log"; fail "probe MODEL"; }
acc=$(sed -n 's/.*test accuracy \([0-9.]*\) %.*/\1/p' "$dir/e.log")
awk -v a="$acc" 'BEGIN { exit !(a > 40 && a <= 100) }' || fail "encoder probe test accuracy '$acc' (expected > 40 %)"

# errors: one line on stderr, non-zero exit
expect_error() {
    code=$1; shift
    set +e
    "$mae" "$@" > "$dir/err.out" 2> "$dir/err.txt"
    rc=$?
    set -e
    [ "$rc" -eq "$code" ] || fail "mae $* exited $rc, expected $code"
    [ "$(wc -l < "$dir/err.txt")" -eq 1 ] || fail "mae $* printed $(wc -l < "$dir/err.txt") lines on stderr"
}
expect_error 1 train --data "$dir/nowhere" --out "$dir/d"
expect_error 2 train --epochs 0
expect_error 2 train --warmup 3 --epochs 2
expect_error 2 probe
expect_error 1 probe "$dir/nowhere.safetensors" --data "$data" --max-train 10
expect_error 1 train $tiny $common --out "$dir/e" --resume "$dir/nowhere.safetensors"
echo "check_pretrain: train, resume (bitwise), loss falls, probes (pixels $pacc %, tiny encoder $acc %), errors: passed"
