// Package mae is a cgo binding of libmae: models, contexts, the forward pass and embeddings,
// classifiers, pretraining, images to inputs, and the host hooks (abort, progress), with Go
// errors that carry the library's status and message.
//
// It builds against an installed libmae found by pkg-config (`make install PREFIX=...`, then
// PKG_CONFIG_PATH=$PREFIX/lib/pkgconfig if that prefix is not a system one); a program run
// against a non-system prefix needs LD_LIBRARY_PATH=$PREFIX/lib.
//
// Lifetimes: a Context holds a reference on its Model (or Classifier), a Trainer on its Model.
// Close with users still open only marks the object closed (no new users); its memory is freed
// when the last user is closed. A Context is for one goroutine at a time; its Close waits for a
// running call. Hooks: Go callbacks are kept in a registry and C gets only their id, so no Go
// pointer is ever stored in C (hooks.go).
package mae

/*
#cgo pkg-config: mae
#include <stdlib.h>
#include <mae.h>
*/
import "C"

import (
	"runtime"
	"sync"
	"unsafe"
)

// Status is a mae_status value; the numbers are fixed forever.
type Status int

const (
	OK             Status = C.MAE_OK
	ErrInvalidArg  Status = C.MAE_ERR_INVALID_ARG
	ErrNoMem       Status = C.MAE_ERR_NOMEM
	ErrIO          Status = C.MAE_ERR_IO
	ErrFormat      Status = C.MAE_ERR_FORMAT
	ErrShape       Status = C.MAE_ERR_SHAPE
	ErrUnsupported Status = C.MAE_ERR_UNSUPPORTED
	ErrState       Status = C.MAE_ERR_STATE
	ErrAborted     Status = C.MAE_ERR_ABORTED
)

func (s Status) String() string { return C.GoString(C.mae_status_str(C.mae_status(s))) }

// Error is a failed call: its status and the library's message.
type Error struct {
	Status  Status
	Message string
}

func (e *Error) Error() string { return e.Status.String() + ": " + e.Message }

// check turns a status into an error. The message is thread-local in C, so the caller must
// still be on the OS thread that made the call: every call site locks it.
func check(s C.mae_status) error {
	if s == C.MAE_OK {
		return nil
	}
	return &Error{Status: Status(s), Message: C.GoString(C.mae_last_error())}
}

// call runs fn on a locked OS thread so that mae_last_error belongs to the call that failed.
func call(fn func() C.mae_status) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	return check(fn())
}

func Version() string { return C.GoString(C.mae_version_string()) }
func Kernels() string { return C.GoString(C.mae_kernels_name()) }

// Config is mae_config with Go names (the C struct's fields are not visible outside cgo).
type Config struct {
	ImgSize, PatchSize, InChans   int32
	EmbedDim, Depth, NumHeads     int32
	DecoderEmbedDim, DecoderDepth int32
	DecoderNumHeads               int32
	MlpRatio                      float32
	NormPixLoss                   int32
	MaskRatio, LayerNormEps       float32
	ImgHeight, ImgWidth           int32
	DecoderMlpHidden              int32 // 0: DecoderEmbedDim * MlpRatio
	QkvBias                       int32 // 1: q/k/v projections with a bias (MAE's; Preset sets it)
}

func configFromC(c *C.mae_config) Config {
	return Config{int32(c.img_size), int32(c.patch_size), int32(c.in_chans), int32(c.embed_dim), int32(c.depth),
		int32(c.num_heads), int32(c.decoder_embed_dim), int32(c.decoder_depth), int32(c.decoder_num_heads),
		float32(c.mlp_ratio), int32(c.norm_pix_loss), float32(c.mask_ratio), float32(c.layer_norm_eps),
		int32(c.img_height), int32(c.img_width), int32(c.decoder_mlp_hidden), int32(c.qkv_bias)}
}

func (g Config) toC() C.mae_config {
	var c C.mae_config
	c.struct_size = C.uint32_t(unsafe.Sizeof(c))
	c.img_size, c.patch_size, c.in_chans = C.int32_t(g.ImgSize), C.int32_t(g.PatchSize), C.int32_t(g.InChans)
	c.embed_dim, c.depth, c.num_heads = C.int32_t(g.EmbedDim), C.int32_t(g.Depth), C.int32_t(g.NumHeads)
	c.decoder_embed_dim, c.decoder_depth = C.int32_t(g.DecoderEmbedDim), C.int32_t(g.DecoderDepth)
	c.decoder_num_heads, c.mlp_ratio = C.int32_t(g.DecoderNumHeads), C.float(g.MlpRatio)
	c.norm_pix_loss, c.mask_ratio, c.layer_norm_eps = C.int32_t(g.NormPixLoss), C.float(g.MaskRatio), C.float(g.LayerNormEps)
	c.img_height, c.img_width = C.int32_t(g.ImgHeight), C.int32_t(g.ImgWidth)
	c.decoder_mlp_hidden, c.qkv_bias = C.int32_t(g.DecoderMlpHidden), C.int32_t(g.QkvBias)
	return c
}

