/* qwen_video: what an engine needs to put a video into a Qwen2-VL / Qwen2.5-VL / Qwen3-VL /
 * Qwen3.5 prompt. The engine decodes the video; vtower takes the decoded frames.
 *
 *   qwen_video <model_dir> <frames.rgb> <offset> <n_frames> <width> <height> <source_fps>
 *
 * <frames.rgb> holds, from byte <offset> on, <n_frames> frames of <width> x <height> packed
 * RGB (3 bytes a pixel, rows back to back); <source_fps> is the video's frame rate (0 when
 * unknown). vtower samples frames as the model's video processor config says, resizes them as
 * torchvision does and groups them in pairs (temporal_patch_size).
 *
 * The prompt this program lays out is: two text tokens, the video, one text token (text ids
 * are made up: 1000, 1001, 1002), with the video as the reference processor expands it:
 *   - Qwen2-VL / Qwen2.5-VL: <|vision_start|>, vt_image_n_tokens x <|video_pad|>,
 *     <|vision_end|>; positions of the whole video from vt_image_mrope_positions (Qwen2.5-VL's
 *     second_per_grid_ts already applied);
 *   - Qwen3-VL / Qwen3.5: per temporal group g, the text "<T seconds>" (T from
 *     vt_image_video_timestamps, printed "%.1f"), <|vision_start|>, rows x cols
 *     <|video_pad|>, <|vision_end|>; positions per group from
 *     vt_image_frame_mrope_positions. The engine's tokenizer turns "<T seconds>" into text
 *     tokens; this program has no tokenizer and stands each one in by TS_TOKENS made-up ids
 *     (3: what the tiny test tokenizer gives), each one position further on all three axes.
 * Then it runs the video (one vt_forward; still images could share the call) and prints the
 * first value of every embedding level (Qwen3-VL's deepstack levels go where its images' go).
 *
 * Output lines:
 *     video: 4 frames -> 2 groups of 2x2 tokens (8 tokens), 3 levels
 *     timestamps: <0.1 seconds> <0.5 seconds>            (Qwen3-VL / Qwen3.5 only)
 *     tokens: 1000 1001 1003 1004 1005 151652 151656 ...
 *     t: ...   h: ...   w: ...
 *     level 0 row 0: 0.1234 ...
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vtower.h"

#define TS_TOKENS 3

static int fail(vt_error *err) {
    fprintf(stderr, "error: %s (%s)\n", vt_error_message(err), vt_status_str(vt_error_code(err)));
    vt_error_free(err);
    return 1;
}

/* Reads n_frames packed RGB frames of w x h starting at byte `offset` of `path`. */
static unsigned char *read_frames(const char *path, long offset, size_t bytes) {
    FILE *f = fopen(path, "rb");
    unsigned char *buf = NULL;
    if (!f) return NULL;
    if (fseek(f, offset, SEEK_SET) == 0 && (buf = malloc(bytes ? bytes : 1)) != NULL &&
        fread(buf, 1, bytes, f) != bytes) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    return buf;
}

