/* The simulated board's NPU runtime library: librknn_api.so (RKNPU1) or librknnrt.so (RKNPU2), for ARM.
 *
 * On a real board this library drives the NPU through its kernel driver. On the simulated board the NPU is the
 * simulator, so each rknn_* call here is forwarded over the board's kernel gate (/proc/sim-gate, loopback TCP)
 * to the simulator's runtime (harness/sim/npu_api.py), which checks, runs and fails as the real runtime does and
 * sends back its log lines (printed here on stderr, as the runtime prints them) and the call's return value.
 * Programs written against the C API (our native runner, a lab's own tools) run on it unchanged, under qemu-user.
 *
 * Built from the runner's rknn_decls.h for either ABI (-DNPU_HIL_RKNPU1 or not), so the layouts are the ones a
 * caller built for that generation uses. One connection per rknn_context; the context value is its slot + 1.
 *
 * rknn_run carries its start time and the arrival time of the previous reply (CLOCK_MONOTONIC, nanoseconds), so a
 * program timing the call sees the simulated NPU's time and not the simulator's round trip on top. Wire format, per call: the request line "CALL ARGS... [BODY_LEN]\n" and BODY_LEN bytes; the reply: lines
 * "@@err TEXT" (runtime log), "@@ka" (keep-alive, ignored), then "@@ret CODE LEN\n" and LEN bytes of body.
 */
#define _POSIX_C_SOURCE 200809L
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "rknn_decls.h"

#define MAX_CONTEXTS 64
#define RKNN_QUERY_SDK_VERSION 5

typedef struct {
    char api_version[256];
    char drv_version[256];
} rknn_sdk_version;

typedef struct {
    int fd;
    FILE *in;
    uint32_t n_output;
    long long last_reply_ns; /* when the last reply arrived (CLOCK_MONOTONIC) */
} session_t;

static session_t sessions[MAX_CONTEXTS];

static session_t *session_of(rknn_context context) {
    if (context < 1 || context > MAX_CONTEXTS || !sessions[context - 1].in) return NULL;
    return &sessions[context - 1];
}

static long long monotonic_ns(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (long long)now.tv_sec * 1000000000LL + now.tv_nsec;
}

static int send_all(int fd, const void *data, size_t size) {
    const char *p = data;
    while (size) {
        ssize_t n = send(fd, p, size, MSG_NOSIGNAL);
        if (n <= 0) return -1;
        p += n;
        size -= (size_t)n;
    }
    return 0;
}

/* Send one call and read its reply: the return code; *body (malloc'ed, NUL-terminated) and *body_len if wanted. */
static int call(session_t *s, const char *line, const void *data, size_t size, char **body, size_t *body_len) {
    if (body) *body = NULL;
    if (send_all(s->fd, line, strlen(line)) || (size && send_all(s->fd, data, size))) {
        fprintf(stderr, "E RKNN: the simulated NPU went away (board gate closed)\n");
        return -1;
    }
    char reply[4096];
    while (fgets(reply, sizeof reply, s->in)) {
        if (!strncmp(reply, "@@ka", 4)) continue;
        if (!strncmp(reply, "@@err ", 6)) { fputs(reply + 6, stderr); continue; }
        if (!strncmp(reply, "@@exit ", 7)) break;
        if (strncmp(reply, "@@ret ", 6) != 0) { fputs(reply, stdout); continue; }
        s->last_reply_ns = monotonic_ns();
        int code = 0;
        unsigned long len = 0;
        if (sscanf(reply + 6, "%d %lu", &code, &len) != 2) break;
        char *buf = malloc(len + 1);
        if (!buf || fread(buf, 1, len, s->in) != len) { free(buf); break; }
        buf[len] = '\0';
        if (body) { *body = buf; if (body_len) *body_len = len; } else free(buf);
        return code;
    }
    fprintf(stderr, "E RKNN: the simulated NPU went away (board gate closed)\n");
    return -1;
}

static int connect_gate(int *out) {
    char address[128] = "";
    FILE *f = fopen("/proc/sim-gate", "r");
    if (!f || !fgets(address, sizeof address, f)) {
        if (f) fclose(f);
        fprintf(stderr, "E RKNN: failed to open the NPU device (no kernel gate at /proc/sim-gate)\n");
        return -1;
    }
    fclose(f);
    char *colon = strrchr(address, ':');
    if (!colon) return -1;
    *colon = '\0';
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)atoi(colon + 1));
    if (inet_pton(AF_INET, address, &addr.sin_addr) != 1) return -1;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1; /* calls are small request/reply pairs: Nagle's delay would add ~40 ms to each */
    if (fd >= 0) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) {
        if (fd >= 0) close(fd);
        fprintf(stderr, "E RKNN: failed to open the NPU device (kernel gate refused)\n");
        return -1;
    }
    *out = fd;
    return 0;
}

