/*
 * ws_handshake.c -- opening handshake helpers (RFC 6455 section 4.2).
 */

#include <string.h>

#include "ws_core.h"

#define WS_KEY_LEN  24
#define WS_GUID     "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define WS_GUID_LEN (sizeof(WS_GUID) - 1)

int ws_handshake_key_valid(const char *key)
{
    uint8_t raw[16];
    size_t n = 0;

    if (key == NULL) {
        return 0;
    }
    /* length must be exactly 24; never read past the terminator */
    while (n <= WS_KEY_LEN && key[n] != '\0') {
        n++;
    }
    if (n != WS_KEY_LEN) {
        return 0;
    }
    return ws_base64_decode(key, WS_KEY_LEN, raw, sizeof(raw)) == 16;
}

void ws_handshake_accept(const char *key, char *out)
{
    /* key is 24 bytes when validated; be safe with longer input anyway */
    uint8_t buf[WS_KEY_LEN + WS_GUID_LEN];
    uint8_t digest[20];
    size_t klen = key ? strlen(key) : 0;

    if (klen > WS_KEY_LEN) {
        klen = WS_KEY_LEN;
    }
    if (klen > 0) {
        memcpy(buf, key, klen);
    }
    memcpy(buf + klen, WS_GUID, WS_GUID_LEN);
    ws_sha1(buf, klen + WS_GUID_LEN, digest);
    ws_base64_encode(digest, sizeof(digest), out);
    out[WS_ACCEPT_LEN] = '\0';
}

static int is_ows(char c)
{
    return c == ' ' || c == '\t';
}

static char lower_ascii(char c)
{
    return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
}

int ws_token_next(const char **pos, const char **tok, size_t *tok_len)
{
    const char *p, *start, *end;

    if (pos == NULL || *pos == NULL || tok == NULL || tok_len == NULL) {
        return 0;
    }
    p = *pos;
    for (;;) {
        while (*p == ',' || is_ows(*p)) {
            p++;
        }
        if (*p == '\0') {
            *pos = p;
            return 0;
        }
        start = p;
        while (*p != '\0' && *p != ',') {
            p++;
        }
        end = p;
        while (end > start && is_ows(end[-1])) {
            end--;
        }
        if (*p == ',') {
            p++;
        }
        if (end > start) {
            *tok = start;
            *tok_len = (size_t)(end - start);
            *pos = p;
            return 1;
        }
    }
}

int ws_token_list_has(const char *list, const char *token)
{
    const char *pos = list, *tok;
    size_t tlen, want, i;

    if (list == NULL || token == NULL) {
        return 0;
    }
    want = strlen(token);
    while (ws_token_next(&pos, &tok, &tlen)) {
        if (tlen != want) {
            continue;
        }
        for (i = 0; i < tlen; i++) {
            if (lower_ascii(tok[i]) != lower_ascii(token[i])) {
                break;
            }
        }
        if (i == tlen) {
            return 1;
        }
    }
    return 0;
}
