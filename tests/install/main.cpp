// Uses an installed varad from C++17: checks the version, creates a model on the backbone
// named on the command line, checks that the untrained model refuses to score, trains it
// on a few synthetic images and scores one.
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
struct SetDeleter {
    void operator()(VaradTrainingSet *s) const { varad_training_set_destroy(s); }
};

// A 64x48 grey image with a gentle gradient that differs a little with `seed`.
std::vector<uint8_t> synthetic(int seed) {
    std::vector<uint8_t> pixels(64 * 48);
    for (size_t i = 0; i < pixels.size(); ++i)
        pixels[i] = static_cast<uint8_t>(100 + (i % 64) / 2 + (i / 64) / 3 + (seed * 7 + i) % 5);
    return pixels;
}

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
    params.epochs = 2;
    VaradModel *raw = nullptr;
    if (varad_create(&params, &raw) != VARAD_OK) return fail("varad_create");
    std::unique_ptr<VaradModel, ModelDeleter> model(raw);

    std::vector<uint8_t> pixels = synthetic(99);
    VaradImageView view{pixels.data(), 64, 48, 64, VARAD_PIXEL_FORMAT_MONO8};
    VaradScoreResult *r = nullptr;
    // The enum-typed arguments as C++ sees them (enum class-like types over uint32_t):
    // an untrained model refuses to score and has no thresholds.
    if (varad_score(model.get(), &view, nullptr, &r) != VARAD_ERR_NOT_TRAINED)
        return fail("an untrained model's score was not refused");
    float threshold = 0;
    if (varad_get_threshold(model.get(), VARAD_THRESHOLD_FAIL, &threshold) != VARAD_ERR_NOT_CALIBRATED)
        return fail("threshold of an untrained model");

    VaradTrainingSet *set_raw = nullptr;
    if (varad_training_set_create(model.get(), &set_raw) != VARAD_OK) return fail("training set");
    std::unique_ptr<VaradTrainingSet, SetDeleter> set(set_raw);
    for (int i = 0; i < 5; ++i) {
        std::vector<uint8_t> good = synthetic(i);
        VaradImageView v{good.data(), 64, 48, 64, VARAD_PIXEL_FORMAT_MONO8};
        if (varad_training_set_add(set.get(), model.get(), &v) != VARAD_OK) return fail("add");
    }
    if (varad_train(model.get(), set.get(), nullptr, nullptr, nullptr) != VARAD_OK)
        return fail("varad_train");

    if (varad_score(model.get(), &view, nullptr, &r) != VARAD_OK) return fail("varad_score");
    std::unique_ptr<VaradScoreResult, ResultDeleter> result(r);
    float score = 0;
    const float *map = nullptr;
    size_t len = 0;
    uint32_t w = 0, h = 0;
    if (varad_result_image_score(result.get(), &score) != VARAD_OK) return fail("score");
    if (varad_result_map(result.get(), &map, &len, &w, &h) != VARAD_OK) return fail("map");
    if (w != 64 || h != 48 || len != 64u * 48u) return fail("map size");
    VaradDecision decision = VARAD_DECISION_PASS;
    if (varad_result_decision(result.get(), &decision) != VARAD_OK) return fail("decision");
    if (varad_get_threshold(model.get(), VARAD_THRESHOLD_FAIL, &threshold) != VARAD_OK)
        return fail("threshold of the trained model");
    VaradDevice device = VARAD_DEVICE_AUTO;
    if (varad_active_device(model.get(), &device, nullptr) != VARAD_OK || device != VARAD_DEVICE_CPU)
        return fail("active device");
    std::printf("consumer: varad %s, image score %g, map %ux%u: ok\n", varad_version_string(),
                static_cast<double>(score), w, h);
    return 0;
}
