/*
 * ws_utf8.c -- incremental UTF-8 validation (RFC 3629) for WebSocket text.
 *
 * A small deterministic automaton.  Each byte is first mapped to one of
 * twelve classes; the pair (state, class) then gives the next state.  The
 * states encode exactly what the next byte may be, so the walk rejects at
 * the first byte after which no completion could be valid UTF-8:
 *
 *   - C0, C1 and F5..FF can never appear, and reject at once;
 *   - after E0 only A0..BF may follow (anything lower is an overlong form);
 *   - after ED only 80..9F may follow (A0..BF would encode D800..DFFF);
 *   - after F0 only 90..BF may follow (overlong);
 *   - after F4 only 80..8F may follow (above U+10FFFF);
 *   - a continuation byte without a lead, or a lead where a continuation
 *     was due, rejects at that byte.
 *
 * Runs of ASCII are skipped a machine word at a time while the automaton is
 * at a character boundary.
 */

#include <string.h>

#include "ws_core.h"

/* byte classes */
enum {
    C_ASCII = 0,  /* 00..7F                 */
    C_CONT1,      /* 80..8F                 */
    C_CONT2,      /* 90..9F                 */
    C_CONT3,      /* A0..BF                 */
    C_BAD,        /* C0, C1, F5..FF         */
    C_LEAD2,      /* C2..DF                 */
    C_E0,         /* E0                     */
    C_LEAD3,      /* E1..EC, EE, EF         */
    C_ED,         /* ED                     */
    C_F0,         /* F0                     */
    C_LEAD4,      /* F1..F3                 */
    C_F4,         /* F4                     */
    C_COUNT
};

/* states; ACCEPT and REJECT keep the values published in ws_core.h */
enum {
    S_ACCEPT = WS_UTF8_ACCEPT,  /* at a character boundary          */
    S_REJECT = WS_UTF8_REJECT,  /* invalid input seen (sticky)      */
    S_TAIL1,                    /* one more 80..BF                  */
    S_TAIL2,                    /* two more 80..BF                  */
    S_TAIL3,                    /* three more 80..BF                */
    S_E0,                       /* A0..BF, then one more            */
    S_ED,                       /* 80..9F, then one more            */
    S_F0,                       /* 90..BF, then two more            */
    S_F4,                       /* 80..8F, then two more            */
    S_COUNT
};

static const uint8_t byte_class[256] = {
    /* 00..7F */
#define R16(c) c, c, c, c, c, c, c, c, c, c, c, c, c, c, c, c
    R16(C_ASCII), R16(C_ASCII), R16(C_ASCII), R16(C_ASCII),
    R16(C_ASCII), R16(C_ASCII), R16(C_ASCII), R16(C_ASCII),
    /* 80..8F, 90..9F */
    R16(C_CONT1), R16(C_CONT2),
    /* A0..BF */
    R16(C_CONT3), R16(C_CONT3),
    /* C0, C1, C2..CF */
    C_BAD, C_BAD, C_LEAD2, C_LEAD2, C_LEAD2, C_LEAD2, C_LEAD2, C_LEAD2,
    C_LEAD2, C_LEAD2, C_LEAD2, C_LEAD2, C_LEAD2, C_LEAD2, C_LEAD2, C_LEAD2,
    /* D0..DF */
    R16(C_LEAD2),
    /* E0..EF */
    C_E0, C_LEAD3, C_LEAD3, C_LEAD3, C_LEAD3, C_LEAD3, C_LEAD3, C_LEAD3,
    C_LEAD3, C_LEAD3, C_LEAD3, C_LEAD3, C_LEAD3, C_ED, C_LEAD3, C_LEAD3,
    /* F0..FF */
    C_F0, C_LEAD4, C_LEAD4, C_LEAD4, C_F4, C_BAD, C_BAD, C_BAD,
    C_BAD, C_BAD, C_BAD, C_BAD, C_BAD, C_BAD, C_BAD, C_BAD
#undef R16
};

#define X S_REJECT
static const uint8_t next_state[S_COUNT][C_COUNT] = {
    /*            ASCII     CONT1    CONT2    CONT3    BAD LEAD2    E0    LEAD3    ED    F0    LEAD4    F4 */
    /* ACCEPT */ {S_ACCEPT, X,       X,       X,       X, S_TAIL1, S_E0, S_TAIL2, S_ED, S_F0, S_TAIL3, S_F4},
    /* REJECT */ {X,        X,       X,       X,       X, X,       X,    X,       X,    X,    X,       X},
    /* TAIL1  */ {X,        S_ACCEPT, S_ACCEPT, S_ACCEPT, X, X,    X,    X,       X,    X,    X,       X},
    /* TAIL2  */ {X,        S_TAIL1, S_TAIL1, S_TAIL1, X, X,       X,    X,       X,    X,    X,       X},
    /* TAIL3  */ {X,        S_TAIL2, S_TAIL2, S_TAIL2, X, X,       X,    X,       X,    X,    X,       X},
    /* E0     */ {X,        X,       X,       S_TAIL1, X, X,       X,    X,       X,    X,    X,       X},
    /* ED     */ {X,        S_TAIL1, S_TAIL1, X,       X, X,       X,    X,       X,    X,    X,       X},
    /* F0     */ {X,        X,       S_TAIL2, S_TAIL2, X, X,       X,    X,       X,    X,    X,       X},
    /* F4     */ {X,        S_TAIL2, X,       X,       X, X,       X,    X,       X,    X,    X,       X}
};
#undef X

