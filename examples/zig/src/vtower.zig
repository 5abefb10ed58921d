//! A small Zig wrapper over vtower's C API (`c`, translated from vtower.h): statuses
//! become Zig errors, and an optional Diagnostics receives the status and message.
const std = @import("std");
pub const c = @import("c");

/// One Zig error per VT_ERR_* status.
pub const Error = error{
    InvalidArgument,
    Io,
    UnsupportedModel,
    BadConfig,
    BadWeights,
    ImageDecode,
    ImageTooLarge,
    Device,
    OutOfMemory,
    Compute,
    Panic,
    Cancelled,
    UnknownStatus,
};

/// Where a failed call leaves its status and message (truncated to the buffer).
pub const Diagnostics = struct {
    status: c.vt_status = c.VT_OK,
    buf: [1024]u8 = undefined,
    len: usize = 0,

    pub fn message(d: *const Diagnostics) []const u8 {
        return d.buf[0..d.len];
    }
};

fn errorOf(status: c.vt_status) Error {
    return switch (status) {
        c.VT_ERR_INVALID_ARGUMENT => error.InvalidArgument,
        c.VT_ERR_IO => error.Io,
        c.VT_ERR_UNSUPPORTED_MODEL => error.UnsupportedModel,
        c.VT_ERR_BAD_CONFIG => error.BadConfig,
        c.VT_ERR_BAD_WEIGHTS => error.BadWeights,
        c.VT_ERR_IMAGE_DECODE => error.ImageDecode,
        c.VT_ERR_IMAGE_TOO_LARGE => error.ImageTooLarge,
        c.VT_ERR_DEVICE => error.Device,
        c.VT_ERR_OUT_OF_MEMORY => error.OutOfMemory,
        c.VT_ERR_COMPUTE => error.Compute,
        c.VT_ERR_PANIC => error.Panic,
        c.VT_ERR_CANCELLED => error.Cancelled,
        else => error.UnknownStatus,
    };
}

/// Turns a call's status and error object into a Zig error (freeing the object).
fn check(status: c.vt_status, err: ?*c.vt_error, diag: ?*Diagnostics) Error!void {
    if (status == c.VT_OK) return;
    defer c.vt_error_free(err);
    if (diag) |d| {
        const msg = std.mem.span(c.vt_error_message(err));
        d.status = c.vt_error_code(err);
        d.len = @min(msg.len, d.buf.len);
        @memcpy(d.buf[0..d.len], msg[0..d.len]);
    }
    return errorOf(status);
}

/// The embeddings of one image: `tokens` rows of `dim` floats, owned by the caller.
pub const Embedding = struct {
    tokens: usize,
    dim: usize,
    data: []f32,

    pub fn row(e: Embedding, i: usize) []const f32 {
        return e.data[i * e.dim ..][0..e.dim];
    }

    pub fn deinit(e: Embedding, gpa: std.mem.Allocator) void {
        gpa.free(e.data);
    }
};

/// Options for Model.loadWith; every 0 means the library default.
pub const LoadOptions = struct {
    /// Worker threads for CPU work; 0 = one per core.
    n_threads: u32 = 0,
    /// Images with more pixels (width * height) are refused (error.ImageTooLarge); 0 = 89478485.
    max_image_pixels: u64 = 0,
    /// The most embeddings one image may yield (every frame and crop counted); images that
    /// would yield more are refused (error.ImageTooLarge); 0 = 32768.
    max_image_tokens: u64 = 0,
    /// Byte budget of the embedding cache (vt_load_params.embedding_cache_bytes); 0 = none.
    embedding_cache_bytes: u64 = 0,
    /// Most estimated activation bytes per forward batch (vt_load_params.max_forward_bytes);
    /// larger batches are split, an image over it alone gives error.ImageTooLarge. 0 = none.
    max_forward_bytes: u64 = 0,

    /// The C parameters (vt_load_params_default() with these fields set).
    pub fn params(o: LoadOptions) c.vt_load_params {
        var p = c.vt_load_params_default();
        p.n_threads = o.n_threads;
        p.max_image_pixels = o.max_image_pixels;
        p.max_image_tokens = o.max_image_tokens;
        p.embedding_cache_bytes = o.embedding_cache_bytes;
        p.max_forward_bytes = o.max_forward_bytes;
        return p;
    }
};

