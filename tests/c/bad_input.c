/* Every class of bad input has its own status code and a message (issue #8): this
 * program provokes each status the C API returns for bad input and checks the code and
 * that varad_last_error_message() is non-empty. Statuses that bad input cannot cause are
 * listed at the end (they report bugs, concurrency or the environment).
 * Run from the repository root. Exit status 0 = pass. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "varad.h"

#define BACKBONE "tests/data/tiny_vit.onnx"

static int failures = 0;
static int seen[32];

/* Checks that `call` returned `expected` with a non-empty message, and records it. */
static void expect(VaradStatus got, VaradStatus expected, const char *what, int line) {
    const char *msg = varad_last_error_message();
    if (got != expected) {
        fprintf(stderr, "bad_input.c:%d: %s returned %d, expected %d (%s)\n", line, what,
                (int)got, (int)expected, msg ? msg : "(no message)");
        failures++;
        return;
    }
    if (msg == NULL || msg[0] == '\0') {
        fprintf(stderr, "bad_input.c:%d: %s: status %d without a message\n", line, what,
                (int)got);
        failures++;
        return;
    }
    seen[(int)expected] = 1;
    printf("  %2d %-28s %s\n", (int)expected, what, msg);
}

#define EXPECT(call, status) expect((call), (status), #call, __LINE__)

#define OK(call)                                                                        \
    do {                                                                                \
        VaradStatus s_ = (call);                                                        \
        if (s_ != VARAD_OK) {                                                           \
            fprintf(stderr, "bad_input.c:%d: %s -> %d: %s\n", __LINE__, #call, (int)s_,  \
                    varad_last_error_message());                                        \
            exit(1);                                                                    \
        }                                                                               \
    } while (0)

static VaradParams tiny_params(void) {
    VaradParams p;
    OK(varad_params_init(&p, sizeof p));
    p.backbone_path = BACKBONE;
    p.input_width = 112;
    p.input_height = 112;
    p.device = VARAD_DEVICE_CPU;
    p.threads = 1;
    p.prediction_step = 2;
    p.d_state = 4;
    p.epochs = 1;
    return p;
}

static VaradImageView view_of(const unsigned char *pixels, unsigned w, unsigned h) {
    VaradImageView v;
    v.data = pixels;
    v.width = w;
    v.height = h;
    v.stride = 0;
    v.format = VARAD_PIXEL_FORMAT_RGB8;
    return v;
}

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    if (!f) {
        perror(path);
        exit(1);
    }
    fputs(text, f);
    fclose(f);
}

