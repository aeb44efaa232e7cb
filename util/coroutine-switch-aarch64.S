/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * void co_switch_stack(void **save_sp, void *new_sp)
 *
 * Save the callee-saved registers of the AAPCS64 (x19-x30, d8-d15) in a
 * 176-byte frame on the current stack, store sp in *save_sp, switch to
 * new_sp, restore the frame found there and return through x30: into the
 * code that switched away, or for a new coroutine into the entry address
 * that co_stack_init() stored in the x30 slot.
 */
    .text
    .globl  co_switch_stack
    .type   co_switch_stack, %function
co_switch_stack:
    sub     sp, sp, #176
    stp     x19, x20, [sp, #0]
    stp     x21, x22, [sp, #16]
    stp     x23, x24, [sp, #32]
    stp     x25, x26, [sp, #48]
    stp     x27, x28, [sp, #64]
    stp     x29, x30, [sp, #80]
    stp     d8,  d9,  [sp, #96]
    stp     d10, d11, [sp, #112]
    stp     d12, d13, [sp, #128]
    stp     d14, d15, [sp, #144]
    mov     x2, sp
    str     x2, [x0]
    mov     sp, x1
    ldp     x19, x20, [sp, #0]
    ldp     x21, x22, [sp, #16]
    ldp     x23, x24, [sp, #32]
    ldp     x25, x26, [sp, #48]
    ldp     x27, x28, [sp, #64]
    ldp     x29, x30, [sp, #80]
    ldp     d8,  d9,  [sp, #96]
    ldp     d10, d11, [sp, #112]
    ldp     d12, d13, [sp, #128]
    ldp     d14, d15, [sp, #144]
    add     sp, sp, #176
    ret
    .size   co_switch_stack, .-co_switch_stack

    .section .note.GNU-stack,"",%progbits
