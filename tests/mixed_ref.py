#!/usr/bin/python3
"""The reference of mixed-precision training (tests/check_mixed.sh, docs/PRECISION.md): PyTorch
float64 autograd of the MAE of tests/gen_reference.py whose linears (the patch embedding as one)
take bf16-rounded operands, r(v) = v.to(torch.bfloat16).to(torch.float64) (to nearest, ties to
even), forward and backward:

    y = r(x)·r(W)ᵀ + b,   dx = r(dy)·r(W),   dW = r(dy)ᵀ·r(x),   db = Σ dy

Everything else (LayerNorm, attention, softmax, GELU, the residual stream, the loss) is float64.

  mixed_ref.py make DIR CONFIG SEED   a model with random weights (gen_reference's normal_params
                                      for CONFIG, weights seed SEED), images and noise, into DIR
  mixed_ref.py check DIR              DIR/bf16.* (tests/mixed_grad.c) against the reference,
                                      DIR/f32.* against plain float64 autograd, with the bound
                                      derived below; exit 3 if outside
  mixed_ref.py make-cls DIR SEED      the same for the finetuner: a classifier file (global pooling,
  mixed_ref.py check-cls DIR          drop path 0.5 over 3 blocks: gen_classifier's clsdp with
                                      weights seed SEED), images, labels; checked against
                                      gen_classifier's forward and label-smoothing loss (float64)
                                      with the linears (the head and the patch embedding too)
                                      rounded as above, DIR/bf16.* from tests/mixed_cls_grad.c
"""
import json
import math
import os
import struct
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gen_reference as G   # noqa: E402  (the float64 MAE; its linear is replaced below)

torch.set_default_dtype(torch.float64)


def r(v):
    return v.to(torch.bfloat16).to(torch.float64)


# Which operands are rounded: the defined semantics rounds all five; the check also computes the
# semantics with one of them left unrounded (and with none) to show which one libmae computes.
ROUND_ALL = dict(fwd_x=True, fwd_w=True, bwd_dy=True, bwd_w=True, bwd_x=True)
ROUND = dict(ROUND_ALL)


def q(v, on):
    return r(v) if on else v


class RoundedLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, w):
        ctx.save_for_backward(x, w)
        return q(x, ROUND["fwd_x"]) @ q(w, ROUND["fwd_w"]).t()

    @staticmethod
    def backward(ctx, dy):
        x, w = ctx.saved_tensors
        dyr = q(dy, ROUND["bwd_dy"])
        dx = dyr @ q(w, ROUND["bwd_w"])
        xr = q(x, ROUND["bwd_x"])
        dw = dyr.reshape(-1, dyr.shape[-1]).t() @ xr.reshape(-1, xr.shape[-1])
        return dx, dw


def rounded_linear(x, w, b):
    y = RoundedLinear.apply(x, w)
    return y if b is None else y + b


