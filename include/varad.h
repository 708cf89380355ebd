/*
 * varad.h: the C ABI of varad, industrial anomaly detection with VarAD.
 *
 * Objects (opaque, created and freed by the library):
 *   VaradModel        varad_create / varad_load  ...  varad_destroy
 *   VaradTrainingSet  varad_training_set_create  ...  varad_training_set_destroy
 *   VaradScoreResult  varad_score / varad_score_batch  ...  varad_score_result_destroy
 *   VaradImage        varad_image_read  ...  varad_image_destroy
 * Every _destroy function accepts NULL and does nothing.
 *
 * Typical use:
 *   VaradParams p = varad_default_params();  p.backbone_path = "backbone.onnx";
 *   varad_create(&p, &model);
 *   varad_training_set_create(model, &set);
 *   for each good image: varad_training_set_add(set, model, &view);
 *   varad_train(model, set, on_progress, user_data, NULL);
 *   varad_score(model, &view, NULL, &result);  ...  varad_score_result_destroy(result);
 *   varad_save(model, "model.varad");  varad_destroy(model);
 *
 * Parameters: every params struct (VaradParams, VaradLoadParams, VaradScoreParams)
 * starts with its own `size` and comes from a varad_default_*params() function, so
 * fields can be appended in later versions without breaking callers. A size below the
 * first version's is refused with VARAD_ERR_INVALID_ARGUMENT. Each field documents its
 * `Default:`.
 *
 * Errors: every fallible call returns a VaradStatus; VARAD_OK (0) is success. Out-
 * parameters are written only on success. varad_last_error_message() (or
 * varad_last_error_copy()) says what went wrong, per thread. No call aborts the
 * process or lets a panic escape (VARAD_ERR_PANIC reports a bug instead).
 *
 *   code status                        cause (every class of bad input has its own)
 *   0  VARAD_OK                      success
 *   1  VARAD_ERR_INVALID_ARGUMENT    an argument out of range or inconsistent: a params
 *                                    struct `size` below the first version's, a ROI of
 *                                    the wrong length, count 0, an unknown threshold or
 *                                    device code, a string that is not UTF-8
 *   2  VARAD_ERR_NULL_POINTER        a required pointer (handle, view, out-parameter)
 *                                    is NULL
 *   3  VARAD_ERR_INVALID_IMAGE       an unusable image view: NULL data, zero width or
 *                                    height, stride shorter than a row, unknown format
 *   4  VARAD_ERR_IMAGE_TOO_LARGE     an image (view or file header) over the pixel limit
 *                                    (max_image_pixels), checked before any pixel is read
 *   5  VARAD_ERR_IMAGE_DECODE        an image file that is not PNG/JPEG/TIFF/BMP, is
 *                                    corrupt or truncated, or has unsupported samples
 *   6  VARAD_ERR_IO                  a file that cannot be read or written (missing,
 *                                    no permission, disk full)
 *   7  VARAD_ERR_RUNTIME_NOT_FOUND   ONNX Runtime missing, unloadable or too old
 *   8  VARAD_ERR_RUNTIME             ONNX Runtime failed (not caused by arguments)
 *   9  VARAD_ERR_BACKBONE_CONTRACT   a backbone ONNX file that breaks the contract
 *  10  VARAD_ERR_CONFIG              an invalid configuration (zero epochs, a
 *                                    prediction step too large for the grid, ...)
 *  11  VARAD_ERR_MODEL_FILE          a model file that is malformed, truncated, claims
 *                                    more than it holds, or does not match the backbone
 *  12  VARAD_ERR_CUDA                a requested CUDA device that cannot be used
 *  13  VARAD_ERR_CANCELLED           the progress callback cancelled (model unchanged)
 *  14  VARAD_ERR_BUFFER_TOO_SMALL    an output buffer too small (`needed` says how big)
 *  15  VARAD_ERR_PANIC               the library caught a panic (a bug)
 *  16  VARAD_ERR_INTERNAL            another internal error (a bug)
 *  17  VARAD_ERR_BUSY                the model is in use by a conflicting call
 *  18  VARAD_ERR_NOT_CALIBRATED      the model (or result) has no calibration
 *  19  VARAD_ERR_BATCH_TOO_LARGE     a scoring batch needing more memory than
 *                                    max_batch_bytes
 *  20  VARAD_ERR_CACHE_FULL          the training cache is full: cache_limit_bytes in
 *                                    memory and cache_disk_limit_bytes spilled
 * tests/c/bad_input.c provokes every code that bad input can cause (1-7, 9-12, 14, 18-20).
 * Values are never renumbered or reused; new ones are added at the end.
 *
 * Thread safety:
 *   - A `const VaradModel*` argument may be used from many threads at once: scoring
 *     (varad_score, varad_score_batch), varad_save, varad_get_threshold,
 *     varad_active_device, varad_training_set_create/add. Each thread gets exactly
 *     what a serial call would.
 *   - A non-const `VaradModel*` argument means exclusive use: varad_train,
 *     varad_set_threshold, varad_set_decision_thresholds. These never wait: if another
 *     thread is scoring at that moment they return VARAD_ERR_BUSY, and while training
 *     runs, calls that need the model return VARAD_ERR_BUSY. No call blocks on another,
 *     so no deadlock is possible. varad_destroy must not race with any other call on
 *     the same model.
 *   - VaradTrainingSet: one thread at a time for _add and _destroy.
 *   - VaradScoreResult and VaradImage: const accessors from any thread; _destroy alone.
 *   - The last error is per thread.
 *   - The progress callback runs on the thread that called varad_train.
 */


#ifndef VARAD_H
#define VARAD_H

