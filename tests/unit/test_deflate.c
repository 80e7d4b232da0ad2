/*
 * test_deflate.c -- permessage-deflate: the negotiation matrix, the
 * inflater's caps (inflate bombs), UTF-8 after inflation, the RFC 7692
 * examples, and deflate/inflate round trips fed in every chunk size.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "ws_deflate.h"

/* ---- negotiation ------------------------------------------------------ */

static void nego(int line, const char *hdr, int ctx, unsigned cap,
                 const char *want)
{
    ws_pmd_policy pol;
    ws_pmd_params par;
    char resp[WS_PMD_RESPONSE_MAX];
    int ok;

    pol.context_takeover = ctx;
    pol.max_window_bits = cap;
    memset(resp, 'x', sizeof(resp));
    ok = ws_pmd_negotiate(hdr, &pol, &par, resp);
    if (want == NULL) {
        if (ok) {
            unit_fail(__FILE__, line, "'%s': accepted as '%s', want declined",
                      hdr, resp);
        }
        else {
            unit_passed++;
        }
        return;
    }
    if (!ok || strcmp(resp, want)) {
        unit_fail(__FILE__, line, "'%s': got %s '%s', want '%s'", hdr,
                  ok ? "" : "declined", ok ? resp : "", want);
    }
    else {
        unit_passed++;
    }
}

#define NEGO(h, ctx, cap, want) nego(__LINE__, h, ctx, cap, want)
#define PMD "permessage-deflate"
#define NCT "; server_no_context_takeover; client_no_context_takeover"

