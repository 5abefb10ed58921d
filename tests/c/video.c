/* Video input through the C API: vt_preprocess_video with vt_video_params, the video
 * accessors (timestamps, seconds per temporal group, per-frame M-RoPE ids), VT_TOKEN_VIDEO,
 * a video and a still image in one vt_forward equal to one-by-one calls, and clean errors.
 * usage: video <qwen2_5_dir> <frames_q25.bin> <qwen3_dir> <frames_q3.bin> <video_token_q25>
 *              <spg_q25> <ts0_q3> <ts1_q3>
 * Both frames.bin start with a 5-frame 37x23 video at 7.5 fps (tests/fixtures/video). */
#include <math.h>

#include "vtower.h"
#include "check.h"

#define W 37
#define H 23
#define N 5

static vt_model *load(const char *dir) {
    vt_model *m = NULL;
    vt_error *err = NULL;
    vt_load_params p = vt_load_params_default();
    p.device = VT_DEVICE_CPU;
    p.dtype = VT_DTYPE_F32;
    if (vt_load(dir, &p, &m, &err) != VT_OK) {
        fprintf(stderr, "load %s: %s\n", dir, vt_error_message(err));
        exit(1);
    }
    return m;
}

static vt_image *video(const vt_model *m, const unsigned char *bin, double fps) {
    const uint8_t *frames[N];
    vt_video_params p = vt_video_params_default();
    vt_image *img = NULL;
    vt_error *err = NULL;
    int i;
    for (i = 0; i < N; i++) frames[i] = bin + (size_t)i * W * H * 3;
    p.source_fps = fps;
    if (vt_preprocess_video(m, frames, N, W, H, W * 3, &p, &img, &err) != VT_OK) {
        fprintf(stderr, "video: %s\n", vt_error_message(err));
        exit(1);
    }
    return img;
}

static double rel_l2(const float *a, const float *b, size_t n) {
    double num = 0, den = 0;
    size_t i;
    for (i = 0; i < n; i++) {
        num += (double)(a[i] - b[i]) * (a[i] - b[i]);
        den += (double)b[i] * b[i];
    }
    return sqrt(num / (den > 0 ? den : 1));
}

