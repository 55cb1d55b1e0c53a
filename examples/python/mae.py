"""libmae from Python through ctypes: no build step, no dependency (numpy is used when present).

    import mae
    m = mae.Model.create("tiny", seed=42)        # or mae.Model.load("mae.safetensors")
    with mae.Context(m, max_batch=8) as c:
        c.set_seed(2)
        out = c.forward(imgs)                     # imgs: float32 [B, C, H, W]
        print(out.loss, out.mask)

Arrays: with numpy, inputs are anything np.ascontiguousarray(x, np.float32) accepts and outputs
are numpy arrays; without it, inputs are flat sequences of floats (or ctypes float arrays) and
outputs are flat lists. Errors raise mae.Error with the library's status and message.

The library is found through $MAE_LIBRARY, then lib/libmae.so.1 of this source tree, then the
system's loader path (an installed libmae).
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
    local = os.path.join(here, "..", "..", "lib", "libmae.so.1")
    if os.path.exists(local):
        return local
    return ctypes.util.find_library("mae") or "libmae.so.1"


_lib = ctypes.CDLL(_find_library())

_status = ctypes.c_int
_f32p = ctypes.POINTER(ctypes.c_float)
_i32p = ctypes.POINTER(ctypes.c_int32)
_vp = ctypes.c_void_p

STATUS_NAMES = {0: "OK", 1: "INVALID_ARG", 2: "NOMEM", 3: "IO", 4: "FORMAT", 5: "SHAPE",
                6: "UNSUPPORTED", 7: "STATE"}
OK, ERR_UNSUPPORTED = 0, 6


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
    ]

    @classmethod
    def preset(cls, name="base"):
        cfg = cls()
        _check(_lib.mae_config_init(ctypes.byref(cfg), ctypes.sizeof(cfg), name.encode()))
        return cfg

    def __repr__(self):
        return "Config(%s)" % ", ".join("%s=%r" % (f, getattr(self, f)) for f, _ in self._fields_[1:])


def _declare(name, restype, *argtypes):
    fn = getattr(_lib, name)
    fn.restype = restype
    fn.argtypes = list(argtypes)


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

def _input(x, count, what):
    """A float32 buffer of count values for C, and the object that keeps it alive."""
    if np is not None:
        a = np.ascontiguousarray(x, dtype=np.float32)
        if a.size != count:
            raise ValueError("%s has %d values, expected %d" % (what, a.size, count))
        return a.ctypes.data_as(_f32p), a
    if isinstance(x, ctypes.Array):
        if len(x) != count:
            raise ValueError("%s has %d values, expected %d" % (what, len(x), count))
        return ctypes.cast(x, _f32p), x
    values = list(x)
    if len(values) != count:
        raise ValueError("%s has %d values, expected %d" % (what, len(values), count))
    buf = (ctypes.c_float * count)(*values)
    return ctypes.cast(buf, _f32p), buf


def _output(shape):
    """An output buffer: (pointer, holder, convert) where convert() gives the user's value."""
    count = 1
    for d in shape:
        count *= d
    if np is not None:
        a = np.empty(shape, dtype=np.float32)
        return a.ctypes.data_as(_f32p), a, lambda: a
    buf = (ctypes.c_float * count)()
    return ctypes.cast(buf, _f32p), buf, lambda: list(buf)


class ForwardResult:
    """What mae_forward gives: loss (float), pred [B, L, p*p*C], mask [B, L] (1 = removed),
    latent [B, 1+keep, D] or None when not asked for."""

    def __init__(self, loss, pred, mask, latent):
        self.loss, self.pred, self.mask, self.latent = loss, pred, mask, latent


# ---- the objects --------------------------------------------------------------------------------

class Model:
    """A mae_model: config and weights. Immutable; share it between contexts and threads."""

    def __init__(self, handle):
        self._h = handle

    @classmethod
    def create(cls, config="tiny", seed=0):
        cfg = Config.preset(config) if isinstance(config, str) else config
        h = _vp()
        _check(_lib.mae_model_create(ctypes.byref(cfg), seed, ctypes.byref(h)))
        return cls(h)

    @classmethod
    def load(cls, path):
        h = _vp()
        _check(_lib.mae_model_load(os.fsencode(path), ctypes.byref(h)))
        return cls(h)

    def save(self, path, dtype="F32"):
        """Atomic safetensors save; dtype "F16" or "BF16" halves the file (round to nearest even)."""
        _check(_lib.mae_model_save_as(self._handle(), os.fsencode(path), dtype.encode()))

    @property
    def config(self):
        cfg = Config()
        cfg.struct_size = ctypes.sizeof(cfg)
        _check(_lib.mae_model_get_config(self._handle(), ctypes.byref(cfg)))
        return cfg

    @property
    def num_params(self):
        n = ctypes.c_size_t()
        _check(_lib.mae_model_num_params(self._handle(), ctypes.byref(n)))
        return n.value

    def _handle(self):
        if not self._h:
            raise Error(7, "the model was closed")
        return self._h

    def close(self):
        """Frees the model now; contexts made from it must be closed first."""
        if self._h:
            _lib.mae_model_free(self._h)
            self._h = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:  # interpreter shutdown: the library may be gone already
            pass


