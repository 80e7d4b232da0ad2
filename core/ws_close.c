/*
 * ws_close.c -- close frame payloads (RFC 6455 sections 5.5.1 and 7.4).
 */

#include <string.h>

#include "ws_core.h"

int ws_close_code_valid(unsigned code)
{
    /* 1004 is reserved, 1005/1006/1015 must never be sent, 1012-1014 are
     * registered later by IANA but not part of RFC 6455; 1000-2999 not
     * listed here are reserved for the protocol. */
    if (code >= 1000 && code <= 1003) {
        return 1;
    }
    if (code >= 1007 && code <= 1011) {
        return 1;
    }
    return code >= 3000 && code <= 4999;
}

ws_status ws_close_parse(const uint8_t *payload, size_t len, unsigned *code,
                         const uint8_t **reason, size_t *reason_len,
                         unsigned *err_code)
{
    unsigned c;
    unsigned dummy_err;

    if (err_code == NULL) {
        err_code = &dummy_err;
    }
    *err_code = 0;
    if (code == NULL || reason == NULL || reason_len == NULL
        || (payload == NULL && len > 0)) {
        return WS_ERR_ARG;
    }
    *reason = NULL;
    *reason_len = 0;

    if (len == 0) {
        *code = WS_CLOSE_NO_STATUS;
        return WS_OK;
    }
    if (len == 1 || len > WS_MAX_CONTROL_PAYLOAD) {
        *err_code = WS_CLOSE_PROTOCOL_ERROR;
        return WS_ERR_PROTO;
    }
    c = ((unsigned)payload[0] << 8) | payload[1];
    if (!ws_close_code_valid(c)) {
        *err_code = WS_CLOSE_PROTOCOL_ERROR;
        return WS_ERR_PROTO;
    }
    if (!ws_utf8_is_valid(payload + 2, len - 2)) {
        *err_code = WS_CLOSE_INVALID_DATA;
        return WS_ERR_PROTO;
    }
    *code = c;
    *reason = len > 2 ? payload + 2 : NULL;
    *reason_len = len - 2;
    return WS_OK;
}

size_t ws_close_build(uint8_t *out, unsigned code, const char *reason,
                      size_t reason_len)
{
    const uint8_t *r = (const uint8_t *)reason;
    size_t n;

    if (out == NULL || code == 0 || code > 0xFFFF) {
        return 0;
    }
    out[0] = (uint8_t)(code >> 8);
    out[1] = (uint8_t)(code & 0xFF);
    if (r == NULL) {
        return 2;
    }
    n = reason_len;
    if (n > WS_MAX_CLOSE_REASON) {
        /* Cut so that the first byte dropped is not a continuation byte,
         * i.e. the kept part ends on a character boundary.  A character
         * has at most three continuation bytes; if there are more, the
         * reason is not UTF-8 anyway and is cut at 123. */
        n = WS_MAX_CLOSE_REASON;
        while (n > WS_MAX_CLOSE_REASON - 3 && (r[n] & 0xC0) == 0x80) {
            n--;
        }
        if ((r[n] & 0xC0) == 0x80) {
            n = WS_MAX_CLOSE_REASON;
        }
    }
    if (n > 0) {
        memcpy(out + 2, r, n);
    }
    return 2 + n;
}