int main(int argc, char **argv) {
    vt_model *model = NULL;
    vt_image *video = NULL;
    vt_embeddings *emb = NULL;
    vt_error *err = NULL;
    vt_video_params params = vt_video_params_default();
    unsigned char *data = NULL;
    const uint8_t **frames = NULL;
    int64_t *tokens = NULL, *pos[3] = {NULL, NULL, NULL}, *ids = NULL, p = 0, next = 0;
    double *stamps = NULL;
    size_t n_frames, width, height, frame_bytes, i, k, len = 0, n_groups = 0, total, n, level;
    uint32_t grid[3];
    int per_group, rc = 1;
    int64_t vpad, vstart, vend;

    if (argc != 8) {
        fprintf(stderr,
                "usage: %s <model_dir> <frames.rgb> <offset> <n_frames> <width> <height> "
                "<source_fps>\n",
                argv[0]);
        return 2;
    }
    n_frames = strtoul(argv[4], NULL, 10);
    width = strtoul(argv[5], NULL, 10);
    height = strtoul(argv[6], NULL, 10);
    params.source_fps = strtod(argv[7], NULL);
    frame_bytes = width * height * 3;
    if (n_frames == 0 || width == 0 || height == 0 || frame_bytes / 3 / height != width) {
        fprintf(stderr, "bad frame count or size\n");
        return 2;
    }
    data = read_frames(argv[2], strtol(argv[3], NULL, 10), n_frames * frame_bytes);
    if (!data) {
        fprintf(stderr, "cannot read %zu frames from %s\n", n_frames, argv[2]);
        return 1;
    }
    frames = malloc(n_frames * sizeof *frames);
    for (i = 0; i < n_frames; i++) frames[i] = data + i * frame_bytes;

    if (vt_load(argv[1], NULL, &model, &err) != VT_OK) {
        rc = fail(err);
        goto out;
    }
    if (vt_preprocess_video(model, frames, n_frames, (uint32_t)width, (uint32_t)height,
                            width * 3, &params, &video, &err) != VT_OK) {
        rc = fail(err);
        goto out;
    }
    /* The frames may go now: the video holds its own patches. */
    free(data);
    data = NULL;
    if (vt_image_token_grid(video, &grid[0], &grid[1], &grid[2], &err) != VT_OK) {
        rc = fail(err);
        goto out;
    }
    n = vt_image_n_tokens(video);
    per_group = (int)(grid[1] * grid[2]);
    printf("video: %zu frames -> %u groups of %ux%u tokens (%zu tokens), %zu levels\n",
           n_frames, grid[0], grid[1], grid[2], n, vt_model_n_levels(model));
    vpad = vt_model_token_id(model, VT_TOKEN_VIDEO);
    vstart = vt_model_token_id(model, VT_TOKEN_IMAGE_START);
    vend = vt_model_token_id(model, VT_TOKEN_IMAGE_END);

    /* Qwen3-VL / Qwen3.5 lay the groups out one by one, each after its timestamp text;
     * Qwen2-VL / 2.5-VL lay the video out in one run (vt_image_frame_mrope_positions refuses
     * their videos: that tells the two apart). */
    ids = malloc(3 * n * sizeof *ids);
    if (vt_image_frame_mrope_positions(video, 0, 0, ids, 3 * n, &next, NULL) == VT_OK &&
        vt_image_video_timestamps(video, NULL, 0, &n_groups, NULL) == VT_OK) {
        stamps = malloc(n_groups * sizeof *stamps);
        if (vt_image_video_timestamps(video, stamps, n_groups, &n_groups, &err) != VT_OK) {
            rc = fail(err);
            goto out;
        }
        printf("timestamps:");
        for (i = 0; i < n_groups; i++) printf(" <%.1f seconds>", stamps[i]);
        printf("\n");
    }

    /* Token ids and positions: text counts up by one on all three axes. n_groups is 0 for
     * the one-run layout. */
    total = 3 + n + (n_groups ? n_groups * (TS_TOKENS + 2) : 2);
    tokens = malloc(total * sizeof *tokens);
    for (k = 0; k < 3; k++) pos[k] = malloc(total * sizeof *pos[k]);
#define TOKEN(id)                                       \
    do {                                                \
        tokens[len] = (id);                             \
        for (k = 0; k < 3; k++) pos[k][len] = p;        \
        len++;                                          \
        p++;                                            \
    } while (0)
#define PLACEHOLDERS(count)                                          \
    do {                                                             \
        size_t j_;                                                   \
        for (j_ = 0; j_ < (size_t)(count); j_++) {                   \
            tokens[len + j_] = vpad;                                 \
            for (k = 0; k < 3; k++)                                  \
                pos[k][len + j_] = ids[k * (size_t)(count) + j_];    \
        }                                                            \
        len += (size_t)(count);                                      \
        p = next;                                                    \
    } while (0)
    TOKEN(1000);
    TOKEN(1001);
    if (n_groups) {
        for (i = 0; i < n_groups; i++) {
            int ts;
            for (ts = 0; ts < TS_TOKENS; ts++) TOKEN(1003 + ts); /* "<T seconds>" */
            TOKEN(vstart);
            if (vt_image_frame_mrope_positions(video, (uint32_t)i, p, ids, 3 * n, &next, &err) !=
                VT_OK) {
                rc = fail(err);
                goto out;
            }
            PLACEHOLDERS(per_group);
            TOKEN(vend);
        }
    } else {
        TOKEN(vstart);
        if (vt_image_mrope_positions(video, p, ids, 3 * n, &next, &err) != VT_OK) {
            rc = fail(err);
            goto out;
        }
        PLACEHOLDERS(n);
        TOKEN(vend);
    }
    TOKEN(1002);
    printf("tokens:");
    for (i = 0; i < len; i++) printf(" %lld", (long long)tokens[i]);
    printf("\n");
    for (k = 0; k < 3; k++) {
        printf("%c:", "thw"[k]);
        for (i = 0; i < len; i++) printf(" %lld", (long long)pos[k][i]);
        printf("\n");
    }

    /* The embeddings: row r of level 0 replaces the r-th <|video_pad|> of the prompt. */
    if (vt_forward(model, (const vt_image *const *)&video, 1, &emb, &err) != VT_OK) {
        rc = fail(err);
        goto out;
    }
    for (level = 0; level < vt_embeddings_n_levels(emb); level++) {
        const float *rows = vt_embeddings_level_data(emb, 0, level);
        if (!rows) goto out;
        printf("level %zu row 0: %.6g %.6g\n", level, rows[0], rows[1]);
    }
    rc = 0;
out:
    vt_embeddings_free(emb);
    vt_image_free(video);
    vt_model_free(model);
    free(data);
    free(frames);
    free(tokens);
    free(ids);
    free(stamps);
    for (k = 0; k < 3; k++) free(pos[k]);
    return rc;
}
