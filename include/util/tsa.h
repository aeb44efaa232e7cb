/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Clang thread-safety analysis (-Wthread-safety) annotations.  With
 * -Dtsa=true they expand to clang's attributes and the build checks that
 * every function that needs a lock is called with it held; under gcc, or
 * without the option, they expand to nothing.
 *
 * Conventions:
 *   TSA_CAPABILITY("mutex")  on a lock type;
 *   TSA_GUARDED_BY(lock)     on a global variable or struct field the lock
 *                            protects, if the lock is a global (in C, clang
 *                            cannot name a sibling field: such fields name
 *                            their lock in a comment);
 *   QLIST_HEAD(, T TSA_GUARDED_BY(lock)), QLIST_ENTRY(T TSA_GUARDED_BY(lock))
 *                            for a list: the guard goes on the links, through
 *                            the element type, because clang does not see a
 *                            guard on the head through the &head that the
 *                            list macros take (QTAILQ_HEAD and QTAILQ_ENTRY
 *                            alike);
 *   TSA_REQUIRES(lock)       on a function the caller must call with the lock;
 *   TSA_ACQUIRE / TSA_RELEASE on lock and unlock functions;
 *   TSA_NO_TSA               on the few functions whose locking the analysis
 *                            cannot follow (each says why).
 */
#ifndef UTIL_TSA_H
#define UTIL_TSA_H

#if defined(__clang__) && defined(CONFIG_TSA)
#define TSA(x) __attribute__((x))
#else
#define TSA(x)
#endif

#define TSA_CAPABILITY(x)           TSA(capability(x))
#define TSA_GUARDED_BY(x)           TSA(guarded_by(x))
#define TSA_PT_GUARDED_BY(x)        TSA(pt_guarded_by(x))
#define TSA_REQUIRES(...)           TSA(requires_capability(__VA_ARGS__))
#define TSA_REQUIRES_SHARED(...)    TSA(requires_shared_capability(__VA_ARGS__))
#define TSA_ACQUIRE(...)            TSA(acquire_capability(__VA_ARGS__))
#define TSA_ACQUIRE_SHARED(...)     TSA(acquire_shared_capability(__VA_ARGS__))
#define TSA_RELEASE(...)            TSA(release_capability(__VA_ARGS__))
#define TSA_RELEASE_SHARED(...)     TSA(release_shared_capability(__VA_ARGS__))
#define TSA_RELEASE_GENERIC(...)    TSA(release_generic_capability(__VA_ARGS__))
#define TSA_TRY_ACQUIRE(...)        TSA(try_acquire_capability(__VA_ARGS__))
#define TSA_EXCLUDES(...)           TSA(locks_excluded(__VA_ARGS__))
#define TSA_ASSERT(...)             TSA(assert_capability(__VA_ARGS__))
#define TSA_ASSERT_SHARED(...)      TSA(assert_shared_capability(__VA_ARGS__))
#define TSA_RETURN_CAPABILITY(x)    TSA(lock_returned(x))
#define TSA_NO_TSA                  TSA(no_thread_safety_analysis)

#endif /* UTIL_TSA_H */
