/*
 * fuzz_frame.c -- libFuzzer target for the frame parser and writer.
 *
 * Input: two bytes of configuration, then the byte stream.  The stream is
 * parsed whole, split at a point derived from the data, and fed in small
 * chunks of data-derived sizes; all runs must give the same events (data
 * compared per message).  Every complete message and control frame is
 * then written back with ws_frame_header/ws_mask and parsed again, which
 * must give the same events.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ws_core.h"

#define REQUIRE(c) do { if (!(c)) { abort(); } } while (0)

typedef struct {
    uint8_t *out;
    size_t len, cap;
    uint8_t *cur;
    size_t cur_len, cur_cap;
    int in_msg;
    unsigned cur_op, cur_rsv1, cur_frames;
    int ended;              /* 0, 1 close, 2 error */
    size_t before_end;      /* trace length before the ending entry */
} trace;

static void t_init(trace *t, size_t n)
{
    memset(t, 0, sizeof(*t));
    t->cap = 32 * (n + 4);
    t->out = malloc(t->cap);
    t->cur_cap = n + 1;
    t->cur = malloc(t->cur_cap);
    REQUIRE(t->out && t->cur);
}

static void t_free(trace *t)
{
    free(t->out);
    free(t->cur);
}

static void t_put(trace *t, const void *d, size_t n)
{
    REQUIRE(t->len + n <= t->cap);
    if (n) {
        memcpy(t->out + t->len, d, n);
        t->len += n;
    }
}

static void t_u32(trace *t, uint32_t v)
{
    uint8_t b[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8),
                    (uint8_t)v};
    t_put(t, b, 4);
}

static void t_event(trace *t, const ws_parser *p, const ws_event *ev,
                    const uint8_t *buf, size_t buflen)
{
    char kind;

    switch (ev->type) {
    case WS_EV_DATA:
        REQUIRE(ev->opcode == WS_OP_TEXT || ev->opcode == WS_OP_BINARY);
        REQUIRE(ev->len == 0 || (ev->data >= buf
                                 && ev->data + ev->len <= buf + buflen));
        if (!t->in_msg) {
            REQUIRE(ev->flags & WS_DATA_FIRST);
            t->in_msg = 1;
            t->cur_len = 0;
            t->cur_frames = 0;
            t->cur_op = ev->opcode;
            t->cur_rsv1 = (ev->flags & WS_DATA_RSV1) != 0;
        }
        else {
            REQUIRE(!(ev->flags & WS_DATA_FIRST));
            REQUIRE(ev->opcode == t->cur_op);
            REQUIRE(t->cur_rsv1 == ((ev->flags & WS_DATA_RSV1) != 0));
        }
        REQUIRE(t->cur_len + ev->len <= t->cur_cap);
        if (ev->len) {
            memcpy(t->cur + t->cur_len, ev->data, ev->len);
        }
        t->cur_len += ev->len;
        REQUIRE(ev->message_len == t->cur_len);
        if (ev->flags & WS_DATA_FRAME_FIN) {
            t->cur_frames++;
        }
        if (ev->flags & WS_DATA_LAST) {
            REQUIRE(ev->flags & WS_DATA_FRAME_FIN);
            REQUIRE(!ws_parser_in_message(p));
            if (t->cur_op == WS_OP_TEXT && !t->cur_rsv1
                && p->cfg.validate_utf8) {
                REQUIRE(ws_utf8_is_valid(t->cur, t->cur_len));
            }
            t_put(t, "M", 1);
            t_u32(t, t->cur_op);
            t_u32(t, t->cur_rsv1);
            t_u32(t, t->cur_frames);
            t_u32(t, (uint32_t)t->cur_len);
            t_put(t, t->cur, t->cur_len);
            t->in_msg = 0;
        }
        else {
            REQUIRE(ws_parser_in_message(p));
        }
        break;
    case WS_EV_PING:
    case WS_EV_PONG:
        REQUIRE(ev->len <= WS_MAX_CONTROL_PAYLOAD);
        kind = ev->type == WS_EV_PING ? 'P' : 'Q';
        t_put(t, &kind, 1);
        t_u32(t, (uint32_t)ev->len);
        t_put(t, ev->data, ev->len);
        break;
    case WS_EV_CLOSE:
        REQUIRE(ev->close_code == WS_CLOSE_NO_STATUS
                || ws_close_code_valid(ev->close_code));
        REQUIRE(ev->reason_len <= WS_MAX_CLOSE_REASON);
        REQUIRE(ws_utf8_is_valid(ev->reason, ev->reason_len));
        t->before_end = t->len;
        t_put(t, "C", 1);
        t_u32(t, ev->close_code);
        t_u32(t, (uint32_t)ev->reason_len);
        t_put(t, ev->reason, ev->reason_len);
        t->ended = 1;
        break;
    case WS_EV_ERROR:
        REQUIRE(ev->close_code == 1002 || ev->close_code == 1007
                || ev->close_code == 1009);
        REQUIRE(ev->reason != NULL && ev->reason_len > 0);
        t->before_end = t->len;
        t_put(t, "E", 1);
        t_u32(t, ev->close_code);
        t->ended = 2;
        break;
    default:
        abort();
    }
}

