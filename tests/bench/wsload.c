/*
 * wsload.c -- a WebSocket load generator for mod_websocket's benchmarks.
 *
 * One file, Linux (epoll); zlib for --deflate, OpenSSL for --tls, pthreads
 * for --threads:
 *
 *     gcc -O2 -o wsload wsload.c -lz -lssl -lcrypto -pthread
 *
 * It does the HTTP/1.1 upgrade itself and checks Sec-WebSocket-Accept, masks
 * every frame with a fresh random key and verifies every echoed byte.  It
 * connects to 127.0.0.1 (any 127.0.0.0/8 address) only.  Every phase has a
 * deadline and every loop a bound; the whole run stops at --max-time.
 *
 * Modes (see usage() for all options):
 *
 *   echo       N connections, message size S, pipeline depth D, for T seconds
 *              (after a warm-up) or for a total message count:
 *              msgs/s, MB/s (payload, one direction), latency p50/p99/p99.9.
 *   hold       open N idle connections at a bounded rate, hold them T
 *              seconds, then ping each one and count the pongs.  With
 *              --server-pid, the RSS and threads of that process and all its
 *              descendants are read from /proc before and during the hold.
 *   broadcast  R receivers and one publisher on a chat-like path: the
 *              publisher sends M messages (closed loop, --window at a time,
 *              or at --rate), each carrying a token "wsb:<seq>:<ns>;" which
 *              receivers find anywhere in the text (so a JSON envelope is
 *              fine): deliveries/s and fan-out latency.
 *
 * --tls speaks wss:// (OpenSSL, TLS 1.2 or 1.3, non-blocking, no
 * certificate check: the server is 127.0.0.1 with a throw-away
 * self-signed certificate).  --threads N (broadcast) splits the receivers
 * over N threads, each with its own epoll; the publisher, its pacing and the
 * per-message accounting stay on the main thread, and each thread's counts
 * and latency histograms are merged at the end.
 *
 * Output: one summary line of key=value pairs on stdout (progress and
 * errors go to stderr).  Exit status 0 when the run completed with no
 * verification or protocol error, 1 otherwise, 2 on a usage error.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <zlib.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------------------ */
/* limits                                                                    */

#define MAX_CONNS        60000
#define MAX_MSG_SIZE     (16u * 1024 * 1024)
#define MAX_FRAME        (64u * 1024 * 1024)
#define MAX_HEADER       16384
#define PATTERN_SPAN     65536          /* distinct payload start offsets   */
#define MAX_DEPTH        1024
#define MAX_PIDS         16
#define MAX_BCAST_MSGS   1000000
#define MAX_THREADS      64

/* ------------------------------------------------------------------------ */
/* small utilities                                                           */

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("wsload: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(2);
}

static void note(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("wsload: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        die("out of memory (%zu bytes)", n);
    return p;
}

static void *xcalloc(size_t n, size_t sz)
{
    void *p = calloc(n ? n : 1, sz ? sz : 1);
    if (!p)
        die("out of memory (%zu x %zu bytes)", n, sz);
    return p;
}

static void *xrealloc(void *p, size_t n)
{
    p = realloc(p, n ? n : 1);
    if (!p)
        die("out of memory (%zu bytes)", n);
    return p;
}

/* xorshift64*: masks, keys and payload offsets; seeded from the kernel,
 * one state per thread */
static __thread uint64_t rng_state;

static uint64_t rnd64(void)
{
    uint64_t x = rng_state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    rng_state = x;
    return x * 0x2545F4914F6CDD1Dull;
}

static void rng_seed(void)
{
    uint64_t seed = 0;
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        if (read(fd, &seed, sizeof(seed)) != (ssize_t)sizeof(seed))
            seed = 0;
        close(fd);
    }
    seed ^= now_ns() ^ ((uint64_t)getpid() << 32);
    rng_state = seed ? seed : 0x9E3779B97F4A7C15ull;
}

/* ------------------------------------------------------------------------ */
/* SHA-1 (FIPS 180-4) and base64, for the handshake only                     */

typedef struct {
    uint32_t h[5];
    uint64_t bytes;
    uint8_t block[64];
    size_t used;
} sha1_ctx;

static uint32_t rol32(uint32_t v, int n)
{
    return (v << n) | (v >> (32 - n));
}