static void test_negotiate(void)
{
    ws_pmd_policy pol = { 1, 15 };
    ws_pmd_params par;
    char resp[WS_PMD_RESPONSE_MAX];

    /* browsers' offers */
    NEGO("permessage-deflate; client_max_window_bits", 0, 15, PMD NCT);
    NEGO("permessage-deflate; client_max_window_bits", 1, 15, PMD);
    NEGO("permessage-deflate", 1, 15, PMD);
    NEGO("permessage-deflate", 0, 15, PMD NCT);
    /* window caps: ours, and the client's only where it let us */
    NEGO("permessage-deflate; client_max_window_bits", 1, 10,
         PMD "; server_max_window_bits=10; client_max_window_bits=10");
    NEGO("permessage-deflate", 1, 10, PMD "; server_max_window_bits=10");
    NEGO("permessage-deflate; server_max_window_bits=12", 1, 15,
         PMD "; server_max_window_bits=12");
    NEGO("permessage-deflate; server_max_window_bits=12", 1, 10,
         PMD "; server_max_window_bits=10");
    NEGO("permessage-deflate; client_max_window_bits=9", 1, 15,
         PMD "; client_max_window_bits=9");
    NEGO("permessage-deflate; client_max_window_bits=15", 1, 15, PMD);
    NEGO("permessage-deflate; server_max_window_bits=\"11\"", 1, 15,
         PMD "; server_max_window_bits=11");
    NEGO("permessage-deflate; client_max_window_bits=\"1\\1\"", 1, 15,
         PMD "; client_max_window_bits=11");
    /* the client's own no-context requests are honoured */
    NEGO("permessage-deflate; server_no_context_takeover", 1, 15,
         PMD "; server_no_context_takeover");
    NEGO("permessage-deflate;client_no_context_takeover", 1, 15,
         PMD "; client_no_context_takeover");
    NEGO("permessage-deflate ; server_no_context_takeover ; "
         "client_no_context_takeover ; server_max_window_bits=9 ; "
         "client_max_window_bits=9", 1, 15,
         PMD NCT "; server_max_window_bits=9; client_max_window_bits=9");
    /* names without case */
    NEGO("PerMessage-Deflate; Client_Max_Window_Bits", 1, 15, PMD);
    /* declined: unknown, duplicate, bad values */
    NEGO("permessage-deflate; foo", 1, 15, NULL);
    NEGO("permessage-deflate; server_no_context_takeover; "
         "server_no_context_takeover", 1, 15, NULL);
    NEGO("permessage-deflate; client_max_window_bits; client_max_window_bits=10",
         1, 15, NULL);
    NEGO("permessage-deflate; server_max_window_bits=10; "
         "server_max_window_bits=10", 1, 15, NULL);
    NEGO("permessage-deflate; server_max_window_bits", 1, 15, NULL);
    NEGO("permessage-deflate; server_max_window_bits=", 1, 15, NULL);
    NEGO("permessage-deflate; server_max_window_bits=7", 1, 15, NULL);
    NEGO("permessage-deflate; server_max_window_bits=16", 1, 15, NULL);
    NEGO("permessage-deflate; server_max_window_bits=010", 1, 15, NULL);
    NEGO("permessage-deflate; server_max_window_bits=1x", 1, 15, NULL);
    NEGO("permessage-deflate; server_max_window_bits=\"\"", 1, 15, NULL);
    NEGO("permessage-deflate; server_max_window_bits=\"1 0\"", 1, 15, NULL);
    NEGO("permessage-deflate; client_max_window_bits=0", 1, 15, NULL);
    NEGO("permessage-deflate; client_no_context_takeover=1", 1, 15, NULL);
    NEGO("permessage-deflate; server_no_context_takeover=\"\"", 1, 15, NULL);
    /* a server window of 8: zlib cannot, so declined */
    NEGO("permessage-deflate; server_max_window_bits=8", 1, 15, NULL);
    NEGO("permessage-deflate; client_max_window_bits=8", 1, 15,
         PMD "; client_max_window_bits=8");
    /* syntax */
    NEGO("permessage-deflate;", 1, 15, NULL);
    NEGO("permessage-deflate;;", 1, 15, NULL);
    NEGO("permessage-deflate; =10", 1, 15, NULL);
    NEGO("permessage-deflate x", 1, 15, NULL);
    NEGO("permessage-deflate; server_max_window_bits=\"10", 1, 15, NULL);
    NEGO("", 1, 15, NULL);
    NEGO(" , ,", 1, 15, NULL);
    NEGO("x-webkit-deflate-frame", 1, 15, NULL);
    NEGO("permessage-deflat", 1, 15, NULL);
    /* several offers: the first acceptable one wins */
    NEGO("x-webkit-deflate-frame, permessage-deflate", 1, 15, PMD);
    NEGO("permessage-deflate; server_max_window_bits=8, "
         "permessage-deflate; server_max_window_bits=9", 1, 15,
         PMD "; server_max_window_bits=9");
    NEGO("permessage-deflate; foo, permessage-deflate; "
         "client_max_window_bits", 1, 12,
         PMD "; server_max_window_bits=12; client_max_window_bits=12");
    NEGO("permessage-deflate; a=\"b,c\", permessage-deflate", 1, 15, PMD);
    NEGO("permessage-deflate; x y, permessage-deflate", 1, 15, PMD);
    NEGO("permessage-deflate; server_max_window_bits=10, permessage-deflate",
         1, 15, PMD "; server_max_window_bits=10");
    NEGO("foo; bar=\"unterminated, permessage-deflate", 1, 15, NULL);

    /* the parameters that come out */
    CHECK(ws_pmd_negotiate("permessage-deflate; client_max_window_bits=10; "
                           "server_max_window_bits=11", &pol, &par, resp));
    CHECK_EQ(par.server_max_window_bits, 11);
    CHECK_EQ(par.client_max_window_bits, 10);
    CHECK_EQ(par.server_no_context_takeover, 0);
    CHECK_EQ(par.client_no_context_takeover, 0);
    CHECK(ws_pmd_negotiate("permessage-deflate", &pol, &par, resp));
    CHECK_EQ(par.client_max_window_bits, 15);
    pol.context_takeover = 0;
    CHECK(ws_pmd_negotiate("permessage-deflate", &pol, &par, resp));
    CHECK_EQ(par.server_no_context_takeover, 1);
    CHECK_EQ(par.client_no_context_takeover, 1);
    CHECK(!ws_pmd_negotiate(NULL, &pol, &par, resp));
    CHECK(strlen(PMD NCT "; server_max_window_bits=10; "
                 "client_max_window_bits=10") < WS_PMD_RESPONSE_MAX);
}

