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

// FinetuneConfig is mae_finetune_config with Go names (defaults: main_finetune.py's, from
// Finetuner.Config of a new finetuner).
type FinetuneConfig struct {
	AccumIter                           int32
	Blr, Lr, MinLr, WeightDecay         float64
	LayerDecay, Beta1, Beta2, Eps       float64
	WarmupEpochs, Epochs                float64
	ItersPerEpoch, BatchSize, WorldSize int32
	Smoothing, ClipGrad, DropPath       float32
}

// Finetuner owns a mae_finetuner: it fine-tunes its classifier in place (AdamW with layer-wise lr
// decay, the official schedule, label smoothing, drop path) and holds a reference on it. Make it
// while no context of the classifier is open (ErrState otherwise); use the classifier elsewhere
// only between steps.
type Finetuner struct {
	mu       sync.Mutex
	p        *C.mae_finetuner
	clf      *Classifier
	maxBatch int
	perImage int
}

func NewFinetuner(c *Classifier, maxBatch int) (*Finetuner, error) {
	if !c.acquire() {
		return nil, errClassifierClosed
	}
	var p *C.mae_finetuner
	if err := call(func() C.mae_status { return C.mae_finetuner_create(c.p, C.int(maxBatch), &p) }); err != nil {
		c.release()
		return nil, err
	}
	var cfg C.mae_config
	cfg.struct_size = C.uint32_t(unsafe.Sizeof(cfg))
	C.mae_model_get_config(c.model, &cfg)
	f := &Finetuner{p: p, clf: c, maxBatch: maxBatch, perImage: int(cfg.in_chans) * int(cfg.img_height) * int(cfg.img_width)}
	runtime.SetFinalizer(f, (*Finetuner).Close)
	return f, nil
}

// Close frees the finetuner (waiting for a call in progress) and drops its classifier reference.
func (f *Finetuner) Close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.p != nil {
		C.mae_finetuner_free(f.p)
		f.p = nil
		f.clf.release()
	}
}

func (f *Finetuner) run(fn func(p *C.mae_finetuner) C.mae_status) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.p == nil {
		return &Error{ErrState, "the finetuner was closed"}
	}
	return call(func() C.mae_status { return fn(f.p) })
}

func (f *Finetuner) Config() (FinetuneConfig, error) {
	var c C.mae_finetune_config
	c.struct_size = C.uint32_t(unsafe.Sizeof(c))
	err := f.run(func(p *C.mae_finetuner) C.mae_status { return C.mae_finetuner_get_config(p, &c) })
	return FinetuneConfig{int32(c.accum_iter), float64(c.blr), float64(c.lr), float64(c.min_lr),
		float64(c.weight_decay), float64(c.layer_decay), float64(c.beta1), float64(c.beta2), float64(c.eps),
		float64(c.warmup_epochs), float64(c.epochs), int32(c.iters_per_epoch), int32(c.batch_size),
		int32(c.world_size), float32(c.smoothing), float32(c.clip_grad), float32(c.drop_path)}, err
}

func (f *Finetuner) SetConfig(g FinetuneConfig) error {
	var c C.mae_finetune_config
	c.struct_size = C.uint32_t(unsafe.Sizeof(c))
	c.accum_iter, c.blr, c.lr, c.min_lr = C.int32_t(g.AccumIter), C.double(g.Blr), C.double(g.Lr), C.double(g.MinLr)
	c.weight_decay, c.layer_decay = C.double(g.WeightDecay), C.double(g.LayerDecay)
	c.beta1, c.beta2, c.eps = C.double(g.Beta1), C.double(g.Beta2), C.double(g.Eps)
	c.warmup_epochs, c.epochs = C.double(g.WarmupEpochs), C.double(g.Epochs)
	c.iters_per_epoch, c.batch_size, c.world_size = C.int32_t(g.ItersPerEpoch), C.int32_t(g.BatchSize), C.int32_t(g.WorldSize)
	c.smoothing, c.clip_grad, c.drop_path = C.float(g.Smoothing), C.float(g.ClipGrad), C.float(g.DropPath)
	return f.run(func(p *C.mae_finetuner) C.mae_status { return C.mae_finetuner_set_config(p, &c) })
}

func (f *Finetuner) SetThreads(n int) error {
	return f.run(func(p *C.mae_finetuner) C.mae_status { return C.mae_finetuner_set_threads(p, C.int(n)) })
}

// SetSeed sets the seed of the drop path masks.
func (f *Finetuner) SetSeed(seed uint64) error {
	return f.run(func(p *C.mae_finetuner) C.mae_status { return C.mae_finetuner_set_seed(p, C.uint64_t(seed)) })
}

// ForwardBackward adds the gradients of the (label-smoothed) cross-entropy on batch images
// [B, C, H, W] with class indices labels [B]; it returns the batch's mean loss.
func (f *Finetuner) ForwardBackward(imgs []float32, batch int, labels []int32) (float32, error) {
	if batch < 1 || batch > f.maxBatch || len(imgs) != batch*f.perImage || len(labels) != batch {
		return 0, &Error{ErrShape, fmt.Sprintf("imgs %d values and %d labels for batch %d, expected %d and %d (max batch %d)",
			len(imgs), len(labels), batch, batch*f.perImage, batch, f.maxBatch)}
	}
	var loss C.float
	err := f.run(func(p *C.mae_finetuner) C.mae_status {
		return C.mae_finetuner_forward_backward(p, (*C.float)(unsafe.Pointer(&imgs[0])), C.int(batch),
			(*C.int32_t)(unsafe.Pointer(&labels[0])), nil, &loss, nil)
	})
	return float32(loss), err
}

// Step takes one AdamW step with the scheduled lr; the gradients are then zeroed.
func (f *Finetuner) Step() error {
	return f.run(func(p *C.mae_finetuner) C.mae_status { return C.mae_finetuner_step(p) })
}

func (f *Finetuner) ZeroGrad() error {
	return f.run(func(p *C.mae_finetuner) C.mae_status { return C.mae_finetuner_zero_grad(p) })
}

// Steps is the number of optimizer steps taken.
func (f *Finetuner) Steps() (int64, error) {
	var n C.int64_t
	err := f.run(func(p *C.mae_finetuner) C.mae_status { return C.mae_finetuner_get_step(p, &n) })
	return int64(n), err
}

// Save writes a checkpoint that resumes exactly (and loads with LoadClassifier).
func (f *Finetuner) Save(path string) error {
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	return f.run(func(p *C.mae_finetuner) C.mae_status { return C.mae_finetuner_save(p, cpath) })
}

func (f *Finetuner) Load(path string) error {
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	return f.run(func(p *C.mae_finetuner) C.mae_status { return C.mae_finetuner_load(p, cpath) })
}
