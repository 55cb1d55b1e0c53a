#!/bin/sh
# `mae classify` and the classifier path of examples/convert_pth.py, end to end:
#  - classify --json on images of the model's exact size with --crop-pct 1 (the transform is then
#    (v/255 - mean)/std, nothing resampled) gives logits within float32 rounding of PyTorch float64
#    (tests/gen_classifier.py's forward), the JSON has image, top (label, index, probability;
#    probabilities = softmax of the logits, sorted), logits (every class, float32 round-trip: the
#    printed text parses back to the same float32), labels by name;
#  - a fine-tuned .pth made from the same weights ({'model': state_dict} with fc_norm.* and head.*)
#    converts without a flag into a file whose --json output is byte-identical, labels from
#    --labels; a head that disagrees with --labels is refused;
#  - --precision f32 prints the default output; bf16 the same top class on the ten demo images
#    (examples/data), with other probabilities;
#  - bad input: one error line, non-zero exit.
# Needs /usr/bin/python3 with torch (skipped without it).
set -eu
BUILD=${BUILD:-build}
CC=${CC:-cc}
SANITIZE=${SANITIZE:-}
mae=$BUILD/examples/mae
[ -x "$mae" ] || make -s CC="$CC" SANITIZE="$SANITIZE" "$mae"
dir=$BUILD/check_classify
rm -rf "$dir"
mkdir -p "$dir"

