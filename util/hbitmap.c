/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The hierarchical bitmap (see include/util/hbitmap.h).
 *
 * Invariants, for every level l above the bottom: bit i of level l is set
 * exactly when word i of level l + 1 is non-zero; the top level (level 0)
 * is one word; no bit at or past a level's size is ever set; count is the
 * number of set bits of the bottom level.  Level sizes are fixed by the
 * bottom's: each level above has one bit per word of the level below.
 */
#include "util/osdep.h"

#include "util/hbitmap.h"

#define BPL         ((uint64_t)(sizeof(unsigned long) * 8))
#define MAX_LEVELS  16      /* 64^16 bits: far more than any image */

struct HBitmap {
    uint64_t nbits;                 /* bits of the bottom level */
    uint64_t count;                 /* set bits of the bottom level */
    int nlevels;                    /* levels[0] is the one-word top */
    uint64_t level_bits[MAX_LEVELS];
    unsigned long *levels[MAX_LEVELS];
};

static uint64_t level_words(uint64_t bits)
{
    return MAX(DIV_ROUND_UP(bits, BPL), 1);
}

/* The bits of word @i that fall in [start, end); the word must overlap. */
static unsigned long range_mask(uint64_t i, uint64_t start, uint64_t end)
{
    uint64_t lo = MAX(start, i * BPL) - i * BPL;
    uint64_t hi = MIN(end, (i + 1) * BPL) - i * BPL;
    unsigned long mask = hi == BPL ? ~0UL : (1UL << hi) - 1;

    return mask & (~0UL << lo);
}

static void hb_layout(HBitmap *hb, uint64_t nbits)
{
    uint64_t bits[MAX_LEVELS];
    int n = 0;

    bits[n++] = nbits;
    while (bits[n - 1] > BPL) {
        assert(n < MAX_LEVELS);
        bits[n] = DIV_ROUND_UP(bits[n - 1], BPL);
        n++;
    }
    hb->nbits = nbits;
    hb->count = 0;
    hb->nlevels = n;
    for (int l = 0; l < n; l++) {
        hb->level_bits[l] = bits[n - 1 - l];
        hb->levels[l] = g_new0(unsigned long, level_words(hb->level_bits[l]));
    }
}

HBitmap *hbitmap_alloc(uint64_t nbits)
{
    HBitmap *hb = g_new0(HBitmap, 1);

    hb_layout(hb, nbits);
    return hb;
}

static void hb_free_levels(HBitmap *hb)
{
    for (int l = 0; l < hb->nlevels; l++) {
        g_free(hb->levels[l]);
        hb->levels[l] = NULL;
    }
}

void hbitmap_free(HBitmap *hb)
{
    if (hb) {
        hb_free_levels(hb);
        g_free(hb);
    }
}

uint64_t hbitmap_size(const HBitmap *hb)
{
    return hb->nbits;
}

uint64_t hbitmap_count(const HBitmap *hb)
{
    return hb->count;
}

/* Set [start, end) of @level (end > start) and the levels above. */
static void hb_set_level(HBitmap *hb, int level, uint64_t start, uint64_t end)
{
    unsigned long *w = hb->levels[level];
    uint64_t first = start / BPL, last = (end - 1) / BPL;
    bool bottom = level == hb->nlevels - 1;
    bool became_nonzero = false;

    for (uint64_t i = first; i <= last; i++) {
        unsigned long old = w[i];

        w[i] |= range_mask(i, start, end);
        if (bottom) {
            hb->count += __builtin_popcountl(w[i]) - __builtin_popcountl(old);
        }
        became_nonzero |= !old;
    }
    if (level > 0 && became_nonzero) {
        hb_set_level(hb, level - 1, first, last + 1);
    }
}

/* Clear [start, end) of @level (end > start) and fix the levels above. */
static void hb_reset_level(HBitmap *hb, int level, uint64_t start,
                           uint64_t end)
{
    unsigned long *w = hb->levels[level];
    uint64_t first = start / BPL, last = (end - 1) / BPL;
    bool bottom = level == hb->nlevels - 1;
    bool became_zero = false;

    for (uint64_t i = first; i <= last; i++) {
        unsigned long old = w[i];

        w[i] &= ~range_mask(i, start, end);
        if (bottom) {
            hb->count -= __builtin_popcountl(old) - __builtin_popcountl(w[i]);
        }
        became_zero |= old && !w[i];
    }
    if (level == 0 || !became_zero) {
        return;
    }
    /*
     * Every word strictly inside [first, last] is now zero; only the two
     * boundary words may still hold bits outside the range.
     */
    hb_reset_level(hb, level - 1, first, last + 1);
    if (w[first]) {
        hb_set_level(hb, level - 1, first, first + 1);
    }
    if (last != first && w[last]) {
        hb_set_level(hb, level - 1, last, last + 1);
    }
}

