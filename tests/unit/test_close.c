/*
 * test_close.c -- close codes, close payload parsing and building.
 */
#include <stdint.h>
#include <string.h>

#include "harness.h"
#include "ws_core.h"

static void test_codes(void)
{
    static const struct {
        unsigned code;
        int valid;
    } cases[] = {
        {0, 0}, {999, 0}, {1000, 1}, {1001, 1}, {1002, 1}, {1003, 1},
        {1004, 0}, {1005, 0}, {1006, 0}, {1007, 1}, {1008, 1}, {1009, 1},
        {1010, 1}, {1011, 1}, {1012, 0}, {1013, 0}, {1014, 0}, {1015, 0},
        {1016, 0}, {2000, 0}, {2999, 0}, {3000, 1}, {3999, 1}, {4000, 1},
        {4999, 1}, {5000, 0}, {65535, 0}, {65536 + 1000, 0}
    };
    size_t i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        if (ws_close_code_valid(cases[i].code) != cases[i].valid) {
            unit_fail(__FILE__, __LINE__, "code %u: want %d", cases[i].code,
                      cases[i].valid);
        }
        else {
            unit_passed++;
        }
    }
}

static ws_status parse(const uint8_t *p, size_t n, unsigned *code,
                       const uint8_t **r, size_t *rl, unsigned *err)
{
    *code = 7;
    *err = 7;
    *r = (const uint8_t *)"x";
    *rl = 99;
    return ws_close_parse(p, n, code, r, rl, err);
}

static void test_parse(void)
{
    uint8_t buf[200];
    unsigned code, err;
    const uint8_t *r;
    size_t rl;

    /* 0 bytes: no status */
    CHECK_EQ(parse(buf, 0, &code, &r, &rl, &err), WS_OK);
    CHECK_EQ(code, WS_CLOSE_NO_STATUS);
    CHECK_EQ(rl, 0);
    /* 1 byte: protocol error */
    buf[0] = 0x03;
    CHECK_EQ(parse(buf, 1, &code, &r, &rl, &err), WS_ERR_PROTO);
    CHECK_EQ(err, WS_CLOSE_PROTOCOL_ERROR);
    /* 2 bytes */
    buf[0] = 0x03;
    buf[1] = 0xE8;
    CHECK_EQ(parse(buf, 2, &code, &r, &rl, &err), WS_OK);
    CHECK_EQ(code, 1000);
    CHECK_EQ(rl, 0);
    buf[1] = 0xED;   /* 1005 may not be sent */
    CHECK_EQ(parse(buf, 2, &code, &r, &rl, &err), WS_ERR_PROTO);
    CHECK_EQ(err, WS_CLOSE_PROTOCOL_ERROR);
    buf[1] = 0xEE;   /* 1006 */
    CHECK_EQ(parse(buf, 2, &code, &r, &rl, &err), WS_ERR_PROTO);
    CHECK_EQ(err, WS_CLOSE_PROTOCOL_ERROR);
    buf[0] = 0x03;
    buf[1] = 0xE7;   /* 999 */
    CHECK_EQ(parse(buf, 2, &code, &r, &rl, &err), WS_ERR_PROTO);
    buf[0] = 0x0F;
    buf[1] = 0xA0;   /* 4000 */
    CHECK_EQ(parse(buf, 2, &code, &r, &rl, &err), WS_OK);
    CHECK_EQ(code, 4000);
    buf[0] = 0x13;
    buf[1] = 0x88;   /* 5000 */
    CHECK_EQ(parse(buf, 2, &code, &r, &rl, &err), WS_ERR_PROTO);
    CHECK_EQ(err, WS_CLOSE_PROTOCOL_ERROR);
    /* 125 bytes: code + 123 bytes of reason */
    buf[0] = 0x03;
    buf[1] = 0xE9;
    memset(buf + 2, 'r', 123);
    CHECK_EQ(parse(buf, 125, &code, &r, &rl, &err), WS_OK);
    CHECK_EQ(code, 1001);
    CHECK_EQ(rl, 123);
    CHECK(r == buf + 2);
    /* longer than a control frame allows */
    CHECK_EQ(parse(buf, 126, &code, &r, &rl, &err), WS_ERR_PROTO);
    CHECK_EQ(err, WS_CLOSE_PROTOCOL_ERROR);
    /* multi-byte reason */
    memcpy(buf + 2, "bye \xe2\x82\xac", 7);
    CHECK_EQ(parse(buf, 9, &code, &r, &rl, &err), WS_OK);
    CHECK_MEM(r, rl, "bye \xe2\x82\xac", 7);
    /* reason not UTF-8: 1007 */
    memcpy(buf + 2, "ok\xc0\x80", 4);
    CHECK_EQ(parse(buf, 6, &code, &r, &rl, &err), WS_ERR_PROTO);
    CHECK_EQ(err, WS_CLOSE_INVALID_DATA);
    memcpy(buf + 2, "\xed\xa0\x80", 3);
    CHECK_EQ(parse(buf, 5, &code, &r, &rl, &err), WS_ERR_PROTO);
    CHECK_EQ(err, WS_CLOSE_INVALID_DATA);
    /* reason cut inside a character: 1007 */
    memcpy(buf + 2, "\xe2\x82", 2);
    CHECK_EQ(parse(buf, 4, &code, &r, &rl, &err), WS_ERR_PROTO);
    CHECK_EQ(err, WS_CLOSE_INVALID_DATA);
    /* invalid code wins over bad reason: 1002 */
    buf[0] = 0x03;
    buf[1] = 0xEC;   /* 1004 */
    CHECK_EQ(parse(buf, 4, &code, &r, &rl, &err), WS_ERR_PROTO);
    CHECK_EQ(err, WS_CLOSE_PROTOCOL_ERROR);
}

