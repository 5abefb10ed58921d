// Package vtower runs the vision tower of vision-language models (image encoder +
// multimodal projector) through libvtower's C API: hand it encoded images, get back
// embeddings in the language model's hidden size, ready to splice into a prompt.
//
//	m, err := vtower.Load("path/to/model", nil)
//	if err != nil { ... }
//	defer m.Close()
//	embs, err := m.Embed(jpegBytes, pngBytes)  // one Embedding per image
//	rows := embs[0].Data                       // [Tokens * Dim] float32, row-major
//
// The package links libvtower through pkg-config (`#cgo pkg-config: vtower`): install
// the library (`make install PREFIX=...` in the vtower repository) and point
// PKG_CONFIG_PATH at PREFIX/lib/pkgconfig when PREFIX is not a system location.
//
// A Model is safe for concurrent use by many goroutines; Close waits for calls in
// progress. No C memory escapes: embeddings are copied into Go slices and every C object
// is freed before a call returns (the Model's own handle is freed by Close, or by a
// finalizer as a safety net).
package vtower

/*
#cgo pkg-config: vtower
#include <stdlib.h>
#include <vtower.h>
*/
import "C"

import (
	"errors"
	"fmt"
	"math"
	"runtime"
	"sync"
	"unsafe"
)

// Device selects where the tower runs.
type Device int

const (
	// DeviceAuto uses a GPU when one is usable, else the CPU (the default).
	DeviceAuto Device = iota
	// DeviceCPU runs on the CPU.
	DeviceCPU
	// DeviceCUDA runs on the CUDA GPU Options.DeviceOrdinal (needs a CUDA-enabled build).
	DeviceCUDA
)

// Options configure Load. The zero value (or a nil *Options) gives the library defaults.
type Options struct {
	// Device runs the tower; DeviceAuto by default.
	Device Device
	// DeviceOrdinal picks the GPU for DeviceCUDA.
	DeviceOrdinal int
	// Threads is the number of worker threads for CPU work; 0 = one per core.
	Threads int
	// MaxImagePixels refuses larger images (width*height) before decoding them with
	// StatusImageTooLarge; 0 = the library default (Pillow's limit, 89478485).
	MaxImagePixels uint64
	// MaxImageTokens is the most embedding rows one image may yield (every frame and
	// crop counted); images that would yield more are refused with StatusImageTooLarge
	// before anything is allocated for them. 0 = the library default, 32768.
	MaxImageTokens uint64
	// EmbeddingCacheBytes is the byte budget of the model's embedding cache: an image whose
	// preprocessed pixels equal one already run gets the same embeddings back without a
	// forward pass (checked bit for bit; least recently used entries evicted). 0 = no cache.
	EmbeddingCacheBytes uint64
	// MaxForwardBytes bounds the estimated activation memory of one forward batch (see
	// vt_model_forward_bytes in vtower.h): larger batches are split, an image over it alone
	// fails with StatusImageTooLarge before anything runs. 0 = no limit.
	MaxForwardBytes uint64
}

