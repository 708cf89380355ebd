/* varad_set_log_callback from C: a model file written by varad 1.0 (no checksums) loads
 * and its warning reaches the callback, once, at VARAD_LOG_WARN; with the callback unset
 * it reaches nothing. Run from the repository root. */
#include "varad.h"

#include <string.h>

#include "check.h"

struct received {
    int warnings;
    int above_level;
};

static void on_log(uint32_t level, const char *message, void *user_data) {
    struct received *r = (struct received *)user_data;
    if (level > VARAD_LOG_WARN) {
        r->above_level++;
    }
    if (level == VARAD_LOG_WARN && strstr(message, "no checksums") != NULL) {
        r->warnings++;
    }
}

static void load_format1(void) {
    VaradLoadParams lp;
    VaradModel *model = NULL;
    OK(varad_load_params_init(&lp, sizeof lp));
    lp.backbone_path = "tests/data/tiny_vit.onnx";
    lp.device = VARAD_DEVICE_CPU;
    OK(varad_load("fuzz/corpus/model_file/seed-tiny-format1.safetensors", &lp, &model));
    varad_destroy(model);
}

int main(void) {
    struct received r = {0, 0};
    CHECK(varad_set_log_callback(on_log, &r, 99) == VARAD_ERR_INVALID_ARGUMENT);
    OK(varad_set_log_callback(on_log, &r, VARAD_LOG_WARN));
    load_format1();
    CHECK(r.warnings == 1);
    CHECK(r.above_level == 0);
    OK(varad_set_log_callback(NULL, NULL, VARAD_LOG_DEBUG));
    load_format1();
    CHECK(r.warnings == 1);
    if (failures == 0) {
        printf("log: all checks passed\n");
    }
    return failures == 0 ? 0 : 1;
}
