/*
 * test_utf8.c -- incremental UTF-8 validation (Autobahn section 6 style).
 */
#include <stdint.h>
#include <string.h>

#include "harness.h"
#include "ws_core.h"

typedef struct {
    const char *name;
    const char *bytes;
    size_t len;
    long bad_at;    /* -1: valid; -2: valid prefix but incomplete */
} utf8_vec;

#define V(name, s, bad) { name, s, sizeof(s) - 1, bad }

static const utf8_vec vectors[] = {
    V("empty", "", -1),
    V("ascii", "Hello-\x7f\x01", -1),
    V("kosme", "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5", -1),
    V("U+0080", "\xc2\x80", -1),
    V("U+07FF", "\xdf\xbf", -1),
    V("U+0800", "\xe0\xa0\x80", -1),
    V("U+D7FF", "\xed\x9f\xbf", -1),
    V("U+E000", "\xee\x80\x80", -1),
    V("U+FFFD", "\xef\xbf\xbd", -1),
    V("U+FFFF (noncharacter is valid)", "\xef\xbf\xbf", -1),
    V("U+10000", "\xf0\x90\x80\x80", -1),
    V("U+10FFFF", "\xf4\x8f\xbf\xbf", -1),
    V("U+1D11E in text", "a\xf0\x9d\x84\x9e" "b", -1),
    /* incomplete at the end: not rejected yet, not accepted */
    V("lone 2-byte lead", "\xc2", -2),
    V("3-byte lead + 1", "ab\xe2\x82", -2),
    V("4-byte lead + 2", "\xf0\x9d\x84", -2),
    /* never valid bytes reject at once */
    V("C0", "\xc0\x80", 0),
    V("C1", "\xc1\xbf", 0),
    V("F5", "\xf5\x80\x80\x80", 0),
    V("F8", "\xf8\x88\x80\x80\x80", 0),
    V("FE", "\xfe", 0),
    V("FF", "a\xff", 1),
    /* lone continuation bytes */
    V("lone 80", "\x80", 0),
    V("lone BF after ASCII", "abc\xbf", 3),
    V("extra continuation", "\xc2\x80\x80", 2),
    /* overlongs reject at the second byte */
    V("overlong 3-byte /", "\xe0\x80\xaf", 1),
    V("overlong 3-byte max", "\xe0\x9f\xbf", 1),
    V("overlong 4-byte", "\xf0\x80\x80\xaf", 1),
    V("overlong 4-byte max", "\xf0\x8f\xbf\xbf", 1),
    /* surrogates */
    V("U+D800", "\xed\xa0\x80", 1),
    V("U+DBFF", "\xed\xaf\xbf", 1),
    V("U+DC00", "\xed\xb0\x80", 1),
    V("U+DFFF", "\xed\xbf\xbf", 1),
    V("surrogate pair", "\xed\xa0\x80\xed\xb0\x80", 1),
    /* above U+10FFFF */
    V("U+110000", "\xf4\x90\x80\x80", 1),
    V("F4 BF", "\xf4\xbf\xbf\xbf", 1),
    /* bad continuation */
    V("2-byte + ASCII", "\xc2\x41", 1),
    V("3-byte + ASCII", "\xe1\x80\x41", 2),
    V("4-byte + ASCII", "\xf1\x80\x80\x41", 3),
    V("lead after lead", "\xe1\xc2\x80", 1),
    V("Autobahn 6.3.1", "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5"
      "\xed\xa0\x80" "edited", 12),
};