# --precision: f32 prints what the default does, byte for byte; bf16 (mae_classifier_set_precision)
# gives the same top class on the ten demo images with other probabilities (it computes in bf16)
demo=examples/data/mae-fmnist-classifier.safetensors
"$mae" classify $demo examples/data/*.png --top 1 > "$dir/demo.txt"
"$mae" classify $demo examples/data/*.png --top 1 --precision f32 > "$dir/demo32.txt"
"$mae" classify $demo examples/data/*.png --top 1 --precision bf16 > "$dir/demo16.txt"
cmp -s "$dir/demo.txt" "$dir/demo32.txt" || { echo "check_classify: --precision f32 changed the output"; exit 1; }
classes() { sed -n 's/^ *[0-9.]*%  //p' "$1"; }
[ "$(classes "$dir/demo.txt" | wc -l)" -eq 10 ] && [ "$(classes "$dir/demo.txt")" = "$(classes "$dir/demo16.txt")" ] ||
    { paste "$dir/demo.txt" "$dir/demo16.txt"; echo "check_classify: --precision bf16 gives other classes"; exit 1; }
! cmp -s "$dir/demo.txt" "$dir/demo16.txt" || { echo "check_classify: --precision bf16 prints the float32 output"; exit 1; }

py=/usr/bin/python3
if ! [ -x $py ] || ! $py -c "import torch" 2>/dev/null; then
    echo "check_classify: skipped (no /usr/bin/python3 with torch)"
    exit 0
fi
model=tests/data/clsgp.classifier.safetensors   # 16x16 RGB, global pool, 5 labelled classes

# images of the model's size (PPM) and a .pth of the same weights, with its label file
$py - "$dir" "$model" <<'PY'
import json, struct, sys, random
import numpy as np, torch
d, model = sys.argv[1], sys.argv[2]
raw = open(model, "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
hdr = json.loads(raw[8:8 + n])
meta = hdr.pop("__metadata__")
sd = {}
for k, v in hdr.items():
    a, b = v["data_offsets"]
    sd[k] = torch.from_numpy(np.frombuffer(raw[8 + n + a:8 + n + b], dtype="<f4").reshape(v["shape"]).copy())
torch.save({"model": sd, "epoch": 99}, f"{d}/finetuned.pth")
with open(f"{d}/labels.txt", "w", encoding="utf-8") as f:
    f.write("".join(meta[f"id2label.{i}"] + "\n" for i in range(5)))
with open(f"{d}/labels4.txt", "w") as f:
    f.write("a\nb\nc\nd\n")
random.seed(7)
for i in range(3):
    px = bytes(random.randrange(256) for _ in range(16 * 16 * 3))
    open(f"{d}/img{i}.ppm", "wb").write(b"P6 16 16 255\n" + px)
PY

"$mae" classify "$model" "$dir"/img0.ppm "$dir"/img1.ppm "$dir"/img2.ppm --json --crop-pct 1 > "$dir/a.json"
$py tests/gen_classifier.py --check "$model" "$dir/a.json"

$py examples/convert_pth.py "$dir/finetuned.pth" "$dir/converted.safetensors" --labels "$dir/labels.txt" --num-heads 3 > "$dir/convert.log"
grep -q "classifier, 5 classes, global pooling" "$dir/convert.log" || { cat "$dir/convert.log"; echo "check_classify: convert did not see the classifier"; exit 1; }
"$mae" classify "$dir/converted.safetensors" "$dir"/img0.ppm "$dir"/img1.ppm "$dir"/img2.ppm --json --crop-pct 1 > "$dir/b.json"
cmp -s "$dir/a.json" "$dir/b.json" || { echo "check_classify: the converted .pth classifies differently"; exit 1; }
if $py examples/convert_pth.py "$dir/finetuned.pth" "$dir/bad.safetensors" --labels "$dir/labels4.txt" --num-heads 3 2>/dev/null; then
    echo "check_classify: 4 labels for 5 classes were accepted"; exit 1
fi

# the default transform (resize to 16/0.875 = 18, centre crop) and plain output run; bad input fails
"$mae" classify "$model" "$dir/img0.ppm" --top 2 > "$dir/plain.txt"
[ "$(wc -l < "$dir/plain.txt")" -eq 3 ] || { cat "$dir/plain.txt"; echo "check_classify: --top 2 printed the wrong lines"; exit 1; }
for bad in "$model" "$model $dir/missing.png" "tests/data/tiny.model.safetensors $dir/img0.ppm" \
           "$model $dir/img0.ppm --top 0" "$model $dir/img0.ppm --norm fashion-mnist" "$model $dir/img0.ppm --bogus" \
           "$model $dir/img0.ppm --precision f16"; do
    # shellcheck disable=SC2086
    if "$mae" classify $bad > "$dir/out" 2> "$dir/err"; then
        echo "check_classify: 'mae classify $bad' succeeded"; exit 1
    fi
    [ "$(wc -l < "$dir/err")" -eq 1 ] || { cat "$dir/err"; echo "check_classify: 'mae classify $bad' did not print one error line"; exit 1; }
done
# mae finetune: a few steps on Fashion-MNIST (when installed) write a CSV and a classifier that
# classify loads, with the class names
fm=/usr/share/datasets/fashion-mnist
if [ -f $fm/train-images-idx3-ubyte.gz ]; then
    "$mae" finetune examples/data/mae-fmnist.safetensors --max-train 64 --max-test 40 --epochs 1 --warmup 0.5 \
        --batch 32 --log-every 1 --csv "$dir/ft.csv" --png "$dir/ft.png" --out "$dir/ft.safetensors" > "$dir/ft.log" 2>&1 ||
        { cat "$dir/ft.log"; echo "check_classify: mae finetune failed"; exit 1; }
    [ "$(head -1 "$dir/ft.csv")" = "step,epoch,loss,lr,test_acc,seconds" ] && [ "$(wc -l < "$dir/ft.csv")" -eq 4 ] ||
        { cat "$dir/ft.csv"; echo "check_classify: the CSV is not 2 steps and 1 evaluation"; exit 1; }
    grep -q "epoch 1: test accuracy" "$dir/ft.log" || { cat "$dir/ft.log"; echo "check_classify: no accuracy line"; exit 1; }
    # --png: an 800x440 RGB PNG (signature, then IHDR's width and height), read back by the library
    [ "$(od -An -tx1 -N24 "$dir/ft.png" | tr -d ' \n')" = "89504e470d0a1a0a0000000d4948445200000320000001b8" ] ||
        { od -An -tx1 -N24 "$dir/ft.png"; echo "check_classify: --png did not write an 800x440 PNG"; exit 1; }
    if "$mae" finetune examples/data/mae-fmnist.safetensors --max-train 32 --max-test 8 --epochs 1 --warmup 0.5 \
        --batch 32 --png "$dir/no/such/dir/ft.png" --out "$dir/ft2.safetensors" > /dev/null 2> "$dir/png.err"; then
        echo "check_classify: finetune --png into a missing directory succeeded"; exit 1
    fi
    tail -n 1 "$dir/png.err" | grep -q "no/such/dir/ft.png" || { cat "$dir/png.err"; echo "check_classify: the --png failure does not name the file"; exit 1; }
    "$mae" classify "$dir/ft.safetensors" examples/data/t10k-0002-trouser.png --crop-pct 1 --json > "$dir/ft.json"
    grep -q '"label":"Trouser"' "$dir/ft.json" || { cat "$dir/ft.json"; echo "check_classify: no class names"; exit 1; }
    # a run split in two (--stop-after 1, then --resume) ends with the same file as one run, random
    # RandAugment and erasing included
    ft="$mae finetune examples/data/mae-fmnist.safetensors --max-train 64 --max-test 20 --epochs 2 --warmup 0.5 --batch 32 --reprob 0.25 --aa rand-m9-mstd0.5-inc1"
    $ft --out "$dir/one.safetensors" > /dev/null 2>&1 || { echo "check_classify: finetune (one run) failed"; exit 1; }
    $ft --out "$dir/two.safetensors" --checkpoint "$dir/ck.safetensors" --stop-after 1 > /dev/null 2>&1 &&
        $ft --out "$dir/two.safetensors" --checkpoint "$dir/ck.safetensors" --resume > /dev/null 2>&1 ||
        { echo "check_classify: finetune (split run) failed"; exit 1; }
    cmp -s "$dir/one.safetensors" "$dir/two.safetensors" || { echo "check_classify: the resumed run differs"; exit 1; }
else
    echo "check_classify: mae finetune skipped (no $fm)"
fi
echo "check_classify: --precision bf16 the same 10 demo classes as f32, 3 images within float32 of PyTorch float64, JSON well-formed, converted .pth identical, 7 bad inputs refused, finetune CSV + PNG + classifier, resumed run identical"
