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

enum {
    ST_HEADER = 0,
    ST_DATA,
    ST_CONTROL
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

void ws_mask(uint8_t *buf, size_t len, const uint8_t key[4], uint64_t offset)
{
    unsigned r = (unsigned)(offset & 3);
    size_t i = 0;
    uint8_t k[8];
    uint64_t kw;
    int j;

    if (buf == NULL || key == NULL || len == 0) {
        return;
    }
    if (len >= 32) {
        /* byte-wise up to an 8-byte boundary, then whole words */
        while (((uintptr_t)(buf + i) & 7u) != 0) {
            buf[i] ^= key[(r + i) & 3];
            i++;
        }
        r = (unsigned)((r + i) & 3);
        buf += i;
        len -= i;
        i = 0;
    }
    for (j = 0; j < 8; j++) {
        k[j] = key[(r + (unsigned)j) & 3];
    }
    memcpy(&kw, k, 8);
    while (len - i >= 32) {
        uint64_t w0, w1, w2, w3;
        memcpy(&w0, buf + i, 8);
        memcpy(&w1, buf + i + 8, 8);
        memcpy(&w2, buf + i + 16, 8);
        memcpy(&w3, buf + i + 24, 8);
        w0 ^= kw;
        w1 ^= kw;
        w2 ^= kw;
        w3 ^= kw;
        memcpy(buf + i, &w0, 8);
        memcpy(buf + i + 8, &w1, 8);
        memcpy(buf + i + 16, &w2, 8);
        memcpy(buf + i + 24, &w3, 8);
        i += 32;
    }
    while (len - i >= 8) {
        uint64_t w;
        memcpy(&w, buf + i, 8);
        w ^= kw;
        memcpy(buf + i, &w, 8);
        i += 8;
    }
    while (i < len) {
        buf[i] ^= k[i & 3];
        i++;
    }
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
static void data_event(ws_parser *p, ws_event *ev, uint8_t *d, size_t n)
{
    unsigned flags = 0;

    if (p->msg_first_pending) {
        flags |= WS_DATA_FIRST;
        p->msg_first_pending = 0;
    }
    if (p->msg_rsv1) {
        flags |= WS_DATA_RSV1;
    }
    if (p->frame_done == p->frame_len) {
        flags |= WS_DATA_FRAME_FIN;
        if (p->fin) {
            flags |= WS_DATA_LAST;
        }
    }
    ev->type = WS_EV_DATA;
    ev->opcode = p->msg_op;
    ev->flags = flags;
    ev->data = d;
    ev->len = n;
    ev->message_len = p->msg_len;
    if (flags & WS_DATA_FRAME_FIN) {
        p->state = ST_HEADER;
        if (flags & WS_DATA_LAST) {
            p->msg_op = WS_OP_CONT;
            p->msg_rsv1 = 0;
            p->msg_len = 0;
            p->utf8 = WS_UTF8_ACCEPT;
        }
    }
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

ws_status ws_parser_feed(ws_parser *p, uint8_t *buf, size_t len,
                         size_t *consumed, ws_event *ev)
{
    size_t pos = 0;

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
    if (p->dead) {
        return WS_ERR_STATE;
    }

    for (;;) {
        if (p->state == ST_HEADER) {
            const char *why = NULL;
            unsigned code;

            while (p->hdr_have < p->hdr_need) {
                if (pos == len) {
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
            uint8_t *d = buf + pos;

            if (n == 0) {
                *consumed = pos;
                return WS_NEED_MORE;
            }
            if ((uint64_t)n > left) {
                n = (size_t)left;
            }
            if (p->masked) {
                ws_mask(d, n, p->mask, p->frame_done);
            }
            if (check_text(p)) {
                uint32_t st = p->utf8;
                size_t bad = 0;

                if (ws_utf8_validate(&st, d, n, &bad) == WS_UTF8_REJECT) {
                    if (bad == 0) {
                        return fail(p, ev, WS_CLOSE_INVALID_DATA,
                                    "invalid UTF-8 in text message", pos,
                                    consumed);
                    }
                    /* deliver the valid part; the bad byte (masked again)
                     * is seen first on the next call */
                    if (p->masked) {
                        ws_mask(d + bad, n - bad, p->mask,
                                p->frame_done + bad);
                    }
                    n = bad;
                    st = p->utf8;
                    ws_utf8_validate(&st, d, n, NULL);
                }
                else if (n == left && p->fin && st != WS_UTF8_ACCEPT) {
                    return fail(p, ev, WS_CLOSE_INVALID_DATA,
                                "text message ends inside a UTF-8 sequence",
                                pos + n, consumed);
                }
                p->utf8 = st;
            }
            p->frame_done += n;
            p->msg_len += n;
            pos += n;
            data_event(p, ev, d, n);
            *consumed = pos;
            return WS_OK;
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
