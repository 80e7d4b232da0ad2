/*
 * test_frame.c -- frame writer, masking and the parser, with scripted feeds
 * split in every way (whole, one byte at a time, every two-part split,
 * pseudo-random multi-part splits).
 */
#include <stdint.h>
#include <string.h>

#include "harness.h"
#include "ws_core.h"

#define MAXS   (1u << 18)   /* stream and trace capacity */

/* ---- building streams ------------------------------------------------ */

typedef struct {
    uint8_t b[MAXS];
    size_t n;
    unsigned keyseq;
} sbuf;

static sbuf S;

static void s_reset(sbuf *s)
{
    s->n = 0;
    s->keyseq = 0;
}

static void s_raw(sbuf *s, const void *d, size_t n)
{
    if (s->n + n > sizeof(s->b)) {
        unit_fail(__FILE__, __LINE__, "test stream too long");
        return;
    }
    memcpy(s->b + s->n, d, n);
    s->n += n;
}

/* append a frame; masked with a key that changes per frame */
static void s_frame_m(sbuf *s, int fin, unsigned rsv, unsigned op,
                      const void *data, size_t len, int masked)
{
    uint8_t key[4];
    size_t h;

    if (s->n + WS_MAX_FRAME_HEADER + len > sizeof(s->b)) {
        unit_fail(__FILE__, __LINE__, "test stream too long");
        return;
    }

    key[0] = (uint8_t)(0x37 + s->keyseq * 11);
    key[1] = (uint8_t)(0xfa ^ s->keyseq);
    key[2] = (uint8_t)(0x21 + s->keyseq * 3);
    key[3] = (uint8_t)(0x3d ^ (s->keyseq * 7));
    s->keyseq++;
    h = ws_frame_header(s->b + s->n, fin, rsv, (ws_opcode)op, len,
                        masked ? key : NULL);
    s->n += h;
    if (len > 0) {
        memcpy(s->b + s->n, data, len);
        if (masked) {
            ws_mask(s->b + s->n, len, key, 0);
        }
        s->n += len;
    }
}

static void s_frame(sbuf *s, int fin, unsigned rsv, unsigned op,
                    const void *data, size_t len)
{
    s_frame_m(s, fin, rsv, op, data, len, 1);
}

/* ---- recording events ------------------------------------------------ */

typedef struct {
    uint8_t out[MAXS + 64];
    size_t len;
    uint8_t cur[MAXS];
    size_t cur_len;
    int in_msg;
    unsigned cur_op, cur_rsv1, cur_frames;
    unsigned long violations;
    int ended;          /* 0 running, 1 close, 2 error */
    size_t end_at;      /* stream offset just after the ending event */
    size_t events;
} trace;

static trace T_ref, T_run, T_exp;

static void t_reset(trace *t)
{
    t->len = 0;
    t->cur_len = 0;
    t->in_msg = 0;
    t->violations = 0;
    t->ended = 0;
    t->end_at = 0;
    t->events = 0;
}

static void t_put(trace *t, const void *d, size_t n)
{
    if (t->len + n > sizeof(t->out)) {
        t->violations++;
        return;
    }
    if (n == 0) {
        return;
    }
    memcpy(t->out + t->len, d, n);
    t->len += n;
}

static void t_put_u32(trace *t, uint32_t v)
{
    uint8_t b[4];

    b[0] = (uint8_t)(v >> 24);
    b[1] = (uint8_t)(v >> 16);
    b[2] = (uint8_t)(v >> 8);
    b[3] = (uint8_t)v;
    t_put(t, b, 4);
}

/* expected entries, also used by the recorder */
static void exp_msg(trace *t, unsigned op, unsigned rsv1, unsigned frames,
                    const void *d, size_t n)
{
    t_put(t, "M", 1);
    t_put_u32(t, op);
    t_put_u32(t, rsv1);
    t_put_u32(t, frames);
    t_put_u32(t, (uint32_t)n);
    t_put(t, d, n);
}

static void exp_ctl(trace *t, char kind, const void *d, size_t n)
{
    t_put(t, &kind, 1);
    t_put_u32(t, (uint32_t)n);
    t_put(t, d, n);
}

static void exp_close(trace *t, unsigned code, const void *r, size_t n)
{
    t_put(t, "C", 1);
    t_put_u32(t, code);
    t_put_u32(t, (uint32_t)n);
    t_put(t, r, n);
}

static void exp_error(trace *t, unsigned code)
{
    t_put(t, "E", 1);
    t_put_u32(t, code);
}

static void t_record(trace *t, const ws_parser *p, const ws_event *ev)
{
    size_t i;

    t->events++;
    switch (ev->type) {
    case WS_EV_DATA:
        if (!t->in_msg) {
            if (!(ev->flags & WS_DATA_FIRST)) {
                t->violations++;
            }
            t->in_msg = 1;
            t->cur_len = 0;
            t->cur_frames = 0;
            t->cur_op = ev->opcode;
            t->cur_rsv1 = (ev->flags & WS_DATA_RSV1) != 0;
            if (ev->opcode != WS_OP_TEXT && ev->opcode != WS_OP_BINARY) {
                t->violations++;
            }
        }
        else if ((ev->flags & WS_DATA_FIRST) || ev->opcode != t->cur_op
                 || t->cur_rsv1 != ((ev->flags & WS_DATA_RSV1) != 0)) {
            t->violations++;
        }
        if (t->cur_len + ev->len > sizeof(t->cur)
            || (ev->len > 0 && ev->data == NULL)) {
            t->violations++;
            return;
        }
        if (ev->len > 0) {
            memcpy(t->cur + t->cur_len, ev->data, ev->len);
        }
        t->cur_len += ev->len;
        if (ev->message_len != t->cur_len) {
            t->violations++;
        }
        if (ev->flags & WS_DATA_FRAME_FIN) {
            t->cur_frames++;
        }
        if (ev->flags & WS_DATA_LAST) {
            if (!(ev->flags & WS_DATA_FRAME_FIN) || ws_parser_in_message(p)) {
                t->violations++;
            }
            exp_msg(t, t->cur_op, t->cur_rsv1, t->cur_frames, t->cur,
                    t->cur_len);
            t->in_msg = 0;
        }
        else if (!ws_parser_in_message(p)) {
            t->violations++;
        }
        break;
    case WS_EV_PING:
    case WS_EV_PONG:
        if (ev->len > WS_MAX_CONTROL_PAYLOAD) {
            t->violations++;
            return;
        }
        exp_ctl(t, ev->type == WS_EV_PING ? 'P' : 'Q', ev->data, ev->len);
        break;
    case WS_EV_CLOSE:
        exp_close(t, ev->close_code, ev->reason, ev->reason_len);
        break;
    case WS_EV_ERROR:
        /* the reason is short static ASCII */
        if (ev->reason == NULL || ev->reason_len == 0
            || ev->reason_len > 80) {
            t->violations++;
        }
        else {
            for (i = 0; i < ev->reason_len; i++) {
                if (ev->reason[i] < 0x20 || ev->reason[i] > 0x7E) {
                    t->violations++;
                }
            }
        }
        exp_error(t, ev->close_code);
        break;
    default:
        t->violations++;
    }
}

