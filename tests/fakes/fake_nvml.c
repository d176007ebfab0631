/*
 * fake_nvml.c: a stand-in libnvidia-ml.so.1 for tests on machines without a GPU.
 *
 * The real pynvml (nvidia-ml-py) loads this library by its soname and calls it exactly as it calls
 * the driver's NVML; what the "GPUs" report comes from a scenario file whose path is in the
 * environment variable FAKE_NVML_SCENARIO. tests/fakes/nvml.py builds the library and writes
 * scenario files; the format is described there and in parse_line() below.
 *
 * Build: gcc -std=c11 -shared -fPIC -O2 -Wall -Wextra -pthread -Wl,-soname,libnvidia-ml.so.1 \
 *            -o libnvidia-ml.so.1 fake_nvml.c
 *
 * Design:
 *  - The scenario is re-read whenever the file's identity (inode, size, mtime, ctime) changes,
 *    checked at nvmlInit and at the start of every call, so a test can change what a GPU reports
 *    between two calls without re-initialising. Writers replace the file atomically.
 *  - Device handles are addresses in a static [gpu][slot] table, so handles a caller holds stay
 *    valid (and keep meaning the same device) across re-reads, as real NVML handles do.
 *  - One mutex guards the scenario. A device call copies what it needs under the mutex and
 *    sleeps hang_ms after releasing it, so one hanging GPU does not stall calls on the others.
 *  - Only what pynvml calls is implemented, under the symbol names it looks up (nvmlInitWithFlags,
 *    nvmlDeviceGetCount_v2, ..._v3); anything else raises NVMLError_FunctionNotFound in pynvml.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

/* ---- NVML types, laid out as pynvml's ctypes structures (checked by the asserts) ---- */

typedef int nvmlReturn_t;
enum {
    NVML_SUCCESS = 0,
    NVML_ERROR_UNINITIALIZED = 1,
    NVML_ERROR_INVALID_ARGUMENT = 2,
    NVML_ERROR_NOT_SUPPORTED = 3,
    NVML_ERROR_NOT_FOUND = 6,
    NVML_ERROR_INSUFFICIENT_SIZE = 7,
    NVML_ERROR_DRIVER_NOT_LOADED = 9,
    NVML_ERROR_GPU_IS_LOST = 15,
    NVML_ERROR_ARGUMENT_VERSION_MISMATCH = 25,
    NVML_ERROR_UNKNOWN = 999,
};

typedef struct { unsigned int gpu, memory; } nvmlUtilization_t;
typedef struct { unsigned long long total, free, used; } nvmlMemory_t;
typedef struct {
    unsigned int version;
    unsigned long long total, reserved, free, used;
} nvmlMemory_v2_t;
/* nvml.h: NVML_STRUCT_VERSION(Memory, 2) = sizeof | 2 << 24; pynvml hard-codes 0x02000028. */
#define nvmlMemory_v2 ((unsigned int)(sizeof(nvmlMemory_v2_t) | 2u << 24))

/* What ..._v2 and ..._v3 fill: pynvml 13 uses c_nvmlProcessInfo_v2_t (4 fields) for both. */
typedef struct {
    unsigned int pid;
    unsigned long long usedGpuMemory;
    unsigned int gpuInstanceId, computeInstanceId;
} nvmlProcessInfo_t;

typedef struct {
    unsigned int pid;
    unsigned long long timeStamp;
    unsigned int smUtil, memUtil, encUtil, decUtil;
} nvmlProcessUtilizationSample_t;

typedef struct {
    unsigned int multiprocessorCount, sharedCopyEngineCount, sharedDecoderCount, sharedEncoderCount,
        sharedJpegCount, sharedOfaCount, gpuInstanceSliceCount, computeInstanceSliceCount;
    unsigned long long memorySizeMB;
} nvmlDeviceAttributes_t;

_Static_assert(sizeof(nvmlMemory_v2_t) == 0x28, "pynvml's nvmlMemory_v2 is 0x02000028");
_Static_assert(sizeof(nvmlProcessInfo_t) == 24, "c_nvmlProcessInfo_v2_t layout");
_Static_assert(sizeof(nvmlProcessUtilizationSample_t) == 32, "c_nvmlProcessUtilizationSample_t");
_Static_assert(sizeof(nvmlDeviceAttributes_t) == 40, "c_nvmlDeviceAttributes layout");

/* ---- Scenario ---- */

#define MAX_GPUS 16
#define MAX_MIGS 8 /* MIG slots per GPU; 7 is the most any GPU has */
#define MAX_PROCS 128
#define MAX_TOKENS 32
#define NOT_MIG 0xFFFFFFFFull /* NVML's instance id for "not on a MIG device" */
#define DERIVE ULLONG_MAX     /* default worked out from the parent GPU once the file is read */
#define MiB (1024ull * 1024)
#define ENV_VAR "FAKE_NVML_SCENARIO"

