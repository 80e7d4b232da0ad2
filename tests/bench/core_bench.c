/*
 * core_bench.c -- instructions per echoed message in the protocol core.
 *
 * Build and measure (from the repository root):
 *
 *   gcc -O2 -Icore -o /tmp/core_bench core/ws_*.c tests/bench/core_bench.c
 *   /tmp/core_bench measure
 *
 * "measure" runs every case under callgrind twice, with N1 and N2 messages
 * (20,000 and 100,000; 1,000 and 5,000 for the 16 KiB cases), and prints
 * (Ir(N2) - Ir(N1)) / (N2 - N1): instructions per message with every
 * per-run cost cancelled out.  Two columns:
 *
 *   core   only ws_parser_feed() and ws_frame_header() (and what they call):
 *          valgrind --tool=callgrind --callgrind-out-file=/dev/null \
 *              --toggle-collect=ws_parser_feed \
 *              --toggle-collect=ws_frame_header /tmp/core_bench run CASE N
 *   +loop  all of bench_message(), i.e. also the caller's loop around them
 *          (what mws_conn.c process() does besides):
 *          valgrind --tool=callgrind --callgrind-out-file=/dev/null \
 *              --toggle-collect=bench_message /tmp/core_bench run CASE N
 *
 * By hand, e.g.:
 *   for n in 20000 100000; do valgrind --tool=callgrind \
 *     --callgrind-out-file=/dev/null --toggle-collect=ws_parser_feed \
 *     --toggle-collect=ws_frame_header /tmp/core_bench run bin64 $n 2>&1 \
 *     | grep Collected; done
 *
 * bench_message() is what the glue (mws_conn.c process()) does for one
 * message that arrived in reads of up to 16 KiB: ws_parser_feed() until
 * WS_NEED_MORE for every read (so the last call of each read has len 0),
 * then one ws_frame_header() for the (unmasked) reply.  Restoring the
 * masked input between messages happens outside it and is not counted.
 *
 * Cases: bin64 / text64 (64-byte masked binary / ASCII text frame, 6-byte
 * header), text64u (64-byte text with 2-, 3- and 4-byte UTF-8 sequences),
 * bin16k / text16k (16 KiB frame, 8-byte header, arriving as a 16384-byte
 * read and an 8-byte read, as with the glue's 16 KiB buffer).
 * "run" without callgrind also works (it checks the result once), and
 * "time CASE N" prints wall-clock ns per message.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ws_core.h"

#define READ_MAX 16384

typedef struct {
    const char *name;
    ws_opcode op;
    size_t len;
    int utf8;        /* 0 ASCII, 1 mixed multi-byte */
} bench_case;

static const bench_case cases[] = {
    {"bin64",   WS_OP_BINARY, 64,    0},
    {"text64",  WS_OP_TEXT,   64,    0},
    {"text64u", WS_OP_TEXT,   64,    1},
    {"bin16k",  WS_OP_BINARY, 16384, 0},
    {"text16k", WS_OP_TEXT,   16384, 0},
};
#define NCASES (sizeof(cases) / sizeof(cases[0]))

static volatile size_t sink;

size_t bench_message(ws_parser *p, uint8_t *buf, size_t len, uint8_t *out);

/* One message as the glue handles it: every read fed until WS_NEED_MORE,
 * then the reply's header.  Returns the bytes of message data seen. */
__attribute__((noinline))
size_t bench_message(ws_parser *p, uint8_t *buf, size_t len, uint8_t *out)
{
    size_t start = 0, got = 0, total = 0;

    while (start < len) {
        size_t end = len - start > READ_MAX ? start + READ_MAX : len;
        uint8_t *b = buf + start;
        size_t n = end - start, used;
        ws_event ev;
        ws_status st;

        for (;;) {
            st = ws_parser_feed(p, b, n, &used, &ev);
            b += used;
            n -= used;
            if (st != WS_OK) {
                break;
            }
            if (ev.type == WS_EV_DATA) {
                got += ev.len;
                if (ev.flags & WS_DATA_LAST) {
                    total += ws_frame_header(out, 1, 0, ev.opcode,
                                             ev.message_len, NULL);
                }
            }
        }
        if (st != WS_NEED_MORE) {
            return (size_t)-1;
        }
        start = end;
    }
    return got + total;
}

static size_t build(const bench_case *c, uint8_t *frame, uint8_t *plain)
{
    static const uint8_t key[4] = {0x37, 0xfa, 0x21, 0x3d};
    static const char *mb = "h\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80!";
    size_t i, h;

    for (i = 0; i < c->len; i++) {
        plain[i] = (uint8_t)('a' + i % 26);
    }
    if (c->utf8) {
        /* repeat an 11-byte mixed sequence, pad the tail with ASCII */
        size_t m = strlen(mb);
        for (i = 0; i + m <= c->len; i += m) {
            memcpy(plain + i, mb, m);
        }
    }
    h = ws_frame_header(frame, 1, 0, c->op, c->len, key);
    memcpy(frame + h, plain, c->len);
    ws_mask(frame + h, c->len, key, 0);
    return h + c->len;
}