/// Per-call preprocessing settings for Model.embedWith (vt_preprocess_params); every 0 (-1
/// for the tile fields) means the model's own preprocessor_config.json setting.
pub const PreprocessOptions = struct {
    /// Gemma 4's soft-token budget per image: 70, 140, 280, 560 or 1120 (others:
    /// error.InvalidArgument); 0 = the model's max_soft_tokens. Other models refuse non-zero.
    max_soft_tokens: u32 = 0,
    /// Qwen2-VL / Qwen3-VL / Qwen3.5, GLM-4.xV, PaddleOCR-VL: bounds of the resized image's
    /// pixel count (others refuse them).
    min_pixels: u64 = 0,
    max_pixels: u64 = 0,
    /// Any model: the most embeddings one image may yield (Qwen and Pixtral pick the
    /// largest size within it; fixed-size models refuse a smaller budget).
    max_tokens: u64 = 0,
    /// Pixtral / Mistral3: the longest edge the image is shrunk to fit (the processor's
    /// size={"longest_edge": n}); Idefics3 / SmolVLM: the long side the image is resized to
    /// before it is cut into tiles. Other models refuse a non-zero value.
    longest_edge: u32 = 0,
    /// InternVL / Aya Vision: -1 = the model's (tiles plus a thumbnail), 0 = one tile, 1 =
    /// tiles; the fewest and most tiles of the grid (-1 = the model's). Other models refuse
    /// them.
    crop_to_patches: i32 = -1,
    min_patches: i32 = -1,
    max_patches: i32 = -1,
    /// Idefics3 / SmolVLM: -1 = the model's do_image_splitting (a grid of tiles plus the
    /// global image), 0 = one tile, 1 = split. Other models refuse 0 and 1.
    do_image_splitting: i32 = -1,

    /// The C parameters (vt_preprocess_params_default() with these fields set).
    pub fn params(o: PreprocessOptions) c.vt_preprocess_params {
        var p = c.vt_preprocess_params_default();
        p.max_soft_tokens = o.max_soft_tokens;
        p.min_pixels = o.min_pixels;
        p.max_pixels = o.max_pixels;
        p.max_tokens = o.max_tokens;
        p.longest_edge = o.longest_edge;
        p.crop_to_patches = o.crop_to_patches;
        p.min_patches = o.min_patches;
        p.max_patches = o.max_patches;
        p.do_image_splitting = o.do_image_splitting;
        return p;
    }
};