/* For each lead byte, the range its second byte must be in; an empty
 * range (lo > hi) for bytes that cannot start a multi-byte sequence. */
#define E16 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, \
            0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF
#define Z16 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, \
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00
#define A16(v) v, v, v, v, v, v, v, v, v, v, v, v, v, v, v, v
static const uint8_t second_lo[256] = {
    E16, E16, E16, E16, E16, E16, E16, E16,   /* 00..7F */
    E16, E16, E16, E16,                       /* 80..BF */
    0xFF, 0xFF, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80,
    0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80,   /* C0..CF */
    A16(0x80),                                /* D0..DF */
    0xA0, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80,
    0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80,   /* E0..EF */
    0x90, 0x80, 0x80, 0x80, 0x80, 0xFF, 0xFF, 0xFF,
    0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF    /* F0..FF */
};
static const uint8_t second_hi[256] = {
    Z16, Z16, Z16, Z16, Z16, Z16, Z16, Z16,   /* 00..7F */
    Z16, Z16, Z16, Z16,                       /* 80..BF */
    0x00, 0x00, 0xBF, 0xBF, 0xBF, 0xBF, 0xBF, 0xBF,
    0xBF, 0xBF, 0xBF, 0xBF, 0xBF, 0xBF, 0xBF, 0xBF,   /* C0..CF */
    A16(0xBF),                                /* D0..DF */
    0xBF, 0xBF, 0xBF, 0xBF, 0xBF, 0xBF, 0xBF, 0xBF,
    0xBF, 0xBF, 0xBF, 0xBF, 0xBF, 0x9F, 0xBF, 0xBF,   /* E0..EF */
    0xBF, 0xBF, 0xBF, 0xBF, 0x8F, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00    /* F0..FF */
};
#undef E16
#undef Z16
#undef A16

#define HIGH_BITS 0x8080808080808080ull

uint32_t ws_utf8_validate(uint32_t *state, const uint8_t *s, size_t len,
                          size_t *bad_at)
{
    uint32_t st;
    size_t i = 0;

    if (state == NULL) {
        return WS_UTF8_REJECT;
    }
    st = *state;
    if (st >= S_COUNT || st == S_REJECT) {
        *state = S_REJECT;
        if (bad_at) {
            *bad_at = 0;
        }
        return S_REJECT;
    }
    if (s == NULL) {
        len = 0;
    }

    while (i < len) {
        if (st == S_ACCEPT && s[i] < 0x80) {
            /* skip ASCII two words at a time, then one word at a time */
            i++;
            while (len - i >= 16) {
                uint64_t a, b;
                memcpy(&a, s + i, 8);
                memcpy(&b, s + i + 8, 8);
                if ((a | b) & HIGH_BITS) {
                    break;
                }
                i += 16;
            }
            while (len - i >= 8) {
                uint64_t a;
                memcpy(&a, s + i, 8);
                if (a & HIGH_BITS) {
                    break;
                }
                i += 8;
            }
            while (i < len && s[i] < 0x80) {
                i++;
            }
            continue;
        }
        if (st == S_ACCEPT && len - i >= 4) {
            /* whole sequences with direct range checks; anything that
             * does not pass falls through to the automaton, which finds
             * the exact byte to reject */
            uint8_t b0 = s[i], b1 = s[i + 1];
            uint8_t lo = second_lo[b0], hi = second_hi[b0];

            if (b1 >= lo && b1 <= hi) {
                if (b0 < 0xE0) {
                    i += 2;
                    continue;
                }
                if ((s[i + 2] & 0xC0) == 0x80) {
                    if (b0 < 0xF0) {
                        i += 3;
                        continue;
                    }
                    if ((s[i + 3] & 0xC0) == 0x80) {
                        i += 4;
                        continue;
                    }
                }
            }
        }
        st = next_state[st][byte_class[s[i]]];
        if (st == S_REJECT) {
            if (bad_at) {
                *bad_at = i;
            }
            *state = S_REJECT;
            return S_REJECT;
        }
        i++;
    }
    *state = st;
    return st;
}

int ws_utf8_is_valid(const uint8_t *s, size_t len)
{
    uint32_t st = WS_UTF8_ACCEPT;

    return ws_utf8_validate(&st, s, len, NULL) == WS_UTF8_ACCEPT;
}
