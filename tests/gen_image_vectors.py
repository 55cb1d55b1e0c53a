#!/usr/bin/python3
"""Development-time generator of the image module's test vectors (not run by CI).

Writes, into OUTDIR, C arrays that were pasted into the tests:
  png_vectors.h     tests/test_png.c: PNG files from an independent Python PNG writer on zlib
                    (every filter type, Adam7, depths 1..16, palettes with tRNS, colour keys,
                    stored/fixed/dynamic zlib blocks, split IDAT), each checked against Pillow
  idx_vectors.h     tests/test_idx.c: an IDX file compressed by Debian's gzip -9, and a two-member
                    gzip file with every optional header field, made with Python's zlib
  resize_vectors.h  tests/test_image.c: Pillow's resize of float ("F") images
and the fuzz seed corpora into tests/fuzz_corpus/{png,idx}/. It also prints the Fashion-MNIST
facts test_idx.c checks (computed with Python's gzip module).

    /usr/bin/python3 tests/gen_image_vectors.py OUTDIR     (Debian's python3-pil, python3-numpy, gzip)
"""
import gzip, io, os, random, struct, subprocess, sys, zlib
import numpy as np
from PIL import Image

OUT = sys.argv[1]
HERE = os.path.dirname(os.path.abspath(__file__))
os.makedirs(OUT, exist_ok=True)


def carray(name, data):
    s = "static const uint8_t %s[%d] = {\n" % (name, len(data))
    for i in range(0, len(data), 16):
        s += "    " + ", ".join("0x%02x" % b for b in data[i:i + 16]) + ",\n"
    return s + "};\n"


def farray(name, a):
    a = a.ravel()
    s = "static const float %s[%d] = {\n" % (name, len(a))
    for i in range(0, len(a), 6):
        vals = []
        for v in a[i:i + 6]:
            t = "%.9g" % v
            vals.append(t + ("f" if ("." in t or "e" in t) else ".0f"))
        s += "    " + ", ".join(vals) + ",\n"
    return s + "};\n"


# ---- an independent PNG writer -------------------------------------------------------------

def chunk(t, d):
    return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xffffffff)


def paeth(a, b, c):
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    return a if pa <= pb and pa <= pc else (b if pb <= pc else c)


def filt(ft, row, prior, bpp):
    out = bytearray()
    for i, x in enumerate(row):
        a = row[i - bpp] if i >= bpp else 0
        b = prior[i] if prior else 0
        c = prior[i - bpp] if (prior and i >= bpp) else 0
        pred = [0, a, b, (a + b) >> 1, paeth(a, b, c)][ft]
        out.append((x - pred) & 255)
    return out


def pack_row(samples, depth):
    if depth == 8:
        return bytearray(samples)
    if depth == 16:
        return bytearray(b"".join(struct.pack(">H", s) for s in samples))
    out, acc, n = bytearray(), 0, 0
    for s in samples:
        acc = (acc << depth) | s
        n += depth
        if n == 8:
            out.append(acc)
            acc, n = 0, 0
    if n:
        out.append(acc << (8 - n))
    return out


ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]


def png(w, h, depth, color, pix, interlace=0, filters=None, plte=None, trns=None, extra=b"",
        zlevel=9, strategy=zlib.Z_DEFAULT_STRATEGY, idat_split=1):
    """pix[y][x] = tuple of samples; filters cycle over the rows of all passes"""
    ns = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[color]
    bpp = max(1, ns * depth // 8)
    raw, k = bytearray(), 0
    for (x0, y0, dx, dy) in (ADAM7 if interlace else [(0, 0, 1, 1)]):
        xs, ys = list(range(x0, w, dx)), list(range(y0, h, dy))
        if not xs or not ys:
            continue
        prior = None
        for y in ys:
            row = pack_row([s for x in xs for s in pix[y][x]], depth)
            ft = filters[k % len(filters)] if filters else 0
            k += 1
            raw.append(ft)
            raw += filt(ft, row, prior, bpp)
            prior = row
    co = zlib.compressobj(zlevel, zlib.DEFLATED, 15, 9, strategy)
    z = co.compress(bytes(raw)) + co.flush()
    out = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, color, 0, 0, interlace))
    if plte:
        out += chunk(b"PLTE", bytes(b for c in plte for b in c))
    if trns is not None:
        out += chunk(b"tRNS", trns)
    out += extra
    step = (len(z) + idat_split - 1) // idat_split
    for i in range(0, len(z), step):
        out += chunk(b"IDAT", z[i:i + step])
    return out + chunk(b"IEND", b"")


