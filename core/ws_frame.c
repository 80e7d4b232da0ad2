/*
 * ws_frame.c -- RFC 6455 frame writer and server-side frame parser.
 *
 * The parser is a small state machine over three states: collecting a
 * header (at most 14 bytes, byte by byte), passing data payload through
 * (in place, a run at a time), and collecting a control payload into
 * p->ctl so that it is delivered whole.  Every check that can be made on
 * the header is made as soon as the bytes it depends on have arrived, so
 * the peer cannot make us read payload it was not allowed to send.
 *
 * That is feed_general().  Two shortcuts in front of it take the frames a
 * server mostly gets, when their whole header is in the input:
 * feed_small() a whole message of 1..125 bytes in one frame, without
 * touching the parser state at all; feed_frame() the start of any masked
 * data frame.  They accept only frames that feed_general() accepts and
 * leave the same state; anything else, errors included, is handed to
 * feed_general() untouched, so errors are reported in one place.  The
 * unit tests and fuzz_frame compare whole feeds (shortcuts) with split
 * feeds (byte-wise path).  Unmasking works a word at a time and notes on
 * the way whether text is all ASCII, so ASCII text needs no UTF-8 pass.
 *
 * Choices where RFC 6455 leaves room:
 *  - A length not encoded in the minimal number of bytes (5.2: "the minimal
 *    number of bytes MUST be used") is treated as a protocol error (1002),
 *    as wslay does; accepting it would let one byte stream have two
 *    meanings to different parsers.
 *  - cfg.max_frame only limits data frames; control frames are limited to
 *    125 bytes by the RFC already.
 *  - An empty data frame gives an empty WS_EV_DATA event, so every data
 *    frame ends with exactly one event carrying WS_DATA_FRAME_FIN.
 *  - When a text payload chunk holds an invalid UTF-8 byte at offset k > 0,
 *    the valid bytes before it are delivered first and the error follows
 *    on the next call (the bad byte is not consumed), so the data seen
 *    before an error does not depend on how the input was split.
 */

#include <string.h>

#include "ws_core.h"

/* ST_HEADER: at a frame start (hdr_have 0, not dead), so that one test
 * finds the fast path; ST_HEADER_PART: some header bytes in p->hdr. */
enum {
    ST_HEADER = 0,
    ST_DATA,
    ST_CONTROL,
    ST_HEADER_PART,
    ST_DEAD
};

/* ---- writer --------------------------------------------------------- */

size_t ws_frame_header(uint8_t *out, int fin, unsigned rsv, ws_opcode op,
                       uint64_t payload_len, const uint8_t *mask)
{
    size_t n = 2;
    int i;

    out[0] = (uint8_t)((fin ? 0x80 : 0x00) | ((rsv & 7u) << 4)
                       | ((unsigned)op & 0x0Fu));
    if (payload_len < 126) {
        out[1] = (uint8_t)payload_len;
    }
    else if (payload_len <= 0xFFFF) {
        out[1] = 126;
        out[2] = (uint8_t)(payload_len >> 8);
        out[3] = (uint8_t)payload_len;
        n = 4;
    }
    else {
        /* the top bit must be clear; a caller cannot send 2^63 bytes */
        payload_len &= 0x7FFFFFFFFFFFFFFFull;
        out[1] = 127;
        for (i = 0; i < 8; i++) {
            out[2 + i] = (uint8_t)(payload_len >> (56 - 8 * i));
        }
        n = 10;
    }
    if (mask != NULL) {
        out[1] |= 0x80;
        memcpy(out + n, mask, 4);
        n += 4;
    }
    return n;
}

/*
 * Masking.  The key is handled as a 32-bit word holding the four key bytes
 * in memory order, rotated so that its first byte applies to the first
 * byte of the buffer; XOR with that word (doubled to 64 bits, or to 128
 * where the compiler has vector types) then masks whole words regardless
 * of alignment, which memcpy makes safe.
 */