/* ---- inflating --------------------------------------------------------- */

static ws_pmd_params params(int no_context, unsigned wbits)
{
    ws_pmd_params p;

    p.server_no_context_takeover = no_context;
    p.client_no_context_takeover = no_context;
    p.server_max_window_bits = wbits;
    p.client_max_window_bits = wbits;
    return p;
}

/*
 * Inflate one message given as frames (frames[i] of lens[i] bytes), each
 * frame fed in pieces of `step` input bytes, into an output buffer of
 * out_step bytes at a time.  Appends the result to got (cap bytes);
 * returns the status of the last call, *code the close code on error.
 */
static ws_status inflate_msg(ws_inflater *inf, const uint8_t *const *frames,
                             const size_t *lens, size_t nframes, int text,
                             size_t step, size_t out_step, uint8_t *got,
                             size_t cap, size_t *got_len, unsigned *code)
{
    uint8_t out[4096];
    size_t f, off, n, olen;
    unsigned flags;
    const uint8_t *in;
    const char *why;
    ws_status st = WS_NEED_MORE;

    *got_len = 0;
    for (f = 0; f < nframes; f++) {
        off = 0;
        do {
            n = lens[f] - off < step ? lens[f] - off : step;
            flags = 0;
            if (f == 0 && off == 0) {
                flags |= WS_DATA_FIRST;
            }
            if (off + n == lens[f]) {
                flags |= WS_DATA_FRAME_FIN;
                if (f + 1 == nframes) {
                    flags |= WS_DATA_LAST;
                }
            }
            in = frames[f] + off;
            off += n;
            do {
                st = ws_inflate_feed(inf, &in, &n, flags, text, out,
                                     out_step, &olen, code, &why);
                if (st == WS_ERR_PROTO) {
                    return st;
                }
                if (olen && *got_len + olen <= cap) {
                    memcpy(got + *got_len, out, olen);
                }
                *got_len += olen;
            } while (st == WS_OK);
        } while (off < lens[f]);
    }
    return st;
}

static ws_status inflate1(ws_inflater *inf, const uint8_t *data, size_t len,
                          int text, uint8_t *got, size_t cap,
                          size_t *got_len, unsigned *code)
{
    const uint8_t *frames[1] = { data };
    size_t lens[1] = { len };

    return inflate_msg(inf, frames, lens, 1, text, len ? len : 1, 4096, got,
                       cap, got_len, code);
}