static const bench_case *find_case(const char *name)
{
    size_t i;

    for (i = 0; i < NCASES; i++) {
        if (strcmp(cases[i].name, name) == 0) {
            return &cases[i];
        }
    }
    fprintf(stderr, "unknown case %s\n", name);
    exit(2);
}

static int run(const bench_case *c, long n, int timed)
{
    ws_parser_config cfg;
    ws_parser p;
    uint8_t *frame, *buf, *plain, out[WS_MAX_FRAME_HEADER];
    size_t flen, expect, r;
    struct timespec t0, t1;
    long i;

    frame = malloc(c->len + WS_MAX_FRAME_HEADER);
    buf = malloc(c->len + WS_MAX_FRAME_HEADER);
    plain = malloc(c->len);
    if (frame == NULL || buf == NULL || plain == NULL) {
        return 1;
    }
    flen = build(c, frame, plain);
    expect = c->len + (c->len < 126 ? 2 : 4);

    memset(&cfg, 0, sizeof(cfg));
    cfg.require_mask = 1;
    cfg.validate_utf8 = 1;
    cfg.max_message = 16 << 20;
    cfg.max_frame = 16 << 20;
    ws_parser_init(&p, &cfg);

    /* check once, outside the measurement */
    memcpy(buf, frame, flen);
    r = bench_message(&p, buf, flen, out);
    if (r != expect || memcmp(buf + flen - c->len, plain, c->len) != 0) {
        fprintf(stderr, "%s: wrong result %zu (want %zu)\n", c->name, r,
                expect);
        return 1;
    }
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (i = 0; i < n; i++) {
        memcpy(buf, frame, flen);
        sink += bench_message(&p, buf, flen, out);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    if (timed) {
        double ns = (double)(t1.tv_sec - t0.tv_sec) * 1e9
                    + (double)(t1.tv_nsec - t0.tv_nsec);
        printf("%-8s %8.1f ns/message (incl. %zu-byte input copy)\n",
               c->name, ns / (double)n, flen);
    }
    free(frame);
    free(buf);
    free(plain);
    return 0;
}

/* Ir collected by callgrind for "run CASE n" with the given
 * --toggle-collect options, or -1. */
static double callgrind_ir(const char *self, const char *toggles,
                           const char *name, long n)
{
    char cmd[1024], line[512];
    FILE *f;
    double ir = -1;

    snprintf(cmd, sizeof(cmd),
             "valgrind --tool=callgrind --callgrind-out-file=/dev/null "
             "%s '%s' run %s %ld 2>&1", toggles, self, name, n);
    f = popen(cmd, "r");
    if (f == NULL) {
        return -1;
    }
    while (fgets(line, sizeof(line), f) != NULL) {
        char *s = strstr(line, "Collected :");
        if (s != NULL) {
            ir = strtod(s + strlen("Collected :"), NULL);
        }
    }
    if (pclose(f) != 0) {
        return -1;
    }
    return ir;
}

int main(int argc, char **argv)
{
    size_t i;

    if (argc == 4 && (strcmp(argv[1], "run") == 0
                      || strcmp(argv[1], "time") == 0)) {
        return run(find_case(argv[2]), atol(argv[3]),
                   strcmp(argv[1], "time") == 0);
    }
    if (argc >= 2 && strcmp(argv[1], "measure") == 0) {
        static const char *const tg[2] = {
            "--toggle-collect=ws_parser_feed "
            "--toggle-collect=ws_frame_header",
            "--toggle-collect=bench_message"
        };

        printf("instructions per message (callgrind, difference of two N)\n"
               "%-8s %10s %10s\n", "case", "core", "+loop");
        for (i = 0; i < NCASES; i++) {
            const char *name = cases[i].name;
            long a = 20000, b = 100000;
            double r[2];
            int t;

            if (cases[i].len > 1000) {
                a /= 20;
                b /= 20;
            }
            for (t = 0; t < 2; t++) {
                double i1 = callgrind_ir(argv[0], tg[t], name, a);
                double i2 = callgrind_ir(argv[0], tg[t], name, b);

                if (i1 < 0 || i2 < 0) {
                    fprintf(stderr, "%s: callgrind failed\n", name);
                    return 1;
                }
                r[t] = (i2 - i1) / (double)(b - a);
            }
            printf("%-8s %10.1f %10.1f   (N = %ld, %ld)\n", name, r[0], r[1],
                   a, b);
        }
        return 0;
    }
    fprintf(stderr, "usage: %s measure | run CASE N | time CASE N\n"
            "cases:", argv[0]);
    for (i = 0; i < NCASES; i++) {
        fprintf(stderr, " %s", cases[i].name);
    }
    fputc('\n', stderr);
    return 2;
}
