#!/bin/sh
# The `mae` command-line tool (examples/cli): every --help exits 0; reconstruct writes a grid PNG
# of the documented geometry and per-image losses whose mean is the batch loss; features writes
# .npy / .safetensors files whose shape and values match a reference computed by
# tests/cli_helper.c through the part API (patch embedder + encoder, no masker); --idx gives the
# same features as the same images as files; convert writes F16/BF16 files about half the size
# that info and reconstruct load (F16 loss within 1e-2), and F16 -> F32 -> F16 gives the file
# back; bench runs; a NaN loss names its cause; mae_trainer_load refuses a step beyond the
# checkpoint's schedule; features on a full disk keeps the old file and
# names the reason; bad input exits non-zero with exactly one line on stderr (2 for usage errors,
# 1 for runtime ones, 2 for an unknown option in every command); plot draws two runs' loss logs
# in their colours and leaves no file on a malformed one.
set -eu
BUILD=${BUILD:-build}
CC=${CC:-cc}
SANITIZE=${SANITIZE:-}
mae=$BUILD/examples/mae
[ -x "$mae" ] || make -s CC="$CC" SANITIZE="$SANITIZE" "$mae"
static=lib/libmae.a
[ -n "$SANITIZE" ] && static=$BUILD/libmae.a
[ -f "$static" ] || make -s CC="$CC" SANITIZE="$SANITIZE" "$static"
dir=$BUILD/check_cli
rm -rf "$dir"
mkdir -p "$dir"

san=""
[ -n "$SANITIZE" ] && san="-fsanitize=$SANITIZE -fno-omit-frame-pointer"
helper=$dir/cli_helper
# the library is built with OpenMP unless OPENMP=0: try with it first
# shellcheck disable=SC2086
$CC -std=c11 -D_POSIX_C_SOURCE=200809L -O1 $san -Iinclude tests/cli_helper.c -o "$helper" \
    "$static" -lm -fopenmp 2>/dev/null ||
    $CC -std=c11 -D_POSIX_C_SOURCE=200809L -O1 $san -Iinclude tests/cli_helper.c -o "$helper" \
        "$static" -lm
"$helper" images "$dir"

rgb=tests/data/tiny.model.safetensors     # 16x16, patch 4, 3 channels, pixel loss
gray=tests/data/gray.model.safetensors    # 28x28, patch 7, 1 channel, norm_pix_loss
enc=$dir/encoder_only.safetensors
"$helper" encoder-only "$rgb" "$enc"
checks=0
skipped=""   # parts whose tool is missing, named in the last line
die() { echo "check_cli: $*"; exit 1; }
ok() { checks=$((checks + 1)); }

# --- help ---
"$mae" --help > "$dir/out" || die "mae --help failed"
for cmd in info reconstruct features convert bench; do
    "$mae" "$cmd" --help > "$dir/out" || die "mae $cmd --help exits non-zero"
    grep -q "^usage: mae $cmd" "$dir/out" || die "mae $cmd --help prints no usage line"
    ok
done

# --- reconstruct ---
# grid: 4 panels of W*s plus 5 gaps of 2s across; B rows of H*s plus B+1 gaps down
grid_check() {   # PNG B H W s
    set -- $("$helper" png-size "$1") "$2" "$3" "$4" "$5"
    want_w=$((4 * $5 * $6 + 10 * $6)); want_h=$(($3 * $4 * $6 + ($3 + 1) * 2 * $6))
    [ "$1" = "$want_w" ] && [ "$2" = "$want_h" ] || die "grid is $1x$2, want ${want_w}x$want_h"
}
"$mae" reconstruct "$rgb" "$dir/rgb0.ppm" "$dir/rgb1.ppm" "$dir/wide.ppm" -o "$dir/a.png" \
    > "$dir/rec.txt" || die "reconstruct failed"
grid_check "$dir/a.png" 3 16 16 7        # default scale: ceil(112 / 16) = 7
# the batch loss is the mean of the per-image losses (same number of patches removed in each)
awk '/: loss / { s += $NF; n++ } /^batch loss/ { b = $3 }
     END { if (n != 3 || b == "" || (s / n - b) > 1e-5 * b || (b - s / n) > 1e-5 * b) exit 1 }' \
    "$dir/rec.txt" || die "per-image losses do not average to the batch loss: $(cat "$dir/rec.txt")"