static void sha1_block(sha1_ctx *s, const uint8_t *p)
{
    uint32_t w[80], a, b, c, d, e, f, k, t;
    int i;

    for (i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 |
               (uint32_t)p[4 * i + 2] << 8 | (uint32_t)p[4 * i + 3];
    for (i = 16; i < 80; i++)
        w[i] = rol32(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
    a = s->h[0]; b = s->h[1]; c = s->h[2]; d = s->h[3]; e = s->h[4];
    for (i = 0; i < 80; i++) {
        if (i < 20) {
            f = (b & c) | (~b & d);
            k = 0x5A827999;
        }
        else if (i < 40) {
            f = b ^ c ^ d;
            k = 0x6ED9EBA1;
        }
        else if (i < 60) {
            f = (b & c) | (b & d) | (c & d);
            k = 0x8F1BBCDC;
        }
        else {
            f = b ^ c ^ d;
            k = 0xCA62C1D6;
        }
        t = rol32(a, 5) + f + e + k + w[i];
        e = d;
        d = c;
        c = rol32(b, 30);
        b = a;
        a = t;
    }
    s->h[0] += a; s->h[1] += b; s->h[2] += c; s->h[3] += d; s->h[4] += e;
}

static void sha1_init(sha1_ctx *s)
{
    s->h[0] = 0x67452301;
    s->h[1] = 0xEFCDAB89;
    s->h[2] = 0x98BADCFE;
    s->h[3] = 0x10325476;
    s->h[4] = 0xC3D2E1F0;
    s->bytes = 0;
    s->used = 0;
}

static void sha1_update(sha1_ctx *s, const void *data, size_t len)
{
    const uint8_t *p = data;

    s->bytes += len;
    while (len > 0) {
        size_t n = 64 - s->used;
        if (n > len)
            n = len;
        memcpy(s->block + s->used, p, n);
        s->used += n;
        p += n;
        len -= n;
        if (s->used == 64) {
            sha1_block(s, s->block);
            s->used = 0;
        }
    }
}

static void sha1_final(sha1_ctx *s, uint8_t out[20])
{
    uint64_t bits = s->bytes * 8;
    uint8_t pad = 0x80, zero = 0, len8[8];
    int i;

    sha1_update(s, &pad, 1);
    while (s->used != 56)
        sha1_update(s, &zero, 1);
    for (i = 0; i < 8; i++)
        len8[i] = (uint8_t)(bits >> (56 - 8 * i));
    sha1_update(s, len8, 8);
    for (i = 0; i < 5; i++) {
        out[4 * i] = (uint8_t)(s->h[i] >> 24);
        out[4 * i + 1] = (uint8_t)(s->h[i] >> 16);
        out[4 * i + 2] = (uint8_t)(s->h[i] >> 8);
        out[4 * i + 3] = (uint8_t)s->h[i];
    }
}

/* out must hold 4 * ((len + 2) / 3) + 1 bytes */
static void base64(const uint8_t *in, size_t len, char *out)
{
    static const char tab[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t i;

    for (i = 0; i + 2 < len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        *out++ = tab[v >> 18];
        *out++ = tab[(v >> 12) & 63];
        *out++ = tab[(v >> 6) & 63];
        *out++ = tab[v & 63];
    }
    if (i < len) {
        uint32_t v = (uint32_t)in[i] << 16;
        if (i + 1 < len)
            v |= (uint32_t)in[i + 1] << 8;
        *out++ = tab[v >> 18];
        *out++ = tab[(v >> 12) & 63];
        *out++ = i + 1 < len ? tab[(v >> 6) & 63] : '=';
        *out++ = '=';
    }
    *out = '\0';
}

/* the accept value RFC 6455 section 4.2.2 asks of the server for `key` */
static void ws_accept_for(const char *key, char out[29])
{
    static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    sha1_ctx s;
    uint8_t dig[20];

    sha1_init(&s);
    sha1_update(&s, key, strlen(key));
    sha1_update(&s, guid, sizeof(guid) - 1);
    sha1_final(&s, dig);
    base64(dig, 20, out);
}

/* ------------------------------------------------------------------------ */
/* latency histogram: 1 us bins up to 1 s, then 1 ms bins up to 100 s        */

#define H_FINE   1000000
#define H_COARSE 100000

typedef struct {
    uint32_t *fine;
    uint32_t *coarse;
    uint64_t n;
    uint64_t max_ns;
} hist;

static void hist_init(hist *h)
{
    h->fine = xcalloc(H_FINE, sizeof(uint32_t));
    h->coarse = xcalloc(H_COARSE, sizeof(uint32_t));
    h->n = 0;
    h->max_ns = 0;
}

static void hist_add(hist *h, uint64_t ns)
{
    uint64_t us = ns / 1000;

    if (us < H_FINE) {
        h->fine[us]++;
    }
    else {
        uint64_t ms = us / 1000 - 1000;
        h->coarse[ms < H_COARSE ? ms : H_COARSE - 1]++;
    }
    if (ns > h->max_ns)
        h->max_ns = ns;
    h->n++;
}

/* adds src's samples to dst (the threads' histograms, at the end) */
static void hist_merge(hist *dst, const hist *src)
{
    size_t i;

    for (i = 0; i < H_FINE; i++)
        dst->fine[i] += src->fine[i];
    for (i = 0; i < H_COARSE; i++)
        dst->coarse[i] += src->coarse[i];
    dst->n += src->n;
    if (src->max_ns > dst->max_ns)
        dst->max_ns = src->max_ns;
}

/* the q-quantile (0 < q <= 1) in microseconds; 0 when empty */
static double hist_q(const hist *h, double q)
{
    uint64_t want, seen = 0;
    size_t i;

    if (h->n == 0)
        return 0;
    want = (uint64_t)(q * (double)h->n + 0.999999);
    if (want < 1)
        want = 1;
    if (want > h->n)
        want = h->n;
    for (i = 0; i < H_FINE; i++) {
        seen += h->fine[i];
        if (seen >= want)
            return (double)i;
    }
    for (i = 0; i < H_COARSE; i++) {
        seen += h->coarse[i];
        if (seen >= want)
            return (double)(i + 1000) * 1000.0;
    }
    return (double)(h->max_ns / 1000);
}

/* ------------------------------------------------------------------------ */
/* options                                                                   */

enum { MODE_ECHO, MODE_HOLD, MODE_BROADCAST };

static struct {
    int mode;
    char host[64];
    struct sockaddr_in addr;
    int port2;                  /* broadcast: every other receiver here   */
    int deflate;                /* offer permessage-deflate, inflate RSV1 */
    struct sockaddr_in addr2;
    int port;
    const char *path;
    const char *pub_path;
    const char *tag;
    int conns;
    size_t size;
    int depth;
    double duration;
    double warmup;
    uint64_t count;
    int binary;
    double rate;
    double conn_rate;
    int inflight;
    double hold;
    double pong_timeout;
    double connect_timeout;
    double drain_timeout;
    double max_time;
    int receivers;
    int messages;
    int window;
    double msg_timeout;
    double settle;
    double settle_timeout;
    const char *pub_prefix;
    const char *pub_suffix;
    pid_t pids[MAX_PIDS];
    int npids;
    int quiet;
    int tls;                    /* wss:// through OpenSSL                 */
    int tls_max;                /* 12: at most TLS 1.2; 0: 1.3 allowed    */
    int threads;                /* broadcast: receiver threads            */
} opt;

static void usage(FILE *f)
{
    fputs(
"usage: wsload MODE [options]   (MODE: echo | hold | broadcast)\n"
"common:\n"
"  -p, --port PORT          server port on 127.0.0.1 (required)\n"
"      --port2 PORT         broadcast: every other receiver connects to\n"
"                           this port (a second server of a cluster)\n"
"  -H, --host ADDR          a 127.0.0.0/8 address (default 127.0.0.1)\n"
"  -P, --path PATH          request path (default /echo)\n"
"  -c, --conns N            connections (echo, hold; default 1)\n"
"      --conn-rate R        new connections per second (0: no limit;\n"
"                           default 1000 for hold, else 0)\n"
"      --inflight N         handshakes in progress at most (default 200)\n"
"      --connect-timeout S  per-connection handshake deadline (default 10)\n"
"      --max-time S         hard cap on the whole run (default 600)\n"
"      --tag TEXT           printed first on the summary line (key=value ...)\n"
"      --server-pid PID     (repeatable) sum VmRSS/Threads of PID and all its\n"
"                           descendants from /proc (hold, broadcast)\n"
"  -q, --quiet              no progress on stderr\n"
"      --tls                wss://: TLS (1.2 or 1.3) through OpenSSL, no\n"
"                           certificate check (127.0.0.1 only anyway)\n"
"      --tls-max 1.2|1.3    the highest TLS version offered (default 1.3)\n"
"      --threads N          broadcast: the receivers split over N threads,\n"
"                           each with its own epoll (default 1: receivers\n"
"                           and publisher share the main thread)\n"
"echo:\n"
"  -s, --size BYTES         payload size (default 64)\n"
"      --deflate            offer permessage-deflate (as browsers do) and\n"
"                           inflate compressed messages (zlib)\n"
"  -d, --depth D            messages in flight per connection (default 1)\n"
"  -t, --duration S         measured seconds (default 5), after --warmup S\n"
"                           (default 1)\n"
"  -n, --count N            instead of a duration: exactly N messages in all\n"
"                           (no warm-up; for instruction counts)\n"
"      --binary             binary frames (default: text, ASCII payload)\n"
"      --drain-timeout S    wait for replies in flight at the end (default 5)\n"
"hold:\n"
"      --hold S             seconds to hold (default 10)\n"
"      --pong-timeout S     seconds to wait for all pongs (default 10)\n"
"broadcast:\n"
"  -r, --receivers R        receiving connections (default 1000)\n"
"  -m, --messages M         measured messages (default 200)\n"
"      --rate R             messages per second (default 0: closed loop)\n"
"  -w, --window W           closed loop: messages not yet fully fanned out\n"
"                           at most (default 1)\n"
"      --msg-timeout S      a message missing receivers counts as done after\n"
"                           S seconds (default 5)\n"
"      --settle S           pause after all receivers got a probe (default 1)\n"
"      --settle-timeout S   deadline for the probe phase (default 20)\n"
"      --pub-path PATH      the publisher's path (default: --path)\n"
"      --pub-prefix TEXT    text before the token (e.g. a JSON head)\n"
"      --pub-suffix TEXT    text after the token\n"
"      -s BYTES             pad the token with 'x' to this many bytes\n",
          f);
}

static double parse_num(const char *name, const char *v, double lo, double hi)
{
    char *end;
    double d;

    errno = 0;
    d = strtod(v, &end);
    if (errno || end == v || *end || d < lo || d > hi)
        die("%s: '%s' is not a number in [%g, %g]", name, v, lo, hi);
    return d;
}

static void parse_args(int argc, char **argv)
{
    int i;

    memset(&opt, 0, sizeof(opt));
    strcpy(opt.host, "127.0.0.1");
    opt.path = "/echo";
    opt.tag = "";
    opt.conns = 1;
    opt.size = 64;
    opt.depth = 1;
    opt.duration = 5;
    opt.warmup = 1;
    opt.conn_rate = -1;
    opt.inflight = 200;
    opt.hold = 10;
    opt.pong_timeout = 10;
    opt.connect_timeout = 10;
    opt.drain_timeout = 5;
    opt.max_time = 600;
    opt.receivers = 1000;
    opt.messages = 200;
    opt.window = 1;
    opt.msg_timeout = 5;
    opt.settle = 1;
    opt.settle_timeout = 20;
    opt.pub_prefix = "";
    opt.pub_suffix = "";
    opt.threads = 1;

    if (argc < 2) {
        usage(stderr);
        exit(2);
    }
    if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        usage(stdout);
        exit(0);
    }
    if (!strcmp(argv[1], "echo"))
        opt.mode = MODE_ECHO;
    else if (!strcmp(argv[1], "hold"))
        opt.mode = MODE_HOLD;
    else if (!strcmp(argv[1], "broadcast"))
        opt.mode = MODE_BROADCAST;
    else
        die("unknown mode '%s' (echo, hold or broadcast)", argv[1]);

    for (i = 2; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define ARG(s, l) (!strcmp(a, s) || !strcmp(a, l))
#define NEEDV() do { if (!v) die("%s needs a value", a); i++; } while (0)
        if (ARG("-h", "--help")) {
            usage(stdout);
            exit(0);
        }
        else if (ARG("-q", "--quiet")) {
            opt.quiet = 1;
        }
        else if (ARG("--binary", "--binary")) {
            opt.binary = 1;
        }
        else if (ARG("--tls", "--tls")) {
            opt.tls = 1;
        }
        else if (ARG("--tls-max", "--tls-max")) {
            NEEDV();
            if (!strcmp(v, "1.2"))
                opt.tls_max = 12;
            else if (!strcmp(v, "1.3"))
                opt.tls_max = 0;
            else
                die("--tls-max: '%s' is not 1.2 or 1.3", v);
        }
        else if (ARG("--threads", "--threads")) {
            NEEDV();
            opt.threads = (int)parse_num(a, v, 1, MAX_THREADS);
        }
        else if (ARG("-p", "--port")) {
            NEEDV();
            opt.port = (int)parse_num(a, v, 1, 65535);
        }
        else if (ARG("--deflate", "--deflate")) {
            opt.deflate = 1;
        }
        else if (ARG("--port2", "--port2")) {
            NEEDV();
            opt.port2 = (int)parse_num(a, v, 1, 65535);
        }
        else if (ARG("-H", "--host")) {
            NEEDV();
            if (strlen(v) >= sizeof(opt.host))
                die("--host too long");
            strcpy(opt.host, v);
        }
        else if (ARG("-P", "--path")) {
            NEEDV();
            opt.path = v;
        }
        else if (ARG("--pub-path", "--pub-path")) {
            NEEDV();
            opt.pub_path = v;
        }
        else if (ARG("--tag", "--tag")) {
            NEEDV();
            opt.tag = v;
        }
        else if (ARG("-c", "--conns")) {
            NEEDV();
            opt.conns = (int)parse_num(a, v, 1, MAX_CONNS);
        }
        else if (ARG("-s", "--size")) {
            NEEDV();
            opt.size = (size_t)parse_num(a, v, 0, MAX_MSG_SIZE);
        }
        else if (ARG("-d", "--depth")) {
            NEEDV();
            opt.depth = (int)parse_num(a, v, 1, MAX_DEPTH);
        }
        else if (ARG("-t", "--duration")) {
            NEEDV();
            opt.duration = parse_num(a, v, 0.1, 3600);
        }
        else if (ARG("--warmup", "--warmup")) {
            NEEDV();
            opt.warmup = parse_num(a, v, 0, 600);
        }
        else if (ARG("-n", "--count")) {
            NEEDV();
            opt.count = (uint64_t)parse_num(a, v, 1, 1e9);
        }
        else if (ARG("--rate", "--rate")) {
            NEEDV();
            opt.rate = parse_num(a, v, 0, 1e7);
        }
        else if (ARG("--conn-rate", "--conn-rate")) {
            NEEDV();
            opt.conn_rate = parse_num(a, v, 0, 1e7);
        }
        else if (ARG("--inflight", "--inflight")) {
            NEEDV();
            opt.inflight = (int)parse_num(a, v, 1, MAX_CONNS);
        }
        else if (ARG("--hold", "--hold")) {
            NEEDV();
            opt.hold = parse_num(a, v, 0, 3600);
        }
        else if (ARG("--pong-timeout", "--pong-timeout")) {
            NEEDV();
            opt.pong_timeout = parse_num(a, v, 0.1, 600);
        }
        else if (ARG("--connect-timeout", "--connect-timeout")) {
            NEEDV();
            opt.connect_timeout = parse_num(a, v, 0.1, 600);
        }
        else if (ARG("--drain-timeout", "--drain-timeout")) {
            NEEDV();
            opt.drain_timeout = parse_num(a, v, 0, 600);
        }
        else if (ARG("--max-time", "--max-time")) {
            NEEDV();
            opt.max_time = parse_num(a, v, 1, 86400);
        }
        else if (ARG("-r", "--receivers")) {
            NEEDV();
            opt.receivers = (int)parse_num(a, v, 1, MAX_CONNS - 1);
        }
        else if (ARG("-m", "--messages")) {
            NEEDV();
            opt.messages = (int)parse_num(a, v, 1, MAX_BCAST_MSGS);
        }
        else if (ARG("-w", "--window")) {
            NEEDV();
            opt.window = (int)parse_num(a, v, 1, 100000);
        }
        else if (ARG("--msg-timeout", "--msg-timeout")) {
            NEEDV();
            opt.msg_timeout = parse_num(a, v, 0.01, 600);
        }
        else if (ARG("--settle", "--settle")) {
            NEEDV();
            opt.settle = parse_num(a, v, 0, 600);
        }
        else if (ARG("--settle-timeout", "--settle-timeout")) {
            NEEDV();
            opt.settle_timeout = parse_num(a, v, 0.1, 600);
        }
        else if (ARG("--pub-prefix", "--pub-prefix")) {
            NEEDV();
            opt.pub_prefix = v;
        }
        else if (ARG("--pub-suffix", "--pub-suffix")) {
            NEEDV();
            opt.pub_suffix = v;
        }
        else if (ARG("--server-pid", "--server-pid")) {
            NEEDV();
            if (opt.npids >= MAX_PIDS)
                die("at most %d --server-pid", MAX_PIDS);
            opt.pids[opt.npids++] = (pid_t)parse_num(a, v, 1, 4194304);
        }
        else {
            die("unknown option '%s' (see --help)", a);
        }
#undef ARG
#undef NEEDV
    }

    if (!opt.port)
        die("--port is required");
    if (opt.path[0] != '/')
        die("--path must start with '/'");
    if (!opt.pub_path)
        opt.pub_path = opt.path;
    if (opt.pub_path[0] != '/')
        die("--pub-path must start with '/'");
    if (strpbrk(opt.path, " \r\n") || strpbrk(opt.pub_path, " \r\n"))
        die("a path may not contain spaces or line breaks");
    if (strpbrk(opt.tag, "\r\n"))
        die("--tag may not contain line breaks");
    /* loopback only: this tool is not for loading anyone else's server */
    memset(&opt.addr, 0, sizeof(opt.addr));
    opt.addr.sin_family = AF_INET;
    opt.addr.sin_port = htons((uint16_t)opt.port);
    if (inet_pton(AF_INET, opt.host, &opt.addr.sin_addr) != 1)
        die("--host '%s' is not an IPv4 address", opt.host);
    if ((ntohl(opt.addr.sin_addr.s_addr) >> 24) != 127)
        die("--host '%s' is not a loopback address (127.0.0.0/8 only)",
            opt.host);
    opt.addr2 = opt.addr;
    if (opt.port2)
        opt.addr2.sin_port = htons((uint16_t)opt.port2);
    if (opt.conn_rate < 0)
        opt.conn_rate = opt.mode == MODE_HOLD ? 1000 : 0;
    if (opt.mode == MODE_BROADCAST && opt.receivers + 1 > MAX_CONNS)
        die("too many receivers");
    if (opt.threads > 1 && opt.mode != MODE_BROADCAST)
        die("--threads is for broadcast (echo and hold run on one thread)");
    if (opt.threads > opt.receivers)
        opt.threads = opt.receivers;
}

/* ------------------------------------------------------------------------ */
/* process tree RSS from /proc                                               */

typedef struct {
    long rss_kb;
    long threads;
    int procs;
    double cpu_s;           /* user + system time of the tree so far */
} tree_stats;

/* user + system seconds of this process so far */
static double self_cpu_s(void)
{
    struct rusage ru;

    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6
           + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

/* user + system seconds of a process (all its threads), or 0 */
static double read_cpu(pid_t pid)
{
    char path[64], buf[1024], *p;
    unsigned long long ut = 0, st = 0;
    FILE *f;
    size_t n;
    int field;

    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    f = fopen(path, "r");
    if (!f)
        return 0;
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    p = strrchr(buf, ')');  /* the command name may hold spaces */
    if (!p)
        return 0;
    /* after ") ": field 3 (state) ... utime is field 14, stime 15 */
    for (field = 2; *p && field < 14; p++)
        if (*p == ' ')
            field++;
    if (sscanf(p, "%llu %llu", &ut, &st) != 2)
        return 0;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static int read_status(pid_t pid, pid_t *ppid, long *rss_kb, long *threads)
{
    char path[64], line[256];
    FILE *f;

    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    f = fopen(path, "r");
    if (!f)
        return -1;
    *ppid = 0;
    *rss_kb = 0;
    *threads = 0;
    while (fgets(line, sizeof(line), f)) {
        if (!strncmp(line, "PPid:", 5))
            *ppid = (pid_t)strtol(line + 5, NULL, 10);
        else if (!strncmp(line, "VmRSS:", 6))
            *rss_kb = strtol(line + 6, NULL, 10);
        else if (!strncmp(line, "Threads:", 8))
            *threads = strtol(line + 8, NULL, 10);
    }
    fclose(f);
    return 0;
}

/* sums over every --server-pid and all of its descendants */
static tree_stats server_stats(void)
{
    tree_stats ts = { 0, 0, 0, 0 };
    pid_t *pids = NULL, *ppids = NULL;
    long *rss = NULL, *thr = NULL;
    char *in = NULL;
    size_t n = 0, cap = 0, i;
    DIR *d;
    struct dirent *de;
    int changed, pass;

    if (opt.npids == 0)
        return ts;
    d = opendir("/proc");
    if (!d)
        return ts;
    while ((de = readdir(d)) != NULL) {
        pid_t pid, ppid;
        long r, t;
        if (!isdigit((unsigned char)de->d_name[0]))
            continue;
        pid = (pid_t)strtol(de->d_name, NULL, 10);
        if (read_status(pid, &ppid, &r, &t) != 0)
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 1024;
            pids = xrealloc(pids, cap * sizeof(*pids));
            ppids = xrealloc(ppids, cap * sizeof(*ppids));
            rss = xrealloc(rss, cap * sizeof(*rss));
            thr = xrealloc(thr, cap * sizeof(*thr));
        }
        pids[n] = pid;
        ppids[n] = ppid;
        rss[n] = r;
        thr[n] = t;
        n++;
    }
    closedir(d);
    in = xcalloc(n, 1);
    for (i = 0; i < n; i++) {
        int k;
        for (k = 0; k < opt.npids; k++)
            if (pids[i] == opt.pids[k])
                in[i] = 1;
    }
    /* a parent and its children: httpd is two levels deep, bound the walk */
    for (pass = 0, changed = 1; changed && pass < 8; pass++) {
        changed = 0;
        for (i = 0; i < n; i++) {
            size_t j;
            if (in[i])
                continue;
            for (j = 0; j < n; j++) {
                if (in[j] && pids[j] == ppids[i]) {
                    in[i] = 1;
                    changed = 1;
                    break;
                }
            }
        }
    }
    for (i = 0; i < n; i++) {
        if (in[i]) {
            ts.rss_kb += rss[i];
            ts.threads += thr[i];
            ts.procs++;
            ts.cpu_s += read_cpu(pids[i]);
        }
    }
    free(pids);
    free(ppids);
    free(rss);
    free(thr);
    free(in);
    return ts;
}

/* ------------------------------------------------------------------------ */
/* connections                                                               */

/* ST_TLS: TCP is up, the TLS handshake runs (--tls) */
enum { ST_IDLE, ST_CONNECTING, ST_TLS, ST_HANDSHAKE, ST_OPEN, ST_DONE };
#define ST_PENDING(s) ((s) == ST_CONNECTING || (s) == ST_TLS \
                       || (s) == ST_HANDSHAKE)
enum { ROLE_PLAIN, ROLE_RECV, ROLE_PUB };

typedef struct conn {
    int fd;
    int id;
    int state;
    int role;
    int out_armed;          /* EPOLLOUT is registered */
    int close_sent;
    int close_rcvd;
    int failed;
    SSL *ssl;               /* --tls */
    int ssl_read_wants_out; /* SSL_read asked for writability */
    int ssl_write_wants_in; /* SSL_write asked for readability */
    uint64_t deadline;      /* handshake deadline (ns) */
    char accept[32];

    uint8_t *rbuf;
    size_t rlen, rcap;
    uint8_t *wbuf;
    size_t wlen, woff, wcap;

    uint8_t *msg;           /* a fragmented message being reassembled */
    size_t msglen, msgcap;
    int msgop, in_msg;
    int msg_rsv1;           /* the message being received is compressed */
    int pmd;                /* permessage-deflate was negotiated */
    int frame_rsv1;         /* the frame being handled has RSV1 */
    int pmd_reset;          /* server_no_context_takeover: reset per message */
    z_stream *zin;          /* its inflater (allocated on first use) */

    /* echo: the ring of messages in flight */
    uint64_t *ring_ts;
    uint32_t *ring_off;
    unsigned ring_head, ring_count;

    /* hold */
    int pinged, ponged;

    /* broadcast */
    int probed;
    unsigned long long last_seq;   /* the last measured message it got */
} conn;

/* Per thread: its epoll, its slice of the connections and its counts (the
 * main thread's are the only ones when --threads is 1) */
static __thread int epfd = -1;
static __thread conn *conns;
static __thread int nconns;
static uint8_t *pattern;    /* printable ASCII, so text frames are UTF-8 */
static uint64_t run_deadline;
static SSL_CTX *ssl_ctx;    /* --tls: one context, an SSL per connection */
static int recv_open;       /* broadcast receivers open now (atomic)    */

typedef struct stats {
    uint64_t connect_fail;     /* TCP connect refused/failed              */
    uint64_t hs_timeout;       /* no complete handshake by the deadline   */
    uint64_t rejected;         /* an HTTP answer other than 101           */
    uint64_t rejected_503;
    uint64_t bad_accept;       /* 101 with a wrong or no accept value     */
    uint64_t proto_err;        /* a frame a client must not receive       */
    uint64_t verify_err;       /* an echo that differs from what was sent */
    uint64_t dropped;          /* closed by the server while open         */
    uint64_t unexpected;       /* data messages nobody asked for          */
    uint64_t not_started;      /* never tried: the open phase ran out     */
    int opened;                /* handshakes completed                    */
    int open_now;              /* currently open                          */
    int handshaking;           /* connecting or in the handshake          */
    int pmd_conns;             /* --deflate: connections that negotiated it */
    uint64_t pmd_msgs;         /* compressed messages received            */
    uint64_t pmd_wire, pmd_plain;   /* their bytes, compressed and inflated */
} stats;
static __thread stats st;

/* adds a thread's counts to the main thread's (at the end) */
static void stats_merge(stats *d, const stats *s)
{
    d->connect_fail += s->connect_fail;
    d->hs_timeout += s->hs_timeout;
    d->rejected += s->rejected;
    d->rejected_503 += s->rejected_503;
    d->bad_accept += s->bad_accept;
    d->proto_err += s->proto_err;
    d->verify_err += s->verify_err;
    d->dropped += s->dropped;
    d->unexpected += s->unexpected;
    d->not_started += s->not_started;
    d->opened += s->opened;
    d->open_now += s->open_now;
    d->handshaking += s->handshaking;
    d->pmd_conns += s->pmd_conns;
    d->pmd_msgs += s->pmd_msgs;
    d->pmd_wire += s->pmd_wire;
    d->pmd_plain += s->pmd_plain;
}

static void set_events(conn *c, int want_out)
{
    struct epoll_event ev;

    if (c->fd < 0 || c->out_armed == want_out)
        return;
    memset(&ev, 0, sizeof(ev));
    ev.events = EPOLLIN | EPOLLRDHUP | (want_out ? EPOLLOUT : 0);
    ev.data.ptr = c;
    if (epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev) == 0)
        c->out_armed = want_out;
}

static void on_closed(conn *c);

static void conn_close_fd(conn *c)
{
    if (c->state != ST_DONE)
        on_closed(c);
    if (c->ssl) {
        /* a close_notify where the connection ended in order (one try:
         * non-blocking, nothing waited for) */
        if (!c->failed && c->fd >= 0 && c->state != ST_TLS)
            SSL_shutdown(c->ssl);
        SSL_free(c->ssl);
        c->ssl = NULL;
    }
    if (c->fd >= 0) {
        epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
        c->fd = -1;
    }
    if (c->state == ST_OPEN) {
        st.open_now--;
        if (c->role == ROLE_RECV)
            __atomic_sub_fetch(&recv_open, 1, __ATOMIC_RELAXED);
    }
    else if (ST_PENDING(c->state)) {
        st.handshaking--;
    }
    c->state = ST_DONE;
}

static void conn_fail(conn *c, uint64_t *counter, const char *why)
{
    if (c->state == ST_DONE)
        return;
    if (counter)
        (*counter)++;
    c->failed = 1;
    if (!opt.quiet && why)
        note("connection %d: %s", c->id, why);
    conn_close_fd(c);
}

static void wbuf_reserve(conn *c, size_t more)
{
    if (c->woff > 0 && c->woff == c->wlen) {
        c->woff = c->wlen = 0;
    }
    if (c->wlen + more > c->wcap) {
        if (c->woff > 0) {
            memmove(c->wbuf, c->wbuf + c->woff, c->wlen - c->woff);
            c->wlen -= c->woff;
            c->woff = 0;
        }
        if (c->wlen + more > c->wcap) {
            size_t cap = c->wcap ? c->wcap : 256;
            while (cap < c->wlen + more)
                cap *= 2;
            c->wbuf = xrealloc(c->wbuf, cap);
            c->wcap = cap;
        }
    }
}

/* masks len bytes of src into dst with key k (dst may equal src) */
static void mask_copy(uint8_t *dst, const uint8_t *src, size_t len,
                      const uint8_t k[4])
{
    uint8_t k8[8];
    uint64_t km, w;
    size_t i = 0;

    memcpy(k8, k, 4);
    memcpy(k8 + 4, k, 4);
    memcpy(&km, k8, 8);
    for (; i + 8 <= len; i += 8) {
        memcpy(&w, src + i, 8);
        w ^= km;
        memcpy(dst + i, &w, 8);
    }
    for (; i < len; i++)
        dst[i] = src[i] ^ k[i & 3];
}

/* appends one masked frame (FIN set) to the write buffer */
static void put_frame(conn *c, int op, const uint8_t *p, size_t len)
{
    uint8_t *h;
    size_t hl;
    uint32_t m;

    wbuf_reserve(c, len + 14);
    h = c->wbuf + c->wlen;
    h[0] = (uint8_t)(0x80 | op);
    if (len < 126) {
        h[1] = (uint8_t)(0x80 | len);
        hl = 2;
    }
    else if (len < 65536) {
        h[1] = 0x80 | 126;
        h[2] = (uint8_t)(len >> 8);
        h[3] = (uint8_t)len;
        hl = 4;
    }
    else {
        int i;
        h[1] = 0x80 | 127;
        for (i = 0; i < 8; i++)
            h[2 + i] = (uint8_t)((uint64_t)len >> (56 - 8 * i));
        hl = 10;
    }
    m = (uint32_t)rnd64();
    memcpy(h + hl, &m, 4);
    mask_copy(h + hl + 4, p, len, h + hl);
    c->wlen += hl + 4 + len;
}

/* The socket or its TLS layer.  conn_send: bytes written, or -1 with
 * errno EAGAIN (wait for writability), EINPROGRESS (TLS waits for
 * readability) or another error.  conn_recv: bytes read, 0 at the end, or
 * -1 with errno EAGAIN or another error. */
static ssize_t conn_send(conn *c, const uint8_t *p, size_t len)
{
    int n, err;

    if (!c->ssl)
        return send(c->fd, p, len, MSG_NOSIGNAL);
    ERR_clear_error();
    n = SSL_write(c->ssl, p, len > 1u << 30 ? 1 << 30 : (int)len);
    if (n > 0) {
        c->ssl_write_wants_in = 0;
        return n;
    }
    err = SSL_get_error(c->ssl, n);
    if (err == SSL_ERROR_WANT_WRITE) {
        errno = EAGAIN;
    }
    else if (err == SSL_ERROR_WANT_READ) {
        c->ssl_write_wants_in = 1;
        errno = EINPROGRESS;
    }
    else if (!(err == SSL_ERROR_SYSCALL && errno)) {
        errno = EPIPE;
    }
    return -1;
}

static ssize_t conn_recv(conn *c, uint8_t *p, size_t len)
{
    int n, err;

    if (!c->ssl)
        return recv(c->fd, p, len, 0);
    ERR_clear_error();
    n = SSL_read(c->ssl, p, len > 1u << 30 ? 1 << 30 : (int)len);
    if (n > 0) {
        c->ssl_read_wants_out = 0;
        return n;
    }
    err = SSL_get_error(c->ssl, n);
    if (err == SSL_ERROR_WANT_READ) {
        errno = EAGAIN;
        return -1;
    }
    if (err == SSL_ERROR_WANT_WRITE) {
        /* a TLS record must go out first: wait for writability */
        c->ssl_read_wants_out = 1;
        set_events(c, 1);
        errno = EAGAIN;
        return -1;
    }
    if (err == SSL_ERROR_ZERO_RETURN)
        return 0;                   /* close_notify */
    if (err == SSL_ERROR_SYSCALL && errno == 0)
        return 0;                   /* EOF without close_notify */
    if (!(err == SSL_ERROR_SYSCALL && errno))
        errno = EPROTO;
    return -1;
}

/* writes what it can; arms EPOLLOUT for the rest */
static void conn_flush(conn *c)
{
    while (c->fd >= 0 && c->woff < c->wlen) {
        ssize_t n = conn_send(c, c->wbuf + c->woff, c->wlen - c->woff);
        if (n > 0) {
            c->woff += (size_t)n;
        }
        else if (n < 0 && errno == EINTR) {
            continue;
        }
        else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            set_events(c, 1);
            return;
        }
        else if (n < 0 && errno == EINPROGRESS) {
            /* TLS reads first; conn_readable flushes again */
            set_events(c, c->ssl_read_wants_out);
            return;
        }
        else {
            if (c->state == ST_OPEN && !c->close_sent)
                conn_fail(c, &st.dropped, "write failed");
            else
                conn_fail(c, NULL, NULL);
            return;
        }
    }
    if (c->fd >= 0) {
        c->woff = c->wlen = 0;
        set_events(c, c->ssl_read_wants_out);
    }
}

