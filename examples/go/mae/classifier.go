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

// Classifier owns a mae_classifier: an encoder and a head, images in, logits [B, K] out.
// Immutable once made (except SetLabels): share it across goroutines, each with its own
// Context from NewContext. Reference-counted like Model: Close while contexts or calls use it
// only marks it closed, and the last of them frees it.
type Classifier struct {
	mu     sync.Mutex
	p      *C.mae_classifier
	model  *C.mae_model // the encoder, owned by p
	users  int          // open contexts and running calls
	closed bool
	k      int
}

func newClassifier(p *C.mae_classifier) *Classifier {
	c := &Classifier{p: p}
	var k C.int
	C.mae_classifier_num_classes(p, &k) // cannot fail on a valid handle
	C.mae_classifier_model(p, &c.model)
	c.k = int(k)
	runtime.SetFinalizer(c, (*Classifier).Close)
	return c
}

// NewClassifier makes a classifier from a pretrained model: its encoder copied (the model is
// not kept), a new head initialised as the official fine-tuning code does, drawn from seed.
// globalPool: the mean of the patch tokens then fc_norm (the official default); else the cls
// token after norm. The head is untrained: fine-tune it, or load a fine-tuned file.
func NewClassifier(m *Model, numClasses int, globalPool bool, seed uint64) (*Classifier, error) {
	var p *C.mae_classifier
	gp := C.int(0)
	if globalPool {
		gp = 1
	}
	err := m.with(func(mp *C.mae_model) C.mae_status {
		return C.mae_classifier_create(mp, C.int(numClasses), gp, C.uint64_t(seed), &p)
	})
	if err != nil {
		return nil, err
	}
	return newClassifier(p), nil
}

// LoadClassifier reads a classifier file. numClasses 0 takes the file's; any other value must
// equal the head's rows (ErrShape otherwise: a head is never silently reinitialised).
func LoadClassifier(path string, numClasses int) (*Classifier, error) {
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	var p *C.mae_classifier
	if err := call(func() C.mae_status { return C.mae_classifier_load(cpath, C.int(numClasses), &p) }); err != nil {
		return nil, err
	}
	return newClassifier(p), nil
}

var errClassifierClosed = &Error{ErrState, "the classifier was closed"}

func (c *Classifier) acquire() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed || c.p == nil {
		return false
	}
	c.users++
	return true
}

func (c *Classifier) release() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.users--
	if c.closed && c.users == 0 && c.p != nil {
		C.mae_classifier_free(c.p)
		c.p = nil
	}
}

// Close frees the classifier, or, while contexts or calls use it, marks it closed and lets the
// last of them free it. Safe to call twice and from any goroutine.
func (c *Classifier) Close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	if c.users == 0 && c.p != nil {
		C.mae_classifier_free(c.p)
		c.p = nil
	}
}

// with runs a short call on the handle under the lock (not a forward pass).
func (c *Classifier) with(fn func(p *C.mae_classifier) C.mae_status) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed || c.p == nil {
		return errClassifierClosed
	}
	return call(func() C.mae_status { return fn(c.p) })
}

func (c *Classifier) NumClasses() int { return c.k }

func (c *Classifier) Save(path string) error {
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	return c.with(func(p *C.mae_classifier) C.mae_status { return C.mae_classifier_save(p, cpath) })
}

// GlobalPool says whether the classifier pools the mean of the patch tokens (else the cls token).
func (c *Classifier) GlobalPool() (bool, error) {
	var g C.int
	err := c.with(func(p *C.mae_classifier) C.mae_status { return C.mae_classifier_global_pool(p, &g) })
	return g != 0, err
}

func (c *Classifier) HasLabels() (bool, error) {
	var h C.int
	err := c.with(func(p *C.mae_classifier) C.mae_status { return C.mae_classifier_has_labels(p, &h) })
	return h != 0, err
}

// Labels returns the class names: the file's or SetLabels', else the indices in decimal.
func (c *Classifier) Labels() ([]string, error) {
	out := make([]string, c.k)
	err := c.with(func(p *C.mae_classifier) C.mae_status {
		for i := range out {
			var s *C.char
			if st := C.mae_classifier_label(p, C.int(i), &s); st != C.MAE_OK {
				return st
			}
			out[i] = C.GoString(s)
		}
		return C.MAE_OK
	})
	return out, err
}