def to8(v, depth):
    return {1: v * 255, 2: v * 85, 4: v * 17, 8: v, 16: (v * 255 + 32767) // 65535}[depth]


def v(x, y, c, depth):   # the sample formula test_png.c shares (gen_v)
    return (x * 53 + y * 29 + c * 101 + x * y * 7 + 3) & ((1 << depth) - 1)


def grid(w, h, ns, depth):
    return [[tuple(v(x, y, c, depth) for c in range(ns)) for x in range(w)] for y in range(h)]


def png_vectors():
    arrays, files = [], {}
    g = grid(5, 5, 3, 8)
    data = png(5, 5, 8, 2, g, filters=[0, 1, 2, 3, 4], idat_split=3)
    assert list(Image.open(io.BytesIO(data)).tobytes()) == [s for r in g for p in r for s in p]
    arrays.append(carray("png_rgb_filters", data))
    files["rgb_filters"] = data
    specs = [  # name, w, h, depth, colour type, interlace, zlib options
        ("gray16", 3, 4, 16, 0, 0, {}),
        ("gray1", 10, 3, 1, 0, 0, {}),
        ("gray2", 5, 3, 2, 0, 0, {}),
        ("gray4", 5, 3, 4, 0, 0, {"zlevel": 0}),
        ("ga8", 4, 3, 8, 4, 0, {"strategy": zlib.Z_FIXED}),
        ("rgba8", 4, 3, 8, 6, 0, {}),
        ("rgba16", 3, 2, 16, 6, 0, {}),
        ("rgb16", 2, 2, 16, 2, 0, {}),
        ("rgb_adam7", 9, 7, 8, 2, 1, {}),
        ("gray1_adam7", 11, 5, 1, 0, 1, {}),
        ("ga16_adam7", 3, 9, 16, 4, 1, {}),
    ]
    for name, w, h, depth, color, il, zo in specs:
        ns = {0: 1, 2: 3, 4: 2, 6: 4}[color]
        g = grid(w, h, ns, depth)
        data = png(w, h, depth, color, g, interlace=il, filters=[4, 3, 2, 1, 0], **zo)
        im = Image.open(io.BytesIO(data))
        im.load()
        if depth == 8 and color != 0:
            assert list(im.tobytes()) == [s for r in g for p in r for s in p], name
        elif color == 0 and depth < 16:
            assert list(im.convert("L").tobytes()) == [to8(p[0], depth) for r in g for p in r], name
        arrays.append(carray("png_" + name, data))
        files[name] = data
    expected = []
    plte = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]
    idx = [[0, 1], [2, 1]]
    data = png(2, 2, 8, 3, [[(i,) for i in r] for r in idx], plte=plte, trns=bytes([128, 0]))
    exp = [c for r in idx for i in r for c in (plte[i] + ((128, 0, 255)[i],))]
    assert list(Image.open(io.BytesIO(data)).convert("RGBA").tobytes()) == exp
    expected.append(("pal2x2", data, exp))
    plte = [((i * 37) & 255, (i * 91) & 255, (i * 13) & 255) for i in range(11)]
    pix = [[((x * 3 + y * 5) % 11,) for x in range(7)] for y in range(3)]
    data = png(7, 3, 4, 3, pix, plte=plte, trns=bytes([0, 50, 100]), filters=[1, 4, 2])
    exp = [c for r in pix for (i,) in r for c in plte[i] + ((0, 50, 100)[i] if i < 3 else 255,)]
    assert list(Image.open(io.BytesIO(data)).convert("RGBA").tobytes()) == exp
    expected.append(("pal4_trns", data, exp))
    pix = [[(x * 40,) for x in range(4)]]
    data = png(4, 1, 8, 0, pix, trns=struct.pack(">H", 80),
               extra=chunk(b"tEXt", b"Comment\0ancillary chunks are skipped"))
    expected.append(("gray_key", data, [c for (q,) in pix[0] for c in (q, 0 if q == 80 else 255)]))
    pix = [[(10, 20, 30), (10, 20, 31), (10, 20, 30)]]
    data = png(3, 1, 8, 2, pix, trns=struct.pack(">HHH", 10, 20, 30))
    expected.append(("rgb_key", data, [c for p in pix[0] for c in p + ((0,) if p == (10, 20, 30) else (255,))]))
    for name, data, exp in expected:
        arrays.append(carray("png_" + name, data))
        arrays.append(carray("png_" + name + "_expect", bytes(exp)))
        files[name] = data
    open(os.path.join(OUT, "png_vectors.h"), "w").write("".join(arrays))
    # seeds: the same files, and a larger one with dynamic Huffman codes
    random.seed(1)
    g = [[tuple((x * 5 + y * 3 + c * 40 + random.randrange(4)) & 255 for c in range(3)) for x in range(40)]
         for y in range(30)]
    files["rgb_dynamic"] = png(40, 30, 8, 2, g, filters=[4, 1, 2, 3, 0])
    d = os.path.join(HERE, "fuzz_corpus", "png")
    os.makedirs(d, exist_ok=True)
    for name, data in files.items():
        open(os.path.join(d, name + ".png"), "wb").write(data)


# ---- IDX and gzip --------------------------------------------------------------------------