int main(int argc, char **argv) {
    size_t len = 0, count = 0, n;
    unsigned char *bin25, *bin3;
    vt_model *q25, *q3;
    vt_image *v25, *v3, *still = NULL;
    vt_error *err = NULL;
    uint32_t t, r, c;
    double spg = 0, ts[4];
    int64_t ids[3 * 64], next = 0;
    const uint8_t *frames[N];
    vt_video_params p;
    int i;

    if (argc != 9) {
        fprintf(stderr, "usage: video <q25> <bin> <q3> <bin> <video_token> <spg> <ts0> <ts1>\n");
        return 2;
    }
    q25 = load(argv[1]);
    bin25 = read_file(argv[2], &len);
    q3 = load(argv[3]);
    bin3 = read_file(argv[4], &len);

    CHECK(vt_model_token_id(q25, VT_TOKEN_VIDEO) == atol(argv[5]));
    v25 = video(q25, bin25, 7.5);
    CHECK(vt_image_is_video(v25) == 1);
    CHECK(vt_image_is_video(NULL) == 0);
    CHECK(vt_image_token_grid(v25, &t, &r, &c, NULL) == VT_OK);
    CHECK(t == 3 && (size_t)t * r * c == vt_image_n_tokens(v25));
    CHECK(vt_image_video_second_per_grid(v25, &spg, NULL) == VT_OK);
    CHECK(fabs(spg - atof(argv[6])) < 1e-12);
    /* Qwen2.5-VL lays the frames out together: the per-frame call refuses. */
    CHECK(vt_image_frame_mrope_positions(v25, 0, 10, ids, 3 * 64, &next, NULL) ==
          VT_ERR_INVALID_ARGUMENT);
    n = vt_image_n_tokens(v25);
    CHECK(vt_image_mrope_positions(v25, 10, ids, 3 * 64, &next, NULL) == VT_OK);
    CHECK(ids[0] == 10 && next == 10 + (r > c ? r : c));

    /* A still image (frame 0) and the video in one call equal one-by-one calls. */
    CHECK(vt_preprocess_rgb8(q25, bin25, W, H, W * 3, &still, NULL) == VT_OK);
    CHECK(vt_image_is_video(still) == 0);
    CHECK(vt_image_video_second_per_grid(still, &spg, NULL) == VT_ERR_INVALID_ARGUMENT);
    {
        const vt_image *both[2] = {v25, still};
        vt_embeddings *e2 = NULL, *e1 = NULL;
        CHECK(vt_forward(q25, both, 2, &e2, NULL) == VT_OK);
        for (i = 0; i < 2; i++) {
            CHECK(vt_forward(q25, &both[i], 1, &e1, NULL) == VT_OK);
            n = vt_embeddings_n_tokens(e1, 0) * vt_embeddings_dim(e1);
            CHECK(vt_embeddings_n_tokens(e2, (size_t)i) == vt_embeddings_n_tokens(e1, 0));
            CHECK(rel_l2(vt_embeddings_data(e2, (size_t)i), vt_embeddings_data(e1, 0), n) < 1e-5);
            vt_embeddings_free(e1);
        }
        vt_embeddings_free(e2);
    }

    /* Qwen3-VL: timestamps and per-frame positions. */
    v3 = video(q3, bin3, 7.5);
    CHECK(vt_image_video_timestamps(v3, NULL, 0, &count, NULL) == VT_OK);
    CHECK(count == 2);
    CHECK(vt_image_video_timestamps(v3, ts, 1, &count, &err) == VT_ERR_INVALID_ARGUMENT);
    vt_error_free(err);
    err = NULL;
    CHECK(vt_image_video_timestamps(v3, ts, 4, &count, NULL) == VT_OK);
    CHECK(fabs(ts[0] - atof(argv[7])) < 1e-12 && fabs(ts[1] - atof(argv[8])) < 1e-12);
    CHECK(vt_image_token_grid(v3, &t, &r, &c, NULL) == VT_OK);
    CHECK(vt_image_mrope_positions(v3, 5, ids, 3 * 64, &next, NULL) == VT_ERR_INVALID_ARGUMENT);
    CHECK(vt_image_frame_mrope_positions(v3, 1, 5, ids, 3 * 64, &next, NULL) == VT_OK);
    CHECK(ids[0] == 5 && next == 5 + (r > c ? r : c));
    CHECK(vt_image_frame_mrope_positions(v3, t, 5, ids, 3 * 64, &next, NULL) ==
          VT_ERR_INVALID_ARGUMENT);

    /* Errors. */
    for (i = 0; i < N; i++) frames[i] = bin25 + (size_t)i * W * H * 3;
    {
        vt_image *img = NULL;
        CHECK(vt_preprocess_video(q25, NULL, N, W, H, W * 3, NULL, &img, NULL) ==
              VT_ERR_INVALID_ARGUMENT);
        CHECK(vt_preprocess_video(q25, frames, 0, W, H, W * 3, NULL, &img, NULL) ==
              VT_ERR_INVALID_ARGUMENT);
        CHECK(vt_preprocess_video(q25, frames, N, W, H, W * 3 - 1, NULL, &img, NULL) ==
              VT_ERR_INVALID_ARGUMENT);
        frames[2] = NULL;
        CHECK(vt_preprocess_video(q25, frames, N, W, H, W * 3, NULL, &img, NULL) ==
              VT_ERR_INVALID_ARGUMENT);
        frames[2] = bin25;
        p = vt_video_params_default();
        p.do_sample_frames = 5;
        CHECK(vt_preprocess_video(q25, frames, N, W, H, W * 3, &p, &img, NULL) ==
              VT_ERR_INVALID_ARGUMENT);
        p = vt_video_params_default();
        p.source_fps = -1;
        CHECK(vt_preprocess_video(q25, frames, N, W, H, W * 3, &p, &img, NULL) ==
              VT_ERR_INVALID_ARGUMENT);
        p = vt_video_params_default();
        p.struct_size = 2;
        CHECK(vt_preprocess_video(q25, frames, N, W, H, W * 3, &p, &img, NULL) ==
              VT_ERR_INVALID_ARGUMENT);
        /* fps sampling without the source rate (Qwen2-VL needs it). */
        p = vt_video_params_default();
        p.do_sample_frames = 1;
        p.sample_fps = 2.0;
        CHECK(vt_preprocess_video(q25, frames, N, W, H, W * 3, &p, &img, &err) ==
              VT_ERR_INVALID_ARGUMENT);
        CHECK(err != NULL && strstr(vt_error_message(err), "frame rate") != NULL);
        vt_error_free(err);
        CHECK(img == NULL);
        /* An older struct_size (only do_sample_frames) is read with defaults after it. */
        p = vt_video_params_default();
        p.struct_size = 8;
        p.source_fps = -5; /* not covered: ignored */
        CHECK(vt_preprocess_video(q25, frames, N, W, H, W * 3, &p, &img, NULL) == VT_OK);
        vt_image_free(img);
    }

    vt_image_free(v25);
    vt_image_free(v3);
    vt_image_free(still);
    vt_image_free(NULL);
    vt_model_free(q25);
    vt_model_free(q3);
    free(bin25);
    free(bin3);
    if (vt_test_failures) {
        fprintf(stderr, "%d checks failed\n", vt_test_failures);
        return 1;
    }
    printf("all checks passed\n");
    return 0;
}
