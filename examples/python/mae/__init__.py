"""libmae from Python through ctypes: no compiled extension, no dependency (numpy is used when
present). Install with `python3 -m pip install --no-index --no-build-isolation examples/python`.

    import mae
    m = mae.Model.load("examples/data/mae-fmnist.safetensors")   # or mae.Model.create("tiny")
    with mae.Context(m, max_batch=8) as c:
        feats = c.embed(imgs, pool="mean")        # imgs: float32 [B, C, H, W] -> [B, D]
        out = c.forward(imgs)                     # the MAE pass: loss, pred, mask
        print(out.loss, out.mask)
    clf = mae.Classifier.create(m, num_classes=10)   # or mae.Classifier.load(fine_tuned_file)
    with mae.Context(clf, max_batch=8) as c:
        logits = clf.forward(c, imgs)             # [B, 10]

Arrays: with numpy, an input must be a float32 array of exactly the documented shape ([B, C, H, W]
for images: an NHWC array, or a flat one, of the same size is refused with ValueError) and any
other dtype is refused too (convert explicitly: x.astype(np.float32)); a non-contiguous float32
array is copied. Outputs are new numpy arrays, or go into out= (a C-contiguous float32 array of
the exact shape). Without numpy, inputs are flat sequences of floats (or ctypes float arrays) and
outputs are flat lists. Errors raise mae.Error with the library's status and message.

Lifetimes: a Context or Trainer keeps its Model alive, a Context or Finetuner its Classifier;
close() of a model or classifier while one of them is open raises mae.Error (STATE) instead of
freeing weights still in use.

The library is found through load_library(path) (call it before anything else), then
$MAE_LIBRARY, then lib/libmae.so.1 of a source tree this package sits in, then the system's loader
path (an installed libmae, e.g. `make install`).
"""
import ctypes
import ctypes.util
import os

try:
    import numpy as np
except ImportError:  # the binding works without numpy, with lists
    np = None

# ---- loading the library ---------------------------------------------------------------------


def _find_library():
    env = os.environ.get("MAE_LIBRARY")
    if env:
        return env
    here = os.path.dirname(os.path.abspath(__file__))
    local = os.path.join(here, "..", "..", "..", "lib", "libmae.so.1")   # examples/python/mae/
    if os.path.exists(local):
        return local
    return ctypes.util.find_library("mae") or "libmae.so.1"


_lib = None


def load_library(path=None):
    """Loads libmae from path (or finds it, see above) and declares its functions. Called on
    import; call it again with an explicit path to use another build."""
    global _lib
    name = path or _find_library()
    try:
        _lib = ctypes.CDLL(name)
    except OSError as e:
        raise ImportError("mae: cannot load libmae (%s): build it with `make` and set MAE_LIBRARY to "
                          "lib/libmae.so.1, or `make install` it" % e) from e
    _declare_all()
    return _lib

_status = ctypes.c_int
_f32p = ctypes.POINTER(ctypes.c_float)
_i32p = ctypes.POINTER(ctypes.c_int32)
_vp = ctypes.c_void_p

STATUS_NAMES = {0: "OK", 1: "INVALID_ARG", 2: "NOMEM", 3: "IO", 4: "FORMAT", 5: "SHAPE",
                6: "UNSUPPORTED", 7: "STATE", 8: "ABORTED"}
OK, ERR_UNSUPPORTED, ERR_STATE, ERR_ABORTED = 0, 6, 7, 8
POOLS = {"cls": 0, "mean": 1, "tokens": 2}
FILTERS = {"nearest": 0, "bilinear": 1, "bicubic": 2}
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
FASHION_MNIST_MEAN, FASHION_MNIST_STD = (0.2860,), (0.3530,)


class Config(ctypes.Structure):
    """mae_config, field for field (include/mae.h). Only ever appended to."""
    _fields_ = [
        ("struct_size", ctypes.c_uint32),
        ("img_size", ctypes.c_int32),
        ("patch_size", ctypes.c_int32),
        ("in_chans", ctypes.c_int32),
        ("embed_dim", ctypes.c_int32),
        ("depth", ctypes.c_int32),
        ("num_heads", ctypes.c_int32),
        ("decoder_embed_dim", ctypes.c_int32),
        ("decoder_depth", ctypes.c_int32),
        ("decoder_num_heads", ctypes.c_int32),
        ("mlp_ratio", ctypes.c_float),
        ("norm_pix_loss", ctypes.c_int32),
        ("mask_ratio", ctypes.c_float),
        ("layer_norm_eps", ctypes.c_float),
        ("img_height", ctypes.c_int32),
        ("img_width", ctypes.c_int32),
        ("decoder_mlp_hidden", ctypes.c_int32),   # 1.1; 0: decoder_embed_dim * mlp_ratio
        ("qkv_bias", ctypes.c_int32),             # 1.1; 1: q/k/v biases (MAE's)
    ]

    @classmethod
    def preset(cls, name="base"):
        """mae_config_init's preset: "base", "large", "huge" or "tiny"."""
        cfg = cls()
        _check(_lib.mae_config_init(ctypes.byref(cfg), ctypes.sizeof(cfg), name.encode()))
        return cfg

    def __repr__(self):
        return "Config(%s)" % ", ".join("%s=%r" % (f, getattr(self, f)) for f, _ in self._fields_[1:])