/// A loaded model. Its functions may be called from many threads at once; deinit must
/// not race with them.
pub const Model = struct {
    ptr: *c.vt_model,

    /// Loads a model folder; `n_threads` 0 = one per core.
    pub fn load(dir: [:0]const u8, n_threads: u32, diag: ?*Diagnostics) Error!Model {
        return loadWith(dir, .{ .n_threads = n_threads }, diag);
    }

    /// Loads a model folder with options.
    pub fn loadWith(dir: [:0]const u8, options: LoadOptions, diag: ?*Diagnostics) Error!Model {
        const params = options.params();
        var model: ?*c.vt_model = null;
        var err: ?*c.vt_error = null;
        try check(c.vt_load(dir.ptr, &params, &model, &err), err, diag);
        return .{ .ptr = model.? };
    }

    /// Frees the model; returns once its worker threads have exited (unless an async job
    /// still holds the model).
    pub fn deinit(m: Model) void {
        c.vt_model_free(m.ptr);
    }

    pub fn family(m: Model) []const u8 {
        return std.mem.span(c.vt_model_family(m.ptr));
    }

    /// The embedding cache's counters (all 0 without a cache).
    pub fn cacheStats(m: Model) c.vt_cache_stats {
        var s: c.vt_cache_stats = .{ .hits = 0, .misses = 0, .bytes = 0, .entries = 0 };
        var err: ?*c.vt_error = null;
        check(c.vt_model_cache_stats(m.ptr, &s, &err), err, null) catch unreachable;
        return s;
    }

    pub fn outputDim(m: Model) usize {
        return c.vt_model_output_dim(m.ptr);
    }

    /// Decodes, preprocesses and embeds one encoded image (PNG, JPEG, ...). The result's
    /// data is copied into memory from `gpa`.
    pub fn embed(m: Model, gpa: std.mem.Allocator, bytes: []const u8, diag: ?*Diagnostics) (Error || std.mem.Allocator.Error)!Embedding {
        return m.embedWith(gpa, bytes, .{}, diag);
    }

    /// embed with per-call preprocessing settings (vt_preprocess_ex).
    pub fn embedWith(m: Model, gpa: std.mem.Allocator, bytes: []const u8, options: PreprocessOptions, diag: ?*Diagnostics) (Error || std.mem.Allocator.Error)!Embedding {
        const params = options.params();
        var image: ?*c.vt_image = null;
        var err: ?*c.vt_error = null;
        try check(c.vt_preprocess_ex(m.ptr, bytes.ptr, bytes.len, &params, &image, &err), err, diag);
        defer c.vt_image_free(image);

        var out: ?*c.vt_embeddings = null;
        const batch = [_]?*const c.vt_image{image};
        try check(c.vt_forward(m.ptr, &batch, batch.len, &out, &err), err, diag);
        defer c.vt_embeddings_free(out);

        const tokens = c.vt_embeddings_n_tokens(out, 0);
        const dim = c.vt_embeddings_dim(out);
        const data = try gpa.dupe(f32, c.vt_embeddings_data(out, 0)[0 .. tokens * dim]);
        return .{ .tokens = tokens, .dim = dim, .data = data };
    }

    /// The prompt layout of one encoded image (vt_image_prompt): text, special tokens and
    /// placeholder runs taking its embedding rows, in order. Free with freePrompt.
    pub fn prompt(m: Model, gpa: std.mem.Allocator, bytes: []const u8, options: PreprocessOptions, diag: ?*Diagnostics) (Error || std.mem.Allocator.Error)![]Segment {
        const params = options.params();
        var image: ?*c.vt_image = null;
        var err: ?*c.vt_error = null;
        try check(c.vt_preprocess_ex(m.ptr, bytes.ptr, bytes.len, &params, &image, &err), err, diag);
        defer c.vt_image_free(image);
        var layout: ?*c.vt_prompt = null;
        try check(c.vt_image_prompt(m.ptr, image, &layout, &err), err, diag);
        defer c.vt_prompt_free(layout);
        const n = c.vt_prompt_n_segments(layout);
        const out = try gpa.alloc(Segment, n);
        var filled: usize = 0;
        errdefer freePrompt(gpa, out[0..filled]);
        while (filled < n) : (filled += 1) {
            var s: c.vt_prompt_segment = undefined;
            s.struct_size = @sizeOf(c.vt_prompt_segment);
            try check(c.vt_prompt_segment_at(layout, filled, &s, &err), err, diag);
            const text: []const u8 = if (s.text) |t| try gpa.dupe(u8, t[0..s.text_len]) else "";
            out[filled] = .{ .kind = @enumFromInt(s.kind), .text = text, .token_id = s.token_id, .start = s.start, .count = s.count };
        }
        return out;
    }

    /// Decodes and preprocesses one encoded image, then starts its forward pass and returns
    /// at once (see vt_forward_async). The job holds the model; deinit it when done.
    pub fn embedAsync(m: Model, bytes: []const u8, diag: ?*Diagnostics) Error!Job {
        var image: ?*c.vt_image = null;
        var err: ?*c.vt_error = null;
        try check(c.vt_preprocess(m.ptr, bytes.ptr, bytes.len, &image, &err), err, diag);
        defer c.vt_image_free(image);
        const batch = [_]?*const c.vt_image{image};
        var job: ?*c.vt_job = null;
        try check(c.vt_forward_async(m.ptr, &batch, batch.len, null, null, &job, &err), err, diag);
        return .{ .ptr = job.? };
    }
};

/// What a prompt Segment is (VT_SEGMENT_*).
pub const SegmentKind = enum(u32) {
    text = c.VT_SEGMENT_TEXT,
    token = c.VT_SEGMENT_TOKEN,
    embeddings = c.VT_SEGMENT_EMBEDDINGS,
};

/// One piece of an image's prompt layout (Model.prompt).
pub const Segment = struct {
    kind: SegmentKind,
    /// .text: text to tokenize (owned, from the allocator given to Model.prompt).
    text: []const u8,
    /// .token: the id; .embeddings: the placeholder id (-1 if unknown).
    token_id: i64,
    /// .embeddings: `count` placeholders taking embedding rows start .. start + count - 1.
    start: usize,
    count: usize,
};

