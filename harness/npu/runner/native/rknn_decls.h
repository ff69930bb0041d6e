/* The few declarations of the RKNN runtime's C API that npu-hil's native runner needs.
 *
 * Written from Rockchip's public API documentation (RKNN API user guides for RKNPU1 1.7 and RKNPU2 1.x/2.x),
 * not copied from rknn_api.h. One source, two ABIs, chosen at build time:
 *   -DNPU_HIL_RKNPU1  librknn_api.so (RV1109/RV1126, RK1808): rknn_init takes 4 arguments, and
 *                     rknn_tensor_attr ends at `scale`;
 *   (default)         librknnrt.so (RK356x, RK3588, RK3562, RK3576; librknnmrt.so on RV1106): rknn_init takes an
 *                     rknn_init_extend pointer, and rknn_tensor_attr has stride fields after `scale`.
 */
#ifndef NPU_HIL_RKNN_DECLS_H
#define NPU_HIL_RKNN_DECLS_H

#include <stdint.h>

#if defined(NPU_HIL_RKNPU1)
typedef uint64_t rknn_context;
#elif defined(__arm__)
typedef uint32_t rknn_context; /* RKNPU2 on 32-bit ARM (RV1106's librknnmrt) */
#else
typedef uint64_t rknn_context;
#endif

#define RKNN_MAX_DIMS 16
#define RKNN_MAX_NAME_LEN 256

enum { RKNN_QUERY_IN_OUT_NUM = 0, RKNN_QUERY_INPUT_ATTR = 1, RKNN_QUERY_OUTPUT_ATTR = 2, RKNN_QUERY_PERF_RUN = 4 };
enum { RKNN_TENSOR_FLOAT32 = 0, RKNN_TENSOR_FLOAT16 = 1, RKNN_TENSOR_INT8 = 2, RKNN_TENSOR_UINT8 = 3 };
enum { RKNN_TENSOR_NCHW = 0, RKNN_TENSOR_NHWC = 1 };

typedef struct {
    uint32_t n_input;
    uint32_t n_output;
} rknn_input_output_num;

typedef struct {
    uint32_t index;
    uint32_t n_dims;
    uint32_t dims[RKNN_MAX_DIMS];
    char name[RKNN_MAX_NAME_LEN];
    uint32_t n_elems;
    uint32_t size;
    int fmt;
    int type;
    int qnt_type;
    int8_t fl;
#if defined(NPU_HIL_RKNPU1)
    uint32_t zp;
    float scale;
#else
    int32_t zp;
    float scale;
    uint32_t w_stride;
    uint32_t size_with_stride;
    uint8_t pass_through;
    uint32_t h_stride;
#endif
} rknn_tensor_attr;

typedef struct {
    uint32_t index;
    void *buf;
    uint32_t size;
    uint8_t pass_through;
    int type;
    int fmt;
} rknn_input;

typedef struct {
    uint8_t want_float;
    uint8_t is_prealloc;
    uint32_t index;
    void *buf;
    uint32_t size;
} rknn_output;

typedef struct {
    int64_t run_duration; /* microseconds */
} rknn_perf_run;

#if defined(NPU_HIL_RKNPU1)
typedef int (*rknn_init_fn)(rknn_context *context, void *model, uint32_t size, uint32_t flag);
#else
typedef int (*rknn_init_fn)(rknn_context *context, void *model, uint32_t size, uint32_t flag, void *extend);
#endif
typedef int (*rknn_query_fn)(rknn_context context, int cmd, void *info, uint32_t size);
typedef int (*rknn_inputs_set_fn)(rknn_context context, uint32_t n_inputs, rknn_input inputs[]);
typedef int (*rknn_run_fn)(rknn_context context, void *extend);
typedef int (*rknn_outputs_get_fn)(rknn_context context, uint32_t n_outputs, rknn_output outputs[], void *extend);
typedef int (*rknn_outputs_release_fn)(rknn_context context, uint32_t n_outputs, rknn_output outputs[]);
typedef int (*rknn_destroy_fn)(rknn_context context);

/* rknn_api.h's error codes, by name (manual and API guide): what a failure prints beside its number */
static inline const char *rknn_error_name(int code) {
    static const char *names[] = {"RKNN_SUCC", "RKNN_ERR_FAIL", "RKNN_ERR_TIMEOUT", "RKNN_ERR_DEVICE_UNAVAILABLE",
                                  "RKNN_ERR_MALLOC_FAIL", "RKNN_ERR_PARAM_INVALID", "RKNN_ERR_MODEL_INVALID",
                                  "RKNN_ERR_CTX_INVALID", "RKNN_ERR_INPUT_INVALID", "RKNN_ERR_OUTPUT_INVALID",
                                  "RKNN_ERR_DEVICE_UNMATCH", "RKNN_ERR_INCOMPATILE_PRE_COMPILE_MODEL",
                                  "RKNN_ERR_INCOMPATILE_OPTIMIZATION_LEVEL_VERSION",
                                  "RKNN_ERR_TARGET_PLATFORM_UNMATCH"};
    return (code <= 0 && code >= -13) ? names[-code] : "RKNN_ERR_UNKNOWN";
}

#endif
