/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The coroutine switch's ABI contract, on x86-64 and aarch64: callee-saved
 * registers survive a switch in both directions, a new coroutine starts on a
 * 16-byte aligned stack with its argument, and deep recursion and many
 * interleaved coroutines keep their stacks intact.
 *
 * abi_call() (assembly below) loads a known value into every callee-saved
 * register, calls fn(a0, a1) with nothing compiled in between, and stores
 * the registers as fn returned them.  With fn = co_switch_stack the only
 * code between the load and the store is the switch itself and whatever
 * ran on the other stack, which loads its own values: a register the
 * switch fails to restore comes back with the other side's value.
 */
#include "util/osdep.h"

#include <pthread.h>

#include "util/coroutine.h"
#include "util/coroutine-int.h"

/* --- Register sets and abi_call() --------------------------------------- */

/*
 * Offsets are fixed: the assembly below uses them.
 * x86-64: gpr[0..5] = rbx rbp r12 r13 r14 r15; mxcsr and fpucw.
 * aarch64: gpr[0..10] = x19..x29; fpr[0..7] = d8..d15.
 */
typedef struct AbiRegs {
    uint64_t gpr[11];       /* offset 0 */
    uint64_t fpr[8];        /* offset 88 */
    uint32_t mxcsr;         /* offset 152 */
    uint32_t fpucw;         /* offset 156 */
} AbiRegs;

G_STATIC_ASSERT(offsetof(AbiRegs, fpr) == 88);
G_STATIC_ASSERT(offsetof(AbiRegs, mxcsr) == 152);
G_STATIC_ASSERT(offsetof(AbiRegs, fpucw) == 156);

/* co_switch_stack()'s type, so that it needs no cast. */
typedef void AbiFn(void **a0, void *a1);

/* Load *in, call fn(a0, a1), store into *out; restore the caller's own. */
void abi_call(const AbiRegs *in, AbiRegs *out, AbiFn *fn, void **a0,
              void *a1);

#if defined(__x86_64__)
#define N_GPR 6
#define N_FPR 0
/* Control bits only: the status flags of both are caller-saved. */
#define MXCSR_CONTROL 0xffc0u
#define FPUCW_CONTROL 0x1f3fu

__asm__(
    "    .text\n"
    "    .globl  abi_call\n"
    "    .type   abi_call, @function\n"
    "abi_call:\n"
    "    pushq   %rbp\n"
    "    pushq   %rbx\n"
    "    pushq   %r12\n"
    "    pushq   %r13\n"
    "    pushq   %r14\n"
    "    pushq   %r15\n"
    "    pushq   %rsi\n"                /* out; rsp % 16 == 0 from here */
    "    subq    $16, %rsp\n"
    "    stmxcsr (%rsp)\n"
    "    fnstcw  4(%rsp)\n"
    "    movq    0(%rdi), %rbx\n"
    "    movq    8(%rdi), %rbp\n"
    "    movq    16(%rdi), %r12\n"
    "    movq    24(%rdi), %r13\n"
    "    movq    32(%rdi), %r14\n"
    "    movq    40(%rdi), %r15\n"
    "    ldmxcsr 152(%rdi)\n"
    "    fldcw   156(%rdi)\n"
    "    movq    %rdx, %rax\n"
    "    movq    %rcx, %rdi\n"
    "    movq    %r8, %rsi\n"
    "    call    *%rax\n"
    "    movq    16(%rsp), %rax\n"
    "    movq    %rbx, 0(%rax)\n"
    "    movq    %rbp, 8(%rax)\n"
    "    movq    %r12, 16(%rax)\n"
    "    movq    %r13, 24(%rax)\n"
    "    movq    %r14, 32(%rax)\n"
    "    movq    %r15, 40(%rax)\n"
    "    stmxcsr 152(%rax)\n"
    "    movl    $0, 156(%rax)\n"
    "    fnstcw  156(%rax)\n"
    "    ldmxcsr (%rsp)\n"
    "    fldcw   4(%rsp)\n"
    "    addq    $24, %rsp\n"
    "    popq    %r15\n"
    "    popq    %r14\n"
    "    popq    %r13\n"
    "    popq    %r12\n"
    "    popq    %rbx\n"
    "    popq    %rbp\n"
    "    ret\n"
    "    .size   abi_call, .-abi_call\n");

#elif defined(__aarch64__)
#define N_GPR 11
#define N_FPR 8

