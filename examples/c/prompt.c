/* prompt: where an image's embeddings go in a language-model prompt.
 *
 *   prompt <model_dir> <image> [pan_and_scan_min_crop_size | max_patches=N]
 *
 * Preprocesses the image (with Gemma3 pan-and-scan switched on when a minimum crop size is
 * given, or with a tile budget for InternVL / Aya Vision), runs the tower, and asks
 * vt_image_prompt for the pieces of the prompt that stand for the image: text (which the
 * engine tokenizes with its own tokenizer), special token ids, and runs of placeholder tokens
 * that take the image's embedding rows. The engine then replaces the embedding of the i-th
 * placeholder token with row i of vt_embeddings_data. The same code serves every family
 * (Gemma3's framing text, Pixtral's row breaks, InternVL's and Aya Vision's tiles, Qwen's
 * vision start / end ...).
 *
 * The output lists the pieces: text to tokenize (quoted), token ids, and placeholder runs
 * with the embedding rows they receive. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vtower.h"

static void print_text(const char *s) {
    putchar('"');
    for (; *s; s++) {
        if (*s == '\n') fputs("\\n", stdout);
        else putchar(*s);
    }
    putchar('"');
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

int main(int argc, char **argv) {
    vt_model *model = NULL;
    vt_image *image = NULL;
    vt_embeddings *emb = NULL;
    vt_prompt *layout = NULL;
    vt_error *err = NULL;
    vt_preprocess_params params = vt_preprocess_params_default();
    unsigned char *bytes;
    size_t len = 0, i, row = 0, n_ids = 0;
    uint32_t frames = 0, rows = 0, cols = 0;
    int rc = 1;

    if (argc < 3) {
        fprintf(stderr, "usage: prompt <model_dir> <image> [pan_and_scan_min_crop_size | "
                        "max_patches=N]\n");
        return 2;
    }
    if (argc > 3) {
        if (strncmp(argv[3], "max_patches=", 12) == 0) {
            params.max_patches = (int32_t)strtol(argv[3] + 12, NULL, 10);
        } else {
            params.pan_and_scan = 1;
            params.pan_and_scan_min_crop_size = (uint32_t)strtoul(argv[3], NULL, 10);
        }
    }
    if (vt_load(argv[1], NULL, &model, &err) != VT_OK) goto fail;
    bytes = read_file(argv[2], &len);
    if (!bytes) {
        fprintf(stderr, "prompt: cannot read %s\n", argv[2]);
        goto done;
    }
    if (vt_preprocess_ex(model, bytes, len, &params, &image, &err) != VT_OK) {
        free(bytes);
        goto fail;
    }
    free(bytes);
    if (vt_image_token_grid(image, &frames, &rows, &cols, &err) != VT_OK) goto fail;
    printf("model: %s (%s); image: %u frame(s) of %u x %u tokens = %zu embeddings\n",
           vt_model_family(model), vt_model_type(model), frames, rows, cols,
           vt_image_n_tokens(image));
    {
        const vt_image *batch[1] = {image};
        if (vt_forward(model, batch, 1, &emb, &err) != VT_OK) goto fail;
    }
    if (vt_image_prompt(model, image, &layout, &err) != VT_OK) goto fail;

    /* A user turn: text, the image, more text. (Chat-template tokens omitted.) */
    printf("prompt pieces:\n");
    printf("  text ");
    print_text("What is in this picture? ");
    printf("\n");
    for (i = 0; i < vt_prompt_n_segments(layout); i++) {
        vt_prompt_segment s;
        s.struct_size = sizeof s;
        if (vt_prompt_segment_at(layout, i, &s, &err) != VT_OK) goto fail;
        printf("  ");
        if (s.kind == VT_SEGMENT_TEXT) {
            printf("text ");
            print_text(s.text);
        } else if (s.kind == VT_SEGMENT_EMBEDDINGS) {
            if (s.start != row) {
                fprintf(stderr, "prompt: a run starts at row %zu, expected %zu\n", s.start, row);
                goto done;
            }
            printf("token %lld x %zu <- embedding rows %zu..%zu", (long long)s.token_id, s.count,
                   s.start, s.start + s.count - 1);
            row += s.count;
            n_ids += s.count;
        } else {
            printf("token %lld", (long long)s.token_id);
            n_ids += 1;
        }
        printf("\n");
    }
    printf("  text ");
    print_text(" Answer briefly.");
    printf("\n");
    printf("placeholders: %zu, embedding rows: %zu x %zu, special/placeholder ids: %zu\n", row,
           vt_embeddings_n_tokens(emb, 0), vt_embeddings_dim(emb), n_ids);
    if (row != vt_embeddings_n_tokens(emb, 0) || row != vt_image_n_tokens(image)) {
        fprintf(stderr, "prompt: %zu placeholders for %zu embedding rows\n", row,
                vt_embeddings_n_tokens(emb, 0));
        goto done;
    }
    rc = 0;
    goto done;
fail:
    fprintf(stderr, "prompt: %s (%s)\n", vt_error_message(err), vt_status_str(vt_error_code(err)));
    vt_error_free(err);
done:
    vt_prompt_free(layout);
    vt_embeddings_free(emb);
    vt_image_free(image);
    vt_free(model);
    return rc;
}
