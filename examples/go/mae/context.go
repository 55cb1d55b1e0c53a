package mae

/*
#include <stdlib.h>
#include <mae.h>
*/
import "C"

import (
	"fmt"
	"runtime"
	"sync"
	"unsafe"
)

// releaser is what a Context holds a reference on: a Model, or a Classifier (whose encoder the
// context runs).
type releaser interface{ release() }

// Context owns a mae_ctx: one goroutine's workspace. It holds a reference on its model (or
// classifier), so closing that while the context lives is safe.
type Context struct {
	mu       sync.Mutex // held by every call and by Close
	p        *C.mae_ctx
	owner    releaser
	maxBatch int
	cfg      Config // the model's, read once: valid after Model.Close too
	d, t     int    // EmbedDims
	abort    hookHandle
}

func NewContext(m *Model, maxBatch int) (*Context, error) {
	if !m.acquire() {
		return nil, errClosed
	}
	c, err := newContext(m.p, m, maxBatch)
	if err != nil {
		m.release()
	}
	return c, err
}

// newContext makes a context on model handle mp, which owner's reference (already taken) keeps.
func newContext(mp *C.mae_model, owner releaser, maxBatch int) (*Context, error) {
	var p *C.mae_ctx
	if err := call(func() C.mae_status { return C.mae_ctx_create(mp, C.int(maxBatch), &p) }); err != nil {
		return nil, err
	}
	c := &Context{p: p, owner: owner, maxBatch: maxBatch}
	var cfg C.mae_config
	cfg.struct_size = C.uint32_t(unsafe.Sizeof(cfg))
	var d, t C.int
	C.mae_model_get_config(mp, &cfg) // cannot fail: valid model, sized struct
	C.mae_model_embed_dims(mp, &d, &t)
	c.cfg, c.d, c.t = configFromC(&cfg), int(d), int(t)
	runtime.SetFinalizer(c, (*Context).Close)
	return c, nil
}

// Close frees the context (waiting for a call in progress) and drops its reference.
func (c *Context) Close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.p != nil {
		C.mae_ctx_free(c.p)
		c.p = nil
		c.abort.clear()
		c.owner.release()
	}
}

// run calls fn with the context's handle under its lock; a closed context is an error.
func (c *Context) run(fn func(p *C.mae_ctx) C.mae_status) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.p == nil {
		return &Error{ErrState, "the context was closed"}
	}
	err := call(func() C.mae_status { return fn(c.p) })
	c.abort.repanic()
	return err
}

// Dims returns (num_patches, keep, patch_dim) for the current mask ratio.
func (c *Context) Dims() (int, int, int, error) {
	var l, k, p C.int
	err := c.run(func(cp *C.mae_ctx) C.mae_status { return C.mae_ctx_get_dims(cp, &l, &k, &p) })
	return int(l), int(k), int(p), err
}

func (c *Context) SetSeed(seed uint64) error {
	return c.run(func(cp *C.mae_ctx) C.mae_status { return C.mae_ctx_set_seed(cp, C.uint64_t(seed)) })
}

func (c *Context) SetMaskRatio(r float32) error {
	return c.run(func(cp *C.mae_ctx) C.mae_status { return C.mae_ctx_set_mask_ratio(cp, C.float(r)) })
}

func (c *Context) SetThreads(n int) error {
	return c.run(func(cp *C.mae_ctx) C.mae_status { return C.mae_ctx_set_threads(cp, C.int(n)) })
}

// checkImages refuses a batch outside [1, max batch] or an imgs slice of another length.
func (c *Context) checkImages(imgs []float32, batch int) error {
	perImage := int(c.cfg.InChans) * int(c.cfg.ImgHeight) * int(c.cfg.ImgWidth)
	if batch < 1 || batch > c.maxBatch || len(imgs) != batch*perImage {
		return &Error{ErrShape, fmt.Sprintf("imgs has %d values for batch %d, expected %d (max batch %d)",
			len(imgs), batch, batch*perImage, c.maxBatch)}
	}
	return nil
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
	l, _, p, err := c.Dims()
	if err != nil {
		return nil, err
	}
	if err := c.checkImages(imgs, batch); err != nil {
		return nil, err
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
	err = c.run(func(cp *C.mae_ctx) C.mae_status {
		return C.mae_forward(cp, (*C.float)(unsafe.Pointer(&imgs[0])), C.int(batch), noisePtr, &loss,
			(*C.float)(unsafe.Pointer(&r.Pred[0])), (*C.float)(unsafe.Pointer(&r.Mask[0])), nil)
	})
	if err != nil {
		return nil, err
	}
	r.Loss = float32(loss)
	return r, nil
}

// Pool says how Embed pools the encoder's tokens.
type Pool int

const (
	PoolCLS    Pool = C.MAE_POOL_CLS    // [B, D]: the cls token
	PoolMean   Pool = C.MAE_POOL_MEAN   // [B, D]: the mean of the patch tokens
	PoolTokens Pool = C.MAE_POOL_TOKENS // [B, 1+L, D]: every token, patches in image order
)

// Embed returns the features of batch images [B, C, H, W] in image order (no masking, no
// decoder needed), pooled as pool says. EmbedInto writes them into out without allocating.
func (c *Context) Embed(imgs []float32, batch int, pool Pool) ([]float32, error) {
	d, t := c.d, c.t
	n := batch * d
	if pool == PoolTokens {
		n *= t
	}
	if n <= 0 {
		return nil, &Error{ErrShape, fmt.Sprintf("batch %d is outside [1, %d]", batch, c.maxBatch)}
	}
	out := make([]float32, n)
	return out, c.EmbedInto(imgs, batch, pool, out)
}

func (c *Context) EmbedInto(imgs []float32, batch int, pool Pool, out []float32) error {
	d, t := c.d, c.t
	if pool != PoolCLS && pool != PoolMean && pool != PoolTokens {
		return &Error{ErrInvalidArg, fmt.Sprintf("pool %d is not a Pool", int(pool))}
	}
	if err := c.checkImages(imgs, batch); err != nil {
		return err
	}
	want := batch * d
	if pool == PoolTokens {
		want *= t
	}
	if len(out) != want {
		return &Error{ErrShape, fmt.Sprintf("out has %d values, expected %d", len(out), want)}
	}
	return c.run(func(cp *C.mae_ctx) C.mae_status {
		return C.mae_embed(cp, (*C.float)(unsafe.Pointer(&imgs[0])), C.int(batch), C.mae_pool(pool),
			(*C.float)(unsafe.Pointer(&out[0])))
	})
}