/* ---- feeding --------------------------------------------------------- */

static uint8_t work[MAXS];
static size_t cuts[MAXS + 1];

/*
 * Feed s[0..n) cut at cuts[0..ncuts) (increasing, each <= n; n is added).
 */
static void run_cuts(const uint8_t *s, size_t n, const ws_parser_config *cfg,
                     const size_t *cut, size_t ncut, trace *t)
{
    ws_parser p;
    size_t start = 0, ci, off, c;
    ws_event ev;
    ws_status st;

    t_reset(t);
    memcpy(work, s, n);
    ws_parser_init(&p, cfg);
    for (ci = 0; ci <= ncut; ci++) {
        size_t end = ci < ncut ? cut[ci] : n;

        if (end < start || end > n) {
            t->violations++;
            return;
        }
        off = start;
        while (off < end) {
            c = (size_t)-1;
            st = ws_parser_feed(&p, work + off, end - off, &c, &ev);
            if (c > end - off) {
                t->violations++;
                return;
            }
            off += c;
            if (st == WS_NEED_MORE) {
                if (off != end || ev.type != WS_EV_NONE) {
                    t->violations++;
                }
                break;
            }
            if (st == WS_OK) {
                if (ev.type == WS_EV_NONE || ev.type == WS_EV_ERROR
                    || (c == 0 && ev.type != WS_EV_DATA)) {
                    t->violations++;
                    return;
                }
                t_record(t, &p, &ev);
                if (ev.type == WS_EV_CLOSE) {
                    t->ended = 1;
                    t->end_at = off;
                    if (ws_parser_feed(&p, work + off, n - off, &c, &ev)
                        != WS_ERR_STATE || c != 0) {
                        t->violations++;
                    }
                    return;
                }
                if (c == 0 && ev.len == 0) {
                    t->violations++;   /* no progress */
                    return;
                }
                continue;
            }
            if (st == WS_ERR_PROTO && ev.type == WS_EV_ERROR) {
                t_record(t, &p, &ev);
                t->ended = 2;
                t->end_at = off;
                if (ws_parser_feed(&p, work + off, n - off, &c, &ev)
                    != WS_ERR_STATE || c != 0) {
                    t->violations++;
                }
                return;
            }
            t->violations++;
            return;
        }
        start = end;
    }
}

static int t_same(const trace *a, const trace *b)
{
    return a->len == b->len && memcmp(a->out, b->out, a->len) == 0
           && a->violations == 0
           && b->violations == 0;
}

static const char *mode_name;

/*
 * Run the stream whole, then split in many ways; every run must give the
 * same trace as the whole run (and as *expected when given).  Returns the
 * number of bad runs.
 */
static unsigned long check_splits(const uint8_t *s, size_t n,
                                  const ws_parser_config *cfg,
                                  const trace *expected, int every_split,
                                  int line)
{
    unsigned long bad = 0;
    size_t k, i;
    uint32_t rng = 12345;

    run_cuts(s, n, cfg, NULL, 0, &T_ref);
    if (T_ref.violations) {
        unit_fail(__FILE__, line, "whole feed: %lu invariant violations",
                  T_ref.violations);
        return 1;
    }
    if (expected != NULL && !t_same(&T_ref, expected)) {
        unit_fail(__FILE__, line, "whole feed: events differ from expected"
                  " (%zu vs %zu trace bytes)", T_ref.len, expected->len);
        return 1;
    }
    /* one byte at a time */
    for (k = 0; k + 1 < n; k++) {
        cuts[k] = k + 1;
    }
    run_cuts(s, n, cfg, cuts, n ? n - 1 : 0, &T_run);
    if (!t_same(&T_run, &T_ref) || T_run.ended != T_ref.ended) {
        mode_name = "bytewise";
        bad++;
    }
    /* every two-part split */
    if (every_split) {
        for (k = 0; k <= n; k++) {
            cuts[0] = k;
            run_cuts(s, n, cfg, cuts, 1, &T_run);
            if (!t_same(&T_run, &T_ref) || T_run.ended != T_ref.ended) {
                mode_name = "two-part";
                bad++;
            }
        }
    }
    /* pseudo-random multi-part splits */
    for (i = 0; i < 50; i++) {
        size_t nc = 0, pos = 0;

        for (;;) {
            rng = rng * 1103515245u + 12345u;
            pos += 1 + (rng >> 16) % (i < 25 ? 7 : 300);
            if (pos >= n) {
                break;
            }
            cuts[nc++] = pos;
        }
        run_cuts(s, n, cfg, cuts, nc, &T_run);
        if (!t_same(&T_run, &T_ref) || T_run.ended != T_ref.ended) {
            mode_name = "random";
            bad++;
        }
    }
    if (bad) {
        unit_fail(__FILE__, line, "%lu split runs differ (last: %s)", bad,
                  mode_name);
    }
    else {
        unit_passed++;
    }
    return bad;
}

