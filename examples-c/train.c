/* train: trains a varad model on a folder of good images and saves it.
 *
 *   train [--input N] [--epochs N] BACKBONE.onnx GOOD_IMAGE_DIR MODEL_OUT
 *
 * --input N sets an N x N backbone input (default: the backbone's preferred size).
 * Every file in the folder that the library can read (PNG, JPEG, TIFF, BMP) is used, in
 * the order of their names: the order a folder lists its files in differs between file
 * systems, and the training images' order decides which are held back for calibration,
 * so sorting makes a rerun anywhere train the same model. */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "varad.h"

static int fail(const char *what) {
    fprintf(stderr, "train: %s: %s\n", what, varad_last_error_message());
    return 1;
}

static int by_name(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The names in the folder not starting with '.', sorted, into `*out` (NULL when there are
 * none) and their number into `*count`; the caller frees each name and the array.
 * Returns 0, or 1 on failure (reported). */
static int sorted_names(const char *dir_path, char ***out, size_t *count) {
    DIR *dir = opendir(dir_path);
    struct dirent *entry;
    char **names = NULL;
    size_t n = 0, capacity = 0;
    if (!dir) {
        perror(dir_path);
        return 1;
    }
    while ((entry = readdir(dir)) != NULL) {
        size_t len = strlen(entry->d_name);
        if (entry->d_name[0] == '.') continue;
        if (n == capacity) {
            char **grown;
            capacity = capacity ? 2 * capacity : 64;
            grown = realloc(names, capacity * sizeof *names);
            if (!grown) break;
            names = grown;
        }
        names[n] = malloc(len + 1);
        if (!names[n]) break;
        memcpy(names[n++], entry->d_name, len + 1);
    }
    closedir(dir);
    if (entry != NULL) {
        fprintf(stderr, "train: out of memory listing %s\n", dir_path);
        while (n > 0) free(names[--n]);
        free(names);
        return 1;
    }
    if (n > 0) qsort(names, n, sizeof *names, by_name);
    *out = names;
    *count = n;
    return 0;
}

static int32_t on_progress(const VaradProgress *p, void *user_data) {
    (void)user_data;
    if (p->step == p->steps || p->step % 5 == 0) {
        printf("epoch %u/%u step %u/%u loss %.5f elapsed %.1f s remaining %.1f s\n", p->epoch,
               p->epochs, p->step, p->steps, p->loss, p->elapsed_seconds, p->remaining_seconds);
    }
    return 0; /* nonzero would cancel */
}

int main(int argc, char **argv) {
    VaradParams params;
    VaradModel *model = NULL;
    VaradTrainingSet *set = NULL;
    VaradTrainReport report;
    VaradCalibrationReport calibration;
    char **names = NULL;
    size_t n_names = 0, i;
    int arg = 1, added = 0;
    char path[4096];

    if (varad_version_number() / 1000000 != VARAD_VERSION_MAJOR) {
        fprintf(stderr, "train: libvarad %s does not match the header %s\n",
                varad_version_string(), VARAD_VERSION_STRING);
        return 1;
    }
    if (varad_params_init(&params, sizeof params) != VARAD_OK) {
        fprintf(stderr, "train: %s\n", varad_last_error_message());
        return 1;
    }
    while (arg + 1 < argc && strncmp(argv[arg], "--", 2) == 0) {
        if (strcmp(argv[arg], "--input") == 0) {
            params.input_width = params.input_height = (uint32_t)atoi(argv[arg + 1]);
        } else if (strcmp(argv[arg], "--epochs") == 0) {
            params.epochs = (uint32_t)atoi(argv[arg + 1]);
        } else {
            break;
        }
        arg += 2;
    }
    if (argc - arg != 3) {
        fprintf(stderr, "usage: train [--input N] [--epochs N] BACKBONE.onnx GOOD_DIR MODEL_OUT\n");
        return 2;
    }
    params.backbone_path = argv[arg];
    params.device = VARAD_DEVICE_AUTO;
    if (varad_create(&params, &model) != VARAD_OK) return fail("cannot create the model");
    if (varad_training_set_create(model, &set) != VARAD_OK) return fail("training set");

    if (sorted_names(argv[arg + 1], &names, &n_names) != 0) return 1;
    for (i = 0; i < n_names; i++) {
        VaradImage *image = NULL;
        VaradImageView view;
        snprintf(path, sizeof path, "%s/%s", argv[arg + 1], names[i]);
        if (varad_image_read(path, &image) != VARAD_OK) {
            fprintf(stderr, "skipping %s: %s\n", path, varad_last_error_message());
            continue;
        }
        /* The set keeps the backbone's features, not the pixels: free the image at once. */
        if (varad_image_view(image, &view) != VARAD_OK ||
            varad_training_set_add(set, model, &view) != VARAD_OK) {
            varad_image_destroy(image);
            return fail(path);
        }
        varad_image_destroy(image);
        added++;
    }
    for (i = 0; i < n_names; i++) free(names[i]);
    free(names);
    printf("training on %d images\n", added);

    memset(&report, 0, sizeof report);
    report.size = sizeof report;
    if (varad_train(model, set, on_progress, NULL, &report) != VARAD_OK) return fail("training");
    printf("trained on %u images, %u held back for calibration, final loss %.5f, %.1f s\n",
           report.train_images, report.calibration_images, report.final_loss,
           report.elapsed_seconds);
    /* What the thresholds promise: a rate resting on few good images is flagged as
     * extrapolated, and the report says how many images it needs. */
    memset(&calibration, 0, sizeof calibration);
    calibration.size = sizeof calibration;
    if (varad_get_calibration_report(model, &calibration) != VARAD_OK) return fail("calibration report");
    printf("calibration: %u good-image scores; review %.2g%% of good parts (%s, 95%% bound %.2g%%, "
           "%llu images for the rate), fail %.2g%% (%s)\n",
           calibration.n, 100.0 * calibration.review_expected,
           calibration.review_extrapolated ? "extrapolated" : "distribution-free",
           100.0 * calibration.review_upper_bound,
           (unsigned long long)calibration.review_images_needed, 100.0 * calibration.fail_expected,
           calibration.fail_extrapolated ? "extrapolated" : "distribution-free");
    if (varad_save(model, argv[arg + 2]) != VARAD_OK) return fail("cannot save");
    printf("saved %s\n", argv[arg + 2]);
    varad_training_set_destroy(set);
    varad_destroy(model);
    return 0;
}
