#!/usr/bin/python3
"""Golden reference data for libmae, computed in float64 with PyTorch from the MAE definitions
(He et al. 2021, arXiv:2111.06377; the semantics of models_mae.py in github.com/facebookresearch/mae:
patchify, per-sample masking by argsort of uniform noise, pre-norm ViT blocks with exact GELU,
decoder with mask tokens and unshuffle, per-patch MSE on the removed patches; docs/TESTING.md).
Nothing here imports MAE code: every step is written out below.

Writes into tests/data/ (see docs/TESTING.md for what each file holds):
  <name>.model.safetensors   the model (official state_dict names, F32, config in __metadata__)
  <name>.io.safetensors      inputs and expected outputs of one forward pass
  <name>.grad.safetensors    gradients and 3 AdamW steps (configs tiny, odd, gray)

Run with Debian's python3-torch:  /usr/bin/python3 tests/gen_reference.py [config names]
CI never runs this; the generated files are committed.
"""
import json
import math
import os
import struct
import sys

import numpy as np
import torch

torch.set_default_dtype(torch.float64)
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")

# ---- configurations ---------------------------------------------------------------------------
# pos: "sincos" = the fixed official tables (frozen, no gradient), "learned" = random tables that
# the trainer updates. weights: "file" = normal random parameters stored in <name>.model, or
# "torch_rand" = regenerated on both sides from torch.manual_seed(WEIGHT_SEED) (see rand_params).
BASE = dict(in_chans=3, mlp_ratio=4.0, norm_pix_loss=False, mask_ratio=0.75, layer_norm_eps=1e-6,
            pos="sincos", weights="file", grads=False, ties=False, cls_std=0.2, qkv_bias=True,
            decoder_mlp_hidden=0, hf=False)
CONFIGS = [
    dict(BASE, name="tiny", seed=101, img_size=16, patch_size=4, embed_dim=32, depth=2, num_heads=4,
         decoder_embed_dim=16, decoder_depth=1, decoder_num_heads=2, batch=2, grads=True),
    dict(BASE, name="odd", seed=102, img_size=15, patch_size=5, embed_dim=36, depth=2, num_heads=3,
         decoder_embed_dim=20, decoder_depth=2, decoder_num_heads=5, mlp_ratio=2.5, norm_pix_loss=True,
         mask_ratio=0.6, batch=3, pos="learned", grads=True),
    dict(BASE, name="gray", seed=103, img_size=28, patch_size=7, in_chans=1, embed_dim=48, depth=1,
         num_heads=6, decoder_embed_dim=24, decoder_depth=1, decoder_num_heads=4, norm_pix_loss=True,
         layer_norm_eps=1e-12, batch=2, grads=True, cls_std=0.002),
    dict(BASE, name="ratio0", seed=104, img_size=16, patch_size=4, embed_dim=32, depth=2, num_heads=4,
         decoder_embed_dim=16, decoder_depth=1, decoder_num_heads=2, mask_ratio=0.0, batch=2),
    # gray: a cls token of tiny variance (std 0.002), so that the first LayerNorm of the cls row
    # depends on the eps: 1e-6 instead of 1e-12 changes pred by far more than the tolerance.
    # ViT-B/16 widths at depth 1; weights too big to commit, regenerated from torch's RNG.
    dict(BASE, name="vitb1", seed=105, img_size=32, patch_size=16, embed_dim=768, depth=1, num_heads=12,
         decoder_embed_dim=512, decoder_depth=1, decoder_num_heads=16, norm_pix_loss=True, batch=1,
         pos="learned", weights="torch_rand"),
    # Mask ratio 0.9 (keep = int(25 * 0.1) = 2), learned tables, and noise with many exact ties so
    # that only a stable argsort reproduces ids_shuffle.
    dict(BASE, name="ties", seed=106, img_size=20, patch_size=4, embed_dim=24, depth=1, num_heads=2,
         decoder_embed_dim=16, decoder_depth=1, decoder_num_heads=4, mask_ratio=0.9, batch=2,
         pos="learned", ties=True),
    # Weights made for 32x32 (a 4x4 grid of 8x8 patches) that run at 24x40 (a 3x5 grid): the C side
    # loads the 32x32 file and calls mae_model_resize. rect_sc: fixed sin-cos tables, regenerated
    # for the 3x5 grid; rect_lp: learned tables (encoder and decoder) resampled as Hugging Face's
    # interpolate_pos_encoding does (see resize_table).
    dict(BASE, name="rect_sc", seed=107, img_size=32, patch_size=8, embed_dim=16, depth=1, num_heads=2,
         decoder_embed_dim=8, decoder_depth=1, decoder_num_heads=2, mlp_ratio=2.0, batch=1,
         run=(24, 40)),
    dict(BASE, name="rect_lp", seed=108, img_size=32, patch_size=8, in_chans=1, embed_dim=16, depth=1,
         num_heads=2, decoder_embed_dim=16, decoder_depth=2, decoder_num_heads=4, mlp_ratio=2.0,
         norm_pix_loss=True, mask_ratio=0.5, batch=2, pos="learned", run=(24, 40)),
    # A Hugging Face directory (config.json + transformers 5 names, written by write_hf_dir): 4
    # heads on a 128-wide encoder (the D/64 guess would run 2), 4 on the 64-wide decoder (guess:
    # 1), a decoder MLP width of its own, no q/k/v bias, norm_pix_loss, mask ratio 0.5, eps 1e-12.
    dict(BASE, name="hf4", seed=109, img_size=16, patch_size=4, embed_dim=128, depth=1, num_heads=4,
         decoder_embed_dim=64, decoder_depth=1, decoder_num_heads=4, decoder_mlp_hidden=96, mlp_ratio=2.0,
         qkv_bias=False, norm_pix_loss=True, mask_ratio=0.5, layer_norm_eps=1e-12, batch=2, hf=True),
]
WEIGHT_SEED = 1234             # torch.manual_seed for "torch_rand" weights
MASK_SEEDS = [2, 77, 4294967299]   # the last one checks that only seed & 0xffffffff counts

