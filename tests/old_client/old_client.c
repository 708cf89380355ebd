/* An old client: compiled against a copy of varad.h whose size-tagged structs end
 * earlier (tests/old_client/make_old_header.py), run against the current library. It
 * creates, trains, scores, saves and loads, with every such struct placed at the very
 * end of a page whose next page is inaccessible: a library that read or wrote one byte
 * past the old struct's `size` would crash here, instrumented or not. The fields the old
 * layout lacks must get their documented defaults, which the saved model shows.
 * Run from the repository root. Exit status 0 = pass. */
#define _DEFAULT_SOURCE
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef _WIN32
#include <windows.h>
#else
#include <sys/mman.h>
#include <unistd.h>
#endif

#include "varad.h"

#include "check.h"

/* `size` zeroed bytes ending exactly where an inaccessible page begins. */
static void *at_page_end(size_t size) {
#ifdef _WIN32
    SYSTEM_INFO info;
    DWORD old_protect;
    size_t page;
    unsigned char *base;
    GetSystemInfo(&info);
    page = info.dwPageSize;
    base = VirtualAlloc(NULL, 2 * page, MEM_COMMIT | MEM_RESERVE, PAGE_READWRITE);
    if (base == NULL || size > page ||
        !VirtualProtect(base + page, page, PAGE_NOACCESS, &old_protect)) {
        fprintf(stderr, "old_client: guard page: error %lu\n", (unsigned long)GetLastError());
        exit(1);
    }
#else
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    unsigned char *base = mmap(NULL, 2 * page, PROT_READ | PROT_WRITE,
                               MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (base == MAP_FAILED || size > page || mprotect(base + page, page, PROT_NONE) != 0) {
        perror("old_client: guard page");
        exit(1);
    }
#endif
    return base + page - size;
}

/* A diagonal ramp whose slope depends on `seed`, grey. */
static void ramp(unsigned seed, unsigned side, unsigned char *out) {
    unsigned x, y;
    for (y = 0; y < side; y++)
        for (x = 0; x < side; x++)
            out[y * side + x] = (unsigned char)((x * (seed + 2) + y * 3) % 200 + 20);
}

/* Whether `needle` occurs in the `len` bytes at `hay` (which may hold NULs). */
static int contains(const char *hay, size_t len, const char *needle) {
    size_t n = strlen(needle), i;
    for (i = 0; i + n <= len; i++)
        if (memcmp(hay + i, needle, n) == 0) return 1;
    return 0;
}

int main(void) {
    enum { SIDE = 96, IMAGES = 8 };
    static unsigned char pixels[IMAGES][SIDE * SIDE];
    const char *model_path = "target/old-client/model.varad";
    VaradParams *params = at_page_end(sizeof(VaradParams));
    VaradScoreParams *score_params = at_page_end(sizeof(VaradScoreParams));
    VaradLoadParams *load_params = at_page_end(sizeof(VaradLoadParams));
    VaradTrainReport *report = at_page_end(sizeof(VaradTrainReport));
    VaradModel *model = NULL, *loaded = NULL;
    VaradTrainingSet *set = NULL;
    VaradScoreResult *result = NULL;
    VaradImageView view;
    VaradDecision decision = 0;
    float score = 0, loaded_score = 0;
    char file[1 << 16];
    size_t file_len;
    FILE *f;
    int i;

    printf("old_client: sizeof VaradParams %zu, VaradLoadParams %zu, VaradScoreParams %zu, "
           "VaradTrainReport %zu\n",
           sizeof(VaradParams), sizeof(VaradLoadParams), sizeof(VaradScoreParams),
           sizeof(VaradTrainReport));

    /* Too short to hold `size` and `backbone_path`: refused, nothing written. */
    CHECK(varad_params_init(params, 8) == VARAD_ERR_INVALID_ARGUMENT);
    CHECK(params->size == 0);

    OK(varad_params_init(params, sizeof *params));
    CHECK(params->size == sizeof(VaradParams));
    CHECK(params->epochs == 10 && params->prediction_step == 4 && params->pixel_quantile == 1.0);
    params->backbone_path = "tests/data/tiny_vit.onnx";
    params->input_width = params->input_height = 112;
    params->device = VARAD_DEVICE_CPU;
    params->threads = 1;
    params->prediction_step = 2;
    params->d_state = 4;
    params->epochs = 1;
    params->cache_limit_bytes = 1073741824; /* 1 GiB: unlike every default, so it shows */
    OK(varad_create(params, &model));

    OK(varad_training_set_create(model, &set));
    for (i = 0; i < IMAGES; i++) {
        ramp((unsigned)i, SIDE, pixels[i]);
        view.data = pixels[i];
        view.width = view.height = SIDE;
        view.stride = SIDE;
        view.format = VARAD_PIXEL_FORMAT_MONO8;
        OK(varad_training_set_add(set, model, &view));
    }
    report->size = sizeof *report;
    OK(varad_train(model, set, NULL, NULL, report));
    CHECK(report->size == sizeof(VaradTrainReport));
    CHECK(report->epochs == 1 && report->train_images + report->calibration_images == IMAGES);
    CHECK(isfinite(report->final_loss) && report->final_loss > 0);
    varad_training_set_destroy(set);

    OK(varad_score_params_init(score_params, sizeof *score_params));
    CHECK(score_params->roi == NULL && score_params->roi_len == 0);
    view.data = pixels[0];
    OK(varad_score(model, &view, score_params, &result));
    OK(varad_result_image_score(result, &score));
    OK(varad_result_decision(result, &decision));
    CHECK(decision == VARAD_DECISION_PASS || decision == VARAD_DECISION_REVIEW ||
          decision == VARAD_DECISION_FAIL);
    varad_score_result_destroy(result);

    OK(varad_save(model, model_path));
    f = fopen(model_path, "rb");
    if (f == NULL) {
        perror(model_path);
        return 1;
    }
    file_len = fread(file, 1, sizeof file, f);
    fclose(f);
    /* The saved configuration: the old client's own value, and the defaults of the
     * fields its layout lacks (map_norm, max_batch_bytes, cache_disk_limit_bytes). */
    CHECK(contains(file, file_len, "1073741824"));
    CHECK(contains(file, file_len, "position_two_sided"));
    CHECK(contains(file, file_len, "4294967296"));
    CHECK(contains(file, file_len, "68719476736"));

    OK(varad_load_params_init(load_params, sizeof *load_params));
    CHECK(load_params->backbone_path == NULL && load_params->runtime_path == NULL);
    OK(varad_load(model_path, load_params, &loaded));
    OK(varad_score(loaded, &view, score_params, &result));
    OK(varad_result_image_score(result, &loaded_score));
    CHECK(loaded_score == score);
    varad_score_result_destroy(result);

    varad_destroy(loaded);
    varad_destroy(model);
    if (failures != 0) {
        fprintf(stderr, "old_client: %d checks failed\n", failures);
        return 1;
    }
    printf("old_client: created, trained, scored, saved and loaded with the old layouts: ok\n");
    return 0;
}
