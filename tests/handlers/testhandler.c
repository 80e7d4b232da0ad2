/*
 * testhandler.c -- a test-only mod_websocket handler with knobs, in the
 * spirit of httpd's mod_h2test.  It exercises every callback and every
 * host service of include/mod_websocket.h so that tests/integration can
 * check the guarantees of the handler API.  Built by `make`, never
 * installed.
 *
 *     <Location /t>
 *         SetHandler websocket
 *         WebSocketHandler tests/handlers/.libs/mod_ws_test.so
 *         WebSocketHandlerOption LogFile /path/to/events.log
 *     </Location>
 *     <Location /s>
 *         SetHandler websocket
 *         WebSocketHandler tests/handlers/.libs/mod_ws_test.so mws_test_stream_entry
 *         WebSocketHandlerOption Stream on|relay
 *     </Location>
 *
 * Options: CrashInit any (a fault inside init()); LogTest WORD (init() logs "logtest 42 18446744073709551615 -7
 * 200 WORD" with host->log and no connection); LogFile PATH (append one line per event, see below); Stream
 * on|relay (streaming handler only: relay also sends every piece back with
 * send_part); any other key can be read back with the commands "option"
 * (host->option, merged per location) and "initopt" (what init() got).
 *
 * Built twice: against include/ (API 1.1, mod_ws_test.so) and against the
 * released 1.0 header kept in tests/handlers/abi-1.0 (mod_ws_test10.so),
 * which proves a 1.0-built handler still loads and behaves the same.  What
 * only 1.1 has is under #if MWS_ABI_MINOR >= 1.
 *
 * 1.1 options: Reject WHY (check_options refuses it, naming that option's
 * line); RejectAll WHY (refused, no single option).
 *
 * Query knobs, handled in on_open (repeatable, values %-decoded):
 *   refuse=N      add "X-Mws-Test: refused" and return N (any number)
 *   reason=TEXT   1.1: req_refuse_reason(TEXT) (its result in "X-Mws-Rv")
 *   body=TEXT     1.1: req_refuse_body(ctype or NULL, TEXT)
 *   ctype=TYPE    1.1: the Content-Type for body= (give it before body=)
 *   retry=N       add "Retry-After: N"
 *   proto=P       req_select_subprotocol(P); "proto P RV" is sent after open
 *   greet=TEXT    send TEXT from on_open
 *   opentimer=MS  a one-shot timer added in on_open sends "opentimer fired"
 *   close=CODE    host->close(CODE, "from on_open") inside on_open
 *   hdr=A,B       request headers to capture for the command "header"
 *
 * Commands are text messages whose first word is a command; any other
 * message is echoed.  Replies are text messages.
 *   id                  "id PID ID"
 *   user|path|query|ip  what on_open saw ("(none)" for NULL)
 *   header NAME         a captured header (X-Test, Host, Origin and hdr=)
 *   offered             the offered subprotocols, comma separated
 *   subprotocol         host->subprotocol()
 *   option KEY          host->option();  initopt KEY: init()'s options
 *   stats               JSON counters of this child process
 *   close CODE [REASON] host->close; "close-rv RV" when it fails
 *   close2 CODE         close twice and send: the results go to LogFile
 *   ping [N]            host->ping with N (default 4) bytes
 *   fail                on_message returns -1 (the module closes with 1011)
 *   queued [N]          send N bytes of binary first, then "queued Q"
 *   sendpart [utf8|mix|empty]  a message in 3 parts with send_part
 *   threads N M         N threads send M messages "t T J PAD" at once, then
 *                       "threads done ERRORS"
 *   partthreads N M P   one thread sends a P-part message while N threads
 *                       send M whole ones; then "partthreads done ERRORS"
 *   fanout K            16 threads send K messages "f T J PAD" to every
 *                       registered connection of this child, then
 *                       "fanout done CONNS ERRORS"
 *   find ID             send "found FROM" to connection ID of this child
 *   timer MS N          periodic: "timer K" N times, then it cancels itself
 *                       and sends "timer done RV1 RV2"
 *   oneshot MS [cancel] "oneshot fired" once (or cancelled at once)
 *   timerflood MS       a periodic timer sending "tick" until the end
 *   crash               a fault inside on_message (the child dies)
 *   logtest             host->log on the connection with %zu %llu %jd
 *                       %hhu %s, then replies "logtest done"
 *   stalecancel         a one-shot timer ends; a second one then adds a
 *                       third (which may get the first's freed memory) and
 *                       cancels the first's stale handle: "stalecancel RV
 *                       reused=0|1" (RV must be MWS_ERR_NOTFOUND), then
 *                       the third still sends "oneshot fired"
 *   sleep MS            block in on_message
 *   sendafterclose      a thread sends "tick" until it gets MWS_ERR_CLOSED,
 *                       then checks every host call on the dead connection
 *   badcalls            JSON of the results of invalid calls
 *   note TEXT           a line in LogFile
 *   abi                 "abi MAJOR.MINOR" this handler was built against
 *   instance            1.1: "instance I L LI": host->instance(c),
 *                       host->line(c) == host->line(NULL) inside a
 *                       callback, host->line_instance(line); 1 = as
 *                       expected
 *   linepub CH TEXT     1.1: from a thread of its own, publish(CH) (must
 *                       fail: no line) and line_publish(line, CH): "linepub
 *                       RV1 RV2"
 *   sendflags F TEXT    1.1: send_flags(F, TEXT), "sendflags RV"
 *   compressed          1.1: "compressed RV"
 *   flood N SIZE        a thread sends N binary messages of SIZE bytes
 *                       (the first 8 bytes: the message's number, big
 *                       endian; then 'x') as fast as send() returns, and
 *                       writes "flood pid=P id=I ok=.. toobig=.. closed=..
 *                       other=.. ms=.." to LogFile (ms: how long the
 *                       sends took), then replies "flood done OK TOOBIG"
 *                       (not with a third word "quiet")
 *
 * LogFile lines (one write(2) each, so children do not mix them):
 *   init pid=P name=N | shutdown pid=P live=N | open pid=P id=I path=...
 *   refuse pid=P id=I status=S | close pid=P id=I code=C reason=%-encoded
 *   doubleclose/overlap/late pid=P ... | afterclose pid=P id=I ok|bad ...
 *   note pid=P id=I ... | flood pid=P id=I ok=N toobig=N closed=N ...
 */
#include <inttypes.h>
#include <stdint.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "mod_websocket.h"

#define T_MAX_HDRS     8
#define T_CMD_MAX      1024
#define T_FANOUT_THRDS 16
#define T_MAX_THREADS  64
#define T_MAX_SUBS     8

static const mws_host *host;

/* One per WebSocketHandler line, per child process. */
typedef struct {
    char *logfile;
    int relay;                   /* Stream relay */
    mws_option *opts;            /* copies of what init() got */
    size_t nopts;
    char *pub_shutdown;          /* PublishShutdown channel */
} t_instance;

/* One per accepted connection; freed in on_close. */
typedef struct t_conn {
    mws_conn *c;
    t_instance *inst;
    uint64_t id;
    char *path, *query, *user, *ip, *offered;
    char *hdr_name[T_MAX_HDRS], *hdr_value[T_MAX_HDRS];
    int nhdr;
    int in_cb;                   /* callbacks running now (must be <= 1) */
    struct t_conn *next, *prev;  /* the registry (g_lock) */
    /* timers */
    mws_timer *ptimer;
    int pfired, plimit;
    mws_timer *otimer;
    mws_timer *stale;            /* stalecancel: the handle of an ended timer */
    /* streaming */
    int in_msg;
    uint64_t pieces, bytes, max_piece, order_errors;
    uint32_t fnv;
    /* channels subscribed with "sub" (unsubscribed again in on_close) */
    char *subs[T_MAX_SUBS];
    int nsubs;
} t_conn;

/* Counters of this child process. */
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static t_conn *g_head;
static unsigned long g_opens, g_closes, g_double, g_refusals, g_overlaps,
                     g_late, g_live;
