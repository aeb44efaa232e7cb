/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Atomic accesses and memory barriers, on the compiler's __atomic builtins so
 * that ThreadSanitizer sees every one of them.
 *
 * qatomic_read/qatomic_set are relaxed: they only make a shared access
 * data-race free.  Ordering comes from the explicit barriers (smp_mb, and the
 * acquire/release forms) or from the read-modify-write operations, which are
 * sequentially consistent (full barriers).  Every barrier in blockd names the
 * barrier it pairs with in a comment.
 *
 * The names avoid C11's atomic_* because liburing's headers pull in
 * <stdatomic.h>, whose macros would collide.
 */
#ifndef UTIL_ATOMIC_H
#define UTIL_ATOMIC_H

#define barrier()               __atomic_signal_fence(__ATOMIC_SEQ_CST)

#define qatomic_read(p)         __atomic_load_n(p, __ATOMIC_RELAXED)
#define qatomic_set(p, v)       __atomic_store_n(p, v, __ATOMIC_RELAXED)
#define qatomic_load_acquire(p) __atomic_load_n(p, __ATOMIC_ACQUIRE)
#define qatomic_store_release(p, v) __atomic_store_n(p, v, __ATOMIC_RELEASE)

/* Read-modify-write: all sequentially consistent, i.e. full barriers. */
#define qatomic_xchg(p, v)      __atomic_exchange_n(p, v, __ATOMIC_SEQ_CST)
#define qatomic_fetch_add(p, n) __atomic_fetch_add(p, n, __ATOMIC_SEQ_CST)
#define qatomic_fetch_sub(p, n) __atomic_fetch_sub(p, n, __ATOMIC_SEQ_CST)
#define qatomic_fetch_or(p, n)  __atomic_fetch_or(p, n, __ATOMIC_SEQ_CST)
#define qatomic_fetch_and(p, n) __atomic_fetch_and(p, n, __ATOMIC_SEQ_CST)
#define qatomic_fetch_inc(p)    qatomic_fetch_add(p, 1)
#define qatomic_fetch_dec(p)    qatomic_fetch_sub(p, 1)
#define qatomic_inc(p)          ((void)qatomic_fetch_add(p, 1))
#define qatomic_dec(p)          ((void)qatomic_fetch_sub(p, 1))
#define qatomic_add(p, n)       ((void)qatomic_fetch_add(p, n))
#define qatomic_sub(p, n)       ((void)qatomic_fetch_sub(p, n))

/* Returns the old value, like QEMU's and the kernel's cmpxchg. */
#define qatomic_cmpxchg(p, old, new) ({                                 \
    __typeof__(*(p)) cmpxchg_old_ = (old);                              \
    (void)__atomic_compare_exchange_n(p, &cmpxchg_old_, new, false,     \
                                      __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST); \
    cmpxchg_old_;                                                       \
})

#define smp_mb()     __atomic_thread_fence(__ATOMIC_SEQ_CST)
#define smp_mb_acquire() __atomic_thread_fence(__ATOMIC_ACQUIRE)
#define smp_mb_release() __atomic_thread_fence(__ATOMIC_RELEASE)

#endif /* UTIL_ATOMIC_H */