// PreprocessOptions are per-call preprocessing settings (vt_preprocess_params); the zero
// value keeps every setting of the model's preprocessor_config.json.
type PreprocessOptions struct {
	// MaxSoftTokens is Gemma 4's soft-token budget per image: 70, 140, 280, 560 or 1120
	// (other values fail with StatusInvalidArgument); 0 = the model's max_soft_tokens.
	// Other models refuse a non-zero value with StatusInvalidArgument.
	MaxSoftTokens int
	// MinPixels and MaxPixels (Qwen2-VL, Qwen3-VL, Qwen3.5, GLM-4.xV, PaddleOCR-VL) bound the
	// resized image's pixel count; other models refuse them (StatusInvalidArgument).
	// 0 = the model's.
	MinPixels, MaxPixels uint64
	// MaxTokens (any model) bounds the embeddings one image yields: Qwen and Pixtral pick
	// the largest size within it, fixed-size models refuse a smaller budget
	// (StatusInvalidArgument).
	MaxTokens uint64
	// LongestEdge (Pixtral, Mistral3) is the longest edge in pixels the image is shrunk to
	// fit (the processor's size={"longest_edge": n}); for Idefics3 and SmolVLM the long side
	// the image is resized to before it is cut into tiles; 0 = the model's. Other models
	// refuse a non-zero value (StatusInvalidArgument).
	LongestEdge uint32
	// CropToPatches (InternVL, Aya Vision) overrides the processor's tiling when non-nil:
	// false = one tile (the image stretched), true = tiles plus a thumbnail. Other models
	// refuse it (StatusInvalidArgument).
	CropToPatches *bool
	// MinPatches and MaxPatches (InternVL, Aya Vision) bound the tile grid (the thumbnail
	// not counted; MaxPatches is the tile budget); 0 = the model's. Values above 1024 or a
	// minimum above the maximum fail with StatusInvalidArgument.
	MinPatches, MaxPatches int
	// DoImageSplitting (Idefics3, SmolVLM) overrides the processor's do_image_splitting
	// when non-nil: false = one tile (the image stretched), true = a grid of tiles plus the
	// global image. LLaVA-OneVision: false = an image of a multi-image prompt (padded to a
	// square, one tile). Other models refuse it (StatusInvalidArgument).
	DoImageSplitting *bool
}

// SegmentKind says what a PromptSegment is.
type SegmentKind int

const (
	// SegmentText is text to tokenize with the model's tokenizer.
	SegmentText SegmentKind = iota
	// SegmentToken is one special token (TokenID).
	SegmentToken
	// SegmentEmbeddings is Count placeholder tokens (TokenID, -1 if unknown) whose input
	// embeddings are the image's rows Start .. Start+Count-1.
	SegmentEmbeddings
)

// PromptSegment is one piece of the prompt that stands for an image (vt_image_prompt).
type PromptSegment struct {
	Kind         SegmentKind
	Text         string
	TokenID      int64
	Start, Count int
}

// Info describes a loaded model.
type Info struct {
	// Family is the implementation ("siglip", ...); Type is config.json's model_type.
	Family, Type string
	// OutputDim is the embedding width (the language model's hidden size); VisionDim
	// the vision encoder's width.
	OutputDim, VisionDim int
	// PatchSize of the encoder in pixels.
	PatchSize int
	// ImageWidth, ImageHeight: the native input size in pixels.
	ImageWidth, ImageHeight int
	// TokensPerImage is the number of embeddings per image when fixed, 0 when it
	// depends on the image.
	TokensPerImage int
	// Threads used for CPU work.
	Threads int
	// Token ids of the language model's image tokens, -1 where the model has none.
	ImageToken, ImageStartToken, ImageEndToken, ImageBreakToken int64
	// VideoToken is a video's placeholder id (Qwen families), -1 where the model has none.
	VideoToken int64
}

// Grid is the layout of an image's embedding rows: Frames x Rows x Cols, row-major.
type Grid struct {
	Frames, Rows, Cols int
}

// Embedding holds the embeddings of one image: Tokens rows of Dim float32 values.
type Embedding struct {
	Tokens int
	Dim    int
	// Data is the row-major [Tokens, Dim] matrix, owned by Go.
	Data []float32
	// Grid is the token layout (Frames*Rows*Cols == Tokens).
	Grid Grid
	// Deepstack holds the extra embedding levels of Qwen3-VL (levels 1..n, each a
	// row-major [Tokens, Dim] matrix owned by Go): level k is added to the language
	// model's hidden states after decoder layer Model.DeepstackLayers()[k-1]. Nil for models
	// with one level.
	Deepstack [][]float32
	// Prompt is the image's prompt layout, in order: text, special tokens and placeholder
	// runs that take its rows, as the model's reference processor lays them out.
	Prompt []PromptSegment
}

// Row returns row i (a sub-slice of Data).
func (e Embedding) Row(i int) []float32 {
	return e.Data[i*e.Dim : (i+1)*e.Dim]
}

// Model is a loaded vision tower. It is safe for concurrent use by many goroutines.
type Model struct {
	mu        sync.RWMutex
	c         *C.struct_vt_model
	info      Info
	deepstack []int
}