/* Every numeric key is an unsigned long long, so one table-driven parser serves all line kinds. */
struct gpu {
    bool present;
    unsigned long long index, util, mem_util, mem_total, mem_used, mem_reserved, power_mw, energy_mj,
        mig, max_mig, sms, error, hang_ms;
    char uuid[96], name[64]; /* NVML_DEVICE_UUID_V2_BUFFER_SIZE; NVML_DEVICE_NAME_BUFFER_SIZE */
};

struct mig {
    bool present;
    unsigned long long gpu, slot, gi, ci, slices, ci_slices, mem_mb, mem_used, sms;
    char uuid[96], profile[32];
    unsigned line;
};

struct proc {
    unsigned long long gpu, pid, mem, sm, gi, ci;
    unsigned line;
};

struct scenario {
    char driver[80]; /* NVML_SYSTEM_DRIVER_VERSION_BUFFER_SIZE */
    unsigned long long init_error;
    unsigned gpu_count; /* GPUs 0..gpu_count-1 are present: NVML indexes have no gaps */
    struct gpu gpus[MAX_GPUS];
    struct mig migs[MAX_GPUS][MAX_MIGS];
    unsigned nprocs;
    struct proc procs[MAX_PROCS];
};

struct key {
    const char *name;
    size_t offset;
    size_t str_len;         /* 0: a number */
    unsigned long long max; /* numbers only */
};
#define NUM(type, field, maximum) {#field, offsetof(struct type, field), 0, maximum}
#define STR(type, field) {#field, offsetof(struct type, field), sizeof(((struct type *)0)->field), 0}
#define END {NULL, 0, 0, 0}

static const struct key gpu_keys[] = {
    NUM(gpu, index, MAX_GPUS - 1), STR(gpu, uuid), STR(gpu, name),
    NUM(gpu, util, 100), NUM(gpu, mem_util, 100),
    NUM(gpu, mem_total, ULLONG_MAX - 1), NUM(gpu, mem_used, ULLONG_MAX - 1),
    NUM(gpu, mem_reserved, ULLONG_MAX - 1), NUM(gpu, power_mw, UINT_MAX),
    NUM(gpu, energy_mj, ULLONG_MAX - 1), NUM(gpu, mig, 1), NUM(gpu, max_mig, MAX_MIGS),
    NUM(gpu, sms, UINT_MAX), NUM(gpu, error, INT_MAX), NUM(gpu, hang_ms, 600000), END,
};
static const struct key mig_keys[] = {
    NUM(mig, gpu, MAX_GPUS - 1), NUM(mig, slot, MAX_MIGS - 1), STR(mig, uuid), STR(mig, profile),
    NUM(mig, gi, UINT_MAX - 1), NUM(mig, ci, UINT_MAX - 1), NUM(mig, slices, 8),
    NUM(mig, ci_slices, 8), NUM(mig, mem_mb, ULLONG_MAX / MiB), NUM(mig, mem_used, ULLONG_MAX - 1),
    NUM(mig, sms, UINT_MAX), END,
};
static const struct key proc_keys[] = {
    NUM(proc, gpu, MAX_GPUS - 1), NUM(proc, pid, UINT_MAX), NUM(proc, mem, ULLONG_MAX - 1),
    NUM(proc, sm, 100), NUM(proc, gi, UINT_MAX), NUM(proc, ci, UINT_MAX), END,
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct scenario current; /* what calls see; guarded by lock */
static struct scenario parsed;  /* scratch for the next version; guarded by lock */
static unsigned init_refcount;  /* nvmlInit minus nvmlShutdown calls, as real NVML counts */
static unsigned long long load_count;

/* Which file version `current` came from: path plus identity (inode, size, mtime, ctime). */
static struct {
    char path[PATH_MAX]; /* "" when FAKE_NVML_SCENARIO is unset */
    bool have_stat;
    struct stat st;
} source = {.path = "\x01"}; /* matches no real path, so the first check always loads */

/* A scenario problem: say so on stderr and carry on. Files are parsed once per version, so each
 * message appears once, not at every call. line 0: not about one line. */
__attribute__((format(printf, 3, 4))) static void warn(const char *path, unsigned line, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, line ? "fake_nvml: %s:%u: " : "fake_nvml: %s: ", path, line);
    vfprintf(stderr, fmt, ap);
    fputs(line ? " (line ignored)\n" : "\n", stderr);
    va_end(ap);
}

static bool parse_number(const char *s, unsigned long long max, unsigned long long *out) {
    char *end;
    if (*s < '0' || *s > '9') return false; /* strtoull would accept "-1", " 1" and "" */
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || v > max) return false;
    *out = v;
    return true;
}