static void send_close(conn *c, int code)
{
    uint8_t p[2];

    if (c->state != ST_OPEN || c->close_sent)
        return;
    p[0] = (uint8_t)(code >> 8);
    p[1] = (uint8_t)code;
    put_frame(c, 0x8, p, 2);
    c->close_sent = 1;
    conn_flush(c);
}

static void tls_desc(const conn *c, char *out, size_t outlen);

/* ---- per-mode callbacks ---- */
static void on_open(conn *c);
static void on_message(conn *c, int op, const uint8_t *p, size_t len);
static void on_pong(conn *c, const uint8_t *p, size_t len);

/* starts a non-blocking connect */
static void conn_start(conn *c, int role)
{
    struct epoll_event ev;
    int one = 1, fd;

    c->role = role;
    c->deadline = now_ns() + (uint64_t)(opt.connect_timeout * 1e9);
    fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        c->state = ST_DONE;
        c->failed = 1;
        st.connect_fail++;
        if (!opt.quiet)
            note("socket: %s", strerror(errno));
        return;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    c->fd = fd;
    c->state = ST_CONNECTING;
    st.handshaking++;
    if (connect(fd, (struct sockaddr *)(role == ROLE_RECV && opt.port2 &&
                                        (c->id & 1) ? &opt.addr2 : &opt.addr),
                sizeof(opt.addr)) != 0 &&
        errno != EINPROGRESS) {
        char why[96];
        snprintf(why, sizeof(why), "connect: %s", strerror(errno));
        conn_fail(c, &st.connect_fail, why);
        return;
    }
    memset(&ev, 0, sizeof(ev));
    ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP;
    ev.data.ptr = c;
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
        conn_fail(c, &st.connect_fail, "epoll_ctl failed");
        return;
    }
    c->out_armed = 1;
}

