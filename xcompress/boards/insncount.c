/*
 * xcompress instruction counter: a QEMU TCG plugin for qemu-aarch64 (user mode).
 *
 * Counts executed guest instructions, split into int8 dot-product instructions
 * (SDOT/UDOT/USDOT/SUDOT, vector and by element), int8 matrix multiply-accumulate
 * (SMMLA/UMMLA/USMMLA) and everything else. Each instruction word is decoded once, when
 * its translation block (TB) is translated; a per-TB record of the three counts is then
 * added to global counters each time the TB executes.
 *
 * The guest asks for a snapshot with a "marker": lseek(-1, MARKER_BASE + code, SEEK_SET).
 * That call fails harmlessly with EBADF in the guest, but the plugin sees it in its syscall
 * callback and appends "marker <code> <total> <dot> <mmla>" to the output file. A final
 * "exit ..." line is written when the guest exits. The difference between two markers is
 * the exact number of guest instructions executed between them (xcompress.profile.emu puts
 * one marker before and one after each counted inference).
 *
 * Arguments: out=<host path of the output file> (required).
 * Built by xcompress.boards.plugin against the qemu-plugin.h of the installed QEMU.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <qemu-plugin.h>

QEMU_PLUGIN_EXPORT int qemu_plugin_version = QEMU_PLUGIN_VERSION;

#define AARCH64_NR_LSEEK 62
#define MARKER_BASE 0x5843505200000000ULL /* "XCPR" in the high half */
#define MARKER_SPAN 0x100000000ULL

typedef struct {
    uint64_t total;
    uint64_t dot;
    uint64_t mmla;
} counts_t;

static counts_t counters;
static FILE *out;

/* Masks and values of the A64 encodings (Arm ARM, Advanced SIMD three-same-extra and
 * vector x indexed element groups). The Q (bit 30) and U (bit 29) bits are left free where
 * both values are the same kind of instruction, so 64- and 128-bit forms count alike. */
static int is_dot(uint32_t w)
{
    return (w & 0x9FE0FC00u) == 0x0E809400u      /* SDOT/UDOT (vector), size=10 */
        || (w & 0xBFE0FC00u) == 0x0E809C00u      /* USDOT (vector) */
        || (w & 0x9FC0F400u) == 0x0F80E000u      /* SDOT/UDOT (by element) */
        || (w & 0xBF40F400u) == 0x0F00F000u;     /* SUDOT/USDOT (by element) */
}

static int is_mmla(uint32_t w)
{
    return (w & 0xDFE0F400u) == 0x4E80A400u;     /* SMMLA/UMMLA/USMMLA */
}

static void tb_exec(unsigned int vcpu_index, void *udata)
{
    const counts_t *c = udata;
    (void)vcpu_index;
    /* Atomic: every guest thread is a host thread running this callback concurrently. */
    __atomic_fetch_add(&counters.total, c->total, __ATOMIC_RELAXED);
    if (c->dot)
        __atomic_fetch_add(&counters.dot, c->dot, __ATOMIC_RELAXED);
    if (c->mmla)
        __atomic_fetch_add(&counters.mmla, c->mmla, __ATOMIC_RELAXED);
}

static void tb_trans(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
    size_t n = qemu_plugin_tb_n_insns(tb);
    /* Never freed: QEMU may execute the TB until the process ends. */
    counts_t *c = calloc(1, sizeof(*c));
    (void)id;
    if (c == NULL)
        return;
    c->total = n;
    for (size_t i = 0; i < n; i++) {
        struct qemu_plugin_insn *insn = qemu_plugin_tb_get_insn(tb, i);
        uint32_t w;
        if (qemu_plugin_insn_size(insn) != sizeof(w))
            continue;
        memcpy(&w, qemu_plugin_insn_data(insn), sizeof(w));
        c->dot += is_dot(w);
        c->mmla += is_mmla(w);
    }
    qemu_plugin_register_vcpu_tb_exec_cb(tb, tb_exec, QEMU_PLUGIN_CB_NO_REGS, c);
}

static void write_line(const char *what, uint64_t code)
{
    if (out == NULL)
        return;
    fprintf(out, "%s %llu %llu %llu %llu\n", what, (unsigned long long)code,
            (unsigned long long)__atomic_load_n(&counters.total, __ATOMIC_RELAXED),
            (unsigned long long)__atomic_load_n(&counters.dot, __ATOMIC_RELAXED),
            (unsigned long long)__atomic_load_n(&counters.mmla, __ATOMIC_RELAXED));
    fflush(out);
}

static void syscall_cb(qemu_plugin_id_t id, unsigned int vcpu_index, int64_t num,
                       uint64_t a1, uint64_t a2, uint64_t a3, uint64_t a4, uint64_t a5,
                       uint64_t a6, uint64_t a7, uint64_t a8)
{
    (void)id; (void)vcpu_index; (void)a3; (void)a4; (void)a5; (void)a6; (void)a7; (void)a8;
    /* fd is a C int: only its low 32 bits are defined in the register. */
    if (num == AARCH64_NR_LSEEK && (uint32_t)a1 == 0xFFFFFFFFu && a2 >= MARKER_BASE
        && a2 < MARKER_BASE + MARKER_SPAN)
        write_line("marker", a2 - MARKER_BASE);
}

static void at_exit(qemu_plugin_id_t id, void *p)
{
    (void)id; (void)p;
    write_line("exit", 0);
    if (out != NULL)
        fclose(out);
    out = NULL;
}

QEMU_PLUGIN_EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info,
                                           int argc, char **argv)
{
    const char *path = NULL;
    (void)info;
    for (int i = 0; i < argc; i++) {
        if (strncmp(argv[i], "out=", 4) == 0)
            path = argv[i] + 4;
    }
    if (path == NULL) {
        fprintf(stderr, "insncount: missing argument out=<file>\n");
        return -1;
    }
    out = fopen(path, "w");
    if (out == NULL) {
        perror("insncount: cannot open output file");
        return -1;
    }
    qemu_plugin_register_vcpu_tb_trans_cb(id, tb_trans);
    qemu_plugin_register_vcpu_syscall_cb(id, syscall_cb);
    qemu_plugin_register_atexit_cb(id, at_exit, NULL);
    return 0;
}