/* Splits a line in place into tokens at unquoted blanks; a "quoted part" may hold blanks and
 * its quotes are dropped (name="A B" becomes name=A B); an unquoted # starts a comment.
 * Returns the token count, or -1 for an unterminated quote or too many tokens. */
static int tokenize(char *line, char *tokens[MAX_TOKENS]) {
    int n = 0;
    bool quoted = false, in_token = false;
    char *out = line;
    for (char *in = line;; in++) {
        char c = *in;
        bool end_of_line = c == '\0' || c == '\n' || c == '\r' || (c == '#' && !quoted);
        if (end_of_line || (!quoted && (c == ' ' || c == '\t'))) {
            if (end_of_line && quoted) return -1;
            if (in_token) *out++ = '\0';
            in_token = false;
            if (end_of_line) return n;
            continue;
        }
        if (!in_token) {
            if (n == MAX_TOKENS) return -1;
            tokens[n++] = out;
            in_token = true;
        }
        if (c == '"')
            quoted = !quoted;
        else
            *out++ = c;
    }
}

/* Fills `record` from key=value tokens. Returns false (after a warning) on any bad token or a
 * missing required key: the first `required` keys of the table must be given. */
static bool parse_fields(char **tokens, int n, const struct key *keys, size_t required, void *record,
                         const char *path, unsigned line) {
    unsigned seen = 0;
    for (int t = 0; t < n; t++) {
        char *eq = strchr(tokens[t], '=');
        if (!eq) {
            warn(path, line, "expected key=value, got \"%s\"", tokens[t]);
            return false;
        }
        *eq = '\0';
        const char *value = eq + 1;
        size_t k = 0;
        while (keys[k].name && strcmp(keys[k].name, tokens[t]) != 0) k++;
        if (!keys[k].name) {
            warn(path, line, "unknown key \"%s\"", tokens[t]);
            return false;
        }
        char *field = (char *)record + keys[k].offset;
        if (keys[k].str_len) {
            if (strlen(value) >= keys[k].str_len) {
                warn(path, line, "value of %s is too long", keys[k].name);
                return false;
            }
            strcpy(field, value);
        } else {
            unsigned long long v;
            if (!parse_number(value, keys[k].max, &v)) {
                warn(path, line, "%s=%s is not a number in 0..%llu", keys[k].name, value, keys[k].max);
                return false;
            }
            memcpy(field, &v, sizeof v);
        }
        seen |= 1u << k;
    }
    for (size_t k = 0; k < required; k++) {
        if (!(seen & 1u << k)) {
            warn(path, line, "missing required key %s", keys[k].name);
            return false;
        }
    }
    return true;
}

static void parse_line(struct scenario *s, char *text, const char *path, unsigned line) {
    char *tok[MAX_TOKENS];
    int n = tokenize(text, tok);
    if (n < 0) {
        warn(path, line, "unterminated quote or more than %d tokens", MAX_TOKENS);
        return;
    }
    if (n == 0) return;
    if (strcmp(tok[0], "driver") == 0 || strcmp(tok[0], "init_error") == 0) {
        /* driver VERSION | init_error CODE */
        if (n != 2) {
            warn(path, line, "expected exactly one value after %s", tok[0]);
        } else if (tok[0][0] == 'd') {
            if (strlen(tok[1]) >= sizeof s->driver)
                warn(path, line, "driver version too long");
            else
                strcpy(s->driver, tok[1]);
        } else if (!parse_number(tok[1], INT_MAX, &s->init_error)) {
            warn(path, line, "init_error %s is not a number", tok[1]);
        }
    } else if (strcmp(tok[0], "gpu") == 0) {
        /* gpu index=N [uuid= name= util= mem_util= mem_total= mem_used= mem_reserved= power_mw=
         *              energy_mj= mig= max_mig= sms= error= hang_ms=] */
        struct gpu g = {.present = true, .mem_total = 80ull * 1024 * MiB, .max_mig = 7, .sms = 132};
        strcpy(g.name, "NVIDIA H100 80GB HBM3");
        if (!parse_fields(tok + 1, n - 1, gpu_keys, 1, &g, path, line)) return;
        if (s->gpus[g.index].present) {
            warn(path, line, "gpu index=%llu given twice", g.index);
            return;
        }
        if (!g.uuid[0]) snprintf(g.uuid, sizeof g.uuid, "GPU-fa4e0000-0000-4000-8000-%012llx", g.index);
        s->gpus[g.index] = g;
    } else if (strcmp(tok[0], "mig") == 0) {
        /* mig gpu=N slot=N [uuid= gi= ci= slices= ci_slices= profile= mem_mb= mem_used= sms=] */
        struct mig m = {.present = true, .gi = DERIVE, .slices = 1, .ci_slices = DERIVE,
                        .mem_mb = 9856, .sms = DERIVE, .line = line};
        strcpy(m.profile, "1g.10gb");
        if (!parse_fields(tok + 1, n - 1, mig_keys, 2, &m, path, line)) return;
        if (s->migs[m.gpu][m.slot].present) {
            warn(path, line, "mig gpu=%llu slot=%llu given twice", m.gpu, m.slot);
            return;
        }
        if (!m.uuid[0])
            snprintf(m.uuid, sizeof m.uuid, "MIG-fa4e0000-0000-4000-8000-%08llx%04llx", m.gpu, m.slot);
        if (m.gi == DERIVE) m.gi = m.slot + 1;
        if (m.ci_slices == DERIVE) m.ci_slices = m.slices;
        s->migs[m.gpu][m.slot] = m;
    } else if (strcmp(tok[0], "proc") == 0) {
        /* proc gpu=N pid=N [mem= sm= gi= ci=] */
        struct proc p = {.gi = NOT_MIG, .ci = NOT_MIG, .line = line};
        if (!parse_fields(tok + 1, n - 1, proc_keys, 2, &p, path, line)) return;
        if (s->nprocs == MAX_PROCS) {
            warn(path, line, "more than %d proc lines", MAX_PROCS);
            return;
        }
        s->procs[s->nprocs++] = p;
    } else {
        warn(path, line, "unknown line kind \"%s\" (driver, init_error, gpu, mig, proc)", tok[0]);
    }
}

