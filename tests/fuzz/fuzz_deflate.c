/*
 * fuzz_deflate.c -- libFuzzer target for permessage-deflate: the offer
 * parser and the inflater.
 *
 * Input: byte 0 picks the mode (bit 0: the input is an extension header
 * to negotiate, else compressed frames; bit 1: context takeover; bit 2:
 * text; bits 3-5: the input chunk size), byte 1 the message limit (0: none,
 * else 64 * byte), then data.  Frames are split at 0xFE 0xFD markers (a
 * frame each, the last ends the message; 0xFE 0xFC ends a message too, so
 * several messages share one inflater with and without context takeover).
 * Checks: a response is a well-formed permessage-deflate response that
 * names only agreed parameters; the inflater never returns more than the
 * limit, returns only valid UTF-8 for text, and a round trip of what it
 * returns through the deflater comes back the same.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ws_deflate.h"

#define REQUIRE(c) do { if (!(c)) { abort(); } } while (0)

static void fuzz_negotiate(const uint8_t *data, size_t size, int ctx)
{
    char hdr[1024], resp[WS_PMD_RESPONSE_MAX];
    ws_pmd_policy pol;
    ws_pmd_params par;
    size_t n = size < sizeof(hdr) - 1 ? size : sizeof(hdr) - 1;

    memcpy(hdr, data, n);
    hdr[n] = '\0';
    pol.context_takeover = ctx;
    pol.max_window_bits = 9 + (size % 7);
    if (ws_pmd_negotiate(hdr, &pol, &par, resp)) {
        REQUIRE(strlen(resp) < WS_PMD_RESPONSE_MAX);
        REQUIRE(!strncmp(resp, WS_PMD_NAME, strlen(WS_PMD_NAME)));
        REQUIRE(par.server_max_window_bits >= 9
                && par.server_max_window_bits <= pol.max_window_bits);
        REQUIRE(par.client_max_window_bits >= 8
                && par.client_max_window_bits <= 15);
        REQUIRE(ctx || (par.server_no_context_takeover
                        && par.client_no_context_takeover));
        REQUIRE(!par.server_no_context_takeover
                == !strstr(resp, "server_no_context_takeover"));
    }
}

/* What one message inflated to, kept for the round trip. */
static uint8_t msgbuf[1 << 20];

static void roundtrip(const uint8_t *m, size_t len)
{
    static uint8_t comp[(1 << 20) + (1 << 18)];
    ws_deflater d;
    ws_inflater inf;
    ws_pmd_params p = { 1, 1, 15, 15 };
    const uint8_t *in = m;
    size_t n = len, olen, clen = 0, blen = 0;
    unsigned code;
    const char *why;
    ws_status st;
    static uint8_t back[1 << 20];

    ws_deflate_init(&d, 15, 8, 1, 1);
    do {
        st = ws_deflate_feed(&d, &in, &n, 1, comp + clen, 4096, &olen);
        REQUIRE(st == WS_OK || st == WS_NEED_MORE);
        clen += olen;
        REQUIRE(clen + 4096 <= sizeof(comp));
    } while (st == WS_OK);
    ws_deflate_end(&d);
    REQUIRE(clen > 0 && clen <= ws_deflate_bound(&d, len));
    ws_inflate_init(&inf, &p, 0, 0);
    in = comp;
    n = clen;
    do {
        st = ws_inflate_feed(&inf, &in, &n, WS_DATA_FIRST | WS_DATA_LAST
                             | WS_DATA_FRAME_FIN, 0, back + blen,
                             sizeof(back) - blen, &olen, &code, &why);
        REQUIRE(st != WS_ERR_PROTO);
        blen += olen;
    } while (st == WS_OK);
    REQUIRE(blen == len && !memcmp(back, m, len));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ws_pmd_params p;
    ws_inflater inf;
    unsigned mode, code = 0, flags;
    uint64_t limit;
    size_t chunk, i, start, n, olen, got = 0;
    const uint8_t *in;
    const char *why;
    uint8_t out[997];
    int first = 1, text, ok = 1;
    ws_status st;

    if (size < 2) {
        return 0;
    }
    mode = data[0];
    if (mode & 1) {
        fuzz_negotiate(data + 2, size - 2, (mode & 2) != 0);
        return 0;
    }
    limit = (uint64_t)data[1] * 64;
    if (limit > sizeof(msgbuf)) {
        limit = sizeof(msgbuf);
    }
    text = (mode & 4) != 0;
    chunk = ((mode >> 3) & 7) * 7 + 1;
    memset(&p, 0, sizeof(p));
    p.client_no_context_takeover = !(mode & 2);
    p.client_max_window_bits = 15;
    ws_inflate_init(&inf, &p, limit ? limit : sizeof(msgbuf), 0);
    data += 2;
    size -= 2;
    start = 0;
    for (i = 0; i <= size && ok; i++) {
        int end_frame = i == size
                        || (i + 1 < size && data[i] == 0xFE
                            && (data[i + 1] == 0xFD || data[i + 1] == 0xFC));
        int end_msg = i == size || (end_frame && data[i + 1] == 0xFC);
        size_t off;

        if (!end_frame) {
            continue;
        }
        for (off = start; ; ) {
            n = i - off < chunk ? i - off : chunk;
            flags = first ? WS_DATA_FIRST : 0;
            first = 0;
            if (off + n == i) {
                flags |= WS_DATA_FRAME_FIN | (end_msg ? WS_DATA_LAST : 0);
            }
            in = data + off;
            off += n;
            do {
                st = ws_inflate_feed(&inf, &in, &n, flags, text, out,
                                     sizeof(out), &olen, &code, &why);
                if (st == WS_ERR_PROTO) {
                    REQUIRE(code == 1007 || code == 1009 || code == 1011);
                    REQUIRE(!inf.live);
                    ok = 0;
                    break;
                }
                REQUIRE(st == WS_OK || st == WS_NEED_MORE);
                REQUIRE(got + olen <= (limit ? limit : sizeof(msgbuf)));
                memcpy(msgbuf + got, out, olen);
                got += olen;
            } while (st == WS_OK);
            if (!ok || off == i) {
                break;
            }
        }
        if (ok && end_msg) {
            if (text) {
                REQUIRE(ws_utf8_is_valid(msgbuf, got));
            }
            roundtrip(msgbuf, got);
            got = 0;
            first = 1;
            REQUIRE(!p.client_no_context_takeover || !inf.live);
        }
        start = i + 2;
        i++;
    }
    ws_inflate_end(&inf);
    return 0;
}
