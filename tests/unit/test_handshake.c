/*
 * test_handshake.c -- key validation, accept value, SHA-1, base64, tokens.
 */
#include <stdint.h>
#include <string.h>

#include "harness.h"
#include "ws_core.h"

static void hex(const uint8_t *d, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    size_t i;

    for (i = 0; i < n; i++) {
        out[2 * i] = digits[d[i] >> 4];
        out[2 * i + 1] = digits[d[i] & 15];
    }
    out[2 * n] = '\0';
}

static void check_sha1(const void *data, size_t len, const char *want,
                       int line)
{
    uint8_t dg[20];
    char h[41];

    ws_sha1((const uint8_t *)data, len, dg);
    hex(dg, 20, h);
    if (strcmp(h, want) != 0) {
        unit_fail(__FILE__, line, "sha1(%zu bytes) = %s, want %s", len, h,
                  want);
    }
    else {
        unit_passed++;
    }
}

static void test_sha1(void)
{
    static uint8_t big[1000000];
    uint8_t buf[200];
    size_t i;

    check_sha1("", 0, "da39a3ee5e6b4b0d3255bfef95601890afd80709", __LINE__);
    check_sha1("abc", 3, "a9993e364706816aba3e25717850c26c9cd0d89d",
               __LINE__);
    check_sha1("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", 56,
               "84983e441c3bd26ebaae4aa1f95129e5e54670f1", __LINE__);
    memset(big, 'a', sizeof(big));
    check_sha1(big, sizeof(big), "34aa973cd4c4daa4f61eeb2bdbad27316534016f",
               __LINE__);
    /* padding boundaries: bytes 0, 1, 2, ... (values from python hashlib) */
    for (i = 0; i < sizeof(buf); i++) {
        buf[i] = (uint8_t)i;
    }
    check_sha1(buf, 55, "8ae2d46729cfe68ff927af5eec9c7d1b66d65ac2", __LINE__);
    check_sha1(buf, 56, "636e2ec698dac903498e648bd2f3af641d3c88cb", __LINE__);
    check_sha1(buf, 63, "6d942da0c4392b123528f2905c713a3ce28364bd", __LINE__);
    check_sha1(buf, 64, "c6138d514ffa2135bfce0ed0b8fac65669917ec7", __LINE__);
    check_sha1(buf, 65, "69bd728ad6e13cd76ff19751fde427b00e395746", __LINE__);
    check_sha1(buf, 128, "e6434bc401f98603d7eda504790c98c67385d535", __LINE__);
}

static void test_base64(void)
{
    static const char *plain[] = {
        "", "f", "fo", "foo", "foob", "fooba", "foobar"
    };
    static const char *enc[] = {
        "", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"
    };
    static const char *bad[] = {
        "Zg=", "Zg", "Zg===", "Zh==", "ZI==", "ZE==", "Zm+=", "Zm/=", "Zm9=", "Z===", "====", "=Zg=",
        "Zm9v\n", " Zm9v", "Zg==Zg==", "Zm-v", "Zm_v", "Zm9v YmFy", "Zg=A"
    };
    char out[64];
    uint8_t dec[64];
    size_t i, n;
    long d;

    for (i = 0; i < 7; i++) {
        n = ws_base64_encode((const uint8_t *)plain[i], strlen(plain[i]),
                             out);
        CHECK_MEM(out, n, enc[i], strlen(enc[i]));
        d = ws_base64_decode(enc[i], strlen(enc[i]), dec, sizeof(dec));
        CHECK_EQ(d, strlen(plain[i]));
        if (d >= 0) {
            CHECK_MEM(dec, (size_t)d, plain[i], strlen(plain[i]));
        }
    }
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        d = ws_base64_decode(bad[i], strlen(bad[i]), dec, sizeof(dec));
        if (d != -1) {
            unit_fail(__FILE__, __LINE__, "decode(\"%s\") = %ld, want -1",
                      bad[i], d);
        }
        else {
            unit_passed++;
        }
    }
    /* capacity is respected */
    CHECK_EQ(ws_base64_decode("Zm9vYmFy", 8, dec, 5), -1);
    CHECK_EQ(ws_base64_decode("Zm9vYmFy", 8, dec, 6), 6);
    CHECK_EQ(ws_base64_decode("Zm9vYg==", 8, dec, 3), -1);
    /* every byte value round-trips */
    for (i = 0; i < 48; i++) {
        dec[i] = (uint8_t)(i * 5 + 251);
    }
    for (i = 0; i <= 48; i++) {
        uint8_t back[64];
        n = ws_base64_encode(dec, i, out);
        CHECK_EQ(n, 4 * ((i + 2) / 3));
        CHECK_EQ(ws_base64_decode(out, n, back, sizeof(back)), i);
        CHECK_MEM(back, i, dec, i);
    }
}

