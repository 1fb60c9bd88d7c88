/*
 * kestrel_icount: a qemu-user TCG plugin that counts the aarch64 instructions a program executes
 * inside marked windows, per translation block, without qemu's instruction log.
 *
 * `arm-icount` (qemu -d in_asm,exec) writes ~70 bytes of log per executed block: loading and
 * optimising a MobileNet-sized graph under qemu logged 28 GB before the first inference. This
 * plugin keeps one in-memory counter per translated block instead (qemu adds the block's
 * instruction count inline, no callback per execution) and only reports what ran between the
 * program's window markers, so model loading costs nothing in the figures.
 *
 * Window markers: the program calls prctl(0x4B49434E, 1) (0x4B49434E is "KICN") to open a window and
 * prctl(0x4B49434E, 2) to close it (an unknown prctl option: on a real kernel it fails with
 * EINVAL and does nothing). `kestrel bench` issues them around its timed runs when
 * KESTREL_ICOUNT_WINDOW=1. Without any marker the whole run is counted.
 *
 * Output (plugin argument out=FILE): one line per block that executed inside a window,
 * "VADDR EXECUTIONS MNEMONIC,MNEMONIC,..." (hex address, decimal count, the block's mnemonics);
 * benches/icount/icount.py maps blocks to functions and sums mnemonics.
 *
 * Written against the qemu plugin API version 1 (qemu 7.2, Debian bookworm's qemu-user); the
 * few declarations it needs are below so that no qemu source tree is required to build it.
 * Build: cc -O2 -shared -fPIC -o kestrel_icount.so kestrel_icount.c
 */
#include <inttypes.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the subset of qemu's plugin API (version 1) this plugin uses ---- */
typedef uint64_t qemu_plugin_id_t;
typedef struct {
    const char *target_name;
    struct { int min; int cur; } version;
    bool system_emulation;
    union { struct { int smp_vcpus; int max_vcpus; } system; };
} qemu_info_t;
struct qemu_plugin_tb;
struct qemu_plugin_insn;
enum qemu_plugin_op { QEMU_PLUGIN_INLINE_ADD_U64 };
typedef void (*tb_trans_cb)(qemu_plugin_id_t, struct qemu_plugin_tb *);
typedef void (*udata_cb)(qemu_plugin_id_t, void *);
typedef void (*syscall_cb)(qemu_plugin_id_t, unsigned int, int64_t, uint64_t, uint64_t, uint64_t,
                           uint64_t, uint64_t, uint64_t, uint64_t, uint64_t);
void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t, tb_trans_cb);
void qemu_plugin_register_vcpu_tb_exec_inline(struct qemu_plugin_tb *, enum qemu_plugin_op, void *,
                                              uint64_t);
void qemu_plugin_register_vcpu_syscall_cb(qemu_plugin_id_t, syscall_cb);
void qemu_plugin_register_atexit_cb(qemu_plugin_id_t, udata_cb, void *);
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *);
uint64_t qemu_plugin_tb_vaddr(const struct qemu_plugin_tb *);
struct qemu_plugin_insn *qemu_plugin_tb_get_insn(const struct qemu_plugin_tb *, size_t);
char *qemu_plugin_insn_disas(const struct qemu_plugin_insn *);
void qemu_plugin_outs(const char *);
__attribute__((visibility("default"))) int qemu_plugin_version = 1;
/* ---------------------------------------------------------------------- */

#define AARCH64_PRCTL 167
#define MARKER 0x4B49434EULL

/* One translated block. Blocks live in fixed chunks that are never moved, because qemu keeps a
 * pointer to `execs` inside the generated code. */
typedef struct {
    uint64_t execs;   /* executions (qemu adds 1 inline; scaled by the block length at output) */
    uint64_t kept;    /* executions inside closed windows */
    uint64_t vaddr;
    char *mnemonics;  /* "ldr,add,..." */
} block_t;

#define CHUNK 65536
static block_t **chunks;
static size_t n_chunks, n_blocks;
static bool windowed, in_window;
static unsigned windows;
static const char *out_path = "kestrel-icount.txt";

