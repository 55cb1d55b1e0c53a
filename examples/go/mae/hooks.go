package mae

// Host hooks (mae.h: mae_ctx_set_abort, mae_trainer_set_abort / _progress,
// mae_model_load_progress) without handing C a Go pointer, which cgo forbids C to keep: the Go
// callbacks stay in a registry here, and C is given only the registry id as its user pointer;
// the C trampolines below pass it back to maeGoAbort / maeGoProgress (hooks_export.go).

/*
#include <stdint.h>
#include <stdlib.h>
#include <mae.h>

extern int maeGoAbort(uintptr_t id);
extern int maeGoProgress(uintptr_t id, int done, int total);

static int mae_go_abort(void *user) { return maeGoAbort((uintptr_t)user); }
static int mae_go_progress(void *user, int done, int total) { return maeGoProgress((uintptr_t)user, done, total); }

static mae_status mae_go_ctx_set_abort(mae_ctx *c, uintptr_t id)
{
    return mae_ctx_set_abort(c, id ? mae_go_abort : NULL, (void *)id);
}
static mae_status mae_go_trainer_set_abort(mae_trainer *t, uintptr_t id)
{
    return mae_trainer_set_abort(t, id ? mae_go_abort : NULL, (void *)id);
}
static mae_status mae_go_trainer_set_progress(mae_trainer *t, uintptr_t id)
{
    return mae_trainer_set_progress(t, id ? mae_go_progress : NULL, (void *)id);
}
static mae_status mae_go_load_progress(const char *path, uintptr_t id, mae_model **out)
{
    return mae_model_load_progress(path, id ? mae_go_progress : NULL, (void *)id, out);
}
*/
import "C"

import (
	"sync"
	"unsafe"
)

// hook is one registered callback set. panicked holds a panic raised by a callback: the C call
// is cancelled (a panic cannot unwind through C) and the panic is raised again in Go once the
// call has returned, on the goroutine that made it.
type hook struct {
	abort    func() bool
	progress func(done, total int) bool
	panicked interface{}
}

var registry = struct {
	sync.Mutex
	hooks map[uintptr]*hook
	next  uintptr
}{hooks: map[uintptr]*hook{}}

// hookHandle is a registry id; 0 means none.
type hookHandle uintptr

func register(h *hook) hookHandle {
	registry.Lock()
	defer registry.Unlock()
	registry.next++
	registry.hooks[registry.next] = h
	return hookHandle(registry.next)
}

func lookup(id uintptr) *hook {
	registry.Lock()
	defer registry.Unlock()
	return registry.hooks[id]
}

// clear unregisters the hook (C must no longer hold the id: set another hook or free the
// handle first).
func (id *hookHandle) clear() {
	if *id != 0 {
		registry.Lock()
		delete(registry.hooks, uintptr(*id))
		registry.Unlock()
		*id = 0
	}
}

// repanic raises again a panic a callback of this hook raised during the last call.
func (id hookHandle) repanic() {
	if id == 0 {
		return
	}
	if h := lookup(uintptr(id)); h != nil && h.panicked != nil {
		p := h.panicked
		h.panicked = nil
		panic(p)
	}
}

// guard runs a callback: true (or a panic, kept for repanic) cancels the C call.
func (h *hook) guard(fn func() bool) (r C.int) {
	defer func() {
		if p := recover(); p != nil {
			h.panicked = p
			r = 1
		}
	}()
	if fn() {
		return 1
	}
	return 0
}

// SetAbort installs fn, called before every transformer block of the context's calls (Forward,
// Embed, Classifier.Forward) and, inside the blocks, before each tile of the matrix products,
// on the goroutine that made the call: when it returns true, the call stops and returns an
// *Error with Status ErrAborted; the context is usable again at once and its settings and RNG
// are as before the call. nil clears. fn runs thousands of times a call, so it must be cheap,
// and it must not call this context (it is locked during the call): read a flag another
// goroutine sets, e.g. an atomic.Bool or a context.Context's Err.
func (c *Context) SetAbort(fn func() bool) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.p == nil {
		return &Error{ErrState, "the context was closed"}
	}
	var id hookHandle
	if fn != nil {
		id = register(&hook{abort: fn})
	}
	if err := call(func() C.mae_status { return C.mae_go_ctx_set_abort(c.p, C.uintptr_t(id)) }); err != nil {
		id.clear()
		return err
	}
	c.abort.clear()
	c.abort = id
	return nil
}

// LoadWithProgress is Load, calling progress(tensors read, tensors in the file) after each
// tensor; returning true cancels the load: an *Error with Status ErrAborted, nothing kept.
func LoadWithProgress(path string, progress func(done, total int) bool) (*Model, error) {
	if progress == nil {
		return Load(path)
	}
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	id := register(&hook{progress: progress})
	defer id.clear()
	var p *C.mae_model
	err := call(func() C.mae_status { return C.mae_go_load_progress(cpath, C.uintptr_t(id), &p) })
	id.repanic()
	if err != nil {
		return nil, err
	}
	return newModel(p), nil
}

// SetAbort is Context.SetAbort for ForwardBackward, which checks it before every block and
// before the backward pass; a cancelled call leaves the trainer exactly as before it.
func (t *Trainer) SetAbort(fn func() bool) error {
	return t.setHook(&t.abort, fn != nil, &hook{abort: fn}, func(p *C.mae_trainer, id C.uintptr_t) C.mae_status {
		return C.mae_go_trainer_set_abort(p, id)
	})
}

// SetProgress installs fn, called by ForwardBackward at the same points as the abort hook with
// done = blocks run of total = depth + decoder depth + 1 (the backward pass), then once with
// done = total; true cancels as the abort hook does. nil clears.
func (t *Trainer) SetProgress(fn func(done, total int) bool) error {
	return t.setHook(&t.progress, fn != nil, &hook{progress: fn}, func(p *C.mae_trainer, id C.uintptr_t) C.mae_status {
		return C.mae_go_trainer_set_progress(p, id)
	})
}

func (t *Trainer) setHook(slot *hookHandle, set bool, h *hook, install func(*C.mae_trainer, C.uintptr_t) C.mae_status) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.p == nil {
		return &Error{ErrState, "the trainer was closed"}
	}
	var id hookHandle
	if set {
		id = register(h)
	}
	if err := call(func() C.mae_status { return install(t.p, C.uintptr_t(id)) }); err != nil {
		id.clear()
		return err
	}
	slot.clear()
	*slot = id
	return nil
}
