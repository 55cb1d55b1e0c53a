#!/bin/sh
# `mae train` killed (SIGKILL) and resumed, on tiny random IDX data so that it takes seconds:
#   - the moments of the kills follow the run's own progress (a checkpoint exists and loss.csv
#     has grown past it by N rows or N bytes), never bare sleeps; the run's schedule is far
#     longer than the test, so it is still running when the kill comes;
#   - after kills between checkpoints (log every step), kills with a huge --log-every (the file
#     ends in a partial line) and a kill of a resumed run, --resume runs 100 steps past the
#     checkpoint's S: loss.csv then holds the header and the steps 0..S+99 exactly once, in
#     order, six fields each, every line whole, equal (but for the seconds) to the first rows
#     of an uninterrupted run;
#   - a checkpoint whose trainer.step lies beyond its schedule is refused by mae_trainer_load
#     (exit 1, one line naming trainer.step), with a loss.csv longer than the schedule beside it
#     (before the fix: a heap-buffer-overflow in mae train under ASan);
#   - on a full disk (ulimit -f) the resume's rewrite of loss.csv fails with the system's reason
#     and leaves the file as it was.
set -eu
BUILD=${BUILD:-build}
CC=${CC:-cc}
SANITIZE=${SANITIZE:-}
mae=$BUILD/examples/mae
[ -x "$mae" ] || make -s CC="$CC" SANITIZE="$SANITIZE" "$mae"
dir=$BUILD/check_resume
rm -rf "$dir"
mkdir -p "$dir/data"
fail() { echo "check_resume: FAILED: $*"; exit 1; }

# IDX data: 256 training and 8 test images of 8x8 random pixels (magic 0x00000803, n, h, w)
printf '\000\000\010\003\000\000\001\000\000\000\000\010\000\000\000\010' > "$dir/data/train-images-idx3-ubyte"
head -c 16384 /dev/urandom >> "$dir/data/train-images-idx3-ubyte"
printf '\000\000\010\003\000\000\000\010\000\000\000\010\000\000\000\010' > "$dir/data/t10k-images-idx3-ubyte"
head -c 512 /dev/urandom >> "$dir/data/t10k-images-idx3-ubyte"

# batch 1: 256 steps per epoch, a checkpoint every 256 steps (more rows than stdio's 4 KiB
# buffer holds, so a huge --log-every leaves partial lines); 100000 epochs: the killed runs
# never reach the end
model="--patch 4 --embed-dim 16 --depth 1 --heads 2 --decoder-dim 8 --decoder-depth 1 --decoder-heads 2"
run="--data $dir/data --batch 1 --epochs 100000 --warmup 1 --threads 1"
R=3000   # steps of the uninterrupted reference run (far past any kill)

lines() { if [ -f "$1" ]; then wc -l < "$1"; else echo 0; fi; }
bytes() { if [ -f "$1" ]; then wc -c < "$1"; else echo 0; fi; }
ckpt_step() {   # trainer.step from the checkpoint's __metadata__
    grep -a -o '"trainer.step":"[0-9]*"' "$1" | head -n 1 | tr -cd '0-9'
}

# Starts `mae train ARGS...` in the background, waits until CONDITION (a shell command) holds,
# kills it with SIGKILL. The run must still be going when the condition holds.
kill_when() {
    cond=$1; shift
    "$mae" train "$@" > "$dir/run.log" 2>&1 &
    pid=$!
    until eval "$cond"; do
        kill -0 "$pid" 2>/dev/null || { cat "$dir/run.log"; fail "mae train $* ended before the kill"; }
        sleep 0.01
    done
    kill -KILL "$pid"
    wait "$pid" 2>/dev/null || true
}

# Resumes OUT from its checkpoint (step S) for 100 more steps and checks its loss.csv against
# the uninterrupted run's first S + 100 rows.
finish() {
    out=$1; shift
    s=$(ckpt_step "$out/checkpoint.safetensors")
    F=$((s + 100))
    [ "$F" -le "$R" ] || fail "$out: the kill came after step $s, beyond the reference run"
    # shellcheck disable=SC2086
    "$mae" train $run --out "$out" --resume "$out/checkpoint.safetensors" --max-steps 100 "$@" \
        > "$dir/resume.log" 2>&1 || { cat "$dir/resume.log"; fail "$out: --resume from step $s"; }
    awk -F, -v F="$F" '
        NR == 1 { if ($0 != "step,epoch,loss,lr,grad_norm,seconds") { print "header: " $0; bad = 1 } next }
        NF != 6 { print "line " NR " has " NF " fields: " $0; bad = 1; exit }
        $1 != NR - 2 { print "line " NR " is step " $1 ", want " NR - 2; bad = 1; exit }
        END { if (!bad && NR - 1 != F) { print NR - 1 " rows, want " F; bad = 1 } exit bad }' \
        "$out/loss.csv" || fail "$out/loss.csv (resumed at $s) is not steps 0..$((F - 1)) once each"
    [ "$(tail -c 1 "$out/loss.csv" | od -An -c | tr -d ' ')" = '\n' ] || fail "$out/loss.csv ends in a partial line"
    cut -d, -f1-5 "$out/loss.csv" > "$dir/got.csv"
    head -n $((F + 1)) "$dir/ref.csv" | cmp -s - "$dir/got.csv" ||
        fail "$out/loss.csv (resumed at $s) differs from the uninterrupted run's log"
}

