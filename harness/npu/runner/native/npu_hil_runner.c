/* npu-hil runner protocol 1, native: one .rknn model run over the runtime's C API, timed ON the board.
 *
 * Why a C runner: stock Buildroot images of RV1109/RV1126 have no python3, numpy or RKNN Toolkit Lite, and the
 * manual (4.2.2) times inference with the C API. This prints exactly what the Python runner prints (see
 * npu_hil_runner.py, "Output protocol 1"), so the harness parses both the same way.
 *
 *   npu_hil_runner MODEL.rknn --input a.npy [--input b.npy ...] --loops N --warmup W --out DIR
 *                  [--data-format nhwc|nchw] [--lib PATH] [--sample-every K [--watch NAME ...]]
 *
 * Each figure is rknn_run's own time (wall clock around the call), as rknn_benchmark measures it: the NPU's
 * time, without the input conversion of rknn_inputs_set or the copies of rknn_outputs_get. Where the runtime
 * answers RKNN_QUERY_PERF_RUN, its own figure for the run follows as "npu time I: X ms".
 *
 * --sample-every / --watch: the soak in one long-lived process, as the Python runner does it: before the first
 * timed run and after every K-th, "sample I: PROCESS pid=P fds=F rss_kb=R" for this process ("self") and each
 * watched one, read from /proc.
 *
 * The runtime library is opened with dlopen (--lib, else librknn_api.so on RKNPU1, librknnrt.so on RKNPU2), so
 * one binary serves any runtime release and a missing library is a clear error, not a loader failure. Inputs are
 * .npy files (float32, uint8 or int8); outputs of the last run are written as float32 .npy files.
 * Exit status: 2 usage or inputs, 3 the model file, 4 the runtime library or rknn_init, 5 a run, 6 the outputs;
 * every failure is one "error: ..." line on stderr naming the runtime's own code (e.g. -6 RKNN_ERR_MODEL_INVALID).
 */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "rknn_decls.h"

#if defined(NPU_HIL_RKNPU1)
#define DEFAULT_LIB "librknn_api.so"
#else
#define DEFAULT_LIB "librknnrt.so"
#endif
#define MAX_TENSORS 16
enum { EXIT_USAGE = 2, EXIT_LOAD = 3, EXIT_INIT = 4, EXIT_INFERENCE = 5, EXIT_OUTPUT = 6 };

typedef struct {
    rknn_init_fn init;
    rknn_query_fn query;
    rknn_inputs_set_fn inputs_set;
    rknn_run_fn run;
    rknn_outputs_get_fn outputs_get;
    rknn_outputs_release_fn outputs_release;
    rknn_destroy_fn destroy;
} api_t;

typedef struct {
    void *data;
    size_t size;
    int type;
} npy_t;

static int fail(int status, const char *fmt, const char *a, int code) {
    fprintf(stderr, "error: ");
    fprintf(stderr, fmt, a, code, rknn_error_name(code));
    fputc('\n', stderr);
    return status;
}

static void *read_file(const char *path, size_t *size) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    if (fseek(f, 0, SEEK_END) != 0) { fclose(f); return NULL; }
    long n = ftell(f);
    rewind(f);
    void *buf = n > 0 ? malloc((size_t)n) : NULL;
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) { free(buf); buf = NULL; }
    fclose(f);
    *size = buf ? (size_t)n : 0;
    return buf;
}

/* A .npy file's data and element type (float32 '<f4', uint8 '|u1', int8 '|i1'); 0 on success. */
static int load_npy(const char *path, npy_t *out, char *why, size_t why_len) {
    size_t size;
    unsigned char *raw = read_file(path, &size);
    if (!raw) { snprintf(why, why_len, "%s: %s", path, strerror(errno ? errno : ENOENT)); return -1; }
    if (size < 10 || memcmp(raw, "\x93NUMPY", 6) != 0) {
        snprintf(why, why_len, "%s: not a .npy file", path); free(raw); return -1;
    }
    size_t header = raw[6] == 1 ? 10u + (raw[8] | (raw[9] << 8))
                                : 12u + (raw[8] | (raw[9] << 8) | (raw[10] << 16) | ((size_t)raw[11] << 24));
    if (header > size) { snprintf(why, why_len, "%s: truncated .npy header", path); free(raw); return -1; }
    char dict[1024] = {0};
    memcpy(dict, raw, header < sizeof dict - 1 ? header : sizeof dict - 1);
    for (size_t i = 0; i < sizeof dict - 1; i++) if (!dict[i]) dict[i] = ' ';
    if (strstr(dict, "'<f4'")) out->type = RKNN_TENSOR_FLOAT32;
    else if (strstr(dict, "'|u1'")) out->type = RKNN_TENSOR_UINT8;
    else if (strstr(dict, "'|i1'")) out->type = RKNN_TENSOR_INT8;
    else { snprintf(why, why_len, "%s: dtype not float32, uint8 or int8", path); free(raw); return -1; }
    if (strstr(dict, "'fortran_order': True")) {
        snprintf(why, why_len, "%s: Fortran-ordered arrays are not supported", path); free(raw); return -1;
    }
    out->size = size - header;
    out->data = malloc(out->size ? out->size : 1);
    memcpy(out->data, raw + header, out->size);
    free(raw);
    return 0;
}