void hbitmap_set(HBitmap *hb, uint64_t start, uint64_t count)
{
    uint64_t end;

    if (start >= hb->nbits || count == 0) {
        return;
    }
    end = count > hb->nbits - start ? hb->nbits : start + count;
    hb_set_level(hb, hb->nlevels - 1, start, end);
}

void hbitmap_reset(HBitmap *hb, uint64_t start, uint64_t count)
{
    uint64_t end;

    if (start >= hb->nbits || count == 0) {
        return;
    }
    end = count > hb->nbits - start ? hb->nbits : start + count;
    hb_reset_level(hb, hb->nlevels - 1, start, end);
}

void hbitmap_reset_all(HBitmap *hb)
{
    for (int l = 0; l < hb->nlevels; l++) {
        memset(hb->levels[l], 0,
               level_words(hb->level_bits[l]) * sizeof(unsigned long));
    }
    hb->count = 0;
}

bool hbitmap_get(const HBitmap *hb, uint64_t item)
{
    const unsigned long *w = hb->levels[hb->nlevels - 1];

    if (item >= hb->nbits) {
        return false;
    }
    return w[item / BPL] & (1UL << (item % BPL));
}

/* First set bit >= @pos of @level, or -1. */
static int64_t hb_next_set_level(const HBitmap *hb, int level, uint64_t pos)
{
    const unsigned long *w = hb->levels[level];
    uint64_t nwords = DIV_ROUND_UP(hb->level_bits[level], BPL);
    uint64_t i = pos / BPL;
    unsigned long cur;

    if (pos >= hb->level_bits[level]) {
        return -1;
    }
    cur = w[i] & (~0UL << (pos % BPL));
    while (!cur) {
        int64_t next;

        if (level == 0) {
            if (++i >= nwords) {
                return -1;
            }
            cur = w[i];
            continue;
        }
        /* The level above knows which word is the next non-zero one. */
        next = hb_next_set_level(hb, level - 1, i + 1);
        if (next < 0) {
            return -1;
        }
        i = next;
        cur = w[i];
        assert(cur);
    }
    return i * BPL + __builtin_ctzl(cur);
}

int64_t hbitmap_next_set(const HBitmap *hb, uint64_t start, uint64_t end)
{
    int64_t r;

    end = MIN(end, hb->nbits);
    if (start >= end) {
        return -1;
    }
    r = hb_next_set_level(hb, hb->nlevels - 1, start);
    return r >= 0 && (uint64_t)r < end ? r : -1;
}

int64_t hbitmap_next_zero(const HBitmap *hb, uint64_t start, uint64_t end)
{
    const unsigned long *w = hb->levels[hb->nlevels - 1];
    uint64_t i;
    unsigned long cur;

    end = MIN(end, hb->nbits);
    if (start >= end) {
        return -1;
    }
    i = start / BPL;
    cur = ~w[i] & (~0UL << (start % BPL));
    while (!cur) {
        if (++i * BPL >= end) {
            return -1;
        }
        cur = ~w[i];
    }
    i = i * BPL + __builtin_ctzl(cur);
    return i < end ? (int64_t)i : -1;
}

bool hbitmap_next_run(const HBitmap *hb, uint64_t start, uint64_t end,
                      uint64_t max_count, uint64_t *run_start,
                      uint64_t *run_count)
{
    int64_t s, z;
    uint64_t limit;

    end = MIN(end, hb->nbits);
    if (max_count == 0) {
        return false;
    }
    s = hbitmap_next_set(hb, start, end);
    if (s < 0) {
        return false;
    }
    limit = max_count > end - s ? end : s + max_count;
    z = hbitmap_next_zero(hb, s, limit);
    *run_start = s;
    *run_count = (z < 0 ? limit : (uint64_t)z) - s;
    return true;
}

void hbitmap_truncate(HBitmap *hb, uint64_t nbits)
{
    HBitmap old = *hb;
    const unsigned long *ow = old.levels[old.nlevels - 1];
    uint64_t keep = MIN(nbits, old.nbits);
    uint64_t words = DIV_ROUND_UP(keep, BPL);

    hb_layout(hb, nbits);
    for (uint64_t i = 0; i < words; i++) {
        unsigned long v = ow[i] & range_mask(i, 0, keep);

        if (v) {
            hb->levels[hb->nlevels - 1][i] = v;
            hb->count += __builtin_popcountl(v);
            if (hb->nlevels > 1) {
                hb_set_level(hb, hb->nlevels - 2, i, i + 1);
            }
        }
    }
    hb_free_levels(&old);
}
