/*
 * vtower.hpp: header-only C++17 bindings over the C API in vtower.h.
 *
 *   vtower::Model model("path/to/model");                 // throws vtower::Error
 *   vtower::Image image = model.preprocess(bytes);        // any contiguous byte container
 *   vtower::Embeddings out = model.forward(image);        // or forward({&a, &b, ...})
 *   vtower::View<float> rows = out[0];                    // [out.n_tokens(0) * out.dim()]
 *
 * - Model, Image and Embeddings own their C object and free it in their destructor. They
 *   are move-only; a moved-from object is empty (operator bool is false, and using it
 *   throws vtower::Error with VT_ERR_INVALID_ARGUMENT).
 * - Every failure throws vtower::Error (a std::runtime_error) carrying the vt_status
 *   (status()) and vtower's message (what()).
 * - View<T> is a read-only (pointer, size) view, borrowed from the object it came from:
 *   valid until that object is destroyed or moved from.
 * - Threads: as in the C API. A Model's const member functions may run concurrently from
 *   any number of threads; Image and Embeddings are plain values (one thread at a time).
 *   Destroy images made by a model before the model itself.
 */
#ifndef VTOWER_HPP
#define VTOWER_HPP

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "vtower.h"

namespace vtower {

/// A failed vtower call: the status code and vtower's message.
class Error : public std::runtime_error {
public:
    Error(vt_status status, const std::string &message)
        : std::runtime_error(message), status_(status) {}

    /// The VT_ERR_* code.
    vt_status status() const noexcept { return status_; }

    /// The static description of the code ("i/o error", ...).
    const char *status_str() const noexcept { return vt_status_str(status_); }

private:
    vt_status status_;
};

namespace detail {

/// Throws the error a failed call reported in *err_slot (and frees it); does nothing on
/// VT_OK. Takes the slot's address so that it is read after the call has filled it.
inline void check(vt_status status, vt_error **err_slot) {
    if (status == VT_OK) return;
    vt_error *err = *err_slot;
    *err_slot = nullptr;
    std::string message = err ? vt_error_message(err) : vt_status_str(status);
    vt_status code = err ? vt_error_code(err) : status;
    vt_error_free(err);
    throw Error(code, message);
}

template <class T>
T *require(T *p, const char *what) {
    if (!p) throw Error(VT_ERR_INVALID_ARGUMENT, std::string(what) + " is empty (moved from)");
    return p;
}

/// Move-only owner of a C object freed by Free.
template <class T, void (*Free)(T *)>
class Handle {
public:
    Handle() noexcept = default;
    explicit Handle(T *p) noexcept : p_(p) {}
    Handle(Handle &&o) noexcept : p_(std::exchange(o.p_, nullptr)) {}
    Handle &operator=(Handle &&o) noexcept {
        if (this != &o) reset(std::exchange(o.p_, nullptr));
        return *this;
    }
    Handle(const Handle &) = delete;
    Handle &operator=(const Handle &) = delete;
    ~Handle() { reset(); }

    T *get() const noexcept { return p_; }
    T *release() noexcept { return std::exchange(p_, nullptr); }
    void reset(T *p = nullptr) noexcept {
        T *old = std::exchange(p_, p);
        if (old) Free(old);
    }

private:
    T *p_ = nullptr;
};

}  // namespace detail

/// A read-only contiguous view: pointer + size, like C++20's std::span<const T>.
template <class T>
class View {
public:
    using value_type = T;
    using size_type = std::size_t;
    using const_iterator = const T *;
    using iterator = const T *;

    constexpr View() noexcept = default;
    constexpr View(const T *data, std::size_t size) noexcept : data_(data), size_(size) {}

