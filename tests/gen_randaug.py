#!/usr/bin/env python3
"""PIL references for `mae finetune`'s RandAugment-lite ops (examples/cli/randaug.c), called as
timm's auto_augment.py calls them (ImageOps, ImageEnhance, Image.rotate / Image.transform with
fillcolor), the affine ones with BILINEAR resampling (the lite ops' filter; the official recipe
passes bicubic). Random gray images, levels and signs from a fresh seed each run.

usage: gen_randaug.py OUT.txt [SEED]   writes numbers that build/tests/test_augment --pil OUT.txt
reads: the seed, the case count, then per case: op, level, negate, H, W, fill, the input and
the output pixels."""
import random
import sys

from PIL import Image, ImageEnhance, ImageOps

OPS = ["AutoContrast", "Equalize", "Invert", "Rotate", "PosterizeIncreasing", "SolarizeIncreasing",
       "SolarizeAdd", "ColorIncreasing", "ContrastIncreasing", "BrightnessIncreasing",
       "SharpnessIncreasing", "ShearX", "ShearY", "TranslateXRel", "TranslateYRel"]


def apply(img, op, level, negate, fill):
    f = level / 10.0
    s = -1.0 if negate else 1.0
    name = OPS[op]
    tf = dict(resample=Image.BILINEAR, fillcolor=fill)
    w, h = img.size
    if name == "AutoContrast":
        return ImageOps.autocontrast(img)
    if name == "Equalize":
        return ImageOps.equalize(img)
    if name == "Invert":
        return ImageOps.invert(img)
    if name == "Rotate":
        return img.rotate(s * f * 30.0, **tf)
    if name == "PosterizeIncreasing":
        bits = 4 - int(f * 4)
        return img if bits >= 8 else ImageOps.posterize(img, bits)
    if name == "SolarizeIncreasing":
        return ImageOps.solarize(img, 256 - int(f * 256))
    if name == "SolarizeAdd":
        add = int(f * 110)
        return img.point([min(255, i + add) if i < 128 else i for i in range(256)])
    factor = 1.0 + s * f * 0.9
    if name == "ColorIncreasing":
        return ImageEnhance.Color(img).enhance(factor)
    if name == "ContrastIncreasing":
        return ImageEnhance.Contrast(img).enhance(factor)
    if name == "BrightnessIncreasing":
        return ImageEnhance.Brightness(img).enhance(factor)
    if name == "SharpnessIncreasing":
        return ImageEnhance.Sharpness(img).enhance(factor)
    if name == "ShearX":
        return img.transform(img.size, Image.AFFINE, (1, s * f * 0.3, 0, 0, 1, 0), **tf)
    if name == "ShearY":
        return img.transform(img.size, Image.AFFINE, (1, 0, 0, s * f * 0.3, 1, 0), **tf)
    if name == "TranslateXRel":
        return img.transform(img.size, Image.AFFINE, (1, 0, s * f * 0.45 * w, 0, 1, 0), **tf)
    if name == "TranslateYRel":
        return img.transform(img.size, Image.AFFINE, (1, 0, 0, 0, 1, s * f * 0.45 * h), **tf)
    raise ValueError(name)


def main():
    out = sys.argv[1]
    seed = int(sys.argv[2]) if len(sys.argv) > 2 else random.randrange(1 << 30)
    rng = random.Random(seed)
    lines = [str(seed)]
    cases = []
    for op in range(len(OPS)):
        for k in range(8):
            h, w = (28, 28) if k < 5 else (rng.randrange(3, 20), rng.randrange(3, 20))
            lo, hi = sorted((rng.randrange(256), rng.randrange(256)))
            px = bytes(rng.randrange(lo, hi + 1) for _ in range(h * w))
            if k == 4:
                px = bytes(h * w)   # a constant image
            level = 0.0 if k == 3 else rng.uniform(0, 10)
            negate = rng.random() > 0.5
            fill = rng.randrange(256)
            img = Image.frombytes("L", (w, h), px)
            res = apply(img, op, level, negate, fill).tobytes()
            cases.append(" ".join([str(op), repr(level), str(int(negate)), str(h), str(w), str(fill)] +
                                  [str(b) for b in px] + [str(b) for b in res]))
    lines.append(str(len(cases)))
    lines += cases
    with open(out, "w") as fh:
        fh.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