grep -q "^wrote $dir/a.png" "$dir/rec.txt" || die "reconstruct does not say where the PNG is"
ok
# the same seed gives the same grid, another seed another one
"$mae" reconstruct "$rgb" "$dir/rgb0.ppm" "$dir/rgb1.ppm" "$dir/wide.ppm" -o "$dir/b.png" > /dev/null
cmp -s "$dir/a.png" "$dir/b.png" || die "reconstruct with the same seed differs"
"$mae" reconstruct "$rgb" "$dir/rgb0.ppm" "$dir/rgb1.ppm" "$dir/wide.ppm" -o "$dir/c.png" --seed 7 > /dev/null
cmp -s "$dir/a.png" "$dir/c.png" && die "reconstruct with another seed gives the same grid"
ok
# MAE_PROFILE=1: the per-op profile on stderr, a line per op kind that ran; the output unchanged
MAE_PROFILE=1 "$mae" reconstruct "$rgb" "$dir/rgb0.ppm" "$dir/rgb1.ppm" "$dir/wide.ppm" -o "$dir/p.png" \
    > "$dir/prof.out" 2> "$dir/prof.err" || die "reconstruct with MAE_PROFILE=1 failed"
cmp -s "$dir/a.png" "$dir/p.png" || die "MAE_PROFILE=1 changed the reconstruction"
grep -q '^profile of mae reconstruct' "$dir/prof.err" || die "MAE_PROFILE=1 printed no profile: $(cat "$dir/prof.err")"
awk '$1 == "linear" && $2 > 0 && $3 > 0 { f = 1 } END { exit !f }' "$dir/prof.err" \
    || die "the profile has no linear line with loops and time: $(cat "$dir/prof.err")"
MAE_PROFILE=0 "$mae" reconstruct "$rgb" "$dir/rgb0.ppm" -o "$dir/p.png" > /dev/null 2> "$dir/prof.err"
[ -s "$dir/prof.err" ] && die "MAE_PROFILE=0 printed: $(cat "$dir/prof.err")"
ok
"$mae" reconstruct "$gray" --idx "$dir/gray.idx" --first 1 --count 2 --scale 3 --mask-ratio 0.5 \
    --norm none --filter bilinear -o "$dir/g.png" > "$dir/rec.txt" || die "reconstruct --idx failed"
grid_check "$dir/g.png" 2 28 28 3
grep -q "gray.idx\[2\]: loss" "$dir/rec.txt" || die "reconstruct --idx labels: $(cat "$dir/rec.txt")"
grep -q "8 of 16 patches removed" "$dir/rec.txt" || die "--mask-ratio 0.5: $(cat "$dir/rec.txt")"
ok
# mask ratio 0 removes nothing: the loss is NaN (as in the official code) and says so
"$mae" reconstruct "$rgb" "$dir/rgb0.ppm" --mask-ratio 0 -o "$dir/z.png" > "$dir/rec.txt" ||
    die "reconstruct --mask-ratio 0 failed"
grep -q "^batch loss nan (no patch removed) (0 of 16" "$dir/rec.txt" || die "ratio 0: $(cat "$dir/rec.txt")"
ok
# a NaN loss with patches removed names its cause: here a weight that is NaN
"$helper" poison "$rgb" "$dir/nan.safetensors" decoder_pred.bias
"$mae" reconstruct "$dir/nan.safetensors" "$dir/rgb0.ppm" "$dir/rgb1.ppm" -o "$dir/n.png" > "$dir/rec.txt" ||
    die "reconstruct with a NaN weight failed"
