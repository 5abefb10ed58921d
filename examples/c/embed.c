/* embed: turn images into vision-tower embeddings with vtower.
 *
 *   embed <model_dir> <image>...
 *
 * Loads the model, preprocesses every image, runs them in one vt_forward call and prints,
 * per image, its token count x embedding width, its token grid, the time per image and the
 * first values; for models whose language model frames images with special tokens, their
 * ids, and for Qwen2-VL-style models (merge size > 1) each image's M-RoPE position range
 * when the images follow each other in a prompt. */
#define _POSIX_C_SOURCE 199309L /* clock_gettime under -std=c99 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "vtower.h"

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

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

static int fail(const char *what, vt_error *err) {
    fprintf(stderr, "embed: %s: %s\n", what, vt_error_message(err));
    vt_error_free(err);
    return 1;
}

int main(int argc, char **argv) {
    vt_model *model = NULL;
    vt_embeddings *emb = NULL;
    vt_error *err = NULL;
    vt_image **images;
    int i, n = argc - 2, rc = 0;
    double t0, t_pre, t_fwd;

    if (argc < 3) {
        fprintf(stderr, "usage: embed <model_dir> <image>...\n");
        return 2;
    }
    printf("%s\n", vt_version());
    if (vt_load(argv[1], NULL, &model, &err) != VT_OK) return fail("load", err);
    printf("model: %s (%s), %zu-dim output, patch %u, merge %u\n", vt_model_family(model),
           vt_model_type(model), vt_model_output_dim(model), vt_model_patch_size(model),
           vt_model_merge_size(model));
    if (vt_model_token_id(model, VT_TOKEN_IMAGE) >= 0)
        printf("image tokens: placeholder %lld, start %lld, end %lld\n",
               (long long)vt_model_token_id(model, VT_TOKEN_IMAGE),
               (long long)vt_model_token_id(model, VT_TOKEN_IMAGE_START),
               (long long)vt_model_token_id(model, VT_TOKEN_IMAGE_END));

    images = calloc((size_t)n, sizeof *images);
    t0 = now_ms();
    for (i = 0; i < n; i++) {
        size_t len = 0;
        unsigned char *bytes = read_file(argv[i + 2], &len);
        if (!bytes) {
            fprintf(stderr, "embed: cannot read %s\n", argv[i + 2]);
            rc = 1;
            goto done;
        }
        if (vt_preprocess(model, bytes, len, &images[i], &err) != VT_OK) {
            free(bytes);
            rc = fail(argv[i + 2], err);
            goto done;
        }
        free(bytes);
    }
    t_pre = now_ms() - t0;

    t0 = now_ms();
    if (vt_forward(model, (const vt_image *const *)images, (size_t)n, &emb, &err) != VT_OK) {
        rc = fail("forward", err);
        goto done;
    }
    t_fwd = now_ms() - t0;

    for (i = 0; i < n; i++) {
        const float *row = vt_embeddings_data(emb, (size_t)i);
        size_t tokens = vt_embeddings_n_tokens(emb, (size_t)i), dim = vt_embeddings_dim(emb);
        size_t k;
        uint32_t t = 0, r = 0, c = 0;
        vt_image_token_grid(images[i], &t, &r, &c, NULL);
        printf("%s: %zu tokens x %zu (grid %ux%ux%u), first values:", argv[i + 2], tokens, dim,
               t, r, c);
        for (k = 0; k < 4 && k < tokens * dim; k++) printf(" %.5f", row[k]);
        printf("\n");
    }
    if (vt_model_merge_size(model) > 1) {
        /* M-RoPE: a prompt "<|vision_start|> image <|vision_end|>" per image, from position 0. */
        int64_t pos = 0;
        for (i = 0; i < n; i++) {
            size_t tokens = vt_image_n_tokens(images[i]);
            int64_t *ids = malloc(3 * tokens * sizeof *ids), next = 0;
            pos += 1; /* <|vision_start|> */
            if (!ids || vt_image_mrope_positions(images[i], pos, ids, 3 * tokens, &next, &err) != VT_OK) {
                free(ids);
                rc = fail("mrope", err);
                goto done;
            }
            printf("%s: M-RoPE ids from %lld, last token (t,h,w) = (%lld,%lld,%lld), text resumes at %lld\n",
                   argv[i + 2], (long long)pos, (long long)ids[tokens - 1],
                   (long long)ids[2 * tokens - 1], (long long)ids[3 * tokens - 1], (long long)next);
            free(ids);
            pos = next + 1; /* <|vision_end|> */
        }
    }
    printf("time per image: preprocess %.2f ms, forward %.2f ms (%d image%s in one batch)\n",
           t_pre / n, t_fwd / n, n, n == 1 ? "" : "s");

done:
    vt_embeddings_free(emb);
    for (i = 0; i < n; i++) vt_image_free(images[i]);
    free(images);
    vt_free(model);
    return rc;
}