# AdamW recipe of the grad files (official pretraining: main_pretrain.py + util/lr_sched.py).
ADAM = dict(beta1=0.9, beta2=0.95, eps=1e-8, weight_decay=0.05, peak_lr=1e-3, min_lr=1e-5,
            warmup_epochs=1, epochs=2, steps_per_epoch=2, steps=3)


# ---- safetensors writer -----------------------------------------------------------------------
def write_safetensors(path, tensors, meta):
    """tensors: list of (name, numpy array); float arrays are stored F32, int arrays I64."""
    header, blobs, off = {"__metadata__": {k: str(v) for k, v in meta.items()}}, [], 0
    for k, v in header["__metadata__"].items():   # the C reader keeps keys < 64, values < 256 bytes
        assert len(k) < 64 and len(v) < 200, (k, v)
    for name, arr in tensors:
        if arr.dtype.kind in "iu":
            data, dtype = np.ascontiguousarray(arr, dtype="<i8").tobytes(), "I64"
        else:
            data, dtype = np.ascontiguousarray(arr, dtype="<f4").tobytes(), "F32"
        header[name] = {"dtype": dtype, "shape": list(arr.shape), "data_offsets": [off, off + len(data)]}
        blobs.append(data)
        off += len(data)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)   # pad the header so the data section is 8-byte aligned
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def f32(t):
    """float64 tensor -> numpy float32 (round to nearest)."""
    return t.detach().to(torch.float32).numpy()


# ---- configuration helpers --------------------------------------------------------------------
def dims(cfg):
    """Grid side, patch count and patch size of the size the weights were made for."""
    g = cfg["img_size"] // cfg["patch_size"]
    L = g * g
    return g, L, cfg["patch_size"] ** 2 * cfg["in_chans"]


def run_size(cfg):
    """(height, width) of the images the forward pass runs on: img_size unless the config says."""
    return cfg.get("run", (cfg["img_size"], cfg["img_size"]))


def run_grid(cfg):
    """(gh, gw, L) of the run size's patch grid."""
    H, W = run_size(cfg)
    gh, gw = H // cfg["patch_size"], W // cfg["patch_size"]
    return gh, gw, gh * gw


def keep_count(cfg):
    L = run_grid(cfg)[2]
    keep = int(L * (1 - cfg["mask_ratio"]))   # the official rule, in float64
    # The C config holds the ratio as float32; make sure that gives the same count.
    keep32 = int(L * (1 - float(np.float32(cfg["mask_ratio"]))))
    assert keep == keep32, (cfg["name"], keep, keep32)
    return keep