    constexpr const T *data() const noexcept { return data_; }
    constexpr std::size_t size() const noexcept { return size_; }
    constexpr bool empty() const noexcept { return size_ == 0; }
    constexpr const T *begin() const noexcept { return data_; }
    constexpr const T *end() const noexcept { return data_ + size_; }
    /// Unchecked element access.
    constexpr const T &operator[](std::size_t i) const noexcept { return data_[i]; }
    /// Checked element access: throws std::out_of_range.
    const T &at(std::size_t i) const {
        if (i >= size_) throw std::out_of_range("vtower::View::at: index out of range");
        return data_[i];
    }
    /// Elements [offset, offset + count) (clamped to the view).
    constexpr View subview(std::size_t offset, std::size_t count) const noexcept {
        if (offset > size_) offset = size_;
        if (count > size_ - offset) count = size_ - offset;
        return View(data_ + offset, count);
    }
    /// An owned copy.
    std::vector<T> to_vector() const { return std::vector<T>(begin(), end()); }

private:
    const T *data_ = nullptr;
    std::size_t size_ = 0;
};

/// Which device runs the tower.
enum class Device : vt_device { Cpu = VT_DEVICE_CPU, Cuda = VT_DEVICE_CUDA, Auto = VT_DEVICE_AUTO };

/// A special token of the language model's prompt (see vt_model_token_id).
enum class Token : vt_token_role {
    Image = VT_TOKEN_IMAGE,
    ImageStart = VT_TOKEN_IMAGE_START,
    ImageEnd = VT_TOKEN_IMAGE_END,
    ImageBreak = VT_TOKEN_IMAGE_BREAK,
    Video = VT_TOKEN_VIDEO,
};

/// Per-call video options (vt_video_params); the defaults are vt_video_params_default()'s.
struct VideoOptions {
    /// The source frame rate; 0 = unknown.
    double source_fps = 0.0;
    /// -1: the video processor config's do_sample_frames; 0: keep every frame; 1: sample.
    int32_t do_sample_frames = -1;
    /// Frames per second to sample; 0 = the config's fps.
    double sample_fps = 0.0;
    /// Frames to sample; 0 = the config's num_frames.
    uint32_t num_frames = 0;

    vt_video_params to_c() const {
        vt_video_params p = vt_video_params_default();
        p.source_fps = source_fps;
        p.do_sample_frames = do_sample_frames;
        p.sample_fps = sample_fps;
        p.num_frames = num_frames;
        return p;
    }
};

/// Options for loading a model; the defaults are vt_load_params_default()'s.
struct LoadOptions {
    Device device = Device::Auto;
    int32_t device_ordinal = 0;
    /// Worker threads; 0 = one per core.
    uint32_t n_threads = 0;
    /// Pixel limit per image; 0 = the library default (Pillow's).
    uint64_t max_image_pixels = 0;
    /// The most embeddings one image may yield (every frame and crop counted); preprocessing
    /// refuses larger images with VT_ERR_IMAGE_TOO_LARGE. 0 = the library default, 32768.
    uint64_t max_image_tokens = 0;
    /// Byte budget of the embedding cache (see vt_load_params.embedding_cache_bytes);
    /// 0 = no cache.
    uint64_t embedding_cache_bytes = 0;
    /// Most estimated activation bytes per forward batch (see vt_load_params.max_forward_bytes):
    /// larger batches are split, an image over it alone throws VT_ERR_IMAGE_TOO_LARGE.
    /// 0 = no limit.
    uint64_t max_forward_bytes = 0;

    vt_load_params to_c() const noexcept {
        vt_load_params p = vt_load_params_default();
        p.device = static_cast<vt_device>(device);
        p.device_ordinal = device_ordinal;
        p.n_threads = n_threads;
        p.max_image_pixels = max_image_pixels;
        p.max_image_tokens = max_image_tokens;
        p.embedding_cache_bytes = embedding_cache_bytes;
        p.max_forward_bytes = max_forward_bytes;
        return p;
    }
};

/// Per-call preprocessing settings; the defaults are vt_preprocess_params_default()'s (every
/// setting as the model's preprocessor_config.json says).
struct PreprocessOptions {
    /// Gemma 4's soft-token budget per image: 70, 140, 280, 560 or 1120; 0 = the model's
    /// `max_soft_tokens`. Other models refuse a non-zero value.
    uint32_t max_soft_tokens = 0;
    /// Qwen2-VL / Qwen3-VL / Qwen3.5, GLM-4.xV, PaddleOCR-VL: smallest / largest pixel count
    /// of the resized image; 0 = the model's. Other models refuse a non-zero value.
    uint64_t min_pixels = 0;
    uint64_t max_pixels = 0;
    /// Any model: the most embeddings the image may yield (Qwen and Pixtral pick the largest
    /// size within it; fixed-size models refuse a smaller budget); 0 = no such bound.
    uint64_t max_tokens = 0;
    /// Pixtral / Mistral3: the longest edge the image is shrunk to fit (the processor's
    /// `size={"longest_edge": n}`); Idefics3 / SmolVLM: the long side the image is resized
    /// to before it is cut into tiles; 0 = the model's. Other models refuse a non-zero value.
    uint32_t longest_edge = 0;
    /// InternVL / Aya Vision: -1 = the model's (tiles plus a thumbnail), 0 = one tile, 1 =
    /// tiles. Other models refuse 0 and 1.
    int32_t crop_to_patches = -1;
    /// InternVL / Aya Vision: the fewest / most tiles of the grid (the thumbnail not counted);
    /// -1 = the model's. 0 and more than 1024 are refused.
    int32_t min_patches = -1;
    int32_t max_patches = -1;
    /// Idefics3 / SmolVLM: -1 = the model's `do_image_splitting` (a grid of tiles plus the
    /// global image), 0 = one tile (the image stretched), 1 = split. LLaVA-OneVision: 0 = an
    /// image of a multi-image prompt (padded square, one tile). Other models refuse 0 and 1.
    int32_t do_image_splitting = -1;

