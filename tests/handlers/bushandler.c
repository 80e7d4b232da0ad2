/*
 * bushandler.c -- a test-only handler (API 1.1) for the channel log:
 * on_publish and on_gap bookkeeping per child, publishes on command.
 * Used by tests/integration/test_15xx_*.py and tests/bench.
 *
 * Commands (text messages; the reply is one text message):
 *   id                      -> "id <pid>"
 *   sub <ch>                -> "sub <ch> <rv>"
 *   pub <ch> <text>         -> "pub <rv>"
 *   burst <ch> <n> <tag> [size]
 *                           publishes "<tag> <i>" for i = 0..n-1 in a loop,
 *                           each padded with '.' to size bytes if given
 *                           -> "burst <ok> <failed> <microseconds>
 *                              <longest publish() in microseconds>"
 *   stats                   -> JSON: this child's on_publish and on_gap
 *                              figures (see t_stats below)
 *   reset                   -> "reset": figures back to zero
 * on_publish counts messages per channel, checks that the messages
 * "<tag> <i>" of one tag come in increasing i (order_bad otherwise) and
 * chains a hash over the channel's messages in the order they came, so
 * that children can be compared: the same messages in the same order give
 * the same hash.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "mod_websocket.h"

#define T_CHANNELS 16
#define T_TAGS     16

typedef struct {
    char name[64];
    unsigned long count;         /* on_publish calls                     */
    uint64_t chain;              /* FNV-1a over the texts, in order      */
    char tags[T_TAGS][16];
    long last[T_TAGS];           /* the last i of each tag               */
} t_chan;

typedef struct {
    pthread_mutex_t lock;
    unsigned long published;     /* on_publish calls, all channels       */
    unsigned long order_bad;     /* a tag's i not above its last one     */
    unsigned long gaps;          /* on_gap calls                         */
    uint64_t lost;               /* their lost, summed                   */
    char gap_channels[256];      /* the channels on_gap named, ","-joined */
    int overlap;                 /* on_publish entered twice at once     */
    int inside;
    t_chan ch[T_CHANNELS];
    int nch;
} t_inst;

static const mws_host *host;

static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;

    while (n--) {
        h ^= *b++;
        h *= 1099511628211ULL;
    }
    return h;
}

static t_chan *chan_of(t_inst *ti, const char *name)
{
    int i;

    for (i = 0; i < ti->nch; ++i) {
        if (!strcmp(ti->ch[i].name, name)) {
            return &ti->ch[i];
        }
    }
    if (ti->nch == T_CHANNELS || strlen(name) >= sizeof(ti->ch[0].name)) {
        return NULL;
    }
    memset(&ti->ch[ti->nch], 0, sizeof(t_chan));
    strcpy(ti->ch[ti->nch].name, name);
    ti->ch[ti->nch].chain = 1469598103934665603ULL;
    return &ti->ch[ti->nch++];
}

/* "<tag> <i>": is i above the tag's last one? */
static void check_order(t_inst *ti, t_chan *c, const char *text, size_t len)
{
    char buf[64], *sp;
    long i;
    int k;

    if (len >= sizeof(buf)) {
        return;
    }
    memcpy(buf, text, len);
    buf[len] = '\0';
    if (!(sp = strchr(buf, ' ')) || sp - buf >= 16) {
        return;
    }
    *sp = '\0';
    i = strtol(sp + 1, NULL, 10);
    for (k = 0; k < T_TAGS && c->tags[k][0]; ++k) {
        if (!strcmp(c->tags[k], buf)) {
            if (i <= c->last[k]) {
                ++ti->order_bad;
            }
            c->last[k] = i;
            return;
        }
    }
    if (k < T_TAGS) {
        strcpy(c->tags[k], buf);
        c->last[k] = i;
    }
}

static void t_publish(void *instance, const char *channel, mws_msg_type type,
                      const void *data, size_t len)
{
    t_inst *ti = instance;
    t_chan *c;

    if (!ti) {
        return;
    }
    pthread_mutex_lock(&ti->lock);
    if (ti->inside++) {
        ti->overlap = 1;
    }
    ++ti->published;
    if ((c = chan_of(ti, channel)) != NULL) {
        ++c->count;
        c->chain = fnv(c->chain, data, len);
        c->chain = fnv(c->chain, "\n", 1);
        if (type == MWS_TEXT) {
            check_order(ti, c, data, len);
        }
    }
    --ti->inside;
    pthread_mutex_unlock(&ti->lock);
}

static void t_gap(void *instance, const char *channel, uint64_t lost)
{
    t_inst *ti = instance;
    size_t used;

    if (!ti) {
        return;
    }
    pthread_mutex_lock(&ti->lock);
    ++ti->gaps;
    ti->lost += lost;
    used = strlen(ti->gap_channels);
    if (used + strlen(channel) + 2 < sizeof(ti->gap_channels)) {
        snprintf(ti->gap_channels + used, sizeof(ti->gap_channels) - used,
                 "%s%s", used ? "," : "", *channel ? channel : "*");
    }
    pthread_mutex_unlock(&ti->lock);
}

