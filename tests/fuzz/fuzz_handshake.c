/*
 * fuzz_handshake.c -- libFuzzer target for the handshake helpers: key
 * validation, the accept value, strict base64 and token lists.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ws_core.h"

#define REQUIRE(c) do { if (!(c)) { abort(); } } while (0)

static char lower(char c)
{
    return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *str = malloc(size + 1), *enc, *tokbuf;
    uint8_t *dec, digest[20];
    char acc[WS_ACCEPT_LEN + 1];
    long d;
    size_t n, i, tl, count = 0;
    const char *pos, *tok;

    REQUIRE(str);
    memcpy(str, data, size);
    str[size] = '\0';

    /* base64: decoding is canonical, so re-encoding gives the input */
    dec = malloc(size + 1);
    enc = malloc(4 * ((size + 2) / 3) + 8);
    REQUIRE(dec && enc);
    d = ws_base64_decode((const char *)data, size, dec, size + 1);
    if (d >= 0) {
        REQUIRE((size_t)d <= size);
        n = ws_base64_encode(dec, (size_t)d, enc);
        REQUIRE(n == size && memcmp(enc, data, size) == 0);
    }
    /* encoding anything decodes back */
    n = ws_base64_encode(data, size, enc);
    REQUIRE(n == 4 * ((size + 2) / 3));
    {
        uint8_t *back = malloc(size + 1);
        REQUIRE(back);
        REQUIRE(ws_base64_decode(enc, n, back, size + 1) == (long)size);
        REQUIRE(size == 0 || memcmp(back, data, size) == 0);
        free(back);
    }

    /* key validity agrees with the decoder */
    if (ws_handshake_key_valid(str)) {
        REQUIRE(strlen(str) == 24);
        REQUIRE(ws_base64_decode(str, 24, dec, 16) == 16);
        ws_handshake_accept(str, acc);
        REQUIRE(strlen(acc) == WS_ACCEPT_LEN);
        REQUIRE(ws_base64_decode(acc, WS_ACCEPT_LEN, dec, 20) == 20);
    }
    else if (strlen(str) == 24) {
        REQUIRE(ws_base64_decode(str, 24, dec, 16) != 16);
    }
    ws_sha1(data, size, digest);

    /* token lists: every token is trimmed, non-empty, comma-free, and is
     * found again by ws_token_list_has */
    pos = str;
    while (ws_token_next(&pos, &tok, &tl)) {
        REQUIRE(tl > 0 && tok >= str && tok + tl <= str + strlen(str));
        REQUIRE(tok[0] != ' ' && tok[0] != '\t');
        REQUIRE(tok[tl - 1] != ' ' && tok[tl - 1] != '\t');
        REQUIRE(memchr(tok, ',', tl) == NULL);
        tokbuf = malloc(tl + 1);
        REQUIRE(tokbuf);
        for (i = 0; i < tl; i++) {
            tokbuf[i] = (i & 1) ? lower(tok[i]) : tok[i];
        }
        tokbuf[tl] = '\0';
        REQUIRE(ws_token_list_has(str, tokbuf));
        free(tokbuf);
        REQUIRE(++count <= size);
    }
    REQUIRE(*pos == '\0');

    free(str);
    free(dec);
    free(enc);
    return 0;
}
