/*
 * fuzz_utf8.c -- libFuzzer target for the UTF-8 validator: the result must
 * match a plain reference decoder, must not depend on how the input is
 * split, and the reported failure offset must be the earliest byte after
 * which the input cannot be valid.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ws_core.h"

#define REQUIRE(c) do { if (!(c)) { abort(); } } while (0)

/* Reference: length of the longest prefix that is valid or could still
 * become valid, i.e. the offset of the first bad byte; n if none.  *done
 * is 1 when the whole input is complete, valid UTF-8. */
static size_t ref_first_bad(const uint8_t *s, size_t n, int *done)
{
    size_t i = 0, j, need;
    uint8_t lo, hi, b;

    *done = 0;
    while (i < n) {
        b = s[i];
        if (b < 0x80) {
            i++;
            continue;
        }
        lo = 0x80;
        hi = 0xBF;
        if (b >= 0xC2 && b <= 0xDF) {
            need = 1;
        }
        else if (b >= 0xE0 && b <= 0xEF) {
            need = 2;
            if (b == 0xE0) {
                lo = 0xA0;
            }
            else if (b == 0xED) {
                hi = 0x9F;
            }
        }
        else if (b >= 0xF0 && b <= 0xF4) {
            need = 3;
            if (b == 0xF0) {
                lo = 0x90;
            }
            else if (b == 0xF4) {
                hi = 0x8F;
            }
        }
        else {
            return i;
        }
        for (j = 1; j <= need; j++) {
            if (i + j >= n) {
                return n;          /* incomplete, not invalid yet */
            }
            b = s[i + j];
            if (j == 1 ? (b < lo || b > hi) : (b < 0x80 || b > 0xBF)) {
                return i + j;
            }
        }
        i += need + 1;
    }
    *done = 1;
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint32_t st = WS_UTF8_ACCEPT, r, st2;
    size_t bad = (size_t)-1, rbad, k, i, b2;
    int complete;

    r = ws_utf8_validate(&st, data, size, &bad);
    REQUIRE(r == st);
    rbad = ref_first_bad(data, size, &complete);
    if (rbad < size) {
        REQUIRE(r == WS_UTF8_REJECT && bad == rbad);
    }
    else {
        REQUIRE(r != WS_UTF8_REJECT);
        REQUIRE((r == WS_UTF8_ACCEPT) == complete);
    }
    REQUIRE(ws_utf8_is_valid(data, size) == (r == WS_UTF8_ACCEPT));

    /* split at a data-derived point */
    k = size ? (size_t)data[0] * 131u % (size + 1) : 0;
    st2 = WS_UTF8_ACCEPT;
    b2 = (size_t)-1;
    if (ws_utf8_validate(&st2, data, k, &b2) == WS_UTF8_REJECT) {
        REQUIRE(b2 == bad);
    }
    else if (ws_utf8_validate(&st2, data + k, size - k, &b2)
             == WS_UTF8_REJECT) {
        REQUIRE(k + b2 == bad);
    }
    REQUIRE(st2 == st);

    /* one byte at a time */
    st2 = WS_UTF8_ACCEPT;
    for (i = 0; i < size; i++) {
        if (ws_utf8_validate(&st2, data + i, 1, &b2) == WS_UTF8_REJECT) {
            REQUIRE(i == bad && b2 == 0);
            break;
        }
    }
    REQUIRE(st2 == st);
    return 0;
}
