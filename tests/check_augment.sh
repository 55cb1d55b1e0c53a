#!/bin/sh
# `mae finetune --aa`'s RandAugment-lite ops (examples/cli/randaug.c) against PIL as timm calls
# them: tests/gen_randaug.py draws gray images, levels and signs from a fresh seed and applies
# ImageOps / ImageEnhance / Image.rotate / Image.transform (bilinear, fillcolor);
# build/tests/test_augment --pil checks every output byte. Skipped without /usr/bin/python3 and
# PIL (Debian: python3-pil). build/tests/test_augment checks the policy and random erasing.
set -eu
BUILD=${BUILD:-build}
CC=${CC:-cc}
SANITIZE=${SANITIZE:-}
test_bin=$BUILD/tests/test_augment
[ -x "$test_bin" ] || make -s CC="$CC" SANITIZE="$SANITIZE" "$test_bin"
py=/usr/bin/python3
if ! [ -x $py ] || ! $py -c "import PIL" 2>/dev/null; then
    echo "check_augment: skipped (no /usr/bin/python3 with PIL)"
    exit 0
fi
dir=$BUILD/check_augment
rm -rf "$dir"
mkdir -p "$dir"
$py tests/gen_randaug.py "$dir/pil.txt"
"$test_bin" --pil "$dir/pil.txt" > "$dir/pil.log" 2>&1 || { cat "$dir/pil.log"; echo "check_augment: FAILED against PIL"; exit 1; }
echo "check_augment: $(head -n 1 "$dir/pil.log")"
