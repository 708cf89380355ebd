/* Links libvarad from C, loads ONNX Runtime, prints which file and version were loaded,
 * and checks the error paths of the copy-into-buffer functions. On Windows, with
 * ORT_DYLIB_PATH unset, ONNX Runtime must come from the folder of varad.dll itself.
 * Exit status 0 = pass. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef _WIN32
#include <windows.h>
#endif

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
    CHECK(strstr(varad_last_error_message(), "nonexistent") != NULL);
    CHECK(strstr(varad_last_error_message(), "libonnxruntime.so") != NULL);

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
#ifdef _WIN32
    /* An absolute path with a drive; with no ORT_DYLIB_PATH, beside varad.dll. */
    CHECK(path[0] != '\0' && path[1] == ':' && path[2] == '\\');
    {
        const char *env = getenv("ORT_DYLIB_PATH");
        char dll[4096];
        char *slash;
        DWORD n = GetModuleFileNameA(GetModuleHandleA("varad.dll"), dll, sizeof dll);
        CHECK(n > 0 && n < sizeof dll);
        slash = strrchr(dll, '\\');
        if ((env == NULL || env[0] == '\0') && slash != NULL &&
            (size_t)(slash + 1 - dll) + strlen("onnxruntime.dll") < sizeof dll) {
            strcpy(slash + 1, "onnxruntime.dll");
            CHECK(strcmp(path, dll) == 0);
        }
    }
#else
    CHECK(path[0] == '/');
#endif

    printf("varad %s, ONNX Runtime %s from %s\n", varad_version_string(), version, path);
    if (failures) {
        fprintf(stderr, "runtime_info: %d checks failed\n", failures);
        return 1;
    }
    printf("runtime_info: all checks passed\n");
    return 0;
}
