/* Embedding levels through the C API: a Qwen3-VL model (deepstack) and a one-level model.
 *   levels <qwen3_vl model> <one-level model> <image> */
#include <stdint.h>
#include <string.h>

#include "check.h"
#include "vtower.h"

int main(int argc, char **argv) {
    vt_model *q = NULL, *s = NULL;
    vt_image *img = NULL, *img1 = NULL;
    vt_embeddings *e = NULL, *e1 = NULL;
    vt_error *err = NULL;
    size_t len = 0, n, dim, level, i;
    unsigned char *bytes;
    float *buf;
    uint16_t *half;
    if (argc != 4) return 2;
    bytes = read_file(argv[3], &len);
    CHECK(vt_load(argv[1], NULL, &q, NULL) == VT_OK);
    CHECK(vt_load(argv[2], NULL, &s, NULL) == VT_OK);
    CHECK(vt_preprocess(q, bytes, len, &img, NULL) == VT_OK);
    CHECK(vt_preprocess(s, bytes, len, &img1, NULL) == VT_OK);
    CHECK(vt_forward(q, (const vt_image *const *)&img, 1, &e, NULL) == VT_OK);
    CHECK(vt_forward(s, (const vt_image *const *)&img1, 1, &e1, NULL) == VT_OK);

    /* The fixture has deepstack_visual_indexes [0, 1]: 3 levels, going after layers 0, 1. */
    CHECK(vt_model_n_levels(q) == 3 && vt_embeddings_n_levels(e) == 3);
    CHECK(vt_model_level_layer(q, 0) == -1);
    CHECK(vt_model_level_layer(q, 1) == 0 && vt_model_level_layer(q, 2) == 1);
    CHECK(vt_model_level_layer(q, 3) == -1 && vt_model_level_layer(NULL, 1) == -1);
    CHECK(vt_model_n_levels(s) == 1 && vt_embeddings_n_levels(e1) == 1);
    CHECK(vt_model_n_levels(NULL) == 0 && vt_embeddings_n_levels(NULL) == 0);

    n = vt_embeddings_n_tokens(e, 0);
    dim = vt_embeddings_dim(e);
    buf = malloc(n * dim * sizeof *buf);
    half = malloc(n * dim * sizeof *half);
    CHECK(vt_embeddings_level_data(e, 0, 0) == vt_embeddings_data(e, 0));
    for (level = 0; level < 3; level++) {
        const float *rows = vt_embeddings_level_data(e, 0, level);
        CHECK(rows != NULL);
        CHECK(vt_embeddings_level_copy(e, 0, level, VT_DTYPE_F32, buf, n * dim * 4, NULL) == VT_OK);
        CHECK(rows && memcmp(rows, buf, n * dim * 4) == 0);
        CHECK(vt_embeddings_level_copy(e, 0, level, VT_DTYPE_BF16, half, n * dim * 2, NULL) ==
              VT_OK);
        /* the levels differ from each other */
        if (level > 0 && rows) CHECK(memcmp(rows, vt_embeddings_data(e, 0), n * dim * 4) != 0);
    }
    /* out of range: level, index, buffer; NULLs */
    CHECK(vt_embeddings_level_data(e, 0, 3) == NULL && vt_embeddings_level_data(e, 1, 0) == NULL);
    CHECK(vt_embeddings_level_data(NULL, 0, 0) == NULL);
    CHECK(vt_embeddings_level_data(e1, 0, 1) == NULL);
    CHECK(vt_embeddings_level_copy(e, 0, 3, VT_DTYPE_F32, buf, n * dim * 4, &err) ==
          VT_ERR_INVALID_ARGUMENT);
    CHECK(err && strstr(vt_error_message(err), "level 3") != NULL);
    vt_error_free(err);
    err = NULL;
    CHECK(vt_embeddings_level_copy(e, 0, 1, VT_DTYPE_F32, buf, n * dim * 4 - 1, NULL) ==
          VT_ERR_INVALID_ARGUMENT);
    CHECK(vt_embeddings_level_copy(e, 0, 1, VT_DTYPE_F32, NULL, n * dim * 4, NULL) ==
          VT_ERR_INVALID_ARGUMENT);
    CHECK(vt_embeddings_level_copy(NULL, 0, 1, VT_DTYPE_F32, buf, n * dim * 4, NULL) ==
          VT_ERR_INVALID_ARGUMENT);
    CHECK(vt_embeddings_level_copy(e, 0, 1, (vt_dtype)99, buf, n * dim * 4, NULL) ==
          VT_ERR_INVALID_ARGUMENT);
    CHECK(vt_embeddings_level_copy_to_cuda(e, 0, 3, VT_DTYPE_F32, 4096, n * dim * 4, NULL) ==
          VT_ERR_INVALID_ARGUMENT);
    /* a CPU model's rows cannot be copied to a GPU */
    CHECK(vt_embeddings_level_copy_to_cuda(e, 0, 1, VT_DTYPE_F32, 4096, n * dim * 4, NULL) ==
          VT_ERR_DEVICE);
    for (i = 0; i < 1; i++) CHECK(vt_embeddings_level_copy(e1, 0, 0, VT_DTYPE_F32, buf,
                                                           vt_embeddings_n_tokens(e1, 0) *
                                                               vt_embeddings_dim(e1) * 4,
                                                           NULL) == VT_OK);
    free(buf);
    free(half);
    free(bytes);
    vt_embeddings_free(e);
    vt_embeddings_free(e1);
    vt_image_free(img);
    vt_image_free(img1);
    vt_free(q);
    vt_free(s);
    if (vt_test_failures) return 1;
    printf("all checks passed\n");
    return 0;
}