// DeepstackLayers (Qwen3-VL): for each deepstack level k = 1..len, the language model's
// decoder layer (0-based) after which it adds Embedding.Deepstack[k-1] to its hidden
// states at the image's placeholder positions (row i to the i-th placeholder). Empty for
// models without deepstack (a copy; available after Close too).
func (m *Model) DeepstackLayers() []int {
	return append([]int(nil), m.deepstack...)
}

// ErrClosed is returned by calls on a Model after Close.
var ErrClosed = errors.New("vtower: model is closed")

// Version returns the library's version string, e.g. "vtower 0.1.0 (backends: cpu)".
func Version() string {
	return C.GoString(C.vt_version())
}

// VersionNumber returns the library's version as one number,
// major*10000 + minor*100 + patch (0.1.0 is 100).
func VersionNumber() int {
	return int(C.vt_version_number())
}

// Load loads a model folder as Hugging Face save_pretrained writes it (config.json,
// preprocessor_config.json, model.safetensors or shards). opts may be nil.
// Errors are *Error values.
func Load(dir string, opts *Options) (*Model, error) {
	params := C.vt_load_params_default()
	if opts != nil {
		switch opts.Device {
		case DeviceAuto:
			params.device = C.VT_DEVICE_AUTO
		case DeviceCPU:
			params.device = C.VT_DEVICE_CPU
		case DeviceCUDA:
			params.device = C.VT_DEVICE_CUDA
		default:
			return nil, &Error{Status: StatusInvalidArgument, Message: fmt.Sprintf("invalid argument: unknown device %d", opts.Device)}
		}
		if opts.Threads < 0 || opts.DeviceOrdinal < 0 {
			return nil, &Error{Status: StatusInvalidArgument, Message: "invalid argument: negative Threads or DeviceOrdinal"}
		}
		params.device_ordinal = C.int32_t(opts.DeviceOrdinal)
		params.n_threads = C.uint32_t(opts.Threads)
		params.max_image_pixels = C.uint64_t(opts.MaxImagePixels)
		params.max_image_tokens = C.uint64_t(opts.MaxImageTokens)
		params.embedding_cache_bytes = C.uint64_t(opts.EmbeddingCacheBytes)
		params.max_forward_bytes = C.uint64_t(opts.MaxForwardBytes)
	}
	cdir := C.CString(dir)
	defer C.free(unsafe.Pointer(cdir))
	var cm *C.struct_vt_model
	var cerr *C.struct_vt_error
	if st := C.vt_load(cdir, &params, &cm, &cerr); st != C.VT_OK {
		return nil, takeError(st, cerr)
	}
	m := &Model{c: cm}
	m.info = Info{
		Family:          C.GoString(C.vt_model_family(cm)),
		Type:            C.GoString(C.vt_model_type(cm)),
		OutputDim:       int(C.vt_model_output_dim(cm)),
		VisionDim:       int(C.vt_model_vision_dim(cm)),
		PatchSize:       int(C.vt_model_patch_size(cm)),
		TokensPerImage:  int(C.vt_model_tokens_per_image(cm)),
		Threads:         int(C.vt_model_n_threads(cm)),
		ImageToken:      int64(C.vt_model_token_id(cm, C.VT_TOKEN_IMAGE)),
		ImageStartToken: int64(C.vt_model_token_id(cm, C.VT_TOKEN_IMAGE_START)),
		ImageEndToken:   int64(C.vt_model_token_id(cm, C.VT_TOKEN_IMAGE_END)),
		ImageBreakToken: int64(C.vt_model_token_id(cm, C.VT_TOKEN_IMAGE_BREAK)),
		VideoToken:      int64(C.vt_model_token_id(cm, C.VT_TOKEN_VIDEO)),
	}
	var w, h C.uint32_t
	if st := C.vt_model_image_size(cm, &w, &h, &cerr); st != C.VT_OK {
		C.vt_model_free(cm)
		return nil, takeError(st, cerr)
	}
	m.info.ImageWidth, m.info.ImageHeight = int(w), int(h)
	for k := 1; k < int(C.vt_model_n_levels(m.c)); k++ {
		m.deepstack = append(m.deepstack, int(C.vt_model_level_layer(m.c, C.size_t(k))))
	}
	runtime.SetFinalizer(m, (*Model).Close)
	return m, nil
}