static void send_handshake(conn *c)
{
    uint8_t raw[16];
    char key[32], req[1024];
    uint64_t a = rnd64(), b = rnd64();
    const char *path = c->role == ROLE_PUB ? opt.pub_path : opt.path;
    int n;

    memcpy(raw, &a, 8);
    memcpy(raw + 8, &b, 8);
    base64(raw, 16, key);
    ws_accept_for(key, c->accept);
    n = snprintf(req, sizeof(req),
                 "GET %s HTTP/1.1\r\n"
                 "Host: %s:%d\r\n"
                 "Upgrade: websocket\r\n"
                 "Connection: Upgrade\r\n"
                 "Sec-WebSocket-Key: %s\r\n"
                 "Sec-WebSocket-Version: 13\r\n"
                 "User-Agent: wsload\r\n"
                 "%s"
                 "\r\n",
                 path, opt.host, opt.port, key,
                 opt.deflate ? "Sec-WebSocket-Extensions: permessage-deflate; "
                               "client_max_window_bits\r\n" : "");
    if (n <= 0 || (size_t)n >= sizeof(req)) {
        conn_fail(c, &st.connect_fail, "request too long");
        return;
    }
    c->state = ST_HANDSHAKE;
    wbuf_reserve(c, (size_t)n);
    memcpy(c->wbuf + c->wlen, req, (size_t)n);
    c->wlen += (size_t)n;
    conn_flush(c);
}

static void rbuf_reserve(conn *c, size_t need)
{
    if (need > c->rcap) {
        size_t cap = c->rcap ? c->rcap : 1024;
        while (cap < need)
            cap *= 2;
        c->rbuf = xrealloc(c->rbuf, cap);
        c->rcap = cap;
    }
}

static int header_value(const char *hdr, const char *name, char *out,
                        size_t outlen)
{
    size_t nl = strlen(name);
    const char *line = strstr(hdr, "\r\n");

    while (line && line[2] && !(line[2] == '\r' && line[3] == '\n')) {
        const char *l = line + 2;
        const char *eol = strstr(l, "\r\n");
        if (!eol)
            break;
        if ((size_t)(eol - l) > nl && !strncasecmp(l, name, nl) &&
            l[nl] == ':') {
            const char *v = l + nl + 1;
            size_t vl;
            while (v < eol && (*v == ' ' || *v == '\t'))
                v++;
            vl = (size_t)(eol - v);
            while (vl > 0 && (v[vl - 1] == ' ' || v[vl - 1] == '\t'))
                vl--;
            if (vl >= outlen)
                vl = outlen - 1;
            memcpy(out, v, vl);
            out[vl] = '\0';
            return 1;
        }
        line = eol;
    }
    return 0;
}

static void parse_frames(conn *c);

static void handle_handshake(conn *c)
{
    uint8_t *end;
    size_t hlen;
    char *hdr, val[128];
    int code = 0;

    end = memmem(c->rbuf, c->rlen, "\r\n\r\n", 4);
    if (!end) {
        if (c->rlen > MAX_HEADER)
            conn_fail(c, &st.rejected, "response header too long");
        return;
    }
    hlen = (size_t)(end - c->rbuf) + 4;
    hdr = xmalloc(hlen + 1);
    memcpy(hdr, c->rbuf, hlen);
    hdr[hlen] = '\0';
    if (sscanf(hdr, "HTTP/1.%*1[01] %d", &code) != 1 || code != 101) {
        char why[64];
        snprintf(why, sizeof(why), "upgrade answered with HTTP %d", code);
        if (code == 503)
            st.rejected_503++;
        conn_fail(c, &st.rejected, why);
        free(hdr);
        return;
    }
    if (!header_value(hdr, "Sec-WebSocket-Accept", val, sizeof(val)) ||
        strcmp(val, c->accept) != 0) {
        conn_fail(c, &st.bad_accept, "wrong or missing Sec-WebSocket-Accept");
        free(hdr);
        return;
    }
    if (opt.deflate
        && header_value(hdr, "Sec-WebSocket-Extensions", val, sizeof(val))
        && strstr(val, "permessage-deflate")) {
        c->pmd = 1;
        c->pmd_reset = strstr(val, "server_no_context_takeover") != NULL;
        st.pmd_conns++;
    }
    free(hdr);
    memmove(c->rbuf, c->rbuf + hlen, c->rlen - hlen);
    c->rlen -= hlen;
    c->state = ST_OPEN;
    st.handshaking--;
    st.opened++;
    st.open_now++;
    if (c->role == ROLE_RECV)
        __atomic_add_fetch(&recv_open, 1, __ATOMIC_RELAXED);
    on_open(c);
    if (c->state == ST_OPEN)
        parse_frames(c);
}