int main(void) {
    static unsigned char pixels[200 * 200 * 3];
    VaradModel *model = NULL, *other = NULL;
    VaradScoreResult *result = NULL;
    VaradScoreResult *results[2] = {NULL, NULL};
    VaradTrainingSet *set = NULL;
    VaradImage *image = NULL;
    VaradParams p;
    VaradScoreParams sp;
    VaradImageView v, views[2];
    char small[2];
    size_t needed = 0;
    float value = 0.0f;
    int i;

    memset(pixels, 90, sizeof pixels);
    printf("bad input -> status, message:\n");

    /* 7: ONNX Runtime missing (a path that does not exist). */
    EXPECT(varad_runtime_load("/nonexistent/libonnxruntime.so"), VARAD_ERR_RUNTIME_NOT_FOUND);

    /* 2: a required pointer is NULL. */
    EXPECT(varad_create(NULL, &model), VARAD_ERR_NULL_POINTER);

    /* 1: an argument out of range: a params struct claiming a size below the first
     * version's. */
    p = tiny_params();
    p.size = 8;
    EXPECT(varad_create(&p, &model), VARAD_ERR_INVALID_ARGUMENT);

    /* 6: a file that cannot be read. */
    p = tiny_params();
    p.backbone_path = "/nonexistent/backbone.onnx";
    EXPECT(varad_create(&p, &model), VARAD_ERR_IO);

    /* 9: a backbone that breaks the contract, or a file that is no ONNX model at all. */
    p = tiny_params();
    p.backbone_path = "tests/data/contract/no_metadata.onnx";
    EXPECT(varad_create(&p, &model), VARAD_ERR_BACKBONE_CONTRACT);
    p.backbone_path = "tests/data/contract/not_onnx.onnx";
    EXPECT(varad_create(&p, &model), VARAD_ERR_BACKBONE_CONTRACT);

    /* 10: an invalid configuration. */
    p = tiny_params();
    p.epochs = 0;
    EXPECT(varad_create(&p, &model), VARAD_ERR_CONFIG);

    /* 12: a CUDA device that cannot be used. */
    p = tiny_params();
    p.device = VARAD_DEVICE_CUDA;
    p.cuda_device = 99;
    EXPECT(varad_create(&p, &model), VARAD_ERR_CUDA);

    /* 11: a model file that is not one. */
    write_file("target/c/bad_input_model.varad", "this is not a model file");
    EXPECT(varad_load("target/c/bad_input_model.varad", NULL, &other), VARAD_ERR_MODEL_FILE);

    /* 5: an image file that cannot be decoded. */
    write_file("target/c/bad_input_image.png", "\x89PNG\r\n\x1a\n but then garbage");
    EXPECT(varad_image_read("target/c/bad_input_image.png", &image), VARAD_ERR_IMAGE_DECODE);

    /* A working model with small limits: 100 x 100 pixels, 500 kB batches (one 100 x 100
     * image needs about 320 kB, two about 640 kB), no token cache
     * in memory and 1 byte of spill. */
    p = tiny_params();
    p.max_image_pixels = 100 * 100;
    p.max_batch_bytes = 500000;
    p.cache_limit_bytes = 0;
    p.cache_disk_limit_bytes = 1;
    OK(varad_create(&p, &model));

    /* 3: an unusable image view (unknown format; stride shorter than a row). */
    v = view_of(pixels, 64, 64);
    v.format = 0;
    EXPECT(varad_score(model, &v, NULL, &result), VARAD_ERR_INVALID_IMAGE);
    v = view_of(pixels, 64, 64);
    v.stride = 10;
    EXPECT(varad_score(model, &v, NULL, &result), VARAD_ERR_INVALID_IMAGE);

    /* 4: an image over the pixel limit. */
    v = view_of(pixels, 101, 100);
    EXPECT(varad_score(model, &v, NULL, &result), VARAD_ERR_IMAGE_TOO_LARGE);

    /* 19: a batch over the per-call memory limit (each image is within the pixel
     * limit). */
    for (i = 0; i < 2; i++) {
        views[i] = view_of(pixels, 100, 100);
    }
    EXPECT(varad_score_batch(model, views, 2, NULL, results), VARAD_ERR_BATCH_TOO_LARGE);

    /* 20: the training cache is full (nothing in memory, 1 byte on disk). */
    OK(varad_training_set_create(model, &set));
    v = view_of(pixels, 64, 64);
    EXPECT(varad_training_set_add(set, model, &v), VARAD_ERR_CACHE_FULL);
    varad_training_set_destroy(set);

    /* 1 again: a ROI of the wrong size. */
    OK(varad_score_params_init(&sp, sizeof sp));
    sp.roi = pixels;
    sp.roi_len = 5;
    v = view_of(pixels, 64, 64);
    EXPECT(varad_score(model, &v, &sp, &result), VARAD_ERR_INVALID_ARGUMENT);

    /* 18: a threshold of a model that was never trained. */
    EXPECT(varad_get_threshold(model, VARAD_THRESHOLD_IMAGE, &value), VARAD_ERR_NOT_CALIBRATED);

    /* 21: a valid image scored with a model that was never trained. */
    v = view_of(pixels, 64, 64);
    EXPECT(varad_score(model, &v, NULL, &result), VARAD_ERR_NOT_TRAINED);

    /* 14: an output buffer too small (the runtime's path needs more than 2 bytes). */
    EXPECT(varad_runtime_path(small, sizeof small, &needed), VARAD_ERR_BUFFER_TOO_SMALL);
    if (needed <= sizeof small) {
        fprintf(stderr, "bad_input.c: needed %lu is not larger than the buffer\n",
                (unsigned long)needed);
        failures++;
    }

    varad_destroy(model);
    varad_destroy(other);
    varad_image_destroy(image);

    /* Every status bad input can cause was seen. Not caused by bad input, so not here:
     * 8 VARAD_ERR_RUNTIME (ONNX Runtime itself failing), 13 VARAD_ERR_CANCELLED (the
     * caller's callback), 15 VARAD_ERR_PANIC and 16 VARAD_ERR_INTERNAL (bugs),
     * 17 VARAD_ERR_BUSY (concurrent use; tests/ffi.rs). */
    {
        static const int codes[] = {1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 14, 18, 19, 20, 21};
        for (i = 0; i < (int)(sizeof codes / sizeof codes[0]); i++) {
            if (!seen[codes[i]]) {
                fprintf(stderr, "bad_input.c: status %d was never provoked\n", codes[i]);
                failures++;
            }
        }
    }
    if (failures) {
        fprintf(stderr, "bad_input: %d failure(s)\n", failures);
        return 1;
    }
    printf("bad_input: all %d bad-input statuses seen with messages\n", 15);
    return 0;
}