/* the examples of RFC 7692 section 7.2.3 */
static void test_rfc_examples(void)
{
    static const uint8_t hello[] = { 0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00 };
    static const uint8_t hello2[] = { 0xf2, 0x00, 0x11, 0x00, 0x00 };
    static const uint8_t stored[] = { 0x00, 0x05, 0x00, 0xfa, 0xff, 0x48,
                                      0x65, 0x6c, 0x6c, 0x6f, 0x00 };
    static const uint8_t bfinal[] = { 0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07,
                                      0x00 };
    static const uint8_t empty[] = { 0x00 };
    /* "Hel" and "lo" in two frames (7.2.3.1's fragmented example) */
    static const uint8_t frag1[] = { 0xf2, 0x48, 0xcd };
    static const uint8_t frag2[] = { 0xc9, 0xc9, 0x07, 0x00 };
    ws_pmd_params p = params(0, 15);
    ws_inflater inf;
    uint8_t got[64];
    size_t n;
    unsigned code = 0;
    const uint8_t *frames[2] = { frag1, frag2 };
    size_t lens[2] = { sizeof(frag1), sizeof(frag2) };

    ws_inflate_init(&inf, &p, 0, 0);
    CHECK_EQ(inflate1(&inf, hello, sizeof(hello), 1, got, sizeof(got), &n,
                      &code), WS_NEED_MORE);
    CHECK_MEM(got, n, "Hello", 5);
    /* context takeover: the second "Hello" refers to the first */
    CHECK_EQ(inflate1(&inf, hello2, sizeof(hello2), 1, got, sizeof(got), &n,
                      &code), WS_NEED_MORE);
    CHECK_MEM(got, n, "Hello", 5);
    CHECK(inf.live);
    CHECK_EQ(inflate1(&inf, stored, sizeof(stored), 0, got, sizeof(got), &n,
                      &code), WS_NEED_MORE);
    CHECK_MEM(got, n, "Hello", 5);
    /* BFINAL set: the stream ends, the next message starts a new one */
    CHECK_EQ(inflate1(&inf, bfinal, sizeof(bfinal), 1, got, sizeof(got), &n,
                      &code), WS_NEED_MORE);
    CHECK_MEM(got, n, "Hello", 5);
    CHECK_EQ(inflate1(&inf, hello, sizeof(hello), 1, got, sizeof(got), &n,
                      &code), WS_NEED_MORE);
    CHECK_MEM(got, n, "Hello", 5);
    CHECK_EQ(inflate1(&inf, empty, sizeof(empty), 1, got, sizeof(got), &n,
                      &code), WS_NEED_MORE);
    CHECK_EQ(n, 0);
    /* an empty payload plus the tail is not a whole block */
    CHECK_EQ(inflate1(&inf, empty, 0, 1, got, sizeof(got), &n, &code),
             WS_ERR_PROTO);
    CHECK_EQ(code, WS_CLOSE_INVALID_DATA);
    CHECK_EQ(inflate1(&inf, hello, sizeof(hello), 1, got, sizeof(got), &n,
                      &code), WS_NEED_MORE);
    CHECK_MEM(got, n, "Hello", 5);
    CHECK_EQ(inflate_msg(&inf, frames, lens, 2, 1, 1, 1, got, sizeof(got),
                         &n, &code), WS_NEED_MORE);
    CHECK_MEM(got, n, "Hello", 5);
    ws_inflate_end(&inf);
    CHECK(!inf.live);

    /* without context takeover the second example cannot be read, and
     * no zlib state is held between messages */
    p = params(1, 15);
    ws_inflate_init(&inf, &p, 0, 0);
    CHECK_EQ(inflate1(&inf, hello, sizeof(hello), 1, got, sizeof(got), &n,
                      &code), WS_NEED_MORE);
    CHECK(!inf.live);
    CHECK_EQ(inflate1(&inf, hello2, sizeof(hello2), 1, got, sizeof(got), &n,
                      &code), WS_ERR_PROTO);
    CHECK_EQ(code, WS_CLOSE_INVALID_DATA);
    CHECK(!inf.live);
    /* data after a BFINAL block */
    {
        uint8_t more[sizeof(bfinal) + 2];

        memcpy(more, bfinal, sizeof(bfinal));
        more[sizeof(bfinal)] = 0x02;
        more[sizeof(bfinal) + 1] = 0x00;
        CHECK_EQ(inflate1(&inf, more, sizeof(more), 1, got, sizeof(got), &n,
                          &code), WS_ERR_PROTO);
        CHECK_EQ(code, WS_CLOSE_INVALID_DATA);
    }
    /* garbage */
    {
        static const uint8_t bad[] = { 0xff, 0xff, 0xff, 0xff, 0xff };

        CHECK_EQ(inflate1(&inf, bad, sizeof(bad), 0, got, sizeof(got), &n,
                          &code), WS_ERR_PROTO);
        CHECK_EQ(code, WS_CLOSE_INVALID_DATA);
        CHECK(!inf.live);
    }
}