/* Generated by cbindgen from the Rust sources (build.rs). Do not edit: run `cargo build`. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The version of this header. Compare VARAD_VERSION_NUMBER with varad_version_number()
   at run time to refuse a library whose major version differs. */
#define VARAD_VERSION_MAJOR 0
#define VARAD_VERSION_MINOR 1
#define VARAD_VERSION_PATCH 0
#define VARAD_VERSION_NUMBER 1000
#define VARAD_VERSION_STRING "0.1.0"


// The result of every fallible `varad_*` call. `VARAD_OK` is 0; every other value names
// one class of failure, and `varad_last_error_message()` says what exactly went wrong.
// Values are explicit and never reused.
typedef enum VaradStatus {
  // Success.
  VARAD_OK = 0,
  // An argument is out of range or inconsistent.
  VARAD_ERR_INVALID_ARGUMENT = 1,
  // A required pointer argument is NULL.
  VARAD_ERR_NULL_POINTER = 2,
  // An image view is unusable (no data, zero size, stride shorter than a row, unknown format).
  VARAD_ERR_INVALID_IMAGE = 3,
  // An image exceeds the configured pixel limit.
  VARAD_ERR_IMAGE_TOO_LARGE = 4,
  // An image file could not be decoded.
  VARAD_ERR_IMAGE_DECODE = 5,
  // A file could not be read or written.
  VARAD_ERR_IO = 6,
  // The ONNX Runtime library was not found, could not be loaded, or is too old.
  VARAD_ERR_RUNTIME_NOT_FOUND = 7,
  // ONNX Runtime failed while creating or running a session.
  VARAD_ERR_RUNTIME = 8,
  // The backbone ONNX file does not meet the backbone contract.
  VARAD_ERR_BACKBONE_CONTRACT = 9,
  // The configuration is invalid.
  VARAD_ERR_CONFIG = 10,
  // A model file is malformed or does not match.
  VARAD_ERR_MODEL_FILE = 11,
  // A CUDA device was requested and could not be used.
  VARAD_ERR_CUDA = 12,
  // The progress callback asked to stop.
  VARAD_ERR_CANCELLED = 13,
  // An output buffer is too small; the call says how much is needed.
  VARAD_ERR_BUFFER_TOO_SMALL = 14,
  // The library caught a panic (a bug); the message says where.
  VARAD_ERR_PANIC = 15,
  // Another internal error (a bug); the message says where.
  VARAD_ERR_INTERNAL = 16,
  // The model is in use by another thread in a way that excludes this call: training
  // (or changing thresholds) while scoring runs, or scoring while training runs. Retry
  // when the other call has returned; nothing was changed.
  VARAD_ERR_BUSY = 17,
  // The call needs a calibrated model (a trained one, or one loaded from a trained
  // model's file) or a result scored with one.
  VARAD_ERR_NOT_CALIBRATED = 18,
  // A batch of images would need more memory than the model's per-call limit
  // (`VaradParams.max_batch_bytes`); score fewer or smaller images per call.
  VARAD_ERR_BATCH_TOO_LARGE = 19,
  // The training cache is full: its memory (`VaradParams.cache_limit_bytes`) and its
  // temporary file (`VaradParams.cache_disk_limit_bytes`) hold all they may.
  VARAD_ERR_CACHE_FULL = 20,
} VaradStatus;

// The pixel formats of `VaradImageView.format`. The values are those of the engine's
// pixel formats and are never renumbered; 0 is deliberately no format, so a
// zero-initialised view is refused.
enum VaradPixelFormat
#ifdef __cplusplus
  : uint32_t
#endif // __cplusplus
 {
  // One 8-bit grey sample per pixel.
  VARAD_PIXEL_FORMAT_MONO8 = 1,
  // One 16-bit grey sample per pixel, native byte order; no alignment required.
  VARAD_PIXEL_FORMAT_MONO16 = 2,
  // 8-bit red, green, blue.
  VARAD_PIXEL_FORMAT_RGB8 = 3,
  // 8-bit blue, green, red (OpenCV's order).
  VARAD_PIXEL_FORMAT_BGR8 = 4,
  // 8-bit red, green, blue, alpha (alpha ignored).
  VARAD_PIXEL_FORMAT_RGBA8 = 5,
  // 8-bit blue, green, red, alpha (alpha ignored).
  VARAD_PIXEL_FORMAT_BGRA8 = 6,
};
#ifndef __cplusplus
typedef uint32_t VaradPixelFormat;
#endif // __cplusplus

// Where a model runs: `VaradParams.device`, `VaradLoadParams.device` and
// `varad_active_device`.
enum VaradDevice
#ifdef __cplusplus
  : uint32_t
#endif // __cplusplus
 {
  // CUDA when a usable GPU is found, else the CPU (the fallback is logged).
  VARAD_DEVICE_AUTO = 0,
  // The CPU.
  VARAD_DEVICE_CPU = 1,
  // The CUDA device `cuda_device`; failing to use it is `VARAD_ERR_CUDA`.
  VARAD_DEVICE_CUDA = 2,
  // Only in `VaradLoadParams`: the device the model was saved with.
  VARAD_DEVICE_AS_SAVED = 255,
};
#ifndef __cplusplus
typedef uint32_t VaradDevice;
#endif // __cplusplus

// How each level's prediction errors become its anomaly map: `VaradParams.map_norm`.
enum VaradMapNorm
#ifdef __cplusplus
  : uint32_t
