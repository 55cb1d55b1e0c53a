package mae

/*
#include <stdlib.h>
#include <string.h>
#include <mae.h>
*/
import "C"

import (
	"fmt"
	"unsafe"
)

// Image is 8-bit pixels, rows top to bottom, channels interleaved (1 gray, 2 gray+alpha,
// 3 RGB, 4 RGBA).
type Image struct {
	Pixels                  []byte
	Width, Height, Channels int
}

// Filter is the resampling filter of ImagesToInput.
type Filter int

const (
	FilterNearest  Filter = C.MAE_FILTER_NEAREST
	FilterBilinear Filter = C.MAE_FILTER_BILINEAR
	FilterBicubic  Filter = C.MAE_FILTER_BICUBIC // Keys cubic, a = -0.5 (Pillow's BICUBIC)
)

// The normalizations of Fashion-MNIST (one channel) and ImageNet (three).
var (
	FashionMNISTMean = []float32{0.2860}
	FashionMNISTStd  = []float32{0.3530}
	ImageNetMean     = []float32{0.485, 0.456, 0.406}
	ImageNetStd      = []float32{0.229, 0.224, 0.225}
)

// LoadImage reads a PNG or binary PGM/PPM; channels 0 keeps the file's, 1..4 converts.
func LoadImage(path string, channels int) (*Image, error) {
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	var px *C.uint8_t
	var w, h, c C.int
	if err := call(func() C.mae_status { return C.mae_image_load(cpath, C.int(channels), &px, &w, &h, &c) }); err != nil {
		return nil, err
	}
	defer C.mae_image_free(unsafe.Pointer(px))
	n := int(w) * int(h) * int(c)
	return &Image{Pixels: C.GoBytes(unsafe.Pointer(px), C.int(n)), Width: int(w), Height: int(h), Channels: int(c)}, nil
}

// imagesToInput is mae_images_to_input for model handle mp: each image resized (centre-cropped
// when centerCrop) to the model's size and channels, then (v/255 - mean)/std (nil: v/255).
func imagesToInput(mp *C.mae_model, images []*Image, filter Filter, centerCrop bool, mean, std []float32) ([]float32, error) {
	var cfg C.mae_config
	cfg.struct_size = C.uint32_t(unsafe.Sizeof(cfg))
	if err := call(func() C.mae_status { return C.mae_model_get_config(mp, &cfg) }); err != nil {
		return nil, err
	}
	ch := int(cfg.in_chans)
	if (mean != nil && len(mean) != ch) || (std != nil && len(std) != ch) {
		return nil, &Error{ErrShape, fmt.Sprintf("mean and std need %d values, got %d and %d", ch, len(mean), len(std))}
	}
	b := len(images)
	if b == 0 {
		return nil, &Error{ErrShape, "no images"}
	}
	// the pixels are copied to C memory: an array of pointers to Go memory may not go to C
	total := 0
	for i, im := range images {
		if im == nil || len(im.Pixels) != im.Width*im.Height*im.Channels || len(im.Pixels) == 0 {
			return nil, &Error{ErrShape, fmt.Sprintf("image %d: pixels do not match its width, height and channels", i)}
		}
		total += len(im.Pixels)
	}
	buf := C.malloc(C.size_t(total))
	meta := C.malloc(C.size_t(b) * C.size_t(unsafe.Sizeof(uintptr(0))+3*unsafe.Sizeof(C.int(0))))
	if buf == nil || meta == nil {
		C.free(buf)
		C.free(meta)
		return nil, &Error{ErrNoMem, "out of memory copying the pixels"}
	}
	defer C.free(buf)
	defer C.free(meta)
	ptrs := unsafe.Slice((**C.uint8_t)(meta), b)
	ints := unsafe.Slice((*C.int)(unsafe.Add(meta, b*int(unsafe.Sizeof(uintptr(0))))), 3*b)
	off := 0
	for i, im := range images {
		dst := unsafe.Add(buf, off)
		C.memcpy(dst, unsafe.Pointer(&im.Pixels[0]), C.size_t(len(im.Pixels)))
		ptrs[i] = (*C.uint8_t)(dst)
		ints[i], ints[b+i], ints[2*b+i] = C.int(im.Width), C.int(im.Height), C.int(im.Channels)
		off += len(im.Pixels)
	}
	out := make([]float32, b*ch*int(cfg.img_height)*int(cfg.img_width))
	var mp2, sp *C.float
	if mean != nil {
		mp2 = (*C.float)(unsafe.Pointer(&mean[0]))
	}
	if std != nil {
		sp = (*C.float)(unsafe.Pointer(&std[0]))
	}
	crop := C.int(0)
	if centerCrop {
		crop = 1
	}
	err := call(func() C.mae_status {
		return C.mae_images_to_input(mp, C.int(b), &ptrs[0], &ints[0], &ints[b], &ints[2*b], nil,
			C.mae_filter(filter), crop, mp2, sp, (*C.float)(unsafe.Pointer(&out[0])))
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// ImagesToInput gives the model's input [B, C, H, W] from 8-bit images of any size.
func (m *Model) ImagesToInput(images []*Image, filter Filter, centerCrop bool, mean, std []float32) ([]float32, error) {
	if !m.acquire() {
		return nil, errClosed
	}
	defer m.release()
	return imagesToInput(m.p, images, filter, centerCrop, mean, std)
}

// ImagesToInput is Model.ImagesToInput for the classifier's encoder.
func (c *Classifier) ImagesToInput(images []*Image, filter Filter, centerCrop bool, mean, std []float32) ([]float32, error) {
	if !c.acquire() {
		return nil, errClassifierClosed
	}
	defer c.release()
	return imagesToInput(c.model, images, filter, centerCrop, mean, std)
}
