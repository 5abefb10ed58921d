package vtower

/*
#include <vtower.h>
*/
import "C"

import (
	"fmt"
	"runtime"
	"sync"
	"time"
	"unsafe"
)

// Job is an asynchronous forward pass started by Model.EmbedAsync. Wait, Done and Cancel
// may be called concurrently from any goroutines (typically one waits while another
// cancels). Close frees it; a finalizer frees a forgotten Job as a safety net.
type Job struct {
	mu    sync.RWMutex
	c     *C.struct_vt_job
	grids []Embedding
}

// EmbedAsync decodes and preprocesses the images as Embed does, then starts their forward
// pass and returns at once. The pass runs in submission order on the model's job threads
// (2 per model) and gives Embed's results bit for bit. The job holds the model: closing the
// Model while jobs run is safe, they finish first. Close the Job when done with it.
func (m *Model) EmbedAsync(images ...[]byte) (*Job, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.c == nil {
		return nil, ErrClosed
	}
	imgs := make([]*C.struct_vt_image, 0, len(images))
	defer func() {
		for _, img := range imgs {
			C.vt_image_free(img)
		}
	}()
	for i, data := range images {
		var ptr *C.uint8_t
		if len(data) > 0 {
			ptr = (*C.uint8_t)(unsafe.Pointer(&data[0]))
		}
		var img *C.struct_vt_image
		var cerr *C.struct_vt_error
		if st := C.vt_preprocess(m.c, ptr, C.size_t(len(data)), &img, &cerr); st != C.VT_OK {
			e := takeError(st, cerr)
			if len(images) > 1 {
				e.Message = fmt.Sprintf("image %d: %s", i, e.Message)
			}
			return nil, e
		}
		imgs = append(imgs, img)
	}
	grids, err := tokenGrids(m.c, imgs)
	if err != nil {
		return nil, err
	}
	var list **C.struct_vt_image
	if len(imgs) > 0 {
		list = &imgs[0]
	}
	var job *C.struct_vt_job
	var cerr *C.struct_vt_error
	// vt_forward_async copies the images: they are freed when this returns.
	if st := C.vt_forward_async(m.c, list, C.size_t(len(imgs)), nil, nil, &job, &cerr); st != C.VT_OK {
		return nil, takeError(st, cerr)
	}
	j := &Job{c: job, grids: grids}
	runtime.SetFinalizer(j, (*Job).Close)
	return j, nil
}

// Wait blocks until the job has finished and returns one Embedding per image, or its
// error (errors.Is(err, StatusCancelled) after Cancel). The result is handed out once: a
// second Wait returns a StatusInvalidArgument error.
func (j *Job) Wait() ([]Embedding, error) {
	j.mu.RLock()
	defer j.mu.RUnlock()
	if j.c == nil {
		return nil, ErrClosed
	}
	var emb *C.struct_vt_embeddings
	var cerr *C.struct_vt_error
	if st := C.vt_job_wait(j.c, &emb, &cerr); st != C.VT_OK {
		return nil, takeError(st, cerr)
	}
	defer C.vt_embeddings_free(emb)
	out := make([]Embedding, len(j.grids))
	copy(out, j.grids)
	return readEmbeddings(emb, out)
}

// Done waits at most timeout (0: not at all) and reports whether the job has finished
// (with a result, an error or cancelled); Wait then returns at once.
func (j *Job) Done(timeout time.Duration) bool {
	j.mu.RLock()
	defer j.mu.RUnlock()
	if j.c == nil {
		return true
	}
	ms := timeout.Milliseconds()
	if ms < 0 {
		ms = 0
	}
	if ms > int64(^uint32(0)) {
		ms = int64(^uint32(0))
	}
	return C.vt_job_done(j.c, C.uint32_t(ms)) != 0
}

// Cancel asks the job to stop: a queued job will not run, a running one stops before its
// next encoder layer; Wait then returns a StatusCancelled error. A finished job keeps its
// result.
func (j *Job) Cancel() {
	j.mu.RLock()
	defer j.mu.RUnlock()
	if j.c != nil {
		C.vt_job_cancel(j.c)
	}
}

// Close cancels the job if it has not finished and frees it, without waiting for the
// pass to stop. It waits for a Wait in progress to return (Cancel first to make that
// quick). Closing again is a no-op.
func (j *Job) Close() error {
	j.Cancel()
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.c != nil {
		C.vt_job_free(j.c)
		j.c = nil
		runtime.SetFinalizer(j, nil)
	}
	return nil
}

// CacheStats are the counters of a model's embedding cache (Options.EmbeddingCacheBytes).
type CacheStats struct {
	// Hits and Misses count images since Load; Bytes and Entries are what the cache holds.
	Hits, Misses, Bytes, Entries uint64
}

// CacheStats reads the embedding cache's counters (all 0 without a cache).
func (m *Model) CacheStats() (CacheStats, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.c == nil {
		return CacheStats{}, ErrClosed
	}
	var s C.vt_cache_stats
	var cerr *C.struct_vt_error
	if st := C.vt_model_cache_stats(m.c, &s, &cerr); st != C.VT_OK {
		return CacheStats{}, takeError(st, cerr)
	}
	return CacheStats{Hits: uint64(s.hits), Misses: uint64(s.misses), Bytes: uint64(s.bytes), Entries: uint64(s.entries)}, nil
}
