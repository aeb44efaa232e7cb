/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * IOVec: building vectors, copying byte ranges that cross element
 * boundaries, zero detection, and aligned buffers.
 *
 * Most tests use the same three-element vector over one 16-byte buffer,
 * split 4 + 8 + 4, so that every range operation has interior boundaries to
 * get wrong.
 */
#include "util/osdep.h"

#include "util/iov.h"

#define BUF_LEN 16

/* @v gets elements buf[0..4), buf[4..12), buf[12..16). */
static void init_split(IOVec *v, unsigned char *buf)
{
    iovec_init(v, 0);
    iovec_add(v, buf, 4);
    iovec_add(v, buf + 4, 8);
    iovec_add(v, buf + 12, 4);
}

static void fill_pattern(unsigned char *buf, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        buf[i] = (unsigned char)(i + 1);
    }
}

static void assert_elem(const IOVec *v, int i, const void *base, size_t len)
{
    g_assert(v->iov[i].iov_base == base);
    g_assert_cmpuint(v->iov[i].iov_len, ==, len);
}

static void test_init_buf_no_alloc(void)
{
    char buf[8];
    IOVec v;

    iovec_init_buf(&v, buf, sizeof(buf));
    g_assert(v.iov == &v.local_iov);
    g_assert_cmpint(v.nalloc, ==, -1);
    g_assert_cmpint(v.niov, ==, 1);
    g_assert_cmpuint(v.size, ==, sizeof(buf));
    assert_elem(&v, 0, buf, sizeof(buf));
    /* Nothing to free: ASan would report a bad free otherwise. */
    iovec_destroy(&v);
}

static void test_add_after_init_buf(void)
{
    char buf[8];
    IOVec v;

    iovec_init_buf(&v, buf, 4);
    iovec_add(&v, buf + 4, 4);
    g_assert(v.iov != &v.local_iov);
    g_assert_cmpint(v.nalloc, >=, 2);
    g_assert_cmpint(v.niov, ==, 2);
    g_assert_cmpuint(v.size, ==, 8);
    assert_elem(&v, 0, buf, 4);
    assert_elem(&v, 1, buf + 4, 4);
    iovec_destroy(&v);
}

static void test_add_grows(void)
{
    char buf[100];
    IOVec v;

    iovec_init(&v, 1);
    for (int i = 0; i < 100; i++) {
        iovec_add(&v, buf + i, 1);
    }
    g_assert_cmpint(v.niov, ==, 100);
    g_assert_cmpint(v.nalloc, >=, 100);
    g_assert_cmpuint(v.size, ==, 100);
    for (int i = 0; i < 100; i++) {
        assert_elem(&v, i, buf + i, 1);
    }
    iovec_destroy(&v);
}

static void test_reset_keeps_storage(void)
{
    unsigned char buf[BUF_LEN];
    struct iovec *array;
    IOVec v;

    init_split(&v, buf);
    array = v.iov;
    iovec_reset(&v);
    g_assert_cmpint(v.niov, ==, 0);
    g_assert_cmpuint(v.size, ==, 0);
    iovec_add(&v, buf, 2);
    g_assert(v.iov == array);
    g_assert_cmpuint(v.size, ==, 2);
    iovec_destroy(&v);
}

static void test_concat_partial(void)
{
    unsigned char buf[BUF_LEN];
    IOVec src, dst;

    init_split(&src, buf);
    iovec_init(&dst, 0);
    /* Bytes 2..14: the tail of the first element, all of the second, the
     * head of the third. */
    iovec_concat(&dst, &src, 2, 12);
    g_assert_cmpint(dst.niov, ==, 3);
    g_assert_cmpuint(dst.size, ==, 12);
    assert_elem(&dst, 0, buf + 2, 2);
    assert_elem(&dst, 1, buf + 4, 8);
    assert_elem(&dst, 2, buf + 12, 2);

    /* Inside one element: a single piece. */
    iovec_reset(&dst);
    iovec_concat(&dst, &src, 5, 3);
    g_assert_cmpint(dst.niov, ==, 1);
    assert_elem(&dst, 0, buf + 5, 3);

    /* Starting exactly on a boundary, ending on one. */
    iovec_reset(&dst);
    iovec_concat(&dst, &src, 4, 12);
    g_assert_cmpint(dst.niov, ==, 2);
    assert_elem(&dst, 0, buf + 4, 8);
    assert_elem(&dst, 1, buf + 12, 4);

    iovec_destroy(&dst);
    iovec_destroy(&src);
}

static void test_concat_empty_range(void)
{
    unsigned char buf[BUF_LEN];
    IOVec src, dst;

    init_split(&src, buf);
    iovec_init(&dst, 0);
    iovec_concat(&dst, &src, 16, 0);
    g_assert_cmpint(dst.niov, ==, 0);
    g_assert_cmpuint(dst.size, ==, 0);
    iovec_destroy(&dst);
    iovec_destroy(&src);
}