def config_meta(cfg):
    b = lambda v: "true" if v else "false"
    return {
        "img_size": cfg["img_size"], "patch_size": cfg["patch_size"], "in_chans": cfg["in_chans"],
        "embed_dim": cfg["embed_dim"], "depth": cfg["depth"], "num_heads": cfg["num_heads"],
        "decoder_embed_dim": cfg["decoder_embed_dim"], "decoder_depth": cfg["decoder_depth"],
        "decoder_num_heads": cfg["decoder_num_heads"], "mlp_ratio": repr(cfg["mlp_ratio"]),
        "norm_pix_loss": b(cfg["norm_pix_loss"]), "mask_ratio": repr(cfg["mask_ratio"]),
        "layer_norm_eps": repr(cfg["layer_norm_eps"]), "learned_pos": b(cfg["pos"] == "learned"),
    }


def param_shapes(cfg):
    """(name, shape) in the official state_dict order."""
    D, Dd, C, p = cfg["embed_dim"], cfg["decoder_embed_dim"], cfg["in_chans"], cfg["patch_size"]
    L, P = dims(cfg)[1], dims(cfg)[2]
    hid, dhid = int(D * cfg["mlp_ratio"]), cfg["decoder_mlp_hidden"] or int(Dd * cfg["mlp_ratio"])

    def block(prefix, i, c, h):
        s = f"{prefix}.{i}."
        bias = [(s + "attn.qkv.bias", (3 * c,))] if cfg["qkv_bias"] else []   # qkv_bias=False: none
        return [(s + "norm1.weight", (c,)), (s + "norm1.bias", (c,)),
                (s + "attn.qkv.weight", (3 * c, c))] + bias + [
                (s + "attn.proj.weight", (c, c)), (s + "attn.proj.bias", (c,)),
                (s + "norm2.weight", (c,)), (s + "norm2.bias", (c,)),
                (s + "mlp.fc1.weight", (h, c)), (s + "mlp.fc1.bias", (h,)),
                (s + "mlp.fc2.weight", (c, h)), (s + "mlp.fc2.bias", (c,))]

    out = [("cls_token", (1, 1, D)), ("pos_embed", (1, L + 1, D)), ("mask_token", (1, 1, Dd)),
           ("decoder_pos_embed", (1, L + 1, Dd)), ("patch_embed.proj.weight", (D, C, p, p)),
           ("patch_embed.proj.bias", (D,))]
    for i in range(cfg["depth"]):
        out += block("blocks", i, D, hid)
    out += [("norm.weight", (D,)), ("norm.bias", (D,)), ("decoder_embed.weight", (Dd, D)),
            ("decoder_embed.bias", (Dd,))]
    for i in range(cfg["decoder_depth"]):
        out += block("decoder_blocks", i, Dd, dhid)
    out += [("decoder_norm.weight", (Dd,)), ("decoder_norm.bias", (Dd,)),
            ("decoder_pred.weight", (P, Dd)), ("decoder_pred.bias", (P,))]
    return out


def is_pos(name):
    return name in ("pos_embed", "decoder_pos_embed")


def is_norm_weight(name, shape):
    return len(shape) == 1 and name.endswith(".weight")


# ---- parameters -------------------------------------------------------------------------------
def sincos_table(dim, gh, gw):
    """Official 2-D sin-cos table (util/pos_embed.py) of a gh x gw grid: float64, then rounded to
    float32. First half encodes the column, second the row; each half is [sin | cos]; cls row zero."""
    q = dim // 4
    omega = 1.0 / 10000 ** (np.arange(q, dtype=np.float64) / q)
    rows = [np.zeros(dim)]
    for i in range(gh):
        for j in range(gw):
            rows.append(np.concatenate([np.sin(j * omega), np.cos(j * omega),
                                        np.sin(i * omega), np.cos(i * omega)]))
    return np.stack(rows).astype(np.float32)