static void check_build(unsigned code, const char *reason, size_t rlen,
                        size_t want_reason_len, int line)
{
    uint8_t out[WS_MAX_CONTROL_PAYLOAD + 8];
    size_t n;
    unsigned pcode, err;
    const uint8_t *r;
    size_t rl;

    memset(out, 0xAA, sizeof(out));
    n = ws_close_build(out, code, reason, rlen);
    if (n != 2 + want_reason_len || n > WS_MAX_CONTROL_PAYLOAD
        || out[n] != 0xAA) {
        unit_fail(__FILE__, line, "build: length %zu, want %zu", n,
                  2 + want_reason_len);
        return;
    }
    if (out[0] != (code >> 8) || out[1] != (code & 0xFF)
        || memcmp(out + 2, reason, want_reason_len) != 0) {
        unit_fail(__FILE__, line, "build: wrong bytes");
        return;
    }
    /* what we build, we parse back (for valid codes and UTF-8 reasons) */
    if (ws_close_parse(out, n, &pcode, &r, &rl, &err) != WS_OK
        || pcode != code || rl != want_reason_len) {
        unit_fail(__FILE__, line, "build: does not parse back");
        return;
    }
    unit_passed++;
}

static void test_build(void)
{
    char reason[300];
    uint8_t out[WS_MAX_CONTROL_PAYLOAD];
    size_t i;

    /* code 0: empty payload */
    CHECK_EQ(ws_close_build(out, 0, "ignored", 7), 0);
    check_build(1000, "", 0, 0, __LINE__);
    CHECK_EQ(ws_close_build(out, 1000, NULL, 0), 2);
    check_build(1001, "bye", 3, 3, __LINE__);
    /* ASCII: cut at 123 */
    memset(reason, 'a', sizeof(reason));
    check_build(1000, reason, 200, 123, __LINE__);
    check_build(1000, reason, 123, 123, __LINE__);
    check_build(1000, reason, 124, 123, __LINE__);
    /* 122 ASCII + 2-byte char = 124 bytes: the char is dropped whole */
    memcpy(reason + 122, "\xc3\xa9", 2);
    check_build(1000, reason, 124, 122, __LINE__);
    /* 121 ASCII + 2-byte char = 123 bytes: fits exactly */
    memset(reason, 'a', sizeof(reason));
    memcpy(reason + 121, "\xc3\xa9", 2);
    check_build(1000, reason, 123, 123, __LINE__);
    /* 121 ASCII + 3-byte char = 124 bytes: cut to 121 */
    memcpy(reason + 121, "\xe2\x82\xac", 3);
    check_build(3000, reason, 124, 121, __LINE__);
    /* 120 ASCII + 4-byte char straddling 123 */
    memset(reason, 'a', sizeof(reason));
    memcpy(reason + 120, "\xf0\x9d\x84\x9e", 4);
    check_build(4999, reason, 124, 120, __LINE__);
    /* 41 x 3-byte char = 123 bytes fit; 42 are cut to 41 */
    for (i = 0; i < 42; i++) {
        memcpy(reason + 3 * i, "\xe2\x82\xac", 3);
    }
    check_build(1000, reason, 123, 123, __LINE__);
    check_build(1000, reason, 126, 123, __LINE__);
    /* 2-byte chars: 61 of them = 122 bytes, the 62nd would cross 123 */
    for (i = 0; i < 70; i++) {
        memcpy(reason + 2 * i, "\xc3\xa9", 2);
    }
    check_build(1000, reason, 140, 122, __LINE__);
    /* not UTF-8: a run of continuation bytes is cut at 123, not emptied */
    memset(reason, 0x80, sizeof(reason));
    reason[0] = 'a';
    CHECK_EQ(ws_close_build(out, 1000, reason, 200), 125);
    CHECK_MEM(out + 2, 123, reason, 123);
}

void test_close(void)
{
    test_codes();
    test_parse();
    test_build();
}
