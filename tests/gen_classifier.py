#!/usr/bin/python3
"""Golden references for the classifier (models_vit.VisionTransformer, MAE_REFERENCE.md section 8),
computed in float64 with PyTorch's functional ops; nothing imports MAE or libmae code.

Writes into tests/data/:
  <name>.classifier.safetensors   the classifier file (official fine-tuned names, or Hugging Face
                                  ViTForImageClassification names), F32
  <name>.cio.safetensors          imgs [B,C,H,W], logits [B,K] (float64 rounded to float32), and in
                                  __metadata__ the batch, the class count and torch_f32_err: the
                                  max |logit| error of the same model run in float32 by PyTorch
  <name>.cgrad.safetensors        fine-tuning: labels (clsgp, smoothing 0.1) or soft targets
                                  (clstok), the loss, grad.<name> of every trained tensor, and
                                  step2.<name>: the parameters after two torch.optim.AdamW steps on
                                  the same batch with util/lr_decay.param_groups_lrd's groups

Run with Debian's python3-torch:  /usr/bin/python3 tests/gen_classifier.py
CI never runs this; the generated files are committed.
"""
import math
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gen_reference import write_safetensors   # the writer only: plain safetensors bytes

torch.set_default_dtype(torch.float64)
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")

# gp: global pooling (mean of the patch tokens, fc_norm) vs the cls token after norm. hf: Hugging
# Face names (vit.*, classifier.*; no __metadata__ at all, so the loader infers everything and uses
# Hugging Face's eps 1e-12; heads = D / 64). labels: id2label.<i> names in __metadata__.
CONFIGS = [
    dict(name="clsgp", seed=201, img=16, p=4, C=3, D=24, depth=2, heads=3, mlp=2.0, K=5, B=3,
         eps=1e-6, gp=True, hf=False,
         labels=["T-shirt/top", "trouser \"wide\"", "pull\u00f6ver", "dress", "coat"]),
    dict(name="clstok", seed=202, img=12, p=4, C=1, D=64, depth=2, heads=1, mlp=1.5, K=3, B=2,
         eps=1e-12, gp=False, hf=True, labels=None),
    # drop path: rates linspace(0, 0.5, 3) = 0, 0.25, 0.5 over the blocks (the fine-tuning
    # references only; its logits are the eval-mode ones)
    dict(name="clsdp", seed=203, img=16, p=4, C=3, D=24, depth=3, heads=3, mlp=2.0, K=5, B=4,
         eps=1e-6, gp=True, hf=False, labels=None, drop_path=0.5),
]