/* ---- deflating ---------------------------------------------------------- */

/* Compress msg in input pieces of step bytes into out buffers of
 * out_step; returns the compressed length (out must be large enough). */
static size_t deflate_msg(ws_deflater *d, const uint8_t *msg, size_t len,
                          size_t step, size_t out_step, uint8_t *out)
{
    size_t off = 0, total = 0, n, olen;
    const uint8_t *in;
    ws_status st;
    int last;

    do {
        n = len - off < step ? len - off : step;
        in = msg + off;
        off += n;
        last = off == len;
        do {
            st = ws_deflate_feed(d, &in, &n, last, out + total, out_step,
                                 &olen);
            if (st != WS_OK && st != WS_NEED_MORE) {
                unit_fail(__FILE__, __LINE__, "deflate failed: %d", st);
                return 0;
            }
            total += olen;
        } while (st == WS_OK);
    } while (!last);
    return total;
}

static uint8_t *sample(size_t len, unsigned seed)
{
    uint8_t *m = malloc(len ? len : 1);
    size_t i;
    const char *words[] = { "{\"price\":", "12.5", ",\"sym\":\"ACME\"",
                            "}", " \xc3\xa9t\xc3\xa9 ", "\xe2\x82\xac" };

    for (i = 0; i < len;) {
        const char *w = words[(seed = seed * 1103515245u + 12345u) >> 16 & 3
                              ? (seed >> 20) % 4 : 4 + (seed >> 20) % 2];
        size_t wl = strlen(w);

        if (i + wl > len) {
            while (i < len) {
                m[i++] = 'x';
            }
            break;
        }
        memcpy(m + i, w, wl);
        i += wl;
    }
    return m;
}

static void roundtrip(int no_context, unsigned wbits, unsigned mem,
                      size_t len, size_t in_step, size_t out_step,
                      size_t inf_step, size_t inf_out, int messages)
{
    ws_pmd_params p = params(no_context, wbits);
    ws_deflater d;
    ws_inflater inf;
    uint8_t *msg = sample(len, (unsigned)len), *comp, *back;
    size_t clen, blen, first = 0;
    unsigned code = 0;
    int i;
    const uint8_t *frames[1];
    size_t lens[1];

    comp = malloc(ws_deflate_bound(&d, len) + 64);
    back = malloc(len + 16);
    ws_deflate_init(&d, wbits, mem, -1, no_context);
    ws_inflate_init(&inf, &p, len, 0);
    for (i = 0; i < messages; i++) {
        clen = deflate_msg(&d, msg, len, in_step, out_step, comp);
        CHECK(clen <= ws_deflate_bound(&d, len));
        if (i == 0) {
            first = clen;
        }
        else if (!no_context && len > 64) {
            CHECK(clen < first);       /* it refers to the last message */
        }
        else if (no_context) {
            CHECK_EQ(clen, first);     /* each message on its own */
        }
        CHECK(clen > 0);               /* never an empty payload */
        frames[0] = comp;
        lens[0] = clen;
        CHECK_EQ(inflate_msg(&inf, frames, lens, 1, 1,
                             inf_step, inf_out, back, len + 16, &blen,
                             &code), WS_NEED_MORE);
        CHECK_MEM(back, blen, msg, len);
    }
    CHECK_EQ(inf.live, !no_context);
    ws_deflate_end(&d);
    ws_inflate_end(&inf);
    free(msg);
    free(comp);
    free(back);
}

static void test_roundtrip(void)
{
    static const size_t sizes[] = { 0, 1, 5, 125, 126, 1024, 65536, 300000 };
    size_t i;

    for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        roundtrip(1, 15, 8, sizes[i], 1 << 20, 1 << 20, 1 << 20, 4096, 3);
        roundtrip(0, 15, 8, sizes[i], 1 << 20, 1 << 20, 1 << 20, 4096, 3);
        roundtrip(0, 9, 1, sizes[i], 1 << 20, 1 << 20, 1 << 20, 4096, 3);
        roundtrip(1, 10, 4, sizes[i], 4096, 16, 1000, 16, 2);
    }
    /* every small split */
    for (i = 1; i <= 17; i++) {
        roundtrip(0, 15, 8, 200, i, 16 + i, i, i, 2);
    }
}

