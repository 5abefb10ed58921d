/* One model used by 8 threads at once, each preprocessing and forwarding different images
 * many times: every result must equal the single-threaded one bit for bit.
 * usage: threads <model_dir> <image>... */
#include "vtower.h"
#include "check.h"

#include <pthread.h>

#define N_THREADS 8
#define ROUNDS 6
#define MAX_IMAGES 16

static vt_model *model;
static int n_images;
static unsigned char *files[MAX_IMAGES];
static size_t file_lens[MAX_IMAGES];
static float *reference[MAX_IMAGES];
static size_t ref_len[MAX_IMAGES];

static int embed(int i, float **out, size_t *n) {
    vt_image *img = NULL;
    vt_embeddings *emb = NULL;
    const vt_image *list[1];
    size_t count;
    if (vt_preprocess(model, files[i], file_lens[i], &img, NULL) != VT_OK) return 0;
    list[0] = img;
    if (vt_forward(model, list, 1, &emb, NULL) != VT_OK) {
        vt_image_free(img);
        return 0;
    }
    count = vt_embeddings_n_tokens(emb, 0) * vt_embeddings_dim(emb);
    *out = (float *)malloc(count * sizeof(float));
    memcpy(*out, vt_embeddings_data(emb, 0), count * sizeof(float));
    *n = count;
    vt_embeddings_free(emb);
    vt_image_free(img);
    return 1;
}

static void *worker(void *arg) {
    long t = (long)arg;
    long mismatches = 0;
    int r;
    for (r = 0; r < ROUNDS; r++) {
        int i = (int)((t + r) % n_images);
        float *got = NULL;
        size_t n = 0;
        if (!embed(i, &got, &n) || n != ref_len[i] ||
            memcmp(got, reference[i], n * sizeof(float)) != 0)
            mismatches++;
        free(got);
    }
    return (void *)mismatches;
}

int main(int argc, char **argv) {
    pthread_t threads[N_THREADS];
    long t, total = 0;
    int i;
    vt_error *err = NULL;

    if (argc < 3 || argc - 2 > MAX_IMAGES) {
        fprintf(stderr, "usage: threads <model_dir> <image>...\n");
        return 2;
    }
    if (vt_load(argv[1], NULL, &model, &err) != VT_OK) {
        fprintf(stderr, "load failed: %s\n", vt_error_message(err));
        vt_error_free(err);
        return 1;
    }
    n_images = argc - 2;
    for (i = 0; i < n_images; i++) {
        files[i] = read_file(argv[i + 2], &file_lens[i]);
        CHECK(embed(i, &reference[i], &ref_len[i]));
    }
    for (t = 0; t < N_THREADS; t++) pthread_create(&threads[t], NULL, worker, (void *)t);
    for (t = 0; t < N_THREADS; t++) {
        void *res;
        pthread_join(threads[t], &res);
        total += (long)res;
    }
    printf("%d threads x %d rounds over %d images: %ld mismatches\n", N_THREADS, ROUNDS,
           n_images, total);
    CHECK(total == 0);
    for (i = 0; i < n_images; i++) {
        free(files[i]);
        free(reference[i]);
    }
    vt_model_free(model);
    return finish("threads");
}