static ws_parser_config server_cfg(void)
{
    ws_parser_config c;

    memset(&c, 0, sizeof(c));
    c.require_mask = 1;
    c.validate_utf8 = 1;
    return c;
}

/* ---- writer and mask ------------------------------------------------- */

static void test_header_lengths(void)
{
    static const struct {
        uint64_t len;
        size_t hlen;
        uint8_t bytes[10];
    } cases[] = {
        {0, 2, {0x82, 0x00}},
        {125, 2, {0x82, 0x7D}},
        {126, 4, {0x82, 0x7E, 0x00, 0x7E}},
        {65535, 4, {0x82, 0x7E, 0xFF, 0xFF}},
        {65536, 10, {0x82, 0x7F, 0, 0, 0, 0, 0, 1, 0, 0}},
        {(uint64_t)1 << 32, 10, {0x82, 0x7F, 0, 0, 0, 1, 0, 0, 0, 0}},
        {0x7FFFFFFFFFFFFFFFull, 10,
         {0x82, 0x7F, 0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF}},
    };
    static const uint8_t key[4] = {1, 2, 3, 4};
    uint8_t out[WS_MAX_FRAME_HEADER + 2];
    uint8_t pay[4] = {0x10, 0x20, 0x30, 0x40};
    size_t i, n, c;
    ws_parser p;
    ws_parser_config cfg = server_cfg();
    ws_event ev;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        n = ws_frame_header(out, 1, 0, WS_OP_BINARY, cases[i].len, NULL);
        CHECK_MEM(out, n, cases[i].bytes, cases[i].hlen);
        n = ws_frame_header(out, 1, 0, WS_OP_BINARY, cases[i].len, key);
        CHECK_EQ(n, cases[i].hlen + 4);
        CHECK_EQ(out[1] & 0x80, 0x80);
        CHECK_EQ(out[1] & 0x7F, cases[i].bytes[1]);
        CHECK_MEM(out + 2, cases[i].hlen - 2, cases[i].bytes + 2,
                  cases[i].hlen - 2);
        CHECK_MEM(out + n - 4, 4, key, 4);

        /* the parser reads the length back (feed the header and up to 4
         * payload bytes) */
        ws_parser_init(&p, &cfg);
        CHECK_EQ(ws_parser_feed(&p, out, n, &c, &ev),
                 cases[i].len == 0 ? WS_OK : WS_NEED_MORE);
        CHECK_EQ(c, n);
        if (cases[i].len > 0) {
            size_t k = cases[i].len < 4 ? (size_t)cases[i].len : 4;
            uint8_t tmp[4];

            memcpy(tmp, pay, 4);
            ws_mask(tmp, k, key, 0);
            CHECK_EQ(ws_parser_feed(&p, tmp, k, &c, &ev), WS_OK);
            CHECK_EQ(ev.type, WS_EV_DATA);
            CHECK_MEM(ev.data, ev.len, pay, k);
            CHECK_EQ(ev.message_len, k);
            CHECK_EQ(!!(ev.flags & WS_DATA_LAST), cases[i].len == k);
        }
        else {
            CHECK_EQ(ev.type, WS_EV_DATA);
            CHECK_EQ(ev.flags, WS_DATA_FIRST | WS_DATA_LAST
                     | WS_DATA_FRAME_FIN);
        }
    }
    /* first byte: FIN, RSV and opcode bits */
    ws_frame_header(out, 0, 4, WS_OP_TEXT, 0, NULL);
    CHECK_EQ(out[0], 0x41);
    ws_frame_header(out, 1, 7, WS_OP_PING, 0, NULL);
    CHECK_EQ(out[0], 0xF9);
    ws_frame_header(out, 1, 0, WS_OP_CLOSE, 2, NULL);
    CHECK_EQ(out[0], 0x88);
}

static void test_mask(void)
{
    static const uint8_t key[4] = {0xA1, 0x5B, 0x0C, 0xE7};
    uint8_t orig[160], buf[176], ref[160], two[176];
    size_t align, len, i, k;
    uint64_t off;
    unsigned long wrong = 0;

    for (i = 0; i < sizeof(orig); i++) {
        orig[i] = (uint8_t)(i * 37 + 11);
    }
    for (align = 0; align < 8; align++) {
        for (off = 0; off < 9; off++) {
            for (len = 0; len <= 150; len++) {
                uint64_t o = off + ((uint64_t)1 << 40);   /* big offsets */

                for (i = 0; i < len; i++) {
                    ref[i] = orig[i] ^ key[(o + i) & 3];
                }
                memcpy(buf + align, orig, len);
                ws_mask(buf + align, len, key, o);
                if (len && memcmp(buf + align, ref, len) != 0) {
                    wrong++;
                }
                ws_mask(buf + align, len, key, o);
                if (len && memcmp(buf + align, orig, len) != 0) {
                    wrong++;
                }
                /* masking in two parts gives the same bytes */
                k = len / 3 + align;
                if (k > len) {
                    k = len;
                }
                memcpy(two + align, orig, len);
                ws_mask(two + align, k, key, o);
                ws_mask(two + align + k, len - k, key, o + k);
                if (len && memcmp(two + align, ref, len) != 0) {
                    wrong++;
                }
            }
        }
    }
    CHECK_EQ(wrong, 0);
}

/* Longer buffers: the 64-byte blocks and every tail step after them. */
static void test_mask_long(void)
{
    static const uint8_t key[4] = {0x3C, 0x99, 0x01, 0x7E};
    static uint8_t orig[1100], buf[1120], ref[1100];
    size_t align, len, i;
    uint64_t off;
    unsigned long wrong = 0;

    for (i = 0; i < sizeof(orig); i++) {
        orig[i] = (uint8_t)(i * 131 + 7);
    }
    for (align = 0; align < 16; align += 3) {
        for (off = 0; off < 4; off++) {
            for (len = 120; len <= sizeof(orig); len += (len < 300 ? 1 : 61)) {
                for (i = 0; i < len; i++) {
                    ref[i] = orig[i] ^ key[(off + i) & 3];
                }
                memcpy(buf + align, orig, len);
                ws_mask(buf + align, len, key, off);
                if (memcmp(buf + align, ref, len) != 0) {
                    wrong++;
                }
            }
        }
    }
    CHECK_EQ(wrong, 0);
}

