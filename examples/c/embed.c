/* embed: turn images into vision-tower embeddings with vtower.
 *
 *   embed <model_dir> <image>...
 *
 * Loads the model, preprocesses every image, runs them in one vt_forward call and prints,
 * per image, its token count x embedding width, the time per image and the first values. */
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
    printf("model: %s (%s), %zu-dim output, patch %u\n", vt_model_family(model),
           vt_model_type(model), vt_model_output_dim(model), vt_model_patch_size(model));

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
        printf("%s: %zu tokens x %zu, first values:", argv[i + 2], tokens, dim);
        for (k = 0; k < 4 && k < tokens * dim; k++) printf(" %.5f", row[k]);
        printf("\n");
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