class FinetuneConfig(ctypes.Structure):
    """mae_finetune_config, field for field (include/mae.h); Finetuner.config gives one filled
    with main_finetune.py's defaults. Only ever appended to."""
    _fields_ = [
        ("struct_size", ctypes.c_uint32),
        ("accum_iter", ctypes.c_int32),
        ("blr", ctypes.c_double),
        ("lr", ctypes.c_double),
        ("min_lr", ctypes.c_double),
        ("weight_decay", ctypes.c_double),
        ("layer_decay", ctypes.c_double),
        ("beta1", ctypes.c_double),
        ("beta2", ctypes.c_double),
        ("eps", ctypes.c_double),
        ("warmup_epochs", ctypes.c_double),
        ("epochs", ctypes.c_double),
        ("iters_per_epoch", ctypes.c_int32),
        ("batch_size", ctypes.c_int32),
        ("world_size", ctypes.c_int32),
        ("smoothing", ctypes.c_float),
        ("clip_grad", ctypes.c_float),
        ("drop_path", ctypes.c_float),
    ]

    def __repr__(self):
        return "FinetuneConfig(%s)" % ", ".join("%s=%r" % (f, getattr(self, f)) for f, _ in self._fields_[1:])


class LoadOptions(ctypes.Structure):
    """mae_load_options, field for field (include/mae.h). Only ever appended to."""
    _fields_ = [
        ("struct_size", ctypes.c_uint32),
        ("precision", ctypes.c_int32),
        ("progress", ctypes.c_void_p),        # a mae_progress_fn, or None
        ("progress_user", ctypes.c_void_p),
    ]


def _declare(name, restype, *argtypes):
    """Sets a function's C signature: ctypes then converts and checks every argument."""
    fn = getattr(_lib, name)
    fn.restype = restype
    fn.argtypes = list(argtypes)


_abort_fn = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p)
_progress_fn = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_int, ctypes.c_int)


def _declare_all():
    _declare("mae_status_str", ctypes.c_char_p, _status)
    _declare("mae_last_error", ctypes.c_char_p)
    _declare("mae_version_string", ctypes.c_char_p)
    _declare("mae_kernels_name", ctypes.c_char_p)
    _declare("mae_config_init", _status, ctypes.POINTER(Config), ctypes.c_size_t, ctypes.c_char_p)
    _declare("mae_model_create", _status, ctypes.POINTER(Config), ctypes.c_uint64, ctypes.POINTER(_vp))
    _declare("mae_model_load", _status, ctypes.c_char_p, ctypes.POINTER(_vp))
    _declare("mae_model_save", _status, _vp, ctypes.c_char_p)
    _declare("mae_model_save_as", _status, _vp, ctypes.c_char_p, ctypes.c_char_p)
    _declare("mae_model_free", None, _vp)
    _declare("mae_model_get_config", _status, _vp, ctypes.POINTER(Config))
    _declare("mae_model_num_params", _status, _vp, ctypes.POINTER(ctypes.c_size_t))
    _declare("mae_model_set_precision", _status, _vp, ctypes.c_int)
    _declare("mae_model_get_precision", _status, _vp, ctypes.POINTER(ctypes.c_int))
    _declare("mae_ctx_create", _status, _vp, ctypes.c_int, ctypes.POINTER(_vp))
    _declare("mae_ctx_free", None, _vp)
    _declare("mae_ctx_set_mask_ratio", _status, _vp, ctypes.c_float)
    _declare("mae_ctx_set_seed", _status, _vp, ctypes.c_uint64)
    _declare("mae_ctx_set_threads", _status, _vp, ctypes.c_int)
    _declare("mae_ctx_get_dims", _status, _vp, ctypes.POINTER(ctypes.c_int), ctypes.POINTER(ctypes.c_int),
             ctypes.POINTER(ctypes.c_int))
    _declare("mae_forward", _status, _vp, _f32p, ctypes.c_int, _f32p, _f32p, _f32p, _f32p, _f32p)
    _declare("mae_trainer_create", _status, _vp, ctypes.c_int, ctypes.POINTER(_vp))
    _declare("mae_trainer_free", None, _vp)
    _declare("mae_trainer_set_seed", _status, _vp, ctypes.c_uint64)
    _declare("mae_trainer_set_threads", _status, _vp, ctypes.c_int)
    _declare("mae_trainer_forward_backward", _status, _vp, _f32p, ctypes.c_int, _f32p, _f32p)
    _declare("mae_trainer_step", _status, _vp)
    _declare("mae_trainer_get_step", _status, _vp, ctypes.POINTER(ctypes.c_int64))
    _declare("mae_trainer_get_lr", _status, _vp, ctypes.POINTER(ctypes.c_double))
    _declare("mae_trainer_save", _status, _vp, ctypes.c_char_p)
    _declare("mae_trainer_load", _status, _vp, ctypes.c_char_p)

    _declare("mae_model_has_decoder", _status, _vp, ctypes.POINTER(ctypes.c_int))
    _declare("mae_model_embed_dims", _status, _vp, ctypes.POINTER(ctypes.c_int), ctypes.POINTER(ctypes.c_int))
    _declare("mae_embed", _status, _vp, _f32p, ctypes.c_int, ctypes.c_int, _f32p)
    _declare("mae_ctx_memory", _status, _vp, ctypes.c_int, ctypes.c_int, ctypes.POINTER(ctypes.c_size_t))
    _declare("mae_images_to_input", _status, _vp, ctypes.c_int, ctypes.POINTER(ctypes.c_void_p),
             ctypes.POINTER(ctypes.c_int), ctypes.POINTER(ctypes.c_int), ctypes.POINTER(ctypes.c_int),
             ctypes.c_void_p, ctypes.c_int, ctypes.c_int, _f32p, _f32p, _f32p)
    _declare("mae_model_load_progress", _status, ctypes.c_char_p, _progress_fn, _vp, ctypes.POINTER(_vp))
    _declare("mae_model_load_memory", _status, ctypes.c_void_p, ctypes.c_size_t, ctypes.POINTER(_vp))
    _declare("mae_load_options_init", _status, ctypes.POINTER(LoadOptions), ctypes.c_size_t)
    _declare("mae_model_load_with", _status, ctypes.c_char_p, ctypes.POINTER(LoadOptions), ctypes.POINTER(_vp))
    _declare("mae_model_load_memory_with", _status, ctypes.c_void_p, ctypes.c_size_t, ctypes.POINTER(LoadOptions),
             ctypes.POINTER(_vp))
    _declare("mae_ctx_set_abort", _status, _vp, _abort_fn, _vp)
    _declare("mae_trainer_set_abort", _status, _vp, _abort_fn, _vp)
    _declare("mae_trainer_set_progress", _status, _vp, _progress_fn, _vp)
    _declare("mae_image_load", _status, ctypes.c_char_p, ctypes.c_int, ctypes.POINTER(ctypes.c_void_p),
             ctypes.POINTER(ctypes.c_int), ctypes.POINTER(ctypes.c_int), ctypes.POINTER(ctypes.c_int))
    _declare("mae_image_free", None, ctypes.c_void_p)

    _declare("mae_classifier_create", _status, _vp, ctypes.c_int, ctypes.c_int, ctypes.c_uint64, ctypes.POINTER(_vp))
    _declare("mae_classifier_load", _status, ctypes.c_char_p, ctypes.c_int, ctypes.POINTER(_vp))
    _declare("mae_classifier_save", _status, _vp, ctypes.c_char_p)
    _declare("mae_classifier_free", None, _vp)
    _declare("mae_classifier_model", _status, _vp, ctypes.POINTER(_vp))
    _declare("mae_classifier_num_classes", _status, _vp, ctypes.POINTER(ctypes.c_int))
    _declare("mae_classifier_global_pool", _status, _vp, ctypes.POINTER(ctypes.c_int))
    _declare("mae_classifier_label", _status, _vp, ctypes.c_int, ctypes.POINTER(ctypes.c_char_p))
    _declare("mae_classifier_has_labels", _status, _vp, ctypes.POINTER(ctypes.c_int))
    _declare("mae_classifier_set_labels", _status, _vp, ctypes.POINTER(ctypes.c_char_p))
    _declare("mae_classifier_set_precision", _status, _vp, ctypes.c_int)
    _declare("mae_classifier_get_precision", _status, _vp, ctypes.POINTER(ctypes.c_int))
    _declare("mae_classifier_tensor", _status, _vp, ctypes.c_char_p, ctypes.POINTER(_f32p),
             ctypes.POINTER(ctypes.c_size_t))
    _declare("mae_classifier_forward", _status, _vp, _vp, _f32p, ctypes.c_int, _f32p)
    _declare("mae_finetune_config_init", _status, ctypes.POINTER(FinetuneConfig), ctypes.c_size_t)
    _declare("mae_finetuner_create", _status, _vp, ctypes.c_int, ctypes.POINTER(_vp))
    _declare("mae_finetuner_free", None, _vp)
    _declare("mae_finetuner_set_config", _status, _vp, ctypes.POINTER(FinetuneConfig))
    _declare("mae_finetuner_get_config", _status, _vp, ctypes.POINTER(FinetuneConfig))
    _declare("mae_finetuner_set_threads", _status, _vp, ctypes.c_int)
    _declare("mae_finetuner_set_seed", _status, _vp, ctypes.c_uint64)
    _declare("mae_finetuner_forward_backward", _status, _vp, _f32p, ctypes.c_int, _i32p, _f32p, _f32p, _f32p)
    _declare("mae_finetuner_step", _status, _vp)
    _declare("mae_finetuner_zero_grad", _status, _vp)
    _declare("mae_finetuner_get_step", _status, _vp, ctypes.POINTER(ctypes.c_int64))
    _declare("mae_finetuner_get_lr", _status, _vp, ctypes.POINTER(ctypes.c_double))
    _declare("mae_finetuner_save", _status, _vp, ctypes.c_char_p)
    _declare("mae_finetuner_load", _status, _vp, ctypes.c_char_p)


