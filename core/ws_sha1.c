/*
 * ws_sha1.c -- SHA-1 (FIPS 180-4) and base64 (RFC 4648 section 4), just
 * enough for Sec-WebSocket-Accept.  SHA-1 is used here only because RFC
 * 6455 mandates it for the handshake; it has no security role.
 */

#include <string.h>

#include "ws_core.h"

#define ROL32(x, n) (((x) << (n)) | ((x) >> (32 - (n))))

static uint32_t load_be32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16)
           | ((uint32_t)p[2] << 8) | (uint32_t)p[3];
}

static void store_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static void sha1_block(uint32_t h[5], const uint8_t blk[64])
{
    uint32_t w[80];
    uint32_t a, b, c, d, e, f, k, t;
    int i;

    for (i = 0; i < 16; i++) {
        w[i] = load_be32(blk + 4 * i);
    }
    for (i = 16; i < 80; i++) {
        t = w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16];
        w[i] = ROL32(t, 1);
    }
    a = h[0];
    b = h[1];
    c = h[2];
    d = h[3];
    e = h[4];
    for (i = 0; i < 80; i++) {
        if (i < 20) {
            f = (b & c) | (~b & d);
            k = 0x5A827999u;
        }
        else if (i < 40) {
            f = b ^ c ^ d;
            k = 0x6ED9EBA1u;
        }
        else if (i < 60) {
            f = (b & c) | (b & d) | (c & d);
            k = 0x8F1BBCDCu;
        }
        else {
            f = b ^ c ^ d;
            k = 0xCA62C1D6u;
        }
        t = ROL32(a, 5) + f + e + k + w[i];
        e = d;
        d = c;
        c = ROL32(b, 30);
        b = a;
        a = t;
    }
    h[0] += a;
    h[1] += b;
    h[2] += c;
    h[3] += d;
    h[4] += e;
}

void ws_sha1(const uint8_t *data, size_t len, uint8_t digest[20])
{
    uint32_t h[5] = {
        0x67452301u, 0xEFCDAB89u, 0x98BADCFEu, 0x10325476u, 0xC3D2E1F0u
    };
    uint8_t last[128];
    size_t full = len & ~(size_t)63;
    size_t rest = len - full;
    size_t tail_len, i;
    uint64_t bits = (uint64_t)len * 8;

    for (i = 0; i < full; i += 64) {
        sha1_block(h, data + i);
    }
    /* padding: 0x80, zeros, 64-bit big-endian bit length */
    memset(last, 0, sizeof(last));
    if (rest > 0) {
        memcpy(last, data + full, rest);
    }
    last[rest] = 0x80;
    tail_len = rest < 56 ? 64 : 128;
    for (i = 0; i < 8; i++) {
        last[tail_len - 1 - i] = (uint8_t)(bits >> (8 * i));
    }
    sha1_block(h, last);
    if (tail_len == 128) {
        sha1_block(h, last + 64);
    }
    for (i = 0; i < 5; i++) {
        store_be32(digest + 4 * i, h[i]);
    }
}

static const char b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/*
 * out must hold 4 * ((len + 2) / 3) bytes; no NUL is written.  Returns the
 * number of characters written.
 */
size_t ws_base64_encode(const uint8_t *in, size_t len, char *out)
{
    size_t i = 0, o = 0;
    uint32_t v;

    while (len - i >= 3) {
        v = ((uint32_t)in[i] << 16) | ((uint32_t)in[i + 1] << 8) | in[i + 2];
        out[o++] = b64_alphabet[(v >> 18) & 63];
        out[o++] = b64_alphabet[(v >> 12) & 63];
        out[o++] = b64_alphabet[(v >> 6) & 63];
        out[o++] = b64_alphabet[v & 63];
        i += 3;
    }
    if (len - i == 1) {
        v = (uint32_t)in[i] << 16;
        out[o++] = b64_alphabet[(v >> 18) & 63];
        out[o++] = b64_alphabet[(v >> 12) & 63];
        out[o++] = '=';
        out[o++] = '=';
    }
    else if (len - i == 2) {
        v = ((uint32_t)in[i] << 16) | ((uint32_t)in[i + 1] << 8);
        out[o++] = b64_alphabet[(v >> 18) & 63];
        out[o++] = b64_alphabet[(v >> 12) & 63];
        out[o++] = b64_alphabet[(v >> 6) & 63];
        out[o++] = '=';
    }
    return o;
}

/* value of a base64 character, or -1 */
static int b64_value(char ch)
{
    if (ch >= 'A' && ch <= 'Z') {
        return ch - 'A';
    }
    if (ch >= 'a' && ch <= 'z') {
        return ch - 'a' + 26;
    }
    if (ch >= '0' && ch <= '9') {
        return ch - '0' + 52;
    }
    if (ch == '+') {
        return 62;
    }
    if (ch == '/') {
        return 63;
    }
    return -1;
}

/*
 * Strict decoding: the length is a multiple of 4, padding appears only as
 * the last one or two characters, there are no other characters outside
 * the alphabet, and the bits dropped by the padding are zero (so every
 * byte string has exactly one accepted encoding).
 */
long ws_base64_decode(const char *in, size_t len, uint8_t *out, size_t cap)
{
    size_t i, o = 0;

    if (len % 4 != 0 || (in == NULL && len > 0)) {
        return -1;
    }
    for (i = 0; i < len; i += 4) {
        int v0 = b64_value(in[i]);
        int v1 = b64_value(in[i + 1]);
        int v2, v3;
        int last = (i + 4 == len);

        if (v0 < 0 || v1 < 0) {
            return -1;
        }
        if (last && in[i + 2] == '=' && in[i + 3] == '=') {
            if (v1 & 0x0F) {
                return -1;
            }
            if (o + 1 > cap) {
                return -1;
            }
            out[o++] = (uint8_t)((v0 << 2) | (v1 >> 4));
            break;
        }
        v2 = b64_value(in[i + 2]);
        if (v2 < 0) {
            return -1;
        }
        if (last && in[i + 3] == '=') {
            if (v2 & 0x03) {
                return -1;
            }
            if (o + 2 > cap) {
                return -1;
            }
            out[o++] = (uint8_t)((v0 << 2) | (v1 >> 4));
            out[o++] = (uint8_t)(((v1 & 0x0F) << 4) | (v2 >> 2));
            break;
        }
        v3 = b64_value(in[i + 3]);
        if (v3 < 0) {
            return -1;
        }
        if (o + 3 > cap) {
            return -1;
        }
        out[o++] = (uint8_t)((v0 << 2) | (v1 >> 4));
        out[o++] = (uint8_t)(((v1 & 0x0F) << 4) | (v2 >> 2));
        out[o++] = (uint8_t)(((v2 & 0x03) << 6) | v3);
    }
    return (long)o;
}