def patch_rows(imgs, p):
    """[B,C,H,W] -> [B,L,C*p*p] in the conv weight's (channel, row, col) order."""
    B, C, H, W = imgs.shape
    x = imgs.reshape(B, C, H // p, p, W // p, p).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(B, (H // p) * (W // p), C * p * p)


def forward(P, cfg, imgs, noise, rounded):
    """G.forward with the patch embedding as a linear on the patch rows, and every linear rounded
    when `rounded`; returns the loss."""
    G.linear = rounded_linear if rounded else LINEAR
    p, eps = cfg["patch_size"], cfg["layer_norm_eps"]
    D, Dd = cfg["embed_dim"], cfg["decoder_embed_dim"]
    keep = G.keep_count(cfg)
    B = imgs.shape[0]
    L = G.run_grid(cfg)[2]
    w = P["patch_embed.proj.weight"]
    tokens = G.linear(patch_rows(imgs, p), w.reshape(w.shape[0], -1), P["patch_embed.proj.bias"])
    tokens = tokens + P["pos_embed"][:, 1:, :]
    ids_shuffle, ids_restore, mask = G.masking(noise, keep)
    x = torch.gather(tokens, 1, ids_shuffle[:, :keep].unsqueeze(-1).expand(B, keep, D))
    cls = (P["cls_token"] + P["pos_embed"][:, :1, :]).expand(B, 1, D)
    x = torch.cat([cls, x], dim=1)
    for i in range(cfg["depth"]):
        x = G.block(x, P, f"blocks.{i}.", cfg["num_heads"], eps)
    latent = G.layernorm(x, P["norm.weight"], P["norm.bias"], eps)
    x = G.linear(latent, P["decoder_embed.weight"], P["decoder_embed.bias"])
    x_ = torch.cat([x[:, 1:, :], P["mask_token"].expand(B, L - keep, Dd)], dim=1)
    x_ = torch.gather(x_, 1, ids_restore.unsqueeze(-1).expand(B, L, Dd))
    x = torch.cat([x[:, :1, :], x_], dim=1) + P["decoder_pos_embed"]
    for i in range(cfg["decoder_depth"]):
        x = G.block(x, P, f"decoder_blocks.{i}.", cfg["decoder_num_heads"], eps)
    x = G.layernorm(x, P["decoder_norm.weight"], P["decoder_norm.bias"], eps)
    pred = G.linear(x, P["decoder_pred.weight"], P["decoder_pred.bias"])[:, 1:, :]
    target = G.patchify(imgs, p)
    if cfg["norm_pix_loss"]:
        target = (target - target.mean(-1, keepdim=True)) / (target.var(-1, unbiased=True, keepdim=True) + 1e-6) ** 0.5
    return ((((pred - target) ** 2).mean(-1)) * mask).sum() / mask.sum()


LINEAR = G.linear


def make(d, name, seed):
    cfg = dict(next(c for c in G.CONFIGS if c["name"] == name), seed=seed)
    P = G.normal_params(cfg)
    G.write_safetensors(os.path.join(d, "model.safetensors"), [(n, G.f32(P[n])) for n, _ in G.param_shapes(cfg)],
                        G.config_meta(cfg))
    gen = torch.Generator().manual_seed(seed)
    B, C, S = cfg["batch"], cfg["in_chans"], cfg["img_size"]
    imgs = (torch.rand(B, C, S, S, generator=gen, dtype=torch.float32) * 4 - 2)
    noise = torch.rand(B, G.dims(cfg)[1], generator=gen, dtype=torch.float32)
    imgs.numpy().astype("<f4").tofile(os.path.join(d, "imgs.bin"))
    noise.numpy().astype("<f4").tofile(os.path.join(d, "noise.bin"))
    json.dump(dict(name=name, seed=seed, batch=B), open(os.path.join(d, "run.json"), "w"))


def read_grads(prefix):
    lines = open(prefix + ".txt").read().split("\n")
    loss = float(lines[0].split()[1])
    data = np.fromfile(prefix + ".bin", dtype="<f4").astype(np.float64)
    out, off = {}, 0
    for ln in lines[1:]:
        if ln:
            n, c = ln.split()
            out[n] = data[off:off + int(c)]
            off += int(c)
    assert off == data.size
    return loss, out


def grads(cfg, P0, imgs, noise, rounded, names):
    P = {n: t.clone().requires_grad_(n in names) for n, t in P0.items()}
    loss = forward(P, cfg, imgs, noise, rounded)
    loss.backward()
    return loss.item(), {n: P[n].grad.reshape(-1).numpy() for n in names}


def rel(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def check(d):
    run = json.load(open(os.path.join(d, "run.json")))
    cfg = dict(next(c for c in G.CONFIGS if c["name"] == run["name"]), seed=run["seed"])
    P0 = G.normal_params(cfg)
    # the C model holds the linear weights rounded to bf16 (mae_model_set_precision); the
    # reference rounds them in every product anyway, so P0 serves
    B, C, S = cfg["batch"], cfg["in_chans"], cfg["img_size"]
    imgs = torch.from_numpy(np.fromfile(os.path.join(d, "imgs.bin"), dtype="<f4").reshape(B, C, S, S)).to(torch.float64)
    noise = torch.from_numpy(np.fromfile(os.path.join(d, "noise.bin"), dtype="<f4").reshape(B, -1))
    l16, c16 = read_grads(os.path.join(d, "bf16"))
    l32, c32 = read_grads(os.path.join(d, "f32"))
    names = list(c16)
    assert names == list(c32)
    cat = lambda g: np.concatenate([g[n] for n in names])
    C16 = cat(c16)
    # the defined semantics, and the alternatives: each operand left unrounded, and none rounded
    refs = {}
    for key in ["all"] + list(ROUND_ALL) + ["none"]:
        ROUND.update({k: key == "all" or (key != "none" and k != key) for k in ROUND_ALL})
        refs[key] = grads(cfg, P0, imgs, noise, True, names)
    ROUND.update(ROUND_ALL)
    lr16, R = refs["all"][0], cat(refs["all"][1])
    e16 = rel(C16, R)
    e32 = rel(cat(c32), cat(grads(cfg, P0, imgs, noise, False, names)[1]))   # libmae's float32 path
    alt = {k: rel(C16, cat(v[1])) for k, v in refs.items() if k != "all"}
    nearest = min(alt, key=alt.get)
    worst = max(names, key=lambda n: rel(c16[n], refs["all"][1][n]))
    # The bound. libmae rounds values computed in float32, the reference the same values computed
    # in float64; they differ by the float32 path's own error, whose size over the whole gradient
    # is e32 (measured here on the same model and inputs). Where no value lies within that error
    # of a bf16 rounding boundary, both round every operand alike and the gradients differ by
    # float32 rounding alone, about e32. An element that does straddle a boundary rounds to
    # neighbouring bf16 values (a "flip"): with relative operand error ε it happens with
    # probability about 2ε/2^-8 and moves the element by at most 2^-7, which adds about
    # 2^-3·sqrt(ε) relative L2 (first order):  bound = e32 + 2^-3·sqrt(e32).
    # But a flip also moves every later value by about 2^-9, which makes later flips likely: the
    # rounded model is discontinuous, and some draws (about 4 in 10 here) differ by a cascade of
    # flips, up to the size of the rounding's own effect (the reference itself moves that much
    # when its parameters move by 1e-6). Such a draw says nothing either way (exit 3); the shell
    # script draws again until one is free of them. A missing or different rounding misses the
    # bound in every draw (the alternatives above: the nearest is 10x the bound or more).
    bound = e32 + 2 ** -3 * math.sqrt(e32)
    ok = e16 <= bound
    print(f"{run['name']} seed {run['seed']}: bf16 grads vs the rounded float64 reference rel L2 {e16:.3g}, "
          f"bound {bound:.3g} (worst tensor {worst} {rel(c16[worst], refs['all'][1][worst]):.3g}); "
          f"float32 path vs float64 {e32:.3g}; the alternatives: " +
          ", ".join(f"{k} {v:.3g}" for k, v in alt.items()) + f"; loss {l16:.9g} vs {lr16:.9g}" +
          ("" if ok else " -- outside: flips, or a wrong rounding"))
    return ok


# ---- the finetuner ------------------------------------------------------------------------------
import gen_classifier as GC   # noqa: E402  (the float64 classifier and its fine-tuning loss)

GC_F = GC.F


class RoundedF:
    """torch.nn.functional for gen_classifier with every linear rounded: F.linear, and the patch
    embedding's F.conv2d (stride = kernel) as the linear on the patch rows it is."""
    def __getattr__(self, name):
        return getattr(GC_F, name)

    @staticmethod
    def linear(x, w, b):
        return rounded_linear(x, w, b)

    @staticmethod
    def conv2d(imgs, w, b, stride):
        B, C, H, W = imgs.shape
        D, p = w.shape[0], stride
        y = rounded_linear(patch_rows(imgs, p), w.reshape(D, -1), b)     # [B, L, D]
        return y.transpose(1, 2).reshape(B, D, H // p, W // p)


def cls_config(seed):
    return dict(next(c for c in GC.CONFIGS if c["name"] == "clsdp"), seed=seed)


def make_cls(d, seed):
    c = cls_config(seed)
    P = GC.params(c)
    tensors = [(n, P[n].to(torch.float32).numpy()) for n, _ in GC.official_shapes(c)]
    meta = {"format": "pt", "img_size": c["img"], "patch_size": c["p"], "in_chans": c["C"],
            "embed_dim": c["D"], "depth": c["depth"], "num_heads": c["heads"],
            "mlp_ratio": repr(c["mlp"]), "layer_norm_eps": repr(c["eps"])}
    GC.write_safetensors(os.path.join(d, "classifier.safetensors"), tensors, meta)
    gen = torch.Generator().manual_seed(seed)
    imgs = torch.randn(c["B"], c["C"], c["img"], c["img"], generator=gen, dtype=torch.float32)
    labels = torch.randint(0, c["K"], (c["B"],), generator=gen, dtype=torch.int32)
    imgs.numpy().astype("<f4").tofile(os.path.join(d, "imgs.bin"))
    labels.numpy().astype("<i4").tofile(os.path.join(d, "labels.bin"))
    json.dump(dict(seed=seed, batch=c["B"], drop_path=c["drop_path"], mask_seed=seed % 1000),
              open(os.path.join(d, "run.json"), "w"))


def cls_grads(c, P0, imgs, labels, mask_seed, rounded, names):
    GC.F = RoundedF() if rounded else GC_F
    P = {n: t.clone().requires_grad_(n in names) for n, t in P0.items()}
    loss = GC.loss_fn(c, P, imgs, labels.long(), None, step=mask_seed)
    loss.backward()
    GC.F = GC_F
    return loss.item(), {n: P[n].grad.reshape(-1).numpy() for n in names}


def check_cls(d):
    np.seterr(divide="ignore", invalid="ignore")   # a tensor whose gradient is zero (the key bias's)
    run = json.load(open(os.path.join(d, "run.json")))
    c = cls_config(run["seed"])
    P0 = GC.params(c)
    B = c["B"]
    imgs = torch.from_numpy(np.fromfile(os.path.join(d, "imgs.bin"), dtype="<f4").reshape(B, c["C"], c["img"], c["img"]))
    imgs = imgs.to(torch.float64)
    labels = torch.from_numpy(np.fromfile(os.path.join(d, "labels.bin"), dtype="<i4"))
    l16, c16 = read_grads(os.path.join(d, "bf16"))
    l32, c32 = read_grads(os.path.join(d, "f32"))
    names = list(c16)
    assert names == list(c32)
    cat = lambda g: np.concatenate([g[n] for n in names])
    C16 = cat(c16)
    refs = {}
    for key in ["all"] + list(ROUND_ALL) + ["none"]:
        ROUND.update({k: key == "all" or (key != "none" and k != key) for k in ROUND_ALL})
        refs[key] = cls_grads(c, P0, imgs, labels, run["mask_seed"], True, names)
    ROUND.update(ROUND_ALL)
    lr16, R = refs["all"][0], cat(refs["all"][1])
    e16 = rel(C16, R)
    l64, g64 = cls_grads(c, P0, imgs, labels, run["mask_seed"], False, names)
    e32 = rel(cat(c32), cat(g64))
    alt = {k: rel(C16, cat(v[1])) for k, v in refs.items() if k != "all"}
    worst = max(names, key=lambda n: rel(c16[n], refs["all"][1][n]))
    bound = e32 + 2 ** -3 * math.sqrt(e32)    # as check()'s, for the same reasons
    ok = e16 <= bound
    print(f"finetuner seed {run['seed']}: bf16 grads vs the rounded float64 reference rel L2 {e16:.3g}, "
          f"bound {bound:.3g} (worst tensor {worst} {rel(c16[worst], refs['all'][1][worst]):.3g}); "
          f"float32 path vs float64 {e32:.3g}; bf16 reference vs float64 {rel(R, cat(g64)):.3g}; the alternatives: " +
          ", ".join(f"{k} {v:.3g}" for k, v in alt.items()) + f"; loss {l16:.9g} vs {lr16:.9g} (float32 {l32:.9g}, float64 {l64:.9g})" +
          ("" if ok else " -- outside: flips, or a wrong rounding"))
    return ok


if __name__ == "__main__":
    if sys.argv[1] == "make":
        make(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    elif sys.argv[1] == "make-cls":
        make_cls(sys.argv[2], int(sys.argv[3]))
    elif sys.argv[1] == "check-cls":
        sys.exit(0 if check_cls(sys.argv[2]) else 3)
    else:
        sys.exit(0 if check(sys.argv[2]) else 3)
