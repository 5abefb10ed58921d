package vtower_test

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vtower/vtower/go/vtower"
)

// The bundled fixtures of the vtower repository (VTOWER_FIXTURES overrides the folder).
func fixtures() string {
	if d := os.Getenv("VTOWER_FIXTURES"); d != "" {
		return d
	}
	return filepath.Join("..", "..", "tests", "fixtures")
}

func modelDir() string { return filepath.Join(fixtures(), "siglip_f32") }

func readFile(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func load(t testing.TB) *vtower.Model {
	t.Helper()
	m, err := vtower.Load(modelDir(), &vtower.Options{Threads: 2})
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// refCase is one image of the fixture's reference (written by transformers).
type refCase struct {
	Key     string `json:"key"`
	Path    string `json:"path"`
	Resized bool   `json:"resized"`
	Tokens  int    `json:"tokens"`
	Dim     int    `json:"dim"`
}

// reference reads expected.json and the f32 embeddings of expected.safetensors.
func reference(t testing.TB) ([]refCase, map[string][]float32) {
	return referenceIn(t, modelDir())
}

// referenceIn is reference for the fixture folder dir.
func referenceIn(t testing.TB, dir string) ([]refCase, map[string][]float32) {
	t.Helper()
	var meta struct {
		Images []refCase `json:"images"`
	}
	if err := json.Unmarshal(readFile(t, filepath.Join(dir, "expected.json")), &meta); err != nil {
		t.Fatal(err)
	}
	st := readFile(t, filepath.Join(dir, "expected.safetensors"))
	n := binary.LittleEndian.Uint64(st[:8])
	var header map[string]json.RawMessage
	if err := json.Unmarshal(st[8:8+n], &header); err != nil {
		t.Fatal(err)
	}
	data := st[8+n:]
	out := map[string][]float32{}
	for name, raw := range header {
		if name == "__metadata__" {
			continue
		}
		var info struct {
			Dtype   string `json:"dtype"`
			Offsets [2]int `json:"data_offsets"`
		}
		if err := json.Unmarshal(raw, &info); err != nil {
			t.Fatal(err)
		}
		if info.Dtype != "F32" {
			t.Fatalf("%s: dtype %s", name, info.Dtype)
		}
		b := data[info.Offsets[0]:info.Offsets[1]]
		v := make([]float32, len(b)/4)
		for i := range v {
			v[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
		}
		out[name] = v
	}
	return meta.Images, out
}

func relL2(a, b []float32) float64 {
	if len(a) != len(b) {
		return math.Inf(1)
	}
	var num, den float64
	for i := range a {
		d := float64(a[i]) - float64(b[i])
		num += d * d
		den += float64(b[i]) * float64(b[i])
	}
	return math.Sqrt(num / math.Max(den, 1e-30))
}

func equal(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			return false
		}
	}
	return true
}

func TestVersion(t *testing.T) {
	if v := vtower.Version(); !strings.HasPrefix(v, "vtower 0.1.") {
		t.Fatalf("Version() = %q", v)
	}
	n := vtower.VersionNumber()
	if want := fmt.Sprintf("vtower %d.%d.%d ", n/10000, n/100%100, n%100); !strings.HasPrefix(vtower.Version(), want) {
		t.Fatalf("VersionNumber() = %d, Version() = %q", n, vtower.Version())
	}
}

func TestLoadInfo(t *testing.T) {
	m := load(t)
	info := m.Info()
	want := vtower.Info{
		Family: "siglip", Type: "siglip", OutputDim: 64, VisionDim: 64, PatchSize: 8,
		ImageWidth: 48, ImageHeight: 48, TokensPerImage: 36, Threads: 2,
		ImageToken: -1, ImageStartToken: -1, ImageEndToken: -1, ImageBreakToken: -1, VideoToken: -1,
	}
	if info != want {
		t.Fatalf("Info() = %+v, want %+v", info, want)
	}
	m2, err := vtower.Load(modelDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer m2.Close()
	if m2.Info().Threads < 1 {
		t.Fatalf("default Threads = %d", m2.Info().Threads)
	}
}

// Every image of the fixture matches the transformers reference, alone and in one batch.
func TestEmbedMatchesReference(t *testing.T) {
	m := load(t)
	cases, ref := reference(t)
	if len(cases) < 10 {
		t.Fatalf("only %d reference cases", len(cases))
	}
	var all [][]byte
	var singles []vtower.Embedding
	for _, c := range cases {
		data := readFile(t, filepath.Join(fixtures(), "..", "..", c.Path))
		all = append(all, data)
		out, err := m.Embed(data)
		if err != nil {
			t.Fatalf("%s: %v", c.Key, err)
		}
		if len(out) != 1 {
			t.Fatalf("%s: %d embeddings", c.Key, len(out))
		}
		e := out[0]
		if e.Tokens != c.Tokens || e.Dim != c.Dim || len(e.Data) != c.Tokens*c.Dim {
			t.Fatalf("%s: %d x %d (%d values), want %d x %d", c.Key, e.Tokens, e.Dim, len(e.Data), c.Tokens, c.Dim)
		}
		if e.Grid != (vtower.Grid{Frames: 1, Rows: 6, Cols: 6}) {
			t.Fatalf("%s: grid %+v", c.Key, e.Grid)
		}
		tol := 1e-4
		if c.Resized {
			tol = 2e-3
		}
		if err := relL2(e.Data, ref["embeddings/"+c.Key]); !(err <= tol) {
			t.Errorf("%s: relative L2 %.3g > %g", c.Key, err, tol)
		}
		singles = append(singles, e)
	}
	batch, err := m.Embed(all...)
	if err != nil {
		t.Fatal(err)
	}
	if len(batch) != len(cases) {
		t.Fatalf("batch of %d gave %d", len(cases), len(batch))
	}
	for i := range batch {
		if err := relL2(batch[i].Data, singles[i].Data); !(err <= 1e-6) {
			t.Errorf("%s: batch differs from single by %.3g", cases[i].Key, err)
		}
	}
	if got := batch[3].Row(2); !equal(got, batch[3].Data[2*64:3*64]) {
		t.Error("Row(2) is not the third row")
	}
	if out, err := m.Embed(); err != nil || len(out) != 0 {
		t.Fatalf("Embed() = %v, %v", out, err)
	}
}

// Raw RGB pixels (packed or strided) embed like the same pixels encoded as a PNG.
// Every Embedding carries its prompt layout (vt_image_prompt): for SigLIP alone, one run
// of placeholders without a token id, covering all rows.
func TestPromptLayout(t *testing.T) {
	m := load(t)
	e, err := m.Embed(readFile(t, filepath.Join(fixtures(), "images", "rgb.png")))
	if err != nil {
		t.Fatal(err)
	}
	want := []vtower.PromptSegment{{Kind: vtower.SegmentEmbeddings, TokenID: -1, Start: 0, Count: 36}}
	if len(e[0].Prompt) != 1 || e[0].Prompt[0] != want[0] {
		t.Fatalf("Prompt = %+v, want %+v", e[0].Prompt, want)
	}
}

func TestEmbedRGB(t *testing.T) {
	m := load(t)
	const w, h, stride = 48, 48, 48*3 + 17
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	packed := make([]byte, w*h*3)
	padded := make([]byte, (h-1)*stride+w*3)
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			c := color.NRGBA{R: uint8(x * 5), G: uint8(y * 5), B: uint8((x * y) % 251), A: 255}
			img.SetNRGBA(x, y, c)
			for k, v := range []uint8{c.R, c.G, c.B} {
				packed[(y*w+x)*3+k] = v
				padded[y*stride+x*3+k] = v
			}
		}
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	fromPNG, err := m.Embed(buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	a, err := m.EmbedRGB(packed, w, h, 0)
	if err != nil {
		t.Fatal(err)
	}
	b, err := m.EmbedRGB(padded, w, h, stride)
	if err != nil {
		t.Fatal(err)
	}
	if !equal(a.Data, fromPNG[0].Data) || !equal(b.Data, a.Data) {
		t.Fatal("raw RGB embeddings differ from the PNG's")
	}
	if a.Tokens != 36 || a.Dim != 64 {
		t.Fatalf("%d x %d", a.Tokens, a.Dim)
	}
}

func expectStatus(t *testing.T, what string, err error, want vtower.Status, needle string) {
	t.Helper()
	var e *vtower.Error
	if !errors.As(err, &e) {
		t.Errorf("%s: error %v (%T) is not a *vtower.Error", what, err, err)
		return
	}
	if e.Status != want || !errors.Is(err, want) {
		t.Errorf("%s: status %v (%q), want %v", what, e.Status, e.Message, want)
	}
	if e.Message == "" || !strings.Contains(e.Message, needle) || !strings.HasPrefix(err.Error(), "vtower: ") {
		t.Errorf("%s: message %q lacks %q", what, e.Message, needle)
	}
}

// writeModel copies the fixture's checkpoint into a temporary folder with `config` as
// its config.json.
func writeModel(t *testing.T, config string) string {
	d := t.TempDir()
	for _, f := range []string{"model.safetensors", "preprocessor_config.json"} {
		if err := os.WriteFile(filepath.Join(d, f), readFile(t, filepath.Join(modelDir(), f)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(d, "config.json"), []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	return d
}

func TestErrors(t *testing.T) {
	images := filepath.Join(fixtures(), "images")
	_, err := vtower.Load(filepath.Join(t.TempDir(), "no_such_model"), nil)
	expectStatus(t, "missing folder", err, vtower.StatusIO, "no_such_model")
	_, err = vtower.Load(writeModel(t, `{"model_type": "not_a_model"}`), nil)
	expectStatus(t, "unknown model_type", err, vtower.StatusUnsupported, "not_a_model")
	_, err = vtower.Load(writeModel(t, `{"model_type": "siglip", `), nil)
	expectStatus(t, "bad json", err, vtower.StatusBadConfig, "config.json")
	_, err = vtower.Load(modelDir(), &vtower.Options{Device: vtower.Device(42)})
	expectStatus(t, "bad device", err, vtower.StatusInvalidArgument, "device")

	m := load(t)
	_, err = m.Embed(readFile(t, filepath.Join(images, "garbage.bin")))
	expectStatus(t, "garbage", err, vtower.StatusImageDecode, "")
	_, err = m.Embed([]byte{})
	expectStatus(t, "empty", err, vtower.StatusImageDecode, "")
	_, err = m.Embed(nil)
	expectStatus(t, "nil", err, vtower.StatusImageDecode, "")
	_, err = m.Embed(readFile(t, filepath.Join(images, "rgb.png")), readFile(t, filepath.Join(images, "truncated.jpg")))
	expectStatus(t, "truncated in a batch", err, vtower.StatusImageDecode, "image 1: ")
	_, err = m.Embed(readFile(t, filepath.Join(images, "huge_header.png")))
	expectStatus(t, "huge header", err, vtower.StatusImageTooLarge, "")
	_, err = m.EmbedRGB(make([]byte, 100), 48, 48, 0)
	expectStatus(t, "short pixels", err, vtower.StatusInvalidArgument, "too few")
	_, err = m.EmbedRGB(make([]byte, 48*48*3), 48, 48, 100)
	expectStatus(t, "small stride", err, vtower.StatusInvalidArgument, "stride")

	limited, err := vtower.Load(modelDir(), &vtower.Options{MaxImagePixels: 100})
	if err != nil {
		t.Fatal(err)
	}
	_, err = limited.Embed(readFile(t, filepath.Join(images, "rgb.png")))
	expectStatus(t, "pixel limit", err, vtower.StatusImageTooLarge, "100")

	// A tile budget belongs to InternVL and Aya Vision.
	_, err = load(t).EmbedWith(&vtower.PreprocessOptions{MaxPatches: 4}, readFile(t, filepath.Join(images, "rgb.png")))
	expectStatus(t, "tile budget", err, vtower.StatusInvalidArgument, "max_patches")

	// A token limit at the fixture's 36 tokens per image still embeds it.
	tokens, err := vtower.Load(modelDir(), &vtower.Options{MaxImageTokens: 36})
	if err != nil {
		t.Fatal(err)
	}
	if e, err := tokens.Embed(readFile(t, filepath.Join(images, "rgb.png"))); err != nil || e[0].Tokens != 36 {
		t.Fatalf("Embed with MaxImageTokens 36: %v", err)
	}
	tokens.Close()

	if err := limited.Close(); err != nil {
		t.Fatal(err)
	}
	if err := limited.Close(); err != nil {
		t.Fatal("second Close:", err)
	}
	if _, err := limited.Embed(readFile(t, filepath.Join(images, "rgb.png"))); !errors.Is(err, vtower.ErrClosed) {
		t.Fatalf("Embed after Close: %v", err)
	}
	if _, err := limited.EmbedRGB(make([]byte, 3), 1, 1, 0); !errors.Is(err, vtower.ErrClosed) {
		t.Fatalf("EmbedRGB after Close: %v", err)
	}
	if limited.Info().Family != "siglip" {
		t.Fatal("Info after Close")
	}
	if vtower.StatusImageDecode.String() != "image could not be decoded" {
		t.Fatalf("String() = %q", vtower.StatusImageDecode.String())
	}
}

// Many goroutines share one model: every result is bit-identical to the serial one, and
// a Close racing with them makes later calls fail with ErrClosed, never crash.
func TestConcurrent(t *testing.T) {
	m := load(t)
	cases, _ := reference(t)
	var inputs [][]byte
	var want []vtower.Embedding
	for _, c := range cases[:6] {
		data := readFile(t, filepath.Join(fixtures(), "..", "..", c.Path))
		out, err := m.Embed(data)
		if err != nil {
			t.Fatal(err)
		}
		inputs = append(inputs, data)
		want = append(want, out[0])
	}
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for k := 0; k < 6; k++ {
				i := (g + k) % len(inputs)
				out, err := m.Embed(inputs[i])
				if err != nil {
					errs <- err
					return
				}
				if !equal(out[0].Data, want[i].Data) {
					errs <- errors.New("concurrent result differs from the serial one")
					return
				}
			}
		}(g)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}

	// Close while goroutines embed.
	m2, err := vtower.Load(modelDir(), &vtower.Options{Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	var ok, closed int
	var mu sync.Mutex
	start := make(chan struct{})
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			<-start
			for k := 0; ; k++ {
				out, err := m2.Embed(inputs[(g+k)%len(inputs)])
				mu.Lock()
				if errors.Is(err, vtower.ErrClosed) {
					closed++
					mu.Unlock()
					return
				}
				if err != nil || !equal(out[0].Data, want[(g+k)%len(inputs)].Data) {
					mu.Unlock()
					t.Errorf("embed during Close: %v", err)
					return
				}
				ok++
				mu.Unlock()
			}
		}(g)
	}
	close(start)
	for {
		mu.Lock()
		n := ok
		mu.Unlock()
		if n >= 8 {
			break
		}
		if _, err := m.Embed(inputs[0]); err != nil { // let the goroutines run meanwhile
			t.Fatal(err)
		}
	}
	m2.Close()
	wg.Wait()
	if closed != 4 {
		t.Fatalf("%d goroutines saw ErrClosed, want 4", closed)
	}
}

// videoRef is the first video of a tests/fixtures/video fixture.
type videoRef struct {
	Videos []struct {
		Key           string    `json:"key"`
		NFrames       int       `json:"n_frames"`
		Width         int       `json:"width"`
		Height        int       `json:"height"`
		Offset        int       `json:"offset"`
		SourceFPS     float64   `json:"source_fps"`
		Grid          []int     `json:"video_grid_thw"`
		SecondPerGrid float64   `json:"second_per_grid_ts"`
		Timestamps    []float64 `json:"timestamps"`
	} `json:"videos"`
	VideoToken int64  `json:"video_token_id"`
	ModelDir   string `json:"model_dir"`
}

func TestEmbedVideo(t *testing.T) {
	for _, name := range []string{"qwen2_5_vl_bf16", "qwen3_vl_f32"} {
		dir := filepath.Join(fixtures(), "video", name)
		var ref videoRef
		if err := json.Unmarshal(readFile(t, filepath.Join(dir, "expected.json")), &ref); err != nil {
			t.Fatal(err)
		}
		m, err := vtower.Load(filepath.Join(fixtures(), "..", "..", ref.ModelDir), &vtower.Options{Device: vtower.DeviceCPU})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		defer m.Close()
		if m.Info().VideoToken != ref.VideoToken {
			t.Errorf("%s: video token %d, want %d", name, m.Info().VideoToken, ref.VideoToken)
		}
		bin := readFile(t, filepath.Join(dir, "frames.bin"))
		v := ref.Videos[0]
		size := v.Width * v.Height * 3
		frames := make([][]byte, v.NFrames)
		for i := range frames {
			frames[i] = bin[v.Offset+i*size : v.Offset+(i+1)*size]
		}
		got, err := m.EmbedVideo(frames, v.Width, v.Height, 0, &vtower.VideoOptions{SourceFPS: v.SourceFPS})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if got.Grid.Frames != v.Grid[0] || got.Grid.Rows != v.Grid[1]/2 || got.Grid.Cols != v.Grid[2]/2 {
			t.Errorf("%s: grid %+v, want %v", name, got.Grid, v.Grid)
		}
		if v.SecondPerGrid != 0 && math.Abs(got.SecondPerGrid-v.SecondPerGrid) > 1e-12 {
			t.Errorf("%s: second per grid %v, want %v", name, got.SecondPerGrid, v.SecondPerGrid)
		}
		if v.Timestamps != nil {
			if len(got.Timestamps) != len(v.Timestamps) || !got.PerFrame {
				t.Fatalf("%s: timestamps %v, want %v (per frame %v)", name, got.Timestamps, v.Timestamps, got.PerFrame)
			}
			for i := range v.Timestamps {
				if math.Abs(got.Timestamps[i]-v.Timestamps[i]) > 1e-12 {
					t.Errorf("%s: timestamp %d: %v, want %v", name, i, got.Timestamps[i], v.Timestamps[i])
				}
			}
		}
		if got.Tokens != got.Grid.Frames*got.Grid.Rows*got.Grid.Cols || len(got.MRoPE) == 0 {
			t.Errorf("%s: %d tokens, %d M-RoPE ids", name, got.Tokens, len(got.MRoPE))
		}
		_, want := referenceIn(t, dir)
		if d := relL2(got.Data, want["embeddings/"+v.Key]); d > 2e-3 {
			t.Errorf("%s: rel L2 %v", name, d)
		}
		if _, err := m.EmbedVideo(nil, 4, 4, 0, nil); err == nil {
			t.Errorf("%s: no frames accepted", name)
		}
		yes := true
		_, err = m.EmbedVideo(frames, v.Width, v.Height, 0, &vtower.VideoOptions{SampleFrames: &yes, SampleFPS: 2, NumFrames: 4})
		var verr *vtower.Error
		if !errors.As(err, &verr) || verr.Status != vtower.StatusInvalidArgument {
			t.Errorf("%s: fps and num_frames together: %v", name, err)
		}
	}
}

func TestEmbedWithSoftTokenBudget(t *testing.T) {
	m, err := vtower.Load(filepath.Join(fixtures(), "gemma4_f32"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	img := readFile(t, filepath.Join(fixtures(), "gemma4_f32", "native_64x64.png"))
	def, err := m.EmbedWith(nil, img)
	if err != nil {
		t.Fatal(err)
	}
	if def[0].Grid.Rows != 8 || def[0].Grid.Cols != 8 {
		t.Fatalf("default budget: grid %+v, want 8x8", def[0].Grid)
	}
	big, err := m.EmbedWith(&vtower.PreprocessOptions{MaxSoftTokens: 140}, img)
	if err != nil {
		t.Fatal(err)
	}
	if big[0].Grid.Rows != 11 || big[0].Grid.Cols != 11 {
		t.Fatalf("140 soft tokens: grid %+v, want 11x11", big[0].Grid)
	}
	_, err = m.EmbedWith(&vtower.PreprocessOptions{MaxSoftTokens: 100}, img)
	expectStatus(t, "budget outside the set", err, vtower.StatusInvalidArgument, "70, 140, 280, 560, 1120")
	_, err = m.EmbedWith(&vtower.PreprocessOptions{MaxSoftTokens: -1}, img)
	expectStatus(t, "negative budget", err, vtower.StatusInvalidArgument, "MaxSoftTokens")
	s := load(t)
	_, err = s.EmbedWith(&vtower.PreprocessOptions{MaxSoftTokens: 280}, img)
	expectStatus(t, "budget on siglip", err, vtower.StatusInvalidArgument, "max_soft_tokens")
}

func TestEmbedAsync(t *testing.T) {
	m := load(t)
	cases, _ := reference(t)
	var inputs [][]byte
	var want []vtower.Embedding
	for _, c := range cases[:4] {
		data := readFile(t, filepath.Join(fixtures(), "..", "..", c.Path))
		out, err := m.Embed(data)
		if err != nil {
			t.Fatal(err)
		}
		inputs = append(inputs, data)
		want = append(want, out[0])
	}
	// Many jobs in flight from several goroutines: Embed's results bit for bit.
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			var jobs []*vtower.Job
			for k := 0; k < 4; k++ {
				j, err := m.EmbedAsync(inputs[(g+k)%len(inputs)], inputs[(g+k+1)%len(inputs)])
				if err != nil {
					errs <- err
					return
				}
				jobs = append(jobs, j)
			}
			for k := len(jobs) - 1; k >= 0; k-- {
				out, err := jobs[k].Wait()
				if err != nil {
					errs <- err
				} else if !equal(out[0].Data, want[(g+k)%len(inputs)].Data) ||
					!equal(out[1].Data, want[(g+k+1)%len(inputs)].Data) || out[0].Grid != want[(g+k)%len(inputs)].Grid {
					errs <- errors.New("async result differs from Embed's")
				}
				if !jobs[k].Done(0) {
					errs <- errors.New("a waited job is not done")
				}
				jobs[k].Close()
			}
		}(g)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}

	// Cancelled while queued or running: a long job (many copies of one image).
	long := make([][]byte, 1500)
	for i := range long {
		long[i] = inputs[0]
	}
	cancelled := false
	for try := 0; try < 5 && !cancelled; try++ {
		j, err := m.EmbedAsync(long...)
		if err != nil {
			t.Fatal(err)
		}
		if !j.Done(0) {
			j.Cancel()
			_, err := j.Wait()
			if err != nil && !errors.Is(err, vtower.StatusCancelled) {
				t.Fatalf("cancelled job: %v", err)
			}
			cancelled = err != nil
		}
		j.Close()
	}
	if !cancelled {
		t.Fatal("no job could be cancelled in 5 tries")
	}
	// After the end: the result is kept; a second Wait is an error.
	j, err := m.EmbedAsync(inputs[0])
	if err != nil {
		t.Fatal(err)
	}
	for !j.Done(time.Second) {
	}
	j.Cancel()
	out, err := j.Wait()
	if err != nil || !equal(out[0].Data, want[0].Data) {
		t.Fatalf("finished job after Cancel: %v", err)
	}
	if _, err := j.Wait(); !errors.Is(err, vtower.StatusInvalidArgument) {
		t.Fatalf("second Wait: %v", err)
	}
	j.Close()
	j.Close()
	if _, err := j.Wait(); !errors.Is(err, vtower.ErrClosed) {
		t.Fatalf("Wait after Close: %v", err)
	}

	// Closed before it finishes, and the model closed while a job runs.
	m2, err := vtower.Load(modelDir(), &vtower.Options{Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	early, err := m2.EmbedAsync(long[:100]...)
	if err != nil {
		t.Fatal(err)
	}
	early.Close()
	kept, err := m2.EmbedAsync(inputs[1])
	if err != nil {
		t.Fatal(err)
	}
	m2.Close()
	out, err = kept.Wait()
	if err != nil || !equal(out[0].Data, want[1].Data) {
		t.Fatalf("job of a closed model: %v", err)
	}
	kept.Close()
}

func TestEmbeddingCache(t *testing.T) {
	m, err := vtower.Load(modelDir(), &vtower.Options{Threads: 2, EmbeddingCacheBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	cases, _ := reference(t)
	data := readFile(t, filepath.Join(fixtures(), "..", "..", cases[0].Path))
	a, err := m.Embed(data)
	if err != nil {
		t.Fatal(err)
	}
	b, err := m.Embed(data)
	if err != nil {
		t.Fatal(err)
	}
	if !equal(a[0].Data, b[0].Data) {
		t.Fatal("a cache hit differs from the computed embeddings")
	}
	s, err := m.CacheStats()
	if err != nil || s.Hits != 1 || s.Misses != 1 || s.Entries != 1 || s.Bytes == 0 {
		t.Fatalf("stats %+v, %v", s, err)
	}
	plain := load(t)
	if s, _ := plain.CacheStats(); s != (vtower.CacheStats{}) {
		t.Fatalf("no cache: %+v", s)
	}
}

func TestMaxForwardBytes(t *testing.T) {
	cases, _ := reference(t)
	data := readFile(t, filepath.Join(fixtures(), "..", "..", cases[0].Path))
	// siglip_f32: 36 patches, 64 wide, 36 x 64 outputs (see vt_model_forward_bytes).
	need := uint64(4 * (16*36*64 + 36*64))
	ok, err := vtower.Load(modelDir(), &vtower.Options{Threads: 2, MaxForwardBytes: need})
	if err != nil {
		t.Fatal(err)
	}
	defer ok.Close()
	if _, err := ok.Embed(data, data); err != nil {
		t.Fatalf("split batch: %v", err)
	}
	small, err := vtower.Load(modelDir(), &vtower.Options{Threads: 2, MaxForwardBytes: need - 1})
	if err != nil {
		t.Fatal(err)
	}
	defer small.Close()
	if _, err := small.Embed(data); !errors.Is(err, vtower.StatusImageTooLarge) ||
		!strings.Contains(err.Error(), "max_forward_bytes") {
		t.Fatalf("over the limit: %v", err)
	}
}

func TestEmbedWithKnobs(t *testing.T) {
	m := load(t)
	cases, _ := reference(t)
	data := readFile(t, filepath.Join(fixtures(), "..", "..", cases[0].Path))
	if _, err := m.EmbedWith(&vtower.PreprocessOptions{MinPixels: 100}, data); !errors.Is(err, vtower.StatusInvalidArgument) ||
		!strings.Contains(err.Error(), "min_pixels") {
		t.Fatalf("min_pixels on siglip: %v", err)
	}
	if _, err := m.EmbedWith(&vtower.PreprocessOptions{LongestEdge: 32}, data); !errors.Is(err, vtower.StatusInvalidArgument) ||
		!strings.Contains(err.Error(), "longest_edge") {
		t.Fatalf("longest_edge on siglip: %v", err)
	}
	out, err := m.EmbedWith(&vtower.PreprocessOptions{MaxTokens: 36}, data)
	if err != nil || out[0].Tokens != 36 {
		t.Fatalf("max_tokens 36: %v", err)
	}
	if _, err := m.EmbedWith(&vtower.PreprocessOptions{MaxTokens: 35}, data); !errors.Is(err, vtower.StatusInvalidArgument) {
		t.Fatalf("max_tokens 35: %v", err)
	}
}