// Preset returns "base", "large", "huge" or "tiny".
func Preset(name string) (Config, error) {
	var cfg C.mae_config
	cname := C.CString(name)
	defer C.free(unsafe.Pointer(cname))
	err := call(func() C.mae_status { return C.mae_config_init(&cfg, C.size_t(unsafe.Sizeof(cfg)), cname) })
	return configFromC(&cfg), err
}

// Model owns a mae_model. Immutable once made: share it across goroutines. Close frees it
// (a finalizer does too, as a safety net), or, while contexts made from it are open, marks it
// closed and leaves the freeing to the last of them.
type Model struct {
	mu     sync.Mutex
	p      *C.mae_model
	users  int  // open contexts
	closed bool // Close was called
}

func newModel(p *C.mae_model) *Model {
	m := &Model{p: p}
	runtime.SetFinalizer(m, (*Model).Close)
	return m
}

var errClosed = &Error{ErrState, "the model was closed"}

// handle is the C model for a call, or nil once closed (the caller holds a reference or
// m.mu, so it cannot be freed during the call).
func (m *Model) handle() *C.mae_model {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil
	}
	return m.p
}

// acquire takes a reference for a new context; false once the model is closed.
func (m *Model) acquire() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed || m.p == nil {
		return false
	}
	m.users++
	return true
}

// release drops a context's reference, freeing the model if it was closed meanwhile.
func (m *Model) release() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.users--
	if m.closed && m.users == 0 && m.p != nil {
		C.mae_model_free(m.p)
		m.p = nil
	}
}

// Create makes a model with the official initialization drawn from seed.
func Create(cfg Config, seed uint64) (*Model, error) {
	var p *C.mae_model
	c := cfg.toC()
	if err := call(func() C.mae_status { return C.mae_model_create(&c, C.uint64_t(seed), &p) }); err != nil {
		return nil, err
	}
	return newModel(p), nil
}

// Load reads a safetensors checkpoint.
func Load(path string) (*Model, error) {
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	var p *C.mae_model
	if err := call(func() C.mae_status { return C.mae_model_load(cpath, &p) }); err != nil {
		return nil, err
	}
	return newModel(p), nil
}

// LoadAs is Load computing in precision (PrecisionF32 or PrecisionBF16): PrecisionBF16 reads
// each weight straight into bf16 (mae_model_load_with: the float32 weights are never held, so
// the peak memory is about the bf16 model's), the model that Load then SetPrecision(PrecisionBF16)
// give, bit for bit.
func LoadAs(path string, precision int) (*Model, error) {
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	var o C.mae_load_options
	var p *C.mae_model
	err := call(func() C.mae_status {
		if s := C.mae_load_options_init(&o, C.size_t(unsafe.Sizeof(o))); s != 0 {
			return s
		}
		o.precision = C.int32_t(precision)
		return C.mae_model_load_with(cpath, &o, &p)
	})
	if err != nil {
		return nil, err
	}
	return newModel(p), nil
}

// with runs fn with the model's handle, holding the model's lock so that Close cannot free it
// meanwhile (the calls under it are short: no forward pass runs here).
func (m *Model) with(fn func(p *C.mae_model) C.mae_status) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed || m.p == nil {
		return errClosed
	}
	return call(func() C.mae_status { return fn(m.p) })
}

func (m *Model) Save(path string) error {
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	return m.with(func(p *C.mae_model) C.mae_status { return C.mae_model_save(p, cpath) })
}

// Precisions of a model's linear layers (docs/PRECISION.md): PrecisionBF16 holds the linear
// weights once as bf16, about half the memory.
const (
	PrecisionF32  = 0
	PrecisionBF16 = 1
)

// SetPrecision makes the model compute in precision (PrecisionF32 or PrecisionBF16). It fails
// with ErrState while a context or trainer of the model is open.
func (m *Model) SetPrecision(precision int) error {
	return m.with(func(p *C.mae_model) C.mae_status { return C.mae_model_set_precision(p, C.int(precision)) })
}

// Precision returns the precision the model computes in.
func (m *Model) Precision() (int, error) {
	var v C.int
	err := m.with(func(p *C.mae_model) C.mae_status { return C.mae_model_get_precision(p, &v) })
	return int(v), err
}

func (m *Model) Config() (Config, error) {
	var cfg C.mae_config
	cfg.struct_size = C.uint32_t(unsafe.Sizeof(cfg))
	err := m.with(func(p *C.mae_model) C.mae_status { return C.mae_model_get_config(p, &cfg) })
	return configFromC(&cfg), err
}

// EmbedDims returns (D, 1 + L): floats per pooled embedding and tokens per image.
func (m *Model) EmbedDims() (int, int, error) {
	var d, t C.int
	err := m.with(func(p *C.mae_model) C.mae_status { return C.mae_model_embed_dims(p, &d, &t) })
	return int(d), int(t), err
}

// Close frees the model, or, while contexts made from it are open, marks it closed and lets
// the last of them free it. Safe to call twice and from any goroutine.
func (m *Model) Close() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed = true
	if m.users == 0 && m.p != nil {
		C.mae_model_free(m.p)
		m.p = nil
	}
}