/* ---- RFC 6455 section 5.7 -------------------------------------------- */

static void test_rfc_examples(void)
{
    static const uint8_t hello_unmasked[] = {
        0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f
    };
    static const uint8_t hello_masked[] = {
        0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58
    };
    static const uint8_t frag[] = {
        0x01, 0x03, 0x48, 0x65, 0x6c, 0x80, 0x02, 0x6c, 0x6f
    };
    static const uint8_t ping[] = {
        0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f
    };
    static const uint8_t pong_masked[] = {
        0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58
    };
    static const uint8_t key[4] = {0x37, 0xfa, 0x21, 0x3d};
    static const uint8_t h256[] = {0x82, 0x7E, 0x01, 0x00};
    static const uint8_t h64k[] = {
        0x82, 0x7F, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00
    };
    ws_parser_config client = server_cfg(), server = server_cfg();
    uint8_t out[32];
    size_t n;

    client.require_mask = 0;

    /* writer reproduces the examples */
    n = ws_frame_header(out, 1, 0, WS_OP_TEXT, 5, key);
    memcpy(out + n, "Hello", 5);
    ws_mask(out + n, 5, key, 0);
    CHECK_MEM(out, n + 5, hello_masked, sizeof(hello_masked));
    n = ws_frame_header(out, 1, 0, WS_OP_TEXT, 5, NULL);
    memcpy(out + n, "Hello", 5);
    CHECK_MEM(out, n + 5, hello_unmasked, sizeof(hello_unmasked));
    n = ws_frame_header(out, 1, 0, WS_OP_BINARY, 256, NULL);
    CHECK_MEM(out, n, h256, sizeof(h256));
    n = ws_frame_header(out, 1, 0, WS_OP_BINARY, 65536, NULL);
    CHECK_MEM(out, n, h64k, sizeof(h64k));

    /* parser */
    t_reset(&T_exp);
    exp_msg(&T_exp, WS_OP_TEXT, 0, 1, "Hello", 5);
    check_splits(hello_unmasked, sizeof(hello_unmasked), &client, &T_exp, 1,
                 __LINE__);
    check_splits(hello_masked, sizeof(hello_masked), &server, &T_exp, 1,
                 __LINE__);
    t_reset(&T_exp);
    exp_msg(&T_exp, WS_OP_TEXT, 0, 2, "Hello", 5);
    check_splits(frag, sizeof(frag), &client, &T_exp, 1, __LINE__);
    t_reset(&T_exp);
    exp_ctl(&T_exp, 'P', "Hello", 5);
    check_splits(ping, sizeof(ping), &client, &T_exp, 1, __LINE__);
    t_reset(&T_exp);
    exp_ctl(&T_exp, 'Q', "Hello", 5);
    check_splits(pong_masked, sizeof(pong_masked), &server, &T_exp, 1,
                 __LINE__);
    /* a server refuses the unmasked example */
    t_reset(&T_exp);
    exp_error(&T_exp, 1002);
    check_splits(hello_unmasked, sizeof(hello_unmasked), &server, &T_exp, 1,
                 __LINE__);
}

/* ---- the scripted stream --------------------------------------------- */

static void test_scripted(void)
{
    ws_parser_config cfg = server_cfg();
    uint8_t bin[300], ping125[125];
    static const char text[] = "Hello w\xc3\xb6rld \xe2\x82\xac\xf0\x9d\x84\x9e!";
    size_t i;
    const size_t tl = sizeof(text) - 1;

    cfg.rsv_allowed = 4;
    for (i = 0; i < sizeof(bin); i++) {
        bin[i] = (uint8_t)(i * 7);
    }
    memset(ping125, 'p', sizeof(ping125));

    s_reset(&S);
    t_reset(&T_exp);
    /* fragmented text, split inside multi-byte characters, with control
     * frames between the fragments */
    s_frame(&S, 0, 0, WS_OP_TEXT, text, 9);            /* "Hello w\xc3" */
    s_frame(&S, 1, 0, WS_OP_PING, "p1", 2);
    s_frame(&S, 0, 0, WS_OP_CONT, text + 9, 10);
    s_frame(&S, 1, 0, WS_OP_PONG, "", 0);
    s_frame(&S, 0, 0, WS_OP_CONT, "", 0);
    s_frame(&S, 1, 0, WS_OP_CONT, text + 19, tl - 19);
    exp_ctl(&T_exp, 'P', "p1", 2);
    exp_ctl(&T_exp, 'Q', "", 0);
    exp_msg(&T_exp, WS_OP_TEXT, 0, 4, text, tl);
    /* binary with a 16-bit length */
    s_frame(&S, 1, 0, WS_OP_BINARY, bin, sizeof(bin));
    exp_msg(&T_exp, WS_OP_BINARY, 0, 1, bin, sizeof(bin));
    /* empty text message */
    s_frame(&S, 1, 0, WS_OP_TEXT, "", 0);
    exp_msg(&T_exp, WS_OP_TEXT, 0, 1, "", 0);
    /* binary fragmented, empty first fragment */
    s_frame(&S, 0, 0, WS_OP_BINARY, "", 0);
    s_frame(&S, 0, 0, WS_OP_CONT, bin, 130);
    s_frame(&S, 1, 0, WS_OP_PING, ping125, 125);
    s_frame(&S, 1, 0, WS_OP_CONT, bin + 130, 20);
    exp_ctl(&T_exp, 'P', ping125, 125);
    exp_msg(&T_exp, WS_OP_BINARY, 0, 3, bin, 150);
    /* a "compressed" text message (RSV1 negotiated): not UTF-8 checked */
    s_frame(&S, 0, 4, WS_OP_TEXT, "\xff\xfe", 2);
    s_frame(&S, 1, 0, WS_OP_CONT, "\xc0", 1);
    exp_msg(&T_exp, WS_OP_TEXT, 1, 2, "\xff\xfe\xc0", 3);
    /* close with a reason */
    s_frame(&S, 1, 0, WS_OP_CLOSE, "\x03\xe8" "bye \xe2\x82\xac", 9);
    exp_close(&T_exp, 1000, "bye \xe2\x82\xac", 7);
    /* bytes after the close are never read */
    s_raw(&S, "\x00\x00\xff", 3);
    check_splits(S.b, S.n, &cfg, &T_exp, 1, __LINE__);
    CHECK_EQ(T_ref.end_at, S.n - 3);
}

