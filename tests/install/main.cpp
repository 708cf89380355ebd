// Uses an installed varad from C++17: checks the version, creates an (untrained) model on
// the backbone named on the command line and scores one synthetic image.
//   consumer BACKBONE.onnx INPUT_SIZE
#include <varad.h>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <vector>

namespace {

struct ModelDeleter {
    void operator()(VaradModel *m) const { varad_destroy(m); }
};
struct ResultDeleter {
    void operator()(VaradScoreResult *r) const { varad_score_result_destroy(r); }
};

int fail(const char *what) {
    std::fprintf(stderr, "consumer: %s: %s\n", what, varad_last_error_message());
    return 1;
}

}  // namespace

int main(int argc, char **argv) {
    if (argc != 3) {
        std::fprintf(stderr, "usage: consumer BACKBONE.onnx INPUT_SIZE\n");
        return 2;
    }
    if (varad_version_number() != VARAD_VERSION_NUMBER) {
        std::fprintf(stderr, "consumer: library %s, header %s\n", varad_version_string(),
                     VARAD_VERSION_STRING);
        return 1;
    }
    VaradParams params;
    if (varad_params_init(&params, sizeof params) != VARAD_OK) return fail("varad_params_init");
    params.backbone_path = argv[1];
    params.input_width = params.input_height = static_cast<uint32_t>(std::atoi(argv[2]));
    params.device = VARAD_DEVICE_CPU;
    params.prediction_step = 2;
    params.threads = 1;
    VaradModel *raw = nullptr;
    if (varad_create(&params, &raw) != VARAD_OK) return fail("varad_create");
    std::unique_ptr<VaradModel, ModelDeleter> model(raw);

    std::vector<uint8_t> pixels(64 * 48, 128);
    VaradImageView view{pixels.data(), 64, 48, 64, VARAD_PIXEL_FORMAT_MONO8};
    VaradScoreResult *r = nullptr;
    if (varad_score(model.get(), &view, nullptr, &r) != VARAD_OK) return fail("varad_score");
    std::unique_ptr<VaradScoreResult, ResultDeleter> result(r);
    float score = 0;
    const float *map = nullptr;
    size_t len = 0;
    uint32_t w = 0, h = 0;
    if (varad_result_image_score(result.get(), &score) != VARAD_OK) return fail("score");
    if (varad_result_map(result.get(), &map, &len, &w, &h) != VARAD_OK) return fail("map");
    if (w != 64 || h != 48 || len != 64u * 48u) return fail("map size");
    // The enum-typed arguments as C++ sees them (enum class-like types over uint32_t):
    // an untrained model has no decision and no thresholds.
    VaradDecision decision = VARAD_DECISION_PASS;
    if (varad_result_decision(result.get(), &decision) != VARAD_ERR_NOT_CALIBRATED)
        return fail("decision of an untrained model");
    float threshold = 0;
    if (varad_get_threshold(model.get(), VARAD_THRESHOLD_FAIL, &threshold) != VARAD_ERR_NOT_CALIBRATED)
        return fail("threshold of an untrained model");
    VaradDevice device = VARAD_DEVICE_AUTO;
    if (varad_active_device(model.get(), &device, nullptr) != VARAD_OK || device != VARAD_DEVICE_CPU)
        return fail("active device");
    std::printf("consumer: varad %s, image score %g, map %ux%u: ok\n", varad_version_string(),
                static_cast<double>(score), w, h);
    return 0;
}