static void test_to_from_buf_offsets(void)
{
    unsigned char buf[BUF_LEN] = { 0 };
    unsigned char pattern[BUF_LEN];
    unsigned char out[BUF_LEN];
    IOVec v;

    fill_pattern(pattern, sizeof(pattern));
    init_split(&v, buf);

    /* Across both interior boundaries. */
    g_assert_cmpuint(iovec_from_buf(&v, 3, pattern, 11), ==, 11);
    for (int i = 0; i < BUF_LEN; i++) {
        g_assert_cmpuint(buf[i], ==, i >= 3 && i < 14 ? pattern[i - 3] : 0);
    }
    memset(out, 0xaa, sizeof(out));
    g_assert_cmpuint(iovec_to_buf(&v, 3, out, 11), ==, 11);
    g_assert_cmpmem(out, 11, pattern, 11);
    g_assert_cmpuint(out[11], ==, 0xaa);

    /* Clipped at the end of the vector: the count says how much. */
    g_assert_cmpuint(iovec_to_buf(&v, 10, out, 100), ==, 6);
    g_assert_cmpmem(out, 6, buf + 10, 6);
    g_assert_cmpuint(iovec_from_buf(&v, 12, pattern, 8), ==, 4);
    g_assert_cmpmem(buf + 12, 4, pattern, 4);

    /* At or past the end: nothing. */
    g_assert_cmpuint(iovec_to_buf(&v, 16, out, 1), ==, 0);
    g_assert_cmpuint(iovec_from_buf(&v, 17, pattern, 1), ==, 0);
    iovec_destroy(&v);
}

static void test_memset(void)
{
    unsigned char buf[BUF_LEN];
    IOVec v;

    fill_pattern(buf, sizeof(buf));
    init_split(&v, buf);
    g_assert_cmpuint(iovec_memset(&v, 2, 0x5a, 12), ==, 12);
    for (int i = 0; i < BUF_LEN; i++) {
        g_assert_cmpuint(buf[i], ==, i >= 2 && i < 14 ? 0x5a : i + 1);
    }
    /* Clipped at the end. */
    g_assert_cmpuint(iovec_memset(&v, 15, 0, 10), ==, 1);
    g_assert_cmpuint(buf[15], ==, 0);
    iovec_destroy(&v);
}

static void test_is_zero(void)
{
    unsigned char buf[BUF_LEN] = { 0 };
    IOVec v;

    init_split(&v, buf);
    g_assert_true(iovec_is_zero(&v, 0, BUF_LEN));
    g_assert_true(iovec_is_zero(&v, 16, 0));

    buf[9] = 1;     /* inside the second element */
    g_assert_false(iovec_is_zero(&v, 0, BUF_LEN));
    g_assert_false(iovec_is_zero(&v, 9, 1));
    g_assert_false(iovec_is_zero(&v, 2, 8));
    g_assert_true(iovec_is_zero(&v, 0, 9));
    g_assert_true(iovec_is_zero(&v, 10, 6));

    buf[9] = 0;
    buf[15] = 1;    /* the last byte: the comparison must reach it */
    g_assert_false(iovec_is_zero(&v, 12, 4));
    g_assert_true(iovec_is_zero(&v, 12, 3));
    iovec_destroy(&v);
}

static void test_is_aligned(void)
{
    unsigned char *buf = blockd_memalign(512, 2048);
    IOVec v;

    iovec_init(&v, 0);
    iovec_add(&v, buf, 512);
    iovec_add(&v, buf + 1024, 1024);
    g_assert_true(iovec_is_aligned(&v, 512));
    g_assert_false(iovec_is_aligned(&v, 1024));     /* length 512 */

    iovec_add(&v, buf + 513, 511);
    g_assert_false(iovec_is_aligned(&v, 512));
    g_assert_true(iovec_is_aligned(&v, 1));
    iovec_destroy(&v);
    blockd_vfree(buf);
}

static void test_memalign_aligned(void)
{
    static const size_t aligns[] = { 1, 2, 8, 64, 512, 4096, 65536 };

    for (size_t i = 0; i < G_N_ELEMENTS(aligns); i++) {
        unsigned char *p = blockd_memalign(aligns[i], 3 * aligns[i]);

        g_assert_nonnull(p);
        g_assert_cmpuint((uintptr_t)p % aligns[i], ==, 0);
        memset(p, 0xff, 3 * aligns[i]);
        blockd_vfree(p);
    }
    /* Size 0 still gives a pointer to free. */
    blockd_vfree(blockd_memalign(4096, 0));
    blockd_vfree(NULL);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/iov/init-buf-no-alloc", test_init_buf_no_alloc);
    g_test_add_func("/iov/add-after-init-buf", test_add_after_init_buf);
    g_test_add_func("/iov/add-grows", test_add_grows);
    g_test_add_func("/iov/reset-keeps-storage", test_reset_keeps_storage);
    g_test_add_func("/iov/concat-partial", test_concat_partial);
    g_test_add_func("/iov/concat-empty-range", test_concat_empty_range);
    g_test_add_func("/iov/to-from-buf-offsets", test_to_from_buf_offsets);
    g_test_add_func("/iov/memset", test_memset);
    g_test_add_func("/iov/is-zero", test_is_zero);
    g_test_add_func("/iov/is-aligned", test_is_aligned);
    g_test_add_func("/iov/memalign-aligned", test_memalign_aligned);
    return g_test_run();
}
