/* qwen3_prompt: what an engine needs to run a Qwen3-VL / Qwen3.5 prompt with images.
 *
 *   qwen3_prompt <model_dir> <image>...
 *
 * The prompt is: text "Describe", then per image <|vision_start|>, n x <|image_pad|>,
 * <|vision_end|>, then text "please." (text token ids are made up: 1000, 1001, ...). For it
 * this program prints:
 *   - the token ids (the placeholders and framing tokens from vt_model_token_id);
 *   - the M-RoPE positions (temporal, height, width) of every token: text counts up by one
 *     on all three axes; each image takes the ids of vt_image_mrope_positions, and the text
 *     after it continues at the `next` it returns (not start + n_tokens);
 *   - the embedding levels: level 0 replaces the embedding of the i-th <|image_pad|> of an
 *     image with row i; for Qwen3-VL, level k >= 1 (deepstack) is added to the decoder's
 *     hidden states at those same positions right after decoder layer
 *     vt_model_level_layer(model, k). Qwen3.5 (and every other family) has one level.
 *
 * All images run in one vt_forward call (sizes may differ). Output lines:
 *     levels 4: level 1 -> after decoder layer 0, ...
 *     tokens: 1000 151652 151655 ... 151653 1001
 *     t: ...   h: ...   w: ...
 *     image 0 (<file>): 12 tokens at prompt positions 2..13, level 0 row 0: 0.1234 ...
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "vtower.h"

static unsigned char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    unsigned char *buf = NULL;
    long n;
    if (!f) return NULL;
    if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0) {
        buf = malloc(n > 0 ? (size_t)n : 1);
        if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
            free(buf);
            buf = NULL;
        }
        *len = (size_t)n;
    }
    fclose(f);
    return buf;
}

static int fail(vt_error *err) {
    fprintf(stderr, "error: %s (%s)\n", vt_error_message(err), vt_status_str(vt_error_code(err)));
    vt_error_free(err);
    return 1;
}

int main(int argc, char **argv) {
    vt_model *model = NULL;
    vt_embeddings *emb = NULL;
    vt_error *err = NULL;
    vt_image **images;
    int64_t *tokens = NULL, *pos[3] = {NULL, NULL, NULL}, *image_at, next = 0, p = 0;
    size_t n_images, total, len = 0, i, k, level, n_levels;
    int rc = 1;

    if (argc < 3) {
        fprintf(stderr, "usage: %s <model_dir> <image>...\n", argv[0]);
        return 2;
    }
    if (vt_load(argv[1], NULL, &model, &err) != VT_OK) return fail(err);
    n_images = (size_t)(argc - 2);
    images = calloc(n_images, sizeof *images);
    image_at = calloc(n_images, sizeof *image_at);
    total = 2;
    for (i = 0; i < n_images; i++) {
        size_t blen = 0;
        unsigned char *bytes = read_file(argv[2 + i], &blen);
        vt_status st;
        if (!bytes) {
            fprintf(stderr, "cannot read %s\n", argv[2 + i]);
            goto out;
        }
        st = vt_preprocess(model, bytes, blen, &images[i], &err);
        free(bytes);
        if (st != VT_OK) {
            rc = fail(err);
            goto out;
        }
        total += 2 + vt_image_n_tokens(images[i]);
    }

    /* The levels and where each goes. */
    n_levels = vt_model_n_levels(model);
    printf("levels %zu:", n_levels);
    for (level = 1; level < n_levels; level++)
        printf(" level %zu -> after decoder layer %d", level, vt_model_level_layer(model, level));
    printf("\n");

    /* Token ids and M-RoPE positions of the prompt. */
    tokens = malloc(total * sizeof *tokens);
    for (k = 0; k < 3; k++) pos[k] = malloc(total * sizeof *pos[k]);
#define TEXT(id)                                        \
    do {                                                \
        tokens[len] = (id);                             \
        for (k = 0; k < 3; k++) pos[k][len] = p;        \
        len++;                                          \
        p++;                                            \
    } while (0)
    TEXT(1000);
    for (i = 0; i < n_images; i++) {
        size_t n = vt_image_n_tokens(images[i]), j;
        int64_t *ids = malloc(3 * n * sizeof *ids);
        TEXT(vt_model_token_id(model, VT_TOKEN_IMAGE_START));
        if (vt_image_mrope_positions(images[i], p, ids, 3 * n, &next, &err) != VT_OK) {
            free(ids);
            rc = fail(err);
            goto out;
        }
        image_at[i] = (int64_t)len;
        for (j = 0; j < n; j++) {
            tokens[len + j] = vt_model_token_id(model, VT_TOKEN_IMAGE);
            for (k = 0; k < 3; k++) pos[k][len + j] = ids[k * n + j];
        }
        free(ids);
        len += n;
        p = next;
        TEXT(vt_model_token_id(model, VT_TOKEN_IMAGE_END));
    }
    TEXT(1001);
    printf("tokens:");
    for (i = 0; i < len; i++) printf(" %lld", (long long)tokens[i]);
    printf("\n");
    for (k = 0; k < 3; k++) {
        printf("%c:", "thw"[k]);
        for (i = 0; i < len; i++) printf(" %lld", (long long)pos[k][i]);
        printf("\n");
    }

    /* All images in one call; every level of each image. */
    if (vt_forward(model, (const vt_image *const *)images, n_images, &emb, &err) != VT_OK) {
        rc = fail(err);
        goto out;
    }
    for (i = 0; i < n_images; i++) {
        size_t n = vt_embeddings_n_tokens(emb, i);
        printf("image %zu (%s): %zu tokens at prompt positions %lld..%lld", i, argv[2 + i], n,
               (long long)image_at[i], (long long)(image_at[i] + (int64_t)n - 1));
        for (level = 0; level < vt_embeddings_n_levels(emb); level++) {
            const float *rows = vt_embeddings_level_data(emb, i, level);
            if (!rows) goto out;
            printf(", level %zu row 0: %.4f", level, rows[0]);
        }
        printf("\n");
    }
    rc = 0;
out:
    vt_embeddings_free(emb);
    for (i = 0; i < n_images; i++) vt_image_free(images[i]);
    free(images);
    free(image_at);
    free(tokens);
    for (k = 0; k < 3; k++) free(pos[k]);
    vt_free(model);
    return rc;
}