static int g_last_code = -1;
static char g_last_reason[3 * 128 + 1];
static char *g_logfile;          /* the last LogFile any init() saw */
static unsigned long g_instances; /* init()s without their shutdown() */

/* ---- small helpers ------------------------------------------------------ */

static char *t_strdup(const char *s)
{
    return s ? strdup(s) : NULL;
}

static const char *or_none(const char *s)
{
    return s ? s : "(none)";
}

/* %-encode everything outside printable ASCII, and '%', ' ' and '"'. */
static void pct_encode(char *out, size_t outsz, const char *in, size_t len)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0, i;

    for (i = 0; i < len && o + 4 < outsz; ++i) {
        unsigned char ch = (unsigned char)in[i];
        if (ch > 0x20 && ch < 0x7f && ch != '%' && ch != '"') {
            out[o++] = (char)ch;
        }
        else {
            out[o++] = '%';
            out[o++] = hex[ch >> 4];
            out[o++] = hex[ch & 15];
        }
    }
    out[o] = '\0';
}

static void pct_decode(char *s)
{
    char *o = s;

    for (; *s; ++s) {
        if (*s == '%' && s[1] && s[2]) {
            char h[3] = { s[1], s[2], 0 };
            *o++ = (char)strtol(h, NULL, 16);
            s += 2;
        }
        else if (*s == '+') {
            *o++ = ' ';
        }
        else {
            *o++ = *s;
        }
    }
    *o = '\0';
}

/* Append one line to the LogFile with a single write(2). */
static void logline(const t_instance *ti, const char *fmt, ...)
{
    const char *path = (ti && ti->logfile) ? ti->logfile : g_logfile;
    char buf[1024];
    va_list ap;
    int n, fd;

    if (!path) {
        return;
    }
    va_start(ap, fmt);
    n = vsnprintf(buf, sizeof(buf) - 1, fmt, ap);
    va_end(ap);
    if (n < 0) {
        return;
    }
    if ((size_t)n > sizeof(buf) - 2) {
        n = (int)sizeof(buf) - 2;
    }
    buf[n++] = '\n';
    fd = open(path, O_WRONLY | O_APPEND | O_CREAT, 0666);
    if (fd >= 0) {
        if (write(fd, buf, (size_t)n) < 0) {
            /* nothing to do: the test will miss the line */
        }
        close(fd);
    }
}

#if MWS_ABI_MINOR >= 1
static void cmd_api11(t_conn *tc, mws_conn *c, const char *cmd,
                      const char *arg);
#endif

static int reply(mws_conn *c, const char *fmt, ...)
{
    char buf[4096];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    if (n < 0) {
        return MWS_ERR_INVALID;
    }
    if ((size_t)n >= sizeof(buf)) {
        n = (int)sizeof(buf) - 1;
    }
    return host->send(c, MWS_TEXT, buf, (size_t)n);
}

static void msleep(unsigned ms)
{
    struct timespec ts;

    ts.tv_sec = ms / 1000;
    ts.tv_nsec = (long)(ms % 1000) * 1000000L;
    while (nanosleep(&ts, &ts) != 0) {
        /* interrupted: sleep the rest */
    }
}

/* The deterministic padding of the numbered messages ("t"/"f" T J PAD);
 * tests/integration/apiutil.py computes the same. */
static size_t numbered_msg(char *buf, size_t bufsz, char tag, int t, int j)
{
    size_t padlen = (size_t)((t * 31 + j * 7) % 97), k;
    int n = snprintf(buf, bufsz, "%c %d %d ", tag, t, j);

    for (k = 0; k < padlen && (size_t)n + k + 1 < bufsz; ++k) {
        buf[n + k] = (char)('a' + (t + j + (int)k) % 26);
    }
    buf[n + k] = '\0';
    return (size_t)n + k;
}

static uint32_t fnv1a(uint32_t h, const void *data, size_t len)
{
    const unsigned char *p = data;
    size_t i;

    for (i = 0; i < len; ++i) {
        h ^= p[i];
        h *= 16777619u;
    }
    return h;
}

/* ---- callback bookkeeping: at most one callback per connection ---------- */

/* Enter a callback: the connection's data, or NULL (and a "late" line)
 * when a callback comes after on_close. */
static t_conn *enter(mws_conn *c, const char *what)
{
    t_conn *tc = host->get_data(c);

    if (!tc) {
        pthread_mutex_lock(&g_lock);
        ++g_late;
        pthread_mutex_unlock(&g_lock);
        logline(NULL, "late pid=%d id=%" PRIu64 " in=%s", (int)getpid(),
                host->id(c), what);
        return NULL;
    }
    if (__atomic_add_fetch(&tc->in_cb, 1, __ATOMIC_SEQ_CST) != 1) {
        pthread_mutex_lock(&g_lock);
        ++g_overlaps;
        pthread_mutex_unlock(&g_lock);
        logline(tc->inst, "overlap pid=%d id=%" PRIu64 " in=%s",
                (int)getpid(), tc->id, what);
    }
    return tc;
}

static void leave(t_conn *tc)
{
    if (tc) {
        __atomic_sub_fetch(&tc->in_cb, 1, __ATOMIC_SEQ_CST);
    }
}

/* ---- init / shutdown ------------------------------------------------- */

/* A real fault (not a raised signal), as a handler's bug makes. */
static void crash_now(void)
{
    volatile int *volatile nowhere = NULL;

    *nowhere = 1;
}

static int t_init(const mws_host *h, const mws_option *opts, size_t nopts,
                  void **instance)
{
    t_instance *ti = calloc(1, sizeof(*ti));
    size_t i;

    if (!ti) {
        return -1;
    }
    host = h;
    if (h->abi_major != MWS_ABI_MAJOR
        || h->struct_size < offsetof(mws_host, publish) + sizeof(h->publish)) {
        free(ti);
        return -1;
    }
    ti->opts = calloc(nopts ? nopts : 1, sizeof(mws_option));
    if (!ti->opts) {
        free(ti);
        return -1;
    }
    for (i = 0; i < nopts; ++i) {
        ti->opts[i].key = t_strdup(opts[i].key);
        ti->opts[i].value = t_strdup(opts[i].value);
        if (!strcasecmp(opts[i].key, "LogFile")) {
            free(ti->logfile);
            ti->logfile = t_strdup(opts[i].value);
            pthread_mutex_lock(&g_lock);
            free(g_logfile);
            g_logfile = t_strdup(opts[i].value);
            pthread_mutex_unlock(&g_lock);
        }
        else if (!strcasecmp(opts[i].key, "Stream")) {
            ti->relay = !strcasecmp(opts[i].value, "relay");
        }
        else if (!strcasecmp(opts[i].key, "PublishShutdown")) {
            free(ti->pub_shutdown);
            ti->pub_shutdown = t_strdup(opts[i].value);
        }
    }
    ti->nopts = nopts;
    *instance = ti;
    pthread_mutex_lock(&g_lock);
    ++g_instances;
    pthread_mutex_unlock(&g_lock);
    logline(ti, "init pid=%d nopts=%zu", (int)getpid(), nopts);
    for (i = 0; i < nopts; ++i) {
        if (!strcasecmp(opts[i].key, "CrashInit")) {
            crash_now();        /* a handler with a bug in init */
        }
        if (!strcasecmp(opts[i].key, "LogTest")) {
            /* host->log without a connection, with the C99 conversions
             * the compiler checks (a %s last: a misread argument before
             * it would crash) */
            host->log(NULL, MWS_LOG_NOTICE, "logtest %zu %llu %jd %hhu %s",
                      (size_t)42, 18446744073709551615ULL, (intmax_t)-7,
                      (unsigned char)200, opts[i].value);
        }
        if (!strcasecmp(opts[i].key, "PublishInit")) {
            logline(ti, "initpub pid=%d rv=%d", (int)getpid(),
                    host->publish(opts[i].value, MWS_TEXT, "init", 4));
        }
    }
    return 0;
}

