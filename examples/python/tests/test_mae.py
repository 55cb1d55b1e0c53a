"""Tests of the installed binding (tests/check_ffi.sh runs them in a fresh virtualenv): shape and
dtype checks, out= buffers, embeddings (also from an encoder-only file), lifetimes, hooks."""
import json
import os
import struct
import tempfile
import unittest

import mae

np = mae.np


def encoder_only(src, dst):
    """Rewrites a safetensors file without the decoder's tensors (and mask_token)."""
    with open(src, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out, blobs, at = {}, [], 0
    for name, e in header.items():
        if name == "__metadata__":   # libmae's checksum no longer holds: leave it out
            out[name] = {k: v for k, v in e.items() if k != "libmae.crc32c"}
            continue
        if name.startswith("decoder") or name == "mask_token":
            continue
        a, b = e["data_offsets"]
        blobs.append(data[a:b])
        out[name] = dict(e, data_offsets=[at, at + b - a])
        at += b - a
    h = json.dumps(out).encode()
    h += b" " * (-len(h) % 8)
    with open(dst, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


@unittest.skipIf(np is None, "numpy is not installed")
class Binding(unittest.TestCase):
    def setUp(self):
        self.model = mae.Model.create("tiny", seed=3)
        cfg = self.model.config
        self.shape = (2, cfg.in_chans, cfg.img_height, cfg.img_width)
        self.imgs = np.random.default_rng(1).uniform(-1, 1, self.shape).astype(np.float32)
        self.tmp = tempfile.TemporaryDirectory()

    def tearDown(self):
        self.tmp.cleanup()

    def test_shapes_and_dtypes(self):
        with mae.Context(self.model, 2) as c:
            nhwc = np.ascontiguousarray(self.imgs.transpose(0, 2, 3, 1))
            with self.assertRaisesRegex(ValueError, "shape"):
                c.embed(nhwc)
            with self.assertRaisesRegex(ValueError, r"\[B, C, H, W\]"):
                c.embed(self.imgs.reshape(-1))
            with self.assertRaisesRegex(ValueError, "float32"):
                c.embed(self.imgs.astype(np.float64))
            with self.assertRaisesRegex(ValueError, "float32"):
                c.forward(self.imgs.astype(np.float64))
            with self.assertRaisesRegex(ValueError, "pool"):
                c.embed(self.imgs, pool="max")
            with self.assertRaises(mae.Error) as e:
                c.embed(np.zeros((3,) + self.shape[1:], np.float32))   # over max_batch
            self.assertEqual(e.exception.name, "SHAPE")
            # a non-contiguous float32 view is copied, not reinterpreted
            wide = np.zeros(self.shape[:3] + (2 * self.shape[3],), np.float32)
            wide[..., ::2] = self.imgs
            np.testing.assert_array_equal(c.embed(wide[..., ::2]), c.embed(self.imgs))

    def test_precision(self):
        b16 = mae.Model.create("tiny", seed=3)
        self.assertEqual(b16.precision, "f32")
        with self.assertRaises(ValueError):
            b16.set_precision("f16")
        b16.set_precision("bf16")
        self.assertEqual(b16.precision, "bf16")
        self.assertEqual(b16.num_params, self.model.num_params)
        with self.assertRaises(mae.Error) as e:
            b16.set_precision("f32")
        self.assertEqual(e.exception.name, "UNSUPPORTED")
        with mae.Context(self.model, 2) as c, mae.Context(b16, 2) as d:
            e32, e16 = c.embed(self.imgs), d.embed(self.imgs)
        rel = np.linalg.norm(e16 - e32) / np.linalg.norm(e32)
        self.assertGreater(rel, 0)
        self.assertLess(rel, 1e-2)
        path = os.path.join(self.tmp.name, "b16.safetensors")
        b16.save(path)   # BF16: about half the F32 file
        self.model.save(path + ".f32")
        self.assertLess(os.path.getsize(path), 0.6 * os.path.getsize(path + ".f32"))
        b16.close()

    def test_load_bf16(self):
        # the file read straight into bf16 computes what load + set_precision computes, bit for bit
        path = os.path.join(self.tmp.name, "m32.safetensors")
        self.model.save(path)
        with open(path, "rb") as f:
            data = f.read()
        ref = mae.Model.load(path)
        ref.set_precision("bf16")
        ticks = []
        a = mae.Model.load(path, precision="bf16", progress=lambda done, total: ticks.append(done))
        b = mae.Model.from_bytes(data, precision="bf16")
        self.assertEqual((a.precision, b.precision), ("bf16", "bf16"))
        self.assertEqual(ticks, list(range(1, len(ticks) + 1)))
        self.assertGreater(len(ticks), 10)
        with mae.Context(ref, 2) as cr, mae.Context(a, 2) as ca, mae.Context(b, 2) as cb:
            want = cr.embed(self.imgs, pool="tokens")
            np.testing.assert_array_equal(ca.embed(self.imgs, pool="tokens"), want)
            np.testing.assert_array_equal(cb.embed(self.imgs, pool="tokens"), want)
        with self.assertRaises(ValueError):
            mae.Model.load(path, precision="f16")
        with self.assertRaises(mae.Error) as e:
            mae.Model.load(path, precision="bf16", progress=lambda done, total: done == 2)
        self.assertEqual(e.exception.name, "ABORTED")
        self.assertEqual(mae.Model.load(path).precision, "f32")
        for m in (ref, a, b):
            m.close()

    def test_out_buffers(self):
        D, T = self.model.embed_dims
        with mae.Context(self.model, 2) as c:
            out = np.full((2, D), np.nan, np.float32)
            r = c.embed(self.imgs, pool="mean", out=out)
            self.assertIs(r, out)
            self.assertFalse(np.isnan(out).any())
            np.testing.assert_array_equal(out, c.embed(self.imgs, pool="mean"))
            tok = np.empty((2, T, D), np.float32)
            c.embed(self.imgs, pool="tokens", out=tok)
            np.testing.assert_array_equal(tok[:, 0], c.embed(self.imgs, pool="cls"))
            np.testing.assert_allclose(tok[:, 1:].astype(np.float64).mean(axis=1), out, rtol=1e-6, atol=1e-7)
            for bad in (np.empty((2, D + 1), np.float32), np.empty((2, D), np.float64),
                        np.empty((D, 2), np.float32).T):
                with self.assertRaises(ValueError):
                    c.embed(self.imgs, pool="mean", out=bad)

    def test_close_model_in_use(self):
        c = mae.Context(self.model, 2)
        with self.assertRaises(mae.Error) as e:
            self.model.close()
        self.assertEqual(e.exception.name, "STATE")
        self.assertEqual(c.embed(self.imgs).shape, (2, self.model.embed_dims[0]))   # still alive
        with self.assertRaises(mae.Error) as e:   # a trainer converts the model: no live context
            mae.Trainer(self.model, 2)
        self.assertEqual(e.exception.name, "STATE")
        c.close()
        t = mae.Trainer(self.model, 2)
        with self.assertRaises(mae.Error):
            self.model.close()
        t.close()
        self.model.close()
        with self.assertRaises(mae.Error):
            mae.Context(self.model, 1)
        # dropping every reference frees in a safe order: the context holds the model
        m = mae.Model.create("tiny", seed=4)
        c = mae.Context(m, 1)
        del m
        self.assertEqual(c.embed(self.imgs[:1]).shape[0], 1)
        c.close()

    def test_encoder_only(self):
        full = os.path.join(self.tmp.name, "full.safetensors")
        enc = os.path.join(self.tmp.name, "enc.safetensors")
        self.model.save(full)
        encoder_only(full, enc)
        e = mae.Model.load(enc)
        self.assertFalse(e.has_decoder)
        with mae.Context(e, 2) as ce, mae.Context(self.model, 2) as cm:
            for pool in ("cls", "mean", "tokens"):
                np.testing.assert_array_equal(ce.embed(self.imgs, pool=pool), cm.embed(self.imgs, pool=pool))
            r = ce.forward(self.imgs)
            self.assertIsNone(r.loss)
            self.assertIsNone(r.pred)
            self.assertEqual(r.latent.shape[0], 2)
        e.close()

    def test_from_bytes(self):
        path = os.path.join(self.tmp.name, "m.safetensors")
        self.model.save(path)
        with open(path, "rb") as f:
            data = f.read()
        a, b, c = mae.Model.load(path), mae.Model.from_bytes(data), mae.Model.from_bytes(bytearray(data))
        with mae.Context(a, 2) as ca, mae.Context(b, 2) as cb, mae.Context(c, 2) as cc:
            want = ca.embed(self.imgs, pool="tokens")
            np.testing.assert_array_equal(cb.embed(self.imgs, pool="tokens"), want)
            np.testing.assert_array_equal(cc.embed(self.imgs, pool="tokens"), want)
        with self.assertRaises(mae.Error):
            mae.Model.from_bytes(data[: len(data) // 2])
        for m in (a, b, c):
            m.close()

    def test_hooks(self):
        path = os.path.join(self.tmp.name, "m.safetensors")
        self.model.save(path)
        seen = []
        mae.Model.load(path, progress=lambda d, t: seen.append((d, t))).close()
        self.assertEqual(seen[-1][0], seen[-1][1])
        self.assertEqual([d for d, _ in seen], list(range(1, len(seen) + 1)))
        with self.assertRaises(mae.Error) as e:
            mae.Model.load(path, progress=lambda d, t: d == 3)
        self.assertEqual(e.exception.name, "ABORTED")
        with mae.Context(self.model, 2) as c:
            want = c.embed(self.imgs)
            c.set_abort(lambda: True)
            with self.assertRaises(mae.Error) as e:
                c.embed(self.imgs)
            self.assertEqual(e.exception.name, "ABORTED")
            c.set_abort(None)
            np.testing.assert_array_equal(c.embed(self.imgs), want)

    def test_images_to_input(self):
        cfg = self.model.config
        ims = [np.full((40, 30, 3), 128, np.uint8), np.full((9, 50), 128, np.uint8),
               np.full((20, 20, 4), 128, np.uint8)]
        x = self.model.images_to_input(ims, mae.IMAGENET_MEAN, mae.IMAGENET_STD)
        self.assertEqual(x.shape, (3, cfg.in_chans, cfg.img_height, cfg.img_width))
        for ch in range(3):
            want = (128 / 255 - mae.IMAGENET_MEAN[ch]) / mae.IMAGENET_STD[ch]
            np.testing.assert_allclose(x[:, ch], want, rtol=1e-6)
        with self.assertRaises(ValueError):
            self.model.images_to_input([np.zeros((4, 4, 3), np.float32)])

    def test_trainer(self):
        with mae.Trainer(self.model, 2) as t:
            t.set_threads(1)
            l0 = t.forward_backward(self.imgs)
            t.step()
            self.assertEqual(t.steps, 1)
            self.assertTrue(l0 > 0)
            t.set_abort(lambda: True)
            with self.assertRaises(mae.Error):
                t.forward_backward(self.imgs)
            t.set_abort(None)
            # progress: one call per block and before the backward pass, then done = total;
            # cancelling at the last check leaves the trainer as it was (the same loss again)
            cfg = self.model.config
            total = cfg.depth + cfg.decoder_depth + 1
            seen = []
            t.set_progress(lambda d, n: seen.append((d, n)))
            noise = np.random.default_rng(2).uniform(0, 1, (2, (cfg.img_height // cfg.patch_size) * (cfg.img_width // cfg.patch_size))).astype(np.float32)
            l1 = t.forward_backward(self.imgs, noise=noise)
            self.assertEqual(seen, [(d, total) for d in range(total + 1)])
            t.set_progress(lambda d, n: d == total - 1)
            with self.assertRaises(mae.Error) as e:
                t.forward_backward(self.imgs, noise=noise)
            self.assertEqual(e.exception.name, "ABORTED")
            t.set_progress(None)
            self.assertEqual(t.forward_backward(self.imgs, noise=noise), l1)
            t.save(os.path.join(self.tmp.name, "t.safetensors"))


if __name__ == "__main__":
    unittest.main()