__asm__(
    "    .text\n"
    "    .globl  abi_call\n"
    "    .type   abi_call, %function\n"
    "abi_call:\n"
    "    stp     x29, x30, [sp, #-176]!\n"
    "    stp     x19, x20, [sp, #16]\n"
    "    stp     x21, x22, [sp, #32]\n"
    "    stp     x23, x24, [sp, #48]\n"
    "    stp     x25, x26, [sp, #64]\n"
    "    stp     x27, x28, [sp, #80]\n"
    "    stp     d8,  d9,  [sp, #96]\n"
    "    stp     d10, d11, [sp, #112]\n"
    "    stp     d12, d13, [sp, #128]\n"
    "    stp     d14, d15, [sp, #144]\n"
    "    str     x1, [sp, #160]\n"
    "    mov     x16, x2\n"
    "    ldp     x19, x20, [x0, #0]\n"
    "    ldp     x21, x22, [x0, #16]\n"
    "    ldp     x23, x24, [x0, #32]\n"
    "    ldp     x25, x26, [x0, #48]\n"
    "    ldp     x27, x28, [x0, #64]\n"
    "    ldr     x29, [x0, #80]\n"
    "    ldp     d8,  d9,  [x0, #88]\n"
    "    ldp     d10, d11, [x0, #104]\n"
    "    ldp     d12, d13, [x0, #120]\n"
    "    ldp     d14, d15, [x0, #136]\n"
    "    mov     x0, x3\n"
    "    mov     x1, x4\n"
    "    blr     x16\n"
    "    ldr     x1, [sp, #160]\n"
    "    stp     x19, x20, [x1, #0]\n"
    "    stp     x21, x22, [x1, #16]\n"
    "    stp     x23, x24, [x1, #32]\n"
    "    stp     x25, x26, [x1, #48]\n"
    "    stp     x27, x28, [x1, #64]\n"
    "    str     x29, [x1, #80]\n"
    "    stp     d8,  d9,  [x1, #88]\n"
    "    stp     d10, d11, [x1, #104]\n"
    "    stp     d12, d13, [x1, #120]\n"
    "    stp     d14, d15, [x1, #136]\n"
    "    ldp     x19, x20, [sp, #16]\n"
    "    ldp     x21, x22, [sp, #32]\n"
    "    ldp     x23, x24, [sp, #48]\n"
    "    ldp     x25, x26, [sp, #64]\n"
    "    ldp     x27, x28, [sp, #80]\n"
    "    ldp     d8,  d9,  [sp, #96]\n"
    "    ldp     d10, d11, [sp, #112]\n"
    "    ldp     d12, d13, [sp, #128]\n"
    "    ldp     d14, d15, [sp, #144]\n"
    "    ldp     x29, x30, [sp], #176\n"
    "    ret\n"
    "    .size   abi_call, .-abi_call\n");

#else
#error "no coroutine switch test for this architecture"
#endif

/* A register set that differs from every other @pattern in every slot. */
static void regs_fill(AbiRegs *r, unsigned pattern)
{
    memset(r, 0, sizeof(*r));
    for (int i = 0; i < N_GPR; i++) {
        r->gpr[i] = 0xa5a5000000000000ull | (uint64_t)pattern << 16 |
                    (uint64_t)(i + 1) << 4;
    }
    for (int i = 0; i < N_FPR; i++) {
        r->fpr[i] = 0x4010000000000000ull | (uint64_t)pattern << 16 |
                    (uint64_t)(i + 1) << 8;
    }
#if defined(__x86_64__)
    {
        /*
         * Default control words with the rounding mode (both) and
         * FTZ/DAZ or the x87 precision varied; every exception stays masked.
         */
        static const uint32_t mxcsr[] = { 0x7f80, 0x9fc0, 0x3f80, 0x5f80 };
        static const uint32_t fpucw[] = { 0x0f7f, 0x027f, 0x077f, 0x0b7f };

        r->mxcsr = mxcsr[pattern % 4];
        r->fpucw = fpucw[pattern % 4];
    }
#endif
}

/* Assert that the callee-saved registers in @got are those of @want. */
static void regs_check(const AbiRegs *want, const AbiRegs *got,
                       const char *where)
{
    for (int i = 0; i < N_GPR; i++) {
        if (got->gpr[i] != want->gpr[i]) {
            g_error("%s: callee-saved integer register %d is %#" PRIx64
                    ", want %#" PRIx64, where, i, got->gpr[i], want->gpr[i]);
        }
    }
    for (int i = 0; i < N_FPR; i++) {
        if (got->fpr[i] != want->fpr[i]) {
            g_error("%s: d%d is %#" PRIx64 ", want %#" PRIx64, where, i + 8,
                    got->fpr[i], want->fpr[i]);
        }
    }
#if defined(__x86_64__)
    if ((got->mxcsr & MXCSR_CONTROL) != (want->mxcsr & MXCSR_CONTROL)) {
        g_error("%s: MXCSR is %#x, want %#x", where, got->mxcsr, want->mxcsr);
    }
    if ((got->fpucw & FPUCW_CONTROL) != (want->fpucw & FPUCW_CONTROL)) {
        g_error("%s: x87 control word is %#x, want %#x", where, got->fpucw,
                want->fpucw);
    }
#endif
}