/// Frees what Model.prompt returned.
pub fn freePrompt(gpa: std.mem.Allocator, segments: []Segment) void {
    for (segments) |s| {
        if (s.kind == .text) gpa.free(s.text);
    }
    gpa.free(segments);
}

/// An asynchronous forward pass (Model.embedAsync). wait, done and cancel may be called
/// from several threads at once; deinit must not race with them.
pub const Job = struct {
    ptr: *c.vt_job,

    /// Waits for the job and copies its embeddings into memory from `gpa`;
    /// error.Cancelled after cancel. The result is handed out once.
    pub fn wait(j: Job, gpa: std.mem.Allocator, diag: ?*Diagnostics) (Error || std.mem.Allocator.Error)!Embedding {
        var out: ?*c.vt_embeddings = null;
        var err: ?*c.vt_error = null;
        try check(c.vt_job_wait(j.ptr, &out, &err), err, diag);
        defer c.vt_embeddings_free(out);
        const tokens = c.vt_embeddings_n_tokens(out, 0);
        const dim = c.vt_embeddings_dim(out);
        const data = try gpa.dupe(f32, c.vt_embeddings_data(out, 0)[0 .. tokens * dim]);
        return .{ .tokens = tokens, .dim = dim, .data = data };
    }

    /// Waits at most `timeout_ms` (0: not at all); true once the job has finished.
    pub fn done(j: Job, timeout_ms: u32) bool {
        return c.vt_job_done(j.ptr, timeout_ms) != 0;
    }

    /// Asks the job to stop (before its next encoder layer); wait then gives
    /// error.Cancelled. A finished job keeps its result.
    pub fn cancel(j: Job) void {
        c.vt_job_cancel(j.ptr);
    }

    /// Frees the job, cancelling it if it has not finished (without waiting).
    pub fn deinit(j: Job) void {
        c.vt_job_free(j.ptr);
    }
};

/// Per-call video options (vt_video_params); the defaults take everything from the model's
/// video processor config.
pub const VideoOptions = struct {
    /// The source frame rate; 0 = unknown.
    source_fps: f64 = 0,
    /// -1: the config's do_sample_frames; 0: keep every frame; 1: sample.
    do_sample_frames: i32 = -1,
    /// Frames per second to sample; 0 = the config's fps.
    sample_fps: f64 = 0,
    /// Frames to sample; 0 = the config's num_frames.
    num_frames: u32 = 0,

    pub fn params(o: VideoOptions) c.vt_video_params {
        var p = c.vt_video_params_default();
        p.source_fps = o.source_fps;
        p.do_sample_frames = o.do_sample_frames;
        p.sample_fps = o.sample_fps;
        p.num_frames = o.num_frames;
        return p;
    }
};

/// The embeddings of one video and its timestamps (seconds per temporal group, what
/// Qwen3-VL writes as `<T seconds>`), owned by the caller.
pub const VideoEmbedding = struct {
    embedding: Embedding,
    /// Temporal groups (the token grid's frames).
    groups: usize,
    timestamps: []f64,

    pub fn deinit(v: VideoEmbedding, gpa: std.mem.Allocator) void {
        v.embedding.deinit(gpa);
        gpa.free(v.timestamps);
    }
};

