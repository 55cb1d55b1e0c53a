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
                                      derived below; exit 1 if outside
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


class RoundedLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, w):
        xr, wr = r(x), r(w)
        ctx.save_for_backward(xr, wr)
        return xr @ wr.t()

    @staticmethod
    def backward(ctx, dy):
        xr, wr = ctx.saved_tensors
        dyr = r(dy)
        dx = dyr @ wr
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
    # reference rounds them in every product anyway, so the same P0 serves both references
    B, C, S = cfg["batch"], cfg["in_chans"], cfg["img_size"]
    imgs = torch.from_numpy(np.fromfile(os.path.join(d, "imgs.bin"), dtype="<f4").reshape(B, C, S, S)).to(torch.float64)
    noise = torch.from_numpy(np.fromfile(os.path.join(d, "noise.bin"), dtype="<f4").reshape(B, -1))
    l16, c16 = read_grads(os.path.join(d, "bf16"))
    l32, c32 = read_grads(os.path.join(d, "f32"))
    names = list(c16)
    assert names == list(c32)
    P32 = dict(P0)
    lr16, r16 = grads(cfg, P0, imgs, noise, True, names)
    lr32, r32 = grads(cfg, P32, imgs, noise, False, names)
    cat = lambda g: np.concatenate([g[n] for n in names])
    e16 = rel(cat(c16), cat(r16))          # the test
    e32 = rel(cat(c32), cat(r32))          # libmae's float32 path: its own float32 error
    sep = rel(cat(r16), cat(r32))          # bf16 semantics against float64: what rounding does
    wrong = rel(cat(c32), cat(r16))        # the float32 path against the bf16 reference
    worst = max(names, key=lambda n: rel(c16[n], r16[n]))
    # The bound. libmae computes the rounded operands from float32 activations, the reference
    # from float64 ones; they differ by the float32 path's own error, whose size over the whole
    # gradient is e32 (measured here, on the same model and inputs). Where that difference
    # straddles a bf16 rounding boundary the two roundings pick neighbouring bf16 values: with
    # relative operand error ε, an element flips with probability about 2ε/ulp_rel (the share of
    # its interval within ε of a boundary; ulp_rel >= 2^-8), and a flip moves it by ulp_rel
    # <= 2^-7, so flips add a relative L2 error of at most sqrt(2ε 2^8) 2^-7 = 2^-3 sqrt(ε) per
    # operand, which the backward passes on like the float32 error. Hence, with ε = e32:
    #     e16 <= e32 + 2^-3 sqrt(e32)
    # (the float32 part, plus the flips). It is far below `sep`, the size of the bf16 rounding
    # itself, so a path that skipped a rounding (or rounded with another rule) fails.
    bound = e32 + 2 ** -3 * math.sqrt(e32)
    print(f"{run['name']} seed {run['seed']}: bf16 grads vs rounded float64 reference rel L2 {e16:.3g} "
          f"(worst tensor {worst} {rel(c16[worst], r16[worst]):.3g}), bound {bound:.3g}; "
          f"float32 path vs float64 {e32:.3g}; bf16 reference vs float64 {sep:.3g}; "
          f"float32 path vs bf16 reference {wrong:.3g}; loss {l16:.9g} vs {lr16:.9g}")
    ok = e16 <= bound and wrong > bound and abs(l16 - lr16) <= bound * abs(lr16)
    if not ok:
        print("check_mixed: FAILED")
    return ok


if __name__ == "__main__":
    if sys.argv[1] == "make":
        make(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    else:
        sys.exit(0 if check(sys.argv[2]) else 1)
