// The FFI example: the computation of examples/ffi_reference.c through the Go binding, printed
// in the same format (tests/check_ffi.sh compares the two).
//
//	make install PREFIX=/tmp/mae && export PKG_CONFIG_PATH=/tmp/mae/lib/pkgconfig
//	cd examples/go && go build -o /tmp/mae_example ./example
//	LD_LIBRARY_PATH=/tmp/mae/lib /tmp/mae_example [checkpoint.safetensors]
package main

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/libmae/libmae/examples/go/mae"
)

func openModel(path string) (*mae.Model, error) {
	if path != "" {
		m, err := mae.Load(path)
		if err == nil {
			return m, nil
		}
		var e *mae.Error
		_, statErr := os.Stat(path)
		// checkpoints not in this build yet, or not written: the same model, created
		if !(errors.As(err, &e) && e.Status == mae.ErrUnsupported) && statErr == nil {
			return nil, err
		}
	}
	cfg, err := mae.Preset("tiny")
	if err != nil {
		return nil, err
	}
	return mae.Create(cfg, 42)
}

func maskString(mask []float32) string {
	var b strings.Builder
	for _, v := range mask {
		if v != 0 {
			b.WriteByte('1')
		} else {
			b.WriteByte('0')
		}
	}
	return b.String()
}

func run(path string) error {
	const B = 2
	model, err := openModel(path)
	if err != nil {
		return err
	}
	defer model.Close()
	cfg, err := model.Config()
	if err != nil {
		return err
	}
	ctx, err := mae.NewContext(model, B)
	if err != nil {
		return err
	}
	defer ctx.Close()
	l, _, _, err := ctx.Dims()
	if err != nil {
		return err
	}
	npix := B * int(cfg.InChans) * int(cfg.ImgSize) * int(cfg.ImgSize)
	// exact in float32: the same values as the C reference
	imgs := make([]float32, npix)
	for i := range imgs {
		imgs[i] = float32((i*37)%101-50) / 64
	}
	noise := make([]float32, B*l)
	for i := range noise {
		noise[i] = float32((i*53)%97) / 128
	}
	r, err := ctx.Forward(imgs, B, noise)
	if err != nil {
		return err
	}
	sum := 0.0
	for _, v := range r.Pred {
		sum += float64(v)
	}
	fmt.Printf("loss %.9g\n", r.Loss)
	fmt.Printf("pred_sum %.9g\n", sum)
	fmt.Printf("pred_head %.9g %.9g %.9g %.9g\n", r.Pred[0], r.Pred[1], r.Pred[2], r.Pred[3])
	fmt.Printf("mask %s\n", maskString(r.Mask))

	if err := ctx.SetSeed(2); err != nil {
		return err
	}
	if r, err = ctx.Forward(imgs, B, nil); err != nil {
		return err
	}
	fmt.Printf("seed_loss %.9g\n", r.Loss)
	fmt.Printf("seed_mask %s\n", maskString(r.Mask))

	d, _, err := model.EmbedDims()
	if err != nil {
		return err
	}
	for _, p := range []struct {
		pool mae.Pool
		name string
	}{{mae.PoolCLS, "cls"}, {mae.PoolMean, "mean"}} {
		e, err := ctx.Embed(imgs, B, p.pool)
		if err != nil {
			return err
		}
		fmt.Printf("embed_%s_head %.9g %.9g %.9g %.9g\n", p.name, e[d], e[d+1], e[d+2], e[d+3])
	}
	tok, err := ctx.Embed(imgs, B, mae.PoolTokens)
	if err != nil {
		return err
	}
	sq := 0.0
	for _, v := range tok {
		sq += float64(v) * float64(v)
	}
	fmt.Printf("embed_tokens_sumsq %.9g\n", sq)

	// a bad ratio is the library's error, with its status and message
	err = ctx.SetMaskRatio(1.5)
	var e *mae.Error
	if !errors.As(err, &e) || e.Status != mae.ErrInvalidArg {
		return fmt.Errorf("SetMaskRatio(1.5) gave %v, want an invalid-argument error", err)
	}
	fmt.Fprintf(os.Stderr, "go: libmae %s, kernels %s; refused as expected: %v\n", mae.Version(), mae.Kernels(), err)
	return nil
}

func main() {
	path := ""
	if len(os.Args) > 1 {
		path = os.Args[1]
	}
	if err := run(path); err != nil {
		fmt.Fprintln(os.Stderr, "go example:", err)
		os.Exit(1)
	}
}
