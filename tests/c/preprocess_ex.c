/* vt_preprocess_ex / vt_preprocess_rgb8_ex and vt_preprocess_params through the C API.
 *
 *   preprocess_ex <gemma3_model_dir> <llava_model_dir> <photo.jpg (300x200)>
 *
 * NULL params equal vt_preprocess; struct_size and values are checked; pan-and-scan crops a
 * Gemma3 image into extra frames (encoded and raw-pixel paths) and is refused by LLaVA. */
#include <stdint.h>
#include <string.h>

#include "check.h"
#include "vtower.h"

static void grid(const vt_image *img, uint32_t *f, uint32_t *r, uint32_t *c) {
    CHECK(vt_image_token_grid(img, f, r, c, NULL) == VT_OK);
}

int main(int argc, char **argv) {
    vt_model *gemma = NULL, *llava = NULL;
    vt_image *a = NULL, *b = NULL, *c = NULL;
    vt_error *err = NULL;
    vt_preprocess_params p = vt_preprocess_params_default();
    size_t len = 0, n_a = 0, n_b = 0, shape[VT_IMAGE_MAX_DIMS], ndim = 0;
    const float *px_a = NULL, *px_b = NULL;
    unsigned char *photo, *rgb;
    uint32_t f = 0, r = 0, cols = 0, x, y;

    if (argc != 4) {
        fprintf(stderr, "usage: preprocess_ex <gemma3_dir> <llava_dir> <photo.jpg>\n");
        return 2;
    }
    CHECK(p.struct_size == sizeof(vt_preprocess_params));
    CHECK(p.pan_and_scan == -1 && p.pan_and_scan_min_crop_size == 0);
    CHECK(vt_load(argv[1], NULL, &gemma, NULL) == VT_OK);
    CHECK(vt_load(argv[2], NULL, &llava, NULL) == VT_OK);
    if (!gemma || !llava) return finish("preprocess_ex");
    photo = read_file(argv[3], &len);

    /* NULL params = vt_preprocess. */
    CHECK(vt_preprocess_ex(gemma, photo, len, NULL, &a, NULL) == VT_OK);
    CHECK(vt_preprocess(gemma, photo, len, &b, NULL) == VT_OK);
    CHECK(vt_image_pixels(a, &px_a, &n_a, NULL) == VT_OK);
    CHECK(vt_image_pixels(b, &px_b, &n_b, NULL) == VT_OK);
    CHECK(n_a == n_b && n_a > 0 && memcmp(px_a, px_b, n_a * sizeof(float)) == 0);
    vt_image_free(a);
    vt_image_free(b);
    a = b = NULL;

    /* Pan-and-scan on the Gemma3 model: the image plus 2 crops of 150x200. */
    p.pan_and_scan = 1;
    p.pan_and_scan_min_crop_size = 20;
    CHECK(vt_preprocess_ex(gemma, photo, len, &p, &a, &err) == VT_OK);
    grid(a, &f, &r, &cols);
    CHECK(f == 3 && r * cols * f == vt_image_n_tokens(a));
    CHECK(vt_image_shape(a, shape, &ndim, NULL) == VT_OK);
    CHECK(ndim == 4 && shape[0] == 3 && shape[1] == 3);

    /* Raw pixels: a 120x30 image is cut into 4 crops of 30x30 (default max 4). */
    rgb = (unsigned char *)malloc(120 * 30 * 3);
    for (y = 0; y < 30; y++)
        for (x = 0; x < 120; x++) {
            rgb[(y * 120 + x) * 3 + 0] = (unsigned char)(2 * x);
            rgb[(y * 120 + x) * 3 + 1] = (unsigned char)(8 * y);
            rgb[(y * 120 + x) * 3 + 2] = 99;
        }
    CHECK(vt_preprocess_rgb8_ex(gemma, rgb, 120, 30, 360, &p, &b, NULL) == VT_OK);
    grid(b, &f, &r, &cols);
    CHECK(f == 5);
    p.pan_and_scan = 0;
    CHECK(vt_preprocess_rgb8_ex(gemma, rgb, 120, 30, 360, &p, &c, NULL) == VT_OK);
    grid(c, &f, &r, &cols);
    CHECK(f == 1);
    vt_image_free(c);
    c = NULL;

    /* Bad params. */
    p = vt_preprocess_params_default();
    p.struct_size = sizeof(vt_preprocess_params) + 8;
    CHECK(vt_preprocess_ex(gemma, photo, len, &p, &c, NULL) == VT_ERR_INVALID_ARGUMENT);
    p = vt_preprocess_params_default();
    p.pan_and_scan = 7;
    CHECK(vt_preprocess_ex(gemma, photo, len, &p, &c, NULL) == VT_ERR_INVALID_ARGUMENT);
    p = vt_preprocess_params_default();
    p.pan_and_scan_min_ratio_to_activate = -1.0;
    CHECK(vt_preprocess_ex(gemma, photo, len, &p, &c, NULL) == VT_ERR_INVALID_ARGUMENT);
    CHECK(c == NULL);

    /* LLaVA has no pan-and-scan: on is refused, off is accepted. */
    p = vt_preprocess_params_default();
    p.pan_and_scan = 1;
    err = NULL;
    CHECK(vt_preprocess_ex(llava, photo, len, &p, &c, &err) == VT_ERR_INVALID_ARGUMENT);
    CHECK(err != NULL && strstr(vt_error_message(err), "pan-and-scan") != NULL);
    vt_error_free(err);
    p.pan_and_scan = 0;
    CHECK(vt_preprocess_ex(llava, photo, len, &p, &c, NULL) == VT_OK);
    CHECK(vt_image_n_tokens(c) == (size_t)vt_model_tokens_per_image(llava));

    free(rgb);
    free(photo);
    vt_image_free(a);
    vt_image_free(b);
    vt_image_free(c);
    vt_model_free(gemma);
    vt_model_free(llava);
    return finish("preprocess_ex");
}