    vt_preprocess_params to_c() const noexcept {
        vt_preprocess_params p = vt_preprocess_params_default();
        p.max_soft_tokens = max_soft_tokens;
        p.min_pixels = min_pixels;
        p.max_pixels = max_pixels;
        p.max_tokens = max_tokens;
        p.longest_edge = longest_edge;
        p.crop_to_patches = crop_to_patches;
        p.min_patches = min_patches;
        p.max_patches = max_patches;
        p.do_image_splitting = do_image_splitting;
        return p;
    }
};

/// One piece of an image's prompt layout (Model::prompt, vt_image_prompt).
struct PromptSegment {
    enum class Kind : vt_segment_kind {
        Text = VT_SEGMENT_TEXT,
        Token = VT_SEGMENT_TOKEN,
        Embeddings = VT_SEGMENT_EMBEDDINGS,
    };
    Kind kind = Kind::Text;
    /// Kind::Text: text to tokenize with the model's tokenizer.
    std::string text;
    /// Kind::Token: the token id; Kind::Embeddings: the placeholder token id (-1 if unknown).
    int64_t token_id = -1;
    /// Kind::Embeddings: `count` placeholders taking embedding rows start .. start + count - 1.
    std::size_t start = 0;
    std::size_t count = 0;
};

/// Width x height in pixels.
struct Size {
    uint32_t width = 0;
    uint32_t height = 0;
};

/// The token layout of an image's embeddings: frames x rows x cols, row-major.
struct Grid {
    uint32_t frames = 0;
    uint32_t rows = 0;
    uint32_t cols = 0;
};

/// A preprocessed image (owns a vt_image). Made by Model::preprocess*; only usable with
/// the model that made it, and must not outlive it.
class Image {
public:
    Image() noexcept = default;
    /// Takes ownership of `image` (from vt_preprocess).
    explicit Image(vt_image *image) noexcept : h_(image) {}

    explicit operator bool() const noexcept { return h_.get() != nullptr; }
    const vt_image *get() const noexcept { return h_.get(); }
    vt_image *release() noexcept { return h_.release(); }

    /// The normalized input tensor (row-major f32, shape()).
    View<float> pixels() const {
        const float *data = nullptr;
        std::size_t len = 0;
        vt_error *err = nullptr;
        detail::check(vt_image_pixels(c(), &data, &len, &err), &err);
        return View<float>(data, len);
    }

    /// Dimensions of pixels(), e.g. {3, H, W}.
    std::vector<std::size_t> shape() const {
        std::size_t dims[VT_IMAGE_MAX_DIMS] = {};
        std::size_t ndim = 0;
        vt_error *err = nullptr;
        detail::check(vt_image_shape(c(), dims, &ndim, &err), &err);
        return std::vector<std::size_t>(dims, dims + ndim);
    }

    /// Embedding rows this image yields.
    std::size_t n_tokens() const { return vt_image_n_tokens(c()); }

    /// Layout of those rows.
    Grid token_grid() const {
        Grid g;
        vt_error *err = nullptr;
        detail::check(vt_image_token_grid(c(), &g.frames, &g.rows, &g.cols, &err), &err);
        return g;
    }

