package mae

// The Go side of the host hooks: C calls these (through the trampolines in hooks.go) with the
// registry id it was given as its user pointer. A file with //export may only declare in its
// preamble, so the trampolines live in hooks.go.

/*
#include <stdint.h>
*/
import "C"

//export maeGoAbort
func maeGoAbort(id C.uintptr_t) C.int {
	h := lookup(uintptr(id))
	if h == nil || h.abort == nil {
		return 0
	}
	return h.guard(func() bool { return h.abort() })
}

//export maeGoProgress
func maeGoProgress(id C.uintptr_t, done, total C.int) C.int {
	h := lookup(uintptr(id))
	if h == nil || h.progress == nil {
		return 0
	}
	return h.guard(func() bool { return h.progress(int(done), int(total)) })
}
