/* The embedding cache through the C API: off by default, a repeated image is a hit with
 * the same embeddings, counters, eviction within a small budget.
 * usage: cache <model_dir> <image> <other_image> */
#include "vtower.h"
#include "check.h"

static vt_embeddings *embed(vt_model *m, const unsigned char *bytes, size_t len) {
    vt_image *img = NULL;
    vt_embeddings *emb = NULL;
    const vt_image *list[1];
    CHECK(vt_preprocess(m, bytes, len, &img, NULL) == VT_OK);
    list[0] = img;
    CHECK(vt_forward(m, list, 1, &emb, NULL) == VT_OK);
    vt_image_free(img);
    return emb;
}

int main(int argc, char **argv) {
    vt_load_params p = vt_load_params_default();
    vt_model *plain = NULL, *cached = NULL;
    vt_cache_stats st;
    size_t la, lb, n;
    unsigned char *a, *b;
    vt_embeddings *e1, *e2, *e3;
    if (argc != 4) {
        fprintf(stderr, "usage: cache <model_dir> <image> <other_image>\n");
        return 2;
    }
    a = read_file(argv[2], &la);
    b = read_file(argv[3], &lb);
    CHECK(p.embedding_cache_bytes == 0);
    CHECK(vt_load(argv[1], &p, &plain, NULL) == VT_OK);
    e1 = embed(plain, a, la);
    e2 = embed(plain, a, la);
    CHECK(vt_model_cache_stats(plain, &st, NULL) == VT_OK);
    CHECK(st.hits == 0 && st.misses == 0 && st.bytes == 0 && st.entries == 0);
    vt_embeddings_free(e2);

    /* A budget for one entry of this fixture: the second image evicts the first. */
    p.embedding_cache_bytes = 40000;
    CHECK(vt_load(argv[1], &p, &cached, NULL) == VT_OK);
    e2 = embed(cached, a, la);
    e3 = embed(cached, a, la);
    n = vt_embeddings_n_tokens(e1, 0) * vt_embeddings_dim(e1);
    CHECK(memcmp(vt_embeddings_data(e1, 0), vt_embeddings_data(e2, 0), n * sizeof(float)) == 0);
    CHECK(memcmp(vt_embeddings_data(e1, 0), vt_embeddings_data(e3, 0), n * sizeof(float)) == 0);
    CHECK(vt_model_cache_stats(cached, &st, NULL) == VT_OK);
    CHECK(st.hits == 1 && st.misses == 1 && st.entries == 1 && st.bytes > 0 && st.bytes <= 40000);
    vt_embeddings_free(embed(cached, b, lb));
    vt_embeddings_free(embed(cached, a, la));
    CHECK(vt_model_cache_stats(cached, &st, NULL) == VT_OK);
    CHECK(st.hits == 1 && st.misses == 3 && st.entries == 1);
    /* Handed-out embeddings survive eviction. */
    CHECK(memcmp(vt_embeddings_data(e1, 0), vt_embeddings_data(e3, 0), n * sizeof(float)) == 0);
    CHECK(vt_model_cache_stats(NULL, &st, NULL) == VT_ERR_INVALID_ARGUMENT);
    CHECK(vt_model_cache_stats(cached, NULL, NULL) == VT_ERR_INVALID_ARGUMENT);

    /* max_forward_bytes: an image over the estimate alone is refused before it runs. */
    {
        vt_model *small = NULL;
        vt_image *img = NULL;
        vt_embeddings *none = NULL;
        vt_error *err = NULL;
        const vt_image *list[1];
        uint64_t need;
        vt_load_params q = vt_load_params_default();
        CHECK(q.max_forward_bytes == 0);
        CHECK(vt_preprocess(plain, a, la, &img, NULL) == VT_OK);
        need = vt_model_forward_bytes(plain, img);
        CHECK(need > 0 && vt_model_forward_bytes(NULL, img) == 0);
        vt_image_free(img);
        q.max_forward_bytes = need - 1;
        CHECK(vt_load(argv[1], &q, &small, NULL) == VT_OK);
        CHECK(vt_preprocess(small, a, la, &img, NULL) == VT_OK);
        list[0] = img;
        CHECK(vt_forward(small, list, 1, &none, &err) == VT_ERR_IMAGE_TOO_LARGE);
        CHECK(none == NULL && err && strstr(vt_error_message(err), "max_forward_bytes"));
        vt_error_free(err);
        vt_image_free(img);
        vt_model_free(small);
    }

    /* Per-call size knobs: SigLIP has no min_pixels; max_tokens below its fixed 36 tokens
     * is a budget no size satisfies. */
    {
        vt_preprocess_params pp = vt_preprocess_params_default();
        vt_image *img = NULL;
        vt_error *err = NULL;
        CHECK(pp.min_pixels == 0 && pp.max_pixels == 0 && pp.max_tokens == 0);
        CHECK(pp.longest_edge == 0);
        pp.min_pixels = 100;
        CHECK(vt_preprocess_ex(plain, a, la, &pp, &img, &err) == VT_ERR_INVALID_ARGUMENT);
        CHECK(img == NULL && err && strstr(vt_error_message(err), "min_pixels"));
        vt_error_free(err);
        err = NULL;
        pp.min_pixels = 0;
        pp.longest_edge = 32;
        CHECK(vt_preprocess_ex(plain, a, la, &pp, &img, &err) == VT_ERR_INVALID_ARGUMENT);
        CHECK(img == NULL && err && strstr(vt_error_message(err), "longest_edge"));
        vt_error_free(err);
        err = NULL;
        pp.longest_edge = 0;
        pp.max_tokens = 35;
        CHECK(vt_preprocess_ex(plain, a, la, &pp, &img, &err) == VT_ERR_INVALID_ARGUMENT);
        CHECK(err && strstr(vt_error_message(err), "max_tokens"));
        vt_error_free(err);
        pp.max_tokens = 36;
        CHECK(vt_preprocess_ex(plain, a, la, &pp, &img, NULL) == VT_OK);
        CHECK(vt_image_n_tokens(img) == 36);
        vt_image_free(img);
    }

    vt_embeddings_free(e1);
    vt_embeddings_free(e2);
    vt_embeddings_free(e3);
    vt_model_free(plain);
    vt_model_free(cached);
    free(a);
    free(b);
    return finish("cache");
}
