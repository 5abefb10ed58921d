/* Asynchronous forward passes through the C API: many jobs in flight from several threads
 * give vt_forward's results bit for bit (with the callback called once per job); a job is
 * cancelled before it starts, while it runs and after it has finished; jobs are freed
 * before they finish and the model is freed while a job runs.
 * usage: jobs <model_dir> <image>... */
#include "vtower.h"
#include "check.h"

#include <pthread.h>

#define N_THREADS 4
#define JOBS_PER_THREAD 4
#define MAX_IMAGES 16
#define LONG_JOB 3000

static vt_model *model;
static int n_images;
static vt_image *images[MAX_IMAGES];
static float *reference[MAX_IMAGES];
static size_t ref_len[MAX_IMAGES];

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static int callbacks_ok, callbacks_other;

static void on_done(void *user_data, vt_status status) {
    pthread_mutex_lock(&lock);
    if (status == VT_OK && user_data == (void *)&callbacks_ok)
        callbacks_ok++;
    else
        callbacks_other++;
    pthread_mutex_unlock(&lock);
}

static int same(const vt_embeddings *emb, size_t k, int i) {
    size_t n = vt_embeddings_n_tokens(emb, k) * vt_embeddings_dim(emb);
    return n == ref_len[i] && memcmp(vt_embeddings_data(emb, k), reference[i], n * sizeof(float)) == 0;
}

static void *worker(void *arg) {
    long t = (long)arg, mismatches = 0;
    vt_job *jobs[JOBS_PER_THREAD];
    int first[JOBS_PER_THREAD];
    int j;
    for (j = 0; j < JOBS_PER_THREAD; j++) {
        const vt_image *list[2];
        first[j] = (int)((t + j) % n_images);
        list[0] = images[first[j]];
        list[1] = images[(first[j] + 1) % n_images];
        if (vt_forward_async(model, list, 2, on_done, &callbacks_ok, &jobs[j], NULL) != VT_OK) {
            jobs[j] = NULL;
            mismatches++;
        }
    }
    for (j = JOBS_PER_THREAD - 1; j >= 0; j--) {
        vt_embeddings *emb = NULL;
        if (!jobs[j]) continue;
        if (vt_job_wait(jobs[j], &emb, NULL) != VT_OK || !vt_job_done(jobs[j], 0) ||
            !same(emb, 0, first[j]) || !same(emb, 1, (first[j] + 1) % n_images))
            mismatches++;
        vt_embeddings_free(emb);
        vt_job_free(jobs[j]);
    }
    return (void *)mismatches;
}

/* A job of LONG_JOB copies of image 0. */
static vt_job *long_job(void) {
    const vt_image **list = (const vt_image **)malloc(LONG_JOB * sizeof(*list));
    vt_job *job = NULL;
    int i;
    for (i = 0; i < LONG_JOB; i++) list[i] = images[0];
    CHECK(vt_forward_async(model, list, LONG_JOB, NULL, NULL, &job, NULL) == VT_OK);
    free(list);
    return job;
}

static void cancellation(void) {
    vt_embeddings *emb = NULL;
    vt_error *err = NULL;
    vt_job *a, *b, *queued, *done;
    int tries, cancelled_running = 0;

    /* Before the start: two long jobs occupy both job threads, the third waits. */
    a = long_job();
    b = long_job();
    CHECK(vt_forward_async(model, (const vt_image *const *)images, 1, NULL, NULL, &queued, NULL) ==
          VT_OK);
    vt_job_cancel(queued);
    CHECK(vt_job_wait(queued, &emb, &err) == VT_ERR_CANCELLED);
    CHECK(emb == NULL);
    CHECK(err && vt_error_code(err) == VT_ERR_CANCELLED);
    vt_error_free(err);
    err = NULL;
    vt_job_free(queued);
    vt_job_free(a); /* freed while running or queued: cancelled in the background */
    vt_job_free(b);

    /* While it runs: cancel a long job that has not finished; it ends cancelled (a few tries
     * in case it finished first). */
    for (tries = 0; tries < 5 && !cancelled_running; tries++) {
        vt_job *job = long_job();
        vt_status s;
        if (!vt_job_done(job, 5)) {
            vt_job_cancel(job);
            s = vt_job_wait(job, &emb, NULL);
            CHECK(s == VT_ERR_CANCELLED || s == VT_OK);
            cancelled_running = s == VT_ERR_CANCELLED;
            vt_embeddings_free(emb);
            emb = NULL;
        }
        vt_job_free(job);
    }
    CHECK(cancelled_running);

    /* After the end: the result is kept; the model is still usable. */
    CHECK(vt_forward_async(model, (const vt_image *const *)images, 1, NULL, NULL, &done, NULL) ==
          VT_OK);
    while (!vt_job_done(done, 1000)) {
    }
    vt_job_cancel(done);
    CHECK(vt_job_wait(done, &emb, NULL) == VT_OK);
    CHECK(emb && same(emb, 0, 0));
    vt_embeddings_free(emb);
    emb = NULL;
    /* The result is handed out once. */
    CHECK(vt_job_wait(done, &emb, &err) == VT_ERR_INVALID_ARGUMENT);
    CHECK(emb == NULL);
    vt_error_free(err);
    vt_job_free(done);
}

