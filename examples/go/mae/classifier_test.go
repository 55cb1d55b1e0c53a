package mae

import (
	"encoding/json"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

var fmnistNames = []string{"tshirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "boot"}
var testImages = []string{"t10k-0000-boot.png", "t10k-0002-trouser.png", "t10k-0008-sandal.png"}

func dataPath(name string) string { return filepath.Join("..", "..", "data", name) }

func fmnistClassifier(t *testing.T, k int, globalPool bool, seed uint64) *Classifier {
	m, err := Load(dataPath("mae-fmnist.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close() // the classifier keeps its own encoder
	c, err := NewClassifier(m, k, globalPool, seed)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func testInputs(t *testing.T, c *Classifier) []float32 {
	var ims []*Image
	for _, n := range testImages {
		im, err := LoadImage(dataPath(n), 1)
		if err != nil {
			t.Fatal(err)
		}
		ims = append(ims, im)
	}
	x, err := c.ImagesToInput(ims, FilterBicubic, true, FashionMNISTMean, FashionMNISTStd)
	if err != nil {
		t.Fatal(err)
	}
	return x
}

func near(a, b, scale float64) bool { return math.Abs(a-b) <= 1e-5*scale+1e-12 }

// The logits match `mae classify --json` on the saved classifier (when $MAE_CLI names the CLI,
// as tests/check_ffi.sh sets it), labels and top class included; the file round trip is exact.
func TestClassifierAgainstCLI(t *testing.T) {
	c := fmnistClassifier(t, 10, true, 7)
	defer c.Close()
	if err := c.SetLabels(fmnistNames); err != nil {
		t.Fatal(err)
	}
	x := testInputs(t, c)
	ctx, err := c.NewContext(3)
	if err != nil {
		t.Fatal(err)
	}
	defer ctx.Close()
	logits, err := c.Forward(ctx, x, 3)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "clf.safetensors")
	if err := c.Save(path); err != nil {
		t.Fatal(err)
	}
	back, err := LoadClassifier(path, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer back.Close()
	if names, _ := back.Labels(); strings.Join(names, ",") != strings.Join(fmnistNames, ",") {
		t.Fatalf("labels after a round trip: %v", names)
	}
	bctx, _ := back.NewContext(3)
	defer bctx.Close()
	again, err := back.Forward(bctx, x, 3)
	if err != nil {
		t.Fatal(err)
	}
	for i := range logits {
		if again[i] != logits[i] {
			t.Fatalf("logit %d: %v after a round trip, %v before", i, again[i], logits[i])
		}
	}
	if _, err := LoadClassifier(path, 5); !isStatus(err, ErrShape) {
		t.Fatalf("a 10-class head loaded as 5 classes: %v", err)
	}
	if _, err := c.Forward(bctx, x, 3); !isStatus(err, ErrInvalidArg) {
		t.Fatalf("another classifier's context: %v", err)
	}
	cli := os.Getenv("MAE_CLI")
	if cli == "" {
		t.Skip("MAE_CLI not set: the comparison with `mae classify` is left to tests/check_ffi.sh")
	}
	args := []string{"classify", "--json", "--crop-pct", "1", "--norm", "fashion-mnist", path}
	for _, n := range testImages {
		args = append(args, dataPath(n))
	}
	out, err := exec.Command(cli, args...).Output()
	if err != nil {
		t.Fatalf("%s: %v", cli, err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != 3 {
		t.Fatalf("%d lines from the CLI", len(lines))
	}
	top := c.Argmax(logits)
	for b, line := range lines {
		var r struct {
			Top []struct {
				Label string
				Index int
			}
			Logits []float64
		}
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatal(err)
		}
		scale := 0.0
		for _, v := range r.Logits {
			scale = math.Max(scale, math.Abs(v))
		}
		for k, v := range r.Logits {
			if !near(float64(logits[b*10+k]), v, scale) {
				t.Fatalf("image %d class %d: %v, the CLI %v", b, k, logits[b*10+k], v)
			}
		}
		if r.Top[0].Index != top[b] || r.Top[0].Label != fmnistNames[top[b]] {
			t.Fatalf("image %d: top %v, the CLI's %+v", b, top[b], r.Top[0])
		}
	}
}

// With cls pooling the logits are head.weight . embed(cls) + head.bias, embed computed by
// mae_embed on the classifier's encoder: a second path through the C API.
func TestClassifierClsPooling(t *testing.T) {
	c := fmnistClassifier(t, 4, false, 3)
	defer c.Close()
	if gp, _ := c.GlobalPool(); gp {
		t.Fatal("global pooling reported for a cls classifier")
	}
	if names, _ := c.Labels(); strings.Join(names, ",") != "0,1,2,3" {
		t.Fatalf("labels of a classifier without names: %v", names)
	}
	x := testInputs(t, c)
	ctx, _ := c.NewContext(3)
	defer ctx.Close()
	logits, err := c.Forward(ctx, x, 3)
	if err != nil {
		t.Fatal(err)
	}
	feats, err := ctx.Embed(x, 3, PoolCLS)
	if err != nil {
		t.Fatal(err)
	}
	w, _ := c.Tensor("head.weight")
	bias, _ := c.Tensor("head.bias")
	d := len(feats) / 3
	if len(w) != 4*d || len(bias) != 4 {
		t.Fatalf("head %d and %d values", len(w), len(bias))
	}
	for b := 0; b < 3; b++ {
		for k := 0; k < 4; k++ {
			s, mag := float64(bias[k]), math.Abs(float64(bias[k]))
			for j := 0; j < d; j++ {
				s += float64(w[k*d+j]) * float64(feats[b*d+j])
				mag += math.Abs(float64(w[k*d+j]) * float64(feats[b*d+j]))
			}
			if !near(float64(logits[b*4+k]), s, mag) {
				t.Fatalf("image %d class %d: %v, head . embed %v", b, k, logits[b*4+k], s)
			}
		}
	}
	// sizes are checked before the library reads anything
	if _, err := c.Forward(ctx, x[1:], 3); !isStatus(err, ErrShape) {
		t.Fatalf("a short imgs slice: %v", err)
	}
	if err := c.ForwardInto(ctx, x, 3, make([]float32, 11)); !isStatus(err, ErrShape) {
		t.Fatalf("a short out slice: %v", err)
	}
	if _, err := c.Forward(ctx, x, 4); !isStatus(err, ErrShape) {
		t.Fatalf("a batch above max batch: %v", err)
	}
	if err := c.SetLabels([]string{"a"}); !isStatus(err, ErrShape) {
		t.Fatalf("1 label for 4 classes: %v", err)
	}
}

// Closing a classifier while goroutines classify with it is safe: the last context frees it.
func TestClassifierCloseInUse(t *testing.T) {
	c := fmnistClassifier(t, 10, true, 1)
	x := testInputs(t, c)[:28*28]
	var ctxs []*Context
	for i := 0; i < 3; i++ {
		ctx, err := c.NewContext(1)
		if err != nil {
			t.Fatal(err)
		}
		ctxs = append(ctxs, ctx)
	}
	want, _ := c.Forward(ctxs[0], x, 1)
	var wg sync.WaitGroup
	for _, ctx := range ctxs {
		wg.Add(1)
		go func(ctx *Context) {
			defer wg.Done()
			for i := 0; i < 10; i++ {
				got, err := c.Forward(ctx, x, 1)
				if err != nil {
					return // the classifier was closed before this call: refused, not a crash
				}
				for k := range got {
					if got[k] != want[k] {
						t.Error("logits changed while the classifier was being closed")
						return
					}
				}
			}
		}(ctx)
	}
	c.Close()
	c.Close()
	if _, err := c.NewContext(1); err == nil {
		t.Error("a context was made from a closed classifier")
	}
	wg.Wait()
	if _, err := c.Forward(ctxs[0], x, 1); !isStatus(err, ErrState) {
		t.Errorf("a closed classifier ran: %v", err)
	}
	// its contexts still embed with the encoder until they are closed
	if _, err := ctxs[1].Embed(x, 1, PoolMean); err != nil {
		t.Error(err)
	}
	for _, ctx := range ctxs {
		ctx.Close()
	}
}

// One fine-tuning step on a fixed batch lowers its loss, and the classifier changed in place.
func TestFinetunerStep(t *testing.T) {
	c := fmnistClassifier(t, 10, true, 1)
	defer c.Close()
	x := testInputs(t, c)
	labels := []int32{9, 1, 5}
	f, err := NewFinetuner(c, 3)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := f.Config()
	if err != nil || cfg.LayerDecay != 0.75 {
		t.Fatalf("default config %+v, %v", cfg, err)
	}
	cfg.Lr, cfg.DropPath, cfg.Smoothing = 1e-3, 0, 0
	if err := f.SetConfig(cfg); err != nil {
		t.Fatal(err)
	}
	f.SetThreads(1)
	if _, err := f.ForwardBackward(x, 3, labels[:2]); !isStatus(err, ErrShape) {
		t.Fatalf("2 labels for 3 images: %v", err)
	}
	if _, err := f.ForwardBackward(x, 3, []int32{9, 1, 10}); !isStatus(err, ErrInvalidArg) {
		t.Fatalf("label 10 of 10 classes: %v", err)
	}
	before, err := f.ForwardBackward(x, 3, labels)
	if err != nil || math.Abs(float64(before)-math.Log(10)) > 0.01 {
		t.Fatalf("a fresh head's loss %v (%v), want ln 10", before, err)
	}
	if err := f.Step(); err != nil {
		t.Fatal(err)
	}
	after, err := f.ForwardBackward(x, 3, labels)
	if err != nil || after >= before-0.01 {
		t.Fatalf("loss %v -> %v (%v)", before, after, err)
	}
	if n, _ := f.Steps(); n != 1 {
		t.Fatalf("%d steps", n)
	}
	f.ZeroGrad()
	f.Close()
	ctx, err := c.NewContext(3)
	if err != nil {
		t.Fatal(err)
	}
	defer ctx.Close()
	logits, _ := c.Forward(ctx, x, 3)
	nll := 0.0
	for b := 0; b < 3; b++ {
		m, s := math.Inf(-1), 0.0
		for k := 0; k < 10; k++ {
			m = math.Max(m, float64(logits[b*10+k]))
		}
		for k := 0; k < 10; k++ {
			s += math.Exp(float64(logits[b*10+k]) - m)
		}
		nll += (m + math.Log(s) - float64(logits[b*10+int(labels[b])])) / 3
	}
	if nll >= float64(before)-0.01 {
		t.Fatalf("the classifier's loss %v after a step, %v before", nll, before)
	}
}