    /// Whether this image came from Model::preprocess_video.
    bool is_video() const { return vt_image_is_video(c()) == 1; }

    /// A video's time in seconds of each temporal group (Qwen3-VL's `<T seconds>`, T
    /// printed with one decimal); throws for a still image.
    std::vector<double> video_timestamps() const {
        std::size_t n = 0;
        vt_error *err = nullptr;
        detail::check(vt_image_video_timestamps(c(), nullptr, 0, &n, &err), &err);
        std::vector<double> ts(n);
        detail::check(vt_image_video_timestamps(c(), ts.data(), ts.size(), &n, &err), &err);
        return ts;
    }

    /// A video's seconds per temporal group (Qwen2.5-VL's second_per_grid_ts); throws for a
    /// still image.
    double video_second_per_grid() const {
        double s = 0.0;
        vt_error *err = nullptr;
        detail::check(vt_image_video_second_per_grid(c(), &s, &err), &err);
        return s;
    }

    /// M-RoPE ids (temporal ids, then height ids, then width ids) when the first embedding
    /// sits at `start`; `next` receives the position of the following text.
    std::vector<int64_t> mrope_positions(int64_t start, int64_t *next = nullptr) const {
        std::vector<int64_t> ids(3 * n_tokens());
        vt_error *err = nullptr;
        detail::check(vt_image_mrope_positions(c(), start, ids.data(), ids.size(), next, &err), &err);
        return ids;
    }

    /// The M-RoPE ids of temporal group `frame` of a Qwen3-VL / Qwen3.5 video, laid out on
    /// its own from `start` (vt_image_frame_mrope_positions).
    std::vector<int64_t> frame_mrope_positions(uint32_t frame, int64_t start,
                                               int64_t *next = nullptr) const {
        Grid g = token_grid();
        std::vector<int64_t> ids(3 * static_cast<std::size_t>(g.rows) * g.cols);
        vt_error *err = nullptr;
        detail::check(vt_image_frame_mrope_positions(c(), frame, start, ids.data(), ids.size(),
                                                     next, &err),
                      &err);
        return ids;
    }

private:
    const vt_image *c() const { return detail::require(h_.get(), "vtower::Image"); }
    detail::Handle<vt_image, vt_image_free> h_;
};

/// The result of one forward call (owns a vt_embeddings): per image, a row-major
/// [n_tokens(i), dim()] f32 matrix.
class Embeddings {
public:
    Embeddings() noexcept = default;
    /// Takes ownership of `e` (from vt_forward).
    explicit Embeddings(vt_embeddings *e) noexcept : h_(e) {}

    explicit operator bool() const noexcept { return h_.get() != nullptr; }
    const vt_embeddings *get() const noexcept { return h_.get(); }
    vt_embeddings *release() noexcept { return h_.release(); }

    /// Number of images.
    std::size_t size() const { return vt_embeddings_count(c()); }
    /// Row width (the language model's hidden size).
    std::size_t dim() const { return vt_embeddings_dim(c()); }
    /// Rows of image `i`; throws std::out_of_range.
    std::size_t n_tokens(std::size_t i) const {
        check_index(i);
        return vt_embeddings_n_tokens(c(), i);
    }
    /// The n_tokens(i) * dim() values of image `i`, borrowed from this object; throws
    /// std::out_of_range.
    View<float> operator[](std::size_t i) const {
        check_index(i);
        return View<float>(vt_embeddings_data(c(), i), vt_embeddings_n_tokens(c(), i) * dim());
    }
    View<float> at(std::size_t i) const { return (*this)[i]; }
    /// Embedding levels per image: 1, or 1 + the deepstack levels of Qwen3-VL
    /// (see vt_model_n_levels for what the language model does with them).
    std::size_t n_levels() const { return vt_embeddings_n_levels(c()); }
    /// Level `level` of image `i` (level 0 = operator[]), n_tokens(i) * dim() values
    /// borrowed from this object; throws std::out_of_range.
    View<float> level(std::size_t i, std::size_t level) const {
        check_index(i);
        if (level >= n_levels()) throw std::out_of_range("vtower::Embeddings::level: level out of range");
        const float *p = vt_embeddings_level_data(c(), i, level);
        if (!p) throw std::runtime_error("vtower::Embeddings::level: rows could not be read");
        return View<float>(p, vt_embeddings_n_tokens(c(), i) * dim());
    }
    /// Row `token` of image `i`; throws std::out_of_range.
    View<float> row(std::size_t i, std::size_t token) const {
        if (token >= n_tokens(i)) throw std::out_of_range("vtower::Embeddings::row: token out of range");
        return (*this)[i].subview(token * dim(), dim());
    }

private:
    const vt_embeddings *c() const { return detail::require(h_.get(), "vtower::Embeddings"); }
    void check_index(std::size_t i) const {
        if (i >= size()) throw std::out_of_range("vtower::Embeddings: image index out of range");
    }
    detail::Handle<vt_embeddings, vt_embeddings_free> h_;
};

/// An asynchronous forward pass (owns a vt_job), from Model::forward_async. wait(),
/// done() and cancel() may run concurrently from several threads (one waits while another
/// cancels); destroying or moving the Job must not race with them. Destroying a Job that
/// has not finished cancels it without waiting.
class Job {
public:
    Job() noexcept = default;
    /// Takes ownership of `job` (from vt_forward_async).
    explicit Job(vt_job *job) noexcept : h_(job) {}