class Context:
    """A mae_ctx: one caller's workspace for batches up to max_batch. Keeps its model alive."""

    def __init__(self, model, max_batch=1):
        self.model = model
        h = _vp()
        _check(_lib.mae_ctx_create(model._handle(), max_batch, ctypes.byref(h)))
        self._h = h
        self.max_batch = max_batch
        cfg = model.config
        self.channels, self.height, self.width = cfg.in_chans, cfg.img_height, cfg.img_width
        self.embed_dim = cfg.embed_dim

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

    def forward(self, imgs, batch=None, noise=None, latent=False):
        """One MAE forward pass on imgs [B, C, H, W]; noise [B, L] or None (the context's RNG).
        batch defaults to imgs.shape[0] with numpy, else to len(imgs) / (C*H*W)."""
        per_image = self.channels * self.height * self.width
        if batch is None:
            if np is not None:
                batch = int(np.asarray(imgs).size // per_image)
            else:
                batch = len(imgs) // per_image
        L, keep, P = self.dims()
        imgs_p, imgs_keep = _input(imgs, batch * per_image, "imgs")
        noise_p, noise_keep = (None, None) if noise is None else _input(noise, batch * L, "noise")
        pred_p, _, pred_get = _output((batch, L, P))
        mask_p, _, mask_get = _output((batch, L))
        lat_p, lat_get = None, None
        if latent:
            lat_p, _, lat_get = _output((batch, 1 + keep, self.embed_dim))
        loss = ctypes.c_float()
        _check(_lib.mae_forward(self._handle(), imgs_p, batch, noise_p, ctypes.pointer(loss), pred_p, mask_p, lat_p))
        del imgs_keep, noise_keep
        return ForwardResult(loss.value, pred_get(), mask_get(), lat_get() if latent else None)

    def _handle(self):
        if not self._h:
            raise Error(7, "the context was closed")
        return self._h

    def close(self):
        if self._h:
            _lib.mae_ctx_free(self._h)
            self._h = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:  # interpreter shutdown: the library may be gone already
            pass


class Trainer:
    """A mae_trainer: pretraining of a model in place (backward pass, AdamW with the official
    schedule; the settings are mae_train_config_init's defaults). Use the model elsewhere only
    between steps."""

    def __init__(self, model, max_batch=1):
        self.model = model
        h = _vp()
        _check(_lib.mae_trainer_create(model._handle(), max_batch, ctypes.byref(h)))
        self._h = h
        cfg = model.config
        self._per_image = cfg.in_chans * cfg.img_height * cfg.img_width

    def set_seed(self, seed):
        _check(_lib.mae_trainer_set_seed(self._handle(), seed))

    def set_threads(self, n):
        _check(_lib.mae_trainer_set_threads(self._handle(), n))

    def forward_backward(self, imgs, batch=None, noise=None):
        """Adds the gradients of the MAE loss on imgs [B, C, H, W]; returns the loss."""
        if batch is None:
            batch = int((np.asarray(imgs).size if np is not None else len(imgs)) // self._per_image)
        imgs_p, imgs_keep = _input(imgs, batch * self._per_image, "imgs")
        noise_p, noise_keep = None, None
        if noise is not None:
            L = (self.model.config.img_height // self.model.config.patch_size) * \
                (self.model.config.img_width // self.model.config.patch_size)
            noise_p, noise_keep = _input(noise, batch * L, "noise")
        loss = ctypes.c_float()
        _check(_lib.mae_trainer_forward_backward(self._handle(), imgs_p, batch, noise_p, ctypes.pointer(loss)))
        del imgs_keep, noise_keep
        return loss.value

    def step(self):
        """One AdamW step with the scheduled learning rate; the gradients are then zeroed."""
        _check(_lib.mae_trainer_step(self._handle()))

    @property
    def steps(self):
        n = ctypes.c_int64()
        _check(_lib.mae_trainer_get_step(self._handle(), ctypes.byref(n)))
        return n.value

    @property
    def lr(self):
        v = ctypes.c_double()
        _check(_lib.mae_trainer_get_lr(self._handle(), ctypes.byref(v)))
        return v.value

    def save(self, path):
        _check(_lib.mae_trainer_save(self._handle(), os.fsencode(path)))

    def load(self, path):
        _check(_lib.mae_trainer_load(self._handle(), os.fsencode(path)))

    def _handle(self):
        if not self._h:
            raise Error(7, "the trainer was closed")
        return self._h

    def close(self):
        if self._h:
            _lib.mae_trainer_free(self._h)
            self._h = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:  # interpreter shutdown: the library may be gone already
            pass