/// Preprocesses a decoded video (Qwen families: frames sampled, resized, normalized and
/// grouped as the model's video processor does) and embeds it. `frames[i]` holds frame i:
/// `height` rows of `width * 3` RGB bytes, `row_stride` apart.
pub fn embedVideo(m: Model, gpa: std.mem.Allocator, frames: []const [*]const u8, width: u32, height: u32, row_stride: usize, options: VideoOptions, diag: ?*Diagnostics) (Error || std.mem.Allocator.Error)!VideoEmbedding {
    const params = options.params();
    var image: ?*c.vt_image = null;
    var err: ?*c.vt_error = null;
    try check(c.vt_preprocess_video(m.ptr, @ptrCast(frames.ptr), frames.len, width, height, row_stride, &params, &image, &err), err, diag);
    defer c.vt_image_free(image);

    var t: u32 = 0;
    var r: u32 = 0;
    var cols: u32 = 0;
    try check(c.vt_image_token_grid(image, &t, &r, &cols, &err), err, diag);
    var count: usize = 0;
    try check(c.vt_image_video_timestamps(image, null, 0, &count, &err), err, diag);
    const ts = try gpa.alloc(f64, count);
    errdefer gpa.free(ts);
    try check(c.vt_image_video_timestamps(image, ts.ptr, ts.len, &count, &err), err, diag);

    var out: ?*c.vt_embeddings = null;
    const batch = [_]?*const c.vt_image{image};
    try check(c.vt_forward(m.ptr, &batch, batch.len, &out, &err), err, diag);
    defer c.vt_embeddings_free(out);
    const tokens = c.vt_embeddings_n_tokens(out, 0);
    const dim = c.vt_embeddings_dim(out);
    const data = try gpa.dupe(f32, c.vt_embeddings_data(out, 0)[0 .. tokens * dim]);
    return .{ .embedding = .{ .tokens = tokens, .dim = dim, .data = data }, .groups = t, .timestamps = ts };
}

pub fn version() []const u8 {
    return std.mem.span(c.vt_version());
}

/// The library's version as major * 10000 + minor * 100 + patch (compare c.VT_VERSION_NUMBER).
pub fn versionNumber() u32 {
    return c.vt_version_number();
}

// Tests: run by `zig build test` on the fixture given by -Dmodel / -Dimages.

const testing = std.testing;

fn testPaths() type {
    return @import("test_paths");
}

fn readTestImage(name: []const u8) ![]u8 {
    const path = try std.fs.path.join(testing.allocator, &.{ testPaths().images, name });
    defer testing.allocator.free(path);
    return std.Io.Dir.cwd().readFileAlloc(testing.io, path, testing.allocator, .limited(1 << 24));
}

fn loadTestModel() !Model {
    const dir = try testing.allocator.dupeSentinel(u8, testPaths().model, 0);
    defer testing.allocator.free(dir);
    var diag: Diagnostics = .{};
    return Model.load(dir, 2, &diag) catch |e| {
        std.debug.print("load failed: {s}\n", .{diag.message()});
        return e;
    };
}

test "load and embed" {
    const m = try loadTestModel();
    defer m.deinit();
    try testing.expectEqualStrings("siglip", m.family());
    try testing.expectEqual(@as(usize, 64), m.outputDim());
    try testing.expect(std.mem.startsWith(u8, version(), "vtower "));

    const bytes = try readTestImage("rgb.png");
    defer testing.allocator.free(bytes);
    const e = try m.embed(testing.allocator, bytes, null);
    defer e.deinit(testing.allocator);
    try testing.expectEqual(@as(usize, 36), e.tokens);
    try testing.expectEqual(@as(usize, 64), e.dim);
    try testing.expectEqual(@as(usize, 36 * 64), e.data.len);
    for (e.data) |x| try testing.expect(std.math.isFinite(x));

    // The same bytes give bit-identical embeddings.
    const again = try m.embed(testing.allocator, bytes, null);
    defer again.deinit(testing.allocator);
    try testing.expectEqualSlices(f32, e.data, again.data);
    try testing.expectEqualSlices(f32, e.data[64..128], e.row(1));
}

test "version number" {
    const n = versionNumber();
    try testing.expectEqual(@as(u32, c.VT_VERSION_NUMBER), n);
    var buf: [64]u8 = undefined;
    const want = try std.fmt.bufPrint(&buf, "vtower {d}.{d}.{d} ", .{ n / 10000, n / 100 % 100, n % 100 });
    try testing.expect(std.mem.startsWith(u8, version(), want));
}