/* A whole compressed message (RFC 7692): inflate it with the tail added
 * back, then hand it on as any message.  0, or -1 (failed). */
static __thread uint8_t *zbuf;
static __thread size_t zcap;

static int pmd_message(conn *c, int op, const uint8_t *p, size_t len)
{
    static const uint8_t tail[4] = { 0x00, 0x00, 0xff, 0xff };
    size_t out = 0;
    int rc, pass;

    if (!c->zin) {
        c->zin = xmalloc(sizeof(*c->zin));
        memset(c->zin, 0, sizeof(*c->zin));
        if (inflateInit2(c->zin, -15) != Z_OK) {
            conn_fail(c, &st.proto_err, "inflateInit2 failed");
            return -1;
        }
    }
    for (pass = 0; pass < 2; pass++) {
        c->zin->next_in = (Bytef *)(pass ? tail : p);
        c->zin->avail_in = (uInt)(pass ? sizeof(tail) : len);
        do {
            if (zcap - out < 16384) {
                zcap = zcap ? zcap * 2 : 65536;
                zbuf = xrealloc(zbuf, zcap);
            }
            c->zin->next_out = zbuf + out;
            c->zin->avail_out = (uInt)(zcap - out);
            rc = inflate(c->zin, Z_SYNC_FLUSH);
            out = zcap - c->zin->avail_out;
            if (rc != Z_OK && rc != Z_BUF_ERROR && rc != Z_STREAM_END) {
                conn_fail(c, &st.proto_err, "bad compressed message");
                return -1;
            }
            if (out > MAX_MSG_SIZE) {
                conn_fail(c, &st.proto_err, "inflated message too big");
                return -1;
            }
        } while (c->zin->avail_in > 0 || c->zin->avail_out == 0);
    }
    if (c->pmd_reset)
        inflateReset(c->zin);
    st.pmd_msgs++;
    st.pmd_wire += len;
    st.pmd_plain += out;
    on_message(c, op, zbuf, out);
    return 0;
}

static void handle_frame(conn *c, int fin, int op, const uint8_t *p,
                         uint64_t len)
{
    switch (op) {
    case 0x0:
        if (!c->in_msg) {
            conn_fail(c, &st.proto_err, "continuation without a message");
            return;
        }
        if (c->msglen + len > MAX_MSG_SIZE) {
            conn_fail(c, &st.proto_err, "message too big");
            return;
        }
        if (c->msglen + len > c->msgcap) {
            size_t cap = c->msgcap ? c->msgcap : 4096;
            while (cap < c->msglen + len)
                cap *= 2;
            c->msg = xrealloc(c->msg, cap);
            c->msgcap = cap;
        }
        memcpy(c->msg + c->msglen, p, (size_t)len);
        c->msglen += (size_t)len;
        if (fin) {
            c->in_msg = 0;
            if (c->msg_rsv1)
                pmd_message(c, c->msgop, c->msg, c->msglen);
            else
                on_message(c, c->msgop, c->msg, c->msglen);
        }
        return;
    case 0x1:
    case 0x2:
        if (c->in_msg) {
            conn_fail(c, &st.proto_err, "new message inside a fragmented one");
            return;
        }
        c->msg_rsv1 = c->frame_rsv1;
        if (fin) {
            if (c->msg_rsv1)
                pmd_message(c, op, p, (size_t)len);
            else
                on_message(c, op, p, (size_t)len);
            return;
        }
        c->in_msg = 1;
        c->msgop = op;
        c->msglen = 0;
        if (len > c->msgcap) {
            c->msg = xrealloc(c->msg, (size_t)len);
            c->msgcap = (size_t)len;
        }
        memcpy(c->msg, p, (size_t)len);
        c->msglen = (size_t)len;
        return;
    case 0x8:
        c->close_rcvd = 1;
        if (!c->close_sent) {
            /* the server ends it: answer, then it is a drop */
            uint8_t code[2] = { 0x03, 0xE8 };
            put_frame(c, 0x8, code, 2);
            c->close_sent = 1;
            conn_flush(c);
            conn_fail(c, &st.dropped, "closed by the server");
        }
        else {
            conn_close_fd(c);
        }
        return;
    case 0x9:
        if (!fin || len > 125) {
            conn_fail(c, &st.proto_err, "bad ping");
            return;
        }
        put_frame(c, 0xA, p, (size_t)len);
        return;
    case 0xA:
        if (!fin || len > 125) {
            conn_fail(c, &st.proto_err, "bad pong");
            return;
        }
        on_pong(c, p, (size_t)len);
        return;
    default:
        conn_fail(c, &st.proto_err, "unknown opcode");
        return;
    }
}

static void parse_frames(conn *c)
{
    size_t off = 0, need = 0;

    while (c->state == ST_OPEN) {
        const uint8_t *b = c->rbuf + off;
        size_t avail = c->rlen - off, hl = 2;
        uint64_t len;
        int i;

        if (avail < 2)
            break;
        len = b[1] & 0x7f;
        if (len == 126) {
            if (avail < 4)
                break;
            len = (uint64_t)b[2] << 8 | b[3];
            hl = 4;
        }
        else if (len == 127) {
            if (avail < 10)
                break;
            len = 0;
            for (i = 0; i < 8; i++)
                len = len << 8 | b[2 + i];
            hl = 10;
        }
        /* RSV1 only on the first frame of a data message, and only with
         * permessage-deflate */
        if ((b[0] & 0x30) || ((b[0] & 0x40)
                              && (!c->pmd || !(b[0] & 0x03)))) {
            conn_fail(c, &st.proto_err, "RSV bit set");
            return;
        }
        c->frame_rsv1 = (b[0] & 0x40) != 0;
        if (b[1] & 0x80) {
            conn_fail(c, &st.proto_err, "masked frame from the server");
            return;
        }
        if (len > MAX_FRAME) {
            conn_fail(c, &st.proto_err, "frame too big");
            return;
        }
        if (avail < hl + len) {
            need = hl + (size_t)len;
            break;
        }
        handle_frame(c, b[0] & 0x80, b[0] & 0x0f, b + hl, len);
        off += hl + (size_t)len;
    }
    if (c->state != ST_OPEN)
        return;
    if (off > 0) {
        memmove(c->rbuf, c->rbuf + off, c->rlen - off);
        c->rlen -= off;
    }
    if (need)
        rbuf_reserve(c, need);
}

static void conn_readable(conn *c)
{
    int rounds;
    /* TLS: room for a whole record (16 KiB), so that SSL_read never leaves
     * bytes in OpenSSL's buffer, where epoll cannot see them */
    size_t room = c->ssl ? 16384 + 1024 : 4096;

    /* bounded: a flood on one connection cannot starve the others */
    for (rounds = 0; rounds < 16 && c->fd >= 0; rounds++) {
        ssize_t n;
        if (c->rcap - c->rlen < room)
            rbuf_reserve(c, c->rlen + room + 16384);
        n = conn_recv(c, c->rbuf + c->rlen, c->rcap - c->rlen);
        if (n > 0) {
            c->rlen += (size_t)n;
            if (c->state == ST_HANDSHAKE)
                handle_handshake(c);
            else if (c->state == ST_OPEN)
                parse_frames(c);
            if ((size_t)n < 4096 && !(c->ssl && SSL_pending(c->ssl) > 0))
                break;
        }
        else if (n == 0) {
            if (c->state == ST_HANDSHAKE)
                conn_fail(c, &st.rejected, "closed during the handshake");
            else if (c->state == ST_OPEN && !c->close_sent)
                conn_fail(c, &st.dropped, "EOF from the server");
            else
                conn_close_fd(c);
            return;
        }
        else if (errno == EINTR) {
            continue;
        }
        else if (errno == EAGAIN || errno == EWOULDBLOCK) {
            break;
        }
        else {
            char why[96];
            snprintf(why, sizeof(why), "recv: %s", strerror(errno));
            if (ST_PENDING(c->state))
                conn_fail(c, &st.connect_fail, why);
            else if (!c->close_sent)
                conn_fail(c, &st.dropped, why);
            else
                conn_close_fd(c);
            return;
        }
    }
    if (c->fd >= 0 && c->wlen > c->woff)
        conn_flush(c);
}

/* one step of the TLS handshake; the WebSocket upgrade follows it */
static void tls_step(conn *c)
{
    int rc, err;

    ERR_clear_error();
    rc = SSL_do_handshake(c->ssl);
    if (rc == 1) {
        send_handshake(c);
        return;
    }
    err = SSL_get_error(c->ssl, rc);
    if (err == SSL_ERROR_WANT_READ) {
        set_events(c, 0);
    }
    else if (err == SSL_ERROR_WANT_WRITE) {
        set_events(c, 1);
    }
    else {
        char why[160];
        unsigned long e = ERR_peek_last_error();
        snprintf(why, sizeof(why), "TLS handshake failed: %s",
                 e && ERR_reason_error_string(e)
                 ? ERR_reason_error_string(e) : strerror(errno));
        conn_fail(c, &st.connect_fail, why);
    }
}

