/* UTF-8 paths through the C API on Windows: the backbone, an image and a model file in a
 * folder whose name is not ASCII (Latin and CJK), created with the wide-string API. The
 * library must turn each UTF-8 path into the same wide name (not read it in the ANSI code
 * page): it opens the backbone there, reads the image there, saves the model there (the
 * file must then exist under its wide name) and loads it back, scoring the same.
 *
 *   utf8_path BASE_DIR BACKBONE.onnx IMAGE.png
 *
 * BASE_DIR, BACKBONE and IMAGE are ASCII paths; the folder is made inside BASE_DIR.
 * Exit status 0 = pass. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <windows.h>

#include "varad.h"

#include "check.h"

/* "Prüfstand-検査", "modell-ü.varad", "teil-ä.png", "rückgrat.onnx" in UTF-8. */
#define FOLDER "Pr\xc3\xbc" "fstand-\xe6\xa4\x9c\xe6\x9f\xbb"
#define MODEL_FILE "modell-\xc3\xbc.varad"
#define IMAGE_FILE "teil-\xc3\xa4.png"
#define BACKBONE_FILE "r\xc3\xbc" "ckgrat.onnx"

static void wide(const char *utf8, wchar_t *out, int capacity) {
    if (MultiByteToWideChar(CP_UTF8, MB_ERR_INVALID_CHARS, utf8, -1, out, capacity) == 0) {
        fprintf(stderr, "utf8_path: %s is not UTF-8 or too long\n", utf8);
        exit(1);
    }
}

static void join(char *out, size_t capacity, const char *dir, const char *name) {
    if ((size_t)snprintf(out, capacity, "%s/%s", dir, name) >= capacity) {
        fprintf(stderr, "utf8_path: path too long\n");
        exit(1);
    }
}

static void copy_into(const char *from, const char *to) {
    wchar_t wfrom[1024], wto[1024];
    wide(from, wfrom, 1024);
    wide(to, wto, 1024);
    if (!CopyFileW(wfrom, wto, FALSE)) {
        fprintf(stderr, "utf8_path: copying %s: error %lu\n", from, (unsigned long)GetLastError());
        exit(1);
    }
}

static float score_of(const VaradModel *model, const char *image_path) {
    VaradImage *image = NULL;
    VaradImageView view;
    VaradScoreResult *result = NULL;
    float score = -1;
    OK(varad_image_read(image_path, &image));
    OK(varad_image_view(image, &view));
    OK(varad_score(model, &view, NULL, &result));
    OK(varad_result_image_score(result, &score));
    varad_score_result_destroy(result);
    varad_image_destroy(image);
    return score;
}

int main(int argc, char **argv) {
    enum { SIDE = 96, IMAGES = 6 };
    static unsigned char pixels[SIDE * SIDE];
    char folder[1024], model_path[1024], image_path[1024], backbone_path[1024];
    wchar_t wfolder[1024], wmodel[1024];
    VaradParams params;
    VaradModel *model = NULL, *loaded = NULL;
    VaradTrainingSet *set = NULL;
    VaradImageView view;
    float trained_score, loaded_score;
    int i, x, y;

    if (argc != 4) {
        fprintf(stderr, "usage: utf8_path BASE_DIR BACKBONE.onnx IMAGE.png\n");
        return 2;
    }
    join(folder, sizeof folder, argv[1], FOLDER);
    join(model_path, sizeof model_path, folder, MODEL_FILE);
    join(image_path, sizeof image_path, folder, IMAGE_FILE);
    join(backbone_path, sizeof backbone_path, folder, BACKBONE_FILE);
    wide(folder, wfolder, 1024);
    wide(model_path, wmodel, 1024);
    if (!CreateDirectoryW(wfolder, NULL) && GetLastError() != ERROR_ALREADY_EXISTS) {
        fprintf(stderr, "utf8_path: CreateDirectoryW: error %lu\n", (unsigned long)GetLastError());
        return 1;
    }
    DeleteFileW(wmodel);
    copy_into(argv[2], backbone_path);
    copy_into(argv[3], image_path);

    OK(varad_params_init(&params, sizeof params));
    params.backbone_path = backbone_path;
    params.input_width = params.input_height = 112;
    params.device = VARAD_DEVICE_CPU;
    params.threads = 2;
    params.prediction_step = 2;
    params.d_state = 4;
    params.epochs = 2;
    params.seed = 3;
    OK(varad_create(&params, &model));
    OK(varad_training_set_create(model, &set));
    for (i = 0; i < IMAGES; i++) {
        for (y = 0; y < SIDE; y++)
            for (x = 0; x < SIDE; x++)
                pixels[y * SIDE + x] = (unsigned char)((x * (i + 2) + y * 3) % 200 + 20);
        view.data = pixels;
        view.width = view.height = SIDE;
        view.stride = 0;
        view.format = VARAD_PIXEL_FORMAT_MONO8;
        OK(varad_training_set_add(set, model, &view));
    }
    OK(varad_train(model, set, NULL, NULL, NULL));
    varad_training_set_destroy(set);
    trained_score = score_of(model, image_path);

    OK(varad_save(model, model_path));
    CHECK(GetFileAttributesW(wmodel) != INVALID_FILE_ATTRIBUTES);
    OK(varad_load(model_path, NULL, &loaded));
    loaded_score = score_of(loaded, image_path);
    CHECK(loaded_score == trained_score);
    printf("utf8_path: backbone, image and model in %s: score %.5f trained, %.5f loaded\n",
           FOLDER, trained_score, loaded_score);

    varad_destroy(loaded);
    varad_destroy(model);
    if (failures) {
        fprintf(stderr, "utf8_path: %d checks failed\n", failures);
        return 1;
    }
    printf("utf8_path: all checks passed\n");
    return 0;
}