test "load options reach the C parameters" {
    const p = (LoadOptions{ .n_threads = 3, .max_image_pixels = 5, .max_image_tokens = 7 }).params();
    try testing.expectEqual(@as(u32, @sizeOf(c.vt_load_params)), p.struct_size);
    try testing.expectEqual(@as(u32, 3), p.n_threads);
    try testing.expectEqual(@as(u64, 5), p.max_image_pixels);
    try testing.expectEqual(@as(u64, 7), p.max_image_tokens);
    try testing.expectEqual(@as(u64, 32768), c.vt_load_params_default().max_image_tokens);

    // A token limit at the fixture's 36 tokens per image still embeds it.
    const dir = try testing.allocator.dupeSentinel(u8, testPaths().model, 0);
    defer testing.allocator.free(dir);
    const m = try Model.loadWith(dir, .{ .n_threads = 2, .max_image_tokens = 36 }, null);
    defer m.deinit();
    const bytes = try readTestImage("rgb.png");
    defer testing.allocator.free(bytes);
    const e = try m.embed(testing.allocator, bytes, null);
    defer e.deinit(testing.allocator);
    try testing.expectEqual(@as(usize, 36), e.tokens);
}

test "preprocess options reach the C parameters" {
    const p = (PreprocessOptions{ .max_soft_tokens = 280 }).params();
    try testing.expectEqual(@as(u32, @sizeOf(c.vt_preprocess_params)), p.struct_size);
    try testing.expectEqual(@as(u32, 280), p.max_soft_tokens);
    try testing.expectEqual(@as(u32, 0), c.vt_preprocess_params_default().max_soft_tokens);

    // The defaults embed as embed does; a soft-token budget is Gemma 4's, refused here.
    const m = try loadTestModel();
    defer m.deinit();
    const bytes = try readTestImage("rgb.png");
    defer testing.allocator.free(bytes);
    const a = try m.embedWith(testing.allocator, bytes, .{}, null);
    defer a.deinit(testing.allocator);
    const b = try m.embed(testing.allocator, bytes, null);
    defer b.deinit(testing.allocator);
    try testing.expectEqualSlices(f32, a.data, b.data);
    var diag: Diagnostics = .{};
    try testing.expectError(error.InvalidArgument, m.embedWith(testing.allocator, bytes, .{ .max_soft_tokens = 280 }, &diag));
    try testing.expect(std.mem.indexOf(u8, diag.message(), "max_soft_tokens") != null);
}

test "errors carry status and message" {
    var diag: Diagnostics = .{};
    try testing.expectError(error.Io, Model.load("/nonexistent/no_such_model", 0, &diag));
    try testing.expectEqual(@as(c.vt_status, c.VT_ERR_IO), diag.status);
    try testing.expect(std.mem.indexOf(u8, diag.message(), "no_such_model") != null);

    const m = try loadTestModel();
    defer m.deinit();
    const garbage = try readTestImage("garbage.bin");
    defer testing.allocator.free(garbage);
    try testing.expectError(error.ImageDecode, m.embed(testing.allocator, garbage, &diag));
    try testing.expectEqual(@as(c.vt_status, c.VT_ERR_IMAGE_DECODE), diag.status);
    try testing.expect(diag.message().len > 0);
    try testing.expectError(error.ImageDecode, m.embed(testing.allocator, "", null));

    const huge = try readTestImage("huge_header.png");
    defer testing.allocator.free(huge);
    try testing.expectError(error.ImageTooLarge, m.embed(testing.allocator, huge, &diag));

    // A NULL model is refused, not dereferenced.
    var img: ?*c.vt_image = null;
    var err: ?*c.vt_error = null;
    try testing.expectError(error.InvalidArgument, check(c.vt_preprocess(null, garbage.ptr, garbage.len, &img, &err), err, null));
    try testing.expect(img == null);
}