static void conn_event(conn *c, uint32_t ev)
{
    if (c->state == ST_CONNECTING) {
        int err = 0;
        socklen_t el = sizeof(err);
        if (!(ev & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
            return;
        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el) != 0)
            err = errno;
        if (err) {
            char why[96];
            snprintf(why, sizeof(why), "connect: %s", strerror(err));
            conn_fail(c, &st.connect_fail, why);
            return;
        }
        if (opt.tls) {
            c->ssl = SSL_new(ssl_ctx);
            if (!c->ssl || SSL_set_fd(c->ssl, c->fd) != 1) {
                conn_fail(c, &st.connect_fail, "SSL_new failed");
                return;
            }
            SSL_set_connect_state(c->ssl);
            c->state = ST_TLS;
            tls_step(c);
            return;
        }
        send_handshake(c);
        return;
    }
    if (c->state == ST_TLS) {
        tls_step(c);
        return;
    }
    if (ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
        conn_readable(c);
    else if (c->fd >= 0 && c->ssl_read_wants_out && (ev & EPOLLOUT))
        conn_readable(c);
    if (c->fd >= 0 && (ev & EPOLLOUT))
        conn_flush(c);
}

/* runs the event loop until done() or the deadline; tick() runs on every
 * pass (pacing, timeouts).  Returns 1 when done() said so. */
static int loop(uint64_t deadline, int (*done)(void), void (*tick)(uint64_t),
                int fine)
{
    struct epoll_event evs[512];
    uint64_t last_sweep = 0;

    if (deadline > run_deadline)
        deadline = run_deadline;
    for (;;) {
        uint64_t now = now_ns();
        int n, i, timeout_ms;

        if (done && done())
            return 1;
        if (now >= deadline)
            return 0;
        if (tick)
            tick(now);
        /* handshake deadlines, ten times a second */
        if (now - last_sweep > 100000000ull) {
            last_sweep = now;
            if (st.handshaking > 0) {
                for (i = 0; i < nconns; i++) {
                    conn *c = &conns[i];
                    if (ST_PENDING(c->state) && now > c->deadline)
                        conn_fail(c, &st.hs_timeout, "handshake timed out");
                }
            }
        }
        if (done && done())
            return 1;
        timeout_ms = fine ? 1 : 50;
        if ((deadline - now) / 1000000 < (uint64_t)timeout_ms)
            timeout_ms = (int)((deadline - now) / 1000000) + 1;
        n = epoll_wait(epfd, evs, 512, timeout_ms);
        if (n < 0 && errno != EINTR)
            die("epoll_wait: %s", strerror(errno));
        for (i = 0; i < n; i++)
            conn_event((conn *)evs[i].data.ptr, evs[i].events);
    }
}

/* ---- opening connections at a bounded rate ---- */

static __thread int open_first, open_last, open_next;
static __thread uint64_t open_t0;
static __thread int open_role;

static void open_tick(uint64_t now)
{
    double allowed;
    int started = open_next - open_first;
    /* --threads: the rate and the handshakes in flight are shared out */
    int inflight = opt.inflight / opt.threads > 0
                   ? opt.inflight / opt.threads : 1;

    if (opt.conn_rate > 0)
        allowed = opt.conn_rate / opt.threads * (double)(now - open_t0) / 1e9
                  + 1;
    else
        allowed = 1e18;
    while (open_next < open_last && st.handshaking < inflight &&
           (double)started < allowed) {
        conn_start(&conns[open_next++], open_role);
        started++;
    }
}

static int open_done(void)
{
    return open_next >= open_last && st.handshaking == 0;
}

/* opens conns[first..last) and waits for their handshakes; returns how many
 * are open */
static int open_range(int first, int last, int role)
{
    double secs;
    int i, n = 0;

    open_first = open_next = first;
    open_last = last;
    open_role = role;
    open_t0 = now_ns();
    secs = (opt.conn_rate > 0 ? (last - first) * opt.threads / opt.conn_rate
                              : 0) +
           opt.connect_timeout + 5;
    loop(open_t0 + (uint64_t)(secs * 1e9), open_done, open_tick, 1);
    /* whatever is still pending failed */
    for (i = first; i < last; i++) {
        conn *c = &conns[i];
        if (c->state == ST_IDLE) {
            c->state = ST_DONE;
            c->failed = 1;
            st.not_started++;
        }
        else if (ST_PENDING(c->state)) {
            conn_fail(c, &st.hs_timeout, NULL);
        }
        if (c->state == ST_OPEN)
            n++;
    }
    return n;
}

/* sends a close to every open connection and waits (bounded) for the ends */
static int all_closed(void)
{
    return st.open_now == 0;
}

static void close_all(void)
{
    int i;

    for (i = 0; i < nconns; i++)
        if (conns[i].state == ST_OPEN)
            send_close(&conns[i], 1000);
    loop(now_ns() + 3000000000ull, all_closed, NULL, 0);
    for (i = 0; i < nconns; i++)
        if (conns[i].fd >= 0)
            conn_close_fd(&conns[i]);
}

static void alloc_conns(int n)
{
    int i;

    nconns = n;
    conns = xcalloc((size_t)n, sizeof(conn));
    for (i = 0; i < n; i++) {
        conns[i].fd = -1;
        conns[i].id = i;
        conns[i].state = ST_IDLE;
    }
}

static void print_common(void)
{
    printf(" connect_fail=%llu hs_timeout=%llu not_started=%llu rejected=%llu"
           " rejected_503=%llu bad_accept=%llu proto_err=%llu dropped=%llu",
           (unsigned long long)st.connect_fail,
           (unsigned long long)st.hs_timeout,
           (unsigned long long)st.not_started,
           (unsigned long long)st.rejected,
           (unsigned long long)st.rejected_503,
           (unsigned long long)st.bad_accept,
           (unsigned long long)st.proto_err,
           (unsigned long long)st.dropped);
    if (opt.deflate)
        printf(" pmd_conns=%d pmd_msgs=%llu pmd_ratio=%.2f", st.pmd_conns,
               (unsigned long long)st.pmd_msgs,
               st.pmd_wire ? (double)st.pmd_plain / (double)st.pmd_wire : 0);
}

/* ------------------------------------------------------------------------ */
/* echo                                                                      */

static struct {
    uint64_t budget;           /* messages left to send (count mode)      */
    int stopping;              /* no new messages                         */
    int measuring;             /* record latencies and counts             */
    uint64_t completed;        /* verified echoes while measuring         */
    uint64_t completed_all;    /* verified echoes, all phases             */
    uint64_t bytes;            /* payload bytes echoed while measuring    */
    uint64_t outstanding;      /* sent, not yet echoed                    */
    uint64_t lost;             /* in flight on a connection that ended    */
    uint64_t last_done_ns;
    hist lat;
} ec;

static void echo_send_one(conn *c)
{
    unsigned slot;
    uint32_t off;

    if (ec.budget == 0 || ec.stopping || c->state != ST_OPEN || c->close_sent)
        return;
    if (c->ring_count >= (unsigned)opt.depth)
        return;
    ec.budget--;
    off = (uint32_t)(rnd64() % PATTERN_SPAN);
    slot = (c->ring_head + c->ring_count) % (unsigned)opt.depth;
    c->ring_off[slot] = off;
    c->ring_count++;
    ec.outstanding++;
    put_frame(c, opt.binary ? 0x2 : 0x1, pattern + off, opt.size);
    c->ring_ts[slot] = now_ns();
}

static void echo_message(conn *c, int op, const uint8_t *p, size_t len)
{
    unsigned slot;
    uint64_t now;

    if (c->ring_count == 0) {
        st.unexpected++;
        st.verify_err++;
        conn_fail(c, NULL, "a message nobody sent");
        return;
    }
    slot = c->ring_head;
    if (op != (opt.binary ? 0x2 : 0x1) || len != opt.size ||
        memcmp(p, pattern + c->ring_off[slot], len) != 0) {
        st.verify_err++;
        conn_fail(c, NULL, "echo differs from the message sent");
        return;
    }
    now = now_ns();
    c->ring_head = (c->ring_head + 1) % (unsigned)opt.depth;
    c->ring_count--;
    ec.outstanding--;
    ec.completed_all++;
    ec.last_done_ns = now;
    if (ec.measuring) {
        ec.completed++;
        ec.bytes += len;
        hist_add(&ec.lat, now - c->ring_ts[slot]);
    }
    echo_send_one(c);
}

static void echo_closed(conn *c)
{
    ec.outstanding -= c->ring_count;
    ec.lost += c->ring_count;
    c->ring_count = 0;
}

static int echo_count_done(void)
{
    return (ec.budget == 0 && ec.outstanding == 0) || st.open_now == 0;
}

static int echo_drained(void)
{
    return ec.outstanding == 0 || st.open_now == 0;
}

static int echo_conns_lost(void)
{
    /* every connection gone: nothing more can happen */
    return st.open_now == 0;
}

static int run_echo(void)
{
    int i, open, ok;
    char tls[160];
    uint64_t t0, t1, msgs;
    double secs;

    alloc_conns(opt.conns);
    for (i = 0; i < nconns; i++) {
        conns[i].ring_ts = xcalloc((size_t)opt.depth, sizeof(uint64_t));
        conns[i].ring_off = xcalloc((size_t)opt.depth, sizeof(uint32_t));
    }
    hist_init(&ec.lat);
    open = open_range(0, nconns, ROLE_PLAIN);
    if (!opt.quiet)
        note("echo: %d of %d connections open", open, nconns);

    ec.budget = opt.count ? opt.count : UINT64_MAX;
    ec.measuring = opt.count ? 1 : 0;
    t0 = now_ns();
    for (i = 0; i < nconns; i++) {
        int k;
        for (k = 0; k < opt.depth; k++)
            echo_send_one(&conns[i]);
        if (conns[i].state == ST_OPEN)
            conn_flush(&conns[i]);
    }
    if (opt.count) {
        loop(run_deadline, echo_count_done, NULL, 0);
        t1 = ec.last_done_ns > t0 ? ec.last_done_ns : now_ns();
    }
    else {
        if (opt.warmup > 0)
            loop(now_ns() + (uint64_t)(opt.warmup * 1e9), echo_conns_lost,
                 NULL, 0);
        ec.measuring = 1;
        t0 = now_ns();
        loop(t0 + (uint64_t)(opt.duration * 1e9), echo_conns_lost, NULL, 0);
        ec.measuring = 0;
        t1 = now_ns();
        ec.stopping = 1;
        loop(t1 + (uint64_t)(opt.drain_timeout * 1e9), echo_drained, NULL, 0);
    }
    msgs = ec.completed;
    secs = (double)(t1 - t0) / 1e9;
    ok = open == nconns && st.verify_err == 0 && st.proto_err == 0 &&
         st.dropped == 0 && ec.outstanding == 0 && ec.lost == 0 &&
         (!opt.count || ec.completed_all == opt.count);
    tls_desc(&conns[0], tls, sizeof(tls));
    close_all();

    printf("%s%smode=echo conns=%d size=%zu depth=%d type=%s open=%d msgs=%llu"
           " secs=%.3f msgs_per_s=%.0f mb_per_s=%.2f p50_us=%.0f p99_us=%.0f"
           " p999_us=%.0f max_us=%.0f verify_err=%llu lost=%llu",
           opt.tag, opt.tag[0] ? " " : "", opt.conns, opt.size, opt.depth,
           opt.binary ? "binary" : "text", open,
           (unsigned long long)msgs, secs, secs > 0 ? (double)msgs / secs : 0,
           secs > 0 ? (double)ec.bytes / secs / 1e6 : 0,
           hist_q(&ec.lat, 0.50), hist_q(&ec.lat, 0.99),
           hist_q(&ec.lat, 0.999), (double)(ec.lat.max_ns / 1000),
           (unsigned long long)st.verify_err,
           (unsigned long long)ec.lost);
    fputs(tls, stdout);
    print_common();
    printf(" ok=%d\n", ok);
    return ok ? 0 : 1;
}

/* ------------------------------------------------------------------------ */
/* hold                                                                      */

static int hold_pinged, hold_ponged;
static hist hold_lat;           /* from the start of the ping burst */
static uint64_t hold_ping_t0;

static void hold_message(conn *c, int op, const uint8_t *p, size_t len)
{
    (void)c; (void)op; (void)p; (void)len;
    st.unexpected++;
}

static void hold_pong(conn *c, const uint8_t *p, size_t len)
{
    char want[32];
    int n = snprintf(want, sizeof(want), "hold-%d", c->id);

    if (c->pinged && !c->ponged && len == (size_t)n && !memcmp(p, want, len)) {
        c->ponged = 1;
        hold_ponged++;
        hist_add(&hold_lat, now_ns() - hold_ping_t0);
    }
}

static int hold_all_ponged(void)
{
    return hold_ponged >= hold_pinged;
}

static int run_hold(void)
{
    tree_stats before, held, after;
    uint64_t t0, t_open;
    int i, open, held_n;
    double connect_s;
    char tls[160];

    alloc_conns(opt.conns);
    before = server_stats();
    t0 = now_ns();
    open = open_range(0, nconns, ROLE_PLAIN);
    t_open = now_ns();
    connect_s = (double)(t_open - t0) / 1e9;
    if (!opt.quiet)
        note("hold: %d of %d open in %.1f s; holding %.0f s", open, nconns,
             connect_s, opt.hold);
    loop(t_open + (uint64_t)(opt.hold * 1e9), NULL, NULL, 0);
    held = server_stats();
    held_n = st.open_now;
    hist_init(&hold_lat);
    hold_ping_t0 = now_ns();    /* a ping to every connection at once */
    for (i = 0; i < nconns; i++) {
        conn *c = &conns[i];
        char p[32];
        int n;
        if (c->state != ST_OPEN)
            continue;
        n = snprintf(p, sizeof(p), "hold-%d", c->id);
        put_frame(c, 0x9, (const uint8_t *)p, (size_t)n);
        c->pinged = 1;
        hold_pinged++;
        conn_flush(c);
    }
    loop(now_ns() + (uint64_t)(opt.pong_timeout * 1e9), hold_all_ponged,
         NULL, 0);
    tls_desc(&conns[0], tls, sizeof(tls));
    close_all();
    after = server_stats();

    printf("%s%smode=hold conns=%d opened=%d held=%d pongs=%d failures=%d"
           " connect_s=%.2f hold_s=%.0f",
           opt.tag, opt.tag[0] ? " " : "", nconns, st.opened, held_n,
           hold_ponged, nconns - hold_ponged, connect_s, opt.hold);
    printf(" pong_p50_us=%.0f pong_p99_us=%.0f pong_max_us=%.0f",
           hist_q(&hold_lat, 0.50), hist_q(&hold_lat, 0.99),
           (double)(hold_lat.max_ns / 1000));
    if (opt.npids) {
        long per = held_n > 0 ? (held.rss_kb - before.rss_kb) * 1024 / held_n
                              : 0;
        printf(" procs_before=%d procs_held=%d rss_before_kb=%ld"
               " rss_held_kb=%ld rss_after_close_kb=%ld rss_per_conn_b=%ld"
               " rss_total_per_conn_b=%ld threads_before=%ld threads_held=%ld",
               before.procs, held.procs, before.rss_kb, held.rss_kb,
               after.rss_kb, per,
               held_n > 0 ? held.rss_kb * 1024 / held_n : 0,
               before.threads, held.threads);
    }
    fputs(tls, stdout);
    print_common();
    printf(" ok=%d\n", hold_ponged == nconns && st.proto_err == 0);
    return hold_ponged == nconns ? 0 : 1;
}

/* ------------------------------------------------------------------------ */
/* broadcast                                                                 */

/* The receivers' side of the counts, one per thread (with --threads N: N
 * receiver threads, and the main thread's own slot last, for the
 * publisher); merged when the threads have ended. */
typedef struct worker {
    pthread_t tid;
    int first, count;          /* its receivers: all_conns[first, +count) */
    int open;                  /* of those, open after the open phase     */
    int ready;                 /* (atomic) its open phase is over         */
    int started;               /* the thread runs (join it)               */
    uint64_t deliveries;
    uint64_t last_delivery;
    uint64_t order_bad;        /* a message after a later one (receiver)  */
    hist lat;                  /* per delivery                            */
    stats st;                  /* its connection counts, at its end       */
} worker;

static worker *workers;
static int nworkers;
static __thread worker *self;
static conn *all_conns;
static int bc_stop;            /* (atomic) receiver threads: close, end   */

/* Shared by all threads: the publisher's side (main thread) and the
 * per-message counts, which receivers on any thread update atomically */
static struct {
    conn *pub;
    int nrecv;                 /* receivers open when measuring began      */
    int probed;                /* (atomic) receivers that saw a probe     */
    uint64_t last_probe;
    int next_seq;              /* (atomic) next measured message to send  */
    int completed;             /* (atomic) fully fanned out or timed out  */
    int incomplete;            /* (atomic) of those, timed out            */
    int oldest;                /* oldest message not yet complete         */
    uint64_t *sent_ts;         /* (atomic) written before the send        */
    uint32_t *delivered;       /* (atomic)                                */
    uint8_t *done;             /* (atomic) 0, 1 all received, 2 timed out */
    uint64_t *fan_ns;          /* until the last receiver got it          */
    uint64_t first_send, last_send;
    hist fan;                  /* per message, built from fan_ns at the end */
    int measuring;             /* (atomic)                                */
    char *buf;
    size_t bufcap;
} bc;

static void bcast_send(int seq)
{
    int n;
    size_t len, pl = strlen(opt.pub_prefix), sl = strlen(opt.pub_suffix);
    char token[64];
    uint64_t ts = now_ns();

    n = snprintf(token, sizeof(token), "wsb:%d:%llu;", seq,
                 (unsigned long long)ts);
    len = pl + (size_t)n + sl;
    if (len < opt.size)
        len = opt.size;
    if (len + 1 > bc.bufcap) {
        bc.bufcap = len + 1;
        bc.buf = xrealloc(bc.buf, bc.bufcap);
    }
    memcpy(bc.buf, opt.pub_prefix, pl);
    memcpy(bc.buf + pl, token, (size_t)n);
    memset(bc.buf + pl + n, 'x', len - pl - (size_t)n - sl);
    memcpy(bc.buf + len - sl, opt.pub_suffix, sl);
    if (seq > 0) {
        /* before the send: a receiver on another thread may read it as
         * soon as the message is out */
        __atomic_store_n(&bc.sent_ts[seq], ts, __ATOMIC_RELEASE);
        __atomic_store_n(&bc.next_seq, seq + 1, __ATOMIC_RELEASE);
        if (!bc.first_send)
            bc.first_send = ts;
        bc.last_send = ts;
    }
    put_frame(bc.pub, 0x1, (const uint8_t *)bc.buf, len);
    conn_flush(bc.pub);
}

/* seq is complete: all its receivers got it (at `now`), or it timed out;
 * whichever comes first counts */
static void bcast_complete(int seq, int timed_out, uint64_t now)
{
    uint8_t expect = 0;

    if (!__atomic_compare_exchange_n(&bc.done[seq], &expect,
                                     (uint8_t)(timed_out ? 2 : 1), 0,
                                     __ATOMIC_ACQ_REL, __ATOMIC_RELAXED))
        return;
    if (!timed_out)
        bc.fan_ns[seq] = now - __atomic_load_n(&bc.sent_ts[seq],
                                               __ATOMIC_ACQUIRE);
    else
        __atomic_add_fetch(&bc.incomplete, 1, __ATOMIC_RELAXED);
    __atomic_add_fetch(&bc.completed, 1, __ATOMIC_RELEASE);
}

static void bcast_message(conn *c, int op, const uint8_t *p, size_t len)
{
    const uint8_t *t;
    unsigned long long seq = 0, ts = 0;
    size_t i;
    uint64_t now;

    if (c->role != ROLE_RECV || op != 0x1)
        return;
    t = memmem(p, len, "wsb:", 4);
    if (!t) {
        st.unexpected++;     /* join notices and the like */
        return;
    }
    i = (size_t)(t - p) + 4;
    while (i < len && isdigit(p[i]))
        seq = seq * 10 + (p[i++] - '0');
    if (i >= len || p[i] != ':')
        return;
    i++;
    while (i < len && isdigit(p[i]))
        ts = ts * 10 + (p[i++] - '0');
    if (seq == 0) {
        if (!c->probed) {
            c->probed = 1;
            __atomic_add_fetch(&bc.probed, 1, __ATOMIC_RELAXED);
        }
        return;
    }
    if (!__atomic_load_n(&bc.measuring, __ATOMIC_ACQUIRE) ||
        seq >= (unsigned long long)__atomic_load_n(&bc.next_seq,
                                                   __ATOMIC_ACQUIRE) ||
        __atomic_load_n(&bc.sent_ts[seq], __ATOMIC_ACQUIRE) != ts)
        return;
    /* every receiver gets the messages in the order they were sent (one
     * publisher: its order is the channel's) */
    if (seq <= c->last_seq)
        self->order_bad++;
    else
        c->last_seq = seq;
    now = now_ns();
    self->deliveries++;
    self->last_delivery = now;
    hist_add(&self->lat, now - ts);
    if (__atomic_add_fetch(&bc.delivered[seq], 1, __ATOMIC_ACQ_REL)
        >= (uint32_t)bc.nrecv)
        bcast_complete((int)seq, 0, now);
}

static int bcast_all_probed(void)
{
    return __atomic_load_n(&bc.probed, __ATOMIC_RELAXED)
               >= __atomic_load_n(&recv_open, __ATOMIC_RELAXED) ||
           bc.pub->state != ST_OPEN;
}

static void bcast_probe_tick(uint64_t now)
{
    if (bc.pub->state == ST_OPEN && now - bc.last_probe > 250000000ull) {
        bc.last_probe = now;
        bcast_send(0);
    }
}

static void bcast_tick(uint64_t now)
{
    uint64_t tmo = (uint64_t)(opt.msg_timeout * 1e9);
    int next = bc.next_seq;    /* only this (the main) thread writes it */

    /* time out the oldest messages that are missing receivers */
    while (bc.oldest < next) {
        if (__atomic_load_n(&bc.done[bc.oldest], __ATOMIC_ACQUIRE)) {
            bc.oldest++;
            continue;
        }
        if (now - bc.sent_ts[bc.oldest] > tmo) {
            bcast_complete(bc.oldest, 1, now);
            bc.oldest++;
            continue;
        }
        break;
    }
    if (bc.pub->state != ST_OPEN)
        return;
    while (bc.next_seq <= opt.messages) {
        int sent = bc.next_seq - 1;
        if (opt.rate > 0) {
            /* now may predate the first send's own clock reading: an
             * unsigned difference would wrap and send everything at once */
            if (bc.first_send &&
                (double)sent >= opt.rate * (double)(now > bc.first_send
                                                    ? now - bc.first_send
                                                    : 0) / 1e9)
                break;
        }
        else if (sent - __atomic_load_n(&bc.completed, __ATOMIC_ACQUIRE)
                 >= opt.window) {
            break;
        }
        /* it stamps the message, then moves next_seq past it, then sends
         * (a receiver on another thread reads them in that order) */
        bcast_send(bc.next_seq);
    }
}

static int bcast_done(void)
{
    return __atomic_load_n(&bc.completed, __ATOMIC_ACQUIRE) >= opt.messages
           || bc.pub->state != ST_OPEN;
}

static int bcast_stopped(void)
{
    return __atomic_load_n(&bc_stop, __ATOMIC_ACQUIRE) != 0;
}

/* a receiver thread: opens its slice, serves it until told to stop, then
 * closes it and leaves its counts in its worker slot */
static void *recv_thread(void *arg)
{
    worker *w = arg;

    self = w;
    rng_seed();
    epfd = epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0)
        die("epoll_create1: %s", strerror(errno));
    conns = all_conns + w->first;
    nconns = w->count;
    w->open = open_range(0, nconns, ROLE_RECV);
    __atomic_store_n(&w->ready, 1, __ATOMIC_RELEASE);
    loop(run_deadline, bcast_stopped, NULL, 0);
    close_all();
    w->st = st;
    close(epfd);
    return NULL;
}