load_library()

class Error(Exception):
    """A failed libmae call: .status (int), .name ("SHAPE", ...), and the library's message."""

    def __init__(self, status, message):
        self.status = status
        self.name = STATUS_NAMES.get(status, str(status))
        super().__init__("%s: %s" % (self.name, message))


def _check(status):
    if status != OK:
        raise Error(status, _lib.mae_last_error().decode(errors="replace"))


def version():
    return _lib.mae_version_string().decode()


def kernels():
    return _lib.mae_kernels_name().decode()


# ---- arrays in and out --------------------------------------------------------------------------

def _count(shape):
    n = 1
    for d in shape:
        n *= d
    return n


def _input(x, shape, what):
    """A float32 buffer of the given shape for C, and the object that keeps it alive. numpy:
    exactly that shape and dtype float32 (a copy only to make it contiguous); lists: the count."""
    count = _count(shape)
    if np is not None and isinstance(x, np.ndarray):
        if x.dtype != np.float32:
            raise ValueError("%s has dtype %s; libmae takes float32 (convert explicitly: x.astype(np.float32))"
                             % (what, x.dtype))
        if tuple(x.shape) != tuple(shape):
            raise ValueError("%s has shape %s, expected %s" % (what, tuple(x.shape), tuple(shape)))
        a = np.ascontiguousarray(x)
        return a.ctypes.data_as(_f32p), a
    if isinstance(x, ctypes.Array):
        if len(x) != count:
            raise ValueError("%s has %d values, expected %d" % (what, len(x), count))
        return ctypes.cast(x, _f32p), x
    values = [float(v) for v in x]
    if len(values) != count:
        raise ValueError("%s has %d values, expected %d %s" % (what, len(values), count, tuple(shape)))
    buf = (ctypes.c_float * count)(*values)
    return ctypes.cast(buf, _f32p), buf