/* Cross-line rules, applied once the whole file is read (lines may come in any order). */
static void check_scenario(struct scenario *s, const char *path) {
    while (s->gpu_count < MAX_GPUS && s->gpus[s->gpu_count].present) s->gpu_count++;
    for (unsigned g = s->gpu_count; g < MAX_GPUS; g++) {
        if (s->gpus[g].present) {
            warn(path, 0, "gpu indexes must run 0,1,2... without gaps: ignoring gpus from index %u", g);
            memset(&s->gpus[g], 0, sizeof s->gpus[g] * (MAX_GPUS - g));
            break;
        }
    }
    for (unsigned g = 0; g < MAX_GPUS; g++) {
        for (unsigned k = 0; k < MAX_MIGS; k++) {
            struct mig *m = &s->migs[g][k];
            if (!m->present) continue;
            const struct gpu *parent = &s->gpus[g];
            if (!parent->present || !parent->mig || k >= parent->max_mig) {
                warn(path, m->line, "a mig line needs a gpu line with mig=1 and max_mig > slot");
                m->present = false;
            } else if (m->sms == DERIVE) {
                m->sms = parent->sms * m->slices / parent->max_mig;
            }
        }
    }
    unsigned kept = 0;
    for (unsigned i = 0; i < s->nprocs; i++) {
        if (s->gpus[s->procs[i].gpu].present)
            s->procs[kept++] = s->procs[i];
        else
            warn(path, s->procs[i].line, "proc line names gpu=%llu, which has no gpu line", s->procs[i].gpu);
    }
    s->nprocs = kept;
}

static void load_defaults(struct scenario *s) {
    memset(s, 0, sizeof *s);
    strcpy(s->driver, "550.54.15");
}

static bool same_file(const struct stat *a, const struct stat *b) {
    return a->st_dev == b->st_dev && a->st_ino == b->st_ino && a->st_size == b->st_size &&
           a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec &&
           a->st_ctim.tv_sec == b->st_ctim.tv_sec && a->st_ctim.tv_nsec == b->st_ctim.tv_nsec;
}

/* Brings `current` up to date with the scenario file. Caller holds lock. An unset variable or a
 * missing file means a machine with no GPUs (warned once per path), never a crash. */
static void refresh_locked(void) {
    const char *path = getenv(ENV_VAR);
    if (!path) path = "";
    struct stat st;
    bool exists = *path && strlen(path) < sizeof source.path && stat(path, &st) == 0;
    bool same_path = strcmp(path, source.path) == 0;
    if (same_path && exists && source.have_stat && same_file(&st, &source.st)) return;
    if (same_path && !exists && !source.have_stat) return; /* already empty, already warned */

    FILE *f = exists ? fopen(path, "r") : NULL;
    load_defaults(&parsed);
    if (f && fstat(fileno(f), &st) == 0) {
        /* fstat of the open file: the identity recorded is that of the content parsed. */
        char *text = NULL;
        size_t cap = 0;
        unsigned line = 0;
        while (getline(&text, &cap, f) >= 0) parse_line(&parsed, text, path, ++line);
        free(text);
        check_scenario(&parsed, path);
        source.have_stat = true;
        source.st = st;
    } else {
        warn(*path ? path : "$" ENV_VAR, 0, "%s; reporting no GPUs", *path ? "cannot read the file" : "not set");
        source.have_stat = false;
    }
    if (f) fclose(f);
    snprintf(source.path, sizeof source.path, "%s", path);
    current = parsed;
    load_count++;
}

