/*
 * fuzz_close.c -- libFuzzer target for close payload parsing and building.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ws_core.h"

#define REQUIRE(c) do { if (!(c)) { abort(); } } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    unsigned code = 0, err = 0, pcode, perr;
    const uint8_t *reason = NULL, *pr;
    size_t rlen = 0, n, prl, keep;
    uint8_t out[WS_MAX_CONTROL_PAYLOAD + 16];
    ws_status st;

    /* parse the input as a payload */
    st = ws_close_parse(data, size, &code, &reason, &rlen, &err);
    if (st == WS_OK) {
        REQUIRE(size != 1 && size <= WS_MAX_CONTROL_PAYLOAD);
        if (size == 0) {
            REQUIRE(code == WS_CLOSE_NO_STATUS && rlen == 0);
        }
        else {
            REQUIRE(ws_close_code_valid(code));
            REQUIRE(code == ((unsigned)data[0] << 8 | data[1]));
            REQUIRE(rlen == size - 2);
            REQUIRE(rlen == 0 || reason == data + 2);
            REQUIRE(ws_utf8_is_valid(reason, rlen));
            /* building it again gives the same bytes */
            n = ws_close_build(out, code, (const char *)reason, rlen);
            REQUIRE(n == size && memcmp(out, data, n) == 0);
        }
    }
    else {
        REQUIRE(st == WS_ERR_PROTO);
        REQUIRE(err == WS_CLOSE_PROTOCOL_ERROR
                || err == WS_CLOSE_INVALID_DATA);
        if (err == WS_CLOSE_INVALID_DATA) {
            REQUIRE(size >= 2 && size <= WS_MAX_CONTROL_PAYLOAD);
            REQUIRE(!ws_utf8_is_valid(data + 2, size - 2));
        }
    }

    /* build from the input: code from 2 bytes, the rest as reason */
    if (size >= 2) {
        unsigned c = ((unsigned)data[0] << 8) | data[1];
        const uint8_t *r = data + 2;
        size_t rl = size - 2;

        memset(out, 0xEE, sizeof(out));
        n = ws_close_build(out, c, (const char *)r, rl);
        if (c == 0) {
            REQUIRE(n == 0);
        }
        else {
            REQUIRE(n >= 2 && n <= WS_MAX_CONTROL_PAYLOAD);
            REQUIRE(out[n] == 0xEE);
            keep = n - 2;
            REQUIRE(keep <= rl && memcmp(out + 2, r, keep) == 0);
            if (rl <= WS_MAX_CLOSE_REASON) {
                REQUIRE(keep == rl);
            }
            else {
                /* at most 3 bytes back, before a non-continuation byte
                 * unless no character boundary is that close */
                REQUIRE(keep + 3 >= WS_MAX_CLOSE_REASON);
                REQUIRE((r[keep] & 0xC0) != 0x80
                        || keep == WS_MAX_CLOSE_REASON);
            }
            /* valid UTF-8 stays valid after the cut */
            if (ws_utf8_is_valid(r, rl)) {
                REQUIRE(ws_utf8_is_valid(out + 2, keep));
                if (ws_close_code_valid(c)) {
                    REQUIRE(ws_close_parse(out, n, &pcode, &pr, &prl, &perr)
                            == WS_OK && pcode == c && prl == keep);
                }
            }
        }
    }
    return 0;
}