static int save_npy(const char *path, const float *data, const rknn_tensor_attr *attr, char *shape, size_t len) {
    char dims[256] = "";
    size_t at = 0;
    shape[0] = '\0';
    for (uint32_t d = 0; d < attr->n_dims && d < RKNN_MAX_DIMS; d++) {
        at += (size_t)snprintf(dims + at, sizeof dims - at, "%u%s", attr->dims[d],
                               attr->n_dims == 1 ? "," : (d + 1 < attr->n_dims ? ", " : ""));
        snprintf(shape + strlen(shape), len - strlen(shape), "%s%u", d ? ", " : "", attr->dims[d]);
    }
    char header[512];
    int n = snprintf(header, sizeof header, "{'descr': '<f4', 'fortran_order': False, 'shape': (%s), }", dims);
    int total = 10 + n + 1;
    int pad = (64 - total % 64) % 64;
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    unsigned short hlen = (unsigned short)(n + pad + 1);
    fwrite("\x93NUMPY\x01\x00", 1, 8, f);
    fputc(hlen & 0xff, f);
    fputc(hlen >> 8, f);
    fwrite(header, 1, (size_t)n, f);
    for (int i = 0; i < pad; i++) fputc(' ', f);
    fputc('\n', f);
    size_t count = attr->n_elems;
    int ok = fwrite(data, sizeof(float), count, f) == count;
    return fclose(f) == 0 && ok ? 0 : -1;
}

/* The first process whose comm is `name` (lowest pid), or -1. */
static long pid_of(const char *name) {
    DIR *proc = opendir("/proc");
    if (!proc) return -1;
    long best = -1;
    struct dirent *entry;
    char path[64], comm[64];
    while ((entry = readdir(proc))) {
        char *end;
        long pid = strtol(entry->d_name, &end, 10);
        if (*end || pid <= 0) continue;
        snprintf(path, sizeof path, "/proc/%ld/comm", pid);
        FILE *f = fopen(path, "r");
        if (!f) continue;
        if (fgets(comm, sizeof comm, f)) {
            comm[strcspn(comm, "\n")] = '\0';
            if (!strcmp(comm, name) && (best < 0 || pid < best)) best = pid;
        }
        fclose(f);
    }
    closedir(proc);
    return best;
}

/* One "sample" line for `process` ("self" or a name); nothing when it is not running. */
static void sample(int index, const char *process) {
    long pid = !strcmp(process, "self") ? (long)getpid() : pid_of(process);
    if (pid < 0) return;
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%ld/fd", pid);
    DIR *fds = opendir(path);
    if (!fds) return;
    int count = 0;
    struct dirent *entry;
    while ((entry = readdir(fds))) if (entry->d_name[0] != '.') count++;
    closedir(fds);
    if (pid == (long)getpid()) count--; /* the descriptor opendir itself held */
    long rss = 0;
    snprintf(path, sizeof path, "/proc/%ld/status", pid);
    FILE *status = fopen(path, "r");
    if (!status) return;
    while (fgets(line, sizeof line, status)) if (!strncmp(line, "VmRSS:", 6)) rss = strtol(line + 6, NULL, 10);
    fclose(status);
    printf("sample %d: %s pid=%ld fds=%d rss_kb=%ld\n", index, process, pid, count, rss);
}

static double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000.0 + t.tv_nsec / 1e6;
}

