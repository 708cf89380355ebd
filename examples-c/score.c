/* score: loads a varad model, scores images, writes their heatmaps as PNG and prints the
 * decision and the defect regions.
 *
 *   score MODEL HEATMAP_DIR IMAGE...
 *
 * Output, one line per image:
 *   IMAGE score=S normalised=N decision=PASS|REVIEW|FAIL regions=K
 * followed by one indented line per region. */
#include <stdio.h>
#include <string.h>

#include "varad.h"

static int fail(const char *what) {
    fprintf(stderr, "score: %s: %s\n", what, varad_last_error_message());
    return 1;
}

static const char *decision_name(VaradDecision d) {
    switch (d) {
    case VARAD_DECISION_PASS: return "PASS";
    case VARAD_DECISION_REVIEW: return "REVIEW";
    case VARAD_DECISION_FAIL: return "FAIL";
    default: return "?";
    }
}

int main(int argc, char **argv) {
    VaradModel *model = NULL;
    float fail_threshold = 0;
    int i;

    if (argc < 4) {
        fprintf(stderr, "usage: score MODEL HEATMAP_DIR IMAGE...\n");
        return 2;
    }
    if (varad_load(argv[1], NULL, &model) != VARAD_OK) return fail(argv[1]);
    /* Heatmaps share one white point, the fail threshold, so they compare. */
    if (varad_get_threshold(model, VARAD_THRESHOLD_FAIL, &fail_threshold) != VARAD_OK)
        return fail("the model is not calibrated");

    for (i = 3; i < argc; i++) {
        VaradImage *image = NULL;
        VaradImageView view;
        VaradScoreResult *result = NULL;
        const VaradRegion *regions = NULL;
        size_t count = 0, found = 0, r;
        float score = 0, normalised = 0;
        VaradDecision decision = 0;
        char heatmap[4096];
        const char *base = strrchr(argv[i], '/');
        base = base ? base + 1 : argv[i];

        if (varad_image_read(argv[i], &image) != VARAD_OK) return fail(argv[i]);
        if (varad_image_view(image, &view) != VARAD_OK) return fail(argv[i]);
        if (varad_score(model, &view, NULL, &result) != VARAD_OK) return fail(argv[i]);
        varad_image_destroy(image); /* the result does not need the pixels */

        if (varad_result_image_score(result, &score) != VARAD_OK ||
            varad_result_normalised_score(result, &normalised) != VARAD_OK ||
            varad_result_decision(result, &decision) != VARAD_OK ||
            varad_result_regions(result, &regions, &count, &found) != VARAD_OK)
            return fail(argv[i]);
        printf("%s score=%.5f normalised=%.3f decision=%s regions=%zu\n", base, score, normalised,
               decision_name(decision), count);
        for (r = 0; r < count; r++) {
            const VaradRegion *g = &regions[r];
            printf("  region %zu: box %u,%u %ux%u area %llu peak %.4f at %u,%u\n", r, g->x, g->y,
                   g->width, g->height, (unsigned long long)g->area, g->peak, g->peak_x,
                   g->peak_y);
        }
        snprintf(heatmap, sizeof heatmap, "%s/%s.heatmap.png", argv[2], base);
        if (varad_write_heatmap_png(result, heatmap, fail_threshold) != VARAD_OK)
            return fail(heatmap);
        varad_score_result_destroy(result);
    }
    varad_destroy(model);
    return 0;
}