def normal_params(cfg):
    """Random parameters (not the official init) chosen so that every term of the model matters:
    linears ~ N(0, 1/fan_in), biases ~ N(0, 0.1), LayerNorm weights 1 + N(0, 0.1), LayerNorm shifts
    N(0, 0.1), cls token N(0, cls_std), mask token N(0, 0.2), learned position tables N(0, 0.2).
    Rounded to float32."""
    gen = torch.Generator().manual_seed(cfg["seed"])
    g = dims(cfg)[0]
    params = {}
    for name, shape in param_shapes(cfg):
        if is_pos(name) and cfg["pos"] == "sincos":
            dim = shape[2]
            t = torch.from_numpy(sincos_table(dim, g, g)).reshape(shape)
        else:
            z = torch.randn(shape, generator=gen, dtype=torch.float64)
            if is_norm_weight(name, shape):
                t = 1.0 + 0.1 * z
            elif name.endswith(".bias"):
                t = 0.1 * z
            elif name == "cls_token":
                t = cfg["cls_std"] * z
            elif name == "mask_token" or is_pos(name):
                t = 0.2 * z
            else:
                fan_in = int(np.prod(shape[1:]))
                t = z / math.sqrt(fan_in)
            t = t.to(torch.float32)
        params[name] = t.to(torch.float64)
    return params


def rand_scale(name, shape):
    """Scale of the torch_rand scheme; the C test (tests/test_golden.c) uses the same rule."""
    if name in ("cls_token", "mask_token") or is_pos(name):
        return "uniform", 0.02
    if name.endswith(".bias"):
        return "uniform", 0.02
    if len(shape) == 1:
        return "norm", 0.1          # LayerNorm weights: 1 + 0.1 * (2u - 1)
    return "uniform", 0.05          # linear and conv weights


def rand_params(cfg):
    """torch.manual_seed(WEIGHT_SEED); then for every tensor in state_dict order
    u = torch.rand(numel) (float32) and, in float32 arithmetic, value = (2u - 1) * scale, or for
    LayerNorm weights value = 1 + scale * (2u - 1)."""
    torch.manual_seed(WEIGHT_SEED)
    params = {}
    for name, shape in param_shapes(cfg):
        u = torch.rand(int(np.prod(shape)), dtype=torch.float32)
        x = u * torch.tensor(2.0, dtype=torch.float32) - torch.tensor(1.0, dtype=torch.float32)  # exact
        kind, s = rand_scale(name, shape)
        s32 = torch.tensor(s, dtype=torch.float32)
        if kind == "norm":
            v = torch.tensor(1.0, dtype=torch.float32) + x * s32
        else:
            v = x * s32
        assert v.dtype == torch.float32
        params[name] = v.reshape(shape).to(torch.float64)
    return params


def resize_table(cfg, table):
    """A [1, 1+g*g, dim] position table for the run grid. Fixed tables: the sin-cos table of the
    new grid (what the official code would build at that size). Learned tables: Hugging Face's
    ViTMAEEmbeddings.interpolate_pos_encoding: the cls row untouched, the grid rows reshaped to
    [1, dim, g, g] and resampled with F.interpolate(size=(gh, gw), mode="bicubic",
    align_corners=False). Rounded to float32, as a float32 model holds it."""
    g = dims(cfg)[0]
    gh, gw, L = run_grid(cfg)
    dim = table.shape[2]
    if (gh, gw) == (g, g):
        return table
    if cfg["pos"] == "sincos":
        out = torch.from_numpy(sincos_table(dim, gh, gw)).reshape(1, 1 + L, dim)
    else:
        cls, grid = table[:, :1, :], table[:, 1:, :]
        grid = grid.reshape(1, g, g, dim).permute(0, 3, 1, 2)
        grid = torch.nn.functional.interpolate(grid, size=(gh, gw), mode="bicubic", align_corners=False)
        grid = grid.permute(0, 2, 3, 1).reshape(1, L, dim)
        out = torch.cat([cls, grid], dim=1).to(torch.float32)
    return out.to(torch.float64)


def run_params(cfg, P):
    """The parameters at the run size: P with both position tables resized."""
    R = dict(P)
    for name in ("pos_embed", "decoder_pos_embed"):
        R[name] = resize_table(cfg, P[name])
    return R


# ---- the model in float64 ---------------------------------------------------------------------
def layernorm(x, w, b, eps):
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)   # biased, as nn.LayerNorm
    return (x - mean) / torch.sqrt(var + eps) * w + b


def linear(x, w, b):
    return x @ w.t() if b is None else x @ w.t() + b


def gelu(x):
    return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))


