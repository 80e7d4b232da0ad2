/*
 * ws_origin.c -- the parts of origin checking and address counting that
 * need no httpd: parsing a serialized origin (RFC 6454 section 6.1,
 * "scheme://host[:port]") and SipHash-2-4, the keyed hash of the address
 * table (Aumasson and Bernstein, "SipHash: a fast short-input PRF", 2012).
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "ws_core.h"

static int lower(int c)
{
    return (c >= 'A' && c <= 'Z') ? c + ('a' - 'A') : c;
}

static int prefix_nocase(const char *s, size_t len, const char *p)
{
    size_t n = strlen(p), i;

    if (len < n) {
        return 0;
    }
    for (i = 0; i < n; ++i) {
        if (lower((unsigned char)s[i]) != p[i]) {
            return 0;
        }
    }
    return 1;
}

static int name_char(int c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
           || (c >= '0' && c <= '9') || c == '-' || c == '_';
}

/* A host name or IPv4 address: labels of [A-Za-z0-9_-] joined by single
 * dots, no empty label (so no leading or trailing dot). */
static int valid_name(const char *h, size_t n)
{
    size_t i, label = 0;

    if (n == 0 || n > WS_ORIGIN_MAX_HOST) {
        return 0;
    }
    for (i = 0; i < n; ++i) {
        if (h[i] == '.') {
            if (label == 0) {
                return 0;
            }
            label = 0;
        }
        else if (name_char((unsigned char)h[i])) {
            ++label;
        }
        else {
            return 0;
        }
    }
    return label > 0;
}

int ws_origin_parse(const char *s, size_t len, int allow_wildcard,
                    ws_origin *o)
{
    const char *p, *end = s + len, *h;
    unsigned long port = 0;
    size_t digits = 0;

    memset(o, 0, sizeof(*o));
    if (prefix_nocase(s, len, "https://")) {
        o->https = 1;
        p = s + 8;
    }
    else if (prefix_nocase(s, len, "http://")) {
        p = s + 7;
    }
    else {
        return -1;              /* "null", other schemes, garbage */
    }
    h = p;
    if (p < end && *p == '[') {
        /* an IPv6 literal: hex digits, colons and dots (an embedded IPv4
         * address); the caller checks it with inet_pton() */
        for (++p; p < end && *p != ']'; ++p) {
            int c = lower((unsigned char)*p);
            if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')
                  || c == ':' || c == '.')) {
                return -1;
            }
        }
        if (p == end || p - h < 3
            || (size_t)(p - h) - 1 > WS_ORIGIN_MAX_IPV6) {
            return -1;
        }
        ++p;                    /* the ']' */
        o->ipv6 = 1;
        o->host = h + 1;
        o->host_len = (size_t)(p - h) - 2;
    }
    else {
        while (p < end && *p != ':') {
            ++p;
        }
        if (allow_wildcard && p - h > 2 && h[0] == '*' && h[1] == '.') {
            o->wildcard = 1;
            h += 2;
        }
        if (!valid_name(h, (size_t)(p - h))) {
            return -1;          /* also userinfo, paths, empty hosts */
        }
        o->host = h;
        o->host_len = (size_t)(p - h);
    }
    if (p < end) {
        if (*p++ != ':') {
            return -1;
        }
        for (; p < end && *p >= '0' && *p <= '9' && digits < 5; ++p, ++digits) {
            port = port * 10 + (unsigned long)(*p - '0');
        }
        if (digits == 0 || p != end || port == 0 || port > 65535) {
            return -1;
        }
        o->port = (unsigned)port;
    }
    else {
        o->port = o->https ? 443 : 80;
    }
    return 0;
}

/* ---- SipHash-2-4 -------------------------------------------------------- */

#define ROTL64(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))

#define SIPROUND do {                                                   \
        v0 += v1; v1 = ROTL64(v1, 13); v1 ^= v0; v0 = ROTL64(v0, 32);  \
        v2 += v3; v3 = ROTL64(v3, 16); v3 ^= v2;                        \
        v0 += v3; v3 = ROTL64(v3, 21); v3 ^= v0;                        \
        v2 += v1; v1 = ROTL64(v1, 17); v1 ^= v2; v2 = ROTL64(v2, 32);   \
    } while (0)

static uint64_t load64_le(const uint8_t *p)
{
    return (uint64_t)p[0] | (uint64_t)p[1] << 8 | (uint64_t)p[2] << 16
           | (uint64_t)p[3] << 24 | (uint64_t)p[4] << 32
           | (uint64_t)p[5] << 40 | (uint64_t)p[6] << 48
           | (uint64_t)p[7] << 56;
}

uint64_t ws_siphash24(const uint8_t key[16], const uint8_t *in, size_t len)
{
    uint64_t k0 = load64_le(key), k1 = load64_le(key + 8);
    uint64_t v0 = k0 ^ UINT64_C(0x736f6d6570736575);
    uint64_t v1 = k1 ^ UINT64_C(0x646f72616e646f6d);
    uint64_t v2 = k0 ^ UINT64_C(0x6c7967656e657261);
    uint64_t v3 = k1 ^ UINT64_C(0x7465646279746573);
    uint64_t m, b = (uint64_t)len << 56;
    size_t i, tail = len & 7;
    const uint8_t *end = in + (len - tail);

    for (; in != end; in += 8) {
        m = load64_le(in);
        v3 ^= m;
        SIPROUND;
        SIPROUND;
        v0 ^= m;
    }
    for (i = 0; i < tail; ++i) {
        b |= (uint64_t)in[i] << (8 * i);
    }
    v3 ^= b;
    SIPROUND;
    SIPROUND;
    v0 ^= b;
    v2 ^= 0xff;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    return v0 ^ v1 ^ v2 ^ v3;
}