static void check_vector(const utf8_vec *v)
{
    const uint8_t *s = (const uint8_t *)v->bytes;
    uint32_t st = WS_UTF8_ACCEPT, r;
    size_t bad = (size_t)-1, k, i;
    int ok = 1;

    r = ws_utf8_validate(&st, s, v->len, &bad);
    if (v->bad_at == -1) {
        if (r != WS_UTF8_ACCEPT || st != WS_UTF8_ACCEPT) {
            unit_fail(__FILE__, __LINE__, "%s: not accepted", v->name);
            return;
        }
        CHECK(ws_utf8_is_valid(s, v->len));
    }
    else if (v->bad_at == -2) {
        if (r == WS_UTF8_ACCEPT || r == WS_UTF8_REJECT || r != st) {
            unit_fail(__FILE__, __LINE__, "%s: state %u", v->name, r);
            return;
        }
        CHECK(!ws_utf8_is_valid(s, v->len));
    }
    else {
        if (r != WS_UTF8_REJECT || st != WS_UTF8_REJECT
            || bad != (size_t)v->bad_at) {
            unit_fail(__FILE__, __LINE__, "%s: r=%u bad_at=%zu want %ld",
                      v->name, r, bad, v->bad_at);
            return;
        }
        CHECK(!ws_utf8_is_valid(s, v->len));
    }
    unit_passed++;

    /* split at every byte: same result, failure at the same absolute byte */
    for (k = 0; k <= v->len; k++) {
        uint32_t st2 = WS_UTF8_ACCEPT;
        size_t bad2 = (size_t)-1, abs_bad = (size_t)-1;

        r = ws_utf8_validate(&st2, s, k, &bad2);
        if (r == WS_UTF8_REJECT) {
            abs_bad = bad2;
        }
        else {
            r = ws_utf8_validate(&st2, s + k, v->len - k, &bad2);
            if (r == WS_UTF8_REJECT) {
                abs_bad = k + bad2;
            }
        }
        if (r != st) {
            ok = 0;
        }
        if (v->bad_at >= 0 && abs_bad != (size_t)v->bad_at) {
            ok = 0;
        }
    }
    if (!ok) {
        unit_fail(__FILE__, __LINE__, "%s: two-part split differs", v->name);
    }
    else {
        unit_passed++;
    }

    /* one byte at a time */
    st = WS_UTF8_ACCEPT;
    r = WS_UTF8_ACCEPT;
    for (i = 0; i < v->len; i++) {
        r = ws_utf8_validate(&st, s + i, 1, &bad);
        if (r == WS_UTF8_REJECT) {
            break;
        }
    }
    if (v->bad_at >= 0) {
        CHECK(r == WS_UTF8_REJECT && i == (size_t)v->bad_at && bad == 0);
    }
    else if (v->bad_at == -1) {
        CHECK_EQ(r, WS_UTF8_ACCEPT);
    }
    else {
        CHECK(r != WS_UTF8_ACCEPT && r != WS_UTF8_REJECT);
    }
}

