#!/usr/bin/env python3
"""Convert an official MAE checkpoint (.pth) to a safetensors file that libmae loads.

    python3 examples/convert_pth.py mae_visualize_vit_large.pth mae_large.safetensors
    python3 examples/convert_pth.py mae_pretrain_vit_base.pth base.safetensors --norm-pix-loss

The weights may sit under 'model' (the released files and training checkpoints) or be a bare
state_dict; a 'module.' prefix (DistributedDataParallel) is removed. Only the tensors of
MaskedAutoencoderViT are kept, plus, in a fine-tuned file (mae_finetuned_vit_*.pth, recognised by
its head.* tensors), the classifier's head.* and fc_norm.*: such a file becomes a classifier file
(mae_classifier_load) with num_classes and global_pool (true exactly when fc_norm.* is there) in
__metadata__, and, with --labels FILE (one class name per line), id2label.<i>. The config goes
into __metadata__ under the constructor's argument names (docs/FORMAT.md): it is read from the
shapes and the presets, and each value can be overridden on the command line. Whether a file was
trained with norm_pix_loss cannot be seen in it: the released 'pretrain' files were, the
'visualize' files were not; say so with --norm-pix-loss.

Needs PyTorch (and numpy); the library never does. The safetensors file is written here directly
(8-byte header length, JSON header, raw little-endian data), so the safetensors package is not
needed either.
"""
import argparse
import json
import math
import os
import re
import struct
import sys

import numpy
import torch

OWN = re.compile(r"^(cls_token|pos_embed|mask_token|decoder_pos_embed|patch_embed\.proj\.(weight|bias)|"
                 r"(decoder_)?blocks\.\d+\.(norm1|norm2|attn\.qkv|attn\.proj|mlp\.fc1|mlp\.fc2)\.(weight|bias)|"
                 r"(norm|fc_norm|head|decoder_embed|decoder_norm|decoder_pred)\.(weight|bias))$")

# (embed_dim, depth, patch) of the released encoders, and their head counts
PRESETS = {(768, 12, 16): ("ViT-B/16", 12), (1024, 24, 16): ("ViT-L/16", 16), (1280, 32, 14): ("ViT-H/14", 16)}


def load_state_dict(path, trust):
    try:
        obj = torch.load(path, map_location="cpu", weights_only=not trust)
    except Exception as e:  # weights_only refuses pickled objects such as the 'args' Namespace
        if trust:
            raise
        sys.exit(f"{path}: cannot load with weights_only=True ({e}).\n"
                 "If you trust the file, run again with --trust (it unpickles arbitrary objects).")
    if isinstance(obj, dict) and isinstance(obj.get("model"), dict):
        obj = obj["model"]
    elif isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(torch.is_tensor(v) for v in obj.values()):
        sys.exit(f"{path}: neither a state_dict nor a checkpoint with one under 'model'")
    return {k[len("module."):] if k.startswith("module.") else k: v for k, v in obj.items()}


def count_blocks(sd, prefix):
    idx = [int(m.group(1)) for k in sd for m in [re.match(re.escape(prefix) + r"(\d+)\.", k)] if m]
    return max(idx) + 1 if idx else 0


def default_heads(dim, decoder):
    if decoder and dim == 512:
        return 16
    preset = {768: 12, 1024: 16, 1280: 16}
    if not decoder and dim in preset:
        return preset[dim]
    return dim // 64 if dim % 64 == 0 else None


def mlp_ratio(hidden, dim):
    """The float32 ratio r with int(dim * r) == hidden, as libmae computes the MLP width."""
    r = numpy.float32(hidden / dim)
    while int(float(dim) * float(r)) < hidden:
        r = numpy.nextafter(r, numpy.float32(numpy.inf))
    return float(r)


def guess_config(sd):
    """The config that the shapes and the presets say (the same rules as libmae's loader)."""
    w = sd.get("patch_embed.proj.weight")
    if w is None or w.dim() != 4:
        sys.exit("no patch_embed.proj.weight [embed_dim, in_chans, p, p]: not an MAE checkpoint")
    D, C, p = w.shape[0], w.shape[1], w.shape[2]
    L = sd["pos_embed"].shape[-2] - 1
    g = math.isqrt(L)
    cfg = {"img_size": g * p if g * g == L else None, "patch_size": p, "in_chans": C, "embed_dim": D,
           "depth": count_blocks(sd, "blocks."), "num_heads": default_heads(D, False),
           "mlp_ratio": mlp_ratio(sd["blocks.0.mlp.fc1.weight"].shape[0], D),
           "norm_pix_loss": False, "mask_ratio": 0.75, "layer_norm_eps": 1e-6}
    if "decoder_embed.weight" in sd:
        Dd = sd["decoder_embed.weight"].shape[0]
        cfg.update(decoder_embed_dim=Dd, decoder_depth=count_blocks(sd, "decoder_blocks."),
                   decoder_num_heads=default_heads(Dd, True))
    return cfg