static uint32_t key_rotate(uint32_t k, unsigned r)
{
    r = (r & 3u) * 8u;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    return (k >> r) | (k << ((32u - r) & 31u));
#elif defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    return (k << r) | (k >> ((32u - r) & 31u));
#else
    {
        uint8_t b[4], o[4];
        unsigned i;

        memcpy(b, &k, 4);
        for (i = 0; i < 4; i++) {
            o[i] = b[(i + r / 8u) & 3u];
        }
        memcpy(&k, o, 4);
        return k;
    }
#endif
}

/* The first two key bytes of k as a 16-bit word in memory order, and the
 * first key byte. */
static uint16_t key_pair(uint32_t k)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    return (uint16_t)k;
#elif defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    return (uint16_t)(k >> 16);
#else
    uint16_t h;

    memcpy(&h, &k, 2);
    return h;
#endif
}

static uint8_t key_first(uint32_t k)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    return (uint8_t)k;
#elif defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    return (uint8_t)(k >> 24);
#else
    uint8_t b[4];

    memcpy(b, &k, 4);
    return b[0];
#endif
}

/* GCC and clang: 16-byte vectors (SSE2 on x86-64, NEON on arm64, pairs
 * of words elsewhere) unless WS_NO_VEC, and control over inlining: the
 * fast paths stay small functions that need few registers. */
#if defined(__GNUC__) || defined(__clang__)
#define WS_INLINE inline __attribute__((always_inline))
#define WS_NOINLINE __attribute__((noinline))
#ifndef WS_NO_VEC
#define WS_HAVE_VEC 1
typedef uint64_t ws_vec __attribute__((vector_size(16)));
#endif
#else
#define WS_INLINE inline
#define WS_NOINLINE
#endif

#ifndef WS_HAVE_VEC
/* XOR 32 bytes at buf with the key word kw (in 64 bits); with want_or,
 * return the OR of the results (for the ASCII check), else 0. */
static WS_INLINE uint64_t mask32(uint8_t *buf, uint64_t kw, int want_or)
{
    uint64_t w[4];
    int i;

    memcpy(w, buf, sizeof(w));
    for (i = 0; i < 4; ++i) {
        w[i] ^= kw;
    }
    memcpy(buf, w, sizeof(w));
    return want_or ? (w[0] | w[1]) | (w[2] | w[3]) : 0;
}
#endif

/*
 * XOR len bytes at buf with k (a rotated key word, see above).  With
 * want_or (a constant at every call), also returns the OR of all the
 * resulting bytes spread over a 64-bit word, whose high bits (0x80 in each
 * byte) are clear when the result is ASCII; else returns 0.
 *
 * Blocks of 64 bytes (one at most when under128 says len < 128), then
 * one step each for 32, 16, 8, 4 and the last 1-3 bytes: every step keeps
 * the offset a multiple of 4, where the key starts over, and a short
 * payload costs a few tests, not a loop.
 */