/* CPUs this process may run on (taskset) */
static int usable_cpus(void)
{
    cpu_set_t set;

    if (sched_getaffinity(0, sizeof(set), &set) != 0)
        return 1;
    return CPU_COUNT(&set) > 0 ? CPU_COUNT(&set) : 1;
}

/* " tls=TLSv1.3 tls_cipher=..." for a TLS connection, else "" */
static void tls_desc(const conn *c, char *out, size_t outlen)
{
    out[0] = '\0';
    if (c->ssl)
        snprintf(out, outlen, " tls=%s tls_cipher=%s", SSL_get_version(c->ssl),
                 SSL_CIPHER_get_name(SSL_get_current_cipher(c->ssl)));
}

static int run_broadcast(void)
{
    int open = 0, i, threaded = opt.threads > 1, busy, limited;
    uint64_t t, deliveries = 0, last_delivery = 0, order_bad = 0;
    double secs, wall, load_cpu, load_pct;
    tree_stats before, during, m0;
    worker *mine;
    hist lat;
    char tls[160];

    alloc_conns(opt.receivers + 1);
    all_conns = conns;
    bc.sent_ts = xcalloc((size_t)opt.messages + 1, sizeof(uint64_t));
    bc.delivered = xcalloc((size_t)opt.messages + 1, sizeof(uint32_t));
    bc.done = xcalloc((size_t)opt.messages + 1, 1);
    bc.fan_ns = xcalloc((size_t)opt.messages + 1, sizeof(uint64_t));
    hist_init(&bc.fan);
    /* slots: the receiver threads', then the main thread's */
    nworkers = threaded ? opt.threads : 0;
    workers = xcalloc((size_t)nworkers + 1, sizeof(worker));
    for (i = 0; i <= nworkers; i++)
        hist_init(&workers[i].lat);
    mine = &workers[nworkers];
    self = mine;
    before = server_stats();
    if (threaded) {
        int per = opt.receivers / nworkers, extra = opt.receivers % nworkers;
        int first = 0, waited;
        for (i = 0; i < nworkers; i++) {
            int rc;
            workers[i].first = first;
            workers[i].count = per + (i < extra ? 1 : 0);
            first += workers[i].count;
            rc = pthread_create(&workers[i].tid, NULL, recv_thread,
                                &workers[i]);
            if (rc != 0)
                die("pthread_create: %s", strerror(rc));
            workers[i].started = 1;
        }
        /* the main thread keeps the publisher alone */
        conns = all_conns + opt.receivers;
        nconns = 1;
        for (waited = 0; ; waited++) {
            int ready = 0;
            for (i = 0; i < nworkers; i++)
                ready += __atomic_load_n(&workers[i].ready, __ATOMIC_ACQUIRE);
            if (ready == nworkers || now_ns() >= run_deadline)
                break;
            usleep(10000);
        }
        for (i = 0; i < nworkers; i++)
            open += __atomic_load_n(&workers[i].ready, __ATOMIC_ACQUIRE)
                    ? workers[i].open : 0;
        bc.pub = &conns[0];
        open_range(0, 1, ROLE_PUB);
    }
    else {
        open = open_range(0, opt.receivers, ROLE_RECV);
        bc.pub = &conns[opt.receivers];
        open_range(opt.receivers, opt.receivers + 1, ROLE_PUB);
    }
    if (!opt.quiet)
        note("broadcast: %d of %d receivers open (%d thread%s)", open,
             opt.receivers, threaded ? nworkers : 1, threaded ? "s" : "");
    if (bc.pub->state != ST_OPEN) {
        __atomic_store_n(&bc_stop, 1, __ATOMIC_RELEASE);
        for (i = 0; i < nworkers; i++) {
            if (workers[i].started) {
                pthread_join(workers[i].tid, NULL);
                stats_merge(&st, &workers[i].st);
            }
        }
        printf("%s%smode=broadcast receivers=%d open=%d publisher=failed",
               opt.tag, opt.tag[0] ? " " : "", opt.receivers, open);
        print_common();
        printf(" ok=0\n");
        return 1;
    }
    tls_desc(bc.pub, tls, sizeof(tls));
    /* probes until every receiver got one: subscriptions are live */
    loop(now_ns() + (uint64_t)(opt.settle_timeout * 1e9), bcast_all_probed,
         bcast_probe_tick, 0);
    if (!opt.quiet)
        note("broadcast: %d receivers answered the probe",
             __atomic_load_n(&bc.probed, __ATOMIC_RELAXED));
    loop(now_ns() + (uint64_t)(opt.settle * 1e9), NULL, NULL, 0);

    bc.nrecv = __atomic_load_n(&recv_open, __ATOMIC_ACQUIRE);
    bc.next_seq = 1;
    bc.oldest = 1;
    /* CPU time of the server and of this process over the measured
     * phase: a load generator near 100% caps every server alike */
    m0 = server_stats();
    load_cpu = self_cpu_s();
    t = now_ns();
    __atomic_store_n(&bc.measuring, 1, __ATOMIC_RELEASE);
    loop(t + (uint64_t)((opt.messages / (opt.rate > 0 ? opt.rate : 1.0) +
                         opt.msg_timeout * (opt.rate > 0 ? 1 : opt.messages))
                        * 1e9) + 10000000000ull,
         bcast_done, bcast_tick, 1);
    __atomic_store_n(&bc.measuring, 0, __ATOMIC_RELEASE);
    load_cpu = self_cpu_s() - load_cpu;
    wall = (double)(now_ns() - t) / 1e9;
    during = server_stats();
    __atomic_store_n(&bc_stop, 1, __ATOMIC_RELEASE);
    close_all();
    for (i = 0; i < nworkers; i++) {
        if (workers[i].started) {
            pthread_join(workers[i].tid, NULL);
            stats_merge(&st, &workers[i].st);
        }
    }
    /* merge the threads' counts (the main thread's slot is the only one
     * without --threads) */
    hist_init(&lat);
    for (i = 0; i <= nworkers; i++) {
        deliveries += workers[i].deliveries;
        order_bad += workers[i].order_bad;
        if (workers[i].last_delivery > last_delivery)
            last_delivery = workers[i].last_delivery;
        hist_merge(&lat, &workers[i].lat);
    }
    for (i = 1; i <= opt.messages; i++)
        if (bc.done[i] == 1)
            hist_add(&bc.fan, bc.fan_ns[i]);
    secs = last_delivery > bc.first_send
         ? (double)(last_delivery - bc.first_send) / 1e9 : 0;
    load_pct = wall > 0 ? 100.0 * load_cpu / wall : 0;
    /* the load generator was the limit when it used (nearly) all the CPU
     * it can use: its busy threads, on the CPUs it may run on */
    busy = threaded ? nworkers + 1 : 1;
    if (busy > usable_cpus())
        busy = usable_cpus();
    limited = load_pct >= 90.0 * busy;

    printf("%s%smode=broadcast receivers=%d open=%d probed=%d messages=%d"
           " sent=%d expected=%llu delivered=%llu incomplete=%d secs=%.3f"
           " deliveries_per_s=%.0f lat_p50_us=%.0f lat_p99_us=%.0f"
           " lat_max_us=%.0f fanout_p50_us=%.0f fanout_p99_us=%.0f"
           " order_violations=%llu",
           opt.tag, opt.tag[0] ? " " : "", opt.receivers, open, bc.probed,
           opt.messages, bc.next_seq - 1,
           (unsigned long long)bc.nrecv * (unsigned long long)opt.messages,
           (unsigned long long)deliveries, bc.incomplete, secs,
           secs > 0 ? (double)deliveries / secs : 0,
           hist_q(&lat, 0.50), hist_q(&lat, 0.99),
           (double)(lat.max_ns / 1000), hist_q(&bc.fan, 0.50),
           hist_q(&bc.fan, 0.99), (unsigned long long)order_bad);
    if (opt.npids)
        printf(" rss_before_kb=%ld rss_during_kb=%ld threads_during=%ld"
               " server_cpu_s=%.2f server_cpu_us_per_delivery=%.2f",
               before.rss_kb, during.rss_kb, during.threads,
               during.cpu_s - m0.cpu_s,
               deliveries ? (during.cpu_s - m0.cpu_s) * 1e6
                            / (double)deliveries : 0);
    printf(" load_cpu_pct=%.0f load_threads=%d load_cpus=%d load_limited=%d%s",
           load_pct, threaded ? nworkers + 1 : 1, usable_cpus(), limited, tls);
    print_common();
    printf(" ok=%d\n", open == opt.receivers && bc.incomplete == 0 &&
           bc.completed == opt.messages && st.proto_err == 0);
    return bc.incomplete == 0 && bc.completed == opt.messages ? 0 : 1;
}