def meta_text(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    return format(v, ".9g") if isinstance(v, float) else str(v)


def tensor_bytes(t, dtype):
    t = t.detach().cpu().contiguous()
    if dtype == "BF16":  # numpy has no bfloat16: its bits as int16
        return t.to(torch.bfloat16).view(torch.int16).numpy().astype("<i2").tobytes()
    return t.to(torch.float16 if dtype == "F16" else torch.float32).numpy().astype("<f2" if dtype == "F16" else "<f4").tobytes()


def write_safetensors(path, tensors, meta, dtype):
    header, blobs, offset = {"__metadata__": meta}, [], 0
    for name, t in tensors.items():
        b = tensor_bytes(t, dtype)
        header[name] = {"dtype": dtype, "shape": list(t.shape), "data_offsets": [offset, offset + len(b)]}
        blobs.append(b)
        offset += len(b)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # the data section starts 8-byte aligned
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:  # a temporary file and a rename: never a half-written file at path
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def classifier_meta(sd, labels_path, meta):
    """A fine-tuned file (head.weight [classes, D]): num_classes, global_pool and the labels into
    meta; returns the class count, 0 for a file without a head."""
    head = sd.get("head.weight")
    if head is None:
        if labels_path:
            sys.exit("--labels: the file has no head.weight (not a fine-tuned classifier)")
        return 0
    if head.dim() != 2 or "head.bias" not in sd:
        sys.exit("head.weight must be [num_classes, embed_dim] with a head.bias")
    classes = head.shape[0]
    meta["num_classes"] = str(classes)
    meta["global_pool"] = "true" if "fc_norm.weight" in sd else "false"
    if labels_path:
        with open(labels_path, encoding="utf-8") as f:
            names = [line.rstrip("\r\n") for line in f if line.strip()]
        if len(names) != classes:
            sys.exit(f"--labels: {len(names)} names for a head of {classes} classes")
        for i, n in enumerate(names):
            if len(n.encode()) > 255:
                sys.exit(f"--labels: name {i} is longer than 255 bytes")
            meta[f"id2label.{i}"] = n
    return classes


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("input", help="official MAE .pth")
    ap.add_argument("output", help=".safetensors to write")
    ap.add_argument("--norm-pix-loss", dest="norm_pix_loss", action="store_true", default=None,
                    help="the model was trained with per-patch normalized targets (the 'pretrain' files)")
    ap.add_argument("--no-norm-pix-loss", dest="norm_pix_loss", action="store_false")
    for key, typ in [("img_size", int), ("num_heads", int), ("decoder_num_heads", int), ("mask_ratio", float),
                     ("layer_norm_eps", float), ("mlp_ratio", float)]:
        ap.add_argument("--" + key.replace("_", "-"), dest=key, type=typ, help=f"override {key}")
    ap.add_argument("--dtype", choices=["F32", "F16", "BF16"], default="F32", help="stored dtype (F32)")
    ap.add_argument("--encoder-only", action="store_true", help="drop the decoder (feature extraction only)")
    ap.add_argument("--labels", help="a fine-tuned classifier's class names, one per line (id2label)")
    ap.add_argument("--trust", action="store_true", help="allow pickled objects other than tensors in the .pth")
    args = ap.parse_args()

    sd = load_state_dict(args.input, args.trust)
    dropped = sorted(k for k in sd if not OWN.match(k))
    sd = {k: v for k, v in sd.items() if OWN.match(k)}
    if args.encoder_only:
        sd = {k: v for k, v in sd.items() if not (k.startswith("decoder") or k == "mask_token")}
    cfg = guess_config(sd)
    if args.encoder_only:
        for k in ("decoder_embed_dim", "decoder_depth", "decoder_num_heads"):
            cfg.pop(k, None)
    for key in ("img_size", "num_heads", "decoder_num_heads", "mask_ratio", "layer_norm_eps", "mlp_ratio",
                "norm_pix_loss"):
        if getattr(args, key) is not None:
            cfg[key] = getattr(args, key)
    missing = [k for k, v in cfg.items() if v is None]
    if missing:
        sys.exit(f"cannot tell {', '.join(missing)} from the shapes: give --{missing[0].replace('_', '-')}")

    meta = {k: meta_text(v) for k, v in cfg.items()} | {"format": "pt"}
    classes = classifier_meta(sd, args.labels, meta)
    write_safetensors(args.output, sd, meta, args.dtype)
    name = PRESETS.get((cfg["embed_dim"], cfg["depth"], cfg["patch_size"]), ("custom", 0))[0]
    kind = ("classifier, %d classes, %s pooling" % (classes, "global" if "fc_norm.weight" in sd else "cls token")
            if classes else "encoder + decoder" if "decoder_embed_dim" in cfg else "encoder only")
    print(f"{args.output}: {len(sd)} tensors ({args.dtype}), {name}, {kind}")
    print("  " + ", ".join(f"{k}={meta_text(v)}" for k, v in cfg.items()))
    if dropped:
        print(f"  dropped {len(dropped)} tensors that MAE does not use: {', '.join(dropped[:4])}"
              + (" ..." if len(dropped) > 4 else ""))
    if "decoder_embed_dim" not in cfg and args.norm_pix_loss is None and not classes:
        print("  note: the released encoder-only 'pretrain' files were trained with --norm-pix-loss")


if __name__ == "__main__":
    main()
