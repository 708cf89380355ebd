/* The calibration from C: train with known-defective examples, read the calibration
 * report (sizes, sources, rates, escapes), a score's conformal p-value, the report after
 * a save and load, and the errors of these calls. Run from the repository root. Exit
 * status 0 = pass. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "varad.h"

#include "check.h"

enum { SIZE = 128, GOOD = 8, DEFECTIVE = 2 };

/* Stripes with a phase from `seed` (tests/common texture), RGB8; `defect` paints a
 * bright square into them. */
static void texture(unsigned seed, int defect, unsigned char *out) {
    unsigned phase = seed * 37 % 17, x, y;
    for (y = 0; y < SIZE; y++) {
        for (x = 0; x < SIZE; x++) {
            unsigned char v = (((x + phase) / 6 + y / 9) % 2 == 0) ? 180 : 60;
            unsigned char *p = out + 3 * (y * SIZE + x);
            if (defect && x >= 40 && x < 80 && y >= 50 && y < 90) {
                v = 255;
            }
            p[0] = v;
            p[1] = (unsigned char)(v / 2 + 20);
            p[2] = (unsigned char)(255 - v);
        }
    }
}

static VaradImageView view_of(const unsigned char *pixels) {
    VaradImageView v;
    v.data = pixels;
    v.width = SIZE;
    v.height = SIZE;
    v.stride = (size_t)SIZE * 3;
    v.format = VARAD_PIXEL_FORMAT_RGB8;
    return v;
}

static int in_unit(double rate) { return rate > 0.0 && rate <= 1.0; }

/* The figures every report must satisfy, whatever the data. */
static void check_report(const VaradCalibrationReport *r, const char *what) {
    printf("%s: n %u (%u cross-fitted, %u held out), achievable %.4g\n", what, r->n,
           r->cross_fitted, r->held_out, r->achievable_rate);
    printf("  review: requested %.4g, threshold %.5g, expected %.4g, conformal %.4g, 95%% bound "
           "%.4g, extrapolated %u, needs %llu (%llu at 95%%)\n",
           r->review_requested, r->review_threshold, r->review_expected,
           r->review_conformal_rate, r->review_upper_bound, r->review_extrapolated,
           (unsigned long long)r->review_images_needed,
           (unsigned long long)r->review_images_needed_confident);
    printf("  fail: requested %.4g, threshold %.5g, expected %.4g, 95%% bound %.4g, "
           "extrapolated %u\n",
           r->fail_requested, r->fail_threshold, r->fail_expected, r->fail_upper_bound,
           r->fail_extrapolated);
    printf("  known defects %u, escapes %u, review lowered %u (from %.5g)\n", r->known_defects,
           r->escapes, r->review_lowered, r->review_lowered_from);
    CHECK(r->size == sizeof *r);
    CHECK(r->n >= 3 && r->n == r->cross_fitted + r->held_out);
    CHECK(r->achievable_rate == 1.0 / (r->n + 1.0));
    CHECK(r->review_requested == 0.01 && r->fail_requested == 0.001);
    CHECK(in_unit(r->review_expected) && in_unit(r->review_conformal_rate));
    CHECK(in_unit(r->review_upper_bound) && in_unit(r->fail_upper_bound));
    CHECK(in_unit(r->fail_expected) && in_unit(r->fail_conformal_rate));
    CHECK(r->review_conformal_rate <= r->review_upper_bound);
    CHECK(r->review_threshold <= r->fail_threshold);
    CHECK(r->fail_upper_bound <= r->review_upper_bound);
    /* 1 / 0.01 - 1 and 1 / 0.001 - 1 good images; more for 95% confidence. */
    CHECK(r->review_images_needed == 99 && r->fail_images_needed == 999);
    CHECK(r->review_images_needed_confident > r->review_images_needed);
    CHECK(r->fail_images_needed_confident > r->fail_images_needed);
    /* A few images cannot support 0.001 without the tail. */
    CHECK(r->fail_extrapolated == 1 && r->fail_expected == 0.001);
    CHECK(r->known_defects == DEFECTIVE && r->escapes <= r->known_defects);
}