static void test_scripted_large(void)
{
    static uint8_t big[70000];
    ws_parser_config cfg = server_cfg();
    size_t i;

    for (i = 0; i < sizeof(big); i++) {
        big[i] = (uint8_t)('a' + i % 26);
    }
    s_reset(&S);
    t_reset(&T_exp);
    s_frame(&S, 0, 0, WS_OP_TEXT, big, 1000);
    s_frame(&S, 1, 0, WS_OP_PING, "x", 1);
    s_frame(&S, 1, 0, WS_OP_CONT, big + 1000, sizeof(big) - 1000);
    s_frame(&S, 1, 0, WS_OP_BINARY, big, 65536);
    s_frame(&S, 1, 0, WS_OP_CLOSE, "", 0);
    exp_ctl(&T_exp, 'P', "x", 1);
    exp_msg(&T_exp, WS_OP_TEXT, 0, 2, big, sizeof(big));
    exp_msg(&T_exp, WS_OP_BINARY, 0, 1, big, 65536);
    exp_close(&T_exp, 1005, "", 0);
    check_splits(S.b, S.n, &cfg, &T_exp, 0, __LINE__);
}

/* ---- fast paths ------------------------------------------------------- */

/* Whole frames at the start of the input take shortcuts in the parser
 * (one small frame that is a whole message, a frame with all of its
 * header present); split feeds take the byte-wise path.  Both must give
 * the same events, including errors. */
static void test_fast_paths(void)
{
    static uint8_t data[1100];
    static const char mb[] = "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80";
    ws_parser_config cfg = server_cfg();
    size_t n, i;

    for (i = 0; i < sizeof(data); i++) {
        data[i] = (uint8_t)('A' + i % 50);
    }

    /* every 7-bit length, binary, ASCII text and text ending in
     * multi-byte characters; then some 16-bit lengths */
    s_reset(&S);
    t_reset(&T_exp);
    for (n = 1; n <= 125; n++) {
        uint8_t t[125];

        s_frame(&S, 1, 0, WS_OP_BINARY, data + n, n);
        exp_msg(&T_exp, WS_OP_BINARY, 0, 1, data + n, n);
        s_frame(&S, 1, 0, WS_OP_TEXT, data, n);
        exp_msg(&T_exp, WS_OP_TEXT, 0, 1, data, n);
        memcpy(t, data, n);
        if (n >= 9) {
            memcpy(t + n - 9, mb, 9);
        }
        s_frame(&S, 1, 0, WS_OP_TEXT, t, n);
        exp_msg(&T_exp, WS_OP_TEXT, 0, 1, t, n);
    }
    for (n = 126; n <= 1100; n += 97) {
        s_frame(&S, 1, 0, WS_OP_TEXT, data, n);
        exp_msg(&T_exp, WS_OP_TEXT, 0, 1, data, n);
        s_frame(&S, 1, 0, WS_OP_BINARY, data, n);
        exp_msg(&T_exp, WS_OP_BINARY, 0, 1, data, n);
    }
    /* small frames inside a fragmented message */
    s_frame(&S, 0, 0, WS_OP_TEXT, "ab", 2);
    s_frame(&S, 0, 0, WS_OP_CONT, mb, 1);
    s_frame(&S, 1, 0, WS_OP_CONT, mb + 1, 8);
    exp_msg(&T_exp, WS_OP_TEXT, 0, 3, "ab\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80",
            11);
    check_splits(S.b, S.n, &cfg, &T_exp, 0, __LINE__);

    /* RSV1 negotiated: not checked as UTF-8, flagged */
    cfg.rsv_allowed = 4;
    s_reset(&S);
    t_reset(&T_exp);
    s_frame(&S, 1, 4, WS_OP_TEXT, "\xff\x80zz", 4);
    exp_msg(&T_exp, WS_OP_TEXT, 1, 1, "\xff\x80zz", 4);
    s_frame(&S, 1, 4, WS_OP_BINARY, data, 100);
    exp_msg(&T_exp, WS_OP_BINARY, 1, 1, data, 100);
    s_frame(&S, 1, 4, WS_OP_TEXT, data, 300);
    exp_msg(&T_exp, WS_OP_TEXT, 1, 1, data, 300);
    check_splits(S.b, S.n, &cfg, &T_exp, 1, __LINE__);
    cfg.rsv_allowed = 0;

    /* UTF-8 checks off */
    cfg.validate_utf8 = 0;
    s_reset(&S);
    t_reset(&T_exp);
    s_frame(&S, 1, 0, WS_OP_TEXT, "\xc0\xaf", 2);
    exp_msg(&T_exp, WS_OP_TEXT, 0, 1, "\xc0\xaf", 2);
    check_splits(S.b, S.n, &cfg, &T_exp, 1, __LINE__);
    cfg.validate_utf8 = 1;

    /* unmasked frames when masks are not required */
    cfg.require_mask = 0;
    s_reset(&S);
    t_reset(&T_exp);
    s_frame_m(&S, 1, 0, WS_OP_TEXT, data, 40, 0);
    exp_msg(&T_exp, WS_OP_TEXT, 0, 1, data, 40);
    s_frame(&S, 1, 0, WS_OP_TEXT, data, 41);
    exp_msg(&T_exp, WS_OP_TEXT, 0, 1, data, 41);
    check_splits(S.b, S.n, &cfg, &T_exp, 1, __LINE__);
    cfg.require_mask = 1;

    /* bad UTF-8 in a whole small frame: at the start, in the middle (the
     * valid part first), at the very end, cut off inside a character */
    {
        static const struct {
            const char *s;
            size_t n;
        } bad[] = {
            {"\xff" "abc", 4},
            {"abcdefghijklmnopqrstuvwxyz0123456789\xc0\xaf", 38},
            {"abc\xed\xa0\x80", 6},
            {"abcdefgh\xe2\x82", 10},
            {"\xf0\x9f\x98", 3},
        };

        for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
            s_reset(&S);
            t_reset(&T_exp);
            s_frame(&S, 1, 0, WS_OP_BINARY, "ok", 2);
            exp_msg(&T_exp, WS_OP_BINARY, 0, 1, "ok", 2);
            s_frame(&S, 1, 0, WS_OP_TEXT, bad[i].s, bad[i].n);
            exp_error(&T_exp, WS_CLOSE_INVALID_DATA);
            s_frame(&S, 1, 0, WS_OP_TEXT, "never", 5);
            check_splits(S.b, S.n, &cfg, &T_exp, 1, __LINE__);
        }
    }

    /* size limits at the boundary, for small and 16-bit frames */
    for (i = 0; i < 4; i++) {
        size_t lim = i < 2 ? 10 : 300;

        cfg = server_cfg();
        if (i & 1) {
            cfg.max_message = lim;
        }
        else {
            cfg.max_frame = lim;
        }
        s_reset(&S);
        t_reset(&T_exp);
        s_frame(&S, 1, 0, WS_OP_BINARY, data, lim);
        exp_msg(&T_exp, WS_OP_BINARY, 0, 1, data, lim);
        s_frame(&S, 1, 0, WS_OP_TEXT, data, lim);
        exp_msg(&T_exp, WS_OP_TEXT, 0, 1, data, lim);
        s_frame(&S, 1, 0, WS_OP_TEXT, data, lim + 1);
        exp_error(&T_exp, WS_CLOSE_TOO_BIG);
        check_splits(S.b, S.n, &cfg, &T_exp, 1, __LINE__);
    }
}

