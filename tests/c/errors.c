/* Every error path of the C API: NULL pointers, bad folders and files, corrupt and
 * oversized images, bad params. Each failure must return the documented status with an
 * error object whose code matches and whose message says what went wrong.
 * usage: errors <model_dir> <images_dir> <broken_models_dir> */
#include "vtower.h"
#include "check.h"

static void expect(vt_status got, vt_error *err, vt_status want, const char *what,
                   const char *needle) {
    if (got != want) {
        fprintf(stderr, "%s: got %d (%s), want %d (%s): %s\n", what, (int)got,
                vt_status_str(got), (int)want, vt_status_str(want),
                err ? vt_error_message(err) : "(no error object)");
        vt_test_failures++;
    } else if (want != VT_OK) {
        if (!err) {
            fprintf(stderr, "%s: no error object\n", what);
            vt_test_failures++;
        } else {
            if (vt_error_code(err) != want) {
                fprintf(stderr, "%s: error code %d != status %d\n", what,
                        (int)vt_error_code(err), (int)want);
                vt_test_failures++;
            }
            if (needle && !strstr(vt_error_message(err), needle)) {
                fprintf(stderr, "%s: message \"%s\" lacks \"%s\"\n", what,
                        vt_error_message(err), needle);
                vt_test_failures++;
            }
        }
    }
    vt_error_free(err);
}