    explicit operator bool() const noexcept { return h_.get() != nullptr; }
    vt_job *get() const noexcept { return h_.get(); }
    vt_job *release() noexcept { return h_.release(); }

    /// Waits for the job and returns its embeddings (Model::forward's, bit for bit). Throws
    /// vtower::Error: VT_ERR_CANCELLED after cancel(), VT_ERR_INVALID_ARGUMENT when the
    /// result was already taken by an earlier wait(), any error of the forward pass.
    Embeddings wait() const {
        vt_embeddings *out = nullptr;
        vt_error *err = nullptr;
        detail::check(vt_job_wait(c(), &out, &err), &err);
        return Embeddings(out);
    }
    /// Waits at most `timeout_ms` (0: not at all); true once the job has finished.
    bool done(uint32_t timeout_ms = 0) const { return vt_job_done(c(), timeout_ms) != 0; }
    /// Asks the job to stop before its next encoder layer (wait() then throws
    /// VT_ERR_CANCELLED); a finished job keeps its result.
    void cancel() const { vt_job_cancel(c()); }

private:
    vt_job *c() const { return detail::require(h_.get(), "vtower::Job"); }
    detail::Handle<vt_job, vt_job_free> h_;
};

/// A loaded vision tower (owns a vt_model). Const member functions may run concurrently
/// from any number of threads. Destroying it frees the model (vt_model_free), which returns
/// once the model's worker threads have exited (unless an async job still holds the model).
class Model {
public:
    Model() noexcept = default;
    /// Loads a model folder (config.json, preprocessor_config.json, *.safetensors).
    explicit Model(const std::string &dir, const LoadOptions &options = LoadOptions()) {
        vt_load_params params = options.to_c();
        vt_model *m = nullptr;
        vt_error *err = nullptr;
        detail::check(vt_load(dir.c_str(), &params, &m, &err), &err);
        h_.reset(m);
    }
    /// Takes ownership of `model` (from vt_load).
    explicit Model(vt_model *model) noexcept : h_(model) {}

    explicit operator bool() const noexcept { return h_.get() != nullptr; }
    const vt_model *get() const noexcept { return h_.get(); }
    vt_model *release() noexcept { return h_.release(); }

