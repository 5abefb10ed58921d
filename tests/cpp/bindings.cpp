// Tests of the C++ bindings (include/vtower.hpp) on a bundled SigLIP fixture: loading,
// embedding against the transformers reference, batching, views, RAII/moves, every kind of
// error as vtower::Error, and concurrent use from several threads.
//
//   bindings <model_dir> <images_dir>
//
// <model_dir> must hold expected.safetensors (the reference written by
// scripts/gen_fixtures.py). Compiled with -Wall -Wextra -Werror by tests/cpp_api.rs and by
// scripts/check_install.sh (against the installed library).
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include "vtower.hpp"

namespace {

int failures = 0;
int passed = 0;

#define CHECK(cond)                                                                     \
    do {                                                                                \
        if (cond) {                                                                     \
            passed++;                                                                   \
        } else {                                                                        \
            std::fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
            failures++;                                                                 \
        }                                                                               \
    } while (0)

// Runs `f`, which must throw vtower::Error with status `want` and a message containing
// `needle`.
template <class F>
void expect_error(const char *what, vt_status want, const char *needle, F f) {
    try {
        f();
        std::fprintf(stderr, "%s: no exception, want status %d\n", what, int(want));
        failures++;
    } catch (const vtower::Error &e) {
        bool ok = e.status() == want && std::strstr(e.what(), needle) != nullptr &&
                  std::string(e.status_str()) == vt_status_str(want);
        if (!ok) {
            std::fprintf(stderr, "%s: got status %d \"%s\", want %d with \"%s\"\n", what,
                         int(e.status()), e.what(), int(want), needle);
            failures++;
        } else {
            passed++;
        }
    }
}

std::vector<uint8_t> read_file(const std::string &path) {
    std::ifstream f(path, std::ios::binary);
    if (!f) {
        std::fprintf(stderr, "cannot open %s\n", path.c_str());
        std::exit(2);
    }
    return std::vector<uint8_t>(std::istreambuf_iterator<char>(f), {});
}

// The f32 tensor `name` of a safetensors file (just enough of the format for the
// reference files: an 8-byte little-endian header length, a JSON header, the data).
std::vector<float> read_tensor(const std::string &path, const std::string &name) {
    std::vector<uint8_t> bytes = read_file(path);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = (n << 8) | bytes.at(size_t(i));
    std::string header(bytes.begin() + 8, bytes.begin() + 8 + long(n));
    size_t at = header.find("\"" + name + "\"");
    size_t off = at == std::string::npos ? at : header.find("\"data_offsets\":[", at);
    if (off == std::string::npos || header.find("\"F32\"", at) > off) {
        std::fprintf(stderr, "%s: no f32 tensor %s\n", path.c_str(), name.c_str());
        std::exit(2);
    }
    unsigned long long begin = 0, end = 0;
    std::sscanf(header.c_str() + off, "\"data_offsets\":[%llu,%llu]", &begin, &end);
    std::vector<float> v((end - begin) / 4);
    std::memcpy(v.data(), bytes.data() + 8 + n + begin, end - begin);
    return v;
}

double rel_l2(vtower::View<float> a, const std::vector<float> &b) {
    if (a.size() != b.size()) return INFINITY;
    double num = 0, den = 0;
    for (size_t i = 0; i < b.size(); i++) {
        num += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
        den += double(b[i]) * b[i];
    }
    return std::sqrt(num / (den > 1e-30 ? den : 1e-30));
}

bool same(vtower::View<float> a, vtower::View<float> b) {
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

static_assert(!std::is_copy_constructible_v<vtower::Model>, "Model is move-only");
static_assert(!std::is_copy_constructible_v<vtower::Image>, "Image is move-only");
static_assert(!std::is_copy_constructible_v<vtower::Embeddings>, "Embeddings is move-only");
static_assert(!std::is_copy_constructible_v<vtower::Job>, "Job is move-only");
static_assert(std::is_nothrow_move_constructible_v<vtower::Model>, "Model moves");
static_assert(std::is_base_of_v<std::runtime_error, vtower::Error>, "Error is a runtime_error");

}  // namespace

int main(int argc, char **argv) {
    if (argc != 3) {
        std::fprintf(stderr, "usage: bindings <model_dir> <images_dir>\n");
        return 2;
    }
    const std::string dir = argv[1], images = std::string(argv[2]) + "/";
    const std::string expected = dir + "/expected.safetensors";

    CHECK(vtower::version_matches());
    CHECK(std::string(vtower::version()).find("vtower ") == 0);
    CHECK(vtower::version_number() == VT_VERSION_NUMBER);
    CHECK(std::string(vtower::version()).find(
              "vtower " + std::to_string(vtower::version_number() / 10000) + "." +
              std::to_string(vtower::version_number() / 100 % 100) + "." +
              std::to_string(vtower::version_number() % 100) + " ") == 0);
    static_assert(VT_VERSION_NUMBER ==
                      VT_VERSION_MAJOR * 10000 + VT_VERSION_MINOR * 100 + VT_VERSION_PATCH,
                  "VT_VERSION_NUMBER");

    // LoadOptions reach vt_load_params; 0 limits mean the library defaults.
    {
        vtower::LoadOptions o;
        CHECK(o.max_image_tokens == 0 && o.to_c().max_image_tokens == 0);
        o.max_image_tokens = 4096;
        CHECK(o.to_c().max_image_tokens == 4096);
        CHECK(o.to_c().struct_size == sizeof(vt_load_params));
        CHECK(vt_load_params_default().max_image_tokens == 32768);
        // With a limit above the fixture's 36 tokens per image, images still embed.
        o.max_image_tokens = 36;
        vtower::Model limited(dir, o);
        CHECK(limited.embed(read_file(images + "rgb.png")).n_tokens(0) == 36);
    }

    vtower::LoadOptions opts;
    opts.n_threads = 2;
    vtower::Model model(dir, opts);
    CHECK(bool(model));
    CHECK(model.family() == "siglip");
    CHECK(model.model_type() == "siglip");
    CHECK(model.output_dim() == 64 && model.vision_dim() == 64);
    CHECK(model.patch_size() == 8);
    CHECK(model.tokens_per_image() == 36);
    CHECK(model.n_threads() == 2);
    CHECK(model.image_size().width == 48 && model.image_size().height == 48);
    CHECK(!model.token_id(vtower::Token::ImageBreak).has_value());

    // Embeddings match the transformers reference: rgb.png is 48x48 (no resize, 1e-4),
    // jpeg420.jpg is resized (2e-3), as in tests/parity.rs.
    const std::vector<uint8_t> png = read_file(images + "rgb.png");
    const std::vector<uint8_t> jpg = read_file(images + "jpeg420.jpg");
    vtower::Image a = model.preprocess(png);
    vtower::Image b = model.preprocess(jpg.data(), jpg.size());
    CHECK(a.n_tokens() == 36);
    CHECK((a.shape() == std::vector<size_t>{3, 48, 48}));
    CHECK(a.pixels().size() == 3 * 48 * 48);
    CHECK(rel_l2(a.pixels(), read_tensor(expected, "pixels/rgb.png")) <= 1e-6);
    vtower::Grid g = a.token_grid();
    CHECK(g.frames == 1 && g.rows == 6 && g.cols == 6);
    // Prompt layout: SigLIP alone has no tokens; one run of 36 placeholder rows.
    std::vector<vtower::PromptSegment> layout = model.prompt(a);
    CHECK(layout.size() == 1);
    CHECK(layout[0].kind == vtower::PromptSegment::Kind::Embeddings);
    CHECK(layout[0].start == 0 && layout[0].count == 36 && layout[0].token_id == -1);
    // A tile budget is refused by a model without tiles, with the setting named.
    {
        vtower::PreprocessOptions tiles;
        tiles.max_patches = 4;
        bool refused = false;
        try {
            model.preprocess(png, tiles);
        } catch (const vtower::Error &e) {
            refused = e.status() == VT_ERR_INVALID_ARGUMENT &&
                      std::string(e.what()).find("max_patches") != std::string::npos;
        }
        CHECK(refused);
    }

    vtower::Embeddings ea = model.forward(a);
    vtower::Embeddings eb = model.embed(jpg);
    CHECK(ea.size() == 1 && ea.dim() == 64 && ea.n_tokens(0) == 36);
    CHECK(ea[0].size() == 36 * 64);
    double err_a = rel_l2(ea[0], read_tensor(expected, "embeddings/rgb.png"));
    double err_b = rel_l2(eb[0], read_tensor(expected, "embeddings/jpeg420.jpg"));
    std::printf("rel L2 vs transformers: rgb.png %.2e, jpeg420.jpg %.2e\n", err_a, err_b);
    CHECK(err_a <= 1e-4);
    CHECK(err_b <= 2e-3);

    // Rows and views.
    vtower::View<float> row5 = ea.row(0, 5);
    CHECK(row5.size() == 64 && row5.data() == ea[0].data() + 5 * 64);
    float sum = 0;
    for (float x : row5) sum += x;
    CHECK(std::isfinite(sum));
    CHECK(ea[0].to_vector().size() == 36 * 64);
    CHECK(ea[0].subview(36 * 64 - 10, 100).size() == 10);

    // A batch equals the single runs.
    vtower::Embeddings batch = model.forward({&a, &b});
    CHECK(batch.size() == 2);
    CHECK(rel_l2(batch[0], ea[0].to_vector()) <= 1e-6);
    CHECK(rel_l2(batch[1], eb[0].to_vector()) <= 1e-6);
    CHECK(model.forward(std::vector<const vtower::Image *>{}).size() == 0);

    // PreprocessOptions reach vt_preprocess_params: 0 = the model's settings; a soft-token
    // budget is Gemma 4's, refused by this SigLIP model.
    {
        vtower::PreprocessOptions po;
        CHECK(po.to_c().struct_size == sizeof(vt_preprocess_params));
        CHECK(po.to_c().max_soft_tokens == 0 && po.to_c().pan_and_scan == -1);
        vtower::Image d = model.preprocess(png, po);
        CHECK(rel_l2(d.pixels(), a.pixels().to_vector()) == 0.0);
        po.max_soft_tokens = 280;
        CHECK(po.to_c().max_soft_tokens == 280);
        expect_error("max_soft_tokens on siglip", VT_ERR_INVALID_ARGUMENT, "max_soft_tokens",
                     [&] { model.preprocess(png, po); });
    }

    // Raw RGB rows, packed and with a padded stride, give the same tensor.
    std::vector<uint8_t> rgb(48 * 48 * 3), padded(48 * 160);
    for (size_t i = 0; i < rgb.size(); i++) rgb[i] = uint8_t(i * 7 % 251);
    for (size_t y = 0; y < 48; y++) std::memcpy(&padded[y * 160], &rgb[y * 144], 144);
    vtower::Image r1 = model.preprocess_rgb8(rgb.data(), 48, 48);
    vtower::Image r2 = model.preprocess_rgb8(padded.data(), 48, 48, 160);
    CHECK(same(r1.pixels(), r2.pixels()));
    CHECK(std::fabs(r1.pixels()[0] - (0 / 127.5f - 1)) < 1e-6);

    // Moves leave empty objects that throw instead of crashing.
    vtower::Image moved = std::move(a);
    CHECK(!a && bool(moved));
    expect_error("empty image", VT_ERR_INVALID_ARGUMENT, "empty", [&] { (void)a.n_tokens(); });
    expect_error("forward empty image", VT_ERR_INVALID_ARGUMENT, "empty",
                 [&] { (void)model.forward(a); });
    vtower::Embeddings moved_e = std::move(ea);
    expect_error("empty embeddings", VT_ERR_INVALID_ARGUMENT, "empty", [&] { (void)ea.size(); });
    CHECK(moved_e.size() == 1);
    try {
        (void)moved_e[1];
        CHECK(false);
    } catch (const std::out_of_range &) {
        CHECK(true);
    }
    try {
        (void)moved_e.row(0, 36);
        CHECK(false);
    } catch (const std::out_of_range &) {
        CHECK(true);
    }

    // Errors carry the status and vtower's message.
    expect_error("missing folder", VT_ERR_IO, "no_such_model",
                 [&] { vtower::Model m(dir + "/no_such_model"); });
    expect_error("garbage image", VT_ERR_IMAGE_DECODE, "",
                 [&] { (void)model.preprocess(read_file(images + "garbage.bin")); });
    expect_error("empty bytes", VT_ERR_IMAGE_DECODE, "",
                 [&] { (void)model.preprocess(std::string()); });
    expect_error("truncated jpeg", VT_ERR_IMAGE_DECODE, "",
                 [&] { (void)model.embed(read_file(images + "truncated.jpg")); });
    expect_error("huge header", VT_ERR_IMAGE_TOO_LARGE, "",
                 [&] { (void)model.preprocess(read_file(images + "huge_header.png")); });
    expect_error("stride too small", VT_ERR_INVALID_ARGUMENT, "stride",
                 [&] { (void)model.preprocess_rgb8(rgb.data(), 48, 48, 100); });
    {
        vtower::LoadOptions small;
        small.max_image_pixels = 100;
        vtower::Model limited(dir, small);
        expect_error("pixel limit", VT_ERR_IMAGE_TOO_LARGE, "",
                     [&] { (void)limited.preprocess(png); });
    }
    // SigLIP takes no video: a clean vtower::Error.
    {
        std::vector<uint8_t> frame(16 * 16 * 3, 100);
        expect_error("video on siglip", VT_ERR_INVALID_ARGUMENT, "no video",
                     [&] { (void)model.preprocess_video({frame.data(), frame.data()}, 16, 16); });
        CHECK(!model.token_id(vtower::Token::Video).has_value());
        CHECK(vtower::VideoOptions().to_c().struct_size == sizeof(vt_video_params));
    }
    vtower::Model other(std::move(model));
    expect_error("empty model", VT_ERR_INVALID_ARGUMENT, "empty", [&] { (void)model.family(); });
    try {
        vtower::Model m(dir + "/no_such_model");
        CHECK(false);
    } catch (const std::runtime_error &e) {
        CHECK(std::strlen(e.what()) > 0);
    }

    // Concurrent use of one model: every thread gets bit-identical results.
    vtower::Embeddings ref = other.embed(jpg);
    std::vector<int> ok(4, 0);
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; t++) {
        threads.emplace_back([&, t] {
            int good = 1;
            for (int k = 0; k < 3; k++) {
                vtower::Embeddings e = other.embed(jpg);
                good &= int(same(e[0], ref[0]));
            }
            ok[size_t(t)] = good;
        });
    }
    for (std::thread &th : threads) th.join();
    for (int v : ok) CHECK(v == 1);

