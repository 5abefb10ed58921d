/* Smoke test of the C API: load, introspect, preprocess a file and raw pixels, forward one
 * image and a batch, compare with the reference embeddings.
 * usage: smoke <model_dir> <image_file> <expected.f32> <tolerance> */
#include "vtower.h"
#include "check.h"

#include <math.h>

/* The version macros work in the preprocessor. */
#if !defined(VT_VERSION_NUMBER) || VT_VERSION_NUMBER != VT_VERSION_MAJOR * 10000 + VT_VERSION_MINOR * 100 + VT_VERSION_PATCH
#error "VT_VERSION_NUMBER is not MAJOR * 10000 + MINOR * 100 + PATCH"
#endif

static double rel_l2(const float *a, const float *b, size_t n) {
    double num = 0, den = 0;
    size_t i;
    for (i = 0; i < n; i++) {
        double d = (double)a[i] - (double)b[i];
        num += d * d;
        den += (double)b[i] * (double)b[i];
    }
    return sqrt(num / (den > 0 ? den : 1));
}

int main(int argc, char **argv) {
    vt_model *model = NULL;
    vt_image *img = NULL, *img2 = NULL;
    vt_embeddings *emb = NULL, *batch = NULL;
    vt_error *err = NULL;
    vt_load_params params = vt_load_params_default();
    size_t len = 0, exp_len = 0, n_tokens, dim, npx = 0, ndim = 0, shape[VT_IMAGE_MAX_DIMS];
    unsigned char *bytes;
    float *expected;
    const float *px = NULL;
    uint32_t w = 0, h = 0;
    double tol;

    if (argc != 5) {
        fprintf(stderr, "usage: smoke <model_dir> <image> <expected.f32> <tolerance>\n");
        return 2;
    }
    tol = atof(argv[4]);
    printf("%s\n", vt_version());
    CHECK(strncmp(vt_version(), "vtower ", 7) == 0);
    CHECK(vt_version_number() == VT_VERSION_NUMBER);
    {
        char expected_version[64];
        snprintf(expected_version, sizeof expected_version, "vtower %u.%u.%u ",
                 vt_version_number() / 10000, vt_version_number() / 100 % 100,
                 vt_version_number() % 100);
        CHECK(strncmp(vt_version(), expected_version, strlen(expected_version)) == 0);
    }

    params.n_threads = 2;
    if (vt_load(argv[1], &params, &model, &err) != VT_OK) {
        fprintf(stderr, "load failed: %s\n", vt_error_message(err));
        vt_error_free(err);
        return 1;
    }
    CHECK(strcmp(vt_model_family(model), "siglip") == 0);
    CHECK(vt_model_type(model) != NULL);
    CHECK(vt_model_output_dim(model) > 0);
    CHECK(vt_model_vision_dim(model) == vt_model_output_dim(model));
    CHECK(vt_model_patch_size(model) > 0);
    CHECK(vt_model_n_threads(model) == 2);
    CHECK(vt_model_image_size(model, &w, &h, NULL) == VT_OK);
    CHECK(w > 0 && w == h);
    CHECK(vt_model_tokens_per_image(model) ==
          (size_t)(w / vt_model_patch_size(model)) * (w / vt_model_patch_size(model)));

    bytes = read_file(argv[2], &len);
    CHECK(vt_preprocess(model, bytes, len, &img, &err) == VT_OK);
    CHECK(img != NULL);
    n_tokens = vt_image_n_tokens(img);
    CHECK(n_tokens == vt_model_tokens_per_image(model));
    CHECK(vt_image_pixels(img, &px, &npx, NULL) == VT_OK);
    CHECK(npx == 3u * w * h);
    {
        uint32_t frames = 0, rows = 0, cols = 0;
        CHECK(vt_image_token_grid(img, &frames, &rows, &cols, NULL) == VT_OK);
        CHECK(frames == 1 && rows == w / vt_model_patch_size(model) && cols == rows);
        CHECK((size_t)frames * rows * cols == n_tokens);
    }
    /* A plain SigLIP model has no language model, hence no special tokens. */
    CHECK(vt_model_token_id(model, VT_TOKEN_IMAGE) == -1);
    CHECK(vt_model_token_id(model, VT_TOKEN_IMAGE_BREAK) == -1);
    CHECK(vt_image_shape(img, shape, &ndim, NULL) == VT_OK);
    CHECK(ndim == 3 && shape[0] == 3 && shape[1] == h && shape[2] == w);

    {
        const vt_image *one[1];
        one[0] = img;
        CHECK(vt_forward(model, one, 1, &emb, &err) == VT_OK);
    }
    CHECK(vt_embeddings_count(emb) == 1);
    CHECK(vt_embeddings_n_tokens(emb, 0) == n_tokens);
    dim = vt_embeddings_dim(emb);
    CHECK(dim == vt_model_output_dim(model));
    CHECK(vt_embeddings_data(emb, 0) != NULL);
    CHECK(vt_embeddings_data(emb, 1) == NULL);
    CHECK(vt_embeddings_n_tokens(emb, 1) == 0);

    expected = (float *)read_file(argv[3], &exp_len);
    CHECK(exp_len == n_tokens * dim * sizeof(float));
    if (exp_len == n_tokens * dim * sizeof(float)) {
        double r = rel_l2(vt_embeddings_data(emb, 0), expected, n_tokens * dim);
        printf("relative L2 vs reference: %.3g (tolerance %.3g)\n", r, tol);
        CHECK(r <= tol);
    }

    /* Copies out as f32 (identical) and bf16 (rounded). */
    {
        size_t n = n_tokens * dim, i;
        float *f = (float *)malloc(n * sizeof(float));
        uint16_t *b = (uint16_t *)malloc(n * sizeof(uint16_t));
        const float *rows = vt_embeddings_data(emb, 0);
        CHECK(vt_embeddings_copy(emb, 0, VT_DTYPE_F32, f, n * sizeof(float), NULL) == VT_OK);
        CHECK(memcmp(f, rows, n * sizeof(float)) == 0);
        CHECK(vt_embeddings_copy(emb, 0, VT_DTYPE_BF16, b, n * sizeof(uint16_t), NULL) == VT_OK);
        for (i = 0; i < n; i++) {
            uint32_t bits = (uint32_t)b[i] << 16;
            float v;
            memcpy(&v, &bits, sizeof v);
            CHECK(fabs(v - rows[i]) <= fabs(rows[i]) / 128.0 + 1e-30);
        }
        free(f);
        free(b);
    }

    /* Raw pixels: a gradient with a padded stride. */
    {
        uint32_t rw = 31, rh = 17, x, y;
        size_t stride = rw * 3 + 5;
        unsigned char *raw = (unsigned char *)calloc(stride * rh, 1);
        for (y = 0; y < rh; y++)
            for (x = 0; x < rw; x++) {
                raw[y * stride + x * 3 + 0] = (unsigned char)(x * 8);
                raw[y * stride + x * 3 + 1] = (unsigned char)(y * 15);
                raw[y * stride + x * 3 + 2] = (unsigned char)(x * y);
            }
        CHECK(vt_preprocess_rgb8(model, raw, rw, rh, stride, &img2, &err) == VT_OK);
        free(raw);
    }

    /* A batch of the two images equals the single runs. */
    {
        const vt_image *two[2];
        size_t i, n = n_tokens * dim;
        double r;
        two[0] = img2;
        two[1] = img;
        CHECK(vt_forward(model, two, 2, &batch, &err) == VT_OK);
        CHECK(vt_embeddings_count(batch) == 2);
        r = rel_l2(vt_embeddings_data(batch, 1), vt_embeddings_data(emb, 0), n);
        printf("batch vs single relative L2: %.3g\n", r);
        CHECK(r <= 1e-6);
        for (i = 0; i < n; i++) CHECK(isfinite(vt_embeddings_data(batch, 0)[i]));
    }

    if (err) {
        fprintf(stderr, "unexpected error: %s\n", vt_error_message(err));
        vt_error_free(err);
        vt_test_failures++;
    }
    vt_embeddings_free(batch);
    vt_embeddings_free(emb);
    vt_image_free(img2);
    vt_image_free(img);
    vt_model_free(model);
    free(bytes);
    free(expected);
    return finish("smoke");
}
