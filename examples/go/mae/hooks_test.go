package mae

import (
	"errors"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"testing"
)

func isStatus(err error, s Status) bool {
	var e *Error
	return errors.As(err, &e) && e.Status == s
}

func registered() int {
	registry.Lock()
	defer registry.Unlock()
	return len(registry.hooks)
}

// A progress callback sees every tensor of a load, in order; returning true cancels the load.
func TestLoadProgress(t *testing.T) {
	m := tiny(t, 5)
	path := filepath.Join(t.TempDir(), "tiny.safetensors")
	if err := m.Save(path); err != nil {
		t.Fatal(err)
	}
	m.Close()
	before := registered()
	calls, last, total := 0, 0, 0
	m2, err := LoadWithProgress(path, func(done, n int) bool {
		calls++
		if done != last+1 || (total != 0 && n != total) {
			t.Errorf("progress %d/%d after %d/%d", done, n, last, total)
		}
		last, total = done, n
		runtime.GC() // the callback is reachable from the registry only
		return false
	})
	if err != nil {
		t.Fatal(err)
	}
	m2.Close()
	if calls < 10 || last != total {
		t.Fatalf("%d progress calls, last %d of %d", calls, last, total)
	}
	m3, err := LoadWithProgress(path, func(done, n int) bool { return done == 3 })
	if m3 != nil || !isStatus(err, ErrAborted) {
		t.Fatalf("a cancelled load gave %v, %v", m3, err)
	}
	if registered() != before {
		t.Fatal("a load's hook stayed registered")
	}
	if _, err := LoadWithProgress(filepath.Join(t.TempDir(), "missing"), func(int, int) bool { return false }); !isStatus(err, ErrIO) {
		t.Fatalf("a missing file gave %v", err)
	}
}

// An abort hook cancels Forward and Embed with ErrAborted, between blocks or tiles (a hook that says
// stop at its third check stops the call there), and the context works as before afterwards.
func TestContextAbort(t *testing.T) {
	m := tiny(t, 6)
	defer m.Close()
	c, err := NewContext(m, 1)
	if err != nil {
		t.Fatal(err)
	}
	imgs := images(3 * 32 * 32)
	want, err := c.Embed(imgs, 1, PoolMean)
	if err != nil {
		t.Fatal(err)
	}
	l, _, _, _ := c.Dims()
	noise := images(l)
	ref, err := c.Forward(imgs, 1, noise)
	if err != nil {
		t.Fatal(err)
	}
	var stop atomic.Bool
	var checks atomic.Int32
	if err := c.SetAbort(func() bool { checks.Add(1); return stop.Load() }); err != nil {
		t.Fatal(err)
	}
	stop.Store(true)
	if _, err := c.Forward(imgs, 1, noise); !isStatus(err, ErrAborted) {
		t.Fatalf("Forward with the flag set: %v", err)
	}
	if _, err := c.Embed(imgs, 1, PoolMean); !isStatus(err, ErrAborted) {
		t.Fatalf("Embed with the flag set: %v", err)
	}
	stop.Store(false)
	checks.Store(0)
	got, err := c.Forward(imgs, 1, noise)
	if err != nil || got.Loss != ref.Loss {
		t.Fatalf("after an abort: %v, loss %v want %v", err, got, ref.Loss)
	}
	cfg, _ := m.Config()
	// asked before every block and, inside the blocks, before each tile of the products
	if n := int(checks.Load()); n < int(cfg.Depth+cfg.DecoderDepth) {
		t.Fatalf("the hook ran %d times in a forward of %d blocks", n, cfg.Depth+cfg.DecoderDepth)
	}
	// stop at a later check: the call ends there, the hook is not asked again
	blocks := int32(cfg.Depth + cfg.DecoderDepth)
	checks.Store(0)
	if err := c.SetAbort(func() bool { return checks.Add(1) == blocks }); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Forward(imgs, 1, noise); !isStatus(err, ErrAborted) || checks.Load() != blocks {
		t.Fatalf("stop at check %d: %v after %d checks", blocks, err, checks.Load())
	}
	if err := c.SetAbort(nil); err != nil {
		t.Fatal(err)
	}
	again, err := c.Embed(imgs, 1, PoolMean)
	if err != nil {
		t.Fatal(err)
	}
	for k := range want {
		if again[k] != want[k] {
			t.Fatal("the features changed after a cancelled call")
		}
	}
	// a panicking hook cancels the C call, then the panic goes on in Go
	c.SetAbort(func() bool { panic("hook") })
	func() {
		defer func() {
			if r := recover(); r != "hook" {
				t.Fatalf("recovered %v, want the hook's panic", r)
			}
		}()
		c.Embed(imgs, 1, PoolMean)
		t.Fatal("no panic")
	}()
	c.SetAbort(nil)
	if _, err := c.Embed(imgs, 1, PoolMean); err != nil {
		t.Fatalf("after a panicking hook: %v", err)
	}
	c.Close()
	if registered() != 0 {
		t.Fatalf("%d hooks registered after Close", registered())
	}
}

// The trainer's progress counts the blocks and the backward pass; cancelling before the
// backward pass leaves the trainer as it was (same loss next time, no step taken).
func TestTrainerHooks(t *testing.T) {
	m := tiny(t, 7)
	defer m.Close()
	tr, err := NewTrainer(m, 2)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	tr.SetThreads(1)
	cfg, _ := m.Config()
	total := int(cfg.Depth + cfg.DecoderDepth + 1)
	var seen []int
	if err := tr.SetProgress(func(done, n int) bool {
		if n != total {
			t.Errorf("total %d, want %d", n, total)
		}
		seen = append(seen, done)
		return false
	}); err != nil {
		t.Fatal(err)
	}
	imgs := images(2 * 3 * 32 * 32)
	l := int(cfg.ImgHeight/cfg.PatchSize) * int(cfg.ImgWidth/cfg.PatchSize)
	noise := images(2 * l)
	loss, err := tr.ForwardBackward(imgs, 2, noise)
	if err != nil {
		t.Fatal(err)
	}
	if len(seen) != total+1 || seen[0] != 0 || seen[len(seen)-1] != total {
		t.Fatalf("progress %v for %d units", seen, total)
	}
	// cancel at the last check, just before the backward pass
	if err := tr.SetAbort(func() bool { return len(seen) == total }); err != nil {
		t.Fatal(err)
	}
	seen = nil
	if _, err := tr.ForwardBackward(imgs, 2, noise); !isStatus(err, ErrAborted) {
		t.Fatalf("cancelled before the backward pass: %v", err)
	}
	tr.SetAbort(nil)
	tr.SetProgress(nil)
	if s, _ := tr.Steps(); s != 0 {
		t.Fatalf("%d steps after a cancelled call", s)
	}
	again, err := tr.ForwardBackward(imgs, 2, noise)
	if err != nil || again != loss {
		t.Fatalf("after a cancel: loss %v (%v), want %v", again, err, loss)
	}
	if err := tr.Step(); err != nil {
		t.Fatal(err)
	}
	if s, _ := tr.Steps(); s != 1 {
		t.Fatalf("%d steps", s)
	}
	if _, err := tr.ForwardBackward(imgs[1:], 2, nil); !isStatus(err, ErrShape) {
		t.Fatalf("a short batch: %v", err)
	}
}