def _output(shape, out=None, what="out"):
    """An output buffer: (pointer, holder, convert) where convert() gives the user's value.
    out: a caller's C-contiguous float32 numpy array of exactly shape, written in place."""
    if out is not None:
        if np is None or not isinstance(out, np.ndarray):
            raise ValueError("%s= must be a numpy array" % what)
        if out.dtype != np.float32 or tuple(out.shape) != tuple(shape) or not out.flags["C_CONTIGUOUS"] \
                or not out.flags["WRITEABLE"]:
            raise ValueError("%s= must be a writeable C-contiguous float32 array of shape %s (got %s %s)"
                             % (what, tuple(shape), out.dtype, tuple(out.shape)))
        return out.ctypes.data_as(_f32p), out, lambda: out
    if np is not None:
        a = np.empty(shape, dtype=np.float32)
        return a.ctypes.data_as(_f32p), a, lambda: a
    buf = (ctypes.c_float * _count(shape))()
    return ctypes.cast(buf, _f32p), buf, lambda: list(buf)


def _batch_of(x, per_image):
    """The batch of an image input: shape[0] of an array, len / per_image of a flat list."""
    if np is not None and isinstance(x, np.ndarray):
        if x.ndim != 4:
            raise ValueError("images must be [B, C, H, W], got shape %s" % (tuple(x.shape),))
        return int(x.shape[0])
    n = len(x)
    if n % per_image:
        raise ValueError("%d values is not a whole number of images of %d values" % (n, per_image))
    return n // per_image


class ForwardResult:
    """What mae_forward gives: loss (float, None without a decoder), pred [B, L, p*p*C] (None
    without a decoder), mask [B, L] (1 = removed), latent [B, 1+keep, D] or None."""

    def __init__(self, loss, pred, mask, latent):
        self.loss, self.pred, self.mask, self.latent = loss, pred, mask, latent


# ---- the objects --------------------------------------------------------------------------------

