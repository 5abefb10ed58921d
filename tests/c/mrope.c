/* M-RoPE positions through the C API, as an engine computes them for a Qwen2-VL prompt:
 * text, image A, text, image B, text. Compared with transformers' get_rope_index.
 * usage: mrope <model_dir> <image_a> <image_b> <expected.txt> <image_id> <start_id> <end_id>
 * expected.txt: L, then L token types (0 text, 1 image), then 3 rows of L position ids. */
#include "vtower.h"
#include "check.h"

static vt_image *load_image(const vt_model *model, const char *path) {
    size_t len = 0;
    unsigned char *bytes = read_file(path, &len);
    vt_image *img = NULL;
    vt_error *err = NULL;
    if (vt_preprocess(model, bytes, len, &img, &err) != VT_OK) {
        fprintf(stderr, "%s: %s\n", path, vt_error_message(err));
        exit(1);
    }
    free(bytes);
    return img;
}

int main(int argc, char **argv) {
    vt_model *model = NULL;
    vt_image *images[2];
    vt_error *err = NULL;
    FILE *f;
    long L = 0, i, a;
    long *types, *expected, *ours;
    int64_t pos = 0, next = -1;
    int k = 0;
    uint32_t merge;

    if (argc != 8) {
        fprintf(stderr, "usage: mrope <model> <image_a> <image_b> <expected.txt> <img> <start> <end>\n");
        return 2;
    }
    if (vt_load(argv[1], NULL, &model, &err) != VT_OK) {
        fprintf(stderr, "load: %s\n", vt_error_message(err));
        return 1;
    }
    CHECK(vt_model_token_id(model, VT_TOKEN_IMAGE) == atol(argv[5]));
    CHECK(vt_model_token_id(model, VT_TOKEN_IMAGE_START) == atol(argv[6]));
    CHECK(vt_model_token_id(model, VT_TOKEN_IMAGE_END) == atol(argv[7]));
    CHECK(vt_model_token_id(model, VT_TOKEN_IMAGE_BREAK) == -1);
    merge = vt_model_merge_size(model);
    CHECK(merge == 2);
    CHECK(vt_model_merge_size(NULL) == 0);
    images[0] = load_image(model, argv[2]);
    images[1] = load_image(model, argv[3]);

    f = fopen(argv[4], "r");
    if (!f || fscanf(f, "%ld", &L) != 1 || L <= 0) {
        fprintf(stderr, "bad expected file\n");
        return 2;
    }
    types = malloc(sizeof *types * (size_t)L);
    expected = malloc(sizeof *expected * 3 * (size_t)L);
    ours = malloc(sizeof *ours * 3 * (size_t)L);
    for (i = 0; i < L; i++) CHECK(fscanf(f, "%ld", &types[i]) == 1);
    for (i = 0; i < 3 * L; i++) CHECK(fscanf(f, "%ld", &expected[i]) == 1);
    fclose(f);

    for (i = 0; i < L;) {
        if (types[i] == 0) {
            for (a = 0; a < 3; a++) ours[a * L + i] = pos;
            pos++;
            i++;
        } else {
            const vt_image *img = images[k++];
            size_t n = vt_image_n_tokens(img), j;
            uint32_t t = 0, r = 0, c = 0, pt = 0, pr = 0, pc = 0;
            int64_t *ids = malloc(sizeof *ids * 3 * n);
            CHECK(vt_image_token_grid(img, &t, &r, &c, NULL) == VT_OK);
            CHECK(vt_image_patch_grid(img, &pt, &pr, &pc, NULL) == VT_OK);
            CHECK((size_t)t * r * c == n && pt == t && pr == r * merge && pc == c * merge);
            /* Too small a buffer: an error and nothing written. */
            next = -7;
            CHECK(vt_image_mrope_positions(img, pos, ids, 3 * n - 1, &next, &err) ==
                  VT_ERR_INVALID_ARGUMENT);
            CHECK(vt_error_code(err) == VT_ERR_INVALID_ARGUMENT);
            vt_error_free(err);
            err = NULL;
            CHECK(next == -7);
            CHECK(vt_image_mrope_positions(NULL, pos, ids, 3 * n, &next, NULL) ==
                  VT_ERR_INVALID_ARGUMENT);
            CHECK(vt_image_mrope_positions(img, pos, NULL, 3 * n, &next, NULL) ==
                  VT_ERR_INVALID_ARGUMENT);
            CHECK(vt_image_mrope_positions(img, INT64_MAX - 1, ids, 3 * n, &next, NULL) ==
                  VT_ERR_INVALID_ARGUMENT);
            CHECK(vt_image_mrope_positions(img, pos, ids, 3 * n, NULL, NULL) == VT_OK);
            CHECK(vt_image_mrope_positions(img, pos, ids, 3 * n, &next, NULL) == VT_OK);
            for (a = 0; a < 3; a++)
                for (j = 0; j < n && i + (long)j < L; j++) ours[a * L + i + (long)j] = ids[a * n + j];
            free(ids);
            CHECK(next > pos);
            pos = next;
            i += (long)n;
        }
    }
    CHECK(k == 2);
    for (i = 0; i < 3 * L; i++) {
        if (ours[i] != expected[i]) {
            fprintf(stderr, "axis %ld token %ld: %ld, expected %ld\n", i / L, i % L, ours[i],
                    expected[i]);
            vt_test_failures++;
            break;
        }
    }
    if (!vt_test_failures) printf("mrope ok: %ld positions\n", L);
    free(types);
    free(expected);
    free(ours);
    vt_image_free(images[0]);
    vt_image_free(images[1]);
    vt_model_free(model);
    return finish("mrope");
}