/* Trains a model on GOOD striped images plus DEFECTIVE known-defective ones. */
static VaradModel *trained(uint32_t catch_known_defects) {
    static unsigned char pixels[SIZE * SIZE * 3];
    VaradParams params;
    VaradModel *model = NULL;
    VaradTrainingSet *set = NULL;
    VaradImageView view;
    size_t count = 0;
    unsigned i;

    OK(varad_params_init(&params, sizeof params));
    CHECK(params.cross_fit_folds == 5 && params.target_false_fail_rate == 0.001);
    CHECK(params.beyond_data == VARAD_BEYOND_DATA_LOG_NORMAL_TAIL);
    CHECK(params.catch_known_defects == 0 && params.reserved == 0);
    params.backbone_path = "tests/data/tiny_vit.onnx";
    params.input_width = 112;
    params.input_height = 112;
    params.device = VARAD_DEVICE_CPU;
    params.threads = 2;
    params.prediction_step = 2;
    params.d_state = 4;
    params.epochs = 2;
    params.learning_rate = 2e-3;
    params.seed = 7;
    params.catch_known_defects = catch_known_defects;
    OK(varad_create(&params, &model));

    OK(varad_training_set_create(model, &set));
    for (i = 0; i < GOOD; i++) {
        texture(i, 0, pixels);
        view = view_of(pixels);
        OK(varad_training_set_add(set, model, &view));
    }
    for (i = 0; i < DEFECTIVE; i++) {
        texture(50 + i, 1, pixels);
        view = view_of(pixels);
        OK(varad_training_set_add_defective(set, model, &view));
    }
    view.format = 0;
    CHECK(varad_training_set_add_defective(set, model, &view) == VARAD_ERR_INVALID_IMAGE);
    CHECK(varad_training_set_add_defective(NULL, model, &view) == VARAD_ERR_NULL_POINTER);
    OK(varad_training_set_count(set, &count));
    CHECK(count == GOOD);
    OK(varad_training_set_defective_count(set, &count));
    CHECK(count == DEFECTIVE);
    CHECK(varad_training_set_defective_count(set, NULL) == VARAD_ERR_NULL_POINTER);
    OK(varad_train(model, set, NULL, NULL, NULL));
    varad_training_set_destroy(set);
    return model;
}

int main(void) {
    static unsigned char pixels[SIZE * SIZE * 3];
    VaradParams params;
    VaradModel *model = NULL, *loaded = NULL, *untrained = NULL;
    VaradCalibrationReport report, again, untouched;
    VaradScoreResult *result = NULL;
    VaradImageView view;
    double p = 0, p_defect = 0;
    float review = 0, fail = 0;

    /* Not calibrated yet. */
    OK(varad_params_init(&params, sizeof params));
    params.backbone_path = "tests/data/tiny_vit.onnx";
    params.input_width = 112;
    params.input_height = 112;
    params.device = VARAD_DEVICE_CPU;
    params.prediction_step = 2;
    OK(varad_create(&params, &untrained));
    memset(&report, 0, sizeof report);
    report.size = sizeof report;
    CHECK(varad_get_calibration_report(untrained, &report) == VARAD_ERR_NOT_CALIBRATED);
    CHECK(report.n == 0);
    varad_destroy(untrained);

    model = trained(0);
    CHECK(varad_get_calibration_report(NULL, &report) == VARAD_ERR_NULL_POINTER);
    CHECK(varad_get_calibration_report(model, NULL) == VARAD_ERR_NULL_POINTER);
    /* A size short of the first layout is refused and nothing is written. */
    memset(&untouched, 0xAB, sizeof untouched);
    untouched.size = 16;
    CHECK(varad_get_calibration_report(model, &untouched) == VARAD_ERR_INVALID_ARGUMENT);
    CHECK(untouched.n == 0xABABABABu);
    CHECK(strstr(varad_last_error_message(), "size") != NULL);

    OK(varad_get_calibration_report(model, &report));
    check_report(&report, "trained");
    OK(varad_get_threshold(model, VARAD_THRESHOLD_REVIEW, &review));
    OK(varad_get_threshold(model, VARAD_THRESHOLD_FAIL, &fail));
    CHECK(report.review_threshold == review && report.fail_threshold == fail);
    CHECK(report.review_lowered == 0 && report.review_lowered_from == 0.0f);

    /* p-values: in [1 / (n + 1), 1]. */
    texture(3, 0, pixels);
    view = view_of(pixels);
    OK(varad_score(model, &view, NULL, &result));
    OK(varad_result_p_value(result, &p));
    CHECK(p >= report.achievable_rate && p <= 1.0);
    CHECK(varad_result_p_value(result, NULL) == VARAD_ERR_NULL_POINTER);
    CHECK(varad_result_p_value(NULL, &p) == VARAD_ERR_NULL_POINTER);
    varad_score_result_destroy(result);
    texture(50, 1, pixels);
    OK(varad_score(model, &view, NULL, &result));
    OK(varad_result_p_value(result, &p_defect));
    CHECK(p_defect >= report.achievable_rate && p_defect <= 1.0);
    printf("p-value: good %.4g, defective %.4g\n", p, p_defect);
    varad_score_result_destroy(result);

    /* The file keeps every figure. */
    OK(varad_save(model, "target/c/calibration_test.varad"));
    OK(varad_load("target/c/calibration_test.varad", NULL, &loaded));
    memset(&again, 0, sizeof again);
    again.size = sizeof again;
    OK(varad_get_calibration_report(loaded, &again));
    CHECK(memcmp(&again, &report, sizeof report) == 0);
    varad_destroy(loaded);
    varad_destroy(model);
    remove("target/c/calibration_test.varad");

    /* Catching the known defects: none escapes, at a review threshold never higher. */
    model = trained(1);
    memset(&report, 0, sizeof report);
    report.size = sizeof report;
    OK(varad_get_calibration_report(model, &report));
    check_report(&report, "catching known defects");
    CHECK(report.escapes == 0);
    CHECK(report.review_lowered == 0 || report.review_lowered_from > report.review_threshold);
    varad_destroy(model);

    if (failures) {
        fprintf(stderr, "calibration: %d checks failed\n", failures);
        return 1;
    }
    printf("calibration: all checks passed\n");
    return 0;
}
