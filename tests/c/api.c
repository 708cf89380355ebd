/* The C ABI end to end from C: create a model on the tiny test ViT, train it from images
 * added one at a time (with a progress callback), score single and batch, read decision
 * and regions, change thresholds, save and load; plus the error paths a C caller meets.
 * Run from the repository root. Exit status 0 = pass. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "varad.h"

#include "check.h"

/* Stripes with a phase from `seed` (tests/common texture), RGB8. */
static void texture(unsigned seed, unsigned size, unsigned char *out) {
    unsigned phase = seed * 37 % 17, x, y;
    for (y = 0; y < size; y++) {
        for (x = 0; x < size; x++) {
            unsigned char v = (((x + phase) / 6 + y / 9) % 2 == 0) ? 180 : 60;
            unsigned char *p = out + 3 * (y * size + x);
            p[0] = v;
            p[1] = (unsigned char)(v / 2 + 20);
            p[2] = (unsigned char)(255 - v);
        }
    }
}

static VaradImageView view_of(const unsigned char *pixels, unsigned size) {
    VaradImageView v;
    v.data = pixels;
    v.width = size;
    v.height = size;
    v.stride = (size_t)size * 3;
    v.format = VARAD_PIXEL_FORMAT_RGB8;
    return v;
}

static int progress_calls = 0;

static int32_t on_progress(const VaradProgress *p, void *user_data) {
    CHECK(user_data == (void *)&progress_calls);
    CHECK(p->epoch >= 1 && p->epoch <= p->epochs);
    CHECK(p->step >= 1 && p->step <= p->steps);
    progress_calls++;
    return 0;
}