static void bad_arguments(void) {
    vt_job *job = NULL;
    vt_embeddings *emb = NULL;
    const vt_image *null_image[1] = {NULL};
    CHECK(vt_forward_async(NULL, NULL, 0, NULL, NULL, &job, NULL) == VT_ERR_INVALID_ARGUMENT);
    CHECK(vt_forward_async(model, NULL, 0, NULL, NULL, NULL, NULL) == VT_ERR_INVALID_ARGUMENT);
    CHECK(vt_forward_async(model, NULL, 3, NULL, NULL, &job, NULL) == VT_ERR_INVALID_ARGUMENT);
    CHECK(vt_forward_async(model, null_image, 1, NULL, NULL, &job, NULL) ==
          VT_ERR_INVALID_ARGUMENT);
    CHECK(job == NULL);
    CHECK(vt_job_wait(NULL, &emb, NULL) == VT_ERR_INVALID_ARGUMENT);
    CHECK(vt_job_done(NULL, 0) == 0);
    vt_job_cancel(NULL);
    vt_job_free(NULL);
    CHECK(strcmp(vt_status_str(VT_ERR_CANCELLED), "cancelled") == 0);
}

int main(int argc, char **argv) {
    pthread_t threads[N_THREADS];
    long t, total = 0;
    int i, expected_callbacks = N_THREADS * JOBS_PER_THREAD;
    vt_error *err = NULL;
    vt_job *orphan = NULL;
    vt_embeddings *emb = NULL;

    if (argc < 3 || argc - 2 > MAX_IMAGES) {
        fprintf(stderr, "usage: jobs <model_dir> <image>...\n");
        return 2;
    }
    if (vt_load(argv[1], NULL, &model, &err) != VT_OK) {
        fprintf(stderr, "load failed: %s\n", vt_error_message(err));
        vt_error_free(err);
        return 1;
    }
    n_images = argc - 2;
    for (i = 0; i < n_images; i++) {
        size_t len;
        unsigned char *bytes = read_file(argv[i + 2], &len);
        const vt_image *list[1];
        CHECK(vt_preprocess(model, bytes, len, &images[i], NULL) == VT_OK);
        free(bytes);
        list[0] = images[i];
        CHECK(vt_forward(model, list, 1, &emb, NULL) == VT_OK);
        ref_len[i] = vt_embeddings_n_tokens(emb, 0) * vt_embeddings_dim(emb);
        reference[i] = (float *)malloc(ref_len[i] * sizeof(float));
        memcpy(reference[i], vt_embeddings_data(emb, 0), ref_len[i] * sizeof(float));
        vt_embeddings_free(emb);
    }
    for (t = 0; t < N_THREADS; t++) pthread_create(&threads[t], NULL, worker, (void *)t);
    for (t = 0; t < N_THREADS; t++) {
        void *res;
        pthread_join(threads[t], &res);
        total += (long)res;
    }
    printf("%d threads x %d jobs: %ld mismatches\n", N_THREADS, JOBS_PER_THREAD, total);
    CHECK(total == 0);
    pthread_mutex_lock(&lock);
    CHECK(callbacks_ok == expected_callbacks && callbacks_other == 0);
    pthread_mutex_unlock(&lock);

    cancellation();
    bad_arguments();

    /* The model freed while a job runs: the job holds it and finishes normally. */
    CHECK(vt_forward_async(model, (const vt_image *const *)images, 1, NULL, NULL, &orphan, NULL) ==
          VT_OK);
    for (i = 0; i < n_images; i++) vt_image_free(images[i]);
    vt_model_free(model);
    CHECK(vt_job_wait(orphan, &emb, NULL) == VT_OK);
    CHECK(emb && same(emb, 0, 0));
    vt_embeddings_free(emb);
    vt_job_free(orphan);
    for (i = 0; i < n_images; i++) free(reference[i]);
    return finish("jobs");
}