test "video: a decoded video embeds with its timestamps" {
    // The first video of tests/fixtures/video/qwen3_vl_f32: 5 frames of 37x23 at 7.5 fps.
    const dir = try std.fs.path.join(testing.allocator, &.{ testPaths().fixtures, "video", "qwen3_vl_f32" });
    defer testing.allocator.free(dir);
    const dirz = try testing.allocator.dupeSentinel(u8, dir, 0);
    defer testing.allocator.free(dirz);
    const bin_path = try std.fs.path.join(testing.allocator, &.{ dir, "frames.bin" });
    defer testing.allocator.free(bin_path);
    const bin = try std.Io.Dir.cwd().readFileAlloc(testing.io, bin_path, testing.allocator, .limited(1 << 24));
    defer testing.allocator.free(bin);

    var diag: Diagnostics = .{};
    const m = Model.load(dirz, 2, &diag) catch |e| {
        std.debug.print("load failed: {s}\n", .{diag.message()});
        return e;
    };
    defer m.deinit();
    const size = 37 * 23 * 3;
    var frames: [5][*]const u8 = undefined;
    for (&frames, 0..) |*f, i| f.* = bin[i * size ..].ptr;
    const v = try embedVideo(m, testing.allocator, &frames, 37, 23, 37 * 3, .{ .source_fps = 7.5 }, &diag);
    defer v.deinit(testing.allocator);
    // Frames [0, 1, 3, 4] in 2 groups at (0 + 1) / 2 / 7.5 and (3 + 4) / 2 / 7.5 seconds.
    try testing.expectEqual(@as(usize, 2), v.groups);
    try testing.expectEqual(@as(usize, 2), v.timestamps.len);
    try testing.expectApproxEqAbs(@as(f64, 1.0 / 15.0), v.timestamps[0], 1e-12);
    try testing.expectApproxEqAbs(@as(f64, 7.0 / 15.0), v.timestamps[1], 1e-12);
    try testing.expect(v.embedding.tokens > 0);
    for (v.embedding.data) |x| try testing.expect(std.math.isFinite(x));
    try testing.expect(c.vt_model_token_id(m.ptr, c.VT_TOKEN_VIDEO) >= 0);

    // fps sampling and num_frames exclude each other: a clean InvalidArgument.
    try testing.expectError(error.InvalidArgument, embedVideo(m, testing.allocator, &frames, 37, 23, 37 * 3, .{ .source_fps = 7.5, .num_frames = 4 }, &diag));
    try testing.expectEqual(@as(c.vt_status, c.VT_ERR_INVALID_ARGUMENT), diag.status);
}

test "asynchronous jobs: results, cancellation" {
    const m = try loadTestModel();
    defer m.deinit();
    const bytes = try readTestImage("rgb.png");
    defer testing.allocator.free(bytes);
    const want = try m.embed(testing.allocator, bytes, null);
    defer want.deinit(testing.allocator);

    // Several jobs in flight, then waited for: the synchronous result bit for bit.
    var jobs: [4]Job = undefined;
    for (&jobs) |*j| j.* = try m.embedAsync(bytes, null);
    for (jobs) |j| {
        defer j.deinit();
        const e = try j.wait(testing.allocator, null);
        defer e.deinit(testing.allocator);
        try testing.expectEqualSlices(f32, want.data, e.data);
        try testing.expect(j.done(0));
        // Handed out once.
        try testing.expectError(error.InvalidArgument, j.wait(testing.allocator, null));
    }

    // A long job (many copies of one image) cancelled before it has finished.
    var image: ?*c.vt_image = null;
    var err: ?*c.vt_error = null;
    try check(c.vt_preprocess(m.ptr, bytes.ptr, bytes.len, &image, &err), err, null);
    defer c.vt_image_free(image);
    const list = try testing.allocator.alloc(?*const c.vt_image, 3000);
    defer testing.allocator.free(list);
    @memset(list, image);
    var cancelled = false;
    var tries: usize = 0;
    while (tries < 5 and !cancelled) : (tries += 1) {
        var ptr: ?*c.vt_job = null;
        try check(c.vt_forward_async(m.ptr, list.ptr, list.len, null, null, &ptr, &err), err, null);
        const j = Job{ .ptr = ptr.? };
        defer j.deinit();
        if (!j.done(0)) {
            j.cancel();
            var diag: Diagnostics = .{};
            if (j.wait(testing.allocator, &diag)) |e| {
                e.deinit(testing.allocator);
            } else |e| {
                try testing.expectEqual(error.Cancelled, e);
                try testing.expectEqual(@as(c.vt_status, c.VT_ERR_CANCELLED), diag.status);
                cancelled = true;
            }
        }
    }
    try testing.expect(cancelled);

    // A finished job keeps its result when cancelled; freeing a running job is safe.
    const fin = try m.embedAsync(bytes, null);
    defer fin.deinit();
    while (!fin.done(1000)) {}
    fin.cancel();
    const e = try fin.wait(testing.allocator, null);
    defer e.deinit(testing.allocator);
    try testing.expectEqualSlices(f32, want.data, e.data);
    var early: ?*c.vt_job = null;
    try check(c.vt_forward_async(m.ptr, list.ptr, list.len, null, null, &early, &err), err, null);
    c.vt_job_free(early);
    c.vt_job_free(null);
    c.vt_job_cancel(null);
}