/* --- The raw switch ------------------------------------------------------ */

/*
 * Main and a coroutine pass control back and forth with co_switch_stack()
 * called straight from abi_call(), each side loading its own register
 * values before it switches away and checking them when it is switched
 * back to.  The coroutine first gets going, and finally ends, through
 * co_enter()/co_yield(), so that the runtime's bookkeeping stays right.
 */
typedef struct RawPingPong {
    Coroutine *co;
    void *main_sp;
    int rounds;
} RawPingPong;

static void coroutine_fn raw_body(void *opaque)
{
    RawPingPong *s = opaque;
    AbiRegs in, out;

    co_yield();
    for (int i = 0; i < s->rounds; i++) {
        regs_fill(&in, 2 * i + 1);
        abi_call(&in, &out, co_switch_stack, &s->co->sp, s->main_sp);
        regs_check(&in, &out, "coroutine, raw switch back");
    }
}

static void test_raw_switch_registers(void)
{
    RawPingPong s = { .rounds = 8 };
    AbiRegs in, out;

#if defined(CONFIG_ASAN) || defined(CONFIG_TSAN)
    g_test_skip("raw switches bypass the sanitizers' fiber annotations");
    return;
#endif
    s.co = co_create(raw_body, &s);
    co_enter(s.co);                     /* runs to its co_yield() */
    for (int i = 0; i < s.rounds; i++) {
        regs_fill(&in, 2 * i);
        abi_call(&in, &out, co_switch_stack, &s.main_sp, s.co->sp);
        regs_check(&in, &out, "main, raw switch back");
    }
    co_enter(s.co);                     /* checks its last round and ends */
    g_assert_false(co_entered(s.co));
}

/* --- Through co_enter() and co_yield() ----------------------------------- */

static void call_co_enter(void **unused, void *co)
{
    co_enter(co);
}

static void call_co_yield(void **unused0, void *unused1)
{
    co_yield();
}

static void coroutine_fn api_body(void *opaque)
{
    int *rounds = opaque;
    AbiRegs in, out;

    for (int i = 0; i < *rounds; i++) {
        regs_fill(&in, 100 + i);
        abi_call(&in, &out, call_co_yield, NULL, NULL);
        regs_check(&in, &out, "coroutine, co_yield()");
    }
}

static void test_api_switch_registers(void)
{
    int rounds = 8;
    Coroutine *co = co_create(api_body, &rounds);
    AbiRegs in, out;

    for (int i = 0; i <= rounds; i++) {
        regs_fill(&in, 200 + i);
        abi_call(&in, &out, call_co_enter, NULL, co);
        regs_check(&in, &out, "main, co_enter()");
    }
}

/* --- Entry: alignment and argument --------------------------------------- */

typedef struct EntryCheck {
    uintptr_t frame;        /* __builtin_frame_address(0) of the entry */
    uintptr_t local;        /* address of a 16-byte aligned local */
    uintptr_t callee_frame; /* the same one call further down */
    uintptr_t callee_local;
    void *arg;
} EntryCheck;

static EntryCheck entry_seen;

static NOINLINE void entry_callee(void)
{
    _Alignas(16) volatile char buf[16];

    buf[0] = 1;
    entry_seen.callee_frame = (uintptr_t)__builtin_frame_address(0);
    entry_seen.callee_local = (uintptr_t)buf;
}

static void coroutine_fn entry_body(void *opaque)
{
    _Alignas(16) volatile char buf[16];

    buf[0] = 1;
    entry_seen.frame = (uintptr_t)__builtin_frame_address(0);
    entry_seen.local = (uintptr_t)buf;
    entry_callee();
    entry_seen.arg = opaque;
}

/*
 * Both fresh stacks (co_stack_init()) and pooled ones (the trampoline's
 * loop) start aligned and get their argument.  Alignment is checked on
 * the frame pointer too: gcc and clang keep locals aligned only by
 * assuming the entry was, so a misaligned entry shows in the frame.
 */
static void test_entry_alignment_and_argument(void)
{
    Coroutine *co[8];
    int args[8];

    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < 8; i++) {
            co[i] = co_create(entry_body, &args[i]);
        }
        for (int i = 0; i < 8; i++) {
            memset(&entry_seen, 0xff, sizeof(entry_seen));
            co_enter(co[i]);
            g_assert_true(entry_seen.arg == &args[i]);
            g_assert_cmpuint(entry_seen.frame % 16, ==, 0);
            g_assert_cmpuint(entry_seen.local % 16, ==, 0);
            g_assert_cmpuint(entry_seen.callee_frame % 16, ==, 0);
            g_assert_cmpuint(entry_seen.callee_local % 16, ==, 0);
        }
    }
}

