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
 * MXCSR and the x87 control word are callee-saved too, but blockd never
 * changes them, so they are not switched.
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
    movq    %rsp, (%rdi)
    movq    %rsi, %rsp
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