test "embedding cache" {
    const dir = try testing.allocator.dupeSentinel(u8, testPaths().model, 0);
    defer testing.allocator.free(dir);
    const m = try Model.loadWith(dir, .{ .n_threads = 2, .embedding_cache_bytes = 1 << 20 }, null);
    defer m.deinit();
    const bytes = try readTestImage("rgb.png");
    defer testing.allocator.free(bytes);
    const a = try m.embed(testing.allocator, bytes, null);
    defer a.deinit(testing.allocator);
    const b = try m.embed(testing.allocator, bytes, null);
    defer b.deinit(testing.allocator);
    try testing.expectEqualSlices(f32, a.data, b.data);
    const s = m.cacheStats();
    try testing.expectEqual(@as(u64, 1), s.hits);
    try testing.expectEqual(@as(u64, 1), s.misses);
    try testing.expectEqual(@as(u64, 1), s.entries);
    try testing.expect(s.bytes > 0);
}

test "max forward bytes" {
    const dir = try testing.allocator.dupeSentinel(u8, testPaths().model, 0);
    defer testing.allocator.free(dir);
    // siglip_f32: 36 patches, 64 wide, 36 x 64 outputs (see vt_model_forward_bytes).
    const need: u64 = 4 * (16 * 36 * 64 + 36 * 64);
    const bytes = try readTestImage("rgb.png");
    defer testing.allocator.free(bytes);
    const ok = try Model.loadWith(dir, .{ .n_threads = 2, .max_forward_bytes = need }, null);
    defer ok.deinit();
    const e = try ok.embed(testing.allocator, bytes, null);
    defer e.deinit(testing.allocator);
    const small = try Model.loadWith(dir, .{ .n_threads = 2, .max_forward_bytes = need - 1 }, null);
    defer small.deinit();
    var diag: Diagnostics = .{};
    try testing.expectError(error.ImageTooLarge, small.embed(testing.allocator, bytes, &diag));
    try testing.expect(std.mem.indexOf(u8, diag.message(), "max_forward_bytes") != null);
}

test "prompt layout" {
    const m = try loadTestModel();
    defer m.deinit();
    const bytes = try readTestImage("rgb.png");
    defer testing.allocator.free(bytes);
    // siglip_f32: one run of 36 placeholders with no token id, nothing around it.
    const segs = try m.prompt(testing.allocator, bytes, .{}, null);
    defer freePrompt(testing.allocator, segs);
    try testing.expectEqual(@as(usize, 1), segs.len);
    try testing.expectEqual(SegmentKind.embeddings, segs[0].kind);
    try testing.expectEqual(@as(usize, 0), segs[0].start);
    try testing.expectEqual(@as(usize, 36), segs[0].count);
    try testing.expectEqual(@as(i64, -1), segs[0].token_id);
    // A tile budget is InternVL's and Aya Vision's.
    var diag: Diagnostics = .{};
    try testing.expectError(error.InvalidArgument, m.prompt(testing.allocator, bytes, .{ .max_patches = 4 }, &diag));
    try testing.expect(std.mem.indexOf(u8, diag.message(), "max_patches") != null);
}

test "per-call preprocessing knobs" {
    const m = try loadTestModel();
    defer m.deinit();
    const bytes = try readTestImage("rgb.png");
    defer testing.allocator.free(bytes);
    var diag: Diagnostics = .{};
    try testing.expectError(error.InvalidArgument, m.embedWith(testing.allocator, bytes, .{ .min_pixels = 100 }, &diag));
    try testing.expect(std.mem.indexOf(u8, diag.message(), "min_pixels") != null);
    try testing.expectError(error.InvalidArgument, m.embedWith(testing.allocator, bytes, .{ .longest_edge = 32 }, &diag));
    try testing.expect(std.mem.indexOf(u8, diag.message(), "longest_edge") != null);
    const e = try m.embedWith(testing.allocator, bytes, .{ .max_tokens = 36 }, null);
    defer e.deinit(testing.allocator);
    try testing.expectEqual(@as(usize, 36), e.tokens);
    try testing.expectError(error.InvalidArgument, m.embedWith(testing.allocator, bytes, .{ .max_tokens = 35 }, null));
}