// SetLabels names all NumClasses classes (each non-empty, at most 255 bytes); nil clears.
func (c *Classifier) SetLabels(names []string) error {
	if names == nil {
		return c.with(func(p *C.mae_classifier) C.mae_status { return C.mae_classifier_set_labels(p, nil) })
	}
	if len(names) != c.k {
		return &Error{ErrShape, fmt.Sprintf("%d labels for %d classes", len(names), c.k)}
	}
	// the array of names lives in C memory: C must not be handed Go memory holding pointers
	arr := (*[1 << 28]*C.char)(C.malloc(C.size_t(len(names)) * C.size_t(unsafe.Sizeof((*C.char)(nil)))))[:len(names):len(names)]
	for i, n := range names {
		arr[i] = C.CString(n)
	}
	defer func() {
		for _, s := range arr {
			C.free(unsafe.Pointer(s))
		}
		C.free(unsafe.Pointer(&arr[0]))
	}()
	return c.with(func(p *C.mae_classifier) C.mae_status { return C.mae_classifier_set_labels(p, &arr[0]) })
}

// Tensor returns a copy of a head tensor ("head.weight" [K, D], "head.bias", "fc_norm.weight",
// "fc_norm.bias") or an encoder tensor by its official name.
func (c *Classifier) Tensor(name string) ([]float32, error) {
	cname := C.CString(name)
	defer C.free(unsafe.Pointer(cname))
	var out []float32
	err := c.with(func(p *C.mae_classifier) C.mae_status {
		var data *C.float
		var n C.size_t
		st := C.mae_classifier_tensor(p, cname, &data, &n)
		if st == C.MAE_OK {
			out = make([]float32, int(n))
			if n > 0 {
				copy(out, unsafe.Slice((*float32)(unsafe.Pointer(data)), int(n)))
			}
		}
		return st
	})
	return out, err
}

// NewContext makes a context for this classifier's forward (and its encoder's embeddings); it
// holds a reference on the classifier.
func (c *Classifier) NewContext(maxBatch int) (*Context, error) {
	if !c.acquire() {
		return nil, errClassifierClosed
	}
	ctx, err := newContext(c.model, c, maxBatch)
	if err != nil {
		c.release()
	}
	return ctx, err
}

// Forward returns the logits [B, K] of batch normalized images [B, C, H, W]; ctx must come from
// this classifier's NewContext (the library refuses another: ErrInvalidArg).
func (c *Classifier) Forward(ctx *Context, imgs []float32, batch int) ([]float32, error) {
	if batch < 1 || batch > ctx.maxBatch {
		return nil, &Error{ErrShape, fmt.Sprintf("batch %d is outside [1, %d]", batch, ctx.maxBatch)}
	}
	out := make([]float32, batch*c.k)
	return out, c.ForwardInto(ctx, imgs, batch, out)
}

// ForwardInto writes the logits into out (batch * NumClasses values) without allocating.
func (c *Classifier) ForwardInto(ctx *Context, imgs []float32, batch int, out []float32) error {
	if err := ctx.checkImages(imgs, batch); err != nil {
		return err
	}
	if len(out) != batch*c.k {
		return &Error{ErrShape, fmt.Sprintf("out has %d values, expected %d", len(out), batch*c.k)}
	}
	if !c.acquire() { // held for the call: Close meanwhile cannot free the classifier
		return errClassifierClosed
	}
	defer c.release()
	return ctx.run(func(cp *C.mae_ctx) C.mae_status {
		return C.mae_classifier_forward(c.p, cp, (*C.float)(unsafe.Pointer(&imgs[0])), C.int(batch),
			(*C.float)(unsafe.Pointer(&out[0])))
	})
}

// Argmax returns each image's class of largest logit (the first on ties) from logits [B, K].
func (c *Classifier) Argmax(logits []float32) []int {
	var out []int
	for b := 0; b+c.k <= len(logits) && c.k > 0; b += c.k {
		best := 0
		for k := 1; k < c.k; k++ {
			if logits[b+k] > logits[b+best] {
				best = k
			}
		}
		out = append(out, best)
	}
	return out
}
