/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The hierarchical bitmap: set, reset, get, count, next set / next zero
 * bit and runs, at word boundaries and on sizes that are not a multiple
 * of a word, on a sparse bitmap of 2^27 bits (1 TiB at 8 KiB), and
 * truncation both ways.  A random test checks every answer against a
 * plain bool array.
 */
#include "util/osdep.h"

#include "util/hbitmap.h"

static void test_empty(void)
{
    HBitmap *hb = hbitmap_alloc(1000);

    g_assert_cmpuint(hbitmap_size(hb), ==, 1000);
    g_assert_cmpuint(hbitmap_count(hb), ==, 0);
    g_assert_cmpint(hbitmap_next_set(hb, 0, UINT64_MAX), ==, -1);
    g_assert_cmpint(hbitmap_next_zero(hb, 0, UINT64_MAX), ==, 0);
    g_assert_cmpint(hbitmap_next_zero(hb, 999, 1000), ==, 999);
    g_assert_cmpint(hbitmap_next_zero(hb, 1000, 2000), ==, -1);
    g_assert_false(hbitmap_get(hb, 5000));
    hbitmap_free(hb);

    hb = hbitmap_alloc(0);
    hbitmap_set(hb, 0, 10);
    g_assert_cmpuint(hbitmap_count(hb), ==, 0);
    g_assert_cmpint(hbitmap_next_set(hb, 0, 10), ==, -1);
    hbitmap_free(hb);
}

static void test_word_boundaries(void)
{
    HBitmap *hb = hbitmap_alloc(200);

    hbitmap_set(hb, 63, 2);          /* across the first word boundary */
    g_assert_cmpuint(hbitmap_count(hb), ==, 2);
    g_assert_false(hbitmap_get(hb, 62));
    g_assert_true(hbitmap_get(hb, 63));
    g_assert_true(hbitmap_get(hb, 64));
    g_assert_false(hbitmap_get(hb, 65));
    g_assert_cmpint(hbitmap_next_set(hb, 0, 200), ==, 63);
    g_assert_cmpint(hbitmap_next_set(hb, 64, 200), ==, 64);
    g_assert_cmpint(hbitmap_next_set(hb, 65, 200), ==, -1);
    g_assert_cmpint(hbitmap_next_set(hb, 0, 63), ==, -1);
    g_assert_cmpint(hbitmap_next_zero(hb, 63, 200), ==, 65);
    g_assert_cmpint(hbitmap_next_zero(hb, 63, 65), ==, -1);

    hbitmap_set(hb, 0, 200);
    g_assert_cmpuint(hbitmap_count(hb), ==, 200);
    g_assert_cmpint(hbitmap_next_zero(hb, 0, UINT64_MAX), ==, -1);
    hbitmap_reset(hb, 64, 64);       /* exactly the second word */
    g_assert_cmpuint(hbitmap_count(hb), ==, 136);
    g_assert_cmpint(hbitmap_next_zero(hb, 0, 200), ==, 64);
    g_assert_cmpint(hbitmap_next_set(hb, 64, 200), ==, 128);
    hbitmap_reset(hb, 190, 1000);    /* clamped at the size */
    g_assert_cmpuint(hbitmap_count(hb), ==, 126);
    g_assert_cmpint(hbitmap_next_set(hb, 129, 200), ==, 129);
    g_assert_cmpint(hbitmap_next_zero(hb, 129, 200), ==, 190);
    hbitmap_reset_all(hb);
    g_assert_cmpuint(hbitmap_count(hb), ==, 0);
    g_assert_cmpint(hbitmap_next_set(hb, 0, 200), ==, -1);
    hbitmap_free(hb);
}

static void test_runs(void)
{
    HBitmap *hb = hbitmap_alloc(1000);
    uint64_t s, c;

    hbitmap_set(hb, 100, 300);
    g_assert_true(hbitmap_next_run(hb, 0, 1000, 1000, &s, &c));
    g_assert_cmpuint(s, ==, 100);
    g_assert_cmpuint(c, ==, 300);
    g_assert_true(hbitmap_next_run(hb, 0, 1000, 50, &s, &c));
    g_assert_cmpuint(s, ==, 100);
    g_assert_cmpuint(c, ==, 50);
    g_assert_true(hbitmap_next_run(hb, 150, 200, 1000, &s, &c));
    g_assert_cmpuint(s, ==, 150);
    g_assert_cmpuint(c, ==, 50);
    g_assert_false(hbitmap_next_run(hb, 400, 1000, 1000, &s, &c));
    hbitmap_set(hb, 999, 1);         /* the last bit of a partial word */
    g_assert_true(hbitmap_next_run(hb, 400, 5000, 1000, &s, &c));
    g_assert_cmpuint(s, ==, 999);
    g_assert_cmpuint(c, ==, 1);
    hbitmap_free(hb);
}