/* Feed buf (modified in place) in pieces; piece sizes come from sizes[]
 * cyclically (0 there means "the rest"). */
static void run(const ws_parser_config *cfg, uint8_t *buf, size_t n,
                const size_t *sizes, size_t nsizes, trace *t)
{
    ws_parser p;
    ws_event ev;
    ws_status st;
    size_t start = 0, si = 0, c;

    ws_parser_init(&p, cfg);
    while (start < n) {
        size_t piece = nsizes ? sizes[si++ % nsizes] : 0;
        size_t end = (piece == 0 || piece > n - start) ? n : start + piece;
        size_t off = start;

        while (off < end) {
            st = ws_parser_feed(&p, buf + off, end - off, &c, &ev);
            REQUIRE(c <= end - off);
            off += c;
            if (st == WS_NEED_MORE) {
                REQUIRE(off == end && ev.type == WS_EV_NONE);
                break;
            }
            if (st == WS_OK) {
                REQUIRE(ev.type != WS_EV_NONE && ev.type != WS_EV_ERROR);
                REQUIRE(c > 0 || ev.type == WS_EV_DATA);
                t_event(t, &p, &ev, buf, n);
                if (ev.type == WS_EV_CLOSE) {
                    REQUIRE(ws_parser_feed(&p, buf + off, n - off, &c, &ev)
                            == WS_ERR_STATE);
                    return;
                }
                continue;
            }
            REQUIRE(st == WS_ERR_PROTO && ev.type == WS_EV_ERROR);
            t_event(t, &p, &ev, buf, n);
            REQUIRE(ws_parser_feed(&p, buf + off, n - off, &c, &ev)
                    == WS_ERR_STATE);
            return;
        }
        start = end;
    }
}

static int same(const trace *a, const trace *b)
{
    return a->len == b->len && memcmp(a->out, b->out, a->len) == 0
           && a->ended == b->ended;
}

static uint32_t rd32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16)
           | ((uint32_t)p[2] << 8) | p[3];
}