/* ---- errors ---------------------------------------------------------- */

typedef struct {
    const char *name;
    unsigned code;
    ws_parser_config cfg;
} err_case;

/* Builds error case i into S and T_exp; returns 0 past the last case. */
static int build_error_case(int i, err_case *ec)
{
    uint8_t raw[32];
    unsigned op;

    s_reset(&S);
    t_reset(&T_exp);
    ec->cfg = server_cfg();
    ec->code = WS_CLOSE_PROTOCOL_ERROR;
    switch (i) {
    case 0:
        ec->name = "unmasked client frame";
        s_frame_m(&S, 1, 0, WS_OP_BINARY, "abc", 3, 0);
        break;
    case 1:
        ec->name = "RSV1 without extension";
        s_frame(&S, 1, 4, WS_OP_TEXT, "abc", 3);
        break;
    case 2:
        ec->name = "RSV2 with only RSV1 allowed";
        ec->cfg.rsv_allowed = 4;
        s_frame(&S, 1, 2, WS_OP_TEXT, "abc", 3);
        break;
    case 3:
        ec->name = "RSV1 on a continuation";
        ec->cfg.rsv_allowed = 4;
        s_frame(&S, 0, 4, WS_OP_TEXT, "ab", 2);
        s_frame(&S, 1, 4, WS_OP_CONT, "c", 1);
        break;
    case 4:
        ec->name = "RSV1 on a ping";
        ec->cfg.rsv_allowed = 4;
        s_frame(&S, 1, 4, WS_OP_PING, "", 0);
        break;
    case 5: case 6: case 7: case 8: case 9:
        op = (unsigned)(i - 5 + 3);   /* 3..7 */
        ec->name = "reserved data opcode";
        s_frame(&S, 1, 0, op, "abc", 3);
        break;
    case 10: case 11: case 12: case 13: case 14:
        op = (unsigned)(i - 10 + 0xB);  /* B..F */
        ec->name = "reserved control opcode";
        s_frame(&S, 1, 0, op, "", 0);
        break;
    case 15:
        ec->name = "fragmented ping";
        s_frame(&S, 0, 0, WS_OP_PING, "a", 1);
        break;
    case 16:
        ec->name = "ping of 126 bytes";
        {
            static uint8_t d[126];
            s_frame(&S, 1, 0, WS_OP_PING, d, sizeof(d));
        }
        break;
    case 17:
        ec->name = "close of 126 bytes";
        {
            static uint8_t d[126] = {0x03, 0xE8};
            s_frame(&S, 1, 0, WS_OP_CLOSE, d, sizeof(d));
        }
        break;
    case 18:
        ec->name = "continuation without message";
        s_frame(&S, 1, 0, WS_OP_CONT, "abc", 3);
        break;
    case 19:
        ec->name = "text inside fragmented text";
        s_frame(&S, 0, 0, WS_OP_TEXT, "ab", 2);
        exp_ctl(&T_exp, 'P', "", 0);
        s_frame(&S, 1, 0, WS_OP_PING, "", 0);
        s_frame(&S, 1, 0, WS_OP_TEXT, "c", 1);
        break;
    case 20:
        ec->name = "binary inside fragmented binary";
        s_frame(&S, 0, 0, WS_OP_BINARY, "ab", 2);
        s_frame(&S, 0, 0, WS_OP_CONT, "c", 1);
        s_frame(&S, 1, 0, WS_OP_BINARY, "d", 1);
        break;
    case 21:
        ec->name = "64-bit length with the top bit set";
        memcpy(raw, "\x82\xff\x80\x00\x00\x00\x00\x00\x00\x05" "abcd", 14);
        s_raw(&S, raw, 14);
        break;
    case 22:
        ec->name = "non-minimal 16-bit length";
        memcpy(raw, "\x82\xfe\x00\x05" "abcd" "vwxyz", 13);
        s_raw(&S, raw, 13);
        break;
    case 23:
        ec->name = "non-minimal 64-bit length";
        memcpy(raw, "\x82\xff\x00\x00\x00\x00\x00\x00\xff\xff" "abcd", 14);
        s_raw(&S, raw, 14);
        break;
    case 24:
        ec->name = "max_frame";
        ec->code = WS_CLOSE_TOO_BIG;
        ec->cfg.max_frame = 100;
        {
            static uint8_t d[101];
            s_frame(&S, 1, 0, WS_OP_BINARY, d, 100);
            exp_msg(&T_exp, WS_OP_BINARY, 0, 1, d, 100);
            s_frame(&S, 1, 0, WS_OP_BINARY, d, 101);
        }
        break;
    case 25:
        ec->name = "max_message over fragments";
        ec->code = WS_CLOSE_TOO_BIG;
        ec->cfg.max_message = 100;
        {
            static uint8_t d[100];
            s_frame(&S, 0, 0, WS_OP_BINARY, d, 60);
            s_frame(&S, 0, 0, WS_OP_CONT, d, 40);
            s_frame(&S, 1, 0, WS_OP_CONT, d, 0);
            exp_msg(&T_exp, WS_OP_BINARY, 0, 3, d, 100);
            s_frame(&S, 0, 0, WS_OP_BINARY, d, 60);
            s_frame(&S, 1, 0, WS_OP_CONT, d, 41);
        }
        break;
    case 26:
        ec->name = "2^62 bytes with max_message";
        ec->code = WS_CLOSE_TOO_BIG;
        ec->cfg.max_message = 1 << 20;
        s_raw(&S, "\x82\xff\x40\x00\x00\x00\x00\x00\x00\x00" "abcd", 14);
        break;
    case 27:
        ec->name = "2^62 bytes with max_frame";
        ec->code = WS_CLOSE_TOO_BIG;
        ec->cfg.max_frame = 1 << 20;
        s_raw(&S, "\x82\xff\x40\x00\x00\x00\x00\x00\x00\x00" "abcd", 14);
        break;
    case 28:
        ec->name = "invalid UTF-8 in a single frame";
        ec->code = WS_CLOSE_INVALID_DATA;
        s_frame(&S, 1, 0, WS_OP_TEXT, "abc\xed\xa0\x80" "def", 9);
        break;
    case 29:
        ec->name = "text ends inside a character";
        ec->code = WS_CLOSE_INVALID_DATA;
        s_frame(&S, 0, 0, WS_OP_TEXT, "abc\xe2", 4);
        s_frame(&S, 1, 0, WS_OP_CONT, "\x82", 1);
        break;
    case 30:
        ec->name = "text ends inside a character (empty FIN)";
        ec->code = WS_CLOSE_INVALID_DATA;
        s_frame(&S, 0, 0, WS_OP_TEXT, "abc\xe2", 4);
        s_frame(&S, 1, 0, WS_OP_CONT, "", 0);
        break;
    case 31:
        ec->name = "close with 1-byte payload";
        s_frame(&S, 1, 0, WS_OP_CLOSE, "\x03", 1);
        break;
    case 32:
        ec->name = "close with code 1005";
        s_frame(&S, 1, 0, WS_OP_CLOSE, "\x03\xed", 2);
        break;
    case 33:
        ec->name = "close with code 999";
        s_frame(&S, 1, 0, WS_OP_CLOSE, "\x03\xe7", 2);
        break;
    case 34:
        ec->name = "close with a bad reason";
        ec->code = WS_CLOSE_INVALID_DATA;
        s_frame(&S, 1, 0, WS_OP_CLOSE, "\x03\xe8" "a\xc0\x80", 5);
        break;
    case 36:
        ec->name = "non-minimal 16-bit length (125)";
        {
            static uint8_t d[4 + 4 + 125] = {0x82, 0xfe, 0x00, 0x7d};
            s_raw(&S, d, sizeof(d));
        }
        break;
    case 35:
        ec->name = "invalid UTF-8 right at a fragment start";
        ec->code = WS_CLOSE_INVALID_DATA;
        s_frame(&S, 0, 0, WS_OP_TEXT, "\xc3", 1);
        s_frame(&S, 1, 0, WS_OP_CONT, "(", 1);
        break;
    default:
        return 0;
    }
    exp_error(&T_exp, ec->code);
    return 1;
}