def attention(x, P, pre, heads):
    B, T, C = x.shape
    hd = C // heads
    qkv = linear(x, P[pre + "attn.qkv.weight"], P.get(pre + "attn.qkv.bias"))
    qkv = qkv.reshape(B, T, 3, heads, hd).permute(2, 0, 3, 1, 4)   # rows Q|K|V, head-major
    q, k, v = qkv[0], qkv[1], qkv[2]
    att = (q @ k.transpose(-2, -1)) * hd ** -0.5                     # scale after q·kᵀ
    att = torch.softmax(att, dim=-1)
    y = (att @ v).transpose(1, 2).reshape(B, T, C)
    return linear(y, P[pre + "attn.proj.weight"], P[pre + "attn.proj.bias"])


def block(x, P, pre, heads, eps):
    x = x + attention(layernorm(x, P[pre + "norm1.weight"], P[pre + "norm1.bias"], eps), P, pre, heads)
    h = layernorm(x, P[pre + "norm2.weight"], P[pre + "norm2.bias"], eps)
    h = linear(gelu(linear(h, P[pre + "mlp.fc1.weight"], P[pre + "mlp.fc1.bias"])),
               P[pre + "mlp.fc2.weight"], P[pre + "mlp.fc2.bias"])
    return x + h


def patchify(imgs, p):
    """[B,C,H,W] -> [B,L,p*p*C] with pixels in (row, col, channel) order."""
    B, C, H, W = imgs.shape
    h, w = H // p, W // p
    x = imgs.reshape(B, C, h, p, w, p)
    x = torch.einsum("nchpwq->nhwpqc", x)
    return x.reshape(B, h * w, p * p * C)


def masking(noise, keep):
    """Stable argsort of the noise: kept tokens are the `keep` smallest, in ascending-noise order."""
    ids_shuffle = torch.sort(noise, dim=1, stable=True).indices
    ids_restore = torch.sort(ids_shuffle, dim=1, stable=True).indices
    B, L = noise.shape
    mask = torch.ones(B, L)
    mask[:, :keep] = 0
    mask = torch.gather(mask, 1, ids_restore)
    return ids_shuffle, ids_restore, mask


def forward(P, cfg, imgs, noise):
    """imgs float64 [B,C,H,W], noise float32 [B,L] -> dict of every reference tensor."""
    p, eps = cfg["patch_size"], cfg["layer_norm_eps"]
    D, Dd = cfg["embed_dim"], cfg["decoder_embed_dim"]
    keep = keep_count(cfg)
    B = imgs.shape[0]
    L = run_grid(cfg)[2]
    assert P["pos_embed"].shape[1] == L + 1
    # patch embedding: strided convolution, then + pos_embed[1:] before masking
    x = torch.nn.functional.conv2d(imgs, P["patch_embed.proj.weight"], P["patch_embed.proj.bias"], stride=p)
    x = x.flatten(2).transpose(1, 2)
    tokens = x + P["pos_embed"][:, 1:, :]
    ids_shuffle, ids_restore, mask = masking(noise, keep)
    x = torch.gather(tokens, 1, ids_shuffle[:, :keep].unsqueeze(-1).expand(B, keep, D))
    cls = (P["cls_token"] + P["pos_embed"][:, :1, :]).expand(B, 1, D)
    x = torch.cat([cls, x], dim=1)
    for i in range(cfg["depth"]):
        x = block(x, P, f"blocks.{i}.", cfg["num_heads"], eps)
    latent = layernorm(x, P["norm.weight"], P["norm.bias"], eps)
    # decoder
    x = linear(latent, P["decoder_embed.weight"], P["decoder_embed.bias"])
    mask_tokens = P["mask_token"].expand(B, L - keep, Dd)
    x_ = torch.cat([x[:, 1:, :], mask_tokens], dim=1)
    x_ = torch.gather(x_, 1, ids_restore.unsqueeze(-1).expand(B, L, Dd))
    x = torch.cat([x[:, :1, :], x_], dim=1) + P["decoder_pos_embed"]
    for i in range(cfg["decoder_depth"]):
        x = block(x, P, f"decoder_blocks.{i}.", cfg["decoder_num_heads"], eps)
    x = layernorm(x, P["decoder_norm.weight"], P["decoder_norm.bias"], eps)
    pred = linear(x, P["decoder_pred.weight"], P["decoder_pred.bias"])[:, 1:, :]
    # loss on the removed patches
    target = patchify(imgs, p)
    if cfg["norm_pix_loss"]:
        mean = target.mean(-1, keepdim=True)
        var = target.var(-1, unbiased=True, keepdim=True)
        target = (target - mean) / (var + 1e-6) ** 0.5
    per_patch = ((pred - target) ** 2).mean(-1)
    loss = (per_patch * mask).sum() / mask.sum()   # 0/0 = NaN when nothing is removed
    return dict(tokens=tokens, ids_shuffle=ids_shuffle, ids_restore=ids_restore, mask=mask,
                latent=latent, pred=pred, target=target, loss=loss)


