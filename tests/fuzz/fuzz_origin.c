/*
 * fuzz_origin.c -- libFuzzer target for the origin parser (WebSocketOrigin):
 * what it accepts points inside the input and is an origin again.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ws_core.h"

#define REQUIRE(c) do { if (!(c)) { abort(); } } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data;
    char again[WS_ORIGIN_MAX_HOST + 32];
    ws_origin o, o2;
    size_t i;
    int wild;

    for (wild = 0; wild < 2; ++wild) {
        if (ws_origin_parse(s, size, wild, &o) != 0) {
            continue;
        }
        REQUIRE(o.host >= s && o.host + o.host_len <= s + size);
        REQUIRE(o.host_len > 0);
        REQUIRE(o.port >= 1 && o.port <= 65535);
        REQUIRE(!o.wildcard || wild);
        REQUIRE(o.host_len <= (o.ipv6 ? WS_ORIGIN_MAX_IPV6
                                      : WS_ORIGIN_MAX_HOST));
        for (i = 0; i < o.host_len; ++i) {
            REQUIRE(o.host[i] != '/' && o.host[i] != '@' && o.host[i] != '%'
                    && o.host[i] != '\0' && o.host[i] != ' ');
        }
        /* written out again, it parses to the same origin */
        snprintf(again, sizeof(again), "%s://%s%s%.*s%s:%u",
                 o.https ? "https" : "http", o.wildcard ? "*." : "",
                 o.ipv6 ? "[" : "", (int)o.host_len, o.host,
                 o.ipv6 ? "]" : "", o.port);
        REQUIRE(ws_origin_parse(again, strlen(again), wild, &o2) == 0);
        REQUIRE(o2.https == o.https && o2.ipv6 == o.ipv6
                && o2.wildcard == o.wildcard && o2.port == o.port
                && o2.host_len == o.host_len
                && !memcmp(o2.host, o.host, o.host_len));
    }
    return 0;
}
