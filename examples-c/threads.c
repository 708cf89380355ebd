/* threads: scores images with one model from several threads at once and checks that
 * every map is bit for bit what a serial call gives.
 *
 *   threads MODEL THREADS IMAGE...
 *
 * A `const VaradModel*` may be shared by any number of threads (see varad.h, "Thread
 * safety"). */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "varad.h"

enum { MAX_IMAGES = 64, MAX_THREADS = 16, ROUNDS = 3 };

static const VaradModel *model;
static VaradImageView views[MAX_IMAGES];
static float *serial[MAX_IMAGES];
static size_t lengths[MAX_IMAGES];
static int n_images;

typedef struct {
    int index;
    int mismatches;
    int errors;
} Worker;

static void *work(void *arg) {
    Worker *w = (Worker *)arg;
    int round, k;
    for (round = 0; round < ROUNDS; round++) {
        for (k = 0; k < n_images; k++) {
            /* Each thread walks the images in its own order. */
            int i = (k + w->index + round) % n_images;
            VaradScoreResult *result = NULL;
            const float *map = NULL;
            size_t len = 0;
            if (varad_score(model, &views[i], NULL, &result) != VARAD_OK ||
                varad_result_map(result, &map, &len, NULL, NULL) != VARAD_OK) {
                fprintf(stderr, "thread %d: %s\n", w->index, varad_last_error_message());
                w->errors++;
                varad_score_result_destroy(result);
                continue;
            }
            if (len != lengths[i] || memcmp(map, serial[i], len * sizeof *map) != 0)
                w->mismatches++;
            varad_score_result_destroy(result);
        }
    }
    return NULL;
}

int main(int argc, char **argv) {
    VaradModel *loaded = NULL;
    VaradImage *images[MAX_IMAGES];
    pthread_t threads[MAX_THREADS];
    Worker workers[MAX_THREADS];
    int n_threads, i, mismatches = 0, errors = 0;

    if (argc < 4) {
        fprintf(stderr, "usage: threads MODEL THREADS IMAGE...\n");
        return 2;
    }
    n_threads = atoi(argv[2]);
    if (n_threads < 1 || n_threads > MAX_THREADS || argc - 3 > MAX_IMAGES) {
        fprintf(stderr, "threads: 1..%d threads, at most %d images\n", MAX_THREADS, MAX_IMAGES);
        return 2;
    }
    if (varad_load(argv[1], NULL, &loaded) != VARAD_OK) {
        fprintf(stderr, "threads: %s\n", varad_last_error_message());
        return 1;
    }
    model = loaded;
    n_images = argc - 3;
    for (i = 0; i < n_images; i++) {
        VaradScoreResult *result = NULL;
        const float *map = NULL;
        if (varad_image_read(argv[3 + i], &images[i]) != VARAD_OK ||
            varad_image_view(images[i], &views[i]) != VARAD_OK ||
            varad_score(model, &views[i], NULL, &result) != VARAD_OK ||
            varad_result_map(result, &map, &lengths[i], NULL, NULL) != VARAD_OK) {
            fprintf(stderr, "threads: %s: %s\n", argv[3 + i], varad_last_error_message());
            return 1;
        }
        serial[i] = malloc(lengths[i] * sizeof *map);
        if (!serial[i]) return 1;
        memcpy(serial[i], map, lengths[i] * sizeof *map);
        varad_score_result_destroy(result);
    }
    for (i = 0; i < n_threads; i++) {
        workers[i].index = i;
        workers[i].mismatches = workers[i].errors = 0;
        if (pthread_create(&threads[i], NULL, work, &workers[i]) != 0) return 1;
    }
    for (i = 0; i < n_threads; i++) {
        pthread_join(threads[i], NULL);
        mismatches += workers[i].mismatches;
        errors += workers[i].errors;
    }
    for (i = 0; i < n_images; i++) {
        free(serial[i]);
        varad_image_destroy(images[i]);
    }
    varad_destroy(loaded);
    printf("threads: %d threads x %d rounds x %d images: %d mismatches, %d errors\n", n_threads,
           ROUNDS, n_images, mismatches, errors);
    if (mismatches == 0 && errors == 0) {
        printf("threads: identical to serial, bit for bit\n");
        return 0;
    }
    return 1;
}