def official_shapes(c):
    D, hid, L = c["D"], int(c["D"] * c["mlp"]), (c["img"] // c["p"]) ** 2
    out = [("cls_token", (1, 1, D)), ("pos_embed", (1, L + 1, D)),
           ("patch_embed.proj.weight", (D, c["C"], c["p"], c["p"])), ("patch_embed.proj.bias", (D,))]
    for i in range(c["depth"]):
        s = f"blocks.{i}."
        out += [(s + "norm1.weight", (D,)), (s + "norm1.bias", (D,)),
                (s + "attn.qkv.weight", (3 * D, D)), (s + "attn.qkv.bias", (3 * D,)),
                (s + "attn.proj.weight", (D, D)), (s + "attn.proj.bias", (D,)),
                (s + "norm2.weight", (D,)), (s + "norm2.bias", (D,)),
                (s + "mlp.fc1.weight", (hid, D)), (s + "mlp.fc1.bias", (hid,)),
                (s + "mlp.fc2.weight", (D, hid)), (s + "mlp.fc2.bias", (D,))]
    out += [("fc_norm.weight", (D,)), ("fc_norm.bias", (D,))] if c["gp"] else \
           [("norm.weight", (D,)), ("norm.bias", (D,))]
    return out + [("head.weight", (c["K"], D)), ("head.bias", (c["K"],))]


def params(c):
    """Random parameters that make every term matter, rounded to float32: linears N(0, 1/fan_in),
    biases N(0, 0.1^2), LayerNorm weights 1 + N(0, 0.1^2), a learned position table N(0, 0.2^2)."""
    gen = torch.Generator().manual_seed(c["seed"])
    P = {}
    for name, shape in official_shapes(c):
        z = torch.randn(shape, generator=gen)
        if len(shape) == 1 and name.endswith(".weight"):
            t = 1.0 + 0.1 * z
        elif name.endswith(".bias") or name == "cls_token":
            t = 0.1 * z
        elif name == "pos_embed":
            t = 0.2 * z
        else:
            t = z / math.sqrt(int(np.prod(shape[1:])))
        P[name] = t.to(torch.float32).to(torch.float64)
    return P


def drop_masks(c, B, seed):
    """timm DropPath's masks in train mode, in a float32 model: torch.manual_seed(seed), then per
    block with rate > 0 (torch.linspace(0, drop_path, depth)), attention then MLP branch,
    floor(keep_prob + torch.rand(B)); returns [depth][2] scale vectors mask / keep_prob."""
    torch.manual_seed(seed)
    rates = torch.linspace(0, c.get("drop_path", 0.0), c["depth"], dtype=torch.float32).tolist()
    out = []
    for p in rates:
        pair = []
        for _ in range(2):
            if p == 0.0:
                pair.append(torch.ones(B, dtype=torch.float64))
                continue
            keep = 1.0 - p
            u = torch.rand(B, dtype=torch.float32)
            mask = torch.floor(torch.tensor(keep, dtype=torch.float32) + u).to(torch.float64)
            pair.append(mask / keep)
        out.append(pair)
    return out


def forward(P, c, imgs, masks=None):
    """models_vit.VisionTransformer.forward, in the dtype of P and imgs; masks: drop path scales
    (drop_masks) or None (eval mode)."""
    D, H, eps = c["D"], c["heads"], c["eps"]
    B = imgs.shape[0]
    x = F.conv2d(imgs, P["patch_embed.proj.weight"], P["patch_embed.proj.bias"], stride=c["p"])
    x = x.flatten(2).transpose(1, 2)
    x = torch.cat([P["cls_token"].expand(B, 1, D), x], dim=1) + P["pos_embed"]
    T, hd = x.shape[1], D // H
    for i in range(c["depth"]):
        s = f"blocks.{i}."
        h = F.layer_norm(x, (D,), P[s + "norm1.weight"], P[s + "norm1.bias"], eps)
        qkv = F.linear(h, P[s + "attn.qkv.weight"], P[s + "attn.qkv.bias"])
        qkv = qkv.reshape(B, T, 3, H, hd).permute(2, 0, 3, 1, 4)
        att = torch.softmax((qkv[0] @ qkv[1].transpose(-2, -1)) * hd ** -0.5, dim=-1)
        y = (att @ qkv[2]).transpose(1, 2).reshape(B, T, D)
        s1, s2 = (masks[i][0][:, None, None], masks[i][1][:, None, None]) if masks else (1.0, 1.0)
        x = x + s1 * F.linear(y, P[s + "attn.proj.weight"], P[s + "attn.proj.bias"])
        h = F.layer_norm(x, (D,), P[s + "norm2.weight"], P[s + "norm2.bias"], eps)
        h = F.gelu(F.linear(h, P[s + "mlp.fc1.weight"], P[s + "mlp.fc1.bias"]))
        x = x + s2 * F.linear(h, P[s + "mlp.fc2.weight"], P[s + "mlp.fc2.bias"])
    if c["gp"]:
        pooled = F.layer_norm(x[:, 1:, :].mean(dim=1), (D,), P["fc_norm.weight"], P["fc_norm.bias"], eps)
    else:
        pooled = F.layer_norm(x, (D,), P["norm.weight"], P["norm.bias"], eps)[:, 0]
    return F.linear(pooled, P["head.weight"], P["head.bias"])


# ---- fine-tuning ------------------------------------------------------------------------------
FT = dict(lr=2e-3, weight_decay=0.05, layer_decay=0.75, smoothing=0.1, betas=(0.9, 0.999), eps=1e-8)


def loss_fn(c, P, imgs, labels, targets, step=0):
    """LabelSmoothingCrossEntropy (timm) for labels, SoftTargetCrossEntropy for targets; with
    drop path, the masks of optimizer step `step` (libmae's seed 0 + step, one call per step)."""
    masks = drop_masks(c, imgs.shape[0], step) if c.get("drop_path") else None
    logp = torch.log_softmax(forward(P, c, imgs, masks), dim=-1)
    if targets is None:
        s = FT["smoothing"]
        nll = -logp.gather(1, labels[:, None])[:, 0]
        return ((1 - s) * nll + s * (-logp.mean(dim=-1))).mean()
    return (-(targets * logp).sum(dim=-1)).mean()


def param_groups_lrd(c, P):
    """util/lr_decay.param_groups_lrd, rewritten: (name, lr_scale, weight_decay) per tensor."""
    num_layers = c["depth"] + 1
    out = []
    for n, p in P.items():
        wd = 0.0 if p.ndim == 1 or n in ("pos_embed", "cls_token") else FT["weight_decay"]
        if n in ("cls_token", "pos_embed") or n.startswith("patch_embed"):
            lid = 0
        elif n.startswith("blocks"):
            lid = int(n.split(".")[1]) + 1
        else:
            lid = num_layers
        out.append((n, FT["layer_decay"] ** (num_layers - lid), wd))
    return out


def finetune_reference(c, P, imgs):
    gen = torch.Generator().manual_seed(c["seed"] + 2000)
    B, K = c["B"], c["K"]
    labels = torch.randint(0, K, (B,), generator=gen)
    targets = None
    if c["name"] == "clstok":   # mixup-like soft rows
        targets = torch.rand(B, K, generator=gen)
        targets = (targets / targets.sum(-1, keepdim=True)).to(torch.float32).to(torch.float64)
    Q = {n: t.clone().requires_grad_(True) for n, t in P.items()}
    loss = loss_fn(c, Q, imgs, labels, targets)
    loss.backward()
    grads = {n: Q[n].grad.detach().clone() for n in Q}
    groups = [{"params": [Q[n]], "lr": FT["lr"] * scale, "weight_decay": wd, "name": n}
              for n, scale, wd in param_groups_lrd(c, Q)]
    opt = torch.optim.AdamW(groups, lr=FT["lr"], betas=FT["betas"], eps=FT["eps"])
    for step in range(2):
        opt.zero_grad()
        loss_fn(c, Q, imgs, labels, targets, step).backward()
        opt.step()
    out = [("loss", f32t(loss.detach().reshape(1)))]
    out += [("labels", labels.numpy())] if targets is None else [("targets", f32t(targets))]
    out += [("grad." + n, f32t(g)) for n, g in grads.items()]
    out += [("step2." + n, f32t(Q[n].detach())) for n in Q]
    return out


def f32t(t):
    return t.detach().to(torch.float32).numpy()


def hf_names(c, P):
    """Official -> Hugging Face ViTForImageClassification names (qkv split into query/key/value)."""
    D, out = c["D"], []
    for name, t in P.items():
        if name.startswith("blocks."):
            i, rest = name[len("blocks."):].split(".", 1)
            pre = f"vit.encoder.layer.{i}."
            if rest.startswith("attn.qkv."):
                kind = rest.split(".")[-1]
                for j, part in enumerate(("query", "key", "value")):
                    out.append((pre + f"attention.attention.{part}.{kind}", t[j * D:(j + 1) * D]))
                continue
            m = {"norm1.": "layernorm_before.", "attn.proj.": "attention.output.dense.",
                 "norm2.": "layernorm_after.", "mlp.fc1.": "intermediate.dense.", "mlp.fc2.": "output.dense."}
            key = next(k for k in m if rest.startswith(k))
            out.append((pre + m[key] + rest[len(key):], t))
        else:
            m = {"cls_token": "vit.embeddings.cls_token", "pos_embed": "vit.embeddings.position_embeddings",
                 "patch_embed.proj.weight": "vit.embeddings.patch_embeddings.projection.weight",
                 "patch_embed.proj.bias": "vit.embeddings.patch_embeddings.projection.bias",
                 "norm.weight": "vit.layernorm.weight", "norm.bias": "vit.layernorm.bias",
                 "head.weight": "classifier.weight", "head.bias": "classifier.bias"}
            out.append((m[name], t))
    return out


def generate(c):
    P = params(c)
    gen = torch.Generator().manual_seed(c["seed"] + 1000)
    imgs = torch.randn(c["B"], c["C"], c["img"], c["img"], generator=gen).to(torch.float32).to(torch.float64)
    logits = forward(P, c, imgs)
    P32 = {k: v.to(torch.float32) for k, v in P.items()}
    l32 = forward(P32, c, imgs.to(torch.float32)).to(torch.float64)
    err32 = float((l32 - logits).abs().max())
    f32 = lambda t: t.detach().to(torch.float32).numpy()
    if c["hf"]:
        tensors, meta = [(n, f32(t)) for n, t in hf_names(c, P)], {}
    else:
        tensors = [(n, f32(P[n])) for n, _ in official_shapes(c)]
        meta = {"format": "pt", "img_size": c["img"], "patch_size": c["p"], "in_chans": c["C"],
                "embed_dim": c["D"], "depth": c["depth"], "num_heads": c["heads"],
                "mlp_ratio": repr(c["mlp"]), "layer_norm_eps": repr(c["eps"])}
        for i, lab in enumerate(c["labels"] or []):
            meta[f"id2label.{i}"] = lab
    write_safetensors(os.path.join(OUT, f"{c['name']}.classifier.safetensors"), tensors, meta)
    io_meta = {"batch": c["B"], "num_classes": c["K"], "global_pool": int(c["gp"]),
               "torch_f32_err": repr(err32), "img_size": c["img"], "in_chans": c["C"]}
    write_safetensors(os.path.join(OUT, f"{c['name']}.cio.safetensors"),
                      [("imgs", f32(imgs)), ("logits", f32(logits))], io_meta)
    ft = finetune_reference(c, P, imgs)
    write_safetensors(os.path.join(OUT, f"{c['name']}.cgrad.safetensors"), ft,
                      {"lr": repr(FT["lr"]), "weight_decay": repr(FT["weight_decay"]),
                       "layer_decay": repr(FT["layer_decay"]), "smoothing": repr(FT["smoothing"]),
                       "drop_path": repr(c.get("drop_path", 0.0))})
    print(f"{c['name']}: logits {logits.abs().max():.3f} max, torch float32 error {err32:.2e}, "
          f"loss {float(ft[0][1][0]):.6f}")


def check(model_path, json_path):
    """tests/check_classify.sh: `mae classify --json --crop-pct 1` on images of the model's size
    against forward() in float64 (CONFIGS' clsgp), and the JSON's promises."""
    import json
    c = next(c for c in CONFIGS if c["name"] == "clsgp")
    P = {k: torch.from_numpy(v.astype(np.float64)) for k, v in read_safetensors(model_path).items()}
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    for line in open(json_path, encoding="utf-8"):
        o = json.loads(line)
        assert set(o) == {"image", "top", "logits"}, o.keys()
        raw = open(o["image"], "rb").read()
        px = np.frombuffer(raw[-16 * 16 * 3:], dtype=np.uint8).reshape(16, 16, 3) / 255.0
        # the library normalizes in double and rounds to float32
        x = ((px - mean) / std).astype(np.float32).astype(np.float64).transpose(2, 0, 1)[None]
        want = forward(P, c, torch.from_numpy(x.copy()))[0].numpy()
        got = np.array(o["logits"], dtype=np.float64)
        assert got.shape == (c["K"],), got.shape
        err = np.abs(got - want).max()
        assert err < 1e-5, (o["image"], err)
        for t in o["logits"]:   # %.9g text: parses back to one float32 that prints the same
            assert float(f"{np.float32(t):.9g}") == t, t
        p = np.exp(got - got.max())
        p /= p.sum()
        probs = [e["probability"] for e in o["top"]]
        assert probs == sorted(probs, reverse=True) and len(probs) == min(5, c["K"])
        for e in o["top"]:
            assert abs(e["probability"] - p[e["index"]]) < 1e-7 and e["label"] == c["labels"][e["index"]], e
    print(f"check: {json_path} agrees with PyTorch float64")


def read_safetensors(path):
    import json
    import struct
    raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    hdr = json.loads(raw[8:8 + n])
    hdr.pop("__metadata__", None)
    out = {}
    for k, v in hdr.items():
        a, b = v["data_offsets"]
        assert v["dtype"] == "F32"
        out[k] = np.frombuffer(raw[8 + n + a:8 + n + b], dtype="<f4").reshape(v["shape"])
    return out


if __name__ == "__main__" and sys.argv[1:2] == ["--check"]:
    check(sys.argv[2], sys.argv[3])
elif __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    for cfg in CONFIGS:
        generate(cfg)