/* 2^27 bits (16 MiB of words): far bits are found through the upper levels. */
static void test_sparse_huge(void)
{
    uint64_t n = 1ULL << 27;
    HBitmap *hb = hbitmap_alloc(n);

    hbitmap_set(hb, n - 1, 1);
    hbitmap_set(hb, 12345678, 3);
    g_assert_cmpuint(hbitmap_count(hb), ==, 4);
    g_assert_cmpint(hbitmap_next_set(hb, 0, n), ==, 12345678);
    g_assert_cmpint(hbitmap_next_set(hb, 12345681, n), ==, (int64_t)(n - 1));
    hbitmap_reset(hb, 12345679, 1);
    g_assert_cmpint(hbitmap_next_set(hb, 12345679, n), ==, 12345680);
    hbitmap_reset(hb, 0, n);
    g_assert_cmpuint(hbitmap_count(hb), ==, 0);
    g_assert_cmpint(hbitmap_next_set(hb, 0, n), ==, -1);
    hbitmap_free(hb);
}

static void test_truncate(void)
{
    HBitmap *hb = hbitmap_alloc(300);

    hbitmap_set(hb, 10, 5);
    hbitmap_set(hb, 250, 50);
    hbitmap_truncate(hb, 260);
    g_assert_cmpuint(hbitmap_size(hb), ==, 260);
    g_assert_cmpuint(hbitmap_count(hb), ==, 15);
    g_assert_cmpint(hbitmap_next_set(hb, 16, UINT64_MAX), ==, 250);
    hbitmap_truncate(hb, 100000);
    g_assert_cmpuint(hbitmap_count(hb), ==, 15);
    g_assert_false(hbitmap_get(hb, 260));   /* dropped bits stay clear */
    g_assert_cmpint(hbitmap_next_set(hb, 260, UINT64_MAX), ==, -1);
    hbitmap_set(hb, 99999, 1);
    g_assert_cmpint(hbitmap_next_set(hb, 260, UINT64_MAX), ==, 99999);
    hbitmap_truncate(hb, 5);
    g_assert_cmpuint(hbitmap_count(hb), ==, 0);
    hbitmap_free(hb);
}

/* Random operations, every answer checked against a bool array. */
static void test_random_vs_model(void)
{
    const uint64_t n = 5000;
    g_autofree bool *model = g_new0(bool, n);
    HBitmap *hb = hbitmap_alloc(n);
    GRand *r = g_rand_new_with_seed(42);

    for (int op = 0; op < 20000; op++) {
        uint64_t a = g_rand_int_range(r, 0, n);
        uint64_t len = g_rand_int_range(r, 1, op % 10 ? 100 : 2000);
        uint64_t b = MIN(a + len, n), cnt = 0;
        int64_t want;

        if (g_rand_boolean(r)) {
            hbitmap_set(hb, a, len);
            for (uint64_t i = a; i < b; i++) {
                model[i] = true;
            }
        } else {
            hbitmap_reset(hb, a, len);
            for (uint64_t i = a; i < b; i++) {
                model[i] = false;
            }
        }
        for (uint64_t i = 0; i < n; i++) {
            cnt += model[i];
        }
        g_assert_cmpuint(hbitmap_count(hb), ==, cnt);
        a = g_rand_int_range(r, 0, n);
        len = g_rand_int_range(r, 1, 3000);
        b = MIN(n, a + len);
        want = -1;
        for (uint64_t i = a; i < b && want < 0; i++) {
            want = model[i] ? (int64_t)i : -1;
        }
        g_assert_cmpint(hbitmap_next_set(hb, a, b), ==, want);
        want = -1;
        for (uint64_t i = a; i < b && want < 0; i++) {
            want = !model[i] ? (int64_t)i : -1;
        }
        g_assert_cmpint(hbitmap_next_zero(hb, a, b), ==, want);
        g_assert_cmpint(hbitmap_get(hb, a), ==, model[a]);
    }
    g_rand_free(r);
    hbitmap_free(hb);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/hbitmap/empty", test_empty);
    g_test_add_func("/hbitmap/word-boundaries", test_word_boundaries);
    g_test_add_func("/hbitmap/runs", test_runs);
    g_test_add_func("/hbitmap/sparse-huge", test_sparse_huge);
    g_test_add_func("/hbitmap/truncate", test_truncate);
    g_test_add_func("/hbitmap/random-vs-model", test_random_vs_model);
    return g_test_run();
}
