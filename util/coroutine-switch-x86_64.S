/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * void co_switch_stack(void **save_sp, void *new_sp)
 *
 * Save the callee-saved registers of the System V x86-64 ABI on the current
 * stack, store the stack pointer in *save_sp, switch to new_sp and pop the
 * registers saved there, returning into the code that switched away from
 * it (or, for a new coroutine, into the entry address that
 * co_stack_init() placed where the return address goes).
 *
 * The control bits of MXCSR and the x87 control word are callee-saved
 * too: they go in an 8-byte slot below the registers, so that a coroutine
 * that changes the rounding mode or flush-to-zero does not change them for
 * the code it switches to.  Frame, from the saved stack pointer up:
 * MXCSR (4 bytes), x87 CW (2), padding (2), r15 r14 r13 r12 rbx rbp, return
 * address.  co_stack_init() in coroutine.c builds the same frame.
 */
    .text
    .globl  co_switch_stack
    .type   co_switch_stack, @function
co_switch_stack:
    .cfi_startproc
    pushq   %rbp
    pushq   %rbx
    pushq   %r12
    pushq   %r13
    pushq   %r14
    pushq   %r15
    subq    $8, %rsp
    stmxcsr (%rsp)
    fnstcw  4(%rsp)
    movq    %rsp, (%rdi)
    movq    %rsi, %rsp
    ldmxcsr (%rsp)
    fldcw   4(%rsp)
    addq    $8, %rsp
    popq    %r15
    popq    %r14
    popq    %r13
    popq    %r12
    popq    %rbx
    popq    %rbp
    ret
    .cfi_endproc
    .size   co_switch_stack, .-co_switch_stack

    .section .note.GNU-stack,"",@progbits