static void t_shutdown(void *instance)
{
    t_instance *ti = instance;
    unsigned long live;
    size_t i;

    pthread_mutex_lock(&g_lock);
    live = g_live;
    pthread_mutex_unlock(&g_lock);
    /* "after every on_close": nothing may be live any more */
    logline(ti, "shutdown pid=%d live=%lu", (int)getpid(), live);
    if (!ti) {
        return;
    }
    if (ti->pub_shutdown) {
        logline(ti, "shutdownpub pid=%d rv=%d", (int)getpid(),
                host->publish(ti->pub_shutdown, MWS_TEXT, "shutdown", 8));
        free(ti->pub_shutdown);
    }
    pthread_mutex_lock(&g_lock);
    if (g_instances && --g_instances == 0) {
        free(g_logfile);        /* the last instance: nothing logs any more */
        g_logfile = NULL;
    }
    pthread_mutex_unlock(&g_lock);
    for (i = 0; i < ti->nopts; ++i) {
        free((char *)ti->opts[i].key);
        free((char *)ti->opts[i].value);
    }
    free(ti->opts);
    free(ti->logfile);
    free(ti);
}

/* ---- on_open ------------------------------------------------------------ */

static void capture_header(t_conn *tc, mws_request *r, const char *name)
{
    if (tc->nhdr >= T_MAX_HDRS || !*name) {
        return;
    }
    tc->hdr_name[tc->nhdr] = t_strdup(name);
    tc->hdr_value[tc->nhdr] = t_strdup(host->req_header(r, name));
    ++tc->nhdr;
}

static void opentimer_fired(mws_conn *c, void *arg)
{
    t_conn *tc = enter(c, "opentimer");

    if (tc) {
        reply(c, "opentimer fired");
    }
    leave(tc);
}

static void free_conn(t_conn *tc)
{
    int i;

    for (i = 0; i < tc->nhdr; ++i) {
        free(tc->hdr_name[i]);
        free(tc->hdr_value[i]);
    }
    for (i = 0; i < tc->nsubs; ++i) {
        free(tc->subs[i]);
    }
    free(tc->path);
    free(tc->query);
    free(tc->user);
    free(tc->ip);
    free(tc->offered);
    free(tc);
}

static int t_open(mws_conn *c, mws_request *r, void *instance)
{
    t_instance *ti = instance;
    t_conn *tc = calloc(1, sizeof(*tc));
    char *q, *tok, *save = NULL;
    int refuse = 0;
    size_t i, n;
#if MWS_ABI_MINOR >= 1
    const char *ctype = NULL;
#endif

    if (!tc) {
        return 503;
    }
    tc->c = c;
    tc->inst = ti;
    tc->id = host->id(c);
    tc->path = t_strdup(host->req_path(r));
    tc->query = t_strdup(host->req_query(r));
    tc->user = t_strdup(host->req_user(r));
    tc->ip = t_strdup(host->req_remote_ip(r));
    host->set_data(c, tc);

    n = host->req_subprotocol_count(r);
    for (i = 0; i < n; ++i) {
        const char *p = host->req_subprotocol(r, i);
        size_t have = tc->offered ? strlen(tc->offered) : 0;
        char *o = realloc(tc->offered, have + strlen(p) + 2);
        if (!o) {
            break;
        }
        tc->offered = o;
        snprintf(o + have, strlen(p) + 2, "%s%s", have ? "," : "", p);
    }
    if (host->req_subprotocol(r, n) != NULL) {
        logline(ti, "note pid=%d id=%" PRIu64 " req_subprotocol past the "
                "end is not NULL", (int)getpid(), tc->id);
    }
    capture_header(tc, r, "X-Test");
    capture_header(tc, r, "Host");
    capture_header(tc, r, "Origin");

    q = t_strdup(host->req_query(r));
    for (tok = q ? strtok_r(q, "&", &save) : NULL; tok;
         tok = strtok_r(NULL, "&", &save)) {
        char *v = strchr(tok, '=');
        if (!v) {
            continue;
        }
        *v++ = '\0';
        pct_decode(v);
        if (!strcmp(tok, "refuse")) {
            refuse = atoi(v);
        }
        else if (!strcmp(tok, "retry")) {
            host->req_set_header(r, "Retry-After", v);
        }
#if MWS_ABI_MINOR >= 1
        else if (!strcmp(tok, "reason")) {
            char rv[16];
            snprintf(rv, sizeof(rv), "%d", host->req_refuse_reason(r, v));
            host->req_set_header(r, "X-Mws-Rv", rv);
        }
        else if (!strcmp(tok, "ctype")) {
            free((char *)ctype);
            ctype = t_strdup(v);
        }
        else if (!strcmp(tok, "body")) {
            char rv[16];
            snprintf(rv, sizeof(rv), "%d",
                     host->req_refuse_body(r, ctype, v, strlen(v)));
            host->req_set_header(r, "X-Mws-Rv", rv);
        }
#endif
        else if (!strcmp(tok, "proto")) {
            int rv = host->req_select_subprotocol(r, v);
            reply(c, "proto %s %d", v, rv);
        }
        else if (!strcmp(tok, "greet")) {
            reply(c, "%s", v);
        }
        else if (!strcmp(tok, "opentimer")) {
            if (!host->timer_add(c, (unsigned)atoi(v), 0, opentimer_fired,
                                 NULL)) {
                reply(c, "opentimer failed");
            }
        }
        else if (!strcmp(tok, "close")) {
            int rv = host->close(c, atoi(v), "from on_open");
            if (rv != MWS_OK) {
                reply(c, "close-rv %d", rv);
            }
        }
        else if (!strcmp(tok, "hdr")) {
            char *h, *hsave = NULL;
            for (h = strtok_r(v, ",", &hsave); h;
                 h = strtok_r(NULL, ",", &hsave)) {
                capture_header(tc, r, h);
            }
        }
    }
    free(q);
#if MWS_ABI_MINOR >= 1
    free((char *)ctype);
#endif

    if (refuse) {
        host->req_set_header(r, "X-Mws-Test", "refused");
        host->set_data(c, NULL);
        pthread_mutex_lock(&g_lock);
        ++g_refusals;
        pthread_mutex_unlock(&g_lock);
        logline(ti, "refuse pid=%d id=%" PRIu64 " status=%d", (int)getpid(),
                tc->id, refuse);
        free_conn(tc);
        return refuse;
    }
    host->req_set_header(r, "X-Mws-Test", "accepted");

    /* register (retained) for fanout and find */
    host->retain(c);
    pthread_mutex_lock(&g_lock);
    tc->next = g_head;
    if (g_head) {
        g_head->prev = tc;
    }
    g_head = tc;
    ++g_opens;
    ++g_live;
    pthread_mutex_unlock(&g_lock);
    logline(ti, "open pid=%d id=%" PRIu64 " path=%s", (int)getpid(), tc->id,
            or_none(tc->path));
    return 0;
}

/* ---- on_close ------------------------------------------------------------ */

