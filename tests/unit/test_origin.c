/*
 * test_origin.c -- the origin parser (WebSocketOrigin) and SipHash-2-4
 * (the keyed hash of the per-address table).
 */
#include <stdint.h>
#include <string.h>

#include "harness.h"
#include "ws_core.h"

static void good(const char *s, int wild, int https, const char *host,
                 int ipv6, int wildcard, unsigned port, int line)
{
    ws_origin o;

    if (ws_origin_parse(s, strlen(s), wild, &o) != 0) {
        unit_fail(__FILE__, line, "'%s' refused", s);
        return;
    }
    if (o.https != https || o.ipv6 != ipv6 || o.wildcard != wildcard
        || o.port != port || o.host_len != strlen(host)
        || memcmp(o.host, host, o.host_len)) {
        unit_fail(__FILE__, line, "'%s': https %d ipv6 %d wildcard %d "
                  "host '%.*s' port %u", s, o.https, o.ipv6, o.wildcard,
                  (int)o.host_len, o.host, o.port);
        return;
    }
    unit_passed++;
}

static void bad(const char *s, int wild, int line)
{
    ws_origin o;

    if (ws_origin_parse(s, strlen(s), wild, &o) == 0) {
        unit_fail(__FILE__, line, "'%s' accepted", s);
        return;
    }
    unit_passed++;
}

#define GOOD(s, w, https, host, v6, wc, port) \
    good(s, w, https, host, v6, wc, port, __LINE__)
#define BAD(s, w) bad(s, w, __LINE__)

static void test_origin_parse(void)
{
    char big[400];

    GOOD("http://localhost", 0, 0, "localhost", 0, 0, 80);
    GOOD("https://localhost", 0, 1, "localhost", 0, 0, 443);
    GOOD("HTTPS://Example.COM:8443", 0, 1, "Example.COM", 0, 0, 8443);
    GOOD("http://127.0.0.1:8080", 0, 0, "127.0.0.1", 0, 0, 8080);
    GOOD("http://a:1", 0, 0, "a", 0, 0, 1);
    GOOD("http://a:65535", 0, 0, "a", 0, 0, 65535);
    GOOD("http://a:80", 0, 0, "a", 0, 0, 80);
    GOOD("https://a:443", 0, 1, "a", 0, 0, 443);
    GOOD("http://my_host-1.example", 0, 0, "my_host-1.example", 0, 0, 80);
    GOOD("http://[::1]:8080", 0, 0, "::1", 1, 0, 8080);
    GOOD("https://[2001:DB8::1]", 0, 1, "2001:DB8::1", 1, 0, 443);
    GOOD("http://[::ffff:127.0.0.1]", 0, 0, "::ffff:127.0.0.1", 1, 0, 80);
    GOOD("http://*.example.com:8080", 1, 0, "example.com", 0, 1, 8080);
    GOOD("https://*.example.com", 1, 1, "example.com", 0, 1, 443);
    /* a "*." only counts where patterns are allowed */
    BAD("http://*.example.com", 0);
    BAD("http://*.", 1);
    BAD("http://*", 1);
    BAD("http://a.*.example.com", 1);
    BAD("http://[*.::1]", 1);

    BAD("", 0);
    BAD("null", 0);
    BAD("http", 0);
    BAD("http:/a", 0);
    BAD("http://", 0);
    BAD("http://:80", 0);
    BAD("ftp://a", 0);
    BAD("file://", 0);
    BAD("chrome-extension://abc", 0);
    BAD("ws://a", 0);
    BAD("http://a/", 0);               /* path */
    BAD("http://a/x", 0);
    BAD("http://a:80/", 0);
    BAD("http://a?x", 0);
    BAD("http://a#x", 0);
    BAD("http://u@a", 0);              /* userinfo */
    BAD("http://u:p@a", 0);
    BAD("http://a@evil.example", 0);
    BAD("http://a:", 0);               /* empty port */
    BAD("http://a:0", 0);
    BAD("http://a:65536", 0);
    BAD("http://a:123456", 0);
    BAD("http://a:99999999999999999999", 0);
    BAD("http://a:+80", 0);
    BAD("http://a:80:80", 0);
    BAD("http://a:8x", 0);
    BAD("http://.a", 0);               /* empty labels */
    BAD("http://a.", 0);
    BAD("http://a..b", 0);
    BAD("http://a b", 0);
    BAD("http://a\tb", 0);
    BAD(" http://a", 0);
    BAD("http://a ", 0);
    BAD("http://a%2eb", 0);
    BAD("http://[::1", 0);
    BAD("http://[]", 0);
    BAD("http://[:]", 0);
    BAD("http://[::1]x", 0);
    BAD("http://[::1]:", 0);
    BAD("http://[fe80::1%25eth0]", 0); /* zone id */
    BAD("http://[::g]", 0);
    BAD("http://::1", 0);
    /* longer than any IPv6 text (45); shorter nonsense such as "[1:::2]"
     * passes here and is refused by inet_pton() in the module */
    BAD("http://[0000:0000:0000:0000:0000:0000:0000:0000:0000:0000]", 0);

    /* embedded NUL: the length counts, not the terminator */
    {
        ws_origin o;
        CHECK(ws_origin_parse("http://a\0.evil", 14, 0, &o) != 0);
        CHECK(ws_origin_parse("http://a", 8, 0, &o) == 0);
        CHECK(ws_origin_parse("http://ab", 8, 0, &o) == 0 && o.host_len == 1);
    }
    /* host length bound: 253 characters pass, 254 do not */
    memcpy(big, "http://", 7);
    memset(big + 7, 'a', 253);
    big[7 + 63] = big[7 + 127] = big[7 + 191] = '.';
    big[7 + 253] = '\0';
    GOOD(big, 0, 0, big + 7, 0, 0, 80);
    big[7 + 253] = 'a';
    big[7 + 254] = '\0';
    BAD(big, 0);
}

static void test_siphash(void)
{
    /* the reference vectors of the SipHash paper (appendix A) and its
     * implementation's vectors.h: key 00..0f, message 00..(len-1) */
    static const uint64_t want[] = {
        UINT64_C(0x726fdb47dd0e0e31),   /* len 0 */
        UINT64_C(0x74f839c593dc67fd),   /* len 1 */
        UINT64_C(0x0d6c8009d9a94f5a),   /* len 2 */
    };
    uint8_t key[16], msg[64];
    size_t i;

    for (i = 0; i < 16; ++i) {
        key[i] = (uint8_t)i;
    }
    for (i = 0; i < sizeof(msg); ++i) {
        msg[i] = (uint8_t)i;
    }
    for (i = 0; i < sizeof(want) / sizeof(want[0]); ++i) {
        CHECK_EQ(ws_siphash24(key, msg, i), want[i]);
    }
    CHECK_EQ(ws_siphash24(key, msg, 15), UINT64_C(0xa129ca6149be45e5));
    CHECK_EQ(ws_siphash24(key, msg, 8), UINT64_C(0x93f5f5799a932462));
    /* checked with `openssl mac -macopt hexkey:000102...0f -macopt size:8
     * SIPHASH` (it prints the 8 bytes little-endian first) */
    CHECK_EQ(ws_siphash24(key, msg, 17), UINT64_C(0x699ae9f52cbe4794));
    CHECK_EQ(ws_siphash24(key, msg, 63), UINT64_C(0x958a324ceb064572));
    /* another key, another value */
    key[0] ^= 1;
    CHECK(ws_siphash24(key, msg, 15) != UINT64_C(0xa129ca6149be45e5));
}

void test_origin(void)
{
    test_origin_parse();
    test_siphash();
}
