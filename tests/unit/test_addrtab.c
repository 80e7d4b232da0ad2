/*
 * test_addrtab.c -- the per-address count table: exact keys never share a
 * count, caps hold, a full table refuses new keys only, and deletion keeps
 * every key reachable.  Small tables make every probe run collide; the
 * operations are random and checked against a plain array after each one.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "ws_core.h"

#define NKEYS 24

static uint32_t rnd_state = 12345;

static uint32_t rnd(void)
{
    rnd_state = rnd_state * 1103515245u + 12345u;
    return rnd_state >> 8;
}

static void make_key(uint8_t *key, unsigned k)
{
    memset(key, 0, WS_ADDR_KEY);
    key[10] = key[11] = 0xff;       /* 127.0.x.y as IPv4-mapped */
    key[12] = 127;
    key[14] = (uint8_t)(k >> 8);
    key[15] = (uint8_t)k;
    key[16] = 128;
}

/* Every entry is reachable from its home without crossing a free slot,
 * at most once, and used counts the entries. */
static int consistent(const ws_addr_table *t)
{
    uint32_t i, j, used = 0;

    for (i = 0; i < t->nslots; ++i) {
        if (!t->slot[i].count) {
            continue;
        }
        ++used;
        for (j = t->slot[i].home; j != i; j = (j + 1) & (t->nslots - 1)) {
            if (!t->slot[j].count
                || !memcmp(t->slot[j].key, t->slot[i].key, WS_ADDR_KEY)) {
                return 0;
            }
        }
    }
    return used == t->used;
}

static void run(uint32_t nslots, uint32_t max, uint32_t cap, int rounds)
{
    ws_addr_table *t = malloc(ws_addrtab_size(nslots));
    uint32_t model[NKEYS] = {0}, live = 0, bad = 0;
    uint8_t hk[16], key[WS_ADDR_KEY];
    unsigned i, k;
    int r;

    for (i = 0; i < 16; ++i) {
        hk[i] = (uint8_t)rnd();
    }
    CHECK(ws_addrtab_init(t, nslots, max, hk) == 0);
    for (r = 0; r < rounds; ++r) {
        k = rnd() % NKEYS;
        make_key(key, k);
        if (rnd() % 2) {
            ws_addr_result res = ws_addrtab_take(t, key, cap);
            ws_addr_result want = model[k] >= cap ? WS_ADDR_AT_CAP
                                  : (model[k] == 0 && live >= max)
                                    ? WS_ADDR_FULL : WS_ADDR_TAKEN;
            bad += res != want;
            if (res == WS_ADDR_TAKEN) {
                live += model[k]++ == 0;
            }
        }
        else if (model[k]) {
            bad += ws_addrtab_give(t, key) != 0;
            live -= --model[k] == 0;
        }
        else {
            bad += ws_addrtab_give(t, key) != -1;
        }
        bad += !consistent(t) || t->used != live;
        for (i = 0; i < NKEYS; ++i) {
            make_key(key, i);
            bad += ws_addrtab_count(t, key) != model[i];
        }
    }
    CHECK_EQ(bad, 0);
    free(t);
}

void test_addrtab(void)
{
    uint8_t hk[16] = {0}, a[WS_ADDR_KEY], b[WS_ADDR_KEY];
    ws_addr_table *t = malloc(ws_addrtab_size(8));

    CHECK(ws_addrtab_init(t, 6, 3, hk) == -1);    /* not a power of two */
    CHECK(ws_addrtab_init(t, 8, 8, hk) == -1);    /* no free slot left */
    CHECK(ws_addrtab_init(t, 8, 0, hk) == -1);
    CHECK(ws_addrtab_init(t, 8, 2, hk) == 0);
    make_key(a, 1);
    make_key(b, 2);
    /* two addresses: two counts, each up to the cap */
    CHECK_EQ(ws_addrtab_take(t, a, 2), WS_ADDR_TAKEN);
    CHECK_EQ(ws_addrtab_take(t, a, 2), WS_ADDR_TAKEN);
    CHECK_EQ(ws_addrtab_take(t, a, 2), WS_ADDR_AT_CAP);
    CHECK_EQ(ws_addrtab_take(t, b, 2), WS_ADDR_TAKEN);
    CHECK_EQ(ws_addrtab_count(t, a), 2);
    CHECK_EQ(ws_addrtab_count(t, b), 1);
    /* the prefix length is part of the key */
    b[16] = 64;
    CHECK_EQ(ws_addrtab_count(t, b), 0);
    /* full (max 2 keys): a new key is refused, known keys still count */
    CHECK_EQ(ws_addrtab_take(t, b, 2), WS_ADDR_FULL);
    b[16] = 128;
    CHECK_EQ(ws_addrtab_take(t, b, 2), WS_ADDR_TAKEN);
    CHECK_EQ(ws_addrtab_give(t, a), 0);
    CHECK_EQ(ws_addrtab_give(t, a), 0);
    CHECK_EQ(ws_addrtab_give(t, a), -1);
    CHECK_EQ(t->used, 1);
    free(t);

    run(8, 7, 3, 20000);        /* nearly full: long runs, wrap-around */
    run(8, 4, 1, 20000);
    run(16, 12, 2, 20000);
    run(64, 20, 5, 20000);
}