static WS_INLINE uint64_t xor_key(uint8_t *buf, size_t len, uint32_t k,
                                  int want_or, int under128)
{
    uint64_t kw = (uint64_t)k | ((uint64_t)k << 32), acc = 0, w;
    uint8_t *end = buf + (len & ~(size_t)63);

#ifdef WS_HAVE_VEC
    if (len >= 16) {
        ws_vec kv = {kw, kw}, va = {0, 0}, v0, v1, v2, v3;

#define WS_XOR_VEC(off, v) \
        memcpy(&v, buf + (off), 16); \
        v ^= kv; \
        memcpy(buf + (off), &v, 16)

#define WS_XOR_64() \
        WS_XOR_VEC(0, v0); \
        WS_XOR_VEC(16, v1); \
        WS_XOR_VEC(32, v2); \
        WS_XOR_VEC(48, v3); \
        if (want_or) { \
            va |= (v0 | v1) | (v2 | v3); \
        } \
        buf += 64

        if (under128) {
            if (len & 64) {
                WS_XOR_64();
            }
        }
        else {
            while (buf < end) {
                WS_XOR_64();
            }
        }
#undef WS_XOR_64
        if (len & 32) {
            WS_XOR_VEC(0, v0);
            WS_XOR_VEC(16, v1);
            if (want_or) {
                va |= v0 | v1;
            }
            buf += 32;
        }
        if (len & 16) {
            WS_XOR_VEC(0, v0);
            if (want_or) {
                va |= v0;
            }
            buf += 16;
        }
#undef WS_XOR_VEC
        if (want_or) {
            acc = va[0] | va[1];
        }
    }
#else
    (void)under128;
    for (; buf < end; buf += 32) {
        acc |= mask32(buf, kw, want_or);   /* two halves per 64 bytes */
    }
    if (len & 32) {
        acc |= mask32(buf, kw, want_or);
        buf += 32;
    }
    if (len & 16) {
        uint64_t w1;

        memcpy(&w, buf, 8);
        memcpy(&w1, buf + 8, 8);
        w ^= kw;
        w1 ^= kw;
        memcpy(buf, &w, 8);
        memcpy(buf + 8, &w1, 8);
        if (want_or) {
            acc |= w | w1;
        }
        buf += 16;
    }
#endif
    if (len & 8) {
        memcpy(&w, buf, 8);
        w ^= kw;
        memcpy(buf, &w, 8);
        if (want_or) {
            acc |= w;
        }
        buf += 8;
    }
    if (len & 4) {
        uint32_t h;

        memcpy(&h, buf, 4);
        h ^= k;
        memcpy(buf, &h, 4);
        if (want_or) {
            acc |= h;
        }
        buf += 4;
    }
    if (len & 2) {
        uint16_t h;

        memcpy(&h, buf, 2);
        h ^= key_pair(k);
        memcpy(buf, &h, 2);
        if (want_or) {
            acc |= h;
        }
        buf += 2;
        k = key_rotate(k, 2);
    }
    if (len & 1) {
        buf[0] ^= key_first(k);
        if (want_or) {
            acc |= buf[0];
        }
    }
    return acc;
}

#define HIGH_BITS 0x8080808080808080ull

void ws_mask(uint8_t *buf, size_t len, const uint8_t key[4], uint64_t offset)
{
    uint32_t k;

    if (buf == NULL || key == NULL || len == 0) {
        return;
    }
    memcpy(&k, key, 4);
    (void)xor_key(buf, len, key_rotate(k, (unsigned)offset), 0, 0);
}

/* ---- parser --------------------------------------------------------- */

void ws_parser_init(ws_parser *p, const ws_parser_config *cfg)
{
    if (p == NULL) {
        return;
    }
    memset(p, 0, sizeof(*p));
    if (cfg != NULL) {
        p->cfg = *cfg;
    }
    else {
        /* safe server defaults */
        p->cfg.require_mask = 1;
        p->cfg.validate_utf8 = 1;
    }
    p->cfg.rsv_allowed &= 7u;
    p->state = ST_HEADER;
    p->hdr_need = 2;
    p->msg_op = WS_OP_CONT;
    p->utf8 = WS_UTF8_ACCEPT;
}

/* 1 from the header of a data message's first frame until the event that
 * carries WS_DATA_LAST (so also while a single FIN frame is streaming). */
int ws_parser_in_message(const ws_parser *p)
{
    return p != NULL && !p->dead && p->msg_op != WS_OP_CONT;
}

static int is_control(unsigned op)
{
    return (op & 0x8u) != 0;
}

static unsigned ext_len_bytes(const ws_parser *p)
{
    unsigned l7 = p->hdr[1] & 0x7Fu;

    return l7 == 126 ? 2 : (l7 == 127 ? 8 : 0);
}

static ws_status fail(ws_parser *p, ws_event *ev, unsigned code,
                      const char *why, size_t pos, size_t *consumed)
{
    p->dead = 1;
    p->state = ST_DEAD;
    ev->type = WS_EV_ERROR;
    ev->close_code = code;
    ev->reason = (const uint8_t *)why;
    ev->reason_len = strlen(why);
    *consumed = pos;
    return WS_ERR_PROTO;
}

/* Checks on the first two header bytes.  Returns NULL or the error text
 * (the close code is always 1002 here). */
