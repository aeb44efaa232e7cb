/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * A hierarchical bitmap: finding the next set bit and counting the set bits
 * stay cheap on a huge, sparse bitmap (2^31 bits for 1 TiB at 512 bytes).
 *
 * The bits live in the bottom level, an array of unsigned longs; each level
 * above has one bit per word of the level below, set exactly when that word
 * is non-zero, up to a top level of a single word.  A search skips a run of
 * empty words by asking the level above for its next set bit.
 *
 * Bits are plain indices here; block/io/dirty-bitmap.c maps bytes to bits by
 * its granularity.  Not thread-safe: the owner serialises every call (the
 * dirty bitmap under its node's dirty_bitmap_mutex).
 */
#ifndef UTIL_HBITMAP_H
#define UTIL_HBITMAP_H

#include "util/osdep.h"

typedef struct HBitmap HBitmap;

/* A bitmap of @nbits bits, all clear.  Never fails (g_new). */
HBitmap *hbitmap_alloc(uint64_t nbits);
void hbitmap_free(HBitmap *hb);

/* Number of bits (the size given to alloc or truncate). */
uint64_t hbitmap_size(const HBitmap *hb);
/* Number of set bits. */
uint64_t hbitmap_count(const HBitmap *hb);

/*
 * Set / clear bits [start, start + count), clamped to the size.  A range
 * that starts at or past the end does nothing.
 */
void hbitmap_set(HBitmap *hb, uint64_t start, uint64_t count);
void hbitmap_reset(HBitmap *hb, uint64_t start, uint64_t count);
void hbitmap_reset_all(HBitmap *hb);
/* Value of bit @item; false past the end. */
bool hbitmap_get(const HBitmap *hb, uint64_t item);

/*
 * First set (resp. clear) bit in [start, end), end clamped to the size;
 * -1 if there is none.
 */
int64_t hbitmap_next_set(const HBitmap *hb, uint64_t start, uint64_t end);
int64_t hbitmap_next_zero(const HBitmap *hb, uint64_t start, uint64_t end);

/*
 * The first run of set bits in [start, end) (end clamped to the size), cut
 * to at most @max_count bits: true with *run_start and *run_count set, false
 * if no bit is set in the range.
 */
bool hbitmap_next_run(const HBitmap *hb, uint64_t start, uint64_t end,
                      uint64_t max_count, uint64_t *run_start,
                      uint64_t *run_count);

/*
 * Change the size to @nbits: bits past a smaller size are dropped, bits
 * added by a larger one are clear.
 */
void hbitmap_truncate(HBitmap *hb, uint64_t nbits);

#endif /* UTIL_HBITMAP_H */