#endif // __cplusplus
 {
  // The paper's map: the raw squared prediction error, levels summed as they are.
  VARAD_MAP_NORM_NONE = 0,
  // Each level divided by its mean on the normal training images.
  VARAD_MAP_NORM_LEVEL = 1,
  // Each channel's error divided by its mean on the normal training images.
  VARAD_MAP_NORM_CHANNEL = 2,
  // The channel-normalised map scored against its normal mean and spread at each
  // position.
  VARAD_MAP_NORM_POSITION = 3,
  // As `VARAD_MAP_NORM_POSITION`, also flagging errors far below normal (the default).
  VARAD_MAP_NORM_POSITION_TWO_SIDED = 4,
};
#ifndef __cplusplus
typedef uint32_t VaradMapNorm;
#endif // __cplusplus

// The thresholds of a calibrated model, for `varad_get_threshold` and
// `varad_set_threshold`.
enum VaradThreshold
#ifdef __cplusplus
  : uint32_t
#endif // __cplusplus
 {
  // The normalisation unit: an image score equal to it normalises to 1.0. Setting it
  // does not move the decision thresholds. Finite and positive.
  VARAD_THRESHOLD_IMAGE = 1,
  // Image scores at or above it are reviewed (or fail). At most the fail threshold.
  VARAD_THRESHOLD_REVIEW = 2,
  // Image scores at or above it fail. At least the review threshold.
  VARAD_THRESHOLD_FAIL = 3,
  // Pixels strictly above it form defect regions. Finite.
  VARAD_THRESHOLD_PIXEL = 4,
};
#ifndef __cplusplus
typedef uint32_t VaradThreshold;
#endif // __cplusplus

// The verdict on an image of a calibrated model.
enum VaradDecision
#ifdef __cplusplus
  : uint32_t
#endif // __cplusplus
 {
  // Below the review threshold: a good part.
  VARAD_DECISION_PASS = 1,
  // At or above the review threshold, below the fail threshold: a person looks.
  VARAD_DECISION_REVIEW = 2,
  // At or above the fail threshold: reject.
  VARAD_DECISION_FAIL = 3,
};
#ifndef __cplusplus
typedef uint32_t VaradDecision;
#endif // __cplusplus

// An image read from a file, owned by the library (see `varad_image_read`).
typedef struct VaradImage VaradImage;

// An opaque model. Scoring takes a `const VaradModel*` and may run on many threads at
// once; training, threshold changes and destroying take a `VaradModel*` and are
// exclusive.
typedef struct VaradModel VaradModel;

// The result of scoring one image, owned by the caller (free with
// `varad_score_result_destroy`). Its accessors take a `const VaradScoreResult*`: any
// number of threads may read one result at once.
typedef struct VaradScoreResult VaradScoreResult;

// Training images, tokenized by the model's backbone as they are added (the caller may
// free each image as soon as `varad_training_set_add` returns). A set belongs to the
// model it was created for, or one with the same backbone levels and input size.
typedef struct VaradTrainingSet VaradTrainingSet;

// A borrowed image: `height` rows of `width` pixels in `format`, `stride` bytes apart.
// Nothing is copied when a view is passed: a camera buffer, an OpenCV `cv::Mat`
// (`data`, `cols`, `rows`, `step`) or a HALCON image is used where it lies.
//
// The library reads `stride * (height - 1) + width * bytes_per_pixel` bytes from `data`
// during the call it is passed to and keeps no pointer afterwards.
typedef struct VaradImageView {
  // The first pixel of the first row. Must not be NULL.
  const uint8_t *data;
  // Pixels per row, at least 1.
  uint32_t width;
  // Rows, at least 1.
  uint32_t height;
  // Bytes from the start of one row to the start of the next, at least
  // `width * bytes_per_pixel`; 0 means tightly packed rows.
  size_t stride;
  // A `VaradPixelFormat` value.
  uint32_t format;
} VaradImageView;