static const char *check_first_bytes(ws_parser *p)
{
    uint8_t b0 = p->hdr[0], b1 = p->hdr[1];
    unsigned op = b0 & 0x0Fu;
    unsigned rsv = (b0 >> 4) & 7u;

    p->fin = (b0 & 0x80) != 0;
    p->rsv = rsv;
    p->op = (ws_opcode)op;
    p->masked = (b1 & 0x80) != 0;

    switch (op) {
    case WS_OP_CONT:
        if (p->msg_op == WS_OP_CONT) {
            return "continuation frame without a message";
        }
        if (rsv) {
            return "RSV bits set on a continuation frame";
        }
        break;
    case WS_OP_TEXT:
    case WS_OP_BINARY:
        if (p->msg_op != WS_OP_CONT) {
            return "new data frame inside a fragmented message";
        }
        if (rsv & ~p->cfg.rsv_allowed) {
            return "RSV bits set without a negotiated extension";
        }
        break;
    case WS_OP_CLOSE:
    case WS_OP_PING:
    case WS_OP_PONG:
        if (!p->fin) {
            return "fragmented control frame";
        }
        if ((b1 & 0x7Fu) > WS_MAX_CONTROL_PAYLOAD) {
            return "control frame longer than 125 bytes";
        }
        if (rsv) {
            return "RSV bits set on a control frame";
        }
        break;
    default:
        return "unknown opcode";
    }
    if (p->cfg.require_mask && !p->masked) {
        return "unmasked client frame";
    }
    return NULL;
}

/* Checks once the payload length is known.  Returns 0 or a close code and
 * sets *why. */
static unsigned check_length(ws_parser *p, const char **why)
{
    unsigned ext = ext_len_bytes(p);
    uint64_t len = 0, base;
    unsigned i;

    if (ext == 0) {
        len = p->hdr[1] & 0x7Fu;
    }
    else {
        for (i = 0; i < ext; i++) {
            len = (len << 8) | p->hdr[2 + i];
        }
        if (ext == 8 && (len >> 63) != 0) {
            *why = "64-bit length with the top bit set";
            return WS_CLOSE_PROTOCOL_ERROR;
        }
        if ((ext == 2 && len < 126) || (ext == 8 && len <= 0xFFFF)) {
            *why = "length not minimally encoded";
            return WS_CLOSE_PROTOCOL_ERROR;
        }
    }
    p->frame_len = len;
    if (is_control(p->op)) {
        return 0;
    }
    if (p->cfg.max_frame && len > p->cfg.max_frame) {
        *why = "frame exceeds the size limit";
        return WS_CLOSE_TOO_BIG;
    }
    base = p->op == WS_OP_CONT ? p->msg_len : 0;
    if (p->cfg.max_message
        && (base > p->cfg.max_message || len > p->cfg.max_message - base)) {
        *why = "message exceeds the size limit";
        return WS_CLOSE_TOO_BIG;
    }
    return 0;
}

static int check_text(const ws_parser *p)
{
    return p->msg_op == WS_OP_TEXT && p->cfg.validate_utf8 && !p->msg_rsv1;
}

/* Fill a data event for n bytes at d that were just accounted for. */
static WS_INLINE void data_event(ws_parser *p, ws_event *ev, uint8_t *d,
                              size_t n)
{
    unsigned flags = (p->msg_first_pending ? WS_DATA_FIRST : 0)
                     | (p->msg_rsv1 ? WS_DATA_RSV1 : 0);

    p->msg_first_pending = 0;
    ev->type = WS_EV_DATA;
    ev->opcode = p->msg_op;
    ev->data = d;
    ev->len = n;
    ev->message_len = p->msg_len;
    if (p->frame_done == p->frame_len) {
        flags |= WS_DATA_FRAME_FIN;
        p->state = ST_HEADER;
        if (p->fin) {
            flags |= WS_DATA_LAST;
            p->msg_op = WS_OP_CONT;
            p->msg_rsv1 = 0;
            p->msg_len = 0;
            p->utf8 = WS_UTF8_ACCEPT;
        }
    }
    ev->flags = flags;
}

/* n payload bytes at buf + pos (n > 0, at most what the frame has left)
 * are unmasked; seen is the OR of them (see xor_key), or HIGH_BITS when
 * not known.  Check them as text if needed and fill the event. */