# the reference: R steps without a kill
# shellcheck disable=SC2086
"$mae" train $model $run --out "$dir/ref" --max-steps $R --log-every 500 > "$dir/ref.log" 2>&1 ||
    { cat "$dir/ref.log"; fail "train (uninterrupted)"; }
cut -d, -f1-5 "$dir/ref/loss.csv" > "$dir/ref.csv"
[ "$(lines "$dir/ref.csv")" -eq $((R + 1)) ] || fail "the uninterrupted run logged $(lines "$dir/ref.csv") lines"

# 1. killed between checkpoints, every step logged: rows after the checkpoint are in the file
#    (the first case also gets a partial line glued on, as a kill mid-write leaves)
for n in 20 90 200; do
    out=$dir/k$n
    # shellcheck disable=SC2086
    kill_when "[ -f $out/checkpoint.safetensors ] && [ \$(lines $out/loss.csv) -gt $((257 + n)) ]" \
        $model $run --out "$out" --log-every 1
    s=$(ckpt_step "$out/checkpoint.safetensors")
    # a kill just after a checkpoint leaves no rows past it: a moment worth testing too
    [ "$(lines "$out/loss.csv")" -gt $((s + 1)) ] || echo "check_resume: (k$n was killed right after its checkpoint)"
    [ "$n" = 20 ] && printf '%s' "$((s + 5)),0.1" >> "$out/loss.csv"
    finish "$out" --log-every 1
done

# 2. a huge --log-every: stdio writes 4 KiB blocks, so the killed run's file ends mid-line
out=$dir/big
# shellcheck disable=SC2086
kill_when "[ -f $out/checkpoint.safetensors ] && [ \$(bytes $out/loss.csv) -ge 20000 ]" \
    $model $run --out "$out" --log-every 1000000000
tail -c 1 "$out/loss.csv" | od -An -c | grep -q '\\n' && echo "check_resume: (the killed run's log happened to end in a whole line)"
finish "$out" --log-every 1000000000

# 3. killed twice: a resumed run killed again past its own first checkpoint, then finished
out=$dir/twice
# shellcheck disable=SC2086
kill_when "[ -f $out/checkpoint.safetensors ] && [ \$(lines $out/loss.csv) -gt 300 ]" \
    $model $run --out "$out" --log-every 1
s=$(ckpt_step "$out/checkpoint.safetensors")
# shellcheck disable=SC2086
kill_when "[ \$(ckpt_step $out/checkpoint.safetensors) -gt $s ] && [ \$(lines $out/loss.csv) -gt $((s + 300)) ]" \
    $run --out "$out" --resume "$out/checkpoint.safetensors" --log-every 7
finish "$out" --log-every 3

# 4. the kept log is rewritten atomically: under a 4-8 KiB file size limit (ulimit -f 8,
#    SIGXFSZ ignored) the rewrite fails with the system's reason and loss.csv stays as it was
out=$dir/k200
cp "$out/loss.csv" "$dir/loss.before"
set +e
# shellcheck disable=SC2086
(trap '' XFSZ; ulimit -f 8; exec "$mae" train $run --out "$out" --resume "$out/checkpoint.safetensors" \
    --max-steps 1) > /dev/null 2> "$dir/err"
rc=$?
set -e
[ "$rc" -eq 1 ] && [ "$(wc -l < "$dir/err")" -eq 1 ] && grep -q "loss.csv.*File too large" "$dir/err" ||
    fail "resume on a full disk: exit $rc, $(cat "$dir/err")"
cmp -s "$out/loss.csv" "$dir/loss.before" || fail "resume on a full disk changed loss.csv"

# 5. a checkpoint beyond its schedule (2 epochs of 16 steps: 32) with a longer loss.csv beside it
out=$dir/beyond
# shellcheck disable=SC2086
"$mae" train $model --data "$dir/data" --max-images 64 --batch 4 --epochs 2 --warmup 1 --out "$out" \
    > "$dir/beyond.log" 2>&1 || { cat "$dir/beyond.log"; fail "train (2 epochs)"; }
[ "$(ckpt_step "$out/checkpoint.safetensors")" = 32 ] || fail "the 2-epoch run's checkpoint is not at step 32"
for i in $(seq 32 98); do echo "$i,$i,1,0.001,1,0.5"; done >> "$out/loss.csv"
# the same length, so the header stays valid; the checksum key renamed (same length again), as
# the edit would fail it: the file then reads as one libmae did not write
sed -e 's/"trainer.step":"32"/"trainer.step":"99"/' -e 's/"libmae.crc32c":/"libmae.nocrc0":/' \
    "$out/checkpoint.safetensors" > "$dir/beyond.safetensors"
grep -a -q '"trainer.step":"99"' "$dir/beyond.safetensors" || fail "could not craft the checkpoint"
set +e
"$mae" train --data "$dir/data" --max-images 64 --batch 4 --out "$out" --resume "$dir/beyond.safetensors" \
    > /dev/null 2> "$dir/err"
rc=$?
set -e
[ "$rc" -eq 1 ] || fail "a checkpoint beyond its schedule: exit $rc, want 1 ($(cat "$dir/err"))"
[ "$(wc -l < "$dir/err")" -eq 1 ] && grep -q "trainer.step 99 is beyond the checkpoint's schedule" "$dir/err" ||
    fail "a checkpoint beyond its schedule: $(cat "$dir/err")"
echo "check_resume: kills and resumes (3 between checkpoints, 1 mid-line, 1 twice), full disk, step beyond schedule: passed"
