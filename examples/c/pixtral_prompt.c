/* pixtral_prompt: lay out the prompt tokens of images for a Pixtral / Mistral3 model.
 *
 *   pixtral_prompt <model_dir> <image>...
 *
 * Pixtral-style language models (pixtral-12b, Mistral-Small-3.1) expect each image as a
 * grid of placeholder tokens: one row of `cols` [IMG] tokens per row of embeddings, each row
 * followed by [IMG_BREAK], and the last [IMG_BREAK] replaced by [IMG_END]:
 *
 *     [IMG] [IMG] [IMG] [IMG_BREAK]
 *     [IMG] [IMG] [IMG] [IMG_BREAK]
 *     [IMG] [IMG] [IMG] [IMG_END]          (a 3 x 3 grid: 9 embeddings, 12 tokens)
 *
 * The engine tokenizes the text around each image as usual, inserts this sequence where the
 * image goes, and, when embedding the prompt, replaces the embedding of the k-th [IMG] token
 * of the image by row k of the image's vtower embeddings. [IMG_BREAK] and [IMG_END] are
 * ordinary tokens embedded by the language model itself.
 *
 * vtower gives everything needed:
 *   - vt_image_token_grid(image, &frames, &rows, &cols): the grid (frames is 1);
 *   - vt_model_token_id(model, VT_TOKEN_IMAGE / VT_TOKEN_IMAGE_BREAK / VT_TOKEN_IMAGE_END):
 *     the ids ([IMG] from config.json's image_token_index; [IMG_BREAK] and [IMG_END] looked
 *     up in tokenizer.json / tokenizer_config.json by the strings processor_config.json
 *     names, -1 when the model folder has no tokenizer files).
 *
 * For each image this program prints its grid and its token ids, one line:
 *     <file>: grid <rows>x<cols>, <n> embeddings, tokens: 10 10 12 10 10 13
 * and checks that the sequence holds exactly one [IMG] per embedding row. */
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

/* Writes the token sequence of a rows x cols image into `out` (room for rows * (cols + 1)
 * ids) and returns its length. With no [IMG_BREAK]/[IMG_END] ids (-1), they are left out. */
static size_t image_tokens(uint32_t rows, uint32_t cols, int64_t img, int64_t brk, int64_t end,
                           int64_t *out) {
    size_t n = 0;
    uint32_t r, c;
    for (r = 0; r < rows; r++) {
        for (c = 0; c < cols; c++) out[n++] = img;
        if (r + 1 < rows) {
            if (brk >= 0) out[n++] = brk;
        } else if (end >= 0) {
            out[n++] = end;
        }
    }
    return n;
}

static int fail(const char *what, vt_error *err) {
    fprintf(stderr, "pixtral_prompt: %s: %s\n", what, vt_error_message(err));
    vt_error_free(err);
    return 1;
}

int main(int argc, char **argv) {
    vt_model *model = NULL;
    vt_embeddings *emb = NULL;
    vt_error *err = NULL;
    vt_image **images;
    int i, n = argc - 2, rc = 0;
    int64_t img_id, brk_id, end_id;

    if (argc < 3) {
        fprintf(stderr, "usage: pixtral_prompt <model_dir> <image>...\n");
        return 2;
    }
    if (vt_load(argv[1], NULL, &model, &err) != VT_OK) return fail("load", err);
    img_id = vt_model_token_id(model, VT_TOKEN_IMAGE);
    brk_id = vt_model_token_id(model, VT_TOKEN_IMAGE_BREAK);
    end_id = vt_model_token_id(model, VT_TOKEN_IMAGE_END);
    printf("model: %s (%s); [IMG] = %lld, [IMG_BREAK] = %lld, [IMG_END] = %lld\n",
           vt_model_family(model), vt_model_type(model), (long long)img_id, (long long)brk_id,
           (long long)end_id);
    if (img_id < 0 || brk_id < 0 || end_id < 0)
        fprintf(stderr, "pixtral_prompt: warning: a special token id is unknown (-1); "
                        "is tokenizer.json in the model folder?\n");

    images = calloc((size_t)n, sizeof *images);
    for (i = 0; i < n; i++) {
        size_t len = 0;
        unsigned char *bytes = read_file(argv[i + 2], &len);
        if (!bytes) {
            fprintf(stderr, "pixtral_prompt: cannot read %s\n", argv[i + 2]);
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

    /* All images in one call, whatever their sizes. */
    if (vt_forward(model, (const vt_image *const *)images, (size_t)n, &emb, &err) != VT_OK) {
        rc = fail("forward", err);
        goto done;
    }

    for (i = 0; i < n; i++) {
        uint32_t frames, rows, cols;
        size_t k, len, placeholders = 0, n_emb = vt_embeddings_n_tokens(emb, (size_t)i);
        int64_t *tokens;
        if (vt_image_token_grid(images[i], &frames, &rows, &cols, &err) != VT_OK) {
            rc = fail("grid", err);
            goto done;
        }
        tokens = malloc(((size_t)rows * (cols + 1) + 1) * sizeof *tokens);
        len = image_tokens(rows, cols, img_id, brk_id, end_id, tokens);
        printf("%s: grid %ux%u, %zu embeddings, tokens:", argv[i + 2], rows, cols, n_emb);
        for (k = 0; k < len; k++) {
            printf(" %lld", (long long)tokens[k]);
            if (tokens[k] == img_id) placeholders++; /* gets embedding row `placeholders - 1` */
        }
        printf("\n");
        free(tokens);
        if (frames != 1 || placeholders != n_emb) {
            fprintf(stderr, "pixtral_prompt: %s: %zu placeholders for %zu embeddings\n",
                    argv[i + 2], placeholders, n_emb);
            rc = 1;
        }
    }

done:
    vt_embeddings_free(emb);
    for (i = 0; i < n; i++) vt_image_free(images[i]);
    free(images);
    vt_free(model);
    return rc;
}