static WS_INLINE ws_status data_chunk(ws_parser *p, ws_event *ev, uint8_t *buf,
                                   size_t pos, size_t n, uint64_t seen,
                                   size_t *consumed)
{
    uint8_t *d = buf + pos;

    /* all ASCII from a character boundary stays at one */
    if (check_text(p)
        && !(p->utf8 == WS_UTF8_ACCEPT && (seen & HIGH_BITS) == 0)) {
        uint32_t st = p->utf8;
        size_t bad = 0;

        if (ws_utf8_validate(&st, d, n, &bad) == WS_UTF8_REJECT) {
            if (bad == 0) {
                return fail(p, ev, WS_CLOSE_INVALID_DATA,
                            "invalid UTF-8 in text message", pos, consumed);
            }
            /* deliver the valid part; the bad byte (masked again) is seen
             * first on the next call */
            if (p->masked) {
                ws_mask(d + bad, n - bad, p->mask, p->frame_done + bad);
            }
            n = bad;
            st = p->utf8;
            ws_utf8_validate(&st, d, n, NULL);
        }
        else if (n == p->frame_len - p->frame_done && p->fin
                 && st != WS_UTF8_ACCEPT) {
            return fail(p, ev, WS_CLOSE_INVALID_DATA,
                        "text message ends inside a UTF-8 sequence",
                        pos + n, consumed);
        }
        p->utf8 = st;
    }
    p->frame_done += n;
    p->msg_len += n;
    data_event(p, ev, d, n);
    *consumed = pos + n;
    return WS_OK;
}

/* A whole control frame is in p->ctl: fill the event. */
static ws_status control_event(ws_parser *p, ws_event *ev, size_t pos,
                               size_t *consumed)
{
    size_t n = (size_t)p->frame_len;

    p->state = ST_HEADER;
    if (p->op == WS_OP_CLOSE) {
        unsigned code = 0, err = 0;
        const uint8_t *reason = NULL;
        size_t rlen = 0;

        if (ws_close_parse(p->ctl, n, &code, &reason, &rlen, &err) != WS_OK) {
            return fail(p, ev, err ? err : WS_CLOSE_PROTOCOL_ERROR,
                        err == WS_CLOSE_INVALID_DATA
                        ? "close reason is not valid UTF-8"
                        : "invalid close frame payload",
                        pos, consumed);
        }
        p->dead = 1;
        p->state = ST_DEAD;
        ev->type = WS_EV_CLOSE;
        ev->opcode = WS_OP_CLOSE;
        ev->close_code = code;
        ev->reason = reason;
        ev->reason_len = rlen;
        ev->data = p->ctl;
        ev->len = n;
    }
    else {
        ev->type = p->op == WS_OP_PING ? WS_EV_PING : WS_EV_PONG;
        ev->opcode = p->op;
        ev->data = p->ctl;
        ev->len = n;
    }
    *consumed = pos;
    return WS_OK;
}

/*
 * Everything but the common case below: headers split across calls or
 * with an error, control frames, unmasked and empty frames, payload that
 * follows in later calls.  The header is taken byte by byte, and every
 * check is made as soon as the bytes it depends on are in.
 */