# ---- inputs -----------------------------------------------------------------------------------
def make_noise(cfg, gen, B, L):
    noise = torch.rand(B, L, generator=gen, dtype=torch.float32)
    if cfg["ties"]:
        noise = torch.floor(noise * 6) / 6   # six distinct values over L positions: many ties
    return noise


def seed_masks(cfg, B, L, keep):
    """Masks of torch.manual_seed(s); torch.rand(B, L) for each seed, and of the draw that follows."""
    out = []
    for s in MASK_SEEDS:
        torch.manual_seed(s)
        first = torch.rand(B, L, dtype=torch.float32)
        second = torch.rand(B, L, dtype=torch.float32)
        out.append((f"seed_mask.{s}", masking(first, keep)[2]))
        out.append((f"seed_mask_next.{s}", masking(second, keep)[2]))
    return out


# ---- training reference -----------------------------------------------------------------------
def lr_at(step):
    a = ADAM
    e = step / a["steps_per_epoch"]
    if e < a["warmup_epochs"]:
        return a["peak_lr"] * e / a["warmup_epochs"]
    frac = (e - a["warmup_epochs"]) / (a["epochs"] - a["warmup_epochs"])
    return a["min_lr"] + (a["peak_lr"] - a["min_lr"]) * 0.5 * (1.0 + math.cos(math.pi * frac))


def trainable(cfg, name):
    return not (is_pos(name) and cfg["pos"] == "sincos")


def no_decay(name, shape):
    return len(shape) == 1 or name.endswith(".bias")


def train_reference(cfg, P0, imgs32, noises):
    """Gradients at P0 for noises[0], then 3 AdamW steps (torch.optim.AdamW, float64)."""
    shapes = dict(param_shapes(cfg))
    P = {n: t.clone().requires_grad_(trainable(cfg, n)) for n, t in P0.items()}
    imgs = imgs32.to(torch.float64).requires_grad_(True)
    loss = forward(P, cfg, imgs, noises[0])["loss"]
    loss.backward()
    grads = [("grad." + n, f32(P[n].grad)) for n, _ in param_shapes(cfg) if trainable(cfg, n)]
    grads.append(("grad.imgs", f32(imgs.grad)))

    P = {n: t.clone().requires_grad_(trainable(cfg, n)) for n, t in P0.items()}
    names = [n for n, _ in param_shapes(cfg) if trainable(cfg, n)]
    groups = [{"params": [P[n] for n in names if no_decay(n, shapes[n])], "weight_decay": 0.0},
              {"params": [P[n] for n in names if not no_decay(n, shapes[n])], "weight_decay": ADAM["weight_decay"]}]
    opt = torch.optim.AdamW(groups, lr=0.0, betas=(ADAM["beta1"], ADAM["beta2"]), eps=ADAM["eps"],
                            foreach=False)
    losses, lrs = [], []
    imgs = imgs32.to(torch.float64)
    for step in range(ADAM["steps"]):
        lr = lr_at(step)
        for gr in opt.param_groups:
            gr["lr"] = lr
        opt.zero_grad()
        loss = forward(P, cfg, imgs, noises[step])["loss"]
        loss.backward()
        opt.step()
        losses.append(loss.item())
        lrs.append(lr)
    after = [("step3." + n, f32(P[n])) for n, _ in param_shapes(cfg)]
    return grads, after, losses, lrs