// Info describes the model (available after Close too).
func (m *Model) Info() Info {
	return m.info
}

// Close frees the model after the calls in progress have returned; it returns once the
// model's worker threads have exited (unless an async job still holds the model). Later
// calls return ErrClosed; closing again is a no-op.
func (m *Model) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.c != nil {
		C.vt_model_free(m.c)
		m.c = nil
		runtime.SetFinalizer(m, nil)
	}
	return nil
}

// Embed decodes and preprocesses each encoded image (PNG, JPEG, WebP, GIF, BMP, TIFF)
// exactly as the model's Hugging Face image processor does, runs them through the tower
// in one call (same-size images are batched) and returns one Embedding per image.
// The byte slices are only read during the call.
func (m *Model) Embed(images ...[]byte) ([]Embedding, error) {
	return m.EmbedWith(nil, images...)
}

// EmbedWith is Embed with per-call preprocessing settings (nil = the model's).
func (m *Model) EmbedWith(opts *PreprocessOptions, images ...[]byte) ([]Embedding, error) {
	params := C.vt_preprocess_params_default()
	if opts != nil {
		if opts.MaxSoftTokens < 0 || uint64(opts.MaxSoftTokens) > math.MaxUint32 {
			return nil, &Error{Status: StatusInvalidArgument, Message: fmt.Sprintf(
				"invalid argument: MaxSoftTokens %d is out of range", opts.MaxSoftTokens)}
		}
		params.max_soft_tokens = C.uint32_t(opts.MaxSoftTokens)
		params.min_pixels = C.uint64_t(opts.MinPixels)
		params.max_pixels = C.uint64_t(opts.MaxPixels)
		params.max_tokens = C.uint64_t(opts.MaxTokens)
		params.longest_edge = C.uint32_t(opts.LongestEdge)
		if opts.CropToPatches != nil {
			params.crop_to_patches = 0
			if *opts.CropToPatches {
				params.crop_to_patches = 1
			}
		}
		if opts.DoImageSplitting != nil {
			params.do_image_splitting = 0
			if *opts.DoImageSplitting {
				params.do_image_splitting = 1
			}
		}
		for _, v := range []struct {
			name string
			n    int
			dst  *C.int32_t
		}{{"MinPatches", opts.MinPatches, &params.min_patches}, {"MaxPatches", opts.MaxPatches, &params.max_patches}} {
			if v.n < 0 || v.n > math.MaxInt32 {
				return nil, &Error{Status: StatusInvalidArgument, Message: fmt.Sprintf(
					"invalid argument: %s %d is out of range", v.name, v.n)}
			}
			if v.n > 0 {
				*v.dst = C.int32_t(v.n)
			}
		}
	}
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
		if st := C.vt_preprocess_ex(m.c, ptr, C.size_t(len(data)), &params, &img, &cerr); st != C.VT_OK {
			e := takeError(st, cerr)
			if len(images) > 1 {
				e.Message = fmt.Sprintf("image %d: %s", i, e.Message)
			}
			return nil, e
		}
		imgs = append(imgs, img)
	}
	return m.forward(imgs)
}