static WS_NOINLINE ws_status feed_general(ws_parser *p, uint8_t *buf, size_t len,
                              size_t *consumed, ws_event *ev)
{
    size_t pos = 0;

    for (;;) {
        if (p->state == ST_HEADER || p->state == ST_HEADER_PART) {
            const char *why = NULL;
            unsigned code;

            while (p->hdr_have < p->hdr_need) {
                if (pos == len) {
                    p->state = p->hdr_have ? ST_HEADER_PART : ST_HEADER;
                    *consumed = pos;
                    return WS_NEED_MORE;
                }
                p->hdr[p->hdr_have++] = buf[pos++];
                if (p->hdr_have == 2) {
                    why = check_first_bytes(p);
                    if (why != NULL) {
                        return fail(p, ev, WS_CLOSE_PROTOCOL_ERROR, why, pos,
                                    consumed);
                    }
                    p->hdr_need = 2 + ext_len_bytes(p) + (p->masked ? 4 : 0);
                }
                if (p->hdr_have == 2 + ext_len_bytes(p)) {
                    code = check_length(p, &why);
                    if (code != 0) {
                        return fail(p, ev, code, why, pos, consumed);
                    }
                }
            }
            /* header complete */
            if (p->masked) {
                memcpy(p->mask, p->hdr + p->hdr_need - 4, 4);
            }
            p->hdr_have = 0;
            p->hdr_need = 2;
            p->state = ST_HEADER;
            p->frame_done = 0;
            if (is_control(p->op)) {
                if (p->frame_len == 0) {
                    return control_event(p, ev, pos, consumed);
                }
                p->state = ST_CONTROL;
                continue;
            }
            if (p->op != WS_OP_CONT) {
                p->msg_op = p->op;
                p->msg_rsv1 = (p->rsv & 4u) != 0;
                p->msg_first_pending = 1;
                p->msg_len = 0;
                p->utf8 = WS_UTF8_ACCEPT;
            }
            if (p->frame_len == 0) {
                if (p->fin && check_text(p) && p->utf8 != WS_UTF8_ACCEPT) {
                    return fail(p, ev, WS_CLOSE_INVALID_DATA,
                                "text message ends inside a UTF-8 sequence",
                                pos, consumed);
                }
                data_event(p, ev, buf + pos, 0);
                *consumed = pos;
                return WS_OK;
            }
            p->state = ST_DATA;
        }
        else if (p->state == ST_DATA) {
            uint64_t left = p->frame_len - p->frame_done;
            size_t n = len - pos;
            uint64_t seen = HIGH_BITS;

            if (n == 0) {
                *consumed = pos;
                return WS_NEED_MORE;
            }
            if ((uint64_t)n > left) {
                n = (size_t)left;
            }
            if (p->masked) {
                uint32_t k;

                memcpy(&k, p->mask, 4);
                k = key_rotate(k, (unsigned)p->frame_done);
                if (check_text(p)) {
                    seen = xor_key(buf + pos, n, k, 1, 0);
                }
                else {
                    (void)xor_key(buf + pos, n, k, 0, 0);
                }
            }
            return data_chunk(p, ev, buf, pos, n, seen, consumed);
        }
        else {
            uint64_t left = p->frame_len - p->frame_done;
            size_t n = len - pos;

            if (n == 0) {
                *consumed = pos;
                return WS_NEED_MORE;
            }
            if ((uint64_t)n > left) {
                n = (size_t)left;
            }
            memcpy(p->ctl + p->frame_done, buf + pos, n);
            if (p->masked) {
                ws_mask(p->ctl + p->frame_done, n, p->mask, p->frame_done);
            }
            p->frame_done += n;
            pos += n;
            if (p->frame_done == p->frame_len) {
                return control_event(p, ev, pos, consumed);
            }
        }
    }
}

/*
 * The whole header of a masked data frame and some of its payload are at
 * buf (the caller checked state and len >= 6); feed_small() did not take
 * it.  Anything this does not take goes, untouched, to feed_general(),
 * which also reports every error, so the checks here only have to accept
 * exactly the frames it would accept and reach the same state.
 */
