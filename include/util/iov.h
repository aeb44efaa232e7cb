/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * IOVec: a scatter/gather list of buffers with its total size, the unit of
 * data of every block request (struct iovec array + count + size).
 *
 * An IOVec either owns a growable iovec array (iovec_init()/iovec_add(),
 * freed by iovec_destroy()) or wraps a single buffer without allocating
 * (iovec_init_buf(), for the hot path).  It never owns the data buffers.
 *
 * Not thread-safe: an IOVec belongs to one request.
 */
#ifndef UTIL_IOV_H
#define UTIL_IOV_H

#include <sys/uio.h>

#include "util/osdep.h"

typedef struct IOVec {
    struct iovec *iov;
    int niov;
    int nalloc;             /* -1: iov points at local_iov, not allocated */
    size_t size;            /* sum of iov[i].iov_len */
    struct iovec local_iov;
} IOVec;

/* Empty vector with room for @alloc_hint elements before it grows. */
void iovec_init(IOVec *v, int alloc_hint);
/* A vector of one buffer; no allocation; iovec_destroy() is a no-op. */
void iovec_init_buf(IOVec *v, void *buf, size_t len);
void iovec_add(IOVec *v, void *base, size_t len);
/* Append the part [offset, offset + len) of @src. */
void iovec_concat(IOVec *dst, const IOVec *src, size_t offset, size_t len);
void iovec_reset(IOVec *v);
void iovec_destroy(IOVec *v);

/* Copy between the vector's bytes [offset, offset + len) and a buffer. */
size_t iovec_to_buf(const IOVec *v, size_t offset, void *buf, size_t len);
size_t iovec_from_buf(IOVec *v, size_t offset, const void *buf, size_t len);
size_t iovec_memset(IOVec *v, size_t offset, int c, size_t len);
/* True if the bytes [offset, offset + len) are all zero. */
bool iovec_is_zero(const IOVec *v, size_t offset, size_t len);
/* True if every element's base and length are multiples of @align. */
bool iovec_is_aligned(const IOVec *v, size_t align);

/* Buffers aligned for O_DIRECT (g_free()-compatible is NOT guaranteed). */
void *blockd_memalign(size_t align, size_t size);
void blockd_vfree(void *ptr);

#endif /* UTIL_IOV_H */