// EmbedRGB embeds raw 8-bit RGB pixels: height rows of width*3 bytes, stride bytes
// apart (0 = tightly packed, width*3).
func (m *Model) EmbedRGB(pixels []byte, width, height, stride int) (Embedding, error) {
	if stride == 0 {
		stride = width * 3
	}
	if width <= 0 || height <= 0 || uint64(width) > math.MaxUint32 || uint64(height) > math.MaxUint32 ||
		stride < width*3 {
		return Embedding{}, &Error{Status: StatusInvalidArgument, Message: fmt.Sprintf(
			"invalid argument: bad size %dx%d with stride %d", width, height, stride)}
	}
	// (height-1)*stride + width*3 readable bytes, computed without overflow.
	if rows := uint64(len(pixels)-width*3) / uint64(stride); len(pixels) < width*3 || rows < uint64(height-1) {
		return Embedding{}, &Error{Status: StatusInvalidArgument, Message: fmt.Sprintf(
			"invalid argument: %d bytes of pixels are too few for %dx%d with stride %d", len(pixels), width, height, stride)}
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.c == nil {
		return Embedding{}, ErrClosed
	}
	var img *C.struct_vt_image
	var cerr *C.struct_vt_error
	st := C.vt_preprocess_rgb8(m.c, (*C.uint8_t)(unsafe.Pointer(&pixels[0])), C.uint32_t(width),
		C.uint32_t(height), C.size_t(stride), &img, &cerr)
	if st != C.VT_OK {
		return Embedding{}, takeError(st, cerr)
	}
	defer C.vt_image_free(img)
	out, err := m.forward([]*C.struct_vt_image{img})
	if err != nil {
		return Embedding{}, err
	}
	return out[0], nil
}

// forward runs preprocessed images; the caller holds m.mu (read) and frees imgs.
func (m *Model) forward(imgs []*C.struct_vt_image) ([]Embedding, error) {
	if len(imgs) == 0 {
		return []Embedding{}, nil
	}
	out, err := tokenGrids(m.c, imgs)
	if err != nil {
		return nil, err
	}
	var emb *C.struct_vt_embeddings
	var cerr *C.struct_vt_error
	// The array of C pointers lives in Go memory, which holds no Go pointers: allowed by
	// the cgo rules, and vtower does not keep it.
	if st := C.vt_forward(m.c, &imgs[0], C.size_t(len(imgs)), &emb, &cerr); st != C.VT_OK {
		return nil, takeError(st, cerr)
	}
	defer C.vt_embeddings_free(emb)
	return readEmbeddings(emb, out)
}

// tokenGrids fills the Grid and Prompt of one Embedding per image.
func tokenGrids(model *C.struct_vt_model, imgs []*C.struct_vt_image) ([]Embedding, error) {
	out := make([]Embedding, len(imgs))
	for i, img := range imgs {
		var f, r, c C.uint32_t
		var cerr *C.struct_vt_error
		if st := C.vt_image_token_grid(img, &f, &r, &c, &cerr); st != C.VT_OK {
			return nil, takeError(st, cerr)
		}
		out[i].Grid = Grid{Frames: int(f), Rows: int(r), Cols: int(c)}
		prompt, err := promptLayout(model, img)
		if err != nil {
			return nil, err
		}
		out[i].Prompt = prompt
	}
	return out, nil
}

// promptLayout reads vt_image_prompt's segments into Go memory.
func promptLayout(model *C.struct_vt_model, img *C.struct_vt_image) ([]PromptSegment, error) {
	var p *C.struct_vt_prompt
	var cerr *C.struct_vt_error
	if st := C.vt_image_prompt(model, img, &p, &cerr); st != C.VT_OK {
		return nil, takeError(st, cerr)
	}
	defer C.vt_prompt_free(p)
	n := int(C.vt_prompt_n_segments(p))
	out := make([]PromptSegment, n)
	for i := 0; i < n; i++ {
		var s C.vt_prompt_segment
		s.struct_size = C.uint32_t(C.sizeof_vt_prompt_segment)
		if st := C.vt_prompt_segment_at(p, C.size_t(i), &s, &cerr); st != C.VT_OK {
			return nil, takeError(st, cerr)
		}
		seg := PromptSegment{Kind: SegmentKind(s.kind), TokenID: int64(s.token_id),
			Start: int(s.start), Count: int(s.count)}
		if s.text != nil {
			seg.Text = C.GoStringN(s.text, C.int(s.text_len))
		}
		out[i] = seg
	}
	return out, nil
}

// readEmbeddings copies every image's rows of emb into out (whose Grids are set).
func readEmbeddings(emb *C.struct_vt_embeddings, out []Embedding) ([]Embedding, error) {
	dim := int(C.vt_embeddings_dim(emb))
	for i := range out {
		n := int(C.vt_embeddings_n_tokens(emb, C.size_t(i)))
		data := make([]float32, n*dim)
		if n*dim > 0 {
			src := unsafe.Slice((*float32)(unsafe.Pointer(C.vt_embeddings_data(emb, C.size_t(i)))), n*dim)
			copy(data, src)
		}
		out[i].Tokens, out[i].Dim, out[i].Data = n, dim, data
		for k := 1; k < int(C.vt_embeddings_n_levels(emb)); k++ {
			level := make([]float32, n*dim)
			if n*dim > 0 {
				p := C.vt_embeddings_level_data(emb, C.size_t(i), C.size_t(k))
				if p == nil {
					return nil, errors.New("vtower: deepstack level could not be read")
				}
				copy(level, unsafe.Slice((*float32)(unsafe.Pointer(p)), n*dim))
			}
			out[i].Deepstack = append(out[i].Deepstack, level)
		}
	}
	return out, nil
}

// VideoOptions configure EmbedVideo. The zero value (or a nil *VideoOptions) takes every
// setting from the model's video processor config and treats the frame rate as unknown.
type VideoOptions struct {
	// SourceFPS is the video's frame rate (e.g. 29.97); 0 = unknown. Sampling at an fps
	// needs it; it also sets Qwen2.5-VL's seconds per temporal group and Qwen3-VL's
	// timestamps.
	SourceFPS float64
	// SampleFrames overrides the config's do_sample_frames when non-nil.
	SampleFrames *bool
	// SampleFPS is the frame rate to sample at; 0 = the config's fps.
	SampleFPS float64
	// NumFrames is the number of frames to sample; 0 = the config's num_frames.
	NumFrames int
}

// VideoEmbedding is the embedding of one video plus what its prompt needs.
type VideoEmbedding struct {
	Embedding
	// Timestamps holds the time in seconds of each temporal group (Grid.Frames values);
	// Qwen3-VL / Qwen3.5 write "<%.1f seconds>" of it before each group.
	Timestamps []float64
	// SecondPerGrid is Qwen2.5-VL's second_per_grid_ts (seconds per temporal group).
	SecondPerGrid float64
	// PerFrame: the prompt lays each temporal group out on its own (Qwen3-VL / Qwen3.5:
	// timestamp text, vision start, Rows*Cols placeholders, vision end); MRoPE then holds
	// the ids of one group (the same for every group).
	PerFrame bool
	// MRoPE holds the M-RoPE position ids relative to the first placeholder's position
	// (add it): the temporal ids of all the rows, then the height ids, then the width ids
	// (of one group when PerFrame). MRoPENext is the position of the following text,
	// relative likewise.
	MRoPE     []int64
	MRoPENext int64
}

// EmbedVideo preprocesses a decoded video as the model's Hugging Face video processor
// does (frame sampling, resize, normalization, temporal grouping) and embeds it (Qwen2-VL,
// Qwen2.5-VL, Qwen3-VL, Qwen3.5). frames[i] holds frame i: height rows of width*3 RGB
// bytes, stride bytes apart (0 = tightly packed). The frames are only read during the call.
func (m *Model) EmbedVideo(frames [][]byte, width, height, stride int, opts *VideoOptions) (VideoEmbedding, error) {
	if stride == 0 {
		stride = width * 3
	}
	bad := func(msg string) (VideoEmbedding, error) {
		return VideoEmbedding{}, &Error{Status: StatusInvalidArgument, Message: "invalid argument: " + msg}
	}
	if len(frames) == 0 {
		return bad("a video needs at least one frame")
	}
	if width <= 0 || height <= 0 || uint64(width) > math.MaxUint32 || uint64(height) > math.MaxUint32 ||
		stride < width*3 {
		return bad(fmt.Sprintf("bad size %dx%d with stride %d", width, height, stride))
	}
	need := (height-1)*stride + width*3
	for i, f := range frames {
		if len(f) < need {
			return bad(fmt.Sprintf("frame %d has %d bytes, %dx%d with stride %d needs %d", i, len(f), width, height, stride, need))
		}
	}
	params := C.vt_video_params_default()
	if opts != nil {
		params.source_fps = C.double(opts.SourceFPS)
		if opts.SampleFrames != nil {
			params.do_sample_frames = 0
			if *opts.SampleFrames {
				params.do_sample_frames = 1
			}
		}
		params.sample_fps = C.double(opts.SampleFPS)
		if opts.NumFrames < 0 || uint64(opts.NumFrames) > math.MaxUint32 {
			return bad(fmt.Sprintf("NumFrames %d", opts.NumFrames))
		}
		params.num_frames = C.uint32_t(opts.NumFrames)
	}
	// The frames and their pointer array go to C memory: cgo forbids Go pointers in it.
	buf := C.malloc(C.size_t(need * len(frames)))
	ptrs := C.malloc(C.size_t(len(frames)) * C.size_t(unsafe.Sizeof(uintptr(0))))
	if buf == nil || ptrs == nil {
		C.free(buf)
		C.free(ptrs)
		return VideoEmbedding{}, &Error{Status: StatusOutOfMemory, Message: "out of memory: video frames"}
	}
	defer C.free(buf)
	defer C.free(ptrs)
	data := unsafe.Slice((*byte)(buf), need*len(frames))
	ptrList := unsafe.Slice((**C.uint8_t)(ptrs), len(frames))
	for i, f := range frames {
		copy(data[i*need:(i+1)*need], f[:need])
		ptrList[i] = (*C.uint8_t)(unsafe.Pointer(&data[i*need]))
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.c == nil {
		return VideoEmbedding{}, ErrClosed
	}
	var img *C.struct_vt_image
	var cerr *C.struct_vt_error
	if st := C.vt_preprocess_video(m.c, (**C.uint8_t)(ptrs), C.size_t(len(frames)), C.uint32_t(width),
		C.uint32_t(height), C.size_t(stride), &params, &img, &cerr); st != C.VT_OK {
		return VideoEmbedding{}, takeError(st, cerr)
	}
	defer C.vt_image_free(img)
	out, err := m.forward([]*C.struct_vt_image{img})
	if err != nil {
		return VideoEmbedding{}, err
	}
	v := VideoEmbedding{Embedding: out[0]}
	var count C.size_t
	if st := C.vt_image_video_timestamps(img, nil, 0, &count, &cerr); st != C.VT_OK {
		return VideoEmbedding{}, takeError(st, cerr)
	}
	v.Timestamps = make([]float64, int(count))
	if count > 0 {
		if st := C.vt_image_video_timestamps(img, (*C.double)(unsafe.Pointer(&v.Timestamps[0])), count, &count, &cerr); st != C.VT_OK {
			return VideoEmbedding{}, takeError(st, cerr)
		}
	}
	var spg C.double
	if st := C.vt_image_video_second_per_grid(img, &spg, &cerr); st != C.VT_OK {
		return VideoEmbedding{}, takeError(st, cerr)
	}
	v.SecondPerGrid = float64(spg)
	g := v.Grid
	n := g.Frames * g.Rows * g.Cols
	v.MRoPE = make([]int64, 3*n)
	var next C.int64_t
	if st := C.vt_image_mrope_positions(img, 0, (*C.int64_t)(unsafe.Pointer(&v.MRoPE[0])), C.size_t(3*n), &next, nil); st != C.VT_OK {
		// Laid out per temporal group: the ids of one group.
		v.PerFrame = true
		v.MRoPE = make([]int64, 3*g.Rows*g.Cols)
		if st := C.vt_image_frame_mrope_positions(img, 0, 0, (*C.int64_t)(unsafe.Pointer(&v.MRoPE[0])), C.size_t(len(v.MRoPE)), &next, &cerr); st != C.VT_OK {
			return VideoEmbedding{}, takeError(st, cerr)
		}
	}
	v.MRoPENext = int64(next)
	return v, nil
}