static void test_errors(void)
{
    err_case ec;
    int i;

    for (i = 0; build_error_case(i, &ec); i++) {
        unsigned long bad = check_splits(S.b, S.n, &ec.cfg, &T_exp, 1,
                                         __LINE__);
        if (bad || T_ref.ended != 2) {
            unit_fail(__FILE__, __LINE__, "error case %d (%s) failed", i,
                      ec.name);
        }
    }
}

/* A huge declared length is refused right after the length bytes. */
static void test_huge_header(void)
{
    uint8_t hdr[14] = {0x82, 0xff, 0x40, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4};
    ws_parser_config cfg = server_cfg();
    ws_parser p;
    ws_event ev;
    size_t c;

    cfg.max_message = 16 << 20;
    ws_parser_init(&p, &cfg);
    CHECK_EQ(ws_parser_feed(&p, hdr, 10, &c, &ev), WS_ERR_PROTO);
    CHECK_EQ(c, 10);
    CHECK_EQ(ev.type, WS_EV_ERROR);
    CHECK_EQ(ev.close_code, 1009);
    CHECK_EQ(ws_parser_feed(&p, hdr + 10, 4, &c, &ev), WS_ERR_STATE);
    CHECK_EQ(c, 0);

    /* the same, with the length arriving a byte at a time */
    ws_parser_init(&p, &cfg);
    for (c = 0; c < 9; c++) {
        size_t cc;
        CHECK_EQ(ws_parser_feed(&p, hdr + c, 1, &cc, &ev), WS_NEED_MORE);
    }
    CHECK_EQ(ws_parser_feed(&p, hdr + 9, 5, &c, &ev), WS_ERR_PROTO);
    CHECK_EQ(c, 1);
    CHECK_EQ(ev.close_code, 1009);

    /* max_frame alone */
    cfg.max_message = 0;
    cfg.max_frame = 1000;
    ws_parser_init(&p, &cfg);
    CHECK_EQ(ws_parser_feed(&p, hdr, 14, &c, &ev), WS_ERR_PROTO);
    CHECK_EQ(ev.close_code, 1009);
    CHECK_EQ(c, 10);

    /* no limits: 2^62 is accepted and streamed */
    cfg.max_frame = 0;
    ws_parser_init(&p, &cfg);
    CHECK_EQ(ws_parser_feed(&p, hdr, 14, &c, &ev), WS_NEED_MORE);
    CHECK_EQ(c, 14);
    CHECK(ws_parser_in_message(&p));
}

