// Package mae is a thin cgo binding of libmae: models, contexts and the forward pass, with Go
// errors that carry the library's status and message.
//
// By default it builds against this source tree (include/ and lib/); for an installed libmae,
// build with CGO_CFLAGS/CGO_LDFLAGS from `pkg-config --cflags --libs mae`.
package mae

/*
#cgo CFLAGS: -I${SRCDIR}/../../../include
#cgo LDFLAGS: -L${SRCDIR}/../../../lib -lmae
#include <stdlib.h>
#include "mae.h"
*/
import "C"

import (
	"fmt"
	"runtime"
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
}

func configFromC(c *C.mae_config) Config {
	return Config{int32(c.img_size), int32(c.patch_size), int32(c.in_chans), int32(c.embed_dim), int32(c.depth),
		int32(c.num_heads), int32(c.decoder_embed_dim), int32(c.decoder_depth), int32(c.decoder_num_heads),
		float32(c.mlp_ratio), int32(c.norm_pix_loss), float32(c.mask_ratio), float32(c.layer_norm_eps),
		int32(c.img_height), int32(c.img_width)}
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
// (a finalizer does too, as a safety net).
type Model struct{ p *C.mae_model }

func newModel(p *C.mae_model) *Model {
	m := &Model{p}
	runtime.SetFinalizer(m, (*Model).Close)
	return m
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

func (m *Model) Save(path string) error {
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	err := call(func() C.mae_status { return C.mae_model_save(m.p, cpath) })
	runtime.KeepAlive(m)
	return err
}

func (m *Model) Config() (Config, error) {
	var cfg C.mae_config
	cfg.struct_size = C.uint32_t(unsafe.Sizeof(cfg))
	err := call(func() C.mae_status { return C.mae_model_get_config(m.p, &cfg) })
	runtime.KeepAlive(m)
	return configFromC(&cfg), err
}

func (m *Model) Close() {
	if m.p != nil {
		C.mae_model_free(m.p)
		m.p = nil
	}
}

// Context owns a mae_ctx: one goroutine's workspace. It keeps its model alive.
type Context struct {
	p        *C.mae_ctx
	model    *Model
	maxBatch int
}

func NewContext(m *Model, maxBatch int) (*Context, error) {
	var p *C.mae_ctx
	if err := call(func() C.mae_status { return C.mae_ctx_create(m.p, C.int(maxBatch), &p) }); err != nil {
		return nil, err
	}
	c := &Context{p, m, maxBatch}
	runtime.SetFinalizer(c, (*Context).Close)
	return c, nil
}

func (c *Context) Close() {
	if c.p != nil {
		C.mae_ctx_free(c.p)
		c.p = nil
	}
}

// Dims returns (num_patches, keep, patch_dim) for the current mask ratio.
func (c *Context) Dims() (int, int, int, error) {
	var l, k, p C.int
	err := call(func() C.mae_status { return C.mae_ctx_get_dims(c.p, &l, &k, &p) })
	runtime.KeepAlive(c)
	return int(l), int(k), int(p), err
}

func (c *Context) SetSeed(seed uint64) error {
	err := call(func() C.mae_status { return C.mae_ctx_set_seed(c.p, C.uint64_t(seed)) })
	runtime.KeepAlive(c)
	return err
}

func (c *Context) SetMaskRatio(r float32) error {
	err := call(func() C.mae_status { return C.mae_ctx_set_mask_ratio(c.p, C.float(r)) })
	runtime.KeepAlive(c)
	return err
}

func (c *Context) SetThreads(n int) error {
	err := call(func() C.mae_status { return C.mae_ctx_set_threads(c.p, C.int(n)) })
	runtime.KeepAlive(c)
	return err
}

// Result of a forward pass: loss, pred [B, L, p*p*C], mask [B, L] (1 = removed).
type Result struct {
	Loss float32
	Pred []float32
	Mask []float32
}

// Forward runs one MAE forward pass on batch images [B, C, H, W]; noise [B, L] or nil (the
// context's RNG). Slice lengths are checked here so the library never reads past them.
func (c *Context) Forward(imgs []float32, batch int, noise []float32) (*Result, error) {
	cfg, err := c.model.Config()
	if err != nil {
		return nil, err
	}
	l, _, p, err := c.Dims()
	if err != nil {
		return nil, err
	}
	perImage := int(cfg.InChans) * int(cfg.ImgHeight) * int(cfg.ImgWidth)
	if batch < 1 || batch > c.maxBatch || len(imgs) != batch*perImage {
		return nil, &Error{ErrShape, fmt.Sprintf("imgs has %d values for batch %d, expected %d (max batch %d)",
			len(imgs), batch, batch*perImage, c.maxBatch)}
	}
	var noisePtr *C.float
	if noise != nil {
		if len(noise) != batch*l {
			return nil, &Error{ErrShape, fmt.Sprintf("noise has %d values, expected %d", len(noise), batch*l)}
		}
		noisePtr = (*C.float)(unsafe.Pointer(&noise[0]))
	}
	r := &Result{Pred: make([]float32, batch*l*p), Mask: make([]float32, batch*l)}
	var loss C.float
	err = call(func() C.mae_status {
		return C.mae_forward(c.p, (*C.float)(unsafe.Pointer(&imgs[0])), C.int(batch), noisePtr, &loss,
			(*C.float)(unsafe.Pointer(&r.Pred[0])), (*C.float)(unsafe.Pointer(&r.Mask[0])), nil)
	})
	runtime.KeepAlive(c)
	if err != nil {
		return nil, err
	}
	r.Loss = float32(loss)
	return r, nil
}