// How `varad_create` builds a model. Get one from `varad_default_params()`, set
// `backbone_path` and what you want to change, pass its address. `size` lets fields be
// added in later versions: leave it as `varad_default_params()` sets it.
typedef struct VaradParams {
  // `sizeof(VaradParams)`. Default: set by `varad_default_params()`.
  size_t size;
  // The backbone ONNX file (borrowed during `varad_create`). Required. Default: NULL.
  const char *backbone_path;
  // The ONNX Runtime library file. Default: NULL (search: `ORT_DYLIB_PATH`, the
  // project's setup folder, the system library path).
  const char *runtime_path;
  // Comma-separated backbone output names to use, finest first. Default: NULL (the
  // backbone's `varad.default_levels`, or all its outputs when it declares none).
  const char *levels;
  // Backbone input width; 0 with `input_height` 0 = the backbone's preferred size.
  // Default: 0.
  uint32_t input_width;
  // Backbone input height. Default: 0.
  uint32_t input_height;
  // 0 = stretch the image to the input, 1 = keep the aspect ratio (pad). Default: 0.
  uint32_t resize_mode;
  // A `VaradDevice` (not `VARAD_DEVICE_AS_SAVED`). Default: `VARAD_DEVICE_AUTO`.
  uint32_t device;
  // The CUDA device index when `device` is `VARAD_DEVICE_CUDA`. Default: 0.
  uint32_t cuda_device;
  // Worker threads; 0 = one per physical core. Default: 0.
  uint32_t threads;
  // The largest image accepted, in pixels. Default: 268435456 (2^28).
  uint64_t max_image_pixels;
  // Seed of every random choice. Default: 0.
  uint64_t seed;
  // Prediction step m. Default: 4.
  uint32_t prediction_step;
  // Mamba blocks per predictor. Default: 1.
  uint32_t n_layers;
  // SSM state size. Default: 16.
  uint32_t d_state;
  // Inner width factor. Default: 2.
  uint32_t expand;
  // Causal convolution width. Default: 4.
  uint32_t d_conv;
  // Nonzero: stop the gradient through the prediction target. Default: 0.
  uint32_t detach_target;
  // Training epochs. Default: 10.
  uint32_t epochs;
  // Images per optimiser step. Default: 2.
  uint32_t batch_size;
  // AdamW learning rate. Default: 5e-4.
  double learning_rate;
  // AdamW weight decay. Default: 0.01.
  double weight_decay;
  // AdamW beta1. Default: 0.9.
  double beta1;
  // AdamW beta2. Default: 0.999.
  double beta2;
  // AdamW eps. Default: 1e-8.
  double eps;
  // Memory for the training token cache in bytes; beyond it tokens spill to a
  // temporary file. Default: 4294967296 (4 GiB).
  uint64_t cache_limit_bytes;
  // Share of the training images held back for calibration. Default: 0.1.
  double calibration_fraction;
  // Fewest images held back for calibration. Default: 3.
  uint32_t min_calibration_images;
  // Smallest defect region reported, in pixels. Default: 1.
  uint32_t min_region_area;
  // Gaussian smoothing of the anomaly map, in image pixels; 0 = none. Default: 4.
  float sigma;
  // Image score: 0 = the map's maximum, k > 0 = the mean of its k largest pixels.
  // Default: 0.
  uint32_t top_k;
  // The target share of good parts at or above the image threshold, in (0, 1).
  // Default: 0.01.
  double target_false_reject_rate;
  // Review band width in standard deviations of the normal scores. Default: 3.0.
  double review_band;
  // Quantile of normal pixels used as the pixel threshold, in (0, 1]. Default: 1.0.
  double pixel_quantile;
  // Memory one scoring call may need for its whole batch, in bytes; a batch that
  // would need more is refused with `VARAD_ERR_BATCH_TOO_LARGE` before any work.
  // Default: 4294967296 (4 GiB). (Added in 0.1.0 after the first layout: callers
  // whose `size` ends before it get the default.)
  uint64_t max_batch_bytes;
  // Bytes the training cache may spill to its temporary file once
  // `cache_limit_bytes` of memory are used; past it `varad_training_set_add` returns
  // `VARAD_ERR_CACHE_FULL`. Default: 68719476736 (64 GiB).
  uint64_t cache_disk_limit_bytes;
  // Nonzero: average each token's directional predictions over the directions that
  // have seen context, leaving out the BOS-only guesses near the borders. Default: 0
  // (the paper's plain mean of the four).
  uint32_t context_mean;
  // A `VaradMapNorm`: how each level's prediction errors become its map. Default:
  // `VARAD_MAP_NORM_POSITION_TWO_SIDED` (`VARAD_MAP_NORM_NONE` is the paper's map).
  uint32_t map_norm;
} VaradParams;

// What `varad_load` may change about a saved model: where its files are and where it
// runs. Get one from `varad_default_load_params()`.
typedef struct VaradLoadParams {
  // `sizeof(VaradLoadParams)`. Default: set by `varad_default_load_params()`.
  size_t size;
  // The backbone file, when not where the model file says; its SHA-256 must match the
  // one saved. Default: NULL (the saved path).
  const char *backbone_path;
  // The ONNX Runtime library file. Default: NULL (the saved one, else search).
  const char *runtime_path;
  // A `VaradDevice`. Default: `VARAD_DEVICE_AS_SAVED`.
  uint32_t device;
  // The CUDA device index when `device` is `VARAD_DEVICE_CUDA`. Default: 0.
  uint32_t cuda_device;
  // Worker threads: -1 = as saved, 0 = one per physical core. Default: -1.
  int32_t threads;
} VaradLoadParams;

// Per-call scoring options. Get one from `varad_default_score_params()`; passing NULL
// instead means the defaults.
typedef struct VaradScoreParams {
  // `sizeof(VaradScoreParams)`. Default: set by `varad_default_score_params()`.
  size_t size;
  // Region of interest: one byte per image pixel, row-major, nonzero = inspect; the
  // image score and the regions ignore the rest. Every image of the call must then
  // have `roi_len = width * height` pixels. Borrowed for the call. Default: NULL (the
  // whole image).
  const uint8_t *roi;
  // Bytes at `roi`. Default: 0.
  size_t roi_len;
  // Nonzero: also keep the raw map on the token grid (`varad_result_raw_map`).
  // Default: 0.
  uint32_t raw_map;
} VaradScoreParams;

// A connected defect region: pixels above the pixel threshold.
// This struct does not grow within a major version (results hand out arrays of it).
typedef struct VaradRegion {
  // Pixels in the region.
  uint64_t area;
  // Bounding box left column.
  uint32_t x;
  // Bounding box top row.
  uint32_t y;
  // Bounding box width.
  uint32_t width;
  // Bounding box height.
  uint32_t height;
  // Centroid column.
  double centroid_x;
  // Centroid row.
  double centroid_y;
  // The largest map value in the region.
  float peak;
  // Column of the peak.
  uint32_t peak_x;
  // Row of the peak.
  uint32_t peak_y;
  // The mean map value in the region.
  float mean;
} VaradRegion;

// Where training stands, passed to the progress callback after every optimiser step.
typedef struct VaradProgress {
  // `sizeof(VaradProgress)` as the library knows it: fields may be added at the end;
  // read only those that fit in `size`.
  size_t size;
  // The current epoch, from 1.
  uint32_t epoch;
  // Epochs in all.
  uint32_t epochs;
  // Optimiser steps done so far, from 1.
  uint32_t step;
  // Steps in all.
  uint32_t steps;
  // The loss of this step.
  double loss;
  // Seconds since training started.
  double elapsed_seconds;
  // Estimated seconds left.
  double remaining_seconds;
} VaradProgress;