/* ------------------------------------------------------------------------ */
/* dispatch                                                                  */

static void on_open(conn *c)
{
    (void)c;
}

static void on_message(conn *c, int op, const uint8_t *p, size_t len)
{
    switch (opt.mode) {
    case MODE_ECHO:
        echo_message(c, op, p, len);
        break;
    case MODE_HOLD:
        hold_message(c, op, p, len);
        break;
    default:
        bcast_message(c, op, p, len);
        break;
    }
}

static void on_closed(conn *c)
{
    if (opt.mode == MODE_ECHO)
        echo_closed(c);
}

static void on_pong(conn *c, const uint8_t *p, size_t len)
{
    if (opt.mode == MODE_HOLD)
        hold_pong(c, p, len);
}

static void raise_nofile(void)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
            note("setrlimit(NOFILE): %s", strerror(errno));
    }
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        uint64_t need = (uint64_t)(opt.mode == MODE_BROADCAST
                                   ? opt.receivers + 1 : opt.conns) + 16;
        if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < need)
            die("open-file limit %llu is below the %llu descriptors needed",
                (unsigned long long)rl.rlim_cur, (unsigned long long)need);
    }
}

/* --tls: one client context for every connection and thread.  No
 * certificate check (the server is on 127.0.0.1 with a throw-away
 * self-signed certificate); TLS 1.2 at least, 1.3 unless --tls-max 1.2;
 * partial writes, since a frame may go out in several tries from a buffer
 * that grows (and moves) in between. */
static void tls_init(void)
{
    ssl_ctx = SSL_CTX_new(TLS_client_method());
    if (!ssl_ctx)
        die("SSL_CTX_new failed");
    SSL_CTX_set_verify(ssl_ctx, SSL_VERIFY_NONE, NULL);
    if (SSL_CTX_set_min_proto_version(ssl_ctx, TLS1_2_VERSION) != 1 ||
        SSL_CTX_set_max_proto_version(ssl_ctx, opt.tls_max == 12
                                      ? TLS1_2_VERSION : 0) != 1)
        die("cannot set the TLS versions");
    SSL_CTX_set_mode(ssl_ctx, SSL_MODE_ENABLE_PARTIAL_WRITE
                              | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    /* a peer that closes without close_notify is an EOF, not an error */
    SSL_CTX_set_options(ssl_ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
    /* each connection makes its own full handshake, as distinct clients
     * would */
    SSL_CTX_set_session_cache_mode(ssl_ctx, SSL_SESS_CACHE_OFF);
}

int main(int argc, char **argv)
{
    size_t i, plen;
    static const char alnum[] =
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    int rc;

    parse_args(argc, argv);
    setvbuf(stdout, NULL, _IOLBF, 0);
    signal(SIGPIPE, SIG_IGN);
    rng_seed();
    raise_nofile();
    run_deadline = now_ns() + (uint64_t)(opt.max_time * 1e9);
    epfd = epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0)
        die("epoll_create1: %s", strerror(errno));
    if (opt.tls)
        tls_init();
    plen = PATTERN_SPAN + opt.size + 8;
    pattern = xmalloc(plen);
    for (i = 0; i < plen; i++)
        pattern[i] = (uint8_t)alnum[rnd64() % (sizeof(alnum) - 1)];

    switch (opt.mode) {
    case MODE_ECHO:
        rc = run_echo();
        break;
    case MODE_HOLD:
        rc = run_hold();
        break;
    default:
        rc = run_broadcast();
        break;
    }
    if (now_ns() >= run_deadline)
        note("stopped at --max-time");
    return rc;
}
