/* prompt: where an image's embeddings go in a language-model prompt.
 *
 *   prompt <model_dir> <image> [pan_and_scan_min_crop_size]
 *
 * Preprocesses the image (with Gemma3 pan-and-scan switched on when a minimum crop size is
 * given), runs the tower, and builds the piece of the prompt that stands for the image:
 * special token ids from vt_model_token_id, one placeholder token per embedding row laid out
 * by vt_image_token_grid, and the text the reference processor puts around them (which the
 * engine tokenizes with its own tokenizer). The engine then replaces the embedding of the
 * i-th placeholder token with row i of vt_embeddings_data.
 *
 *   Gemma3 (Gemma3Processor.full_image_sequence), per frame:
 *     "\n\n" <start_of_image> <image_soft_token> x rows*cols <end_of_image> "\n\n"
 *   with pan-and-scan crops (frames > 1):
 *     "Here is the original image " FRAME0 " and here are some crops to help you see better "
 *     FRAME1 " " FRAME2 ...
 *   Gemma 4 (Gemma4Processor.replace_image_token): <boi> <image> x rows*cols <eoi>, no text
 *   around (the generic layout below).
 *   LLaVA (LlavaProcessor): <image> x n_tokens.
 *   Others: [image start] rows of <image> x cols, separated by [image break] when the model
 *   has one, [image end].
 *
 * The output lists the pieces: text to tokenize (quoted), and token ids (with a repeat
 * count); the placeholder runs say which embedding rows they receive. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vtower.h"

/* One piece of the prompt: `text` to tokenize, or `count` copies of token `id`. */
typedef struct {
    const char *text; /* NULL for a token piece */
    int64_t id;
    size_t count;
    int is_embedding; /* the placeholders whose embeddings come from the image */
} piece;

typedef struct {
    piece *items;
    size_t len, cap;
} pieces;

static void push(pieces *p, const char *text, int64_t id, size_t count, int is_embedding) {
    if (p->len == p->cap) {
        p->cap = p->cap ? 2 * p->cap : 16;
        p->items = realloc(p->items, p->cap * sizeof *p->items);
        if (!p->items) {
            fprintf(stderr, "prompt: out of memory\n");
            exit(1);
        }
    }
    p->items[p->len].text = text;
    p->items[p->len].id = id;
    p->items[p->len].count = count;
    p->items[p->len].is_embedding = is_embedding;
    p->len++;
}

/* Appends the pieces that stand for `image` in a prompt for `model`. */
static void image_pieces(const vt_model *model, const vt_image *image, pieces *out) {
    uint32_t frames = 0, rows = 0, cols = 0, f, r;
    int64_t image_id = vt_model_token_id(model, VT_TOKEN_IMAGE);
    int64_t start = vt_model_token_id(model, VT_TOKEN_IMAGE_START);
    int64_t end = vt_model_token_id(model, VT_TOKEN_IMAGE_END);
    int64_t brk = vt_model_token_id(model, VT_TOKEN_IMAGE_BREAK);
    int gemma3 = strcmp(vt_model_family(model), "gemma3") == 0;

    if (vt_image_token_grid(image, &frames, &rows, &cols, NULL) != VT_OK) return;
    for (f = 0; f < frames; f++) {
        if (gemma3) {
            /* Text between the frames of a pan-and-scanned image, then each frame wrapped
             * in "\n\n" <start_of_image> ... <end_of_image> "\n\n". */
            if (frames > 1 && f == 0) push(out, "Here is the original image ", 0, 0, 0);
            if (f == 1) push(out, " and here are some crops to help you see better ", 0, 0, 0);
            if (f > 1) push(out, " ", 0, 0, 0);
            push(out, "\n\n", 0, 0, 0);
            push(out, NULL, start, 1, 0);
            push(out, NULL, image_id, (size_t)rows * cols, 1);
            push(out, NULL, end, 1, 0);
            push(out, "\n\n", 0, 0, 0);
            continue;
        }
        if (start >= 0) push(out, NULL, start, 1, 0);
        if (brk < 0) {
            push(out, NULL, image_id, (size_t)rows * cols, 1);
        } else {
            for (r = 0; r < rows; r++) {
                push(out, NULL, image_id, cols, 1);
                if (r + 1 < rows) push(out, NULL, brk, 1, 0);
            }
        }
        if (end >= 0) push(out, NULL, end, 1, 0);
    }
}

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
    vt_error *err = NULL;
    vt_preprocess_params params = vt_preprocess_params_default();
    pieces prompt = {NULL, 0, 0};
    unsigned char *bytes;
    size_t len = 0, i, row = 0, n_ids = 0;
    uint32_t frames = 0, rows = 0, cols = 0;
    int rc = 1;

    if (argc < 3) {
        fprintf(stderr, "usage: prompt <model_dir> <image> [pan_and_scan_min_crop_size]\n");
        return 2;
    }
    if (argc > 3) {
        params.pan_and_scan = 1;
        params.pan_and_scan_min_crop_size = (uint32_t)strtoul(argv[3], NULL, 10);
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

    /* A user turn: text, the image, more text. (Chat-template tokens omitted.) */
    push(&prompt, "What is in this picture? ", 0, 0, 0);
    image_pieces(model, image, &prompt);
    push(&prompt, " Answer briefly.", 0, 0, 0);

    {
        const vt_image *batch[1] = {image};
        if (vt_forward(model, batch, 1, &emb, &err) != VT_OK) goto fail;
    }
    printf("prompt pieces:\n");
    for (i = 0; i < prompt.len; i++) {
        const piece *p = &prompt.items[i];
        printf("  ");
        if (p->text) {
            printf("text ");
            print_text(p->text);
        } else if (p->is_embedding) {
            printf("token %lld x %zu <- embedding rows %zu..%zu", (long long)p->id, p->count,
                   row, row + p->count - 1);
            row += p->count;
            n_ids += p->count;
        } else {
            printf("token %lld", (long long)p->id);
            n_ids += p->count;
        }
        printf("\n");
    }
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
    free(prompt.items);
    vt_embeddings_free(emb);
    vt_image_free(image);
    vt_free(model);
    return rc;
}
