/* maps: loads a model, scores images and writes everything a decision rests on as text,
 * so that the Linux and the Windows build can be compared on the same model and images
 * (compare_maps.py):
 *
 *   maps MODEL OUT.txt IMAGE...
 *
 * Per image: its image score, normalised score and decision, then its raw map (finest
 * token grid) and its map (image size), every float with 9 significant digits (enough
 * to tell any two floats apart). */
#include <stdio.h>
#include <string.h>

#include "varad.h"

static int fail(const char *what) {
    fprintf(stderr, "maps: %s: %s\n", what, varad_last_error_message());
    return 1;
}

static void write_map(FILE *out, const char *name, const float *map, uint32_t w, uint32_t h) {
    size_t i, n = (size_t)w * h;
    fprintf(out, "%s %u %u\n", name, w, h);
    for (i = 0; i < n; i++) fprintf(out, "%.9g%c", map[i], i + 1 == n || i % 16 == 15 ? '\n' : ' ');
}

int main(int argc, char **argv) {
    VaradModel *model = NULL;
    VaradScoreParams params;
    FILE *out;
    int i;

    if (argc < 4) {
        fprintf(stderr, "usage: maps MODEL OUT.txt IMAGE...\n");
        return 2;
    }
    if (varad_load(argv[1], NULL, &model) != VARAD_OK) return fail(argv[1]);
    if (varad_score_params_init(&params, sizeof params) != VARAD_OK) return fail("params");
    params.raw_map = 1;
    out = fopen(argv[2], "w");
    if (!out) {
        perror(argv[2]);
        return 1;
    }
    for (i = 3; i < argc; i++) {
        VaradImage *image = NULL;
        VaradImageView view;
        VaradScoreResult *result = NULL;
        const float *map = NULL, *raw = NULL;
        uint32_t w = 0, h = 0, rw = 0, rh = 0;
        size_t len = 0, raw_len = 0;
        float score = 0, normalised = 0;
        VaradDecision decision = 0;
        const char *base = strrchr(argv[i], '/');
        base = base ? base + 1 : argv[i];

        if (varad_image_read(argv[i], &image) != VARAD_OK ||
            varad_image_view(image, &view) != VARAD_OK ||
            varad_score(model, &view, &params, &result) != VARAD_OK ||
            varad_result_image_score(result, &score) != VARAD_OK ||
            varad_result_normalised_score(result, &normalised) != VARAD_OK ||
            varad_result_decision(result, &decision) != VARAD_OK ||
            varad_result_map(result, &map, &len, &w, &h) != VARAD_OK ||
            varad_result_raw_map(result, &raw, &raw_len, &rw, &rh) != VARAD_OK)
            return fail(argv[i]);
        fprintf(out, "image %s score %.9g normalised %.9g decision %u\n", base, score, normalised,
                (unsigned)decision);
        write_map(out, "raw_map", raw, rw, rh);
        write_map(out, "map", map, w, h);
        varad_score_result_destroy(result);
        varad_image_destroy(image);
    }
    if (fclose(out) != 0) {
        perror(argv[2]);
        return 1;
    }
    varad_destroy(model);
    printf("maps: %d images scored\n", argc - 3);
    return 0;
}