#define EXPECT(want, needle, call)                  \
    do {                                            \
        vt_error *err = NULL;                       \
        vt_status st = (call);                      \
        expect(st, err, (want), #call, (needle));   \
    } while (0)

static int log_count = 0;
static void on_log(vt_log_level level, const char *msg, void *user) {
    (void)level;
    if (msg && user == (void *)&log_count) log_count++;
}

int main(int argc, char **argv) {
    vt_model *model = NULL, *other = NULL, *small = NULL, *untouched = (vt_model *)0x1;
    vt_image *img = NULL, *foreign = NULL, *untouched_img = (vt_image *)0x1;
    vt_embeddings *emb = NULL;
    vt_load_params p;
    const char *images, *broken;
    unsigned char *png, *bytes;
    size_t png_len, len;
    const float *px;
    size_t npx, shape[VT_IMAGE_MAX_DIMS], ndim;
    uint32_t w, h;
    int code;
    unsigned char pixels[4 * 4 * 3] = {0};

    if (argc != 4) {
        fprintf(stderr, "usage: errors <model_dir> <images_dir> <broken_models_dir>\n");
        return 2;
    }
    images = argv[2];
    broken = argv[3];

    /* Status strings. */
    for (code = 0; code <= VT_ERR_PANIC; code++) CHECK(vt_status_str(code) != NULL);
    CHECK(strcmp(vt_status_str(VT_OK), "ok") == 0);
    CHECK(strcmp(vt_status_str(12345), "unknown status") == 0);
    CHECK(strcmp(vt_status_str(VT_ERR_IMAGE_TOO_LARGE), vt_status_str(VT_ERR_IMAGE_DECODE)) != 0);

    /* NULL objects everywhere. */
    vt_model_free(NULL);
    vt_free(NULL); /* vt_free: the old name of vt_model_free */
    vt_image_free(NULL);
    vt_embeddings_free(NULL);
    vt_error_free(NULL);
    CHECK(vt_error_code(NULL) == VT_ERR_INVALID_ARGUMENT);
    CHECK(strcmp(vt_error_message(NULL), "") == 0);
    CHECK(vt_model_family(NULL) == NULL);
    CHECK(vt_model_type(NULL) == NULL);
    CHECK(vt_model_output_dim(NULL) == 0);
    CHECK(vt_model_vision_dim(NULL) == 0);
    CHECK(vt_model_patch_size(NULL) == 0);
    CHECK(vt_model_tokens_per_image(NULL) == 0);
    CHECK(vt_model_n_threads(NULL) == 0);
    CHECK(vt_image_n_tokens(NULL) == 0);
    CHECK(vt_embeddings_count(NULL) == 0);
    CHECK(vt_embeddings_dim(NULL) == 0);
    CHECK(vt_embeddings_n_tokens(NULL, 0) == 0);
    CHECK(vt_embeddings_data(NULL, 0) == NULL);
    CHECK(vt_model_token_id(NULL, VT_TOKEN_IMAGE) == -1);

    /* vt_load arguments. */
    EXPECT(VT_ERR_INVALID_ARGUMENT, "model_dir", vt_load(NULL, NULL, &model, &err));
    EXPECT(VT_ERR_INVALID_ARGUMENT, "model_out", vt_load(argv[1], NULL, NULL, &err));
    EXPECT(VT_ERR_INVALID_ARGUMENT, "UTF-8", vt_load("\xff\xfe", NULL, &model, &err));
    CHECK(vt_load(NULL, NULL, &model, NULL) == VT_ERR_INVALID_ARGUMENT); /* err_out NULL */
    EXPECT(VT_ERR_IO, "/nonexistent/vtower", vt_load("/nonexistent/vtower", NULL, &untouched, &err));
    CHECK(untouched == (vt_model *)0x1); /* outputs untouched on failure */
    EXPECT(VT_ERR_IO, "config.json", vt_load(images, NULL, &model, &err));

    p = vt_load_params_default();
    CHECK(p.struct_size == sizeof(vt_load_params));
    p.struct_size = sizeof(vt_load_params) + 8;
    EXPECT(VT_ERR_INVALID_ARGUMENT, "struct_size", vt_load(argv[1], &p, &model, &err));
    p.struct_size = 0;
    EXPECT(VT_ERR_INVALID_ARGUMENT, "struct_size", vt_load(argv[1], &p, &model, &err));
    p = vt_load_params_default();
    p.dtype = 99;
    EXPECT(VT_ERR_INVALID_ARGUMENT, "dtype", vt_load(argv[1], &p, &model, &err));
    p = vt_load_params_default();
    p.device = 99;
    EXPECT(VT_ERR_INVALID_ARGUMENT, "device", vt_load(argv[1], &p, &model, &err));
    p.device = VT_DEVICE_CUDA;
    if (strstr(vt_version(), "cuda") == NULL)
        EXPECT(VT_ERR_DEVICE, "CUDA", vt_load(argv[1], &p, &model, &err));
    p.device = VT_DEVICE_CPU;
    p.device_ordinal = -1; /* ignored on the CPU */
    p.dtype = VT_DTYPE_BF16;
    EXPECT(VT_OK, NULL, vt_load(argv[1], &p, &model, &err));
    vt_free(model); /* the alias frees a model too */
    model = NULL;

    /* A caller compiled before max_image_tokens existed passes the smaller struct_size of
     * its header; vtower reads nothing past it and uses the default. */
    p = vt_load_params_default();
    CHECK(p.max_image_tokens == 32768);
    p.device = VT_DEVICE_CPU;
    p.max_image_tokens = 1; /* beyond struct_size: not read */
    p.struct_size = (uint32_t)offsetof(vt_load_params, max_image_tokens);
    EXPECT(VT_OK, NULL, vt_load(argv[1], &p, &model, &err));
    {
        /* With the default limit the fixture's 36-token images pass; a limit of 1 would
         * refuse them. */
        char *path = join(images, "rgb.png");
        bytes = read_file(path, &len);
        EXPECT(VT_OK, NULL, vt_preprocess(model, bytes, len, &img, &err));
        CHECK(vt_image_n_tokens(img) > 1);
        vt_image_free(img);
        img = NULL;
        free(bytes);
        free(path);
    }
    vt_model_free(model);
    model = NULL;
    p = vt_load_params_default();
    p.device = VT_DEVICE_CPU;
    p.max_image_tokens = 0; /* 0 = the default */
    EXPECT(VT_OK, NULL, vt_load(argv[1], &p, &model, &err));
    vt_model_free(model);
    model = NULL;

    /* Broken model folders, prepared by the test runner. */
    {
        static const struct {
            const char *dir;
            vt_status want;
            const char *needle;
        } cases[] = {
            {"unknown_model_type", VT_ERR_UNSUPPORTED_MODEL, "siglip"},
            {"no_model_type", VT_ERR_BAD_CONFIG, "model_type"},
            {"bad_json", VT_ERR_BAD_CONFIG, "config.json"},
            {"missing_tensor", VT_ERR_BAD_WEIGHTS, "post_layernorm.weight"},
            {"lying_config", VT_ERR_BAD_WEIGHTS, "expected shape"},
            {"truncated_weights", VT_ERR_BAD_WEIGHTS, "truncated"},
            {"corrupt_header", VT_ERR_BAD_WEIGHTS, "model.safetensors"},
            {"no_weights", VT_ERR_IO, "safetensors"},
            {"absurd_config", VT_ERR_BAD_CONFIG, "num_hidden_layers"},
        };
        size_t i;
        for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
            char *dir = join(broken, cases[i].dir);
            vt_error *err = NULL;
            vt_status st = vt_load(dir, NULL, &model, &err);
            expect(st, err, cases[i].want, cases[i].dir, cases[i].needle);
            free(dir);
        }
    }

    /* A good model, with a log callback to see its messages. */
    vt_log_set(on_log, &log_count);
    p = vt_load_params_default();
    p.n_threads = 1;
    EXPECT(VT_OK, NULL, vt_load(argv[1], &p, &model, &err));
    CHECK(log_count > 0);
    vt_log_set(NULL, NULL);
    EXPECT(VT_OK, NULL, vt_load(argv[1], NULL, &other, &err));
    p.max_image_pixels = 100;
    EXPECT(VT_OK, NULL, vt_load(argv[1], &p, &small, &err));

    /* vt_preprocess. */
    {
        char *path = join(images, "rgb.png");
        png = read_file(path, &png_len);
        free(path);
    }
    EXPECT(VT_ERR_INVALID_ARGUMENT, "model", vt_preprocess(NULL, png, png_len, &img, &err));
    EXPECT(VT_ERR_INVALID_ARGUMENT, "data", vt_preprocess(model, NULL, 5, &img, &err));
    EXPECT(VT_ERR_INVALID_ARGUMENT, "image_out", vt_preprocess(model, png, png_len, NULL, &err));
    EXPECT(VT_ERR_IMAGE_DECODE, NULL, vt_preprocess(model, NULL, 0, &untouched_img, &err));
    CHECK(untouched_img == (vt_image *)0x1);
    EXPECT(VT_ERR_IMAGE_DECODE, NULL, vt_preprocess(model, png, 40, &img, &err));
    EXPECT(VT_ERR_IMAGE_TOO_LARGE, "100", vt_preprocess(small, png, png_len, &img, &err));
    {
        static const struct {
            const char *file;
            vt_status want;
        } bad[] = {
            {"garbage.bin", VT_ERR_IMAGE_DECODE},
            {"empty.bin", VT_ERR_IMAGE_DECODE},
            {"truncated.jpg", VT_ERR_IMAGE_DECODE},
            {"truncated.png", VT_ERR_IMAGE_DECODE},
            {"huge_header.png", VT_ERR_IMAGE_TOO_LARGE},
        };
        size_t i;
        for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
            char *path = join(images, bad[i].file);
            vt_error *err = NULL;
            vt_status st;
            bytes = read_file(path, &len);
            st = vt_preprocess(model, bytes, len, &img, &err);
            expect(st, err, bad[i].want, bad[i].file, NULL);
            free(bytes);
            free(path);
        }
    }

    /* vt_preprocess_rgb8. */
    EXPECT(VT_ERR_INVALID_ARGUMENT, "pixels", vt_preprocess_rgb8(model, NULL, 4, 4, 12, &img, &err));
    EXPECT(VT_ERR_INVALID_ARGUMENT, "empty", vt_preprocess_rgb8(model, pixels, 0, 4, 12, &img, &err));
    EXPECT(VT_ERR_INVALID_ARGUMENT, "row_stride", vt_preprocess_rgb8(model, pixels, 4, 4, 11, &img, &err));
    EXPECT(VT_ERR_INVALID_ARGUMENT, "image_out", vt_preprocess_rgb8(model, pixels, 4, 4, 12, NULL, &err));
    EXPECT(VT_ERR_IMAGE_TOO_LARGE, NULL, vt_preprocess_rgb8(model, pixels, 100000, 100000, 300000, &img, &err));
    EXPECT(VT_ERR_IMAGE_TOO_LARGE, NULL, vt_preprocess_rgb8(small, pixels, 11, 10, 33, &img, &err));

    /* Image accessors. */
    EXPECT(VT_OK, NULL, vt_preprocess(model, png, png_len, &img, &err));
    EXPECT(VT_OK, NULL, vt_preprocess_rgb8(other, pixels, 4, 4, 12, &foreign, &err));
    EXPECT(VT_ERR_INVALID_ARGUMENT, "image", vt_image_pixels(NULL, &px, &npx, &err));
    EXPECT(VT_ERR_INVALID_ARGUMENT, "data_out", vt_image_pixels(img, NULL, &npx, &err));
    EXPECT(VT_ERR_INVALID_ARGUMENT, "len_out", vt_image_pixels(img, &px, NULL, &err));
    EXPECT(VT_ERR_INVALID_ARGUMENT, "image", vt_image_shape(NULL, shape, &ndim, &err));
    EXPECT(VT_ERR_INVALID_ARGUMENT, "shape_out", vt_image_shape(img, NULL, &ndim, &err));
    EXPECT(VT_ERR_INVALID_ARGUMENT, "ndim_out", vt_image_shape(img, shape, NULL, &err));
    {
        uint32_t t, r, c;
        EXPECT(VT_ERR_INVALID_ARGUMENT, "image", vt_image_token_grid(NULL, &t, &r, &c, &err));
        EXPECT(VT_ERR_INVALID_ARGUMENT, "frames_out", vt_image_token_grid(img, NULL, &r, &c, &err));
        EXPECT(VT_ERR_INVALID_ARGUMENT, "rows_out", vt_image_token_grid(img, &t, NULL, &c, &err));
        EXPECT(VT_ERR_INVALID_ARGUMENT, "cols_out", vt_image_token_grid(img, &t, &r, NULL, &err));
        CHECK(vt_model_token_id(model, 999) == -1);
    }
    /* vt_image_prompt and its accessors. */
    {
        vt_prompt *layout = NULL;
        vt_prompt_segment seg;
        EXPECT(VT_ERR_INVALID_ARGUMENT, "model", vt_image_prompt(NULL, img, &layout, &err));
        EXPECT(VT_ERR_INVALID_ARGUMENT, "image", vt_image_prompt(model, NULL, &layout, &err));
        EXPECT(VT_ERR_INVALID_ARGUMENT, "prompt_out", vt_image_prompt(model, img, NULL, &err));
        EXPECT(VT_ERR_INVALID_ARGUMENT, "another model", vt_image_prompt(model, foreign, &layout, &err));
        CHECK(layout == NULL);
        EXPECT(VT_OK, NULL, vt_image_prompt(model, img, &layout, &err));
        CHECK(vt_prompt_n_segments(layout) == 1);
        CHECK(vt_prompt_n_segments(NULL) == 0);
        seg.struct_size = sizeof seg;
        EXPECT(VT_ERR_INVALID_ARGUMENT, "prompt", vt_prompt_segment_at(NULL, 0, &seg, &err));
        EXPECT(VT_ERR_INVALID_ARGUMENT, "segment_out", vt_prompt_segment_at(layout, 0, NULL, &err));
        EXPECT(VT_ERR_INVALID_ARGUMENT, "segment 1 of a layout of 1", vt_prompt_segment_at(layout, 1, &seg, &err));
        seg.struct_size = 8;
        EXPECT(VT_ERR_INVALID_ARGUMENT, "struct_size 8", vt_prompt_segment_at(layout, 0, &seg, &err));
        seg.struct_size = sizeof seg;
        EXPECT(VT_OK, NULL, vt_prompt_segment_at(layout, 0, &seg, &err));
        CHECK(seg.kind == VT_SEGMENT_EMBEDDINGS && seg.start == 0 && seg.count == vt_image_n_tokens(img));
        CHECK(seg.token_id == -1 && seg.text == NULL && seg.text_len == 0);
        vt_prompt_free(layout);
        vt_prompt_free(NULL);
    }
    EXPECT(VT_ERR_INVALID_ARGUMENT, "model", vt_model_image_size(NULL, &w, &h, &err));
    EXPECT(VT_ERR_INVALID_ARGUMENT, "width_out", vt_model_image_size(model, NULL, &h, &err));
    EXPECT(VT_ERR_INVALID_ARGUMENT, "height_out", vt_model_image_size(model, &w, NULL, &err));

    /* vt_forward. */
    {
        const vt_image *list[2];
        vt_embeddings *untouched_emb = (vt_embeddings *)0x1;
        list[0] = img;
        list[1] = NULL;
        EXPECT(VT_ERR_INVALID_ARGUMENT, "model", vt_forward(NULL, list, 1, &emb, &err));
        EXPECT(VT_ERR_INVALID_ARGUMENT, "out", vt_forward(model, list, 1, NULL, &err));
        EXPECT(VT_ERR_INVALID_ARGUMENT, "images", vt_forward(model, NULL, 1, &emb, &err));
        EXPECT(VT_ERR_INVALID_ARGUMENT, "images[1]", vt_forward(model, list, 2, &untouched_emb, &err));
        CHECK(untouched_emb == (vt_embeddings *)0x1);
        list[1] = foreign;
        EXPECT(VT_ERR_INVALID_ARGUMENT, "another model", vt_forward(model, list, 2, &emb, &err));
        EXPECT(VT_OK, NULL, vt_forward(model, NULL, 0, &emb, &err));
        CHECK(vt_embeddings_count(emb) == 0);
        CHECK(vt_embeddings_data(emb, 0) == NULL);
        vt_embeddings_free(emb);

        /* Copying embeddings out. */
        {
            float buf[4];
            EXPECT(VT_OK, NULL, vt_forward(model, list, 1, &emb, &err));
            EXPECT(VT_ERR_INVALID_ARGUMENT, "e", vt_embeddings_copy(NULL, 0, VT_DTYPE_F32, buf, sizeof buf, &err));
            EXPECT(VT_ERR_INVALID_ARGUMENT, "dst", vt_embeddings_copy(emb, 0, VT_DTYPE_F32, NULL, sizeof buf, &err));
            EXPECT(VT_ERR_INVALID_ARGUMENT, "dtype", vt_embeddings_copy(emb, 0, 77, buf, sizeof buf, &err));
            EXPECT(VT_ERR_INVALID_ARGUMENT, "dtype", vt_embeddings_copy(emb, 0, VT_DTYPE_AUTO, buf, sizeof buf, &err));
            EXPECT(VT_ERR_INVALID_ARGUMENT, "dst_bytes", vt_embeddings_copy(emb, 0, VT_DTYPE_F32, buf, sizeof buf, &err));
            EXPECT(VT_ERR_INVALID_ARGUMENT, "out of range", vt_embeddings_copy(emb, 1, VT_DTYPE_F32, buf, sizeof buf, &err));
            EXPECT(VT_ERR_INVALID_ARGUMENT, "e", vt_embeddings_copy_to_cuda(NULL, 0, VT_DTYPE_BF16, 4096, 64, &err));
            EXPECT(VT_ERR_INVALID_ARGUMENT, "dst_device_ptr", vt_embeddings_copy_to_cuda(emb, 0, VT_DTYPE_BF16, 0, 64, &err));
            /* The model runs on the CPU: there is no device copy to make. */
            EXPECT(VT_ERR_DEVICE, NULL, vt_embeddings_copy_to_cuda(emb, 0, VT_DTYPE_BF16, 4096, 1 << 20, &err));
            vt_embeddings_free(emb);
        }
    }

    vt_image_free(img);
    vt_image_free(foreign);
    vt_model_free(model);
    vt_model_free(other);
    vt_model_free(small);
    free(png);
    return finish("errors");
}