static int t_init(const mws_host *h, const mws_option *opts, size_t nopts,
                  void **instance)
{
    t_inst *ti = calloc(1, sizeof(*ti));

    (void)opts; (void)nopts;
    host = h;
    if (!ti) {
        return -1;
    }
    pthread_mutex_init(&ti->lock, NULL);
    *instance = ti;
    return 0;
}

static void t_shutdown(void *instance)
{
    t_inst *ti = instance;

    if (ti) {
        pthread_mutex_destroy(&ti->lock);
        free(ti);
    }
}

static int t_open(mws_conn *c, mws_request *r, void *instance)
{
    (void)c; (void)r; (void)instance;
    return 0;
}

static long usec_now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long)ts.tv_sec * 1000000L + ts.tv_nsec / 1000;
}

static int reply(mws_conn *c, const char *text)
{
    return host->send(c, MWS_TEXT, text, strlen(text));
}

static void t_stats(mws_conn *c, t_inst *ti)
{
    char buf[4096];
    size_t n;
    int i;

    pthread_mutex_lock(&ti->lock);
    n = (size_t)snprintf(buf, sizeof(buf), "{\"pid\": %d, \"published\": %lu, "
                         "\"order_bad\": %lu, \"gaps\": %lu, \"lost\": %" PRIu64
                         ", \"gap_channels\": \"%s\", \"overlap\": %d, "
                         "\"channels\": {", (int)getpid(), ti->published,
                         ti->order_bad, ti->gaps, ti->lost, ti->gap_channels,
                         ti->overlap);
    for (i = 0; i < ti->nch && n < sizeof(buf) - 128; ++i) {
        n += (size_t)snprintf(buf + n, sizeof(buf) - n,
                              "%s\"%s\": [%lu, \"%016" PRIx64 "\"]",
                              i ? ", " : "", ti->ch[i].name, ti->ch[i].count,
                              ti->ch[i].chain);
    }
    pthread_mutex_unlock(&ti->lock);
    snprintf(buf + n, sizeof(buf) - n, "}}");
    reply(c, buf);
}

static int t_message(mws_conn *c, mws_msg_type type, const void *data,
                     size_t len)
{
    t_inst *ti = host->instance(c);
    char text[1024], out[320], ch[256], tag[64];
    unsigned long n, i, ok = 0, bad = 0, size = 0;
    long worst = 0;
    int rv, off = 0;

    if (type != MWS_TEXT || len >= sizeof(text) || !ti) {
        return 0;
    }
    memcpy(text, data, len);
    text[len] = '\0';
    if (!strcmp(text, "id")) {
        snprintf(out, sizeof(out), "id %d", (int)getpid());
        reply(c, out);
    }
    else if (sscanf(text, "sub %255s", ch) == 1) {
        snprintf(out, sizeof(out), "sub %s %d", ch, host->subscribe(c, ch));
        reply(c, out);
    }
    else if (sscanf(text, "pub %255s %n", ch, &off) == 1 && off > 0) {
        rv = host->publish(ch, MWS_TEXT, text + off, len - (size_t)off);
        snprintf(out, sizeof(out), "pub %d", rv);
        reply(c, out);
    }
    else if (sscanf(text, "burst %255s %lu %63s %lu", ch, &n, tag, &size)
             >= 3) {
        long start = usec_now();
        char *msg = malloc(size > 96 ? size : 96);

        if (!msg) {
            return -1;
        }
        for (i = 0; i < n; ++i) {
            size_t m = (size_t)snprintf(msg, 96, "%s %lu", tag, i);
            long t0 = usec_now(), took;

            if (size > m) {
                memset(msg + m, '.', size - m);
                m = size;
            }
            if (host->publish(ch, MWS_TEXT, msg, m) >= 0) {
                ++ok;
            }
            else {
                ++bad;
            }
            if ((took = usec_now() - t0) > worst) {
                worst = took;
            }
        }
        free(msg);
        snprintf(out, sizeof(out), "burst %lu %lu %ld %ld", ok, bad,
                 usec_now() - start, worst);
        reply(c, out);
    }
    else if (!strcmp(text, "stats")) {
        t_stats(c, ti);
    }
    else if (!strcmp(text, "reset")) {
        pthread_mutex_lock(&ti->lock);
        ti->published = ti->order_bad = ti->gaps = 0;
        ti->lost = 0;
        ti->gap_channels[0] = '\0';
        ti->nch = 0;
        pthread_mutex_unlock(&ti->lock);
        reply(c, "reset");
    }
    return 0;
}

static void t_close(mws_conn *c, int code, const char *reason,
                    size_t reason_len)
{
    (void)c; (void)code; (void)reason; (void)reason_len;
}

static const mws_handler bus_handler = {
    .abi_major   = MWS_ABI_MAJOR,
    .abi_minor   = MWS_ABI_MINOR,
    .struct_size = sizeof(mws_handler),
    .name        = "bustest",
    .init        = t_init,
    .shutdown    = t_shutdown,
    .on_open     = t_open,
    .on_message  = t_message,
    .on_close    = t_close,
    .on_publish  = t_publish,
    .on_gap      = t_gap,
};

MWS_EXPORT const mws_handler *mws_handler_entry(void)
{
    return &bus_handler;
}
