package mae

import (
	"math"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
)

func tiny(t *testing.T, seed uint64) *Model {
	cfg, err := Preset("tiny")
	if err != nil {
		t.Fatal(err)
	}
	m, err := Create(cfg, seed)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func images(n int) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = float32((i*29)%113-56) / 64
	}
	return x
}

// Embed's pools agree with each other, and sizes are checked before the library is called.
func TestEmbed(t *testing.T) {
	m := tiny(t, 1)
	defer m.Close()
	c, err := NewContext(m, 2)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	d, tk, _ := m.EmbedDims()
	imgs := images(2 * 3 * 32 * 32)
	cls, err := c.Embed(imgs, 2, PoolCLS)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := c.Embed(imgs, 2, PoolTokens)
	if err != nil {
		t.Fatal(err)
	}
	for b := 0; b < 2; b++ {
		for k := 0; k < d; k++ {
			if cls[b*d+k] != tok[b*tk*d+k] {
				t.Fatalf("cls %d,%d differs from token 0", b, k)
			}
		}
	}
	if _, err := c.Embed(imgs[1:], 2, PoolMean); err == nil {
		t.Fatal("a short imgs slice was accepted")
	}
	if err := c.EmbedInto(imgs, 2, Pool(7), make([]float32, 2*d)); err == nil {
		t.Fatal("pool 7 was accepted")
	}
}

// Closing a model while contexts use it (from other goroutines) is safe: the memory goes with
// the last context, and the contexts keep working until then.
func TestCloseInUse(t *testing.T) {
	m := tiny(t, 2)
	var ctxs []*Context
	for i := 0; i < 3; i++ {
		c, err := NewContext(m, 1)
		if err != nil {
			t.Fatal(err)
		}
		ctxs = append(ctxs, c)
	}
	imgs := images(3 * 32 * 32)
	want, _ := ctxs[0].Embed(imgs, 1, PoolMean)
	var wg sync.WaitGroup
	for _, c := range ctxs {
		wg.Add(1)
		go func(c *Context) {
			defer wg.Done()
			for i := 0; i < 20; i++ {
				got, err := c.Embed(imgs, 1, PoolMean)
				if err != nil {
					t.Error(err)
					return
				}
				for k := range got {
					if got[k] != want[k] {
						t.Error("features changed while the model was being closed")
						return
					}
				}
			}
		}(c)
	}
	m.Close()
	m.Close()
	if _, err := NewContext(m, 1); err == nil {
		t.Error("a context was made from a closed model")
	}
	wg.Wait()
	for _, c := range ctxs {
		c.Close()
		c.Close()
	}
	if _, err := ctxs[0].Embed(imgs, 1, PoolMean); err == nil {
		t.Error("a closed context ran")
	}
	runtime.GC()
}

// A preset keeps its q/k/v biases through Config; a bf16 model's embeddings stay within bf16's
// rounding of the f32 model's, and the precision cannot change while a context is open.
func TestPrecision(t *testing.T) {
	f32m, bf := tiny(t, 4), tiny(t, 4)
	defer f32m.Close()
	defer bf.Close()
	if cfg, _ := bf.Config(); cfg.QkvBias != 1 {
		t.Fatalf("a preset model without q/k/v biases (QkvBias %d)", cfg.QkvBias)
	}
	if p, err := bf.Precision(); err != nil || p != PrecisionF32 {
		t.Fatalf("a new model's precision: %d, %v", p, err)
	}
	if err := bf.SetPrecision(PrecisionBF16); err != nil {
		t.Fatal(err)
	}
	if p, _ := bf.Precision(); p != PrecisionBF16 {
		t.Fatalf("precision %d after SetPrecision(BF16)", p)
	}
	a, err := NewContext(f32m, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := NewContext(bf, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := f32m.SetPrecision(PrecisionBF16); !isStatus(err, ErrState) {
		t.Fatalf("SetPrecision with a context open: %v", err)
	}
	imgs := images(3 * 32 * 32)
	x, err := a.Embed(imgs, 1, PoolCLS)
	if err != nil {
		t.Fatal(err)
	}
	y, err := b.Embed(imgs, 1, PoolCLS)
	if err != nil {
		t.Fatal(err)
	}
	var d2, n2 float64
	for i := range x {
		d2 += float64(x[i]-y[i]) * float64(x[i]-y[i])
		n2 += float64(x[i]) * float64(x[i])
	}
	if rel := d2 / n2; rel <= 0 || rel > 4e-4 { // squared: relative L2 2e-2
		t.Fatalf("bf16 vs f32 squared relative L2 %g", rel)
	}
}

// LoadAs(PrecisionBF16) gives the embeddings of Load + SetPrecision(PrecisionBF16), bit for bit.
func TestLoadAsBF16(t *testing.T) {
	m := tiny(t, 6)
	path := filepath.Join(t.TempDir(), "tiny.safetensors")
	if err := m.Save(path); err != nil {
		t.Fatal(err)
	}
	m.Close()
	want, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	defer want.Close()
	if err := want.SetPrecision(PrecisionBF16); err != nil {
		t.Fatal(err)
	}
	got, err := LoadAs(path, PrecisionBF16)
	if err != nil {
		t.Fatal(err)
	}
	defer got.Close()
	if p, _ := got.Precision(); p != PrecisionBF16 {
		t.Fatalf("LoadAs(BF16) gave precision %d", p)
	}
	if _, err := LoadAs(path, 7); !isStatus(err, ErrInvalidArg) {
		t.Fatalf("LoadAs with precision 7: %v", err)
	}
	a, err := NewContext(want, 2)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := NewContext(got, 2)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	imgs := images(2 * 3 * 32 * 32)
	x, err := a.Embed(imgs, 2, PoolTokens)
	if err != nil {
		t.Fatal(err)
	}
	y, err := b.Embed(imgs, 2, PoolTokens)
	if err != nil {
		t.Fatal(err)
	}
	for i := range x {
		if math.Float32bits(x[i]) != math.Float32bits(y[i]) {
			t.Fatalf("embedding %d: %g loaded as bf16, %g converted", i, y[i], x[i])
		}
	}
}