/* ---- Handles ---- */

/* A handle is the address of handles[gpu][0] (the GPU) or handles[gpu][1 + slot] (a MIG device). */
struct nvmlDevice_st {
    char unused;
};
typedef struct nvmlDevice_st *nvmlDevice_t;
static struct nvmlDevice_st handles[MAX_GPUS][1 + MAX_MIGS];

static bool decode_handle(nvmlDevice_t d, unsigned *gpu, int *slot) {
    uintptr_t base = (uintptr_t)&handles[0][0], p = (uintptr_t)d;
    if (p < base || p >= base + sizeof handles || (p - base) % sizeof handles[0][0]) return false;
    size_t i = (p - base) / sizeof handles[0][0];
    *gpu = (unsigned)(i / (1 + MAX_MIGS));
    *slot = (int)(i % (1 + MAX_MIGS)) - 1;
    return true;
}

/* What one device call sees: a consistent copy taken under the lock. */
struct view {
    int slot; /* -1: the GPU itself; otherwise the MIG slot and `mig` is set */
    struct gpu gpu;
    struct mig mig;
    bool mig_present[MAX_MIGS]; /* which MIG slots of the GPU hold a device */
    unsigned nprocs;
    struct proc procs[MAX_PROCS]; /* on this device: all of the GPU's, or the MIG instance's */
};

static void nap(unsigned long long ms) {
    struct timespec t = {.tv_sec = (time_t)(ms / 1000), .tv_nsec = (long)(ms % 1000) * 1000000L};
    while (nanosleep(&t, &t) != 0 && errno == EINTR) {
    }
}

/* The start of every call on a device handle: reload, check init and the handle, copy the
 * device's state, then (lock released) hang and fail as the scenario says. */
static nvmlReturn_t enter(nvmlDevice_t d, struct view *v) {
    unsigned g;
    nvmlReturn_t r = NVML_SUCCESS;
    unsigned long long hang = 0;
    pthread_mutex_lock(&lock);
    refresh_locked();
    if (!init_refcount) {
        r = NVML_ERROR_UNINITIALIZED;
    } else if (!decode_handle(d, &g, &v->slot) || g >= current.gpu_count ||
               (v->slot >= 0 && !current.migs[g][v->slot].present)) {
        r = NVML_ERROR_INVALID_ARGUMENT; /* not ours, or the MIG device is gone */
    } else {
        v->gpu = current.gpus[g];
        if (v->slot >= 0) v->mig = current.migs[g][v->slot];
        for (int k = 0; k < MAX_MIGS; k++) v->mig_present[k] = current.migs[g][k].present;
        v->nprocs = 0;
        for (unsigned i = 0; i < current.nprocs; i++) {
            const struct proc *p = &current.procs[i];
            if (p->gpu == g && (v->slot < 0 || (p->gi == v->mig.gi && p->ci == v->mig.ci)))
                v->procs[v->nprocs++] = *p;
        }
        hang = v->gpu.hang_ms;
        r = (nvmlReturn_t)v->gpu.error;
    }
    pthread_mutex_unlock(&lock);
    nap(hang);
    return r;
}

#define ENTER(d, v)                                    \
    struct view v;                                     \
    do {                                               \
        nvmlReturn_t entered_ = enter((d), &v);        \
        if (entered_ != NVML_SUCCESS) return entered_; \
    } while (0)

static nvmlReturn_t copy_string(char *buf, unsigned int length, const char *s) {
    if (!buf) return NVML_ERROR_INVALID_ARGUMENT;
    if (strlen(s) >= length) return NVML_ERROR_INSUFFICIENT_SIZE;
    strcpy(buf, s);
    return NVML_SUCCESS;
}

/* ---- Library ---- */

/* Test hook, not NVML: how many times the scenario was (re)loaded. */
unsigned long long fakeNvmlLoadCount(void) {
    pthread_mutex_lock(&lock);
    unsigned long long n = load_count;
    pthread_mutex_unlock(&lock);
    return n;
}

nvmlReturn_t nvmlInitWithFlags(unsigned int flags) {
    (void)flags;
    pthread_mutex_lock(&lock);
    refresh_locked();
    nvmlReturn_t r = (nvmlReturn_t)current.init_error;
    if (r == NVML_SUCCESS) init_refcount++;
    pthread_mutex_unlock(&lock);
    return r;
}

nvmlReturn_t nvmlInit_v2(void) { return nvmlInitWithFlags(0); }

nvmlReturn_t nvmlShutdown(void) {
    pthread_mutex_lock(&lock);
    nvmlReturn_t r = init_refcount ? NVML_SUCCESS : NVML_ERROR_UNINITIALIZED;
    if (init_refcount) init_refcount--;
    pthread_mutex_unlock(&lock);
    return r;
}