def gzip_member(data, flags):
    h = bytes([0x1f, 0x8b, 8, flags]) + struct.pack("<I", 1234567) + bytes([2, 3])
    if flags & 4:
        h += struct.pack("<H", 5) + b"ab\0cd"
    if flags & 8:
        h += b"name.idx\0"
    if flags & 16:
        h += b"a comment\0"
    if flags & 2:
        h += struct.pack("<H", zlib.crc32(h) & 0xffff)
    co = zlib.compressobj(6, zlib.DEFLATED, -15)
    return h + co.compress(data) + co.flush() + struct.pack("<II", zlib.crc32(data) & 0xffffffff,
                                                           len(data) & 0xffffffff)


def idx_vectors():
    imgs = bytes(((n * 50 + y * 7 + x * 3) & 255) for n in range(3) for y in range(4) for x in range(5))
    idx = struct.pack(">BBBBIII", 0, 0, 8, 3, 3, 4, 5) + imgs
    path = os.path.join(OUT, "small-images-idx3-ubyte")
    open(path, "wb").write(idx)
    subprocess.run(["gzip", "-9", "-f", "-k", path], check=True)
    gz = open(path + ".gz", "rb").read()
    assert gz[3] & 8   # FNAME, set by gzip
    multi = gzip_member(idx[:30], 4 | 8 | 16 | 2) + gzip_member(idx[30:], 0)
    assert gzip.decompress(multi) == idx
    open(os.path.join(OUT, "idx_vectors.h"), "w").write(carray("idx_debian_gzip", gz) +
                                                          carray("idx_multi_member", multi))
    d = os.path.join(HERE, "fuzz_corpus", "idx")
    os.makedirs(d, exist_ok=True)
    labels = struct.pack(">BBBBI", 0, 0, 8, 1, 3) + bytes([9, 0, 4])
    co = zlib.compressobj(9, zlib.DEFLATED, 31, 9, zlib.Z_FIXED)
    seeds = {"small-images-idx3-ubyte": idx, "small-images-idx3-ubyte.gz": gz, "multi_member.gz": multi,
             "labels-idx1-ubyte": labels, "labels-fixed.gz": co.compress(labels) + co.flush(),
             "empty_member_first.gz": gzip.compress(b"", mtime=0) + gz}
    for name, data in seeds.items():
        open(os.path.join(d, name), "wb").write(data)
    fm = "/usr/share/datasets/fashion-mnist/"
    for f in ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
              "t10k-labels-idx1-ubyte.gz"]:
        if not os.path.exists(fm + f):
            continue
        raw = gzip.open(fm + f).read()
        nd = raw[3]
        data = raw[4 + 4 * nd:]
        print(f, struct.unpack(">" + "I" * nd, raw[4:4 + 4 * nd]), "sum", sum(data),
              "crc %08x" % (zlib.crc32(data) & 0xffffffff),
              "histogram" if nd == 1 else "", [data.count(i) for i in range(10)] if nd == 1 else "")


# ---- resampling ----------------------------------------------------------------------------

def resize_vectors():
    def src(w, h):   # the source test_image.c shares (src_value)
        return np.array([[60 + (x * 37 + y * 53) % 131 for x in range(w)] for y in range(h)], dtype=np.float32)
    filters = {"nearest": Image.NEAREST, "bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC}
    cases = [  # name, w, h, ow, oh, filter, centre crop
        ("rs_bicubic_up", 7, 5, 11, 9, "bicubic", 0),
        ("rs_bicubic_down", 13, 11, 5, 4, "bicubic", 0),
        ("rs_bilinear_down", 13, 11, 4, 6, "bilinear", 0),
        ("rs_bilinear_up", 5, 3, 12, 7, "bilinear", 0),
        ("rs_nearest_down", 13, 11, 5, 4, "nearest", 0),
        ("rs_bicubic_crop", 16, 10, 6, 6, "bicubic", 1),
        ("rs_bilinear_crop", 9, 20, 5, 7, "bilinear", 1),
    ]
    out = []
    for name, w, h, ow, oh, f, crop in cases:
        box = (0, 0, w, h)
        if crop:
            sc = min(w / ow, h / oh)
            x0, y0 = (w - ow * sc) / 2, (h - oh * sc) / 2
            box = (x0, y0, x0 + ow * sc, y0 + oh * sc)
        r = np.asarray(Image.fromarray(src(w, h), "F").resize((ow, oh), filters[f], box=box), dtype=np.float32)
        assert r.min() > 1 and r.max() < 254   # no clamping in play
        out.append(farray(name, r))
    # the hand computation in test_image.c: 2x2 blocks 10 50 / 90 130 halved, bilinear
    blk = np.array([[10, 10, 50, 50], [10, 10, 50, 50], [90, 90, 130, 130], [90, 90, 130, 130]], np.float32)
    r = np.asarray(Image.fromarray(blk, "F").resize((2, 2), Image.BILINEAR))
    assert np.allclose(r.ravel(), [47.5 / 1.75, 97.5 / 1.75, 147.5 / 1.75, 197.5 / 1.75], atol=1e-4)
    open(os.path.join(OUT, "resize_vectors.h"), "w").write("".join(out))


png_vectors()
idx_vectors()
resize_vectors()