static block_t *new_block(void)
{
    if (n_blocks == n_chunks * CHUNK) {
        chunks = realloc(chunks, (n_chunks + 1) * sizeof *chunks);
        chunks[n_chunks++] = calloc(CHUNK, sizeof(block_t));
        if (!chunks || !chunks[n_chunks - 1]) {
            qemu_plugin_outs("kestrel_icount: out of memory\n");
            abort();
        }
    }
    block_t *b = &chunks[n_blocks / CHUNK][n_blocks % CHUNK];
    n_blocks++;
    return b;
}

#define EACH_BLOCK(b) \
    for (size_t i_ = 0; i_ < n_blocks; i_++) \
        for (block_t *b = &chunks[i_ / CHUNK][i_ % CHUNK]; b; b = NULL)

static void on_translate(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
    (void)id;
    size_t n = qemu_plugin_tb_n_insns(tb);
    block_t *b = new_block();
    b->vaddr = qemu_plugin_tb_vaddr(tb);
    size_t cap = 16 * n + 1, len = 0;
    b->mnemonics = malloc(cap);
    b->mnemonics[0] = 0;
    for (size_t i = 0; i < n; i++) {
        char *d = qemu_plugin_insn_disas(qemu_plugin_tb_get_insn(tb, i));
        size_t m = d ? strcspn(d, " \t") : 0;
        if (m == 0 || m > 14) { m = 1; d = "?"; }
        if (len + m + 2 > cap) { cap = 2 * (len + m + 2); b->mnemonics = realloc(b->mnemonics, cap); }
        if (len) b->mnemonics[len++] = ',';
        memcpy(b->mnemonics + len, d, m);
        len += m;
        b->mnemonics[len] = 0;
        if (d && d[0] != '?') free(d);
    }
    qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &b->execs, 1);
}

static void on_syscall(qemu_plugin_id_t id, unsigned int vcpu, int64_t num, uint64_t a1,
                       uint64_t a2, uint64_t a3, uint64_t a4, uint64_t a5, uint64_t a6,
                       uint64_t a7, uint64_t a8)
{
    (void)id; (void)vcpu; (void)a3; (void)a4; (void)a5; (void)a6; (void)a7; (void)a8;
    if (num != AARCH64_PRCTL || a1 != MARKER) return;
    if (a2 == 1 && !in_window) {          /* open: forget everything counted so far */
        EACH_BLOCK(b) b->execs = 0;
        in_window = windowed = true;
    } else if (a2 == 2 && in_window) {    /* close: keep what the window executed */
        EACH_BLOCK(b) { b->kept += b->execs; b->execs = 0; }
        in_window = false;
        windows++;
    }
}

static void on_exit_(qemu_plugin_id_t id, void *p)
{
    (void)id; (void)p;
    FILE *f = fopen(out_path, "w");
    if (!f) { qemu_plugin_outs("kestrel_icount: cannot write the output file\n"); return; }
    fprintf(f, "# kestrel_icount windows=%u%s\n", windows,
            windowed ? "" : " (no markers: whole run)");
    EACH_BLOCK(b) {
        uint64_t n = windowed ? b->kept : b->execs;
        if (n) fprintf(f, "%" PRIx64 " %" PRIu64 " %s\n", b->vaddr, n, b->mnemonics);
    }
    fclose(f);
}

__attribute__((visibility("default"))) int qemu_plugin_install(qemu_plugin_id_t id,
                                                               const qemu_info_t *info, int argc,
                                                               char **argv)
{
    (void)info;
    for (int i = 0; i < argc; i++)
        if (strncmp(argv[i], "out=", 4) == 0) out_path = argv[i] + 4;
    qemu_plugin_register_vcpu_tb_trans_cb(id, on_translate);
    qemu_plugin_register_vcpu_syscall_cb(id, on_syscall);
    qemu_plugin_register_atexit_cb(id, on_exit_, NULL);
    return 0;
}