class _Closing:
    """`with` closes: each subclass says what close() does."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class _Owner(_Closing):
    """A handle that contexts (trainers, finetuners) made from it use: close() refuses while any
    is open, and the garbage collector frees it only when none is."""

    # subclasses name their C free function and their users
    _FREE = None
    _IN_USE = "the handle is in use by %d open object(s): close them first"

    def close(self):
        if self._users:
            raise Error(ERR_STATE, self._IN_USE % self._users)
        if self._h:
            getattr(_lib, self._FREE)(self._h)
            self._h = None

    def __del__(self):
        try:
            if self._h and not self._users:
                getattr(_lib, self._FREE)(self._h)
                self._h = None
        except Exception:  # interpreter shutdown: the library may be gone already
            pass


class Model(_Owner):
    """A mae_model: config and weights. Immutable; share it between contexts and threads."""

    _FREE = "mae_model_free"
    _IN_USE = "the model is in use by %d open context(s)/trainer(s): close them first"

    def __init__(self, handle):
        self._h = handle
        self._users = 0   # open contexts and trainers: close() refuses while any is open

    @classmethod
    def create(cls, config="tiny", seed=0):
        cfg = Config.preset(config) if isinstance(config, str) else config
        h = _vp()
        _check(_lib.mae_model_create(ctypes.byref(cfg), seed, ctypes.byref(h)))
        return cls(h)

    @classmethod
    def _load_options(cls, precision):
        if precision not in cls._PRECISIONS:
            raise ValueError(f"precision must be 'f32' or 'bf16', not {precision!r}")
        o = LoadOptions()
        _check(_lib.mae_load_options_init(ctypes.byref(o), ctypes.sizeof(o)))
        o.precision = cls._PRECISIONS.index(precision)
        return o

    @classmethod
    def load(cls, path, progress=None, precision="f32"):
        """Loads a safetensors file. progress(done, total) is called after each tensor; returning
        True cancels the load (mae.Error ABORTED, nothing kept). precision "bf16" reads the file
        straight into a bf16 model (each weight rounded as it is read, the float32 weights never
        held): the model that load() then set_precision("bf16") gives, bit for bit."""
        o = cls._load_options(precision)
        h = _vp()
        errors = []
        if progress is not None:
            def tick(user, done, total):
                try:
                    return 1 if progress(done, total) else 0
                except BaseException as e:  # an exception cannot cross C: cancel, re-raise after
                    errors.append(e)
                    return 1
            cb = _progress_fn(tick)   # kept alive until the call returns
            o.progress = ctypes.cast(cb, ctypes.c_void_p)
        s = _lib.mae_model_load_with(os.fsencode(path), ctypes.byref(o), ctypes.byref(h))
        if errors:
            raise errors[0]
        _check(s)
        return cls(h)

    @classmethod
    def from_bytes(cls, data, precision="f32"):
        """Loads a safetensors file from its bytes (bytes, bytearray, memoryview or any contiguous
        buffer): the same checks and precision as load. The model keeps nothing of data."""
        o = cls._load_options(precision)
        mv = memoryview(data)
        if not mv.c_contiguous:
            raise ValueError("Model.from_bytes needs a contiguous buffer")
        mv = mv.cast("B")
        if mv.readonly:   # bytes go to C without a copy; other read-only buffers are copied once
            raw = ctypes.c_char_p(data if isinstance(data, bytes) else mv.tobytes())
        else:
            raw = (ctypes.c_char * mv.nbytes).from_buffer(mv)
        h = _vp()
        _check(_lib.mae_model_load_memory_with(ctypes.cast(raw, ctypes.c_void_p), mv.nbytes, ctypes.byref(o),
                                               ctypes.byref(h)))
        return cls(h)

    def save(self, path, dtype=None):
        """Atomic safetensors save; dtype "F16" or "BF16" halves the file (round to nearest even).
        None: F32, or BF16 for a model that computes in bf16 (mae_model_save)."""
        if dtype is None:
            _check(_lib.mae_model_save(self._handle(), os.fsencode(path)))
        else:
            _check(_lib.mae_model_save_as(self._handle(), os.fsencode(path), dtype.encode()))

    _PRECISIONS = ("f32", "bf16")   # MAE_PRECISION_F32, MAE_PRECISION_BF16

    @property
    def precision(self):
        """"f32" or "bf16": what the linear layers compute in (docs/PRECISION.md)."""
        v = ctypes.c_int()
        _check(_lib.mae_model_get_precision(self._handle(), ctypes.byref(v)))
        return self._PRECISIONS[v.value]

    def set_precision(self, precision):
        """"bf16": linear weights held once as bf16, products summed in float32. Before any
        Context or Trainer on this model; it cannot go back to "f32" (load the file again)."""
        if precision not in self._PRECISIONS:
            raise ValueError(f"precision must be 'f32' or 'bf16', not {precision!r}")
        _check(_lib.mae_model_set_precision(self._handle(), self._PRECISIONS.index(precision)))

    @property
    def config(self):
        cfg = Config()
        cfg.struct_size = ctypes.sizeof(cfg)
        _check(_lib.mae_model_get_config(self._model_handle(), ctypes.byref(cfg)))
        return cfg

    @property
    def num_params(self):
        n = ctypes.c_size_t()
        _check(_lib.mae_model_num_params(self._handle(), ctypes.byref(n)))
        return n.value

    @property
    def has_decoder(self):
        v = ctypes.c_int()
        _check(_lib.mae_model_has_decoder(self._model_handle(), ctypes.byref(v)))
        return bool(v.value)

    @property
    def embed_dims(self):
        """(D, 1 + L): floats per pooled embedding, tokens per image with pool="tokens"."""
        d, t = ctypes.c_int(), ctypes.c_int()
        _check(_lib.mae_model_embed_dims(self._model_handle(), ctypes.byref(d), ctypes.byref(t)))
        return d.value, t.value

    def context_memory(self, max_batch, threads=0):
        """Bytes a Context(self, max_batch) allocates (threads 0: its default thread count)."""
        n = ctypes.c_size_t()
        _check(_lib.mae_ctx_memory(self._handle(), max_batch, threads, ctypes.byref(n)))
        return n.value

    def images_to_input(self, images, mean=None, std=None, filter="bicubic", center_crop=True, out=None):
        """A list of 8-bit HWC (or HW) numpy arrays of any sizes, gray/RGB/RGBA -> the model's
        input float32 [B, C, H, W], resized/cropped as mae_image_to_input, then (v/255-mean)/std."""
        if np is None:
            raise Error(6, "images_to_input needs numpy")
        cfg = self.config
        C, H, W = cfg.in_chans, cfg.img_height, cfg.img_width
        keep, ptrs, ws, hs, cs = [], [], [], [], []
        for i, im in enumerate(images):
            if not isinstance(im, np.ndarray) or im.dtype != np.uint8 or im.ndim not in (2, 3):
                raise ValueError("image %d must be a uint8 array [H, W] or [H, W, channels]" % i)
            a = np.ascontiguousarray(im)
            keep.append(a)
            ptrs.append(a.ctypes.data)
            hs.append(a.shape[0])
            ws.append(a.shape[1])
            cs.append(1 if a.ndim == 2 else a.shape[2])
        B = len(keep)
        if B == 0:
            raise ValueError("no images")
        arr = lambda t, v: (t * B)(*v)
        mp = sp = None
        if mean is not None:
            mp, mkeep = _input(np.asarray(mean, dtype=np.float32), (C,), "mean")
        if std is not None:
            sp, skeep = _input(np.asarray(std, dtype=np.float32), (C,), "std")
        out_p, _, get = _output((B, C, H, W), out)
        _check(_lib.mae_images_to_input(self._model_handle(), B, arr(ctypes.c_void_p, ptrs), arr(ctypes.c_int, ws),
                                        arr(ctypes.c_int, hs), arr(ctypes.c_int, cs), None,
                                        FILTERS[filter], 1 if center_crop else 0, mp, sp, out_p))
        return get()

    def _handle(self):
        if not self._h:
            raise Error(ERR_STATE, "the model was closed")
        return self._h

    _model_handle = _handle   # the mae_model a Context runs (a Classifier gives its encoder's)

    def close(self):
        """Frees the model now. Raises mae.Error (STATE) while a context or trainer made from it
        is open: close those first (or just drop all references and let them go together)."""
        _Owner.close(self)


class _User(_Closing):
    """A handle that needs its model alive: holds a reference and counts itself in model._users."""

    def _attach(self, model):
        model._handle()
        self.model = model
        model._users += 1

    def _detach(self):
        if getattr(self, "model", None) is not None:
            self.model._users -= 1
            self.model = None

    # subclasses name themselves and their C free function
    _KIND = "handle"
    _FREE = None

    def _handle(self):
        if not getattr(self, "_h", None):
            raise Error(ERR_STATE, "the %s was closed" % self._KIND)
        return self._h

    def close(self):
        if getattr(self, "_h", None):
            getattr(_lib, self._FREE)(self._h)
            self._h = None
        self._detach()

    def __del__(self):
        try:
            self.close()
        except Exception:  # interpreter shutdown: the library may be gone already
            pass


class Context(_User):
    """A mae_ctx: one caller's workspace for batches up to max_batch. Keeps its model alive.
    Context(classifier) makes one for Classifier.forward (and its encoder's embed)."""

    _KIND, _FREE = "context", "mae_ctx_free"

    def __init__(self, model, max_batch=1):
        h = _vp()
        _check(_lib.mae_ctx_create(model._model_handle(), max_batch, ctypes.byref(h)))
        self._h = h
        self._attach(model)
        self.max_batch = max_batch
        cfg = model.config
        self.channels, self.height, self.width = cfg.in_chans, cfg.img_height, cfg.img_width
        self.embed_dim = cfg.embed_dim
        self.has_decoder = model.has_decoder
        self._abort = None

    def dims(self):
        """(num_patches, keep, patch_dim) for the current mask ratio."""
        L, keep, P = ctypes.c_int(), ctypes.c_int(), ctypes.c_int()
        _check(_lib.mae_ctx_get_dims(self._handle(), ctypes.byref(L), ctypes.byref(keep), ctypes.byref(P)))
        return L.value, keep.value, P.value

    def set_seed(self, seed):
        _check(_lib.mae_ctx_set_seed(self._handle(), seed))

    def set_mask_ratio(self, ratio):
        _check(_lib.mae_ctx_set_mask_ratio(self._handle(), ratio))

    def set_threads(self, n):
        _check(_lib.mae_ctx_set_threads(self._handle(), n))

    def set_abort(self, fn):
        """fn() -> True cancels a running call between blocks or, inside them, between tiles of the
        matrix products (mae.Error ABORTED); None clears. It is asked thousands of times a call.
        fn runs on the calling thread (ctypes takes the GIL for it): keep it cheap, e.g. read a
        threading.Event that another thread sets."""
        self._abort = _abort_fn() if fn is None else _abort_fn(lambda user: 1 if fn() else 0)
        _check(_lib.mae_ctx_set_abort(self._handle(), self._abort, None))

    def _images(self, imgs, batch):
        per_image = self.channels * self.height * self.width
        if batch is None:
            batch = _batch_of(imgs, per_image)
        return batch, _input(imgs, (batch, self.channels, self.height, self.width), "imgs")

    def forward(self, imgs, batch=None, noise=None, latent=False):
        """One MAE forward pass on imgs [B, C, H, W]; noise [B, L] or None (the context's RNG).
        Without a decoder (an encoder-only file) only mask and latent are computed. For features
        use embed(): latent here is in the masker's shuffled order, as the official code's."""
        batch, (imgs_p, imgs_keep) = self._images(imgs, batch)
        L, keep, P = self.dims()
        noise_p, noise_keep = (None, None) if noise is None else _input(noise, (batch, L), "noise")
        pred_p, pred_get = None, lambda: None
        loss = ctypes.c_float()
        loss_p = None
        if self.has_decoder:
            pred_p, _, pred_get = _output((batch, L, P))
            loss_p = ctypes.pointer(loss)
        mask_p, _, mask_get = _output((batch, L))
        lat_p, lat_get = None, lambda: None
        if latent or not self.has_decoder:
            lat_p, _, lat_get = _output((batch, 1 + keep, self.embed_dim))
        _check(_lib.mae_forward(self._handle(), imgs_p, batch, noise_p, loss_p, pred_p, mask_p, lat_p))
        del imgs_keep, noise_keep
        return ForwardResult(loss.value if loss_p else None, pred_get(), mask_get(), lat_get())

    def embed(self, imgs, pool="cls", batch=None, out=None):
        """Features of imgs [B, C, H, W] in image order, no masking (works without a decoder):
        pool "cls" -> [B, D], "mean" (of the patch tokens) -> [B, D], "tokens" -> [B, 1+L, D]."""
        if pool not in POOLS:
            raise ValueError("pool must be one of %s, got %r" % (sorted(POOLS), pool))
        batch, (imgs_p, imgs_keep) = self._images(imgs, batch)
        L = self.dims()[0]
        shape = (batch, 1 + L, self.embed_dim) if pool == "tokens" else (batch, self.embed_dim)
        out_p, _, get = _output(shape, out)
        _check(_lib.mae_embed(self._handle(), imgs_p, batch, POOLS[pool], out_p))
        del imgs_keep
        return get()



class _Optimizing(_User):
    """The step, schedule and checkpoint calls a trainer and a finetuner share (_C names the C
    object: "mae_trainer" or "mae_finetuner")."""

    _C = None

    def _call(self, name, *args):
        _check(getattr(_lib, self._C + "_" + name)(self._handle(), *args))

    def step(self):
        """One AdamW step with the scheduled learning rate; the gradients are then zeroed."""
        self._call("step")

    @property
    def steps(self):
        n = ctypes.c_int64()
        self._call("get_step", ctypes.byref(n))
        return n.value

    @property
    def lr(self):
        v = ctypes.c_double()
        self._call("get_lr", ctypes.byref(v))
        return v.value

    def save(self, path):
        self._call("save", os.fsencode(path))

    def load(self, path):
        self._call("load", os.fsencode(path))


class Trainer(_Optimizing):
    """A mae_trainer: pretraining of a model in place (backward pass, AdamW with the official
    schedule; the settings are mae_train_config_init's defaults). Use the model elsewhere only
    between steps."""

    _KIND, _FREE, _C = "trainer", "mae_trainer_free", "mae_trainer"

    def __init__(self, model, max_batch=1):
        h = _vp()
        _check(_lib.mae_trainer_create(model._handle(), max_batch, ctypes.byref(h)))
        self._h = h
        self._attach(model)
        cfg = model.config
        self._shape = (cfg.in_chans, cfg.img_height, cfg.img_width)
        self._L = (cfg.img_height // cfg.patch_size) * (cfg.img_width // cfg.patch_size)
        self._abort = None

    def set_seed(self, seed):
        _check(_lib.mae_trainer_set_seed(self._handle(), seed))

    def set_threads(self, n):
        _check(_lib.mae_trainer_set_threads(self._handle(), n))

    def set_abort(self, fn):
        """As Context.set_abort; a cancelled forward_backward leaves the trainer as before it."""
        self._abort = _abort_fn() if fn is None else _abort_fn(lambda user: 1 if fn() else 0)
        _check(_lib.mae_trainer_set_abort(self._handle(), self._abort, None))

    def set_progress(self, fn):
        """fn(done, total) is called by forward_backward before every block and before the
        backward pass (done = blocks run, total = depth + decoder depth + 1), then once with
        done = total; True cancels as set_abort does. None clears."""
        if fn is None:
            self._progress = _progress_fn()
        else:
            self._progress = _progress_fn(lambda user, done, total: 1 if fn(done, total) else 0)
        _check(_lib.mae_trainer_set_progress(self._handle(), self._progress, None))

    def forward_backward(self, imgs, batch=None, noise=None):
        """Adds the gradients of the MAE loss on imgs [B, C, H, W]; returns the loss."""
        if batch is None:
            batch = _batch_of(imgs, _count(self._shape))
        imgs_p, imgs_keep = _input(imgs, (batch,) + self._shape, "imgs")
        noise_p, noise_keep = (None, None) if noise is None else _input(noise, (batch, self._L), "noise")
        loss = ctypes.c_float()
        _check(_lib.mae_trainer_forward_backward(self._handle(), imgs_p, batch, noise_p, ctypes.pointer(loss)))
        del imgs_keep, noise_keep
        return loss.value




# ---- images and classification --------------------------------------------------------------------

def load_image(path, channels=0):
    """Reads a PNG or binary PGM/PPM into a uint8 numpy array [H, W, C] (channels 0: the file's;
    1..4 converts: gray, gray+alpha, RGB, RGBA)."""
    if np is None:
        raise Error(ERR_UNSUPPORTED, "load_image needs numpy")
    px = ctypes.c_void_p()
    w, h, c = ctypes.c_int(), ctypes.c_int(), ctypes.c_int()
    _check(_lib.mae_image_load(os.fsencode(path), channels, ctypes.byref(px), ctypes.byref(w), ctypes.byref(h),
                               ctypes.byref(c)))
    try:
        n = w.value * h.value * c.value
        return np.frombuffer(ctypes.string_at(px, n), dtype=np.uint8).reshape(h.value, w.value, c.value).copy()
    finally:
        _lib.mae_image_free(px)


class Classifier(_Owner):
    """A mae_classifier: an encoder and a head, images [B, C, H, W] in, logits [B, K] out.
    Immutable once made (except set_labels): share it between threads, each with its own
    Context(classifier). close() raises while a Context or Finetuner made from it is open."""

    _FREE = "mae_classifier_free"
    _IN_USE = "the classifier is in use by %d open context(s)/finetuner(s): close them first"

    def __init__(self, handle):
        self._h = handle
        self._users = 0
        k = ctypes.c_int()
        _check(_lib.mae_classifier_num_classes(handle, ctypes.byref(k)))
        self.num_classes = k.value

    @classmethod
    def create(cls, model, num_classes, global_pool=True, seed=0):
        """From a pretrained Model: its encoder copied (the model is not kept), a new head
        initialised as the official fine-tuning code does (trunc_normal std 2e-5), drawn from seed.
        global_pool: mean of the patch tokens then fc_norm (the official default), else the cls
        token after norm. The head is untrained: fine-tune it (Finetuner) or load a fine-tuned file."""
        h = _vp()
        _check(_lib.mae_classifier_create(model._handle(), num_classes, 1 if global_pool else 0, seed, ctypes.byref(h)))
        return cls(h)

    @classmethod
    def load(cls, path, num_classes=0):
        """Reads a classifier file (official fine-tuned or Hugging Face names). num_classes 0 takes
        the file's; any other value must match its head (mae.Error SHAPE otherwise)."""
        h = _vp()
        _check(_lib.mae_classifier_load(os.fsencode(path), num_classes, ctypes.byref(h)))
        return cls(h)

    def save(self, path):
        _check(_lib.mae_classifier_save(self._handle(), os.fsencode(path)))

    def _handle(self):
        if not self._h:
            raise Error(ERR_STATE, "the classifier was closed")
        return self._h

    def _model_handle(self):
        m = _vp()
        _check(_lib.mae_classifier_model(self._handle(), ctypes.byref(m)))
        return m

    # the encoder's sizes and the input conversion, as Model's
    config = Model.config
    has_decoder = Model.has_decoder
    embed_dims = Model.embed_dims
    images_to_input = Model.images_to_input

    @property
    def precision(self):
        """"f32" or "bf16": what the encoder's linears and the head compute in (docs/PRECISION.md)."""
        v = ctypes.c_int()
        _check(_lib.mae_classifier_get_precision(self._handle(), ctypes.byref(v)))
        return Model._PRECISIONS[v.value]

    def set_precision(self, precision):
        """"bf16": the classifier a bf16 Model would have made (Classifier.create), with the
        model's rules: before any Context or Finetuner on it; it cannot go back to "f32"."""
        if precision not in Model._PRECISIONS:
            raise ValueError(f"precision must be 'f32' or 'bf16', not {precision!r}")
        _check(_lib.mae_classifier_set_precision(self._handle(), Model._PRECISIONS.index(precision)))

    @property
    def global_pool(self):
        v = ctypes.c_int()
        _check(_lib.mae_classifier_global_pool(self._handle(), ctypes.byref(v)))
        return bool(v.value)

    @property
    def has_labels(self):
        v = ctypes.c_int()
        _check(_lib.mae_classifier_has_labels(self._handle(), ctypes.byref(v)))
        return bool(v.value)

    def label(self, index):
        """Class index's name: the file's or set_labels', else the index in decimal."""
        p = ctypes.c_char_p()
        _check(_lib.mae_classifier_label(self._handle(), index, ctypes.byref(p)))
        return p.value.decode(errors="replace")

    @property
    def labels(self):
        return [self.label(i) for i in range(self.num_classes)]

    def set_labels(self, names):
        """Names for all num_classes classes (non-empty, at most 255 bytes each); None clears."""
        if names is None:
            _check(_lib.mae_classifier_set_labels(self._handle(), None))
            return
        names = [n.encode() if isinstance(n, str) else bytes(n) for n in names]
        if len(names) != self.num_classes:
            raise ValueError("%d labels for %d classes" % (len(names), self.num_classes))
        _check(_lib.mae_classifier_set_labels(self._handle(), (ctypes.c_char_p * len(names))(*names)))

    def tensor(self, name):
        """A copy of a head tensor ("head.weight" [K, D], "head.bias", "fc_norm.weight",
        "fc_norm.bias") or an encoder tensor by its official name (flat; numpy or a list)."""
        data, n = _f32p(), ctypes.c_size_t()
        _check(_lib.mae_classifier_tensor(self._handle(), name.encode(), ctypes.byref(data), ctypes.byref(n)))
        if np is not None:
            return np.ctypeslib.as_array(data, shape=(n.value,)).copy() if n.value else np.zeros(0, np.float32)
        return [data[i] for i in range(n.value)]

    def forward(self, ctx, imgs, batch=None, out=None):
        """Logits [B, num_classes] of normalized imgs [B, C, H, W] (float32, exactly that shape).
        ctx is a Context(self) (the library refuses another: mae.Error INVALID_ARG); out= a
        C-contiguous float32 array [B, num_classes] written in place."""
        if not isinstance(ctx, Context):
            raise TypeError("ctx must be a mae.Context made for this classifier")
        batch, (imgs_p, imgs_keep) = ctx._images(imgs, batch)
        out_p, _, get = _output((batch, self.num_classes), out)
        _check(_lib.mae_classifier_forward(self._handle(), ctx._handle(), imgs_p, batch, out_p))
        del imgs_keep
        return get()

    def predict(self, ctx, imgs, batch=None):
        """The top class of each image: a list of (index, label)."""
        logits = self.forward(ctx, imgs, batch)
        rows = logits.tolist() if np is not None else [logits[i:i + self.num_classes]
                                                        for i in range(0, len(logits), self.num_classes)]
        best = [max(range(len(r)), key=lambda k: (r[k], -k)) for r in rows]
        return [(k, self.label(k)) for k in best]


class Finetuner(_Optimizing):
    """A mae_finetuner: fine-tunes its Classifier in place, end to end (AdamW with layer-wise lr
    decay, the official schedule, label smoothing, drop path). Keeps the classifier alive; make
    it while no Context of the classifier is open (mae.Error STATE otherwise)."""

    _KIND, _FREE, _C = "finetuner", "mae_finetuner_free", "mae_finetuner"

    def __init__(self, classifier, max_batch=1):
        h = _vp()
        _check(_lib.mae_finetuner_create(classifier._handle(), max_batch, ctypes.byref(h)))
        self._h = h
        self._attach(classifier)
        self.max_batch = max_batch
        cfg = classifier.config
        self._shape = (cfg.in_chans, cfg.img_height, cfg.img_width)
        self.num_classes = classifier.num_classes

    @property
    def config(self):
        """A copy of the settings (FinetuneConfig); change it and assign it back."""
        cfg = FinetuneConfig()
        cfg.struct_size = ctypes.sizeof(cfg)
        _check(_lib.mae_finetuner_get_config(self._handle(), ctypes.byref(cfg)))
        return cfg

    @config.setter
    def config(self, cfg):
        cfg.struct_size = ctypes.sizeof(FinetuneConfig)
        _check(_lib.mae_finetuner_set_config(self._handle(), ctypes.byref(cfg)))

    def set_threads(self, n):
        _check(_lib.mae_finetuner_set_threads(self._handle(), n))

    def set_seed(self, seed):
        """The seed of the drop path masks."""
        _check(_lib.mae_finetuner_set_seed(self._handle(), seed))

    def forward_backward(self, imgs, labels=None, targets=None, batch=None, logits_out=None):
        """Adds the gradients of the cross-entropy on imgs [B, C, H, W] with labels (int32 [B],
        class indices, smoothed by config.smoothing) or targets (float32 [B, K] soft rows, e.g.
        mixup's); returns the batch's mean loss. logits_out= a float32 [B, K] array gets the logits."""
        if (labels is None) == (targets is None):
            raise ValueError("give either labels or targets")
        if batch is None:
            batch = _batch_of(imgs, _count(self._shape))
        imgs_p, imgs_keep = _input(imgs, (batch,) + self._shape, "imgs")
        lab_p = tgt_p = keep = None
        if labels is not None:
            if np is not None and isinstance(labels, np.ndarray):
                if labels.dtype != np.int32 or labels.shape != (batch,):
                    raise ValueError("labels must be int32 [%d], got %s %s" % (batch, labels.dtype, labels.shape))
                keep = np.ascontiguousarray(labels)
                lab_p = keep.ctypes.data_as(_i32p)
            else:
                vals = [int(v) for v in labels]
                if len(vals) != batch:
                    raise ValueError("%d labels for a batch of %d" % (len(vals), batch))
                keep = (ctypes.c_int32 * batch)(*vals)
                lab_p = ctypes.cast(keep, _i32p)
        else:
            tgt_p, keep = _input(targets, (batch, self.num_classes), "targets")
        log_p = None
        if logits_out is not None:
            log_p, _, _ = _output((batch, self.num_classes), logits_out, "logits_out")
        loss = ctypes.c_float()
        _check(_lib.mae_finetuner_forward_backward(self._handle(), imgs_p, batch, lab_p, tgt_p, ctypes.pointer(loss),
                                                   log_p))
        del imgs_keep, keep
        return loss.value

    def zero_grad(self):
        _check(_lib.mae_finetuner_zero_grad(self._handle()))