# ---- Hugging Face directories ------------------------------------------------------------------
def hf_tensors(cfg, P):
    """The state_dict under the names transformers 5 writes (ViTMAEForPreTraining), q/k/v split."""
    sub = [("norm1.", "layernorm_before."), ("attn.proj.", "attention.output.dense."),
           ("norm2.", "layernorm_after."), ("mlp.fc1.", "intermediate.dense."), ("mlp.fc2.", "output.dense.")]
    top = {"cls_token": "vit.embeddings.cls_token", "pos_embed": "vit.embeddings.position_embeddings",
           "patch_embed.proj.": "vit.embeddings.patch_embeddings.projection.", "norm.": "vit.layernorm.",
           "mask_token": "decoder.mask_token", "decoder_pos_embed": "decoder.decoder_pos_embed",
           "decoder_embed.": "decoder.decoder_embed.", "decoder_norm.": "decoder.decoder_norm.",
           "decoder_pred.": "decoder.decoder_pred."}
    out = []
    for name, _ in param_shapes(cfg):
        arr = f32(P[name])
        parts = name.split(".")
        if parts[0] in ("blocks", "decoder_blocks"):
            pre = ("vit.encoder.layer." if parts[0] == "blocks" else "decoder.decoder_encoder.layer.") + parts[1] + "."
            rest = ".".join(parts[2:])
            if rest.startswith("attn.qkv."):
                for k, part in enumerate(np.split(arr, 3, axis=0)):
                    out.append((pre + "attention.attention." + ("query", "key", "value")[k] + "." + parts[-1], part))
                continue
            new = next(pre + h + rest[len(o):] for o, h in sub if rest.startswith(o))
        else:
            new = next(h + name[len(o):] for o, h in top.items() if name.startswith(o))
        out.append((new, arr))
    return out


def write_hf_dir(cfg, P):
    """dir/config.json and dir/model.safetensors as transformers' save_pretrained writes them."""
    d = os.path.join(OUT, cfg["name"])
    os.makedirs(d, exist_ok=True)
    D, Dd = cfg["embed_dim"], cfg["decoder_embed_dim"]
    config = {"architectures": ["ViTMAEForPreTraining"], "model_type": "vit_mae", "image_size": cfg["img_size"],
              "patch_size": cfg["patch_size"], "num_channels": cfg["in_chans"], "hidden_size": D,
              "num_hidden_layers": cfg["depth"], "num_attention_heads": cfg["num_heads"],
              "intermediate_size": int(D * cfg["mlp_ratio"]), "decoder_hidden_size": Dd,
              "decoder_num_hidden_layers": cfg["decoder_depth"], "decoder_num_attention_heads": cfg["decoder_num_heads"],
              "decoder_intermediate_size": cfg["decoder_mlp_hidden"] or int(Dd * cfg["mlp_ratio"]),
              "hidden_act": "gelu", "layer_norm_eps": cfg["layer_norm_eps"], "qkv_bias": cfg["qkv_bias"],
              "mask_ratio": cfg["mask_ratio"], "norm_pix_loss": cfg["norm_pix_loss"], "hidden_dropout_prob": 0.0,
              "attention_probs_dropout_prob": 0.0, "initializer_range": 0.02, "dtype": "float32"}
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
        f.write("\n")
    path = os.path.join(d, "model.safetensors")
    write_safetensors(path, hf_tensors(cfg, P), {"format": "pt"})
    return [os.path.join(d, "config.json"), path]


