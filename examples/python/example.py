"""The FFI example: the computation of examples/ffi_reference.c through the Python binding,
printed in the same format (tests/check_ffi.sh compares the two).

    python3 examples/python/example.py [checkpoint.safetensors]

With a path, the model is loaded from it (ffi_reference writes it); while checkpoints are not
available in the library, or without a path, the same tiny model is created with seed 42.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mae  # noqa: E402


def open_model(path):
    if path:
        try:
            return mae.Model.load(path)
        except mae.Error as e:
            if e.status != mae.ERR_UNSUPPORTED and os.path.exists(path):
                raise
    return mae.Model.create("tiny", seed=42)


def flat(x):
    return [float(v) for v in (x.ravel() if mae.np is not None else x)]


def main():
    B = 2
    with open_model(sys.argv[1] if len(sys.argv) > 1 else None) as model:
        cfg = model.config
        with mae.Context(model, max_batch=B) as ctx:
            L, keep, P = ctx.dims()
            npix = B * cfg.in_chans * cfg.img_size * cfg.img_size
            # exact in float32: the same values as the C reference
            imgs = [(((i * 37) % 101) - 50) / 64.0 for i in range(npix)]
            noise = [((i * 53) % 97) / 128.0 for i in range(B * L)]
            if mae.np is not None:
                imgs = mae.np.array(imgs, dtype=mae.np.float32).reshape(B, cfg.in_chans, cfg.img_size, cfg.img_size)
                noise = mae.np.array(noise, dtype=mae.np.float32).reshape(B, L)
            out = ctx.forward(imgs, noise=noise)
            pred, mask = flat(out.pred), flat(out.mask)
            print("loss %.9g" % out.loss)
            print("pred_sum %.9g" % sum(pred))
            print("pred_head %.9g %.9g %.9g %.9g" % tuple(pred[:4]))
            print("mask " + "".join("1" if v else "0" for v in mask))
            ctx.set_seed(2)
            out = ctx.forward(imgs)
            print("seed_loss %.9g" % out.loss)
            print("seed_mask " + "".join("1" if v else "0" for v in flat(out.mask)))
            D = model.embed_dims[0]
            for pool in ("cls", "mean"):
                e = flat(ctx.embed(imgs, pool=pool))[D:D + 4]   # image 1's first four
                print("embed_%s_head %.9g %.9g %.9g %.9g" % ((pool,) + tuple(e)))
            print("embed_tokens_sumsq %.9g" % sum(v * v for v in flat(ctx.embed(imgs, pool="tokens"))))
        # a few pretraining steps through the binding (after the comparison: they change the model)
        with mae.Trainer(model, max_batch=B) as trainer:
            losses = [trainer.forward_backward(imgs, noise=noise) for _ in range(1)]
            for _ in range(3):
                trainer.step()
                losses.append(trainer.forward_backward(imgs, noise=noise))
            if trainer.steps != 3 or not all(v == v and v > 0 for v in losses):
                raise SystemExit("python: trainer: steps %d, losses %s" % (trainer.steps, losses))
            sys.stderr.write("python: 3 training steps, loss %.4f -> %.4f\n" % (losses[0], losses[-1]))
    sys.stderr.write("python: libmae %s, kernels %s, numpy %s\n"
                     % (mae.version(), mae.kernels(), mae.np.__version__ if mae.np is not None else "absent"))


if __name__ == "__main__":
    main()
