// The C++ bindings' video calls (include/vtower.hpp) on the Qwen video fixtures:
// Model::preprocess_video with VideoOptions, Image's video accessors, Token::Video, a video and
// a still image in one forward call, errors as vtower::Error.
//
//   video <qwen2_5_dir> <frames_q25.bin> <qwen3_dir> <frames_q3.bin> <spg_q25> <ts0_q3> <ts1_q3>
//
// Both frames.bin start with a 5-frame 37x23 video at 7.5 fps (tests/fixtures/video).
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <string>
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
            failures++;                                                                 \
            std::fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
        }                                                                               \
    } while (0)

std::vector<uint8_t> read(const std::string &path) {
    std::ifstream f(path, std::ios::binary);
    return std::vector<uint8_t>(std::istreambuf_iterator<char>(f), {});
}

std::vector<const uint8_t *> frames(const std::vector<uint8_t> &bin) {
    std::vector<const uint8_t *> out;
    for (std::size_t i = 0; i < 5; i++) out.push_back(bin.data() + i * 37 * 23 * 3);
    return out;
}

}  // namespace

int main(int argc, char **argv) {
    if (argc != 8) {
        std::fprintf(stderr, "usage: video <q25> <bin> <q3> <bin> <spg> <ts0> <ts1>\n");
        return 2;
    }
    vtower::Model q25(argv[1]), q3(argv[3]);
    const std::vector<uint8_t> bin25 = read(argv[2]), bin3 = read(argv[4]);
    vtower::VideoOptions vo;
    vo.source_fps = 7.5;

    vtower::Image v = q25.preprocess_video(frames(bin25), 37, 23, 0, vo);
    CHECK(v.is_video());
    CHECK(v.token_grid().frames == 3);
    CHECK(std::fabs(v.video_second_per_grid() - std::atof(argv[5])) < 1e-12);
    CHECK(q25.token_id(vtower::Token::Video).has_value());
    int64_t next = 0;
    std::vector<int64_t> ids = v.mrope_positions(10, &next);
    CHECK(ids.size() == 3 * v.n_tokens() && ids[0] == 10);
    try {
        (void)v.frame_mrope_positions(0, 10);
        CHECK(false);
    } catch (const vtower::Error &e) {
        CHECK(e.status() == VT_ERR_INVALID_ARGUMENT);
    }

    vtower::Image still = q25.preprocess_rgb8(bin25.data(), 37, 23);
    CHECK(!still.is_video());
    vtower::Embeddings both = q25.forward({&v, &still});
    vtower::Embeddings alone = q25.forward(v);
    CHECK(both.size() == 2 && both.n_tokens(0) == alone.n_tokens(0));
    double num = 0, den = 0;
    for (std::size_t i = 0; i < alone[0].size(); i++) {
        double d = double(both[0][i]) - alone[0][i];
        num += d * d;
        den += double(alone[0][i]) * alone[0][i];
    }
    CHECK(std::sqrt(num / den) < 1e-5);

    vtower::Image v3 = q3.preprocess_video(frames(bin3), 37, 23, 0, vo);
    std::vector<double> ts = v3.video_timestamps();
    CHECK(ts.size() == 2);
    CHECK(std::fabs(ts[0] - std::atof(argv[6])) < 1e-12 && std::fabs(ts[1] - std::atof(argv[7])) < 1e-12);
    std::vector<int64_t> f1 = v3.frame_mrope_positions(1, 5, &next);
    CHECK(f1.size() == 3 * v3.n_tokens() / 2 && f1[0] == 5);
    vtower::Embeddings e3 = q3.forward(v3);
    CHECK(e3.n_levels() == q3.n_levels() && e3.n_tokens(0) == v3.n_tokens());

    vtower::VideoOptions bad;
    bad.do_sample_frames = 1;
    bad.sample_fps = 2.0;
    try {
        (void)q25.preprocess_video(frames(bin25), 37, 23, 0, bad);
        CHECK(false);
    } catch (const vtower::Error &e) {
        CHECK(e.status() == VT_ERR_INVALID_ARGUMENT);
    }

    std::printf("%d passed, %d failed\n", passed, failures);
    return failures ? 1 : 0;
}