/* --- Deep recursion ------------------------------------------------------ */

#define RECURSE_FRAME 512           /* bytes of locals per level */
#define RECURSE_DEPTH 1200          /* ~600 KiB of the 1 MiB stack */

typedef struct Recurse {
    int yield_at;           /* depth at which to yield once */
    uint64_t sum;
} Recurse;

/* Fill a frame, recurse, yield at the bottom, then check the frame. */
static NOINLINE uint64_t coroutine_fn recurse(Recurse *r, int depth)
{
    volatile uint8_t frame[RECURSE_FRAME];
    uint64_t sum;

    for (int i = 0; i < RECURSE_FRAME; i++) {
        frame[i] = (uint8_t)(depth * 31 + i);
    }
    if (depth == r->yield_at) {
        co_yield();
        sum = 0;
    } else {
        sum = recurse(r, depth + 1);
    }
    for (int i = 0; i < RECURSE_FRAME; i++) {
        if (frame[i] != (uint8_t)(depth * 31 + i)) {
            g_error("recursion depth %d: byte %d of the frame changed",
                    depth, i);
        }
    }
    return sum + (uint64_t)depth;
}

static void coroutine_fn recurse_body(void *opaque)
{
    Recurse *r = opaque;

    r->sum = recurse(r, 0);
}

static void test_deep_recursion(void)
{
    Recurse r = { .yield_at = RECURSE_DEPTH };
    Coroutine *co = co_create(recurse_body, &r);

    co_enter(co);                   /* down to the bottom, then yields */
    g_assert_cmpuint(r.sum, ==, 0);
    co_enter(co);                   /* back up, checking every frame */
    g_assert_cmpuint(r.sum, ==,
                     (uint64_t)RECURSE_DEPTH * (RECURSE_DEPTH + 1) / 2);
}

/* --- Many coroutines interleaved ----------------------------------------- */

#define N_INTERLEAVE 64
#define INTERLEAVE_ROUNDS 50

typedef struct Interleave {
    int id;
    GString *log;           /* shared: one character per turn */
    double result;
} Interleave;

/*
 * Each coroutine keeps a running double and integer state in locals across
 * its yields, which the compiler is free to keep in callee-saved registers.
 */
static void coroutine_fn interleave_body(void *opaque)
{
    Interleave *it = opaque;
    double acc = it->id;
    uint64_t h = (uint64_t)it->id * 0x9e3779b97f4a7c15ull;

    for (int round = 0; round < INTERLEAVE_ROUNDS; round++) {
        g_string_append_c(it->log, (char)('0' + it->id % 64));
        acc = acc * 1.5 + round;
        h = h * 6364136223846793005ull + (uint64_t)round;
        co_yield();
    }
    it->result = acc + (double)(h >> 40);
}

static double interleave_expected(int id)
{
    double acc = id;
    uint64_t h = (uint64_t)id * 0x9e3779b97f4a7c15ull;

    for (int round = 0; round < INTERLEAVE_ROUNDS; round++) {
        acc = acc * 1.5 + round;
        h = h * 6364136223846793005ull + (uint64_t)round;
    }
    return acc + (double)(h >> 40);
}

static void test_many_interleaved(void)
{
    Interleave it[N_INTERLEAVE];
    Coroutine *co[N_INTERLEAVE];
    GString *log = g_string_new("");
    GString *want = g_string_new("");

    for (int i = 0; i < N_INTERLEAVE; i++) {
        it[i] = (Interleave){ .id = i, .log = log };
        co[i] = co_create(interleave_body, &it[i]);
    }
    /* Round robin; the last turn of each lets it finish. */
    for (int round = 0; round <= INTERLEAVE_ROUNDS; round++) {
        for (int i = 0; i < N_INTERLEAVE; i++) {
            co_enter(co[i]);
            if (round < INTERLEAVE_ROUNDS) {
                g_string_append_c(want, (char)('0' + i % 64));
            }
        }
    }
    g_assert_cmpstr(log->str, ==, want->str);
    for (int i = 0; i < N_INTERLEAVE; i++) {
        g_assert_cmpfloat(it[i].result, ==, interleave_expected(i));
    }
    g_string_free(log, true);
    g_string_free(want, true);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/co-switch/raw/registers", test_raw_switch_registers);
    g_test_add_func("/co-switch/api/registers", test_api_switch_registers);
    g_test_add_func("/co-switch/entry/alignment-and-argument",
                    test_entry_alignment_and_argument);
    g_test_add_func("/co-switch/deep-recursion", test_deep_recursion);
    g_test_add_func("/co-switch/many-interleaved", test_many_interleaved);
    return g_test_run();
}