static void t_close(mws_conn *c, int code, const char *reason,
                    size_t reason_len)
{
    t_conn *tc = host->get_data(c);
    char enc[3 * 128 + 1];
    int i;

    pct_encode(enc, sizeof(enc), reason ? reason : "",
               reason ? reason_len : 0);
    if (!tc) {
        pthread_mutex_lock(&g_lock);
        ++g_double;
        pthread_mutex_unlock(&g_lock);
        logline(NULL, "doubleclose pid=%d id=%" PRIu64 " code=%d",
                (int)getpid(), host->id(c), code);
        return;
    }
    if (__atomic_add_fetch(&tc->in_cb, 1, __ATOMIC_SEQ_CST) != 1) {
        pthread_mutex_lock(&g_lock);
        ++g_overlaps;
        pthread_mutex_unlock(&g_lock);
        logline(tc->inst, "overlap pid=%d id=%" PRIu64 " in=on_close",
                (int)getpid(), tc->id);
    }
    host->set_data(c, NULL);

    pthread_mutex_lock(&g_lock);
    if (tc->prev) {
        tc->prev->next = tc->next;
    }
    else {
        g_head = tc->next;
    }
    if (tc->next) {
        tc->next->prev = tc->prev;
    }
    ++g_closes;
    --g_live;
    g_last_code = code;
    snprintf(g_last_reason, sizeof(g_last_reason), "%s", enc);
    pthread_mutex_unlock(&g_lock);

    logline(tc->inst, "close pid=%d id=%" PRIu64 " code=%d reason=%s",
            (int)getpid(), tc->id, code, enc);
    /* a handler that cleans up after itself (the module has normally
     * unsubscribed c already: MWS_ERR_NOTFOUND) */
    for (i = 0; i < tc->nsubs; ++i) {
        logline(tc->inst, "unsub pid=%d id=%" PRIu64 " ch=%s rv=%d",
                (int)getpid(), tc->id, tc->subs[i],
                host->unsubscribe(c, tc->subs[i]));
    }
    free_conn(tc);
    host->release(c);           /* the registry's reference */
}

/* ---- threads ------------------------------------------------------------- */

/* A start line: threads wait on it so that they begin at once. */
typedef struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int go;
} t_gate;

static void gate_wait(t_gate *g)
{
    pthread_mutex_lock(&g->lock);
    while (!g->go) {
        pthread_cond_wait(&g->cond, &g->lock);
    }
    pthread_mutex_unlock(&g->lock);
}

static void gate_open(t_gate *g)
{
    pthread_mutex_lock(&g->lock);
    g->go = 1;
    pthread_cond_broadcast(&g->cond);
    pthread_mutex_unlock(&g->lock);
}

typedef struct t_job t_job;

typedef struct {
    t_job *job;
    int t;
} t_worker;

struct t_job {
    const char *what;            /* "threads", "partthreads", "fanout" */
    mws_conn *c;                 /* the commanding connection (retained) */
    mws_conn **targets;          /* retained */
    size_t ntargets;
    int nthreads, count, parts;
    t_gate gate;
    unsigned long errors;        /* results other than OK and CLOSED */
    pthread_mutex_t lock;
    t_worker workers[T_MAX_THREADS + 1];
};

static void job_error(t_job *job)
{
    pthread_mutex_lock(&job->lock);
    ++job->errors;
    pthread_mutex_unlock(&job->lock);
}

static void *whole_sender(void *arg)
{
    t_worker *w = arg;
    t_job *job = w->job;
    char buf[256];
    size_t k;
    int j, rv;

    gate_wait(&job->gate);
    for (j = 0; j < job->count; ++j) {
        for (k = 0; k < job->ntargets; ++k) {
            size_t n = numbered_msg(buf, sizeof(buf), job->targets == &job->c
                                    ? 't' : 'f', w->t, j);
            rv = host->send(job->targets[k], MWS_TEXT, buf, n);
            if (rv != MWS_OK && rv != MWS_ERR_CLOSED) {
                job_error(job);
            }
        }
    }
    return NULL;
}

static void *part_sender(void *arg)
{
    t_worker *w = arg;
    t_job *job = w->job;
    char buf[32];
    int k, rv, n;

    gate_wait(&job->gate);
    for (k = 0; k < job->parts; ++k) {
        n = snprintf(buf, sizeof(buf), "p%d;", k);
        rv = host->send_part(job->c, MWS_TEXT, buf, (size_t)n,
                             k == job->parts - 1);
        if (rv != MWS_OK && rv != MWS_ERR_CLOSED) {
            job_error(job);
        }
        msleep(1);
    }
    return NULL;
}

static void *job_main(void *arg)
{
    t_job *job = arg;
    pthread_t tids[T_MAX_THREADS + 1];
    int started = 0, i, with_part = job->parts > 0;
    size_t k;

    for (i = 0; i < job->nthreads + with_part; ++i) {
        t_worker *w = &job->workers[i];
        w->job = job;
        w->t = i;
        if (pthread_create(&tids[i], NULL,
                           (with_part && i == job->nthreads) ? part_sender
                                                             : whole_sender,
                           w) != 0) {
            job_error(job);
            break;
        }
        ++started;
    }
    gate_open(&job->gate);
    for (i = 0; i < started; ++i) {
        pthread_join(tids[i], NULL);
    }
    reply(job->c, "%s done %zu %lu", job->what, job->ntargets, job->errors);
    if (job->targets != &job->c) {
        for (k = 0; k < job->ntargets; ++k) {
            host->release(job->targets[k]);
        }
        free(job->targets);
    }
    host->release(job->c);
    pthread_mutex_destroy(&job->lock);
    pthread_mutex_destroy(&job->gate.lock);
    pthread_cond_destroy(&job->gate.cond);
    free(job);
    return NULL;
}

static int start_job(mws_conn *c, const char *what, int nthreads, int count,
                     int parts, int fanout)
{
    t_job *job;
    pthread_t tid;
    pthread_attr_t attr;
    t_conn *tc;
    size_t k = 0;

    if (nthreads < 0 || nthreads > T_MAX_THREADS || count < 0 || parts < 0) {
        return reply(c, "%s bad arguments", what);
    }
    job = calloc(1, sizeof(*job));
    if (!job) {
        return -1;
    }
    job->what = what;
    job->c = host->retain(c);
    job->nthreads = nthreads;
    job->count = count;
    job->parts = parts;
    pthread_mutex_init(&job->lock, NULL);
    pthread_mutex_init(&job->gate.lock, NULL);
    pthread_cond_init(&job->gate.cond, NULL);
    if (fanout) {
        pthread_mutex_lock(&g_lock);
        for (tc = g_head; tc; tc = tc->next) {
            ++k;
        }
        job->targets = calloc(k ? k : 1, sizeof(mws_conn *));
        for (tc = g_head; tc && job->targets; tc = tc->next) {
            job->targets[job->ntargets++] = host->retain(tc->c);
        }
        pthread_mutex_unlock(&g_lock);
    }
    else {
        job->targets = &job->c;
        job->ntargets = 1;
    }
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    if (pthread_create(&tid, &attr, job_main, job) != 0) {
        pthread_attr_destroy(&attr);
        reply(c, "%s cannot start a thread", what);
        for (k = 0; fanout && k < job->ntargets; ++k) {
            host->release(job->targets[k]);
        }
        if (fanout) {
            free(job->targets);
        }
        host->release(job->c);
        free(job);
        return 0;
    }
    pthread_attr_destroy(&attr);
    return 0;
}

/* sendafterclose: send until the connection is gone, then try every call
 * on the dead connection; the verdict goes to LogFile. */
typedef struct {
    mws_conn *c;
    t_instance *inst;
    uint64_t id;
} t_after;

