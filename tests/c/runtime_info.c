/* Links libvarad from C, loads ONNX Runtime, prints which file and version were loaded,
 * and checks the error paths of the copy-into-buffer functions. Exit status 0 = pass. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "varad.h"

#include "check.h"

int main(void) {
    char version[64];
    char path[4096];
    size_t needed = 0;

    CHECK(varad_version_number() == VARAD_VERSION_NUMBER);
    CHECK(strcmp(varad_version_string(), VARAD_VERSION_STRING) == 0);

    /* Before loading, the runtime cannot be reported. */
    CHECK(varad_runtime_version(version, sizeof version, &needed) == VARAD_ERR_RUNTIME_NOT_FOUND);
    CHECK(varad_last_error_message() != NULL);

    /* A path that does not exist is refused with a message naming it. */
    CHECK(varad_runtime_load("/nonexistent/libonnxruntime.so") == VARAD_ERR_RUNTIME_NOT_FOUND);
    CHECK(strstr(varad_last_error_message(), "/nonexistent/libonnxruntime.so") != NULL);

    if (varad_runtime_load(NULL) != VARAD_OK) {
        fprintf(stderr, "varad_runtime_load: %s\n", varad_last_error_message());
        return 1;
    }
    CHECK(varad_last_error_message() == NULL);

    /* Too small a buffer: nothing written, the size needed reported. */
    memset(version, 'x', sizeof version);
    CHECK(varad_runtime_version(version, 2, &needed) == VARAD_ERR_BUFFER_TOO_SMALL);
    CHECK(version[0] == 'x');
    CHECK(needed > 2 && needed <= sizeof version);

    CHECK(varad_runtime_version(version, sizeof version, &needed) == VARAD_OK);
    CHECK(strlen(version) + 1 == needed);
    CHECK(varad_runtime_path(path, sizeof path, NULL) == VARAD_OK);
    CHECK(path[0] == '/');

    printf("varad %s, ONNX Runtime %s from %s\n", varad_version_string(), version, path);
    if (failures) {
        fprintf(stderr, "runtime_info: %d checks failed\n", failures);
        return 1;
    }
    printf("runtime_info: all checks passed\n");
    return 0;
}
