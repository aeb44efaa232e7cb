/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * IOVec: scatter/gather lists of buffers (see include/util/iov.h).
 *
 * Invariants: v->size is always the sum of v->iov[0..niov).iov_len, and
 * niov <= nalloc unless nalloc is -1, in which case v->iov points at
 * v->local_iov (one element, nothing allocated) until iovec_add() needs a
 * second element and moves the vector to an allocated array.  An IOVec never
 * owns the data buffers its elements point to.
 *
 * Every operation on a byte range goes through iovec_walk(), which turns
 * [offset, offset + len) into one call per piece of an element, so that the
 * element arithmetic lives in one place.  Zero-length pieces are never passed
 * on: an empty element may have a NULL base, and memcpy() and friends must
 * not see it.
 */
#include "util/osdep.h"

#include <limits.h>

#include "util/iov.h"
#include "util/log.h"

void iovec_init(IOVec *v, int alloc_hint)
{
    g_assert(alloc_hint >= 0);
    *v = (IOVec) {
        .iov = g_new(struct iovec, alloc_hint),
        .nalloc = alloc_hint,
    };
}

void iovec_init_buf(IOVec *v, void *buf, size_t len)
{
    *v = (IOVec) {
        .niov = 1,
        .nalloc = -1,
        .size = len,
        .local_iov = { .iov_base = buf, .iov_len = len },
    };
    v->iov = &v->local_iov;
}

/* Make room for one more element, leaving local_iov for an array if need be. */
static void iovec_grow(IOVec *v)
{
    if (v->nalloc == -1) {
        struct iovec *iov = g_new(struct iovec, 4);

        /* Read local_iov by name: the IOVec may have been copied. */
        if (v->niov) {
            iov[0] = v->local_iov;
        }
        v->iov = iov;
        v->nalloc = 4;
    } else if (v->niov == v->nalloc) {
        g_assert(v->nalloc < INT_MAX / 2);
        v->nalloc = 2 * v->nalloc + 1;
        v->iov = g_renew(struct iovec, v->iov, v->nalloc);
    }
}

void iovec_add(IOVec *v, void *base, size_t len)
{
    g_assert(len <= SIZE_MAX - v->size);
    iovec_grow(v);
    v->iov[v->niov++] = (struct iovec) { .iov_base = base, .iov_len = len };
    v->size += len;
}

void iovec_concat(IOVec *dst, const IOVec *src, size_t offset, size_t len)
{
    g_assert(dst != src);
    g_assert(offset <= src->size && len <= src->size - offset);

    for (int i = 0; i < src->niov && len > 0; i++) {
        size_t elem_len = src->iov[i].iov_len;
        size_t n;

        if (offset >= elem_len) {
            offset -= elem_len;
            continue;
        }
        n = MIN(elem_len - offset, len);
        iovec_add(dst, (char *)src->iov[i].iov_base + offset, n);
        offset = 0;
        len -= n;
    }
}

/* Forget the elements; keep the array (or local_iov) for reuse. */
void iovec_reset(IOVec *v)
{
    v->niov = 0;
    v->size = 0;
}

/* Free the array if allocated; the vector is then empty with no storage. */
void iovec_destroy(IOVec *v)
{
    if (v->nalloc != -1) {
        g_free(v->iov);
    }
    *v = (IOVec) { 0 };
}

/*
 * Called with each non-empty piece of a byte range in order: @base and @n
 * describe the piece, @done is how many bytes of the range came before it.
 * Returns false to stop the walk.
 */
typedef bool IOVecPieceFn(void *base, size_t n, size_t done, void *opaque);

/*
 * Call @fn on the pieces of the bytes [offset, offset + len) of @v, clipped
 * to the end of the vector.  Returns the number of bytes in the pieces that
 * @fn accepted (returned true for): len if the range lies inside the vector
 * and @fn never stopped the walk.
 */
static size_t iovec_walk(const IOVec *v, size_t offset, size_t len,
                         IOVecPieceFn *fn, void *opaque)
{
    size_t done = 0;

    for (int i = 0; i < v->niov && done < len; i++) {
        size_t elem_len = v->iov[i].iov_len;
        size_t n;

        if (offset >= elem_len) {
            offset -= elem_len;
            continue;
        }
        n = MIN(elem_len - offset, len - done);
        if (!fn((char *)v->iov[i].iov_base + offset, n, done, opaque)) {
            break;
        }
        offset = 0;
        done += n;
    }
    return done;
}

static bool iovec_piece_to_buf(void *base, size_t n, size_t done, void *buf)
{
    memcpy((char *)buf + done, base, n);
    return true;
}

/* Returns the number of bytes copied: less than @len at the vector's end. */
size_t iovec_to_buf(const IOVec *v, size_t offset, void *buf, size_t len)
{
    return iovec_walk(v, offset, len, iovec_piece_to_buf, buf);
}

static bool iovec_piece_from_buf(void *base, size_t n, size_t done, void *buf)
{
    memcpy(base, (const char *)buf + done, n);
    return true;
}

/* Returns the number of bytes copied: less than @len at the vector's end. */
size_t iovec_from_buf(IOVec *v, size_t offset, const void *buf, size_t len)
{
    return iovec_walk(v, offset, len, iovec_piece_from_buf, (void *)buf);
}

static bool iovec_piece_memset(void *base, size_t n, size_t done, void *c)
{
    memset(base, *(int *)c, n);
    return true;
}

/* Returns the number of bytes set: less than @len at the vector's end. */
size_t iovec_memset(IOVec *v, size_t offset, int c, size_t len)
{
    return iovec_walk(v, offset, len, iovec_piece_memset, &c);
}

/* Zero if the first byte is zero and every byte equals the one after it. */
static bool iovec_piece_is_zero(void *base, size_t n, size_t done,
                                void *opaque)
{
    const unsigned char *p = base;

    return p[0] == 0 && memcmp(p, p + 1, n - 1) == 0;
}

/* The range must lie inside the vector. */
bool iovec_is_zero(const IOVec *v, size_t offset, size_t len)
{
    g_assert(offset <= v->size && len <= v->size - offset);
    return iovec_walk(v, offset, len, iovec_piece_is_zero, NULL) == len;
}

bool iovec_is_aligned(const IOVec *v, size_t align)
{
    g_assert(align > 0);
    for (int i = 0; i < v->niov; i++) {
        if ((uintptr_t)v->iov[i].iov_base % align ||
            v->iov[i].iov_len % align) {
            return false;
        }
    }
    return true;
}

/*
 * Returns @size bytes aligned to @align (a power of two), to be freed with
 * blockd_vfree().  Never returns NULL: running out of memory aborts, as
 * g_malloc() does.
 */
void *blockd_memalign(size_t align, size_t size)
{
    void *ptr;
    int ret;

    g_assert(align > 0 && (align & (align - 1)) == 0);
    align = MAX(align, sizeof(void *));
    /* posix_memalign() may return NULL for size 0: ask for one byte. */
    ret = posix_memalign(&ptr, align, MAX(size, 1));
    if (ret) {
        error_report("blockd_memalign: cannot allocate %zu bytes aligned to "
                     "%zu: %s", size, align, g_strerror(ret));
        abort();
    }
    return ptr;
}

void blockd_vfree(void *ptr)
{
    free(ptr);
}
