/* Hostile inputs of the reliability issue through the public C API, under an address-space
 * cap: each must end in a status (or a correct result) with bounded memory, never an abort.
 * usage: hostile <fixtures dir> <hostile inputs dir> <address-space cap in MiB>
 *
 * The cap (RLIMIT_AS) turns any unbounded allocation into a failed allocation: vtower must
 * report VT_ERR_IMAGE_TOO_LARGE (checked before allocating) or VT_ERR_OUT_OF_MEMORY, where an
 * infallible allocation would abort the process. The peak resident set is printed and
 * checked against the cap too. */
#include <stdint.h>
#include <sys/resource.h>

#include "check.h"
#include "vtower.h"

static const char *fixtures;
static const char *hostile;

static vt_model *load(const char *name) {
    vt_model *m = NULL;
    vt_error *err = NULL;
    vt_load_params p = vt_load_params_default();
    char *dir = join(fixtures, name);
    p.n_threads = 2;
    if (vt_load(dir, &p, &m, &err) != VT_OK) {
        fprintf(stderr, "cannot load %s: %s\n", dir, vt_error_message(err));
        exit(2);
    }
    free(dir);
    return m;
}

/* Preprocesses an image file with `params` (NULL = defaults); expects status `want`. On
 * success with `forward` set, runs the tower and checks the output is finite. */
static void expect_file(vt_model *m, const char *file, const vt_preprocess_params *params,
                        vt_status want, int forward) {
    size_t len;
    char *path = join(hostile, file);
    unsigned char *bytes = read_file(path, &len);
    vt_image *img = NULL;
    vt_error *err = NULL;
    vt_status st = vt_preprocess_ex(m, bytes, len, params, &img, &err);
    printf("%-44s status %d%s%s\n", file, (int)st, st ? ": " : "", st ? vt_error_message(err) : "");
    CHECK(st == want);
    if (st == VT_OK && forward) {
        vt_embeddings *emb = NULL;
        const vt_image *batch[1] = {img};
        CHECK(vt_forward(m, batch, 1, &emb, NULL) == VT_OK);
        if (emb) {
            size_t n = vt_embeddings_n_tokens(emb, 0) * vt_embeddings_dim(emb), i;
            const float *d = vt_embeddings_data(emb, 0);
            CHECK(d != NULL && n > 0);
            for (i = 0; d && i < n; i++) {
                if (!(d[i] == d[i]) || d[i] > 3e38f || d[i] < -3e38f) {
                    CHECK(!"embedding is finite");
                    break;
                }
            }
        }
        vt_embeddings_free(emb);
    }
    vt_image_free(img);
    vt_error_free(err);
    free(bytes);
    free(path);
}

int main(int argc, char **argv) {
    struct rlimit cap;
    struct rusage usage;
    vt_model *pad, *clip, *siglip, *gemma;
    vt_preprocess_params greedy;
    unsigned char *strip;
    vt_image *img = NULL;
    vt_error *err = NULL;
    vt_status st;
    long cap_mib;
    if (argc != 4) {
        fprintf(stderr, "usage: hostile <fixtures> <hostile inputs> <cap MiB>\n");
        return 2;
    }
    fixtures = argv[1];
    hostile = argv[2];
    cap_mib = strtol(argv[3], NULL, 10);
    cap.rlim_cur = cap.rlim_max = (rlim_t)cap_mib << 20;
    if (setrlimit(RLIMIT_AS, &cap) != 0) {
        perror("setrlimit");
        return 2;
    }
    pad = load("llava_clip_pad_hub");     /* LlavaImageProcessor with do_pad */
    clip = load("llava_clip_f32");        /* CLIPImageProcessor: shortest-edge resize */
    siglip = load("siglip_f32");          /* fixed-size stretch */
    gemma = load("gemma3_f32");           /* pan-and-scan per call */

    /* 1. The 201-byte 1,000,000 x 1 PNG asks pad-to-square for a 10^6 x 10^6 canvas. */
    expect_file(pad, "strip_1000000x1.png", NULL, VT_ERR_IMAGE_TOO_LARGE, 0);
    /* ... and the same through raw pixels. */
    strip = (unsigned char *)malloc(3000000);
    memset(strip, 200, 3000000);
    st = vt_preprocess_rgb8(pad, strip, 1000000, 1, 3000000, &img, &err);
    printf("%-44s status %d: %s\n", "rgb8 1000000x1 (do_pad)", (int)st, vt_error_message(err));
    CHECK(st == VT_ERR_IMAGE_TOO_LARGE);
    CHECK(err != NULL && strstr(vt_error_message(err), "pad-to-square") != NULL);
    vt_error_free(err);
    err = NULL;
    free(strip);
    /* 2. Extreme aspect ratios under the decode limit. */
    expect_file(pad, "strip_20000x1.png", NULL, VT_ERR_IMAGE_TOO_LARGE, 0);
    expect_file(pad, "gif_32859x24_pad_3GB.gif", NULL, VT_ERR_IMAGE_TOO_LARGE, 0);
    expect_file(pad, "gif_65328x255_pad_12GB.gif", NULL, VT_ERR_IMAGE_TOO_LARGE, 0);
    expect_file(clip, "strip_1000000x1.png", NULL, VT_ERR_IMAGE_TOO_LARGE, 0);
    /* An 80,000,000 x 1 strip stretched to the SigLIP input works, in bounded memory. */
    expect_file(siglip, "png_80000000x1_resize_1500MB.png", NULL, VT_OK, 1);
    expect_file(siglip, "strip_1000000x1.png", NULL, VT_OK, 1);
    /* 3. Per-call pan-and-scan: over the config caps is an invalid argument; within them,
     * 20,001 frames is over the token cap. */
    greedy = vt_preprocess_params_default();
    greedy.pan_and_scan = 1;
    greedy.pan_and_scan_min_crop_size = 1;
    greedy.pan_and_scan_max_num_crops = UINT32_MAX;
    greedy.pan_and_scan_min_ratio_to_activate = 1e-9;
    expect_file(gemma, "strip_20000x1.png", &greedy, VT_ERR_INVALID_ARGUMENT, 0);
    expect_file(gemma, "strip_1000000x1.png", &greedy, VT_ERR_INVALID_ARGUMENT, 0);
    greedy.pan_and_scan_max_num_crops = 65536;
    expect_file(gemma, "strip_20000x1.png", &greedy, VT_ERR_IMAGE_TOO_LARGE, 0);
    expect_file(gemma, "strip_1000000x1.png", &greedy, VT_ERR_IMAGE_TOO_LARGE, 0);
    greedy.pan_and_scan_max_num_crops = 4;
    expect_file(gemma, "strip_20000x1.png", &greedy, VT_OK, 1);

    vt_free(pad);
    vt_free(clip);
    vt_free(siglip);
    vt_free(gemma);
    getrusage(RUSAGE_SELF, &usage);
    printf("peak RSS %ld MiB (cap %ld MiB)\n", usage.ru_maxrss / 1024, cap_mib);
    CHECK(usage.ru_maxrss / 1024 < cap_mib);
    return finish("hostile");
}
