/*
 * ws_addrtab.c -- the table of per-address connection counts
 * (WebSocketMaxConnectionsPerAddress), without httpd: linear probing over
 * exact keys, slots chosen by SipHash-2-4 under the table's key, deletion
 * by moving later entries of a probe run back (no tombstones).  The caller
 * places it (shared memory) and serializes every call (a global mutex).
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "ws_core.h"

#define NEXT(t, i) (((i) + 1) & ((t)->nslots - 1))

size_t ws_addrtab_size(uint32_t nslots)
{
    return offsetof(ws_addr_table, slot) + sizeof(ws_addr_slot) * nslots;
}

int ws_addrtab_init(ws_addr_table *t, uint32_t nslots, uint32_t max,
                    const uint8_t hash_key[16])
{
    if (nslots < 2 || (nslots & (nslots - 1)) || max == 0 || max >= nslots) {
        return -1;              /* a power of two, and room for a free slot */
    }
    memset(t, 0, ws_addrtab_size(nslots));
    t->nslots = nslots;
    t->max = max;
    memcpy(t->hash_key, hash_key, 16);
    return 0;
}

static uint32_t home_of(const ws_addr_table *t, const uint8_t *key)
{
    return (uint32_t)(ws_siphash24(t->hash_key, key, WS_ADDR_KEY)
                      & (t->nslots - 1));
}

/* The slot holding key, or the free slot that ends its probe run (there
 * is one: used <= max < nslots). */
static uint32_t find(const ws_addr_table *t, const uint8_t *key, uint32_t i)
{
    while (t->slot[i].count && memcmp(t->slot[i].key, key, WS_ADDR_KEY)) {
        i = NEXT(t, i);
    }
    return i;
}

ws_addr_result ws_addrtab_take(ws_addr_table *t, const uint8_t *key,
                               uint32_t cap)
{
    uint32_t home = home_of(t, key), i = find(t, key, home);
    ws_addr_slot *s = &t->slot[i];

    if (s->count) {
        if (s->count >= cap) {
            return WS_ADDR_AT_CAP;
        }
        ++s->count;
        return WS_ADDR_TAKEN;
    }
    if (cap == 0) {
        return WS_ADDR_AT_CAP;
    }
    if (t->used >= t->max) {
        return WS_ADDR_FULL;
    }
    memcpy(s->key, key, WS_ADDR_KEY);
    s->home = home;
    s->count = 1;
    ++t->used;
    return WS_ADDR_TAKEN;
}

/* Is home k cyclically in (i, j]?  Then the entry at j stays reachable
 * when i is emptied. */
static int home_between(uint32_t i, uint32_t k, uint32_t j)
{
    return i <= j ? (i < k && k <= j) : (i < k || k <= j);
}

int ws_addrtab_give(ws_addr_table *t, const uint8_t *key)
{
    uint32_t i = find(t, key, home_of(t, key)), j;

    if (!t->slot[i].count) {
        return -1;
    }
    if (--t->slot[i].count) {
        return 0;
    }
    for (j = NEXT(t, i); t->slot[j].count; j = NEXT(t, j)) {
        if (!home_between(i, t->slot[j].home, j)) {
            t->slot[i] = t->slot[j];
            i = j;
        }
    }
    memset(&t->slot[i], 0, sizeof(t->slot[i]));
    --t->used;
    return 0;
}

uint32_t ws_addrtab_count(const ws_addr_table *t, const uint8_t *key)
{
    return t->slot[find(t, key, home_of(t, key))].count;
}