// Called by `varad_train` after every optimiser step, on the thread that called
// `varad_train`. Return 0 to go on, nonzero to cancel (`varad_train` then returns
// `VARAD_ERR_CANCELLED` and leaves the model unchanged). `progress` is valid during the
// call only. The callback must not call `varad_*` functions on the model being trained
// (they would report `VARAD_ERR_BUSY`) and must not unwind (C++ exceptions, longjmp).
typedef int32_t (*VaradProgressCallback)(const struct VaradProgress *progress, void *user_data);

// What `varad_train` did. Set `size` to `sizeof(VaradTrainReport)` before passing it.
typedef struct VaradTrainReport {
  // Set by the caller: `sizeof(VaradTrainReport)`. The library writes only the fields
  // that fit in `size`.
  size_t size;
  // Images trained on.
  uint32_t train_images;
  // Images held back for calibration.
  uint32_t calibration_images;
  // Epochs run.
  uint32_t epochs;
  // Optimiser steps run.
  uint32_t steps;
  // The mean loss of the last epoch.
  double final_loss;
  // Seconds training took.
  double elapsed_seconds;
  // Token cache bytes held in memory.
  uint64_t cache_memory_bytes;
  // Token cache bytes spilled to a temporary file.
  uint64_t cache_spilled_bytes;
} VaradTrainReport;