/* straightforward reference decoder: 1 if s is complete valid UTF-8 */
static int ref_valid(const uint8_t *s, size_t n)
{
    size_t i = 0, need, j;
    uint32_t cp, min;

    while (i < n) {
        uint8_t b = s[i];
        if (b < 0x80) {
            i++;
            continue;
        }
        if (b >= 0xC2 && b <= 0xDF) {
            need = 1;
            cp = b & 0x1F;
            min = 0x80;
        }
        else if (b >= 0xE0 && b <= 0xEF) {
            need = 2;
            cp = b & 0x0F;
            min = 0x800;
        }
        else if (b >= 0xF0 && b <= 0xF4) {
            need = 3;
            cp = b & 0x07;
            min = 0x10000;
        }
        else {
            return 0;
        }
        if (n - i - 1 < need) {
            return 0;
        }
        for (j = 1; j <= need; j++) {
            if ((s[i + j] & 0xC0) != 0x80) {
                return 0;
            }
            cp = (cp << 6) | (s[i + j] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
            return 0;
        }
        i += need + 1;
    }
    return 1;
}

/* Compare with the reference on s[0..n), then again with ASCII padding
 * after it so that the multi-byte fast path (which needs 4 bytes) is
 * taken; a rejection must be reported at the same offset both times. */
static unsigned long compare_padded(const uint8_t *s, size_t n)
{
    uint8_t p[8];
    uint32_t st1 = WS_UTF8_ACCEPT, st2 = WS_UTF8_ACCEPT;
    size_t b1 = 0, b2 = 0;
    unsigned long bad = 0;

    memcpy(p, s, n);
    memcpy(p + n, "xyz", 3);
    if (ws_utf8_is_valid(s, n) != ref_valid(s, n)) {
        bad++;
    }
    if (ws_utf8_is_valid(p, n + 3) != ref_valid(p, n + 3)) {
        bad++;
    }
    if (ws_utf8_validate(&st1, s, n, &b1) == WS_UTF8_REJECT
        && (ws_utf8_validate(&st2, p, n + 3, &b2) != WS_UTF8_REJECT
            || b1 != b2)) {
        bad++;
    }
    return bad;
}

static void test_exhaustive(void)
{
    uint8_t s[4];
    unsigned long mismatches = 0;
    unsigned a, b, c, d;

    for (a = 0; a < 256; a++) {
        s[0] = (uint8_t)a;
        mismatches += compare_padded(s, 1);
        for (b = 0; b < 256; b++) {
            s[1] = (uint8_t)b;
            mismatches += compare_padded(s, 2);
            if (a < 0xE0 || a > 0xF4) {
                continue;   /* 3-byte space: only leads that need it */
            }
            for (c = 0; c < 256; c++) {
                s[2] = (uint8_t)c;
                mismatches += compare_padded(s, 3);
            }
        }
    }
    /* 4-byte: every lead F0..F4 with every continuation triple */
    for (a = 0xF0; a <= 0xF4; a++) {
        s[0] = (uint8_t)a;
        for (b = 0x80; b <= 0xBF; b++) {
            s[1] = (uint8_t)b;
            for (c = 0x80; c <= 0xBF; c++) {
                s[2] = (uint8_t)c;
                for (d = 0x7F; d <= 0xC0; d++) {
                    s[3] = (uint8_t)d;
                    mismatches += compare_padded(s, 4);
                }
            }
        }
    }
    CHECK_EQ(mismatches, 0);
}

/* the word-at-a-time fast path must find a bad byte at every position */
static void test_fast_path(void)
{
    uint8_t buf[200];
    size_t pos, bad, off;
    uint32_t st;
    unsigned long wrong = 0;

    for (off = 0; off < 8; off++) {
        for (pos = 0; pos < 100; pos++) {
            memset(buf, 'a', sizeof(buf));
            buf[off + pos] = 0xFF;
            st = WS_UTF8_ACCEPT;
            bad = (size_t)-1;
            if (ws_utf8_validate(&st, buf + off, 120, &bad) != WS_UTF8_REJECT
                || bad != pos) {
                wrong++;
            }
            /* a valid 2-byte char there instead is accepted */
            buf[off + pos] = 0xC3;
            buf[off + pos + 1] = 0xA9;
            if (!ws_utf8_is_valid(buf + off, 120)) {
                wrong++;
            }
            /* a lead byte cut by the end of the buffer is incomplete */
            st = WS_UTF8_ACCEPT;
            if (ws_utf8_validate(&st, buf + off, pos + 1, NULL)
                == WS_UTF8_ACCEPT || st == WS_UTF8_REJECT) {
                wrong++;
            }
        }
    }
    CHECK_EQ(wrong, 0);
}

static void test_state_rules(void)
{
    uint32_t st = WS_UTF8_REJECT;
    size_t bad = 99;
    const uint8_t ok[] = "abc";

    /* a rejected state stays rejected */
    CHECK_EQ(ws_utf8_validate(&st, ok, 3, &bad), WS_UTF8_REJECT);
    CHECK_EQ(bad, 0);
    /* an empty buffer keeps the state */
    st = WS_UTF8_ACCEPT;
    CHECK_EQ(ws_utf8_validate(&st, (const uint8_t *)"\xe2", 1, NULL),
             st);
    {
        uint32_t mid = st;
        CHECK_EQ(ws_utf8_validate(&st, ok, 0, NULL), mid);
    }
    CHECK(ws_utf8_is_valid(ok, 0));
}

void test_utf8(void)
{
    size_t i;

    for (i = 0; i < sizeof(vectors) / sizeof(vectors[0]); i++) {
        check_vector(&vectors[i]);
    }
    test_exhaustive();
    test_fast_path();
    test_state_rules();
}