/* An invalid byte in the 2nd fragment is caught in that fragment. */
static void test_utf8_second_fragment(void)
{
    ws_parser_config cfg = server_cfg();
    size_t frag2_start, frag2_end, k;
    unsigned long late = 0;

    s_reset(&S);
    s_frame(&S, 0, 0, WS_OP_TEXT, "abc", 3);
    frag2_start = S.n;
    s_frame(&S, 0, 0, WS_OP_CONT, "de\xff" "fgh", 6);
    frag2_end = S.n;
    s_frame(&S, 1, 0, WS_OP_CONT, "zzz", 3);
    t_reset(&T_exp);
    exp_error(&T_exp, 1007);
    check_splits(S.b, S.n, &cfg, &T_exp, 1, __LINE__);
    /* whole feed: DATA "abc", DATA "de", ERROR; the bad byte is never
     * consumed */
    CHECK_EQ(T_ref.events, 3);
    CHECK_EQ(T_ref.end_at, frag2_start + 6 + 2);
    for (k = 0; k <= S.n; k++) {
        cuts[0] = k;
        run_cuts(S.b, S.n, &cfg, cuts, 1, &T_run);
        if (T_run.ended != 2 || T_run.end_at <= frag2_start
            || T_run.end_at > frag2_end) {
            late++;
        }
    }
    CHECK_EQ(late, 0);
}

static void test_states(void)
{
    ws_parser_config cfg = server_cfg();
    ws_parser p;
    ws_event ev;
    uint8_t b[32];
    size_t c;

    /* argument checks */
    ws_parser_init(&p, &cfg);
    CHECK_EQ(ws_parser_feed(NULL, b, 1, &c, &ev), WS_ERR_ARG);
    CHECK_EQ(ws_parser_feed(&p, NULL, 1, &c, &ev), WS_ERR_ARG);
    CHECK_EQ(ws_parser_feed(&p, b, 1, NULL, &ev), WS_ERR_ARG);
    CHECK_EQ(ws_parser_feed(&p, b, 1, &c, NULL), WS_ERR_ARG);
    CHECK_EQ(ws_parser_feed(&p, NULL, 0, &c, &ev), WS_NEED_MORE);
    CHECK_EQ(c, 0);
    CHECK(!ws_parser_in_message(&p));

    /* a valid close kills the parser; the rest is not consumed */
    s_reset(&S);
    s_frame(&S, 1, 0, WS_OP_CLOSE, "\x0b\xb8", 2);
    s_frame(&S, 1, 0, WS_OP_PING, "", 0);
    memcpy(b, S.b, S.n);
    CHECK_EQ(ws_parser_feed(&p, b, S.n, &c, &ev), WS_OK);
    CHECK_EQ(ev.type, WS_EV_CLOSE);
    CHECK_EQ(ev.close_code, 3000);
    CHECK_EQ(ev.reason_len, 0);
    CHECK_EQ(c, 8);
    CHECK_EQ(ws_parser_feed(&p, b + c, S.n - c, &c, &ev), WS_ERR_STATE);
    CHECK_EQ(c, 0);
    CHECK_EQ(ev.type, WS_EV_NONE);

    /* in_message tracks a fragmented message across control frames */
    ws_parser_init(&p, &cfg);
    s_reset(&S);
    s_frame(&S, 0, 0, WS_OP_BINARY, "a", 1);
    s_frame(&S, 1, 0, WS_OP_PING, "", 0);
    s_frame(&S, 1, 0, WS_OP_CONT, "b", 1);
    memcpy(b, S.b, S.n);
    CHECK_EQ(ws_parser_feed(&p, b, S.n, &c, &ev), WS_OK);
    CHECK_EQ(ev.flags, WS_DATA_FIRST | WS_DATA_FRAME_FIN);
    CHECK(ws_parser_in_message(&p));
    {
        size_t off = c;
        CHECK_EQ(ws_parser_feed(&p, b + off, S.n - off, &c, &ev), WS_OK);
        CHECK_EQ(ev.type, WS_EV_PING);
        CHECK(ws_parser_in_message(&p));
        off += c;
        CHECK_EQ(ws_parser_feed(&p, b + off, S.n - off, &c, &ev), WS_OK);
        CHECK_EQ(ev.flags, WS_DATA_LAST | WS_DATA_FRAME_FIN);
        CHECK_EQ(ev.message_len, 2);
        CHECK(!ws_parser_in_message(&p));
        off += c;
        CHECK_EQ(off, S.n);
    }

    /* UTF-8 checking can be turned off */
    cfg.validate_utf8 = 0;
    s_reset(&S);
    s_frame(&S, 1, 0, WS_OP_TEXT, "\xff\xc0", 2);
    t_reset(&T_exp);
    exp_msg(&T_exp, WS_OP_TEXT, 0, 1, "\xff\xc0", 2);
    check_splits(S.b, S.n, &cfg, &T_exp, 1, __LINE__);

    /* a client-side parser accepts unmasked frames */
    cfg.require_mask = 0;
    cfg.validate_utf8 = 1;
    s_reset(&S);
    s_frame_m(&S, 1, 0, WS_OP_BINARY, "xy", 2, 0);
    s_frame_m(&S, 1, 0, WS_OP_BINARY, "z", 1, 1);
    t_reset(&T_exp);
    exp_msg(&T_exp, WS_OP_BINARY, 0, 1, "xy", 2);
    exp_msg(&T_exp, WS_OP_BINARY, 0, 1, "z", 1);
    check_splits(S.b, S.n, &cfg, &T_exp, 1, __LINE__);
}

void test_frame(void)
{
    test_header_lengths();
    test_mask();
    test_mask_long();
    test_rfc_examples();
    test_scripted();
    test_scripted_large();
    test_fast_paths();
    test_errors();
    test_huge_header();
    test_utf8_second_fragment();
    test_states();
}