const char *nvmlErrorString(nvmlReturn_t result) {
    switch (result) { /* the texts of real NVML (and of pynvml's own table) */
    case NVML_SUCCESS: return "Success";
    case NVML_ERROR_UNINITIALIZED: return "Uninitialized";
    case NVML_ERROR_INVALID_ARGUMENT: return "Invalid Argument";
    case NVML_ERROR_NOT_SUPPORTED: return "Not Supported";
    case NVML_ERROR_NOT_FOUND: return "Not Found";
    case NVML_ERROR_INSUFFICIENT_SIZE: return "Insufficient Size";
    case NVML_ERROR_DRIVER_NOT_LOADED: return "Driver Not Loaded";
    case NVML_ERROR_GPU_IS_LOST: return "GPU is lost";
    case NVML_ERROR_ARGUMENT_VERSION_MISMATCH: return "Argument Version Mismatch";
    default: return "Unknown Error";
    }
}

nvmlReturn_t nvmlSystemGetDriverVersion(char *version, unsigned int length) {
    char copy[sizeof current.driver];
    pthread_mutex_lock(&lock);
    refresh_locked();
    bool ok = init_refcount > 0;
    memcpy(copy, current.driver, sizeof copy);
    pthread_mutex_unlock(&lock);
    return ok ? copy_string(version, length, copy) : NVML_ERROR_UNINITIALIZED;
}

nvmlReturn_t nvmlDeviceGetCount_v2(unsigned int *count) {
    pthread_mutex_lock(&lock);
    refresh_locked();
    nvmlReturn_t r = init_refcount ? NVML_SUCCESS : NVML_ERROR_UNINITIALIZED;
    if (r == NVML_SUCCESS && count) *count = current.gpu_count;
    pthread_mutex_unlock(&lock);
    return r == NVML_SUCCESS && !count ? NVML_ERROR_INVALID_ARGUMENT : r;
}

/* Handle lookups touch the target GPU, so its error and hang apply (real NVML reports a lost GPU
 * already here). */
static nvmlReturn_t lookup(unsigned int index, const char *uuid, nvmlDevice_t *device) {
    nvmlReturn_t r = NVML_ERROR_UNINITIALIZED;
    unsigned long long hang = 0;
    pthread_mutex_lock(&lock);
    refresh_locked();
    if (init_refcount) {
        r = uuid ? NVML_ERROR_NOT_FOUND : NVML_ERROR_INVALID_ARGUMENT;
        for (unsigned g = 0; g < current.gpu_count; g++) {
            int slot = -2; /* -2: not this GPU */
            if (uuid ? strcmp(uuid, current.gpus[g].uuid) == 0 : g == index) slot = -1;
            for (int k = 0; uuid && slot == -2 && k < MAX_MIGS; k++)
                if (current.migs[g][k].present && strcmp(uuid, current.migs[g][k].uuid) == 0) slot = k;
            if (slot == -2) continue;
            *device = &handles[g][1 + slot];
            hang = current.gpus[g].hang_ms;
            r = (nvmlReturn_t)current.gpus[g].error;
            break;
        }
    }
    pthread_mutex_unlock(&lock);
    nap(hang);
    return r;
}

nvmlReturn_t nvmlDeviceGetHandleByIndex_v2(unsigned int index, nvmlDevice_t *device) {
    return device ? lookup(index, NULL, device) : NVML_ERROR_INVALID_ARGUMENT;
}

nvmlReturn_t nvmlDeviceGetHandleByUUID(const char *uuid, nvmlDevice_t *device) {
    return uuid && device ? lookup(0, uuid, device) : NVML_ERROR_INVALID_ARGUMENT;
}

