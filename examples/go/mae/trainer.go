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

// Trainer owns a mae_trainer: pretraining of a model in place (the official recipe's
// defaults). It holds a reference on its model; the library refuses it while contexts of the
// model live (ErrState), and the model must not be used elsewhere while it steps.
type Trainer struct {
	mu              sync.Mutex
	p               *C.mae_trainer
	model           *Model
	maxBatch        int
	cfg             Config
	abort, progress hookHandle
}

func NewTrainer(m *Model, maxBatch int) (*Trainer, error) {
	if !m.acquire() {
		return nil, errClosed
	}
	var p *C.mae_trainer
	if err := call(func() C.mae_status { return C.mae_trainer_create(m.p, C.int(maxBatch), &p) }); err != nil {
		m.release()
		return nil, err
	}
	var cfg C.mae_config
	cfg.struct_size = C.uint32_t(unsafe.Sizeof(cfg))
	C.mae_model_get_config(m.p, &cfg)
	t := &Trainer{p: p, model: m, maxBatch: maxBatch, cfg: configFromC(&cfg)}
	runtime.SetFinalizer(t, (*Trainer).Close)
	return t, nil
}

// Close frees the trainer (waiting for a call in progress) and drops its model reference.
func (t *Trainer) Close() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.p != nil {
		C.mae_trainer_free(t.p)
		t.p = nil
		t.abort.clear()
		t.progress.clear()
		t.model.release()
	}
}

func (t *Trainer) run(fn func(p *C.mae_trainer) C.mae_status) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.p == nil {
		return &Error{ErrState, "the trainer was closed"}
	}
	err := call(func() C.mae_status { return fn(t.p) })
	t.abort.repanic()
	t.progress.repanic()
	return err
}

func (t *Trainer) SetThreads(n int) error {
	return t.run(func(p *C.mae_trainer) C.mae_status { return C.mae_trainer_set_threads(p, C.int(n)) })
}

func (t *Trainer) SetSeed(seed uint64) error {
	return t.run(func(p *C.mae_trainer) C.mae_status { return C.mae_trainer_set_seed(p, C.uint64_t(seed)) })
}

// ForwardBackward adds the gradients of the MAE loss on batch images [B, C, H, W] (noise [B, L]
// or nil: the trainer's RNG) and returns the loss.
func (t *Trainer) ForwardBackward(imgs []float32, batch int, noise []float32) (float32, error) {
	cfg := t.cfg
	perImage := int(cfg.InChans) * int(cfg.ImgHeight) * int(cfg.ImgWidth)
	l := int(cfg.ImgHeight/cfg.PatchSize) * int(cfg.ImgWidth/cfg.PatchSize)
	if batch < 1 || batch > t.maxBatch || len(imgs) != batch*perImage {
		return 0, &Error{ErrShape, fmt.Sprintf("imgs has %d values for batch %d, expected %d (max batch %d)",
			len(imgs), batch, batch*perImage, t.maxBatch)}
	}
	var np *C.float
	if noise != nil {
		if len(noise) != batch*l {
			return 0, &Error{ErrShape, fmt.Sprintf("noise has %d values, expected %d", len(noise), batch*l)}
		}
		np = (*C.float)(unsafe.Pointer(&noise[0]))
	}
	var loss C.float
	err := t.run(func(p *C.mae_trainer) C.mae_status {
		return C.mae_trainer_forward_backward(p, (*C.float)(unsafe.Pointer(&imgs[0])), C.int(batch), np, &loss)
	})
	return float32(loss), err
}

// Step takes one AdamW step with the scheduled learning rate; the gradients are then zeroed.
func (t *Trainer) Step() error {
	return t.run(func(p *C.mae_trainer) C.mae_status { return C.mae_trainer_step(p) })
}

// Steps is the number of optimizer steps taken.
func (t *Trainer) Steps() (int64, error) {
	var n C.int64_t
	err := t.run(func(p *C.mae_trainer) C.mae_status { return C.mae_trainer_get_step(p, &n) })
	return int64(n), err
}

// Save writes a checkpoint that resumes exactly (and loads with Load).
func (t *Trainer) Save(path string) error {
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	return t.run(func(p *C.mae_trainer) C.mae_status { return C.mae_trainer_save(p, cpath) })
}