/* Write the events of trace a back as frames into out; returns length. */
static size_t rewrite(const trace *a, const uint8_t key0[4], uint8_t *out)
{
    size_t i = 0, o = 0, end = a->ended ? a->before_end : a->len;
    uint8_t key[4];
    unsigned seq = 0;

    memcpy(key, key0, 4);
    while (i < end) {
        uint8_t kind = a->out[i++];
        key[seq & 3] = (uint8_t)(key[seq & 3] + 0x5D);
        seq++;
        if (kind == 'M') {
            unsigned op = rd32(a->out + i);
            unsigned rsv1 = rd32(a->out + i + 4);
            unsigned frames = rd32(a->out + i + 8);
            size_t len = rd32(a->out + i + 12), f, done = 0;
            const uint8_t *d = a->out + i + 16;

            i += 16 + len;
            for (f = 0; f < frames; f++) {
                size_t part = (f + 1 == frames) ? len - done
                              : (len - done) / 2;
                o += ws_frame_header(out + o, f + 1 == frames,
                                     (f == 0 && rsv1) ? 4 : 0,
                                     f == 0 ? (ws_opcode)op : WS_OP_CONT,
                                     part, key);
                memcpy(out + o, d + done, part);
                ws_mask(out + o, part, key, 0);
                o += part;
                done += part;
            }
        }
        else if (kind == 'P' || kind == 'Q') {
            size_t len = rd32(a->out + i);

            o += ws_frame_header(out + o, 1, 0,
                                 kind == 'P' ? WS_OP_PING : WS_OP_PONG, len,
                                 key);
            memcpy(out + o, a->out + i + 4, len);
            ws_mask(out + o, len, key, 0);
            o += len;
            i += 4 + len;
        }
        else {
            abort();
        }
    }
    if (a->ended == 1) {
        uint8_t pl[WS_MAX_CONTROL_PAYLOAD];
        unsigned code = rd32(a->out + i + 1);
        size_t rlen = rd32(a->out + i + 5), n;

        n = ws_close_build(pl, code == WS_CLOSE_NO_STATUS ? 0 : code,
                           (const char *)a->out + i + 9, rlen);
        REQUIRE(n == (code == WS_CLOSE_NO_STATUS ? 0 : 2 + rlen));
        o += ws_frame_header(out + o, 1, 0, WS_OP_CLOSE, n, key);
        memcpy(out + o, pl, n);
        ws_mask(out + o, n, key, 1);   /* any offset must round-trip */
        ws_mask(out + o, n, key, 1);
        ws_mask(out + o, n, key, 0);
        o += n;
    }
    return o;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ws_parser_config cfg;
    trace a, b, c;
    uint8_t *buf, *re;
    const uint8_t *s;
    size_t n, split, sizes[4], rn, rlen;
    static const uint8_t key0[4] = {0x37, 0xfa, 0x21, 0x3d};

    if (size < 2) {
        return 0;
    }
    memset(&cfg, 0, sizeof(cfg));
    cfg.require_mask = (data[0] & 1) == 0;
    cfg.validate_utf8 = (data[0] & 2) == 0;
    cfg.rsv_allowed = (data[0] >> 2) & 7;
    switch ((data[0] >> 5) & 3) {
    case 1:
        cfg.max_frame = data[1];
        break;
    case 2:
        cfg.max_message = (uint64_t)data[1] * 3;
        break;
    case 3:
        cfg.max_frame = 1u << 16;
        cfg.max_message = (uint64_t)data[1] << 8;
        break;
    default:
        break;
    }
    s = data + 2;
    n = size - 2;
    buf = malloc(n + 1);
    REQUIRE(buf);

    t_init(&a, n);
    t_init(&b, n);
    t_init(&c, n);

    /* whole */
    memcpy(buf, s, n);
    run(&cfg, buf, n, NULL, 0, &a);

    /* two parts at a data-derived point */
    split = n ? (size_t)(data[1] * 257u + n * 31u) % (n + 1) : 0;
    memcpy(buf, s, n);
    sizes[0] = split;
    sizes[1] = 0;
    if (split == 0) {
        run(&cfg, buf, n, NULL, 0, &b);
    }
    else {
        run(&cfg, buf, n, sizes, 2, &b);
    }
    REQUIRE(same(&a, &b));

    /* small pieces */
    memcpy(buf, s, n);
    sizes[0] = 1 + (data[0] & 3);
    sizes[1] = 1;
    sizes[2] = 2 + (data[1] & 7);
    sizes[3] = 1 + (data[1] >> 5);
    run(&cfg, buf, n, sizes, 4, &c);
    REQUIRE(same(&a, &c));

    /* write everything back and parse it again */
    rn = a.len + 16 * n + 256;   /* a frame header per 2 input bytes */
    re = malloc(rn);
    REQUIRE(re);
    rlen = rewrite(&a, key0, re);
    REQUIRE(rlen <= rn);
    {
        trace r;
        ws_parser_config rcfg = cfg;

        rcfg.require_mask = 1;
        rcfg.max_frame = 0;
        rcfg.max_message = 0;
        t_init(&r, rlen);
        run(&rcfg, re, rlen, NULL, 0, &r);
        REQUIRE(r.ended != 2);
        REQUIRE(r.ended == (a.ended == 1 ? 1 : 0));
        REQUIRE(r.len == a.len - (a.ended == 2 ? a.len - a.before_end : 0));
        REQUIRE(memcmp(r.out, a.out, r.len) == 0);
        t_free(&r);
    }
    free(re);

    t_free(&a);
    t_free(&b);
    t_free(&c);
    free(buf);
    return 0;
}