#if defined(NPU_HIL_RKNPU1)
int rknn_init(rknn_context *context, void *model, uint32_t size, uint32_t flag) {
#else
int rknn_init(rknn_context *context, void *model, uint32_t size, uint32_t flag, void *extend) {
    (void)extend;
#endif
    if (!context || !model || !size) return -5;
    int slot = 0;
    while (slot < MAX_CONTEXTS && sessions[slot].in) slot++;
    if (slot == MAX_CONTEXTS) return -4;
    int fd;
    if (connect_gate(&fd)) return -3;
    session_t *s = &sessions[slot];
    s->fd = fd;
    s->in = fdopen(dup(fd), "r");
    char cwd[1024];
    if (!getcwd(cwd, sizeof cwd)) strcpy(cwd, "/");
    const char *level = getenv("RKNN_LOG_LEVEL");
    char request[1400];
    int n = snprintf(request, sizeof request, "%d%c%s%crknn_api%c%s%c%ld%c", 4, 0, cwd, 0, 0, level ? level : "0", 0,
                     (long)getpid(), 0);
    char line[64];
    snprintf(line, sizeof line, "init %u %u\n", flag, size);
    if (!s->in || send_all(fd, request, (size_t)n)) {
        close(fd);
        memset(s, 0, sizeof *s);
        return -3;
    }
    int ret = call(s, line, model, size, NULL, NULL);
    if (ret != 0) {
        fclose(s->in);
        close(fd);
        memset(s, 0, sizeof *s);
        return ret;
    }
    *context = (rknn_context)(slot + 1);
    return 0;
}

static void parse_attr(const char *text, rknn_tensor_attr *attr) {
    /* "index n_dims d0,d1,... n_elems size fmt type qnt_type zp scale name" */
    unsigned index = 0, n_dims = 0, n_elems = 0, size = 0;
    int fmt = 0, type = 0, qnt = 0, zp = 0, used = 0;
    float scale = 1.0f;
    char dims[256] = "", name[RKNN_MAX_NAME_LEN] = "";
    sscanf(text, "%u %u %255s %u %u %d %d %d %d %f %n", &index, &n_dims, dims, &n_elems, &size, &fmt, &type, &qnt,
           &zp, &scale, &used);
    if (used > 0) snprintf(name, sizeof name, "%s", text + used);
    name[strcspn(name, "\n")] = '\0';
    memset(attr, 0, sizeof *attr);
    attr->index = index;
    attr->n_dims = n_dims > RKNN_MAX_DIMS ? RKNN_MAX_DIMS : n_dims;
    char *p = dims;
    for (uint32_t d = 0; d < attr->n_dims; d++) {
        attr->dims[d] = (uint32_t)strtoul(p, &p, 10);
        if (*p == ',') p++;
    }
    snprintf(attr->name, sizeof attr->name, "%s", name);
    attr->n_elems = n_elems;
    attr->size = size;
    attr->fmt = fmt;
    attr->type = type;
    attr->qnt_type = qnt;
    attr->zp = zp;
    attr->scale = scale;
#if !defined(NPU_HIL_RKNPU1)
    attr->size_with_stride = size;
#endif
}

int rknn_query(rknn_context context, int cmd, void *info, uint32_t size) {
    session_t *s = session_of(context);
    if (!s) return -7;
    char line[128], *body = NULL;
    int ret;
    switch (cmd) {
    case RKNN_QUERY_IN_OUT_NUM:
        if (size < sizeof(rknn_input_output_num)) break;
        ret = call(s, "query in_out_num\n", NULL, 0, &body, NULL);
        if (ret == 0 && body) {
            rknn_input_output_num *io = info;
            sscanf(body, "%u %u", &io->n_input, &io->n_output);
            s->n_output = io->n_output;
        }
        free(body);
        return ret;
    case RKNN_QUERY_INPUT_ATTR:
    case RKNN_QUERY_OUTPUT_ATTR:
        if (size < sizeof(rknn_tensor_attr)) {
            fprintf(stderr, "E RKNN: rknn_query, info_len(%u) < sizeof(rknn_tensor_attr)(%u)!\n", size,
                    (unsigned)sizeof(rknn_tensor_attr));
            return -5;
        }
        snprintf(line, sizeof line, "query %s %u\n", cmd == RKNN_QUERY_INPUT_ATTR ? "input" : "output",
                 ((rknn_tensor_attr *)info)->index);
        ret = call(s, line, NULL, 0, &body, NULL);
        if (ret == 0 && body) parse_attr(body, info);
        free(body);
        return ret;
    case RKNN_QUERY_PERF_RUN:
        if (size < sizeof(rknn_perf_run)) break;
        ret = call(s, "query perf_run\n", NULL, 0, &body, NULL);
        if (ret == 0 && body) ((rknn_perf_run *)info)->run_duration = strtoll(body, NULL, 10);
        free(body);
        return ret;
    case RKNN_QUERY_SDK_VERSION:
        if (size < sizeof(rknn_sdk_version)) break;
        ret = call(s, "query sdk_version\n", NULL, 0, &body, NULL);
        if (ret == 0 && body) {
            rknn_sdk_version *v = info;
            char *nl = strchr(body, '\n');
            if (nl) *nl = '\0';
            snprintf(v->api_version, sizeof v->api_version, "%s", body);
            snprintf(v->drv_version, sizeof v->drv_version, "%s", nl ? nl + 1 : "");
        }
        free(body);
        return ret;
    default:
        break;
    }
    fprintf(stderr, "E RKNN: rknn_query, unsupported cmd %d or info_len %u\n", cmd, size);
    return -5;
}

int rknn_inputs_set(rknn_context context, uint32_t n_inputs, rknn_input inputs[]) {
    session_t *s = session_of(context);
    if (!s) return -7;
    if (!inputs) return -5;
    char line[128];
    for (uint32_t i = 0; i < n_inputs; i++) {
        snprintf(line, sizeof line, "inputs_set %u %d %d %u %u\n", inputs[i].index, inputs[i].type, inputs[i].fmt,
                 inputs[i].pass_through, inputs[i].buf ? inputs[i].size : 0);
        int ret = call(s, line, inputs[i].buf, inputs[i].buf ? inputs[i].size : 0, NULL, NULL);
        if (ret != 0) return ret;
    }
    return 0;
}

int rknn_run(rknn_context context, void *extend) {
    (void)extend;
    session_t *s = session_of(context);
    if (!s) return -7;
    /* When the call began, on the clock the simulator shares with this process (CLOCK_MONOTONIC of the one host
     * kernel), so the simulated NPU finishes its time after this moment and not after the request reached it;
     * and when the previous reply arrived, so the simulator learns how long its replies take to get here. */
    char line[96];
    snprintf(line, sizeof line, "run %lld %lld\n", monotonic_ns(), s->last_reply_ns);
    return call(s, line, NULL, 0, NULL, NULL);
}

int rknn_outputs_get(rknn_context context, uint32_t n_outputs, rknn_output outputs[], void *extend) {
    (void)extend;
    session_t *s = session_of(context);
    if (!s) return -7;
    if (!outputs) return -5;
    char line[128];
    for (uint32_t i = 0; i < n_outputs; i++) {
        char *body = NULL;
        size_t len = 0;
        snprintf(line, sizeof line, "outputs_get %u %u\n", outputs[i].index, outputs[i].want_float);
        int ret = call(s, line, NULL, 0, &body, &len);
        if (ret != 0) { free(body); return ret; }
        if (outputs[i].is_prealloc) {
            if (outputs[i].buf) memcpy(outputs[i].buf, body, len < outputs[i].size ? len : outputs[i].size);
            free(body);
        } else {
            outputs[i].buf = body;
            outputs[i].size = (uint32_t)len;
        }
    }
    return 0;
}

int rknn_outputs_release(rknn_context context, uint32_t n_outputs, rknn_output outputs[]) {
    if (!session_of(context)) return -7;
    for (uint32_t i = 0; outputs && i < n_outputs; i++) {
        if (!outputs[i].is_prealloc) {
            free(outputs[i].buf);
            outputs[i].buf = NULL;
        }
    }
    return 0;
}

int rknn_destroy(rknn_context context) {
    session_t *s = session_of(context);
    if (!s) return -7;
    call(s, "destroy\n", NULL, 0, NULL, NULL);
    fclose(s->in);
    close(s->fd);
    memset(s, 0, sizeof *s);
    return 0;
}

/* The call that tells the generations apart, as in the real libraries (see the runner's bind_api). */
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