int main(void) {
    enum { SIZE = 128 };
    static unsigned char pixels[SIZE * SIZE * 3];
    VaradParams params;
    VaradModel *model = NULL, *loaded = NULL, *untouched = (VaradModel *)&failures;
    VaradTrainingSet *set = NULL;
    VaradScoreResult *result = NULL, *batch[2] = {NULL, NULL};
    VaradTrainReport report;
    VaradImageView views[2], view;
    const float *map = NULL;
    const VaradRegion *regions = NULL;
    size_t len = 0, count = 0, found = 0, i;
    uint32_t width = 0, height = 0;
    VaradDecision decision = 0;
    VaradDevice device = 99;
    float score = 0, norm = 0, review = 0, fail = 0, value = 0;
    static unsigned char second[SIZE * SIZE * 3];

    /* Parameters: filled by their init call, whose size must be one a struct has. */
    CHECK(varad_params_init(&params, 4) == VARAD_ERR_INVALID_ARGUMENT);
    CHECK(varad_params_init(NULL, sizeof params) == VARAD_ERR_NULL_POINTER);
    CHECK(varad_params_init(&params, sizeof params) == VARAD_OK);
    CHECK(params.size == sizeof(VaradParams));
    CHECK(params.epochs == 10 && params.prediction_step == 4);
    CHECK(varad_create(&params, &model) == VARAD_ERR_NULL_POINTER); /* no backbone */
    params.backbone_path = "tests/data/tiny_vit.onnx";
    params.size = 8;
    CHECK(varad_create(&params, &untouched) == VARAD_ERR_INVALID_ARGUMENT);
    CHECK(untouched == (VaradModel *)&failures);
    CHECK(strstr(varad_last_error_message(), "size") != NULL);
    params.size = sizeof params;
    params.input_width = 112;
    params.input_height = 112;
    params.device = VARAD_DEVICE_CPU;
    params.threads = 2;
    params.prediction_step = 2;
    params.d_state = 4;
    params.epochs = 3;
    params.learning_rate = 2e-3;
    params.seed = 5;
    OK(varad_create(&params, &model));
    OK(varad_active_device(model, &device, NULL));
    CHECK(device == VARAD_DEVICE_CPU);

    /* Training images one by one; each buffer is reused right after the call. */
    OK(varad_training_set_create(model, &set));
    for (i = 0; i < 6; i++) {
        texture((unsigned)i, SIZE, pixels);
        view = view_of(pixels, SIZE);
        OK(varad_training_set_add(set, model, &view));
    }
    view.format = 0;
    CHECK(varad_training_set_add(set, model, &view) == VARAD_ERR_INVALID_IMAGE);
    OK(varad_training_set_count(set, &count));
    CHECK(count == 6);
    memset(&report, 0, sizeof report);
    report.size = sizeof report;
    OK(varad_train(model, set, on_progress, &progress_calls, &report));
    CHECK(progress_calls > 0 && (uint32_t)progress_calls == report.steps);
    CHECK(report.train_images + report.calibration_images == 6);
    printf("trained: %u images, %u held back, loss %.4g, %.2f s\n", report.train_images,
           report.calibration_images, report.final_loss, report.elapsed_seconds);
    varad_training_set_destroy(set);

    /* One image. */
    texture(40, SIZE, pixels);
    view = view_of(pixels, SIZE);
    OK(varad_score(model, &view, NULL, &result));
    OK(varad_result_map(result, &map, &len, &width, &height));
    CHECK(width == SIZE && height == SIZE && len == (size_t)SIZE * SIZE);
    OK(varad_result_image_score(result, &score));
    OK(varad_result_normalised_score(result, &norm));
    OK(varad_result_decision(result, &decision));
    OK(varad_result_regions(result, &regions, &count, &found));
    CHECK(decision >= VARAD_DECISION_PASS && decision <= VARAD_DECISION_FAIL);
    CHECK(count <= found && (count == 0) == (regions == NULL));
    printf("score %.4g (normalised %.3f), decision %u, %zu regions\n", score, norm, decision, count);

    /* A batch gives what single calls give, bit for bit. */
    texture(41, SIZE, second);
    views[0] = view_of(pixels, SIZE);
    views[1] = view_of(second, SIZE);
    OK(varad_score_batch(model, views, 2, NULL, batch));
    {
        const float *bmap = NULL;
        size_t blen = 0;
        OK(varad_result_map(batch[0], &bmap, &blen, NULL, NULL));
        CHECK(blen == len && memcmp(bmap, map, len * sizeof *map) == 0);
    }
    varad_score_result_destroy(batch[0]);
    varad_score_result_destroy(batch[1]);

    /* Thresholds. */
    OK(varad_get_threshold(model, VARAD_THRESHOLD_REVIEW, &review));
    OK(varad_get_threshold(model, VARAD_THRESHOLD_FAIL, &fail));
    CHECK(review <= fail);
    CHECK(varad_set_threshold(model, VARAD_THRESHOLD_REVIEW, fail + 1.0f) == VARAD_ERR_INVALID_ARGUMENT);
    OK(varad_set_decision_thresholds(model, score * 2.0f, score * 3.0f));
    varad_score_result_destroy(result);
    OK(varad_score(model, &view, NULL, &result));
    OK(varad_result_decision(result, &decision));
    CHECK(decision == VARAD_DECISION_PASS);
    varad_score_result_destroy(result);

    /* Save and load. */
    OK(varad_save(model, "target/c/api_test.varad"));
    OK(varad_load("target/c/api_test.varad", NULL, &loaded));
    OK(varad_get_threshold(loaded, VARAD_THRESHOLD_REVIEW, &value));
    CHECK(value == score * 2.0f);
    CHECK(varad_load("target/c/missing.varad", NULL, &untouched) == VARAD_ERR_IO);
    CHECK(untouched == (VaradModel *)&failures);

    /* Errors. */
    CHECK(varad_score(NULL, &view, NULL, &result) == VARAD_ERR_NULL_POINTER);
    CHECK(varad_score(loaded, &view, NULL, NULL) == VARAD_ERR_NULL_POINTER);
    CHECK(varad_get_threshold(loaded, 42, &value) == VARAD_ERR_INVALID_ARGUMENT);
    {
        VaradScoreParams sp;
        static unsigned char roi[10];
        CHECK(varad_score_params_init(&sp, sizeof sp) == VARAD_OK);
        sp.roi = roi;
        sp.roi_len = sizeof roi;
        CHECK(varad_score(loaded, &view, &sp, &result) == VARAD_ERR_INVALID_ARGUMENT);
    }

    varad_destroy(loaded);
    varad_destroy(model);
    varad_destroy(NULL);
    varad_training_set_destroy(NULL);
    varad_score_result_destroy(NULL);
    varad_image_destroy(NULL);
    remove("target/c/api_test.varad");
    if (failures) {
        fprintf(stderr, "api: %d checks failed\n", failures);
        return 1;
    }
    printf("api: all checks passed\n");
    return 0;
}