nvmlReturn_t nvmlDeviceGetIndex(nvmlDevice_t d, unsigned int *index) {
    ENTER(d, v);
    if (!index) return NVML_ERROR_INVALID_ARGUMENT;
    if (v.slot >= 0) return NVML_ERROR_NOT_SUPPORTED; /* MIG devices have no NVML index */
    *index = (unsigned int)v.gpu.index;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetName(nvmlDevice_t d, char *name, unsigned int length) {
    ENTER(d, v);
    if (v.slot < 0) return copy_string(name, length, v.gpu.name);
    /* Real drivers name a MIG device "<GPU name> MIG <profile>". */
    char mig_name[sizeof v.gpu.name + sizeof v.mig.profile + 8];
    snprintf(mig_name, sizeof mig_name, "%s MIG %s", v.gpu.name, v.mig.profile);
    return copy_string(name, length, mig_name);
}

nvmlReturn_t nvmlDeviceGetUUID(nvmlDevice_t d, char *uuid, unsigned int length) {
    ENTER(d, v);
    return copy_string(uuid, length, v.slot < 0 ? v.gpu.uuid : v.mig.uuid);
}

nvmlReturn_t nvmlDeviceGetUtilizationRates(nvmlDevice_t d, nvmlUtilization_t *utilization) {
    ENTER(d, v);
    if (!utilization) return NVML_ERROR_INVALID_ARGUMENT;
    if (v.slot >= 0) return NVML_ERROR_NOT_SUPPORTED; /* as on real MIG devices */
    utilization->gpu = (unsigned int)v.gpu.util;
    utilization->memory = (unsigned int)v.gpu.mem_util;
    return NVML_SUCCESS;
}

/* Total/reserved/used of the device: a MIG device's own memory, or the whole GPU's. */
static void memory_of(const struct view *v, unsigned long long out[3]) {
    if (v->slot >= 0) {
        out[0] = v->mig.mem_mb * MiB, out[1] = 0, out[2] = v->mig.mem_used;
    } else {
        out[0] = v->gpu.mem_total, out[1] = v->gpu.mem_reserved, out[2] = v->gpu.mem_used;
    }
}

nvmlReturn_t nvmlDeviceGetMemoryInfo(nvmlDevice_t d, nvmlMemory_t *memory) {
    ENTER(d, v);
    if (!memory) return NVML_ERROR_INVALID_ARGUMENT;
    unsigned long long m[3];
    memory_of(&v, m);
    /* v1 has no "reserved": drivers since R510 count it as used there. */
    memory->total = m[0];
    memory->used = m[1] + m[2];
    memory->free = m[0] > memory->used ? m[0] - memory->used : 0;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetMemoryInfo_v2(nvmlDevice_t d, nvmlMemory_v2_t *memory) {
    ENTER(d, v);
    if (!memory) return NVML_ERROR_INVALID_ARGUMENT;
    if (memory->version != nvmlMemory_v2) return NVML_ERROR_ARGUMENT_VERSION_MISMATCH;
    unsigned long long m[3];
    memory_of(&v, m);
    memory->total = m[0];
    memory->reserved = m[1];
    memory->used = m[2];
    memory->free = m[0] > m[1] + m[2] ? m[0] - m[1] - m[2] : 0;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetPowerUsage(nvmlDevice_t d, unsigned int *power_mw) {
    ENTER(d, v);
    if (!power_mw) return NVML_ERROR_INVALID_ARGUMENT;
    if (v.slot >= 0) return NVML_ERROR_NOT_SUPPORTED; /* power is per board, not per instance */
    *power_mw = (unsigned int)v.gpu.power_mw;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetTotalEnergyConsumption(nvmlDevice_t d, unsigned long long *energy_mj) {
    ENTER(d, v);
    if (!energy_mj) return NVML_ERROR_INVALID_ARGUMENT;
    if (v.slot >= 0) return NVML_ERROR_NOT_SUPPORTED;
    *energy_mj = v.gpu.energy_mj;
    return NVML_SUCCESS;
}

/* pynvml's two-call protocol: first (count=0, infos=NULL) expects SUCCESS for "no processes" or
 * INSUFFICIENT_SIZE with the count; then it calls again with room for count*2+5 entries. */
static nvmlReturn_t running_processes(nvmlDevice_t d, unsigned int *count, nvmlProcessInfo_t *infos) {
    ENTER(d, v);
    if (!count) return NVML_ERROR_INVALID_ARGUMENT;
    if (*count < v.nprocs) {
        *count = v.nprocs;
        return NVML_ERROR_INSUFFICIENT_SIZE;
    }
    if (v.nprocs && !infos) return NVML_ERROR_INVALID_ARGUMENT;
    for (unsigned i = 0; i < v.nprocs; i++) {
        infos[i] = (nvmlProcessInfo_t){
            .pid = (unsigned int)v.procs[i].pid,
            .usedGpuMemory = v.procs[i].mem,
            .gpuInstanceId = (unsigned int)v.procs[i].gi,
            .computeInstanceId = (unsigned int)v.procs[i].ci,
        };
    }
    *count = v.nprocs;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetComputeRunningProcesses_v3(nvmlDevice_t d, unsigned int *count,
                                                     nvmlProcessInfo_t *infos) {
    return running_processes(d, count, infos);
}

nvmlReturn_t nvmlDeviceGetComputeRunningProcesses_v2(nvmlDevice_t d, unsigned int *count,
                                                     nvmlProcessInfo_t *infos) {
    return running_processes(d, count, infos);
}

/* pynvml calls (samples=NULL, count=0) and accepts only INSUFFICIENT_SIZE (anything else is
 * raised, so "no samples" must be NOT_FOUND), then calls again with exactly `count` entries.
 * Every call yields one fresh sample per process, stamped now (µs, monotonic); none when
 * lastSeen is not in the past. */
nvmlReturn_t nvmlDeviceGetProcessUtilization(nvmlDevice_t d, nvmlProcessUtilizationSample_t *samples,
                                             unsigned int *count, unsigned long long lastSeen) {
    ENTER(d, v);
    if (!count) return NVML_ERROR_INVALID_ARGUMENT;
    if (v.slot >= 0) return NVML_ERROR_NOT_SUPPORTED;
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    unsigned long long now_us = (unsigned long long)now.tv_sec * 1000000ull + (unsigned long long)now.tv_nsec / 1000;
    if (v.nprocs == 0 || now_us <= lastSeen) return NVML_ERROR_NOT_FOUND;
    if (!samples || *count < v.nprocs) {
        *count = v.nprocs;
        return NVML_ERROR_INSUFFICIENT_SIZE;
    }
    for (unsigned i = 0; i < v.nprocs; i++) {
        samples[i] = (nvmlProcessUtilizationSample_t){
            .pid = (unsigned int)v.procs[i].pid,
            .timeStamp = now_us,
            .smUtil = (unsigned int)v.procs[i].sm,
        };
    }
    *count = v.nprocs;
    return NVML_SUCCESS;
}

/* ---- MIG. Asking a MIG handle a GPU-only question (or the reverse) is NOT_SUPPORTED. ---- */

nvmlReturn_t nvmlDeviceGetMigMode(nvmlDevice_t d, unsigned int *current_mode, unsigned int *pending_mode) {
    ENTER(d, v);
    if (!current_mode || !pending_mode) return NVML_ERROR_INVALID_ARGUMENT;
    if (v.slot >= 0 || v.gpu.max_mig == 0) return NVML_ERROR_NOT_SUPPORTED; /* max_mig=0: no MIG */
    *current_mode = *pending_mode = (unsigned int)v.gpu.mig;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetMaxMigDeviceCount(nvmlDevice_t d, unsigned int *count) {
    ENTER(d, v);
    if (!count) return NVML_ERROR_INVALID_ARGUMENT;
    if (v.slot >= 0) return NVML_ERROR_NOT_SUPPORTED;
    *count = (unsigned int)v.gpu.max_mig;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetMigDeviceHandleByIndex(nvmlDevice_t d, unsigned int index, nvmlDevice_t *mig) {
    ENTER(d, v);
    if (!mig) return NVML_ERROR_INVALID_ARGUMENT;
    if (v.slot >= 0) return NVML_ERROR_NOT_SUPPORTED;
    if (index >= MAX_MIGS || !v.mig_present[index]) return NVML_ERROR_NOT_FOUND; /* callers skip it */
    *mig = &handles[v.gpu.index][1 + index];
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceIsMigDeviceHandle(nvmlDevice_t d, unsigned int *is_mig) {
    ENTER(d, v);
    if (!is_mig) return NVML_ERROR_INVALID_ARGUMENT;
    *is_mig = v.slot >= 0;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetDeviceHandleFromMigDeviceHandle(nvmlDevice_t d, nvmlDevice_t *parent) {
    ENTER(d, v);
    if (!parent) return NVML_ERROR_INVALID_ARGUMENT;
    if (v.slot < 0) return NVML_ERROR_NOT_SUPPORTED;
    *parent = &handles[v.gpu.index][0];
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetGpuInstanceId(nvmlDevice_t d, unsigned int *id) {
    ENTER(d, v);
    if (!id) return NVML_ERROR_INVALID_ARGUMENT;
    if (v.slot < 0) return NVML_ERROR_NOT_SUPPORTED;
    *id = (unsigned int)v.mig.gi;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetComputeInstanceId(nvmlDevice_t d, unsigned int *id) {
    ENTER(d, v);
    if (!id) return NVML_ERROR_INVALID_ARGUMENT;
    if (v.slot < 0) return NVML_ERROR_NOT_SUPPORTED;
    *id = (unsigned int)v.mig.ci;
    return NVML_SUCCESS;
}

/* pynvml's nvmlDeviceGetAttributes calls this symbol. On the whole GPU the slice counts are
 * max_mig (the fake's convention: a MIG device's share is slices / parent slices). */
nvmlReturn_t nvmlDeviceGetAttributes_v2(nvmlDevice_t d, nvmlDeviceAttributes_t *attributes) {
    ENTER(d, v);
    if (!attributes) return NVML_ERROR_INVALID_ARGUMENT;
    bool mig = v.slot >= 0;
    *attributes = (nvmlDeviceAttributes_t){
        .multiprocessorCount = (unsigned int)(mig ? v.mig.sms : v.gpu.sms),
        .gpuInstanceSliceCount = (unsigned int)(mig ? v.mig.slices : v.gpu.max_mig),
        .computeInstanceSliceCount = (unsigned int)(mig ? v.mig.ci_slices : v.gpu.max_mig),
        .memorySizeMB = mig ? v.mig.mem_mb : v.gpu.mem_total / MiB,
    };
    return NVML_SUCCESS;
}
