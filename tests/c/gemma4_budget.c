/* Gemma 4's per-call soft-token budget (vt_preprocess_params.max_soft_tokens) and prompt
 * tokens through the C API.
 *
 *   gemma4_budget <gemma4_model_dir> <llava_model_dir> <image (64x64)>
 *
 * The default (0) is preprocessor_config.json's max_soft_tokens (70 in the fixture); 140 gives
 * a larger image; values outside {70, 140, 280, 560, 1120} and a budget on another family are
 * refused; a struct_size that ends before the field reads the default. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "check.h"
#include "vtower.h"

int main(int argc, char **argv) {
    vt_model *g = NULL, *llava = NULL;
    vt_image *a = NULL, *b = NULL, *c = NULL;
    vt_error *err = NULL;
    vt_preprocess_params p = vt_preprocess_params_default();
    size_t len = 0, shape[VT_IMAGE_MAX_DIMS], ndim = 0;
    unsigned char *data;
    uint32_t f = 0, r = 0, cols = 0;

    if (argc != 4) {
        fprintf(stderr, "usage: gemma4_budget <gemma4_dir> <llava_dir> <image>\n");
        return 2;
    }
    CHECK(p.max_soft_tokens == 0);
    CHECK(vt_load(argv[1], NULL, &g, NULL) == VT_OK);
    CHECK(vt_load(argv[2], NULL, &llava, NULL) == VT_OK);
    if (!g || !llava) return finish("gemma4_budget");
    data = read_file(argv[3], &len);
    CHECK(strcmp(vt_model_family(g), "gemma4") == 0);
    CHECK(vt_model_merge_size(g) == 2);
    CHECK(vt_model_token_id(g, VT_TOKEN_IMAGE) == 60);
    CHECK(vt_model_token_id(g, VT_TOKEN_IMAGE_START) == 58);
    CHECK(vt_model_token_id(g, VT_TOKEN_IMAGE_END) == 59);
    CHECK(vt_model_token_id(g, VT_TOKEN_IMAGE_BREAK) == -1);

    /* Default budget (70 soft tokens, 280 patch rows): a 64x64 image is 16x16 patches, 8x8 tokens. */
    CHECK(vt_preprocess_ex(g, data, len, &p, &a, NULL) == VT_OK);
    CHECK(vt_image_token_grid(a, &f, &r, &cols, NULL) == VT_OK);
    CHECK(f == 1 && r == 8 && cols == 8 && vt_image_n_tokens(a) == 64);
    CHECK(vt_image_shape(a, shape, &ndim, NULL) == VT_OK);
    CHECK(ndim == 2 && shape[0] == 280 && shape[1] == 48);

    /* 140 soft tokens: 560 patch rows, the image grows to 88x88 pixels (11x11 tokens). */
    p.max_soft_tokens = 140;
    CHECK(vt_preprocess_ex(g, data, len, &p, &b, NULL) == VT_OK);
    CHECK(vt_image_shape(b, shape, &ndim, NULL) == VT_OK);
    CHECK(ndim == 2 && shape[0] == 560);
    CHECK(vt_image_token_grid(b, &f, &r, &cols, NULL) == VT_OK);
    CHECK(r == 11 && cols == 11 && vt_image_n_tokens(b) == 121);
    CHECK(vt_image_patch_grid(b, &f, &r, &cols, NULL) == VT_OK);
    CHECK(r == 22 && cols == 22);

    /* An older caller whose struct ends before max_soft_tokens gets the default. */
    p.struct_size = (uint32_t)offsetof(vt_preprocess_params, max_soft_tokens);
    CHECK(vt_preprocess_ex(g, data, len, &p, &c, NULL) == VT_OK);
    CHECK(vt_image_n_tokens(c) == 64);
    vt_image_free(c);
    c = NULL;

    /* Budgets outside the set, and a budget on a family without one. */
    p = vt_preprocess_params_default();
    p.max_soft_tokens = 100;
    CHECK(vt_preprocess_ex(g, data, len, &p, &c, &err) == VT_ERR_INVALID_ARGUMENT);
    CHECK(err != NULL && strstr(vt_error_message(err), "70, 140, 280, 560, 1120") != NULL);
    vt_error_free(err);
    err = NULL;
    CHECK(c == NULL);
    p.max_soft_tokens = 280;
    CHECK(vt_preprocess_ex(llava, data, len, &p, &c, &err) == VT_ERR_INVALID_ARGUMENT);
    CHECK(err != NULL && strstr(vt_error_message(err), "max_soft_tokens") != NULL);
    vt_error_free(err);

    free(data);
    vt_image_free(a);
    vt_image_free(b);
    vt_model_free(g);
    vt_model_free(llava);
    return finish("gemma4_budget");
}
