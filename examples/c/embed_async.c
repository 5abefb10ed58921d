/* Asynchronous embedding, as an engine's request loop uses it: start one job per image with
 * vt_forward_async, do other work while they run (here: poll them), cancel the ones nobody
 * needs any more (here: every job after the first `keep`), collect the rest.
 *
 *   embed_async <model_dir> <keep> <image>...
 *
 * Build: cc -std=c99 embed_async.c -Iinclude -Ltarget/release -lvtower -o embed_async */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vtower.h"

static unsigned char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    unsigned char *buf;
    long n;
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);
    buf = (unsigned char *)malloc(n > 0 ? (size_t)n : 1);
    if (buf && n > 0 && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    *len = (size_t)n;
    return buf;
}

/* Called on a vtower thread when a job finishes; user_data is the job's index. */
static void on_done(void *user_data, vt_status status) {
    fprintf(stderr, "  (job %ld finished: %s)\n", (long)(size_t)user_data, vt_status_str(status));
}

int main(int argc, char **argv) {
    vt_model *model = NULL;
    vt_error *err = NULL;
    vt_job **jobs;
    int i, n, keep, failed = 0;

    if (argc < 4) {
        fprintf(stderr, "usage: embed_async <model_dir> <keep> <image>...\n");
        return 2;
    }
    keep = atoi(argv[2]);
    n = argc - 3;
    if (vt_load(argv[1], NULL, &model, &err) != VT_OK) {
        fprintf(stderr, "load: %s\n", vt_error_message(err));
        vt_error_free(err);
        return 1;
    }
    jobs = (vt_job **)calloc((size_t)n, sizeof(*jobs));

    /* Submit: each job copies its image, so the image is freed at once. */
    for (i = 0; i < n; i++) {
        size_t len = 0;
        unsigned char *bytes = read_file(argv[i + 3], &len);
        vt_image *img = NULL;
        const vt_image *list[1];
        if (!bytes || vt_preprocess(model, bytes, len, &img, &err) != VT_OK) {
            fprintf(stderr, "%s: %s\n", argv[i + 3], err ? vt_error_message(err) : "unreadable");
            vt_error_free(err);
            err = NULL;
            free(bytes);
            failed = 1;
            continue;
        }
        free(bytes);
        list[0] = img;
        if (vt_forward_async(model, list, 1, on_done, (void *)(size_t)i, &jobs[i], &err) != VT_OK) {
            fprintf(stderr, "submit: %s\n", vt_error_message(err));
            vt_error_free(err);
            err = NULL;
            failed = 1;
        }
        vt_image_free(img);
    }

    /* The requests past `keep` were aborted by their clients: cancel them. */
    for (i = keep; i < n; i++) vt_job_cancel(jobs[i]);

    /* Poll until every job has finished (an engine would do other work between polls). */
    for (i = 0; i < n; i++)
        while (jobs[i] && !vt_job_done(jobs[i], 10)) {
        }

    for (i = 0; i < n; i++) {
        vt_embeddings *emb = NULL;
        vt_status s;
        if (!jobs[i]) continue;
        s = vt_job_wait(jobs[i], &emb, &err);
        if (s == VT_OK) {
            printf("%s: %zu tokens x %zu\n", argv[i + 3], vt_embeddings_n_tokens(emb, 0),
                   vt_embeddings_dim(emb));
        } else if (s == VT_ERR_CANCELLED) {
            printf("%s: cancelled\n", argv[i + 3]);
        } else {
            fprintf(stderr, "%s: %s\n", argv[i + 3], vt_error_message(err));
            failed = 1;
        }
        vt_error_free(err);
        err = NULL;
        vt_embeddings_free(emb);
        vt_job_free(jobs[i]);
    }
    free(jobs);
    vt_model_free(model);
    return failed;
}