static int bind_api(const char *lib, api_t *api) {
    void *handle = dlopen(lib, RTLD_NOW | RTLD_LOCAL);
    if (!handle) {
        fprintf(stderr, "error: cannot load the NPU runtime library %s: %s\n", lib, dlerror());
        return -1;
    }
    /* The two ABIs cannot be told apart by rknn_init alone, and a call across them crashes (rknn_context and the
     * structs differ in size): each library has a call the other generation lacks. */
#if defined(NPU_HIL_RKNPU1)
    const char *other = "rknn_dup_context", *other_name = "an RKNPU2 runtime (librknnrt)", *self = "rknpu1";
#else
    const char *other = "rknn_inputs_map", *other_name = "an RKNPU1 runtime (librknn_api)", *self = "rknpu2";
#endif
    if (dlsym(handle, other)) {
        fprintf(stderr, "error: %s is %s (it has %s): this runner is the %s build; use the other one\n", lib,
                other_name, other, self);
        return -1;
    }
    const char *names[] = {"rknn_init", "rknn_query", "rknn_inputs_set", "rknn_run", "rknn_outputs_get",
                           "rknn_outputs_release", "rknn_destroy"};
    void **slots[] = {(void **)&api->init, (void **)&api->query, (void **)&api->inputs_set, (void **)&api->run,
                      (void **)&api->outputs_get, (void **)&api->outputs_release, (void **)&api->destroy};
    for (int i = 0; i < 7; i++) {
        *slots[i] = dlsym(handle, names[i]);
        if (!*slots[i]) {
            fprintf(stderr, "error: %s has no %s: not an RKNN runtime library\n", lib, names[i]);
            return -1;
        }
    }
    return 0;
}

int main(int argc, char **argv) {
    const char *model = NULL, *out_dir = NULL, *lib = DEFAULT_LIB, *inputs[MAX_TENSORS], *watch[MAX_TENSORS];
    int n_inputs = 0, loops = -1, warmup = -1, fmt = RKNN_TENSOR_NHWC, sample_every = 0, n_watch = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--input") && v && n_inputs < MAX_TENSORS) inputs[n_inputs++] = argv[++i];
        else if (!strcmp(a, "--loops") && v) loops = atoi(argv[++i]);
        else if (!strcmp(a, "--warmup") && v) warmup = atoi(argv[++i]);
        else if (!strcmp(a, "--out") && v) out_dir = argv[++i];
        else if (!strcmp(a, "--lib") && v) lib = argv[++i];
        else if (!strcmp(a, "--sample-every") && v) sample_every = atoi(argv[++i]);
        else if (!strcmp(a, "--watch") && v && n_watch < MAX_TENSORS) watch[n_watch++] = argv[++i];
        else if (!strcmp(a, "--data-format") && v) fmt = !strcmp(argv[++i], "nchw") ? RKNN_TENSOR_NCHW : RKNN_TENSOR_NHWC;
        else if (a[0] != '-' && !model) model = a;
        else { fprintf(stderr, "error: unexpected argument %s\n", a); return EXIT_USAGE; }
    }
    if (!model || !out_dir || !n_inputs || loops < 1 || warmup < 0 || sample_every < 0) {
        fprintf(stderr, "error: usage: npu_hil_runner MODEL.rknn --input a.npy [...] --loops N (>= 1) "
                        "--warmup W (>= 0) --out DIR [--data-format nhwc|nchw] [--lib PATH]\n");
        return EXIT_USAGE;
    }
    npy_t data[MAX_TENSORS];
    char why[512];
    for (int i = 0; i < n_inputs; i++)
        if (load_npy(inputs[i], &data[i], why, sizeof why)) {
            fprintf(stderr, "error: cannot read input: %s\n", why);
            return EXIT_USAGE;
        }
    size_t model_size;
    void *model_data = read_file(model, &model_size);
    if (!model_data) {
        fprintf(stderr, "error: cannot read the model %s: %s\n", model, strerror(errno ? errno : ENOENT));
        return EXIT_LOAD;
    }
    api_t api;
    if (bind_api(lib, &api)) return EXIT_INIT;
    rknn_context ctx = 0;
#if defined(NPU_HIL_RKNPU1)
    int ret = api.init(&ctx, model_data, (uint32_t)model_size, 0);
#else
    int ret = api.init(&ctx, model_data, (uint32_t)model_size, 0, NULL);