static WS_NOINLINE ws_status feed_frame(ws_parser *p, uint8_t *buf,
                                        size_t len, size_t *consumed,
                                        ws_event *ev)
{
    unsigned b0 = buf[0], b1 = buf[1], op = b0 & 0x0Fu, l7, text;
    size_t hl, n;
    uint64_t flen, seen = 0;
    uint32_t k;

    if (!(b1 & 0x80u)) {
        return feed_general(p, buf, len, consumed, ev);
    }
    if (op == WS_OP_TEXT || op == WS_OP_BINARY) {
        if (p->msg_op != WS_OP_CONT
            || (((b0 >> 4) & 7u) & ~p->cfg.rsv_allowed)) {
            return feed_general(p, buf, len, consumed, ev);
        }
        text = op == WS_OP_TEXT && !(b0 & 0x40u);
    }
    else if (op != WS_OP_CONT || p->msg_op == WS_OP_CONT || (b0 & 0x70u)) {
        return feed_general(p, buf, len, consumed, ev);
    }
    else {
        text = p->msg_op == WS_OP_TEXT && !p->msg_rsv1;
    }
    l7 = b1 & 0x7Fu;
    if (l7 < 126) {
        hl = 6;
        flen = l7;
    }
    else if (l7 == 126) {
        hl = 8;
        flen = ((unsigned)buf[2] << 8) | buf[3];
        if (flen < 126) {
            return feed_general(p, buf, len, consumed, ev);
        }
    }
    else {
        unsigned i;

        hl = 14;
        if (len < hl) {
            return feed_general(p, buf, len, consumed, ev);
        }
        flen = 0;
        for (i = 2; i < 10; i++) {
            flen = (flen << 8) | buf[i];
        }
        if ((flen >> 63) != 0 || flen <= 0xFFFF) {
            return feed_general(p, buf, len, consumed, ev);
        }
    }
    if (len <= hl || flen == 0
        || (p->cfg.max_frame && flen > p->cfg.max_frame)) {
        return feed_general(p, buf, len, consumed, ev);
    }
    if (p->cfg.max_message) {
        uint64_t base = op == WS_OP_CONT ? p->msg_len : 0;

        if (base > p->cfg.max_message || flen > p->cfg.max_message - base) {
            return feed_general(p, buf, len, consumed, ev);
        }
    }

    /* accepted: unmask what is here, noting whether text is all ASCII */
    n = len - hl;
    if ((uint64_t)n > flen) {
        n = (size_t)flen;
    }
    memcpy(&k, buf + hl - 4, 4);
    if (text && p->cfg.validate_utf8) {
        seen = xor_key(buf + hl, n, k, 1, 0);
    }
    else {
        (void)xor_key(buf + hl, n, k, 0, 0);
    }

    if ((uint64_t)n == flen && (b0 & 0x80u) && op != WS_OP_CONT
        && (seen & HIGH_BITS) == 0) {
        /*
         * A whole message in one frame, binary or all ASCII or not to be
         * checked: the state after its event is the state before it (no
         * message in progress: msg_len, msg_rsv1, msg_first_pending are 0,
         * utf8 is ACCEPT, state is ST_HEADER), and the frame fields are
         * not read again before the next header sets them.
         */
        ev->type = WS_EV_DATA;
        ev->opcode = (ws_opcode)op;
        ev->flags = WS_DATA_FIRST | WS_DATA_LAST | WS_DATA_FRAME_FIN
                    | ((b0 & 0x40u) ? WS_DATA_RSV1 : 0);
        ev->data = buf + hl;
        ev->len = n;
        ev->message_len = n;
        *consumed = hl + n;
        return WS_OK;
    }

    /* the same state feed_general() would reach */
    p->fin = (b0 & 0x80u) != 0;
    p->rsv = (b0 >> 4) & 7u;
    p->op = (ws_opcode)op;
    p->masked = 1;
    p->frame_len = flen;
    p->frame_done = 0;
    p->state = ST_DATA;
    memcpy(p->mask, &k, 4);
    if (op != WS_OP_CONT) {
        p->msg_op = (ws_opcode)op;
        p->msg_rsv1 = (b0 & 0x40u) != 0;
        p->msg_first_pending = 1;
        p->msg_len = 0;
        p->utf8 = WS_UTF8_ACCEPT;
    }
    return data_chunk(p, ev, buf, hl, n, text ? seen : 0, consumed);
}

/* The event for a whole message of n bytes in one frame (see
 * feed_small()). */
static WS_INLINE ws_status small_event(uint8_t *buf, size_t n, unsigned b0,
                                       size_t *consumed, ws_event *ev)
{
    ev->type = WS_EV_DATA;
    ev->opcode = (ws_opcode)(b0 & 0x0Fu);
    ev->flags = WS_DATA_FIRST | WS_DATA_LAST | WS_DATA_FRAME_FIN
                | ((b0 & 0x40u) ? WS_DATA_RSV1 : 0);
    ev->data = buf + 6;
    ev->len = n;
    ev->message_len = n;
    *consumed = 6 + n;
    return WS_OK;
}

/* small_text() for a payload that is not all ASCII, already unmasked:
 * when it is not valid UTF-8, mask it again and let feed_general() find
 * out what is wrong. */