/* ---- caps: inflate bombs ------------------------------------------------ */

static void test_bomb(void)
{
    ws_pmd_params p = params(1, 15);
    ws_deflater d;
    ws_inflater inf;
    size_t big = 4u << 20, clen, n, olen;
    uint8_t *zeros = calloc(1, big), *comp = malloc(big), out[4096];
    uint8_t *got = malloc(big);
    unsigned code = 0;
    const uint8_t *frames[2];
    size_t lens[2];
    const uint8_t *in;
    const char *why;
    uint64_t total = 0;
    ws_status st;

    ws_deflate_init(&d, 15, 9, 9, 1);
    clen = deflate_msg(&d, zeros, big, big, big, comp);
    ws_deflate_end(&d);
    CHECK(clen < 8192);                     /* 4 MiB of zeros: a few KiB */

    /* message limit 1000: 1009, and no more than 1000 bytes come out */
    ws_inflate_init(&inf, &p, 1000, 0);
    in = comp;
    n = clen;
    do {
        st = ws_inflate_feed(&inf, &in, &n, WS_DATA_FIRST | WS_DATA_LAST
                             | WS_DATA_FRAME_FIN, 0, out, sizeof(out),
                             &olen, &code, &why);
        total += olen;
    } while (st == WS_OK);
    CHECK_EQ(st, WS_ERR_PROTO);
    CHECK_EQ(code, WS_CLOSE_TOO_BIG);
    CHECK(total <= 1000);
    CHECK(!inf.live);

    /* exactly at the limit is fine */
    ws_deflate_init(&d, 15, 8, -1, 1);
    clen = deflate_msg(&d, zeros, 1000, 1000, 4096, comp);
    ws_deflate_end(&d);
    CHECK_EQ(inflate1(&inf, comp, clen, 0, got, big, &n, &code),
             WS_NEED_MORE);
    CHECK_EQ(n, 1000);
    /* one more byte is not */
    ws_deflate_init(&d, 15, 8, -1, 1);
    clen = deflate_msg(&d, zeros, 1001, 1001, 4096, comp);
    ws_deflate_end(&d);
    CHECK_EQ(inflate1(&inf, comp, clen, 0, got, big, &n, &code),
             WS_ERR_PROTO);
    CHECK_EQ(code, WS_CLOSE_TOO_BIG);
    CHECK(n <= 1000);

    /* frame limit: two frames of 600 inflated bytes each pass a frame
     * limit of 600 and a message limit of 1200; a frame of 601 does not */
    ws_inflate_init(&inf, &p, 1200, 600);
    {
        uint8_t c1[2048], c2[2048];
        size_t l1, l2;

        /* two flushed pieces of one stream: the first keeps its tail, as
         * a sender that flushes between frames sends it */
        ws_deflate_init(&d, 15, 8, -1, 0);
        l1 = deflate_msg(&d, zeros, 600, 600, 2048, c1);
        memcpy(c1 + l1, "\x00\x00\xff\xff", 4);
        l1 += 4;
        l2 = deflate_msg(&d, zeros, 600, 600, 2048, c2);
        ws_deflate_end(&d);
        frames[0] = c1;
        lens[0] = l1;
        frames[1] = c2;
        lens[1] = l2;
        CHECK_EQ(inflate_msg(&inf, frames, lens, 2, 0, 7, 100, got, big, &n,
                             &code), WS_NEED_MORE);
        CHECK_EQ(n, 1200);
        ws_inflate_init(&inf, &p, 1200, 599);
        CHECK_EQ(inflate_msg(&inf, frames, lens, 2, 0, 7, 100, got, big, &n,
                             &code), WS_ERR_PROTO);
        CHECK_EQ(code, WS_CLOSE_TOO_BIG);
        CHECK(n <= 599);
        ws_inflate_init(&inf, &p, 1199, 0);
        CHECK_EQ(inflate_msg(&inf, frames, lens, 2, 0, 7, 100, got, big, &n,
                             &code), WS_ERR_PROTO);
        CHECK_EQ(code, WS_CLOSE_TOO_BIG);
        CHECK(n <= 1199);
    }
    free(zeros);
    free(comp);
    free(got);
}