grep -q "^batch loss nan (the model's weight 'decoder_pred.bias' is not finite) (12 of 16" "$dir/rec.txt" &&
    [ "$(grep -c "rgb[01].ppm: loss nan (the model's weight 'decoder_pred.bias' is not finite)$" "$dir/rec.txt")" = 2 ] &&
    ! grep -q "no patch removed" "$dir/rec.txt" || die "NaN weight: $(cat "$dir/rec.txt")"
ok

# --- features ---
for pool in cls mean cls+mean tokens; do
    "$mae" features "$rgb" "$dir/rgb0.ppm" "$dir/rgb1.ppm" "$dir/rgb2.ppm" --pool "$pool" --batch 2 \
        -o "$dir/f.npy" > /dev/null || die "features --pool $pool failed"
    "$helper" check "$rgb" "$dir/f.npy" "$pool" "$dir/rgb0.ppm" "$dir/rgb1.ppm" "$dir/rgb2.ppm" ||
        die "features --pool $pool"
    ok
done
"$mae" features "$rgb" "$dir/rgb2.ppm" "$dir/rgb0.ppm" -o "$dir/f.safetensors" > /dev/null ||
    die "features .safetensors failed"
"$helper" check "$rgb" "$dir/f.safetensors" cls+mean "$dir/rgb2.ppm" "$dir/rgb0.ppm" ||
    die "features .safetensors"
ok
if command -v python3 >/dev/null 2>&1; then   # the header is JSON, the data fills the rest
    python3 -c "
import json, struct, sys
b = open(sys.argv[1], 'rb').read()
n = struct.unpack('<Q', b[:8])[0]
h = json.loads(b[8:8 + n])
ok = n % 8 == 0 and list(h) == ['features'] and h['features'] == {
    'dtype': 'F32', 'shape': [2, 64], 'data_offsets': [0, len(b) - 8 - n]} and len(b) - 8 - n == 512
sys.exit(not ok)" "$dir/f.safetensors" || die "the .safetensors header is not what the format says"
    ok
else
    skipped="$skipped safetensors-header(no python3)"
fi
# an encoder-only checkpoint gives the same features as the full one
"$mae" features "$enc" "$dir/rgb2.ppm" "$dir/rgb0.ppm" -o "$dir/e.safetensors" > /dev/null ||
    die "features on an encoder-only checkpoint failed"
cmp -s "$dir/f.safetensors" "$dir/e.safetensors" || die "encoder-only features differ"
ok
# --idx --first 1 --count 2 is the same as the images given as files
"$mae" features "$gray" --idx "$dir/gray.idx" --first 1 --count 2 -o "$dir/i.npy" > /dev/null ||
    die "features --idx failed"
"$mae" features "$gray" "$dir/gray1.pgm" "$dir/gray2.pgm" -o "$dir/p.npy" > /dev/null ||
    die "features on PGM files failed"
cmp -s "$dir/i.npy" "$dir/p.npy" || die "features --idx differs from the same images as files"
"$helper" check "$gray" "$dir/p.npy" cls+mean "$dir/gray1.pgm" "$dir/gray2.pgm" || die "features (gray)"
ok
# Debian's python3 (CI installs python3-numpy there) before whichever python3 comes first on PATH
npy_py=""
for cand in /usr/bin/python3 python3; do
    if command -v "$cand" >/dev/null 2>&1 && "$cand" -c "import numpy" 2>/dev/null; then npy_py=$cand; break; fi
done
if [ -n "$npy_py" ]; then
    "$npy_py" -c "import numpy, sys; a = numpy.load(sys.argv[1]); sys.exit(a.shape != (2, 96) or a.dtype != numpy.float32)" \
        "$dir/p.npy" || die "numpy reads another shape or dtype from the .npy"
    ok
else
    skipped="$skipped npy-via-numpy(no python3 numpy)"
fi

# every file the CLI writes goes through mae_file_write: on a full disk (here a 4-8 KiB file
# size limit, ulimit -f 8 in 512- or 1024-byte blocks; SIGXFSZ ignored so that write() fails
# with EFBIG) the command fails with the system's reason and the previous file stays whole
"$helper" file-write "$dir/fw.txt" || die "mae_file_write"
# mae_trainer_load (which mae train --resume relies on to size its per-step arrays) refuses a
# checkpoint one step beyond its schedule, fractional epochs and accum_iter included
"$helper" step-bound "$rgb" "$dir/step.safetensors" > "$dir/step.txt" || die "the step bound"
ok
"$mae" features "$rgb" "$dir/rgb0.ppm" "$dir/rgb1.ppm" --pool tokens -o "$dir/full.npy" > /dev/null ||
    die "features --pool tokens failed"
cp "$dir/full.npy" "$dir/full.before"
set +e
(trap '' XFSZ; ulimit -f 8; exec "$mae" features "$rgb" "$dir/rgb0.ppm" "$dir/rgb1.ppm" "$dir/rgb2.ppm" \
    "$dir/wide.ppm" --pool tokens -o "$dir/full.npy") > /dev/null 2> "$dir/err"
rc=$?
set -e
[ "$rc" = 1 ] && [ "$(wc -l < "$dir/err")" = 1 ] && grep -q "^mae features: .*File too large" "$dir/err" ||
    die "features on a full disk: exit $rc, $(cat "$dir/err")"
cmp -s "$dir/full.npy" "$dir/full.before" || die "features on a full disk changed the previous file"
[ -z "$(find "$dir" -name '*.tmp.*')" ] || die "features on a full disk left a temporary file"
ok

# --- convert ---
# F16 and BF16 files about half the F32 one, loadable by info and reconstruct; F16 -> F32 -> F16
# gives the same file back (half values are exact in F32)
"$mae" convert "$rgb" "$dir/h.safetensors" > "$dir/conv.txt" || die "convert failed"
grep -q "^50 tensors as F16: $rgb [0-9]* bytes -> $dir/h.safetensors [0-9]* bytes$" "$dir/conv.txt" ||
    die "convert output: $(cat "$dir/conv.txt")"
"$mae" convert "$rgb" "$dir/bf.safetensors" --dtype bf16 > /dev/null || die "convert --dtype bf16 failed"
for f in h bf; do
    size=$(wc -c < "$dir/$f.safetensors"); full=$(wc -c < "$rgb")
    [ $((size * 100)) -lt $((full * 55)) ] && [ $((size * 100)) -gt $((full * 45)) ] ||
        die "convert: $f.safetensors is $size bytes, the F32 file $full"
    "$mae" info "$dir/$f.safetensors" > "$dir/info.txt" || die "info on the converted $f file failed"
    grep -q "^encoder:     width 32, depth 2, heads 4" "$dir/info.txt" || die "info on $f: $(cat "$dir/info.txt")"
    "$mae" reconstruct "$dir/$f.safetensors" "$dir/rgb0.ppm" "$dir/rgb1.ppm" -o "$dir/$f.png" > "$dir/rec_$f.txt" ||
        die "reconstruct with the converted $f file failed"
    grid_check "$dir/$f.png" 2 16 16 7
done
"$mae" reconstruct "$rgb" "$dir/rgb0.ppm" "$dir/rgb1.ppm" -o "$dir/full.png" > "$dir/rec_full.txt"
awk 'FNR == 1 { f++ } /^batch loss/ { b[f] = $3 }
     END { d = b[1] - b[2]; if (d < 0) d = -d; if (b[1] == "" || d > 1e-2 * b[2]) exit 1 }' \
    "$dir/rec_h.txt" "$dir/rec_full.txt" || die "the F16 model's loss is far from the F32 one's"
"$mae" convert "$dir/h.safetensors" "$dir/h32.safetensors" --dtype f32 > /dev/null || die "convert --dtype f32 failed"
"$mae" convert "$dir/h32.safetensors" "$dir/h2.safetensors" --dtype F16 > /dev/null || die "convert --dtype F16 failed"
cmp -s "$dir/h.safetensors" "$dir/h2.safetensors" || die "F16 -> F32 -> F16 is not the same file"
ok

# --- bench ---
"$mae" bench --iters 2 --batch 2 --threads 1 > "$dir/bench.txt" || die "bench failed"
grep -q "^forward: .*median .* ms, min .* images/s" "$dir/bench.txt" || die "bench output: $(cat "$dir/bench.txt")"
"$mae" bench "$rgb" --train --iters 1 --batch 2 > "$dir/bench.txt" || die "bench --train failed"
grep -q "^train step: .*median" "$dir/bench.txt" || die "bench --train output: $(cat "$dir/bench.txt")"
grep -q "kernels $("$mae" --help | sed -n 's/.*kernels \([a-z0-9]*\)\./\1/p')" "$dir/bench.txt" ||
    die "bench does not name the kernel table"
ok

# --- bad input: exit status $1, exactly one line on stderr ---
head -c 20 "$dir/rgb0.ppm" > "$dir/cut.ppm"
bad() {
    want=$1; shift
    set +e
    "$mae" "$@" > /dev/null 2> "$dir/err"
    rc=$?
    set -e
    [ "$rc" = "$want" ] || die "mae $*: exit $rc, want $want ($(cat "$dir/err"))"
    [ "$(wc -l < "$dir/err")" = 1 ] || die "mae $*: stderr is not one line: $(cat "$dir/err")"
    grep -q "^mae $1: " "$dir/err" || die "mae $*: stderr does not start with 'mae $1: '"
    ok
}
bad 1 reconstruct "$rgb" "$dir/missing.ppm" -o "$dir/x.png"
bad 1 reconstruct "$dir/missing.safetensors" "$dir/rgb0.ppm" -o "$dir/x.png"
bad 1 reconstruct "$rgb" "$dir/cut.ppm" -o "$dir/x.png"
bad 1 reconstruct "$enc" "$dir/rgb0.ppm" -o "$dir/x.png"
bad 1 reconstruct "$gray" "$dir/gray0.pgm" -o "$dir/x.png" --mask-ratio 0.99   # norm_pix: none visible
bad 2 reconstruct "$rgb" "$dir/rgb0.ppm" -o "$dir/x.png" --mask-ratio 0.5x
bad 2 reconstruct "$rgb" "$dir/rgb0.ppm" -o "$dir/x.png" --mask-ratio 1
bad 2 reconstruct "$rgb" "$dir/rgb0.ppm" -o "$dir/x.png" --scale 17
bad 2 reconstruct "$rgb" "$dir/rgb0.ppm" -o "$dir/x.png" --seed -3
bad 2 reconstruct "$rgb" "$dir/rgb0.ppm" -o "$dir/x.png" --frobnicate
bad 2 reconstruct "$rgb" "$dir/rgb0.ppm"
bad 2 reconstruct "$rgb" "$dir/rgb0.ppm" -o
bad 1 features "$rgb" "$dir/cut.ppm" -o "$dir/x.npy"
bad 1 features "$gray" --idx "$dir/gray.idx" --first 3 --count 2 -o "$dir/x.npy"
bad 1 features "$gray" --idx "$dir/cut.ppm" -o "$dir/x.npy"
bad 2 features "$rgb" "$dir/rgb0.ppm" -o "$dir/x.txt"
bad 2 features "$rgb" "$dir/rgb0.ppm" -o "$dir/x.npy" --pool max
bad 2 features "$rgb" "$dir/rgb0.ppm" -o "$dir/x.npy" --batch 0
bad 2 features "$rgb" "$dir/rgb0.ppm" -o "$dir/x.npy" --first 1
bad 2 features "$gray" "$dir/gray0.pgm" -o "$dir/x.npy" --norm imagenet
bad 2 convert "$rgb"
bad 2 convert "$rgb" "$dir/x.safetensors" --dtype f8
bad 2 convert "$rgb" "$dir/x.safetensors" "$dir/y.safetensors"
bad 1 convert "$dir/missing.safetensors" "$dir/x.safetensors"
bad 1 convert "$rgb" "$dir/no/such/dir.safetensors"
bad 2 bench --iters 1x
bad 2 bench --threads 0
bad 2 bench --preset huge
bad 1 bench "$dir/missing.safetensors"
bad 1 bench "$enc" --train --iters 1
# an unknown option is a usage error in every command, before anything is loaded
for cmd in info reconstruct features convert bench train probe; do
    bad 2 "$cmd" --bogus
done
bad 2 info "$rgb" --bogus
bad 2 info "$rgb" "$rgb"

# --- plot ---
# Two short mae train runs (different seeds and lr) on the 4 test images as an IDX data set:
# mae plot draws both logs on one 800x440 PNG that mae_image_load decodes, each run's loss in its
# own colour (the first blue 31,90,180, the second red 210,50,40): the left half of the plot area,
# away from the legend, holds pixels of both, so a run left undrawn fails. --lr adds the lr; a
# mae finetune log (evaluation rows without a loss) plots too. A missing or malformed CSV is one
# error line, exit 1, and neither the PNG nor a temporary file is left.
mkdir -p "$dir/idx"
cp "$dir/gray.idx" "$dir/idx/train-images-idx3-ubyte"
cp "$dir/gray.idx" "$dir/idx/t10k-images-idx3-ubyte"
tiny="--patch 7 --embed-dim 32 --depth 1 --heads 2 --decoder-dim 16 --decoder-depth 1 --decoder-heads 2"
for run in "r1 0 1e-2" "r2 1 3e-2"; do
    set -- $run
    # shellcheck disable=SC2086
    "$mae" train $tiny --data "$dir/idx" --batch 2 --epochs 8 --warmup 1 --seed "$2" --blr "$3" \
        --max-steps 12 --threads 1 --out "$dir/$1" > "$dir/$1.log" 2>&1 || die "train $1: $(cat "$dir/$1.log")"
done
"$mae" plot --help > "$dir/out" && grep -q "^usage: mae plot" "$dir/out" || die "mae plot --help"
"$mae" plot "$dir/r1/loss.csv" "$dir/r2/loss.csv" --label first -o "$dir/runs.png" > "$dir/plot.txt" ||
    die "plot of two runs failed"
grep -q "^wrote $dir/runs.png (2 runs)$" "$dir/plot.txt" || die "plot output: $(cat "$dir/plot.txt")"
set -- $("$helper" png-colours "$dir/runs.png" 70 30 400 420 31,90,180 210,50,40)
[ "$1x$2" = 800x440 ] || die "plot: the PNG is $1x$2, want 800x440"
[ "$3" -ge 100 ] && [ "$4" -ge 100 ] || die "plot: $3 pixels of run 1's colour, $4 of run 2's (want >= 100 each)"
ok
"$mae" plot "$dir/r1/loss.csv" "$dir/r2/loss.csv" --label first --lr -o "$dir/runs_lr.png" > /dev/null ||
    die "plot --lr failed"
cmp -s "$dir/runs.png" "$dir/runs_lr.png" && die "plot --lr draws no lr"
{ echo "step,epoch,loss,lr,test_acc,seconds"; echo "2,0.1000,2.302581,6.25e-06,,0.0"
  echo "4,0.2000,2.251000,1.875e-05,,0.0"; echo "6,0.3000,2.10,3.1e-05,,0.1"
  echo "6,0.3000,,,31.50,0.2"; echo "8,0.4000,1.95,4.3e-05,,0.2"; } > "$dir/ft.csv"
"$mae" plot "$dir/ft.csv" --x epoch -o "$dir/ft.png" > /dev/null || die "plot of a finetune log failed"
set -- $("$helper" png-colours "$dir/ft.png" 70 30 730 390 31,90,180)
[ "$3" -ge 100 ] || die "plot of a finetune log: $3 pixels of its colour"
ok
printf 'step,epoch,loss,lr,grad_norm,seconds\n0,0,1.5,0,1,0\n1,0.5,1.4\n' > "$dir/short.csv"
printf 'step,epoch,loss,lr,grad_norm,seconds\n0,0,1.5,0,1,0\n1,0.5,x1.4,0,1,0\n' > "$dir/word.csv"
printf 'step,epoch,lr\n0,0,1\n' > "$dir/noloss.csv"
printf 'step,epoch,loss,lr,grad_norm,seconds\n' > "$dir/header.csv"
printf 'step,epoch,loss,lr,grad_norm,seconds\n-3,0,1.5,0,1,0\n' > "$dir/negative.csv"
printf 'step,epoch,loss,lr,grad_norm,seconds\n0,0,1e39,0,1,0\n' > "$dir/huge.csv"
for csv in short word noloss header negative huge missing; do
    bad 1 plot "$dir/r1/loss.csv" "$dir/$csv.csv" -o "$dir/bad.png"
    [ ! -e "$dir/bad.png" ] || die "plot with $csv.csv wrote the PNG"
done
bad 1 plot "$rgb" -o "$dir/bad.png"
bad 1 plot "$dir/r1/loss.csv" -o "$dir/no/such/dir.png"
[ ! -e "$dir/bad.png" ] && [ -z "$(find "$dir" -name '*.tmp.*')" ] || die "a failed plot left a file"
bad 2 plot "$dir/r1/loss.csv"
bad 2 plot -o "$dir/bad.png"
bad 2 plot "$dir/r1/loss.csv" -o "$dir/bad.png" --x time
bad 2 plot "$dir/r1/loss.csv" -o "$dir/bad.png" --label a --label b
bad 2 plot "$dir/r1/loss.csv" -o "$dir/r1/loss.csv"
bad 2 plot --bogus

echo "check_cli: $checks checks passed${skipped:+; skipped:$skipped}"