#ifdef __cplusplus
extern "C" {
#endif // __cplusplus

// Reads an image file (PNG, JPEG, TIFF or BMP; 8-bit grey, 16-bit grey, RGB or RGBA)
// into a new `VaradImage`, stored in `*out_image`. Pass it to scoring or training with
// `varad_image_view`. Images larger than 2^28 pixels are refused before decoding.
//
// Ownership: the caller owns `*out_image` and frees it with `varad_image_destroy`;
// `path` is borrowed for the call. Thread safety: any thread.
// Errors: `VARAD_ERR_NULL_POINTER`, `VARAD_ERR_INVALID_ARGUMENT` (path not UTF-8),
// `VARAD_ERR_IO`, `VARAD_ERR_IMAGE_DECODE`, `VARAD_ERR_IMAGE_TOO_LARGE`.
//
// # Safety
// `path` is a NUL-terminated string; `out_image` is writable.
enum VaradStatus varad_image_read(const char *path, struct VaradImage **out_image);

// Fills `*out_view` with a view of `image`'s pixels (packed rows, the file's format).
//
// Ownership: the view borrows `image`'s memory: it is valid until `varad_image_destroy`.
// Thread safety: `image` is const; any number of threads may take views at once.
// Errors: `VARAD_ERR_NULL_POINTER`.
//
// # Safety
// `image` is NULL or a live image; `out_view` is NULL or writable.
enum VaradStatus varad_image_view(const struct VaradImage *image, struct VaradImageView *out_view);

// Frees an image from `varad_image_read`. NULL is a harmless no-op.
//
// Ownership: takes `image`; views of it become invalid. Thread safety: no other call
// may use `image` at the same time. Errors: none.
//
// # Safety
// `image` is NULL or an image from `varad_image_read` not yet destroyed.
void varad_image_destroy(struct VaradImage *image);

// The default model parameters (the paper's), with `size` set and `backbone_path` NULL.
//
// Thread safety: any thread. Errors: none.
struct VaradParams varad_default_params(void);

// Creates an untrained model from `params`: loads ONNX Runtime if needed, opens the
// backbone and checks the configuration against it.
//
// Ownership: the caller owns `*out_model` and frees it with `varad_destroy`; `params`
// and its strings are borrowed for the call. Thread safety: any thread.
// Errors: `VARAD_ERR_NULL_POINTER` (`params`, `params->backbone_path` or `out_model`
// NULL), `VARAD_ERR_INVALID_ARGUMENT` (`params->size` too small, unknown device or
// resize mode, a string not UTF-8), `VARAD_ERR_CONFIG`, `VARAD_ERR_IO`,
// `VARAD_ERR_RUNTIME_NOT_FOUND`, `VARAD_ERR_RUNTIME`, `VARAD_ERR_BACKBONE_CONTRACT`,
// `VARAD_ERR_CUDA`. `*out_model` is written only on success.
//
// # Safety
// `params` is NULL or points at a `VaradParams` whose string fields are NULL or
// NUL-terminated; `out_model` is NULL or writable.
enum VaradStatus varad_create(const struct VaradParams *params, struct VaradModel **out_model);

// Frees a model. NULL is a harmless no-op.
//
// Ownership: takes `model`. Thread safety: no other call may use `model` at the same
// time, or after. Errors: none.
//
// # Safety
// `model` is NULL or a model from `varad_create`/`varad_load` not yet destroyed.
void varad_destroy(struct VaradModel *model);

// Writes the model (configuration, weights, calibration) to `path` atomically (a
// temporary file renamed into place).
//
// Ownership: `path` is borrowed. Thread safety: `model` is const: safe while other
// threads score. Errors: `VARAD_ERR_NULL_POINTER`, `VARAD_ERR_INVALID_ARGUMENT` (path
// not UTF-8), `VARAD_ERR_IO`, `VARAD_ERR_BUSY` (the model is training).
//
// # Safety
// `model` is NULL or a live model; `path` is NULL or a NUL-terminated string.
enum VaradStatus varad_save(const struct VaradModel *model, const char *path);

// The default load parameters: everything as saved.
//
// Thread safety: any thread. Errors: none.
struct VaradLoadParams varad_default_load_params(void);

// Loads a model file written by `varad_save`. `params` may be NULL (everything as
// saved).
//
// Ownership: the caller owns `*out_model` and frees it with `varad_destroy`; `path` and
// `params` are borrowed. Thread safety: any thread.
// Errors: `VARAD_ERR_NULL_POINTER`, `VARAD_ERR_INVALID_ARGUMENT` (size too small,
// unknown device, bad threads, not UTF-8), `VARAD_ERR_IO`, `VARAD_ERR_MODEL_FILE`
// (malformed, newer format, backbone mismatch), `VARAD_ERR_RUNTIME_NOT_FOUND`,
// `VARAD_ERR_RUNTIME`, `VARAD_ERR_BACKBONE_CONTRACT`, `VARAD_ERR_CUDA`.
// `*out_model` is written only on success.
//
// # Safety
// `path` is NULL or NUL-terminated; `params` is NULL or a `VaradLoadParams` with NULL or
// NUL-terminated strings; `out_model` is NULL or writable.
enum VaradStatus varad_load(const char *path,
                            const struct VaradLoadParams *params,
                            struct VaradModel **out_model);

// The device the model's backbone actually runs on: `VARAD_DEVICE_CPU` or
// `VARAD_DEVICE_CUDA` (then `*out_cuda_device` is its index; 0 otherwise).
// `out_cuda_device` may be NULL.
//
// Thread safety: `model` is const: any thread, also while others score.
// Errors: `VARAD_ERR_NULL_POINTER`, `VARAD_ERR_BUSY` (the model is training).
//
// # Safety
// `model` is NULL or a live model; `out_device` and `out_cuda_device` are NULL or
// writable.
enum VaradStatus varad_active_device(const struct VaradModel *model,
                                     uint32_t *out_device,
                                     uint32_t *out_cuda_device);

// Reads one threshold of the model's calibration into `*out_value`.
//
// Thread safety: `model` is const: any thread, also while others score.
// Errors: `VARAD_ERR_NULL_POINTER`, `VARAD_ERR_INVALID_ARGUMENT` (unknown `which`),
// `VARAD_ERR_NOT_CALIBRATED`, `VARAD_ERR_BUSY` (the model is training).
//
// # Safety
// `model` is NULL or a live model; `out_value` is NULL or writable.
enum VaradStatus varad_get_threshold(const struct VaradModel *model,
                                     uint32_t which,
                                     float *out_value);

// Sets one threshold of the model's calibration (takes effect for the next scoring
// call; saved by `varad_save`). On any error nothing changes.
//
// Thread safety: exclusive: `VARAD_ERR_BUSY` when another thread is scoring with or
// training the model at that moment.
// Errors: `VARAD_ERR_NULL_POINTER`, `VARAD_ERR_INVALID_ARGUMENT` (unknown `which`, a value
// out of range, review above fail), `VARAD_ERR_NOT_CALIBRATED`, `VARAD_ERR_BUSY`.
//
// # Safety
// `model` is NULL or a live model.
enum VaradStatus varad_set_threshold(struct VaradModel *model, uint32_t which, float value);

// Sets the review and fail thresholds together (`review <= fail`), for moves that would
// cross one over the other if made one at a time. On any error nothing changes.
//
// Thread safety and errors: as `varad_set_threshold`.
//
// # Safety
// `model` is NULL or a live model.
enum VaradStatus varad_set_decision_thresholds(struct VaradModel *model, float review, float fail);

// Loads the ONNX Runtime library now (creating a model does it too). `path` names the
// library file; NULL searches: `ORT_DYLIB_PATH`, then the project's setup folder, then
// the system library path. A process holds one ONNX Runtime: once loaded, later calls
// succeed if `path` is NULL or names the same file.
//
// Ownership: `path` is borrowed for the call. Thread safety: any thread; concurrent
// first loads are serialised.
// Errors: `VARAD_ERR_RUNTIME_NOT_FOUND` (missing, not ONNX Runtime, older than 1.17, or a
// different file than the one already loaded), `VARAD_ERR_RUNTIME`,
// `VARAD_ERR_INVALID_ARGUMENT` (path not UTF-8).
//
// # Safety
// `path` is NULL or a NUL-terminated string.
enum VaradStatus varad_runtime_load(const char *path);

// Copies the absolute path of the loaded ONNX Runtime library file into `buf`
// (NUL-terminated); `*needed` receives the size needed, NUL included.
//
// Ownership: the caller owns `buf`. Thread safety: any thread.
// Errors: `VARAD_ERR_RUNTIME_NOT_FOUND` (not loaded yet), `VARAD_ERR_BUFFER_TOO_SMALL`
// (`buf` NULL or too short: nothing written to `buf`, `*needed` set).
//
// # Safety
// `buf` is NULL or writable for `len` bytes; `needed` is NULL or writable.
enum VaradStatus varad_runtime_path(char *buf, size_t len, size_t *needed);

// Copies the version of the loaded ONNX Runtime (e.g. `"1.23.2"`) into `buf`
// (NUL-terminated); `*needed` receives the size needed, NUL included.
//
// Ownership: the caller owns `buf`. Thread safety: any thread.
// Errors: `VARAD_ERR_RUNTIME_NOT_FOUND` (not loaded yet), `VARAD_ERR_BUFFER_TOO_SMALL`.
//
// # Safety
// `buf` is NULL or writable for `len` bytes; `needed` is NULL or writable.
enum VaradStatus varad_runtime_version(char *buf, size_t len, size_t *needed);

// The default scoring parameters: no ROI, no raw map.
//
// Thread safety: any thread. Errors: none.
struct VaradScoreParams varad_default_score_params(void);

// Scores one image. `params` may be NULL (the defaults).
//
// Ownership: the caller owns `*out_result` and frees it with
// `varad_score_result_destroy`; `image` (and its pixels) and `params` (and its ROI) are
// borrowed for the call.
// Thread safety: `model` is const: any number of threads may score with one model at
// once, each getting exactly what a serial call would. While the model trains (another
// thread in `varad_train`) this returns `VARAD_ERR_BUSY`.
// Errors: `VARAD_ERR_NULL_POINTER`, `VARAD_ERR_INVALID_IMAGE` (zero size, stride too
// short, unknown format), `VARAD_ERR_IMAGE_TOO_LARGE`, `VARAD_ERR_INVALID_ARGUMENT`
// (`params->size` too small, ROI size not the image's), `VARAD_ERR_BATCH_TOO_LARGE`
// (more memory than `VaradParams.max_batch_bytes`), `VARAD_ERR_RUNTIME`,
// `VARAD_ERR_BUSY`. `*out_result` is written only on success.
//
// # Safety
// `model`, `image`, `params` are NULL or valid; `image->data` is readable for the bytes
// the view covers; `params->roi` is NULL or readable for `roi_len` bytes; `out_result`
// is NULL or writable.
enum VaradStatus varad_score(const struct VaradModel *model,
                             const struct VaradImageView *image,
                             const struct VaradScoreParams *params,
                             struct VaradScoreResult **out_result);

// Scores `count` images at once (one backbone batch), writing `count` results to
// `out_results[0..count]`. `params` may be NULL; its ROI applies to every image.
//
// Ownership: the caller owns every result and frees each with
// `varad_score_result_destroy`; on error no result is written and nothing is to be
// freed. Thread safety and errors: as `varad_score`, plus `VARAD_ERR_INVALID_ARGUMENT`
// for `count` 0.
//
// # Safety
// `images` is NULL or readable for `count` views; `out_results` is NULL or writable for
// `count` pointers; the rest as `varad_score`.
enum VaradStatus varad_score_batch(const struct VaradModel *model,
                                   const struct VaradImageView *images,
                                   size_t count,
                                   const struct VaradScoreParams *params,
                                   struct VaradScoreResult **out_results);

// Frees a result. NULL is a harmless no-op.
//
// Ownership: takes `result`; pointers obtained from it become invalid.
// Thread safety: no other call may use `result` meanwhile. Errors: none.
//
// # Safety
// `result` is NULL or a result from `varad_score`/`varad_score_batch` not yet destroyed.
void varad_score_result_destroy(struct VaradScoreResult *result);

// The anomaly map at the image's size: `*out_map` points at `*out_len = width * height`
// floats, row-major (higher = more anomalous); `*out_width`, `*out_height` the image's
// size. `out_width` and `out_height` may be NULL.
//
// Ownership: the map belongs to `result`; valid until `varad_score_result_destroy`.
// Thread safety: `result` is const. Errors: `VARAD_ERR_NULL_POINTER`.
//
// # Safety
// `result` is NULL or live; the out-pointers are NULL or writable.
enum VaradStatus varad_result_map(const struct VaradScoreResult *result,
                                  const float **out_map,
                                  size_t *out_len,
                                  uint32_t *out_width,
                                  uint32_t *out_height);

// The raw anomaly map on the finest token grid (before resizing and smoothing), when
// `VaradScoreParams.raw_map` was set: `*out_len = width * height` floats, row-major.
//
// Ownership: the map belongs to `result`. Thread safety: `result` is const.
// Errors: `VARAD_ERR_NULL_POINTER`, `VARAD_ERR_INVALID_ARGUMENT` (not requested).
//
// # Safety
// `result` is NULL or live; the out-pointers are NULL or writable.
enum VaradStatus varad_result_raw_map(const struct VaradScoreResult *result,
                                      const float **out_map,
                                      size_t *out_len,
                                      uint32_t *out_width,
                                      uint32_t *out_height);

// The image score (under the configured policy; the map's maximum by default, inside
// the ROI if one was given). Available for uncalibrated models too.
//
// Thread safety: `result` is const. Errors: `VARAD_ERR_NULL_POINTER`.
//
// # Safety
// `result` is NULL or live; `out_score` is NULL or writable.
enum VaradStatus varad_result_image_score(const struct VaradScoreResult *result, float *out_score);

// The normalised score: the image score divided by the image threshold (1.0 = the
// threshold; below 1 looks normal).
//
// Thread safety: `result` is const. Errors: `VARAD_ERR_NULL_POINTER`,
// `VARAD_ERR_NOT_CALIBRATED`.
//
// # Safety
// `result` is NULL or live; `out_score` is NULL or writable.
enum VaradStatus varad_result_normalised_score(const struct VaradScoreResult *result,
                                               float *out_score);

// The decision: a `VaradDecision` value in `*out_decision`.
//
// Thread safety: `result` is const. Errors: `VARAD_ERR_NULL_POINTER`,
// `VARAD_ERR_NOT_CALIBRATED`.
//
// # Safety
// `result` is NULL or live; `out_decision` is NULL or writable.
enum VaradStatus varad_result_decision(const struct VaradScoreResult *result,
                                       uint32_t *out_decision);

// The defect regions, largest peak first: `*out_regions` points at `*out_count`
// regions (NULL when there are none). `out_found` (may be NULL) receives how many were
// found before the list was capped.
//
// Ownership: the array belongs to `result`. Thread safety: `result` is const.
// Errors: `VARAD_ERR_NULL_POINTER`, `VARAD_ERR_NOT_CALIBRATED`.
//
// # Safety
// `result` is NULL or live; the out-pointers are NULL or writable.
enum VaradStatus varad_result_regions(const struct VaradScoreResult *result,
                                      const struct VaradRegion **out_regions,
                                      size_t *out_count,
                                      size_t *out_found);

// Writes the result's anomaly map as an 8-bit grey PNG: `value / scale * 255`, clamped
// to 0..255. `scale` > 0 fixes the white point (e.g. the fail threshold, so heatmaps of
// different images compare); `scale` <= 0 uses the map's own maximum.
//
// Ownership: `path` is borrowed. Thread safety: `result` is const.
// Errors: `VARAD_ERR_NULL_POINTER`, `VARAD_ERR_INVALID_ARGUMENT` (`scale` not finite,
// path not UTF-8), `VARAD_ERR_IO`.
//
// # Safety
// `result` is NULL or live; `path` is NULL or NUL-terminated.
enum VaradStatus varad_write_heatmap_png(const struct VaradScoreResult *result,
                                         const char *path,
                                         float scale);

// Creates an empty training set for `model`.
//
// Ownership: the caller owns `*out_set` and frees it with `varad_training_set_destroy`.
// Thread safety: `model` is const; any thread. Errors: `VARAD_ERR_NULL_POINTER`,
// `VARAD_ERR_BUSY` (the model is training). `*out_set` is written only on success.
//
// # Safety
// `model` is NULL or a live model; `out_set` is NULL or writable.
enum VaradStatus varad_training_set_create(const struct VaradModel *model,
                                           struct VaradTrainingSet **out_set);

// Adds one good image to `set`: runs the backbone on it now and caches its features.
//
// Ownership: `image` and its pixels are borrowed for the call only.
// Thread safety: `set` is exclusive to the calling thread; `model` is const (other
// threads may score with it meanwhile).
// Errors: `VARAD_ERR_NULL_POINTER`, `VARAD_ERR_INVALID_IMAGE`, `VARAD_ERR_IMAGE_TOO_LARGE`,
// `VARAD_ERR_INVALID_ARGUMENT` (the set was made for an incompatible model),
// `VARAD_ERR_RUNTIME`, `VARAD_ERR_IO` (spilling the cache), `VARAD_ERR_CACHE_FULL` (the
// cache's memory and spill limits are reached), `VARAD_ERR_BUSY` (the model is training).
// On error the set is unchanged.
//
// # Safety
// `set`, `model`, `image` are NULL or live; `image->data` is readable for the bytes the
// view covers.
enum VaradStatus varad_training_set_add(struct VaradTrainingSet *set,
                                        const struct VaradModel *model,
                                        const struct VaradImageView *image);

// The number of images in `set`, in `*out_count`.
//
// Thread safety: `set` is const. Errors: `VARAD_ERR_NULL_POINTER`.
//
// # Safety
// `set` is NULL or live; `out_count` is NULL or writable.
enum VaradStatus varad_training_set_count(const struct VaradTrainingSet *set, size_t *out_count);

// Frees a training set. NULL is a harmless no-op.
//
// Ownership: takes `set`. Thread safety: no other call may use `set` meanwhile.
// Errors: none.
//
// # Safety
// `set` is NULL or a set from `varad_training_set_create` not yet destroyed.
void varad_training_set_destroy(struct VaradTrainingSet *set);

// Trains `model` on `set` (holding back calibration images, then calibrating the
// thresholds), calling `progress` (may be NULL) after every step with `user_data`. On
// success the new weights and calibration replace the model's and `*report` (may be
// NULL) is filled in. On cancellation or any error the model is unchanged and `*report`
// is not written.
//
// Ownership: `set` is borrowed (it can be reused, e.g. to train again).
// Thread safety: exclusive: if another thread is scoring with `model` (or training it)
// at that moment, returns `VARAD_ERR_BUSY` at once; while training runs, other threads'
// calls on `model` return `VARAD_ERR_BUSY`.
// Errors: `VARAD_ERR_NULL_POINTER`, `VARAD_ERR_INVALID_ARGUMENT` (`report->size` too
// small, too few images: at least one to train on beyond those held back), `VARAD_ERR_BUSY`,
// `VARAD_ERR_CANCELLED`, `VARAD_ERR_IO`, `VARAD_ERR_INTERNAL` (training diverged).
//
// # Safety
// `model` and `set` are NULL or live; `report` is NULL or writable for `report->size`
// bytes; `progress` is NULL or a function as `VaradProgressCallback` describes.
enum VaradStatus varad_train(struct VaradModel *model,
                             const struct VaradTrainingSet *set,
                             VaradProgressCallback progress,
                             void *user_data,
                             struct VaradTrainReport *report);

// The version of the loaded library, packed as `major * 1000000 + minor * 1000 + patch`
// (`VARAD_VERSION_NUMBER` is the header's). A binding compares the two and refuses a
// library whose major version differs.
//
// Thread safety: any thread, any time. Errors: none.
uint32_t varad_version_number(void);

// The version of the loaded library as text, e.g. `"0.1.0"`.
//
// Ownership: a static string owned by the library; never free it.
// Thread safety: any thread, any time. Errors: none.
const char *varad_version_string(void);

// The message of the last failed `varad_*` call on this thread, or NULL when the last
// call succeeded.
//
// Ownership: owned by the library; valid until the next `varad_*` call on this thread.
// Copy it (or use `varad_last_error_copy`) to keep it.
// Thread safety: each thread has its own last error. Errors: none.
const char *varad_last_error_message(void);

// Copies the last error message of this thread, NUL-terminated, into `buf` (`len`
// bytes); an empty string when the last call succeeded. `*needed` (when `needed` is not
// NULL) receives the size the message needs, NUL included, whether or not it fits.
// This call does not change the last error.
//
// Ownership: the caller owns `buf`. Thread safety: any thread.
// Errors: `VARAD_ERR_BUFFER_TOO_SMALL` when `buf` is NULL or `len` is too small (then
// `buf` is not written).
//
// # Safety
// `buf` is NULL or writable for `len` bytes; `needed` is NULL or writable.
enum VaradStatus varad_last_error_copy(char *buf, size_t len, size_t *needed);

#ifdef __cplusplus
}  // extern "C"
#endif  // __cplusplus

#endif  /* VARAD_H */