#endif
    if (ret != 0) return fail(EXIT_INIT, "rknn_init failed for %s: ret=%d (%s)", model, ret);
    rknn_input_output_num io;
    ret = api.query(ctx, RKNN_QUERY_IN_OUT_NUM, &io, sizeof io);
    if (ret != 0) return fail(EXIT_INIT, "rknn_query(IN_OUT_NUM) failed for %s: ret=%d (%s)", model, ret);
    if ((int)io.n_input != n_inputs || io.n_output > MAX_TENSORS) {
        fprintf(stderr, "error: the model has %u input(s), %d given\n", io.n_input, n_inputs);
        api.destroy(ctx);
        return EXIT_USAGE;
    }
    rknn_tensor_attr out_attrs[MAX_TENSORS];
    for (uint32_t i = 0; i < io.n_output; i++) {
        memset(&out_attrs[i], 0, sizeof out_attrs[i]);
        out_attrs[i].index = i;
        ret = api.query(ctx, RKNN_QUERY_OUTPUT_ATTR, &out_attrs[i], sizeof out_attrs[i]);
        if (ret != 0) return fail(EXIT_INIT, "rknn_query(OUTPUT_ATTR) failed for %s: ret=%d (%s)", model, ret);
    }
    rknn_input in[MAX_TENSORS];
    for (int i = 0; i < n_inputs; i++) {
        memset(&in[i], 0, sizeof in[i]);
        in[i].index = (uint32_t)i;
        in[i].buf = data[i].data;
        in[i].size = (uint32_t)data[i].size;
        in[i].type = data[i].type;
        in[i].fmt = fmt;
    }
    printf("npu-hil runner protocol 1\nmodel: %s\n", model);
    rknn_output outs[MAX_TENSORS];
    double total = 0.0;
    for (int run = 0; run < warmup + loops; run++) {
        if (sample_every && run == warmup) {
            sample(0, "self");
            for (int w = 0; w < n_watch; w++) sample(0, watch[w]);
        }
        memset(outs, 0, sizeof outs);
        for (uint32_t i = 0; i < io.n_output; i++) { outs[i].want_float = 1; outs[i].index = i; }
        double ms = 0.0;
        ret = api.inputs_set(ctx, (uint32_t)n_inputs, in);
        if (ret == 0) {
            double start = now_ms(); /* rknn_run alone, as rknn_benchmark times it: the NPU's time (manual 4.2.2) */
            ret = api.run(ctx, NULL);
            ms = now_ms() - start;
        }
        if (ret == 0) ret = api.outputs_get(ctx, io.n_output, outs, NULL);
        if (ret != 0) {
            fprintf(stderr, "error: inference failed at run %d: ret=%d (%s)\n", run, ret, rknn_error_name(ret));
            api.destroy(ctx);
            return EXIT_INFERENCE;
        }
        if (run == 0) printf("first run: %.3f ms\n", ms);
        if (run < warmup) printf("warmup %d: %.3f ms\n", run, ms);
        else {
            printf("iteration %d: %.3f ms\n", run - warmup, ms);
            rknn_perf_run perf;
            memset(&perf, 0, sizeof perf);
            if (api.query(ctx, RKNN_QUERY_PERF_RUN, &perf, sizeof perf) == 0 && perf.run_duration > 0)
                printf("npu time %d: %.3f ms\n", run - warmup, perf.run_duration / 1000.0);
            total += ms;
            int done = run - warmup + 1;
            if (sample_every && done % sample_every == 0) {
                sample(done, "self");
                for (int w = 0; w < n_watch; w++) sample(done, watch[w]);
            }
        }
        fflush(stdout);
        if (run + 1 < warmup + loops) api.outputs_release(ctx, io.n_output, outs);
    }
    printf("average: %.3f ms over %d iterations\n", total / loops, loops);
    char path[4096], shape[256];
    for (uint32_t i = 0; i < io.n_output; i++) {
        snprintf(path, sizeof path, "%s/output_%u.npy", out_dir, i);
        if (outs[i].size < out_attrs[i].n_elems * sizeof(float) ||
            save_npy(path, (const float *)outs[i].buf, &out_attrs[i], shape, sizeof shape)) {
            fprintf(stderr, "error: cannot write outputs to %s: %s\n", out_dir, strerror(errno ? errno : EIO));
            api.destroy(ctx);
            return EXIT_OUTPUT;
        }
        printf("output %u: %s shape=[%s] dtype=float32\n", i, path, shape);
    }
    api.outputs_release(ctx, io.n_output, outs);
    api.destroy(ctx);
    printf("done\n");
    return 0;
}