static void test_keys(void)
{
    static const char *bad[] = {
        "",
        "dGhlIHNhbXBsZSBub25jZQ=",    /* 23 */
        "dGhlIHNhbXBsZSBub25jZQ===",  /* 25 */
        "dGhlIHNhbXBsZSBub25jZR==",   /* non-zero trailing bits */
        "dGhlIHNhbXBsZSBub25jZY==",
        "dGhlIHNhbXBsZSBub25jZQ=A",   /* padding not at the end */
        "dGhlIHNhbXBsZSBub25j!Q==",   /* not in the alphabet */
        "dGhlIHNhbXBsZSBub25j-Q==",   /* URL-safe alphabet */
        " dGhlIHNhbXBsZSBub25jZQ==",  /* leading space */
        "dGhlIHNhbXBsZSBub25jZQ== ",  /* trailing space */
        "dGhlIHNhbXBsZSBub25jZQ==\t",
        "dGhlIHNhbXBsZSBub25jZQ",     /* no padding */
        "AAAAAAAAAAAAAAAAAAAAAAAA",   /* 18 bytes, no padding */
    };
    uint8_t raw[17];
    char key[40];
    size_t i, n;

    CHECK(ws_handshake_key_valid("dGhlIHNhbXBsZSBub25jZQ=="));
    CHECK(ws_handshake_key_valid("AAAAAAAAAAAAAAAAAAAAAA=="));
    CHECK(ws_handshake_key_valid("/////////////////////w=="));
    CHECK(!ws_handshake_key_valid(NULL));
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (ws_handshake_key_valid(bad[i])) {
            unit_fail(__FILE__, __LINE__, "key \"%s\" accepted", bad[i]);
        }
        else {
            unit_passed++;
        }
    }
    memset(raw, 0x5C, sizeof(raw));
    /* 16 bytes: valid */
    n = ws_base64_encode(raw, 16, key);
    key[n] = '\0';
    CHECK_EQ(n, 24);
    CHECK(ws_handshake_key_valid(key));
    /* 15 bytes encode to 20 characters */
    n = ws_base64_encode(raw, 15, key);
    key[n] = '\0';
    CHECK(!ws_handshake_key_valid(key));
    /* 17 bytes encode to 24 characters too, with one '=' */
    n = ws_base64_encode(raw, 17, key);
    key[n] = '\0';
    CHECK_EQ(n, 24);
    CHECK(!ws_handshake_key_valid(key));
}

static void test_accept(void)
{
    char out[WS_ACCEPT_LEN + 8];

    memset(out, 'X', sizeof(out));
    /* RFC 6455 section 1.3 (confirmed with python hashlib) */
    ws_handshake_accept("dGhlIHNhbXBsZSBub25jZQ==", out);
    CHECK_STR(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    CHECK_EQ(out[WS_ACCEPT_LEN + 1], 'X');
    /* a second key, value computed with python hashlib */
    ws_handshake_accept("x3JJHMbDL1EzLkh9GBhXDw==", out);
    CHECK_STR(out, "HSmrc0sMlYUkAGmm5OPpG2HaGWk=");
}

static void test_tokens(void)
{
    const char *pos, *tok;
    size_t tl;

    CHECK(ws_token_list_has("keep-alive, Upgrade", "upgrade"));
    CHECK(ws_token_list_has(" upgrade ", "Upgrade"));
    CHECK(ws_token_list_has("Upgrade,", "upgrade"));
    CHECK(ws_token_list_has("\tUpgrade\t,foo", "upgrade"));
    CHECK(ws_token_list_has("foo,\t UPGRADE", "upgrade"));
    CHECK(ws_token_list_has(",,upgrade,,", "upgrade"));
    CHECK(!ws_token_list_has(",,", "upgrade"));
    CHECK(!ws_token_list_has("", "upgrade"));
    CHECK(!ws_token_list_has("upgrade2", "upgrade"));
    CHECK(!ws_token_list_has("upgrad", "upgrade"));
    CHECK(!ws_token_list_has("keep-alive", "upgrade"));
    CHECK(!ws_token_list_has("up grade", "upgrade"));
    CHECK(!ws_token_list_has(NULL, "upgrade"));
    CHECK(ws_token_list_has("permessage-deflate; client_max_window_bits, x",
                            "x"));

    pos = "a, b ,,\tc\t,";
    CHECK(ws_token_next(&pos, &tok, &tl));
    CHECK_MEM(tok, tl, "a", 1);
    CHECK(ws_token_next(&pos, &tok, &tl));
    CHECK_MEM(tok, tl, "b", 1);
    CHECK(ws_token_next(&pos, &tok, &tl));
    CHECK_MEM(tok, tl, "c", 1);
    CHECK(!ws_token_next(&pos, &tok, &tl));
    CHECK(!ws_token_next(&pos, &tok, &tl));
    pos = ",, \t ,";
    CHECK(!ws_token_next(&pos, &tok, &tl));
    pos = "chat.example, superchat v2";
    CHECK(ws_token_next(&pos, &tok, &tl));
    CHECK_MEM(tok, tl, "chat.example", 12);
    CHECK(ws_token_next(&pos, &tok, &tl));
    CHECK_MEM(tok, tl, "superchat v2", 12);
    CHECK(!ws_token_next(&pos, &tok, &tl));
}

void test_handshake(void)
{
    test_sha1();
    test_base64();
    test_keys();
    test_accept();
    test_tokens();
}