static WS_NOINLINE ws_status small_utf8(ws_parser *p, uint8_t *buf,
                                        size_t len, size_t *consumed,
                                        ws_event *ev)
{
    size_t n = buf[1] & 0x7Fu;

    if (!ws_utf8_is_valid(buf + 6, n)) {
        ws_mask(buf + 6, n, buf + 2, 0);
        return feed_general(p, buf, len, consumed, ev);
    }
    return small_event(buf, n, WS_OP_TEXT, consumed, ev);
}

/* feed_small() for a text frame to be checked. */
static WS_NOINLINE ws_status small_text(ws_parser *p, uint8_t *buf,
                                        size_t len, size_t *consumed,
                                        ws_event *ev)
{
    size_t n = buf[1] & 0x7Fu;
    uint32_t k;

    memcpy(&k, buf + 2, 4);
    if ((xor_key(buf + 6, n, k, 1, 1) & HIGH_BITS) != 0) {
        return small_utf8(p, buf, len, consumed, ev);
    }
    return small_event(buf, n, WS_OP_TEXT, consumed, ev);
}

/*
 * ws_parser_feed() with the arguments checked, at the start of a frame
 * with at least 6 bytes in buf.  Takes the most common frame of all: a
 * whole small message in one masked frame (FIN, text or binary, 1..125
 * bytes, 7-bit length), all of it in buf, outside a fragmented message;
 * anything else goes on to feed_frame().
 *
 * The state after such a frame's event is the state before it: no message
 * in progress (msg_len, msg_rsv1 and msg_first_pending 0, utf8 ACCEPT,
 * state ST_HEADER, hdr_have 0), and the frame fields are not read again
 * before the next header sets them.  So nothing in p is written.
 */
static WS_NOINLINE ws_status feed_small(ws_parser *p, uint8_t *buf,
                                        size_t len, size_t *consumed,
                                        ws_event *ev)
{
    unsigned b0 = buf[0];
    size_t n = (size_t)(buf[1] ^ 0x80u);   /* 7-bit length if masked */
    uint32_t k;

    /* The size limits are compared as limit - 1 < n - 1, which is false
     * for a limit of 0 (none), and right because n >= 1.  msg_len is 0
     * outside a message, so the message limit is checked like the frame
     * limit. */
    if ((b0 & 0x8Fu) - 0x81u > 1u || n - 1u >= 125u || len - 6 < n
        || p->msg_op != WS_OP_CONT
        || ((b0 & 0x70u) && (((b0 >> 4) & 7u) & ~p->cfg.rsv_allowed))
        || p->cfg.max_frame - 1u < (uint64_t)n - 1u
        || p->cfg.max_message - 1u < (uint64_t)n - 1u) {
        return feed_frame(p, buf, len, consumed, ev);
    }
    if ((b0 & 0x4Fu) == WS_OP_TEXT && p->cfg.validate_utf8) {
        return small_text(p, buf, len, consumed, ev);
    }
    /* nothing can fail now: the event first, so that less is live
     * across the unmasking */
    (void)small_event(buf, n, b0, consumed, ev);
    memcpy(&k, buf + 2, 4);
    (void)xor_key(buf + 6, n, k, 0, 1);
    return WS_OK;
}

ws_status ws_parser_feed(ws_parser *p, uint8_t *buf, size_t len,
                         size_t *consumed, ws_event *ev)
{
    if (consumed != NULL) {
        *consumed = 0;
    }
    if (ev != NULL) {
        memset(ev, 0, sizeof(*ev));
    }
    if (p == NULL || consumed == NULL || ev == NULL
        || (buf == NULL && len > 0)) {
        return WS_ERR_ARG;
    }
    if (p->state == ST_HEADER) {   /* so not dead */
        if (len >= 6) {
            return feed_small(p, buf, len, consumed, ev);
        }
    }
    else if (p->dead) {
        return WS_ERR_STATE;
    }
    if (len == 0) {
        /* no state waits for anything but input */
        return WS_NEED_MORE;
    }
    return feed_general(p, buf, len, consumed, ev);
}