# ---- one config -------------------------------------------------------------------------------
def generate(cfg):
    name, B = cfg["name"], cfg["batch"]
    Pdim = dims(cfg)[2]
    H, W = run_size(cfg)
    gh, gw, L = run_grid(cfg)
    keep = keep_count(cfg)
    P = normal_params(cfg) if cfg["weights"] == "file" else rand_params(cfg)
    R = run_params(cfg, P)
    gen = torch.Generator().manual_seed(cfg["seed"] + 1000)
    imgs32 = torch.randn(B, cfg["in_chans"], H, W, generator=gen, dtype=torch.float32)
    noises = [make_noise(cfg, gen, B, L) for _ in range(ADAM["steps"])]
    with torch.no_grad():
        ref = forward(R, cfg, imgs32.to(torch.float64), noises[0])
    meta = dict(config_meta(cfg))
    files = []
    if cfg["hf"]:
        files += write_hf_dir(cfg, P)
        meta["weights"] = f"{name}/ (Hugging Face directory: config.json, model.safetensors)"
    elif cfg["weights"] == "file":
        path = os.path.join(OUT, f"{name}.model.safetensors")
        write_safetensors(path, [(n, f32(P[n])) for n, _ in param_shapes(cfg)], meta)
        files.append(path)
        meta["weights"] = f"{name}.model.safetensors"
    else:
        meta["weights"] = "torch_rand"
        meta["weight_seed"] = WEIGHT_SEED
        meta["weight_rule"] = ("per tensor in order: x=2*torch.rand(numel)-1 (f32); tokens, pos, "
                               "*.bias: x*0.02f; other 1-D: 1+x*0.1f; else x*0.05f")
        meta["num_tensors"] = len(P)
    meta.update(batch=B, num_patches=L, keep=keep, patch_dim=Pdim, seeds=",".join(map(str, MASK_SEEDS)),
                ids_dtype="I64", generator="tests/gen_reference.py (float64, torch %s)" % torch.__version__)
    if "run" in cfg:
        # Run at another size than the weights': the C side calls mae_model_resize(height, width).
        meta.update(run_height=H, run_width=W, run_grid=f"{gh}x{gw}",
                    resize="sincos: regenerated" if cfg["pos"] == "sincos" else
                    "learned: HF interpolate_pos_encoding (bicubic, align_corners=False, cls kept)")
    io = [("imgs", imgs32.numpy()), ("noise", noises[0].numpy()),
          ("ids_shuffle", ref["ids_shuffle"].numpy()), ("ids_restore", ref["ids_restore"].numpy()),
          ("mask", f32(ref["mask"])), ("tokens", f32(ref["tokens"])), ("latent", f32(ref["latent"])),
          ("pred", f32(ref["pred"])), ("target", f32(ref["target"])), ("loss", f32(ref["loss"].reshape(1)))]
    io += [(n, f32(m)) for n, m in seed_masks(cfg, B, L, keep)]
    if "run" in cfg:
        io += [("run." + n, f32(R[n])) for n in ("pos_embed", "decoder_pos_embed")]
    if cfg["weights"] == "torch_rand":
        # Fingerprints of the regenerated weights, in state_dict order: the first value of every
        # tensor (exact) and its sum, so that a C side that diverges says where.
        names = [n for n, _ in param_shapes(cfg)]
        io.append(("param_first", np.array([P[n].flatten()[0].item() for n in names], dtype=np.float32)))
        io.append(("param_sum", np.array([P[n].sum().item() for n in names], dtype=np.float32)))
    path = os.path.join(OUT, f"{name}.io.safetensors")
    write_safetensors(path, io, meta)
    files.append(path)
    print(f"{name}: L={L} keep={keep} loss={ref['loss'].item():.9g}")

    if cfg["grads"]:
        assert "run" not in cfg
        grads, after, losses, lrs = train_reference(cfg, P, imgs32, noises)
        gmeta = dict(config_meta(cfg))
        gmeta.update(
            weights=f"{name}.model.safetensors", inputs=f"{name}.io.safetensors (imgs; noise.step0 == noise)",
            batch=B, steps=ADAM["steps"], optimizer="torch.optim.AdamW", beta1=ADAM["beta1"],
            beta2=ADAM["beta2"], eps=ADAM["eps"], weight_decay=ADAM["weight_decay"],
            no_decay_rule="ndim == 1 or name ends with .bias (cls_token and mask_token decay)",
            frozen="pos_embed and decoder_pos_embed unless learned_pos is true",
            lr_schedule="e=step/steps_per_epoch; e<warmup: peak*e/warmup; else min_lr+(peak-min_lr)*0.5*(1+cos(pi*(e-warmup)/(epochs-warmup)))",
            peak_lr=ADAM["peak_lr"], min_lr=ADAM["min_lr"], warmup_epochs=ADAM["warmup_epochs"],
            epochs=ADAM["epochs"], steps_per_epoch=ADAM["steps_per_epoch"],
            **{f"lr.step{i}": repr(v) for i, v in enumerate(lrs)},
            **{f"loss.step{i}": repr(v) for i, v in enumerate(losses)})
        tensors = grads + after
        tensors += [(f"noise.step{i}", n.numpy()) for i, n in enumerate(noises)]
        tensors += [(f"loss.step{i}", np.array([v], dtype=np.float32)) for i, v in enumerate(losses)]
        path = os.path.join(OUT, f"{name}.grad.safetensors")
        write_safetensors(path, tensors, gmeta)
        files.append(path)
        print(f"{name}: losses {losses} lrs {lrs}")
    return files


def main(names):
    """Writes the configs named on the command line, or all of them."""
    os.makedirs(OUT, exist_ok=True)
    total = 0
    for cfg in CONFIGS:
        if names and cfg["name"] not in names:
            continue
        for f in generate(cfg):
            total += os.path.getsize(f)
    print(f"total {total} bytes")


if __name__ == "__main__":
    main(sys.argv[1:])