/* ---- UTF-8 after inflation ----------------------------------------------- */

static void test_utf8_after(void)
{
    ws_pmd_params p = params(1, 15);
    ws_deflater d;
    ws_inflater inf;
    uint8_t comp[256], got[256];
    size_t clen, n;
    unsigned code = 0;
    static const char bad[] = "hello \xff world";
    static const char cut[] = "caf\xc3";
    static const char good[] = "caf\xc3\xa9";

    ws_inflate_init(&inf, &p, 0, 0);
    ws_deflate_init(&d, 15, 8, -1, 1);
    clen = deflate_msg(&d, (const uint8_t *)bad, strlen(bad), 100, 256, comp);
    CHECK_EQ(inflate1(&inf, comp, clen, 1, got, sizeof(got), &n, &code),
             WS_ERR_PROTO);
    CHECK_EQ(code, WS_CLOSE_INVALID_DATA);
    /* as binary it is fine */
    CHECK_EQ(inflate1(&inf, comp, clen, 0, got, sizeof(got), &n, &code),
             WS_NEED_MORE);
    CHECK_MEM(got, n, bad, strlen(bad));
    clen = deflate_msg(&d, (const uint8_t *)cut, strlen(cut), 100, 256, comp);
    CHECK_EQ(inflate1(&inf, comp, clen, 1, got, sizeof(got), &n, &code),
             WS_ERR_PROTO);
    CHECK_EQ(code, WS_CLOSE_INVALID_DATA);
    clen = deflate_msg(&d, (const uint8_t *)good, strlen(good), 100, 256,
                       comp);
    CHECK_EQ(inflate1(&inf, comp, clen, 1, got, sizeof(got), &n, &code),
             WS_NEED_MORE);
    CHECK_MEM(got, n, good, strlen(good));
    ws_deflate_end(&d);
}

/* ---- the deflater's edges ------------------------------------------------- */

static void test_deflater(void)
{
    ws_deflater d;
    uint8_t out[64];
    const uint8_t *in = (const uint8_t *)"";
    size_t n = 0, olen;

    ws_deflate_init(&d, 15, 8, -1, 0);
    /* an empty message, twice (the second flush has nothing to flush) */
    CHECK_EQ(ws_deflate_feed(&d, &in, &n, 1, out, sizeof(out), &olen),
             WS_NEED_MORE);
    CHECK_EQ(olen, 1);
    CHECK_EQ(out[0], 0x00);
    CHECK_EQ(ws_deflate_feed(&d, &in, &n, 1, out, sizeof(out), &olen),
             WS_NEED_MORE);
    CHECK_EQ(olen, 1);
    CHECK_EQ(out[0], 0x00);
    CHECK_EQ(ws_deflate_feed(&d, &in, &n, 1, out, 8, &olen), WS_ERR_ARG);
    ws_deflate_end(&d);
    CHECK(!d.live);
    /* bad parameters fall back to the defaults */
    ws_deflate_init(&d, 8, 0, 42, 1);
    CHECK_EQ(d.window_bits, 15);
    CHECK_EQ(d.mem_level, 8);
    CHECK_EQ(d.level, Z_DEFAULT_COMPRESSION);
}

void test_deflate(void)
{
    test_negotiate();
    test_rfc_examples();
    test_roundtrip();
    test_bomb();
    test_utf8_after();
    test_deflater();
}