    // Asynchronous jobs: the synchronous result bit for bit, cancellation, early destruction.
    {
        vtower::Image img = other.preprocess(jpg);
        std::vector<vtower::Job> jobs;
        for (int k = 0; k < 4; k++) jobs.push_back(other.forward_async(img));
        for (vtower::Job &j : jobs) {
            vtower::Embeddings e = j.wait();
            CHECK(same(e[0], ref[0]));
            CHECK(j.done());
            expect_error("second wait", VT_ERR_INVALID_ARGUMENT, "already taken", [&] { (void)j.wait(); });
        }
        std::vector<const vtower::Image *> many(3000, &img);
        bool cancelled = false;
        for (int tries = 0; tries < 5 && !cancelled; tries++) {
            vtower::Job j = other.forward_async(many);
            if (j.done(0)) continue;
            j.cancel();
            try {
                (void)j.wait();
            } catch (const vtower::Error &e) {
                CHECK(e.status() == VT_ERR_CANCELLED);
                cancelled = true;
            }
        }
        CHECK(cancelled);
        { vtower::Job dropped = other.forward_async(many); }  // cancelled, not waited for
        vtower::Job fin = other.forward_async(img);
        while (!fin.done(1000)) {
        }
        fin.cancel();
        CHECK(same(fin.wait()[0], ref[0]));
        vtower::Job moved(std::move(fin));
        expect_error("empty job", VT_ERR_INVALID_ARGUMENT, "empty", [&] { (void)fin.done(); });
    }