static void *after_main(void *arg)
{
    t_after *a = arg;
    mws_conn *found;
    char bad[512] = "";
    size_t bl = 0;
    int rv, i, ticks = 0;

#define AFTER_BAD(...) \
    (bl += (size_t)snprintf(bad + bl, bl < sizeof(bad) ? sizeof(bad) - bl : 0, \
                            __VA_ARGS__), bl = bl < sizeof(bad) ? bl : sizeof(bad))

    for (i = 0; i < 60000; ++i) {
        rv = host->send(a->c, MWS_TEXT, "tick", 4);
        if (rv == MWS_ERR_CLOSED) {
            break;
        }
        if (rv != MWS_OK) {
            AFTER_BAD(" send=%d", rv);
            break;
        }
        ++ticks;
        msleep(5);
    }
    if (i == 60000) {
        AFTER_BAD(" never-closed");
    }
    /* give on_close time to run and return, then keep calling */
    msleep(200);
    for (i = 0; i < 1000; ++i) {
        if ((rv = host->send(a->c, MWS_BINARY, "x", 1)) != MWS_ERR_CLOSED) {
            AFTER_BAD(" send-late=%d", rv);
            break;
        }
    }
    if ((rv = host->send_part(a->c, MWS_TEXT, "x", 1, 0)) != MWS_ERR_CLOSED) {
        AFTER_BAD(" send_part=%d", rv);
    }
    if ((rv = host->ping(a->c, "x", 1)) != MWS_ERR_CLOSED) {
        AFTER_BAD(" ping=%d", rv);
    }
    if ((rv = host->close(a->c, 1000, "late")) != MWS_ERR_CLOSED) {
        AFTER_BAD(" close=%d", rv);
    }
    if (host->queued(a->c) != 0) {
        AFTER_BAD(" queued=%zu", host->queued(a->c));
    }
    if (host->timer_add(a->c, 10, 0, opentimer_fired, NULL) != NULL) {
        AFTER_BAD(" timer_add-not-NULL");
    }
    if (host->id(a->c) != a->id) {
        AFTER_BAD(" id-changed");
    }
    if ((found = host->find(a->id)) != NULL) {
        AFTER_BAD(" find-not-NULL");
        host->release(found);
    }
    /* what lives in the connection's pool (its body) must not be looked
     * at once it is gone: these answer from the handle alone */
    if (host->option(a->c, "color") != NULL) {
        AFTER_BAD(" option-not-NULL");
    }
    if (host->subprotocol(a->c) != NULL) {
        AFTER_BAD(" subprotocol-not-NULL");
    }
    if ((rv = host->timer_cancel(a->c, (mws_timer *)(uintptr_t)1))
        != MWS_ERR_NOTFOUND) {
        AFTER_BAD(" timer_cancel=%d", rv);
    }
    if ((rv = host->subscribe(a->c, "afterclose")) != MWS_ERR_CLOSED
        && rv != MWS_ERR_STATE) {
        AFTER_BAD(" subscribe=%d", rv);
    }
    if ((rv = host->unsubscribe(a->c, "afterclose")) != MWS_ERR_NOTFOUND) {
        AFTER_BAD(" unsubscribe=%d", rv);
    }
#if MWS_ABI_MINOR >= 1
    if ((rv = host->compressed(a->c)) != MWS_ERR_CLOSED) {
        AFTER_BAD(" compressed=%d", rv);
    }
    if (host->send_flags(a->c, MWS_TEXT, "x", 1, 0) != MWS_ERR_CLOSED) {
        AFTER_BAD(" send_flags-not-closed");
    }
#endif
    logline(a->inst, "afterclose pid=%d id=%" PRIu64 " %s ticks=%d%s",
            (int)getpid(), a->id, bl ? "bad" : "ok", ticks, bad);
    host->release(a->c);
    free(a);
#undef AFTER_BAD
    return NULL;
}

/* flood: one thread sends as fast as it can; the sends must never block
 * (WebSocketMaxQueuedBytes makes them fail instead). */
typedef struct {
    mws_conn *c;
    t_instance *inst;
    uint64_t id;
    int count;
    size_t size;
    int quiet;                   /* no "flood done" reply */
} t_flood;