    /// Decodes and preprocesses an encoded image file (PNG, JPEG, WebP, GIF, BMP, TIFF).
    Image preprocess(const void *data, std::size_t len) const {
        vt_image *img = nullptr;
        vt_error *err = nullptr;
        detail::check(vt_preprocess(c(), static_cast<const uint8_t *>(data), len, &img, &err),
                      &err);
        return Image(img);
    }
    /// Decodes and preprocesses an encoded image with per-call settings (vt_preprocess_ex).
    Image preprocess(const void *data, std::size_t len, const PreprocessOptions &options) const {
        vt_preprocess_params params = options.to_c();
        vt_image *img = nullptr;
        vt_error *err = nullptr;
        detail::check(vt_preprocess_ex(c(), static_cast<const uint8_t *>(data), len, &params,
                                       &img, &err),
                      &err);
        return Image(img);
    }
    /// The same, for any contiguous container of bytes (std::vector<uint8_t>,
    /// std::string, std::array<char, N>, View<uint8_t>, ...).
    template <class Bytes,
              class = decltype(std::declval<const Bytes &>().data()),
              class = decltype(std::declval<const Bytes &>().size())>
    Image preprocess(const Bytes &bytes) const {
        static_assert(sizeof(*bytes.data()) == 1, "preprocess expects a container of bytes");
        return preprocess(static_cast<const void *>(bytes.data()), bytes.size());
    }
    /// The same with per-call settings.
    template <class Bytes,
              class = decltype(std::declval<const Bytes &>().data()),
              class = decltype(std::declval<const Bytes &>().size())>
    Image preprocess(const Bytes &bytes, const PreprocessOptions &options) const {
        static_assert(sizeof(*bytes.data()) == 1, "preprocess expects a container of bytes");
        return preprocess(static_cast<const void *>(bytes.data()), bytes.size(), options);
    }

    /// Preprocesses raw RGB8 pixels: `height` rows of width * 3 bytes, `row_stride` bytes
    /// apart (0 = tightly packed).
    Image preprocess_rgb8(const uint8_t *pixels, uint32_t width, uint32_t height,
                          std::size_t row_stride = 0) const {
        if (row_stride == 0) row_stride = static_cast<std::size_t>(width) * 3;
        vt_image *img = nullptr;
        vt_error *err = nullptr;
        detail::check(vt_preprocess_rgb8(c(), pixels, width, height, row_stride, &img, &err),
                      &err);
        return Image(img);
    }

    /// Preprocesses a decoded video (Qwen2-VL, Qwen2.5-VL, Qwen3-VL, Qwen3.5): `frames[i]`
    /// holds frame i, `height` rows of width * 3 RGB bytes `row_stride` apart (0 = tightly
    /// packed). The result goes to forward() like any image.
    Image preprocess_video(const std::vector<const uint8_t *> &frames, uint32_t width,
                           uint32_t height, std::size_t row_stride = 0,
                           const VideoOptions &options = VideoOptions()) const {
        if (row_stride == 0) row_stride = static_cast<std::size_t>(width) * 3;
        vt_video_params params = options.to_c();
        vt_image *img = nullptr;
        vt_error *err = nullptr;
        detail::check(vt_preprocess_video(c(), frames.data(), frames.size(), width, height,
                                          row_stride, &params, &img, &err),
                      &err);
        return Image(img);
    }

    /// Runs the tower on several images made by this model (same-size images are batched).
    Embeddings forward(const std::vector<const Image *> &images) const {
        std::vector<const vt_image *> ptrs;
        ptrs.reserve(images.size());
        for (const Image *img : images) {
            if (!img || !*img) throw Error(VT_ERR_INVALID_ARGUMENT, "vtower::Model::forward: empty image");
            ptrs.push_back(img->get());
        }
        vt_embeddings *out = nullptr;
        vt_error *err = nullptr;
        detail::check(vt_forward(c(), ptrs.data(), ptrs.size(), &out, &err), &err);
        return Embeddings(out);
    }
    Embeddings forward(std::initializer_list<const Image *> images) const {
        return forward(std::vector<const Image *>(images));
    }
    Embeddings forward(const Image &image) const { return forward({&image}); }

    /// Starts forward(images) on the model's job threads and returns at once (see
    /// vt_forward_async). The images are copied: they may be destroyed right away. The job
    /// holds the model, which may be destroyed before the job finishes.
    Job forward_async(const std::vector<const Image *> &images) const {
        std::vector<const vt_image *> ptrs;
        ptrs.reserve(images.size());
        for (const Image *img : images) {
            if (!img || !*img) throw Error(VT_ERR_INVALID_ARGUMENT, "vtower::Model::forward_async: empty image");
            ptrs.push_back(img->get());
        }
        vt_job *job = nullptr;
        vt_error *err = nullptr;
        detail::check(
            vt_forward_async(c(), ptrs.data(), ptrs.size(), nullptr, nullptr, &job, &err), &err);
        return Job(job);
    }
    Job forward_async(const Image &image) const { return forward_async({&image}); }

