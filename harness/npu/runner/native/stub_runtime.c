/* A stand-in NPU runtime library for testing the native runner on the build host (no NPU, no Rockchip library).
 *
 * Built from rknn_decls.h for either ABI, it implements the calls the runner makes with a fixed "model": one
 * float32 input of shape [1, 4] and one output y = 2x + 1 of the same shape. It fails as the runtime does:
 * a model file starting with "CORRUPT" gives -6 (RKNN_ERR_MODEL_INVALID) from rknn_init, an input of the wrong
 * size -8 (RKNN_ERR_INPUT_INVALID) from rknn_inputs_set. It is no simulator: it only proves the runner's side of
 * the C API (argument passing, struct layouts, output format) on the host architecture.
 */
#include <stdlib.h>
#include <string.h>

#include "rknn_decls.h"

#define N 4
static float last_input[N];
static float result[N];

#if defined(NPU_HIL_RKNPU1)
int rknn_init(rknn_context *context, void *model, uint32_t size, uint32_t flag) {
#else
int rknn_init(rknn_context *context, void *model, uint32_t size, uint32_t flag, void *extend) {
    (void)extend;
#endif
    (void)flag;
    if (!context || !model || size < 4) return -5;
    if (size >= 7 && memcmp(model, "CORRUPT", 7) == 0) return -6;
    *context = 0x5eed;
    return 0;
}

static void describe(rknn_tensor_attr *attr, const char *name) {
    uint32_t index = attr->index;
    memset(attr, 0, sizeof *attr);
    attr->index = index;
    attr->n_dims = 2;
    attr->dims[0] = 1;
    attr->dims[1] = N;
    strncpy(attr->name, name, RKNN_MAX_NAME_LEN - 1);
    attr->n_elems = N;
    attr->size = N * sizeof(float);
    attr->fmt = RKNN_TENSOR_NCHW;
    attr->type = RKNN_TENSOR_FLOAT32;
}

int rknn_query(rknn_context context, int cmd, void *info, uint32_t size) {
    if (context != 0x5eed) return -7;
    if (cmd == RKNN_QUERY_IN_OUT_NUM && size >= sizeof(rknn_input_output_num)) {
        ((rknn_input_output_num *)info)->n_input = 1;
        ((rknn_input_output_num *)info)->n_output = 1;
        return 0;
    }
    if ((cmd == RKNN_QUERY_INPUT_ATTR || cmd == RKNN_QUERY_OUTPUT_ATTR) && size == sizeof(rknn_tensor_attr)) {
        if (((rknn_tensor_attr *)info)->index != 0) return -5;
        describe(info, cmd == RKNN_QUERY_INPUT_ATTR ? "x" : "y");
        return 0;
    }
    return -5; /* a size that does not match this ABI's struct is refused, as the runtime does */
}

int rknn_inputs_set(rknn_context context, uint32_t n_inputs, rknn_input inputs[]) {
    if (context != 0x5eed) return -7;
    if (n_inputs != 1 || inputs[0].index != 0 || inputs[0].type != RKNN_TENSOR_FLOAT32 ||
        inputs[0].size != N * sizeof(float) || !inputs[0].buf)
        return -8;
    memcpy(last_input, inputs[0].buf, sizeof last_input);
    return 0;
}

int rknn_run(rknn_context context, void *extend) {
    (void)extend;
    if (context != 0x5eed) return -7;
    for (int i = 0; i < N; i++) result[i] = 2.0f * last_input[i] + 1.0f;
    return 0;
}

int rknn_outputs_get(rknn_context context, uint32_t n_outputs, rknn_output outputs[], void *extend) {
    (void)extend;
    if (context != 0x5eed) return -7;
    if (n_outputs != 1 || !outputs[0].want_float) return -9;
    outputs[0].buf = malloc(sizeof result);
    memcpy(outputs[0].buf, result, sizeof result);
    outputs[0].size = sizeof result;
    return 0;
}

int rknn_outputs_release(rknn_context context, uint32_t n_outputs, rknn_output outputs[]) {
    (void)context;
    for (uint32_t i = 0; i < n_outputs; i++) {
        free(outputs[i].buf);
        outputs[i].buf = NULL;
    }
    return 0;
}

int rknn_destroy(rknn_context context) {
    return context == 0x5eed ? 0 : -7;
}

/* One call only this generation's library has, as the real ones do (the runner tells the ABIs apart by it). */
#if defined(NPU_HIL_RKNPU1)
int rknn_inputs_map(rknn_context context, uint32_t n_inputs, void *mem) {
    (void)context, (void)n_inputs, (void)mem;
    return -1;
}
#else
int rknn_dup_context(rknn_context *context_in, rknn_context *context_out) {
    (void)context_in, (void)context_out;
    return -1;
}
#endif
