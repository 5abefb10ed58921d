/* vt_free releases the model's thread pool: loading and freeing a model several times leaves
 * no worker threads behind (Linux: counts /proc/self/task), and they have exited by the time
 * vt_free returns (it joins them). Run by scripts/sanitize.sh, plain and under valgrind and
 * ASan, where a pool that outlives its model shows up as a leak.
 * usage: pool_release <model_dir> <image> [rounds] */
#define _POSIX_C_SOURCE 200809L /* nanosleep, opendir under -std=c99 */
#include <dirent.h>
#include <time.h>

#include "check.h"
#include "vtower.h"

static int count_threads(void) {
    DIR *d = opendir("/proc/self/task");
    struct dirent *e;
    int n = 0;
    if (!d) return -1;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.') n++;
    closedir(d);
    return n;
}

/* Waits up to ~20 s (valgrind runs threads one at a time) for the thread count to drop to
 * `want`; returns the last count seen. */
static int settle(int want) {
    struct timespec ts = {0, 20 * 1000 * 1000};
    int i, n = count_threads();
    for (i = 0; i < 1000 && n > want; i++) {
        nanosleep(&ts, NULL);
        n = count_threads();
    }
    return n;
}

int main(int argc, char **argv) {
    int rounds, r, before, during = 0, after;
    size_t len;
    unsigned char *bytes;
    if (argc < 3 || argc > 4) {
        fprintf(stderr, "usage: pool_release <model_dir> <image> [rounds]\n");
        return 2;
    }
    rounds = argc == 4 ? atoi(argv[3]) : 3;
    bytes = read_file(argv[2], &len);
    before = count_threads();
    CHECK(before >= 1);
    for (r = 0; r < rounds; r++) {
        vt_model *model = NULL;
        vt_image *img = NULL;
        vt_embeddings *emb = NULL;
        vt_error *err = NULL;
        vt_load_params params = vt_load_params_default();
        const vt_image *batch[1];
        params.n_threads = 3;
        if (vt_load(argv[1], &params, &model, &err) != VT_OK) {
            fprintf(stderr, "load failed: %s\n", vt_error_message(err));
            vt_error_free(err);
            return 1;
        }
        during = count_threads();
        CHECK(vt_preprocess(model, bytes, len, &img, NULL) == VT_OK);
        batch[0] = img;
        CHECK(vt_forward(model, batch, 1, &emb, NULL) == VT_OK);
        vt_embeddings_free(emb);
        vt_image_free(img);
        vt_free(model);
        /* Joined: no waiting needed. */
        CHECK(count_threads() == before);
    }
    after = settle(before);
    printf("threads: %d before, %d with a model loaded, %d after %d load/free rounds\n", before,
           during, after, rounds);
    CHECK(during > before);
    CHECK(after == before);
    free(bytes);
    return finish("pool_release");
}