    // The embedding cache: a second forward of the same image is a hit, bit for bit.
    {
        vtower::LoadOptions o;
        o.embedding_cache_bytes = 1 << 20;
        CHECK(o.to_c().embedding_cache_bytes == 1 << 20);
        vtower::Model cached(dir, o);
        CHECK(cached.cache_stats().hits == 0 && other.cache_stats().bytes == 0);
        vtower::Embeddings e1 = cached.embed(jpg);
        vtower::Embeddings e2 = cached.embed(jpg);
        vt_cache_stats st = cached.cache_stats();
        CHECK(st.hits == 1 && st.misses == 1 && st.entries == 1 && st.bytes > 0);
        CHECK(same(e1[0], ref[0]) && same(e2[0], ref[0]));
    }
    // Per-call knobs: SigLIP has no min_pixels; its 36 tokens fit max_tokens 36, not 35.
    {
        vtower::PreprocessOptions po;
        po.min_pixels = 100;
        CHECK(po.to_c().min_pixels == 100 && po.to_c().struct_size == sizeof(vt_preprocess_params));
        expect_error("min_pixels on siglip", VT_ERR_INVALID_ARGUMENT, "min_pixels",
                     [&] { (void)other.preprocess(jpg, po); });
        po.min_pixels = 0;
        po.longest_edge = 32;
        CHECK(po.to_c().longest_edge == 32);
        expect_error("longest_edge on siglip", VT_ERR_INVALID_ARGUMENT, "longest_edge",
                     [&] { (void)other.preprocess(jpg, po); });
        po.longest_edge = 0;
        po.max_tokens = 36;
        CHECK(other.preprocess(jpg, po).n_tokens() == 36);
        po.max_tokens = 35;
        expect_error("max_tokens below", VT_ERR_INVALID_ARGUMENT, "max_tokens",
                     [&] { (void)other.preprocess(jpg, po); });
    }
    // max_forward_bytes: an image over the estimate alone is refused.
    {
        vtower::Image img = other.preprocess(jpg);
        vtower::LoadOptions o;
        o.max_forward_bytes = other.forward_bytes(img) - 1;
        CHECK(o.to_c().max_forward_bytes == o.max_forward_bytes && o.max_forward_bytes > 0);
        vtower::Model small(dir, o);
        vtower::Image mine = small.preprocess(jpg);
        expect_error("over max_forward_bytes", VT_ERR_IMAGE_TOO_LARGE, "max_forward_bytes",
                     [&] { (void)small.forward(mine); });
    }

    std::printf("%d passed, %d failed\n", passed, failures);
    return failures ? 1 : 0;
}