    /// Preprocess + forward for one encoded image.
    template <class Bytes>
    Embeddings embed(const Bytes &bytes) const {
        Image img = preprocess(bytes);
        return forward(img);
    }

    /// The family implementing the model ("siglip", ...).
    std::string family() const { return vt_model_family(c()); }
    /// config.json's model_type.
    std::string model_type() const { return vt_model_type(c()); }
    /// Width of the output embeddings (the language model's hidden size).
    std::size_t output_dim() const { return vt_model_output_dim(c()); }
    /// Width of the vision encoder.
    std::size_t vision_dim() const { return vt_model_vision_dim(c()); }
    /// Patch size in pixels.
    uint32_t patch_size() const { return vt_model_patch_size(c()); }
    /// Embeddings per image when fixed, 0 when it depends on the image.
    std::size_t tokens_per_image() const { return vt_model_tokens_per_image(c()); }
    /// Worker threads for CPU work.
    uint32_t n_threads() const { return vt_model_n_threads(c()); }
    /// Embedding levels per image (1 + Qwen3-VL's deepstack levels).
    std::size_t n_levels() const { return vt_model_n_levels(c()); }
    /// Decoder layer after which level `level` (>= 1) is added; -1 for level 0 / past the end.
    int32_t level_layer(std::size_t level) const { return vt_model_level_layer(c(), level); }
    /// The native input size.
    Size image_size() const {
        Size s;
        vt_error *err = nullptr;
        detail::check(vt_model_image_size(c(), &s.width, &s.height, &err), &err);
        return s;
    }
    /// Estimated activation bytes of running `image` alone (vt_model_forward_bytes).
    uint64_t forward_bytes(const Image &image) const {
        return vt_model_forward_bytes(c(), detail::require(image.get(), "vtower::Image"));
    }
    /// The embedding cache's counters (all 0 without a cache).
    vt_cache_stats cache_stats() const {
        vt_cache_stats s{};
        vt_error *err = nullptr;
        detail::check(vt_model_cache_stats(c(), &s, &err), &err);
        return s;
    }
    /// The pieces of the prompt that stand for `image` (text, special tokens, placeholder runs
    /// taking the image's embedding rows), as the model's reference processor lays them out.
    std::vector<PromptSegment> prompt(const Image &image) const {
        vt_prompt *p = nullptr;
        vt_error *err = nullptr;
        detail::check(
            vt_image_prompt(c(), detail::require(image.get(), "vtower::Image"), &p, &err), &err);
        detail::Handle<vt_prompt, vt_prompt_free> owned(p);
        std::vector<PromptSegment> out;
        std::size_t n = vt_prompt_n_segments(p);
        out.reserve(n);
        for (std::size_t i = 0; i < n; i++) {
            vt_prompt_segment s;
            s.struct_size = sizeof s;
            detail::check(vt_prompt_segment_at(p, i, &s, &err), &err);
            PromptSegment seg;
            seg.kind = static_cast<PromptSegment::Kind>(s.kind);
            if (s.text) seg.text.assign(s.text, s.text_len);
            seg.token_id = s.token_id;
            seg.start = s.start;
            seg.count = s.count;
            out.push_back(std::move(seg));
        }
        return out;
    }
    /// The language-model token id for `token`, if the checkpoint has one.
    std::optional<int64_t> token_id(Token token) const {
        int64_t id = vt_model_token_id(c(), static_cast<vt_token_role>(token));
        if (id < 0) return std::nullopt;
        return id;
    }

private:
    const vt_model *c() const { return detail::require(h_.get(), "vtower::Model"); }
    detail::Handle<vt_model, vt_model_free> h_;
};

/// The library's version string, e.g. "vtower 0.1.0 (backends: cpu)".
inline const char *version() noexcept { return vt_version(); }

/// The library's version as MAJOR * 10000 + MINOR * 100 + PATCH (compare VT_VERSION_NUMBER).
inline uint32_t version_number() noexcept { return vt_version_number(); }

/// True when the library loaded at run time has the major/minor version of this header.
inline bool version_matches() noexcept {
    return vt_version_number() / 100 == VT_VERSION_NUMBER / 100;
}

}  // namespace vtower

#endif /* VTOWER_HPP */
