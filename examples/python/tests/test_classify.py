"""Classification through the installed binding: logits against the C CLI (`mae classify --json`,
when $MAE_CLI names it, as tests/check_ffi.sh sets it) and against a second path through the C
API (cls pooling: head.weight . embed(cls) + head.bias), labels, the file round trip, shape and
dtype checks, lifetimes, and one fine-tuning step lowering the loss on a fixed batch."""
import json
import os
import subprocess
import tempfile
import unittest

import mae

np = mae.np
DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "data")
NAMES = ["tshirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "boot"]
IMAGES = ["t10k-0000-boot.png", "t10k-0002-trouser.png", "t10k-0008-sandal.png"]


@unittest.skipIf(np is None, "numpy is not installed")
class Classify(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        model = mae.Model.load(os.path.join(DATA, "mae-fmnist.safetensors"))
        self.clf = mae.Classifier.create(model, 10, global_pool=True, seed=7)
        model.close()   # the classifier holds its own encoder
        self.x = self.clf.images_to_input([mae.load_image(os.path.join(DATA, n), 1) for n in IMAGES],
                                          mae.FASHION_MNIST_MEAN, mae.FASHION_MNIST_STD)

    def tearDown(self):
        self.tmp.cleanup()

    def test_against_the_cli_and_a_round_trip(self):
        self.clf.set_labels(NAMES)
        with mae.Context(self.clf, 3) as ctx:
            logits = self.clf.forward(ctx, self.x)
            self.assertEqual(logits.shape, (3, 10))
            self.assertEqual(logits.dtype, np.float32)
            out = np.empty((3, 10), np.float32)
            self.assertIs(self.clf.forward(ctx, self.x, out=out), out)
            np.testing.assert_array_equal(out, logits)
            top = self.clf.predict(ctx, self.x)
        self.assertEqual([k for k, _ in top], list(np.argmax(logits, axis=1)))
        self.assertEqual([n for _, n in top], [NAMES[k] for k, _ in top])
        path = os.path.join(self.tmp.name, "clf.safetensors")
        self.clf.save(path)
        back = mae.Classifier.load(path)
        self.assertEqual(back.labels, NAMES)
        self.assertTrue(back.global_pool)
        with mae.Context(back, 3) as bctx:
            np.testing.assert_array_equal(back.forward(bctx, self.x), logits)
            with self.assertRaises(mae.Error) as e:   # another classifier's context
                self.clf.forward(bctx, self.x)
            self.assertEqual(e.exception.name, "INVALID_ARG")
        with self.assertRaises(mae.Error) as e:
            mae.Classifier.load(path, 5)
        self.assertEqual(e.exception.name, "SHAPE")

        cli = os.environ.get("MAE_CLI")
        if not cli:
            self.skipTest("MAE_CLI not set: the comparison with `mae classify` is left to tests/check_ffi.sh")
        run = subprocess.run([cli, "classify", "--json", "--crop-pct", "1", "--norm", "fashion-mnist", path]
                             + [os.path.join(DATA, n) for n in IMAGES], capture_output=True, text=True)
        self.assertEqual(run.returncode, 0, run.stderr)
        rows = [json.loads(line) for line in run.stdout.splitlines()]
        self.assertEqual(len(rows), 3)
        for b, r in enumerate(rows):
            want = np.array(r["logits"], np.float64)
            np.testing.assert_allclose(logits[b], want, rtol=0, atol=1e-5 * np.abs(want).max() + 1e-12)
            self.assertEqual((r["top"][0]["index"], r["top"][0]["label"]), top[b])

    def test_precision(self):
        path = os.path.join(DATA, "mae-fmnist-classifier.safetensors")
        f32, b16 = mae.Classifier.load(path), mae.Classifier.load(path)
        self.assertEqual(b16.precision, "f32")
        with self.assertRaises(ValueError):
            b16.set_precision("f16")
        with mae.Context(b16, 3):   # a live context: refused, unchanged
            with self.assertRaises(mae.Error) as e:
                b16.set_precision("bf16")
            self.assertEqual(e.exception.name, "STATE")
        self.assertEqual(b16.precision, "f32")
        b16.set_precision("bf16")
        self.assertEqual(b16.precision, "bf16")
        with self.assertRaises(mae.Error) as e:
            b16.set_precision("f32")
        self.assertEqual(e.exception.name, "UNSUPPORTED")
        with mae.Context(f32, 3) as c, mae.Context(b16, 3) as d:
            z32, z16 = f32.forward(c, self.x), b16.forward(d, self.x)
        rel = np.linalg.norm(z16 - z32) / np.linalg.norm(z32)
        self.assertGreater(rel, 0)      # computed in bf16
        self.assertLess(rel, 1e-2)      # within test_bf16's whole-model bound
        self.assertEqual(list(np.argmax(z16, axis=1)), list(np.argmax(z32, axis=1)))
        f32.close()
        b16.close()

    def test_cls_pooling_is_the_head_on_the_cls_embedding(self):
        model = mae.Model.load(os.path.join(DATA, "mae-fmnist.safetensors"))
        clf = mae.Classifier.create(model, 4, global_pool=False, seed=3)
        self.assertFalse(clf.global_pool)
        self.assertFalse(clf.has_labels)
        self.assertEqual(clf.labels, ["0", "1", "2", "3"])
        with mae.Context(clf, 3) as ctx:
            logits = clf.forward(ctx, self.x)
            feats = ctx.embed(self.x, pool="cls").astype(np.float64)
        w = clf.tensor("head.weight").reshape(4, -1).astype(np.float64)
        b = clf.tensor("head.bias").astype(np.float64)
        want = feats @ w.T + b
        mag = np.abs(feats) @ np.abs(w).T + np.abs(b)
        self.assertTrue(np.all(np.abs(logits - want) <= 1e-5 * mag + 1e-12), (logits, want))

    def test_shapes_dtypes_and_lifetimes(self):
        with mae.Context(self.clf, 3) as ctx:
            with self.assertRaisesRegex(ValueError, "float32"):
                self.clf.forward(ctx, self.x.astype(np.float64))
            with self.assertRaisesRegex(ValueError, "shape"):
                self.clf.forward(ctx, np.ascontiguousarray(self.x.transpose(0, 2, 3, 1)))   # NHWC
            with self.assertRaisesRegex(ValueError, "out="):
                self.clf.forward(ctx, self.x, out=np.empty((3, 9), np.float32))
            with self.assertRaisesRegex(ValueError, "out="):
                self.clf.forward(ctx, self.x, out=np.empty((3, 10), np.float64))
            with self.assertRaises(mae.Error) as e:   # over max_batch
                self.clf.forward(ctx, np.concatenate([self.x, self.x]))
            self.assertEqual(e.exception.name, "SHAPE")
            with self.assertRaises(ValueError):
                self.clf.set_labels(["a"])
            with self.assertRaises(mae.Error) as e:   # closing while a context runs it
                self.clf.close()
            self.assertEqual(e.exception.name, "STATE")
            np.testing.assert_array_equal(self.clf.forward(ctx, self.x), self.clf.forward(ctx, self.x))
        self.clf.close()
        with self.assertRaises(mae.Error):
            mae.Context(self.clf, 1)

    def test_one_finetuning_step_lowers_the_loss(self):
        labels = np.array([9, 1, 5], np.int32)
        with mae.Finetuner(self.clf, 3) as ft:
            cfg = ft.config
            self.assertAlmostEqual(cfg.layer_decay, 0.75)
            cfg.lr, cfg.drop_path, cfg.smoothing = 1e-3, 0.0, 0.0
            ft.config = cfg
            ft.set_threads(1)
            with self.assertRaisesRegex(ValueError, "int32"):
                ft.forward_backward(self.x, labels.astype(np.int64))
            with self.assertRaises(mae.Error) as e:
                ft.forward_backward(self.x, np.array([9, 1, 10], np.int32))
            self.assertEqual(e.exception.name, "INVALID_ARG")
            logits = np.empty((3, 10), np.float32)
            before = ft.forward_backward(self.x, labels, logits_out=logits)
            self.assertAlmostEqual(before, np.log(10), delta=0.01)   # a fresh head: uniform
            ref = logits.astype(np.float64)
            lse = np.log(np.exp(ref - ref.max(1, keepdims=True)).sum(1)) + ref.max(1)
            self.assertAlmostEqual(float(np.mean(lse - ref[np.arange(3), labels])), before, delta=1e-5)
            with self.assertRaises(mae.Error):
                self.clf.close()
            ft.step()
            self.assertEqual(ft.steps, 1)
            after = ft.forward_backward(self.x, labels)
            self.assertLess(after, before - 0.01)
            # soft targets equal to the one-hot rows give the same loss as the labels
            ft.zero_grad()
            onehot = np.eye(10, dtype=np.float32)[labels]
            self.assertAlmostEqual(ft.forward_backward(self.x, targets=onehot), after, delta=1e-6)
            ft.zero_grad()


if __name__ == "__main__":
    unittest.main()