static void *flood_main(void *arg)
{
    t_flood *f = arg;
    unsigned long ok = 0, toobig = 0, closed = 0, other = 0;
    struct timespec t0, t1;
    char *buf = malloc(f->size > 8 ? f->size : 8);
    long ms;
    int j, k, rv;

    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (j = 0; buf && j < f->count; ++j) {
        memset(buf, 'x', f->size > 8 ? f->size : 8);
        for (k = 0; k < 8; ++k) {
            buf[k] = (char)(((uint64_t)j >> (8 * (7 - k))) & 0xff);
        }
        rv = host->send(f->c, MWS_BINARY, buf, f->size > 8 ? f->size : 8);
        if (rv == MWS_OK) {
            ++ok;
        }
        else if (rv == MWS_ERR_TOO_BIG) {
            ++toobig;
        }
        else if (rv == MWS_ERR_CLOSED) {
            ++closed;
        }
        else {
            ++other;
        }
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    ms = (long)(t1.tv_sec - t0.tv_sec) * 1000
         + (t1.tv_nsec - t0.tv_nsec) / 1000000;
    logline(f->inst, "flood pid=%d id=%" PRIu64 " ok=%lu toobig=%lu "
            "closed=%lu other=%lu ms=%ld", (int)getpid(), f->id, ok, toobig,
            closed, other, ms);
    if (!f->quiet) {
        reply(f->c, "flood done %lu %lu", ok, toobig);
    }
    free(buf);
    host->release(f->c);
    free(f);
    return NULL;
}

static int start_flood(t_conn *tc, mws_conn *c, int count, int size,
                       int quiet)
{
    t_flood *f;
    pthread_t tid;
    pthread_attr_t attr;

    if (count < 0 || size < 0 || size > 64 * 1024 * 1024) {
        return reply(c, "flood bad arguments");
    }
    if (!(f = calloc(1, sizeof(*f)))) {
        return -1;
    }
    f->c = host->retain(c);
    f->inst = tc->inst;
    f->id = tc->id;
    f->count = count;
    f->size = (size_t)size;
    f->quiet = quiet;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    if (pthread_create(&tid, &attr, flood_main, f) != 0) {
        host->release(c);
        free(f);
        reply(c, "flood cannot start a thread");
    }
    pthread_attr_destroy(&attr);
    return 0;
}

/* ---- timers -------------------------------------------------------------- */

static void periodic_fired(mws_conn *c, void *arg)
{
    t_conn *tc = enter(c, "timer");
    int rv1, rv2;

    if (tc) {
        ++tc->pfired;
        if (tc->pfired > tc->plimit) {
            reply(c, "timer fired after its cancel");
        }
        else {
            reply(c, "timer %d", tc->pfired);
        }
        if (tc->pfired == tc->plimit) {
            rv1 = host->timer_cancel(c, tc->ptimer);
            rv2 = host->timer_cancel(c, tc->ptimer);
            reply(c, "timer done %d %d", rv1, rv2);
        }
    }
    leave(tc);
}

static void oneshot_fired(mws_conn *c, void *arg)
{
    t_conn *tc = enter(c, "oneshot");

    if (tc) {
        tc->otimer = NULL;
        reply(c, "oneshot fired");
    }
    leave(tc);
}

static void stale_second(mws_conn *c, void *arg)
{
    t_conn *tc = enter(c, "stalecancel");
    mws_timer *t;

    if (tc) {
        t = host->timer_add(c, 200, 0, oneshot_fired, NULL);
        reply(c, "stalecancel %d reused=%d", host->timer_cancel(c, tc->stale),
              t == tc->stale);
    }
    leave(tc);
}

static void stale_first(mws_conn *c, void *arg)
{
    t_conn *tc = enter(c, "stalecancel");

    if (tc && !host->timer_add(c, 1, 0, stale_second, NULL)) {
        reply(c, "stalecancel failed");
    }
    leave(tc);
}

static void flood_fired(mws_conn *c, void *arg)
{
    t_conn *tc = enter(c, "timerflood");

    if (tc) {
        host->send(c, MWS_TEXT, "tick", 4);
    }
    leave(tc);
}

/* ---- commands ------------------------------------------------------------ */

static const char *captured_header(t_conn *tc, const char *name)
{
    int i;

    for (i = 0; i < tc->nhdr; ++i) {
        if (!strcmp(tc->hdr_name[i], name)) {
            return tc->hdr_value[i];
        }
    }
    return NULL;
}

static int cmd_stats(mws_conn *c)
{
    char buf[1024];

    pthread_mutex_lock(&g_lock);
    snprintf(buf, sizeof(buf), "{\"pid\": %d, \"opens\": %lu, \"closes\": "
             "%lu, \"double_closes\": %lu, \"refusals\": %lu, \"overlaps\": "
             "%lu, \"late\": %lu, \"live\": %lu, \"last_code\": %d, "
             "\"last_reason\": \"%s\"}", (int)getpid(), g_opens, g_closes,
             g_double, g_refusals, g_overlaps, g_late, g_live, g_last_code,
             g_last_reason);
    pthread_mutex_unlock(&g_lock);
    return host->send(c, MWS_TEXT, buf, strlen(buf));
}

static int cmd_sendpart(mws_conn *c, const char *arg)
{
    int rv1, rv2;

    if (!strcmp(arg, "utf8")) {
        /* "a€b" with the euro sign split over all three parts */
        host->send_part(c, MWS_TEXT, "a\xe2", 2, 0);
        host->send_part(c, MWS_TEXT, "\x82", 1, 0);
        return host->send_part(c, MWS_TEXT, "\xac" "b", 2, 1) == MWS_OK
               ? 0 : -1;
    }
    if (!strcmp(arg, "empty")) {
        host->send_part(c, MWS_BINARY, NULL, 0, 0);
        host->send_part(c, MWS_BINARY, NULL, 0, 0);
        return host->send_part(c, MWS_BINARY, NULL, 0, 1) == MWS_OK ? 0 : -1;
    }
    if (!strcmp(arg, "mix")) {
        /* a whole message and a wrong type while a part message is open */
        host->send_part(c, MWS_TEXT, "part1-", 6, 0);
        rv1 = host->send(c, MWS_TEXT, "whole", 5);
        rv2 = host->send_part(c, MWS_BINARY, "bad", 3, 0);
        host->send_part(c, MWS_TEXT, "part2-", 6, 0);
        host->send_part(c, MWS_TEXT, "part3", 5, 1);
        return reply(c, "sendpart mix %d %d", rv1, rv2) == MWS_OK ? 0 : -1;
    }
    host->send_part(c, MWS_TEXT, "part1-", 6, 0);
    host->send_part(c, MWS_TEXT, "part2-", 6, 0);
    return host->send_part(c, MWS_TEXT, "part3", 5, 1) == MWS_OK ? 0 : -1;
}

static int cmd_badcalls(mws_conn *c)
{
    char big[200], reason[130], buf[1024];
    int dummy;

    memset(big, 'x', sizeof(big));
    memset(reason, 'r', sizeof(reason) - 1);
    reason[sizeof(reason) - 1] = '\0';
    snprintf(buf, sizeof(buf),
             "{\"send_type\": %d, \"send_null\": %d, \"send_part_type\": %d, "
             "\"ping_126\": %d, \"ping_125\": %d, \"close_999\": %d, "
             "\"close_1004\": %d, \"close_1005\": %d, \"close_1006\": %d, "
             "\"close_1015\": %d, \"close_2999\": %d, \"close_5000\": %d, "
             "\"close_long_reason\": %d, \"close_bad_utf8\": %d, "
             "\"cancel_unknown\": %d, \"cancel_null\": %d, "
             "\"option_unset\": %d, \"timer_null_fn\": %d}",
             host->send(c, (mws_msg_type)3, "x", 1),
             host->send(c, MWS_TEXT, NULL, 5),
             host->send_part(c, (mws_msg_type)9, "x", 1, 1),
             host->ping(c, big, 126),
             host->ping(c, big, 125),
             host->close(c, 999, NULL),
             host->close(c, 1004, NULL),
             host->close(c, 1005, NULL),
             host->close(c, 1006, NULL),
             host->close(c, 1015, NULL),
             host->close(c, 2999, NULL),
             host->close(c, 5000, NULL),
             host->close(c, 1000, reason),
             host->close(c, 1000, "\xff\xfe"),
             host->timer_cancel(c, (mws_timer *)&dummy),
             host->timer_cancel(c, NULL),
             host->option(c, "no-such-option-key") == NULL ? 0 : 1,
             host->timer_add(c, 10, 0, NULL, NULL) == NULL ? 0 : 1);
    return host->send(c, MWS_TEXT, buf, strlen(buf));
}

/* ---- publish/subscribe ------------------------------------------------- */

/* "CH REST": split off the channel (the first word of arg). */
static char *split_channel(char *arg, char **rest)
{
    char *sp = strchr(arg, ' ');

    if (sp) {
        *sp = '\0';
        *rest = sp + 1;
    }
    else {
        *rest = arg + strlen(arg);
    }
    return arg;
}

typedef struct {
    mws_conn *c;                 /* retained */
    char *channel, *text;
} t_pub;

static void pub_free(t_pub *p)
{
    free(p->channel);
    free(p->text);
    free(p);
}

static t_pub *pub_new(mws_conn *c, const char *channel, const char *text)
{
    t_pub *p = calloc(1, sizeof(*p));

    if (!p || !(p->channel = t_strdup(channel))
        || !(p->text = t_strdup(text))) {
        if (p) {
            pub_free(p);
        }
        return NULL;
    }
    p->c = c;
    return p;
}

/* A thread of the handler's own: no callback runs on it. */
static void *threadpub_main(void *arg)
{
    t_pub *p = arg;
    int rv = host->publish(p->channel, MWS_TEXT, p->text, strlen(p->text));

    reply(p->c, "threadpub %d", rv);
    host->release(p->c);
    pub_free(p);
    return NULL;
}

static void timerpub_fired(mws_conn *c, void *arg)
{
    t_pub *p = arg;
    t_conn *tc = enter(c, "timerpub");

    if (tc) {
        reply(c, "timerpub %d", host->publish(p->channel, MWS_TEXT, p->text,
                                              strlen(p->text)));
    }
    leave(tc);
    pub_free(p);
}

static void cmd_pubsub(t_conn *tc, mws_conn *c, const char *cmd, char *arg)
{
    char *rest, *ch = split_channel(arg, &rest);
    int rv, i;

    if (!strcmp(cmd, "sub")) {
        rv = host->subscribe(c, ch);
        if (rv == MWS_OK && tc->nsubs < T_MAX_SUBS) {
            for (i = 0; i < tc->nsubs && strcmp(tc->subs[i], ch); ++i) {
            }
            if (i == tc->nsubs && (tc->subs[i] = t_strdup(ch)) != NULL) {
                ++tc->nsubs;
            }
        }
        reply(c, "sub %s %d", ch, rv);
    }
    else if (!strcmp(cmd, "unsub")) {
        rv = host->unsubscribe(c, ch);
        for (i = 0; i < tc->nsubs; ++i) {
            if (!strcmp(tc->subs[i], ch)) {
                free(tc->subs[i]);
                tc->subs[i] = tc->subs[--tc->nsubs];
                break;
            }
        }
        reply(c, "unsub %s %d", ch, rv);
    }
    else if (!strcmp(cmd, "pub")) {
        reply(c, "pub %d", host->publish(ch, MWS_TEXT, rest, strlen(rest)));
    }
    else if (!strcmp(cmd, "pubhex")) {
        unsigned char bytes[T_CMD_MAX / 2];
        size_t n = 0;
        unsigned v;
        while (n < sizeof(bytes) && sscanf(rest + 2 * n, "%2x", &v) == 1) {
            bytes[n++] = (unsigned char)v;
        }
        reply(c, "pub %d", host->publish(ch, MWS_TEXT, bytes, n));
    }
    else if (!strcmp(cmd, "threadpub")) {
        t_pub *p = pub_new(host->retain(c), ch, rest);
        pthread_t tid;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        if (!p || pthread_create(&tid, &attr, threadpub_main, p) != 0) {
            host->release(c);
            if (p) {
                pub_free(p);
            }
            reply(c, "threadpub cannot start a thread");
        }
        pthread_attr_destroy(&attr);
    }
    else if (!strcmp(cmd, "timerpub")) {
        /* arg: MS CH TEXT */
        char *rest2, *ch2 = split_channel(rest, &rest2);
        t_pub *p = pub_new(c, ch2, rest2);
        if (!p || !host->timer_add(c, (unsigned)atoi(ch), 0, timerpub_fired,
                                   p)) {
            if (p) {
                pub_free(p);
            }
            reply(c, "timerpub failed");
        }
    }
}

/* Run one command; returns 1 if text was a command, with *rc the callback's
 * result; 0 if it was not a command. */
static int command(t_conn *tc, mws_conn *c, const char *text, size_t len,
                   int *rc)
{
    char line[T_CMD_MAX + 1], *cmd, *arg, *save = NULL;
    int a1 = 0, a2 = 0, a3 = 0, rv, rv2, rv3;

    if (len == 0 || len > T_CMD_MAX || memchr(text, '\0', len)) {
        return 0;
    }
    memcpy(line, text, len);
    line[len] = '\0';
    cmd = strtok_r(line, " ", &save);
    if (!cmd) {
        return 0;
    }
    arg = save ? save : "";
    sscanf(arg, "%d %d %d", &a1, &a2, &a3);
    *rc = 0;

    if (!strcmp(cmd, "id")) {
        reply(c, "id %d %" PRIu64, (int)getpid(), host->id(c));
    }
    else if (!strcmp(cmd, "user")) {
        reply(c, "user %s", or_none(tc->user));
    }
    else if (!strcmp(cmd, "path")) {
        reply(c, "path %s", or_none(tc->path));
    }
    else if (!strcmp(cmd, "query")) {
        reply(c, "query %s", or_none(tc->query));
    }
    else if (!strcmp(cmd, "ip")) {
        reply(c, "ip %s", or_none(tc->ip));
    }
    else if (!strcmp(cmd, "header")) {
        reply(c, "header %s %s", arg, or_none(captured_header(tc, arg)));
    }
    else if (!strcmp(cmd, "offered")) {
        reply(c, "offered %s", or_none(tc->offered));
    }
    else if (!strcmp(cmd, "subprotocol")) {
        reply(c, "subprotocol %s", or_none(host->subprotocol(c)));
    }
    else if (!strcmp(cmd, "option")) {
        reply(c, "option %s %s", arg, or_none(host->option(c, arg)));
    }
    else if (!strcmp(cmd, "initopt")) {
        const char *v = NULL;
        size_t i;
        for (i = 0; i < tc->inst->nopts; ++i) {
            if (!strcmp(tc->inst->opts[i].key, arg)) {
                v = tc->inst->opts[i].value;
            }
        }
        reply(c, "initopt %s %s", arg, or_none(v));
    }
    else if (!strcmp(cmd, "stats")) {
        cmd_stats(c);
    }
    else if (!strcmp(cmd, "close")) {
        char *reason = strchr(arg, ' ');
        rv = host->close(c, a1, reason ? reason + 1 : NULL);
        if (rv != MWS_OK) {
            reply(c, "close-rv %d", rv);
        }
    }
    else if (!strcmp(cmd, "close2")) {
        rv = host->close(c, a1, "first");
        rv2 = host->close(c, a1, "second");
        rv3 = host->send(c, MWS_TEXT, "after", 5);
        logline(tc->inst, "note pid=%d id=%" PRIu64 " close2 %d %d %d",
                (int)getpid(), tc->id, rv, rv2, rv3);
    }
    else if (!strcmp(cmd, "ping")) {
        char big[200];
        memset(big, 'p', sizeof(big));
        rv = host->ping(c, big, *arg ? (size_t)a1 : 4);
        if (rv != MWS_OK) {
            reply(c, "ping-rv %d", rv);
        }
    }
    else if (!strcmp(cmd, "fail")) {
        *rc = -1;
    }
    else if (!strcmp(cmd, "queued")) {
        if (a1 > 0) {
            char *blob = calloc(1, (size_t)a1);
            if (blob) {
                host->send(c, MWS_BINARY, blob, (size_t)a1);
                free(blob);
            }
        }
        reply(c, "queued %zu", host->queued(c));
    }
    else if (!strcmp(cmd, "sendpart")) {
        *rc = cmd_sendpart(c, arg);
    }
#if MWS_ABI_MINOR >= 1
    else if (!strcmp(cmd, "blob") || !strcmp(cmd, "rawblob")) {
        /* a1 bytes of text ("abc..." repeated) sent whole: "rawblob" with
         * MWS_SEND_NO_COMPRESS */
        char *blob = a1 > 0 ? malloc((size_t)a1) : NULL;
        int i;

        for (i = 0; blob && i < a1; ++i) {
            blob[i] = (char)('a' + i % 26);
        }
        rv = host->send_flags(c, MWS_TEXT, blob ? blob : "", blob ? (size_t)a1 : 0,
                              !strcmp(cmd, "rawblob") ? MWS_SEND_NO_COMPRESS : 0);
        free(blob);
        if (rv != MWS_OK) {
            reply(c, "blob-rv %d", rv);
        }
    }
#endif
    else if (!strcmp(cmd, "partblob")) {
        /* a1 parts of a2 bytes each, one message by send_part */
        char *blob = malloc(a2 > 0 ? (size_t)a2 : 1);
        int i;

        for (i = 0; blob && i < a2; ++i) {
            blob[i] = (char)('a' + i % 26);
        }
        for (i = 0, rv = MWS_OK; blob && i < a1 && rv == MWS_OK; ++i) {
            rv = host->send_part(c, MWS_TEXT, blob, a2 > 0 ? (size_t)a2 : 0,
                                 i == a1 - 1);
        }
        free(blob);
        if (!blob || rv != MWS_OK) {
            reply(c, "partblob-rv %d", blob ? rv : MWS_ERR_NOMEM);
        }
    }
    else if (!strcmp(cmd, "threads")) {
        *rc = start_job(c, "threads", a1, a2, 0, 0);
    }
    else if (!strcmp(cmd, "partthreads")) {
        *rc = start_job(c, "partthreads", a1, a2, a3 > 0 ? a3 : 1, 0);
    }
    else if (!strcmp(cmd, "fanout")) {
        *rc = start_job(c, "fanout", T_FANOUT_THRDS, a1, 0, 1);
    }
    else if (!strcmp(cmd, "find")) {
        mws_conn *other = host->find(strtoull(arg, NULL, 10));
        if (other) {
            rv = reply(other, "found %" PRIu64, tc->id);
            host->release(other);
            reply(c, "find ok %d", rv);
        }
        else {
            reply(c, "find none");
        }
    }
    else if (!strcmp(cmd, "timer")) {
        if (tc->ptimer && tc->pfired < tc->plimit) {
            reply(c, "timer busy");
        }
        else {
            tc->pfired = 0;
            tc->plimit = a2 > 0 ? a2 : 1;
            tc->ptimer = host->timer_add(c, (unsigned)a1, 1, periodic_fired,
                                         NULL);
            if (!tc->ptimer) {
                reply(c, "timer failed");
            }
        }
    }
    else if (!strcmp(cmd, "oneshot")) {
        mws_timer *t = host->timer_add(c, (unsigned)a1, 0, oneshot_fired,
                                       NULL);
        if (!t) {
            reply(c, "oneshot failed");
        }
        else if (strstr(arg, "cancel")) {
            rv = host->timer_cancel(c, t);
            rv2 = host->timer_cancel(c, t);
            reply(c, "oneshot cancelled %d %d", rv, rv2);
        }
        else {
            tc->otimer = t;
        }
    }
    else if (!strcmp(cmd, "crash")) {
        crash_now();
    }
    else if (!strcmp(cmd, "logtest")) {
        host->log(c, MWS_LOG_NOTICE, "logtest %zu %llu %jd %hhu %s",
                  (size_t)42, 18446744073709551615ULL, (intmax_t)-7,
                  (unsigned char)200, "conn");
        reply(c, "logtest done");
    }
    else if (!strcmp(cmd, "stalecancel")) {
        tc->stale = host->timer_add(c, 1, 0, stale_first, NULL);
        if (!tc->stale) {
            reply(c, "stalecancel failed");
        }
    }
    else if (!strcmp(cmd, "timerflood")) {
        if (!host->timer_add(c, (unsigned)(a1 > 0 ? a1 : 1), 1, flood_fired,
                             NULL)) {
            reply(c, "timerflood failed");
        }
    }
    else if (!strcmp(cmd, "sleep")) {
        msleep((unsigned)a1);
        reply(c, "slept %d", a1);
    }
    else if (!strcmp(cmd, "sendafterclose")) {
        t_after *a = calloc(1, sizeof(*a));
        pthread_t tid;
        pthread_attr_t attr;
        if (!a) {
            *rc = -1;
            return 1;
        }
        a->c = host->retain(c);
        a->inst = tc->inst;
        a->id = tc->id;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        if (pthread_create(&tid, &attr, after_main, a) != 0) {
            host->release(c);
            free(a);
            reply(c, "sendafterclose cannot start a thread");
        }
        pthread_attr_destroy(&attr);
    }
    else if (!strcmp(cmd, "flood")) {
        *rc = start_flood(tc, c, a1, a2, strstr(arg, "quiet") != NULL);
    }
    else if (!strcmp(cmd, "badcalls")) {
        cmd_badcalls(c);
    }
    else if (!strcmp(cmd, "sub") || !strcmp(cmd, "unsub")
             || !strcmp(cmd, "pub") || !strcmp(cmd, "pubhex")
             || !strcmp(cmd, "threadpub") || !strcmp(cmd, "timerpub")) {
        cmd_pubsub(tc, c, cmd, arg);
    }
    else if (!strcmp(cmd, "abi")) {
        reply(c, "abi %d.%d", MWS_ABI_MAJOR, MWS_ABI_MINOR);
    }
#if MWS_ABI_MINOR >= 1
    else if (!strcmp(cmd, "instance") || !strcmp(cmd, "linepub")
             || !strcmp(cmd, "sendflags") || !strcmp(cmd, "compressed")) {
        cmd_api11(tc, c, cmd, arg);
    }
#endif
    else if (!strcmp(cmd, "note")) {
        logline(tc->inst, "note pid=%d id=%" PRIu64 " %s", (int)getpid(),
                tc->id, arg);
        reply(c, "noted");
    }
    else {
        return 0;
    }
    return 1;
}

/* ---- messages ---------------------------------------------------------- */

static int t_message(mws_conn *c, mws_msg_type type, const void *data,
                     size_t len)
{
    t_conn *tc = enter(c, "on_message");
    int rc = 0, rv;

    if (!tc) {
        return 0;
    }
    if (type != MWS_TEXT || !command(tc, c, data, len, &rc)) {
        rv = host->send(c, type, data, len);
        rc = (rv == MWS_OK || rv == MWS_ERR_CLOSED) ? 0 : -1;
    }
    leave(tc);
    return rc;
}

/* Streaming: count the pieces of each message and report them. */
static int t_fragment(mws_conn *c, mws_msg_type type, const void *data,
                      size_t len, int first, int last)
{
    t_conn *tc = enter(c, "on_fragment");
    int rc = 0;

    if (!tc) {
        return 0;
    }
    if (first && last && type == MWS_TEXT && command(tc, c, data, len, &rc)) {
        leave(tc);
        return rc;
    }
    if (first) {
        if (tc->in_msg) {
            ++tc->order_errors;
        }
        tc->in_msg = 1;
        tc->pieces = tc->bytes = tc->max_piece = 0;
        tc->fnv = 2166136261u;
        reply(c, "begin %d", (int)type);
    }
    else if (!tc->in_msg) {
        ++tc->order_errors;
    }
    ++tc->pieces;
    tc->bytes += len;
    if (len > tc->max_piece) {
        tc->max_piece = len;
    }
    tc->fnv = fnv1a(tc->fnv, data, len);
    if (tc->inst->relay
        && host->send_part(c, type, data, len, last) != MWS_OK) {
        rc = -1;
    }
    if (last) {
        tc->in_msg = 0;
        reply(c, "{\"type\": %d, \"pieces\": %" PRIu64 ", \"bytes\": %"
              PRIu64 ", \"max_piece\": %" PRIu64 ", \"fnv\": %" PRIu32
              ", \"order_errors\": %" PRIu64 "}", (int)type, tc->pieces,
              tc->bytes, tc->max_piece, tc->fnv, tc->order_errors);
    }
    leave(tc);
    return rc;
}

#if MWS_ABI_MINOR >= 1
/* ---- API 1.1 --------------------------------------------------------------- */

typedef struct {
    mws_line *line;
    char *channel;
    char *text;
    int rv_publish, rv_line;
} t_linepub;

static void *linepub_thread(void *arg)
{
    t_linepub *lp = arg;

    /* a thread of the handler's own: no callback runs here */
    lp->rv_publish = host->publish(lp->channel, MWS_TEXT, lp->text,
                                   strlen(lp->text));
    lp->rv_line = host->line_publish(lp->line, lp->channel, MWS_TEXT,
                                     lp->text, strlen(lp->text));
    return NULL;
}

static void cmd_api11(t_conn *tc, mws_conn *c, const char *cmd,
                      const char *arg)
{
    if (!strcmp(cmd, "instance")) {
        mws_line *line = host->line(c);
        reply(c, "instance %d %d %d", host->instance(c) == (void *)tc->inst,
              line != NULL && host->line(NULL) == line,
              host->line_instance(line) == (void *)tc->inst);
    }
    else if (!strcmp(cmd, "linepub")) {
        const char *sp = strchr(arg, ' ');
        t_linepub lp;
        pthread_t t;

        memset(&lp, 0, sizeof(lp));
        lp.line = host->line(c);
        lp.channel = sp ? strndup(arg, (size_t)(sp - arg)) : t_strdup(arg);
        lp.text = t_strdup(sp ? sp + 1 : "");
        if (pthread_create(&t, NULL, linepub_thread, &lp) == 0) {
            pthread_join(t, NULL);
            reply(c, "linepub %d %d", lp.rv_publish, lp.rv_line);
        }
        free(lp.channel);
        free(lp.text);
    }
    else if (!strcmp(cmd, "sendflags")) {
        char *end;
        unsigned long f = strtoul(arg, &end, 0);
        const char *text = (*end == ' ') ? end + 1 : "";
        int rv = host->send_flags(c, MWS_TEXT, text, strlen(text),
                                  (unsigned)f);
        reply(c, "sendflags %d", rv);
    }
    else if (!strcmp(cmd, "compressed")) {
        reply(c, "compressed %d", host->compressed(c));
    }
    (void)tc;
}

static const char *t_check_options(const mws_host *h, const mws_option *opts,
                                   size_t nopts, size_t *bad)
{
    size_t i;

    (void)h;
    for (i = 0; i < nopts; ++i) {
        if (!strcasecmp(opts[i].key, "Reject")) {
            *bad = i;
            return opts[i].value;
        }
        if (!strcasecmp(opts[i].key, "RejectAll")) {
            return opts[i].value;
        }
    }
    return NULL;
}
#endif

/* ---- the two entry points ------------------------------------------------ */

static const mws_handler test_handler = {
    .abi_major   = MWS_ABI_MAJOR,
    .abi_minor   = MWS_ABI_MINOR,
    .struct_size = sizeof(mws_handler),
    .name        = "test",
    .flags       = MWS_HANDLER_FLAG_NONE,
    .init        = t_init,
    .shutdown    = t_shutdown,
    .on_open     = t_open,
    .on_message  = t_message,
    .on_close    = t_close,
#if MWS_ABI_MINOR >= 1
    .check_options = t_check_options,
#endif
};

static const mws_handler test_stream_handler = {
    .abi_major   = MWS_ABI_MAJOR,
    .abi_minor   = MWS_ABI_MINOR,
    .struct_size = sizeof(mws_handler),
    .name        = "test-stream",
    .flags       = MWS_HANDLER_FLAG_NONE,
    .init        = t_init,
    .shutdown    = t_shutdown,
    .on_open     = t_open,
    .on_fragment = t_fragment,
    .on_close    = t_close,
};

MWS_EXPORT const mws_handler *mws_handler_entry(void)
{
    return &test_handler;
}

MWS_EXPORT const mws_handler *mws_test_stream_entry(void);

MWS_EXPORT const mws_handler *mws_test_stream_entry(void)
{
    return &test_stream_handler;
}
