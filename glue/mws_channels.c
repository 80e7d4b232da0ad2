/*
 * mws_channels.c -- channels: the subscriptions of this child's connections,
 * scoped per handler instance, publish (into the channel log of
 * mws_bus.c), and the delivery of what the log holds, in its order, to this
 * child's subscribers and to the handlers' on_publish and on_gap.
 */
#include <stdlib.h>
#include <string.h>

#include "apr_strings.h"
#include "apr_hash.h"
#include "httpd.h"
#include "http_core.h"
#include "http_log.h"
#include "ap_mpm.h"

#include "mws_private.h"


#define MWS_SERVER_PREFIX "server:"    /* server-wide channels            */

/* One subscription: a node in its channel's list and in its connection's
 * list, so either side can drop it. */
typedef struct mws_sub {
    struct mws_sub *ch_next, *ch_prev;    /* in the channel */
    struct mws_sub *c_next;               /* in the connection */
    struct mws_channel *ch;
    mws_conn *mc;
    uint64_t from;                        /* the first message it gets:
                                           * those published after it
                                           * subscribed (log order)       */
} mws_sub;

typedef struct mws_channel {
    char *name;                           /* the key */
    mws_sub *subs;
    apr_size_t n;
} mws_channel;

static pthread_mutex_t ps_lock = PTHREAD_MUTEX_INITIALIZER;
static apr_hash_t *channels;      /* key -> mws_channel, in the child pool */
static int ps_stopping;           /* the child exits: no new subscriptions */

void mws_channels_scope(mws_instance *inst, const char *ident)
{
    static const char hex[] = "0123456789abcdef";
    uint8_t d[20];
    int i;

    ws_sha1((const uint8_t *)ident, strlen(ident), d);
    for (i = 0; i < MWS_SCOPE_HEX / 2; ++i) {
        inst->scope[2 * i] = hex[d[i] >> 4];
        inst->scope[2 * i + 1] = hex[d[i] & 15];
    }
    inst->scope[MWS_SCOPE_HEX] = '\0';
}

/* The table key of channel as seen by inst, into key (MWS_KEY_MAX + 1
 * bytes).  MWS_ERR_INVALID for a bad name, MWS_ERR_STATE for a channel
 * that needs a handler line when there is none. */
static int channel_key(char *key, const mws_instance *inst,
                       const char *channel)
{
    size_t clen;

    if (!channel) {
        return MWS_ERR_INVALID;
    }
    clen = strnlen(channel, MWS_CHANNEL_MAX + 1);
    if (!clen || clen > MWS_CHANNEL_MAX) {
        return MWS_ERR_INVALID;
    }
    if (!strncmp(channel, MWS_SERVER_PREFIX, sizeof(MWS_SERVER_PREFIX) - 1)) {
        memcpy(key, channel, clen + 1);
        return MWS_OK;
    }
    if (!inst) {
        return MWS_ERR_STATE;
    }
    memcpy(key, inst->scope, MWS_SCOPE_HEX);
    key[MWS_SCOPE_HEX] = '/';
    memcpy(key + MWS_SCOPE_HEX + 1, channel, clen + 1);
    return MWS_OK;
}

/* ---- local delivery ---------------------------------------------------- */

/* Deliver message seq of the log to this child's subscribers of key that
 * subscribed before it was published.  Returns the number reached. */
static int deliver_local(const char *key, mws_msg_type type,
                         const void *data, size_t len, uint64_t seq)
{
    mws_channel *ch;
    mws_sub *s;
    mws_conn **kick = NULL;
    mws_shared *sh = NULL, *shz[16], *use;
    size_t nkick = 0;
    unsigned w;
    int n = 0, claim, rv;

    memset(shz, 0, sizeof(shz));
    pthread_mutex_lock(&ps_lock);
    ch = channels ? apr_hash_get(channels, key, APR_HASH_KEY_STRING)
                  : NULL;
    if (ch) {
        /* parked receivers are handed to the MPM in batches, not one
         * callback each, and share one copy of the frame; without memory
         * for those, one callback and one copy each */
        kick = malloc(sizeof(*kick) * ch->n);
        sh = kick ? mws_shared_frame(type, data, len) : NULL;
        if (!sh) {
            free(kick);
            kick = NULL;
        }
    }
    for (s = ch ? ch->subs : NULL; s; s = s->ch_next) {
        mws_conn *mc = s->mc;

        if (s->from > seq) {
            continue;       /* published before it subscribed */
        }
        /* queueing takes only the target's lock, never ours twice */
        if (mc->pmd && len >= mc->b->limits->compress_min
            && !mc->b->pmd_params.server_no_context_takeover) {
            /* context takeover: compressed in the receiver's own stream */
            rv = mws_queue_message(mc, type, data, len, 0);
            claim = 0;
        }
        else if (kick) {
            use = sh;
            if (mc->pmd && len >= mc->b->limits->compress_min) {
                /* without context takeover, one compressed copy per window
                 * size for all receivers that agreed on it (uWebSockets'
                 * shared compressor); uncompressed if that fails */
                w = mc->b->pmd_params.server_max_window_bits & 15u;
                if (!shz[w]) {
                    shz[w] = mws_shared_frame_pmd(type, data, len, w,
                                                  mc->b->limits->mem_level);
                }
                if (shz[w]) {
                    use = shz[w];
                }
            }
            rv = mws_queue_shared_claim(mc, type, use, &claim);
        }
        else {
            rv = mws_queue_message(mc, type, data, len, 0);
            claim = 0;
        }
        if (rv == MWS_OK) {
            ++n;
        }
        if (claim) {
            kick[nkick++] = mc;
        }
    }
    pthread_mutex_unlock(&ps_lock);
    mws_shared_release(sh);     /* the queues hold their own references */
    for (w = 0; w < 16; ++w) {
        mws_shared_release(shz[w]);
    }
    if (nkick) {
        mws_park_kick_batch(kick, nkick);
    }
    free(kick);
    return n;
}

int mws_channels_subscribe(mws_conn *mc, const char *channel)
{
    char key[MWS_KEY_MAX + 1];
    mws_channel *ch;
    mws_sub *s;
    int rv;

    if (!mc) {
        return MWS_ERR_INVALID;
    }
    if ((rv = channel_key(key, mc->inst, channel)) != MWS_OK) {
        return rv;
    }
    pthread_mutex_lock(&ps_lock);
    if (!channels || ps_stopping) {
        pthread_mutex_unlock(&ps_lock);
        return MWS_ERR_STATE;
    }
    pthread_mutex_lock(&mc->lock);
    if (mc->state == MWS_ST_DEAD) {
        pthread_mutex_unlock(&mc->lock);
        pthread_mutex_unlock(&ps_lock);
        return MWS_ERR_CLOSED;
    }
    pthread_mutex_unlock(&mc->lock);
    for (s = mc->b->subs; s; s = s->c_next) {
        if (!strcmp(s->ch->name, key)) {
            pthread_mutex_unlock(&ps_lock);
            return MWS_OK;              /* already there */
        }
    }
    ch = apr_hash_get(channels, key, APR_HASH_KEY_STRING);
    if (!ch) {
        ch = calloc(1, sizeof(*ch));
        if (!ch || !(ch->name = strdup(key))) {
            free(ch);
            pthread_mutex_unlock(&ps_lock);
            return MWS_ERR_NOMEM;
        }
        apr_hash_set(channels, ch->name, APR_HASH_KEY_STRING, ch);
    }
    s = calloc(1, sizeof(*s));
    if (!s) {
        pthread_mutex_unlock(&ps_lock);
        return MWS_ERR_NOMEM;
    }
    s->ch = ch;
    s->mc = mc;
    s->from = mws_bus_head();
    s->ch_next = ch->subs;
    if (ch->subs) {
        ch->subs->ch_prev = s;
    }
    ch->subs = s;
    ++ch->n;
    s->c_next = mc->b->subs;
    mc->b->subs = s;
    pthread_mutex_unlock(&ps_lock);
    return MWS_OK;
}

/* Unlink s from its channel (ps_lock held); frees an empty channel.  The
 * table may be gone already (the child pool died under a handler thread
 * that unsubscribes late): then only the memory is freed. */
static void sub_unlink(mws_sub *s)
{
    mws_channel *ch = s->ch;

    if (s->ch_prev) {
        s->ch_prev->ch_next = s->ch_next;
    }
    else {
        ch->subs = s->ch_next;
    }
    if (s->ch_next) {
        s->ch_next->ch_prev = s->ch_prev;
    }
    if (--ch->n == 0) {
        if (channels) {
            apr_hash_set(channels, ch->name, APR_HASH_KEY_STRING, NULL);
        }
        free(ch->name);
        free(ch);
    }
    free(s);
}

int mws_channels_unsubscribe(mws_conn *mc, const char *channel)
{
    char key[MWS_KEY_MAX + 1];
    mws_sub **pp;
    int rv;

    if (!mc) {
        return MWS_ERR_INVALID;
    }
    if ((rv = channel_key(key, mc->inst, channel)) != MWS_OK) {
        return rv;
    }
    rv = MWS_ERR_NOTFOUND;
    pthread_mutex_lock(&ps_lock);
    pthread_mutex_lock(&mc->lock);
    if (mc->state == MWS_ST_DEAD) {
        /* its subscriptions go (or went) with it, and so may its body */
        pthread_mutex_unlock(&mc->lock);
        pthread_mutex_unlock(&ps_lock);
        return rv;
    }
    pthread_mutex_unlock(&mc->lock);
    for (pp = &mc->b->subs; *pp; pp = &(*pp)->c_next) {
        if (!strcmp((*pp)->ch->name, key)) {
            mws_sub *s = *pp;
            *pp = s->c_next;
            sub_unlink(s);
            rv = MWS_OK;
            break;
        }
    }
    pthread_mutex_unlock(&ps_lock);
    return rv;
}

static void drop_conn(mws_conn *mc)
{
    mws_sub *s, *next;

    pthread_mutex_lock(&ps_lock);
    for (s = mc->b->subs; s; s = next) {
        next = s->c_next;
        sub_unlink(s);
    }
    mc->b->subs = NULL;
    pthread_mutex_unlock(&ps_lock);
}

int mws_channels_publish(const char *channel, mws_msg_type type,
                       const void *data, size_t len)
{
    /* outside a handler callback (no line to scope it by), only
     * server-wide channels */
    return mws_channels_publish_line(mws_instance_current(), channel, type,
                                     data, len);
}

/* The number of this child's subscribers of key now. */
static int local_count(const char *key)
{
    mws_channel *ch;
    int n;

    pthread_mutex_lock(&ps_lock);
    ch = channels ? apr_hash_get(channels, key, APR_HASH_KEY_STRING) : NULL;
    n = ch ? (int)ch->n : 0;
    pthread_mutex_unlock(&ps_lock);
    return n;
}

/* publish() to a channel of inst's line (NULL: only "server:" names).
 * The message takes its place in the channel log and the call returns:
 * every child, this one too, delivers it from the log on its receive
 * thread, so that every subscriber sees one order. */
int mws_channels_publish_line(mws_instance *inst, const char *channel,
                              mws_msg_type type, const void *data,
                              size_t len)
{
    char key[MWS_KEY_MAX + 1];
    int rv;

    if ((type != MWS_TEXT && type != MWS_BINARY) || (len && !data)) {
        return MWS_ERR_INVALID;
    }
    if ((rv = channel_key(key, inst, channel)) != MWS_OK) {
        return rv;
    }
    if (type == MWS_TEXT && !ws_utf8_is_valid(data, len)) {
        return MWS_ERR_INVALID;
    }
    if (len > MWS_PUBLISH_MAX) {
        return MWS_ERR_TOO_BIG;
    }
    if (!mws_bus_available()) {
        /* no log (no WebSocketHandler line at start-up): this child only */
        return deliver_local(key, type, data, len, UINT64_MAX);
    }
    if ((rv = mws_bus_publish(key, type, data, len)) != MWS_OK) {
        return rv;
    }
    return local_count(key);
}

/* The table goes last, after every on_close and shutdown() of the child's
 * exit (a handler may unsubscribe there). */
static apr_status_t channels_table_gone(void *unused)
{
    pthread_mutex_lock(&ps_lock);
    channels = NULL;
    ps_stopping = 1;
    pthread_mutex_unlock(&ps_lock);
    return APR_SUCCESS;
}

void mws_channels_child_init(apr_pool_t *pchild, server_rec *s)
{
    pthread_mutex_lock(&ps_lock);
    channels = apr_hash_make(pchild);
    ps_stopping = 0;
    pthread_mutex_unlock(&ps_lock);
    /* registered before the handlers' shutdown, so it runs after it */
    apr_pool_cleanup_register(pchild, NULL, channels_table_gone,
                              apr_pool_cleanup_null);
    mws_conn_on_end(drop_conn);
}

/* ---- what the log delivers (the receive thread) ------------------------ */

/* The lines whose handlers want on_publish or on_gap, by scope; fixed
 * before the receive thread starts. */
static apr_hash_t *bus_lines;
static apr_array_header_t *gap_lines;     /* of mws_instance *            */

static mws_instance *line_of(const char *key)
{
    if (!bus_lines || strlen(key) <= MWS_SCOPE_HEX
        || key[MWS_SCOPE_HEX] != '/') {
        return NULL;
    }
    return apr_hash_get(bus_lines, key, MWS_SCOPE_HEX);
}

static void bus_deliver(const char *key, mws_msg_type type, const void *data,
                        size_t len, uint64_t seq)
{
    mws_instance *inst = line_of(key);

    if (inst && MWS_H_HAS(inst->h, on_publish)) {
        mws_call prev = mws_instance_enter(inst, "on_publish");

        inst->h->on_publish(inst->data, key + MWS_SCOPE_HEX + 1, type, data,
                            len);
        mws_instance_leave(prev);
    }
    deliver_local(key, type, data, len, seq);
}

static void call_gap(mws_instance *inst, const char *channel, uint64_t lost)
{
    mws_call prev = mws_instance_enter(inst, "on_gap");

    inst->h->on_gap(inst->data, channel, lost);
    mws_instance_leave(prev);
}

/* Lost messages of key; key "": of channels no longer known, which every
 * line may have had, as may "server:" channels. */
static void bus_gap(const char *key, uint64_t lost)
{
    mws_instance *inst;
    int i;

    if (*key && (inst = line_of(key)) != NULL) {
        if (MWS_H_HAS(inst->h, on_gap)) {
            call_gap(inst, key + MWS_SCOPE_HEX + 1, lost);
        }
        return;
    }
    if (*key && strncmp(key, MWS_SERVER_PREFIX,
                        sizeof(MWS_SERVER_PREFIX) - 1)) {
        return;                 /* a line of no handler here */
    }
    for (i = 0; gap_lines && i < gap_lines->nelts; ++i) {
        call_gap(APR_ARRAY_IDX(gap_lines, i, mws_instance *), key, lost);
    }
}

/* The child exits: no new subscriptions from here on. */
static apr_status_t channels_stopping(void *unused)
{
    pthread_mutex_lock(&ps_lock);
    ps_stopping = 1;
    pthread_mutex_unlock(&ps_lock);
    return APR_SUCCESS;
}

/* After the handlers' init: the log is read from here on.  instances: the
 * WebSocketHandler lines (mws_instance *). */
void mws_channels_start(apr_pool_t *pchild, server_rec *s,
                        apr_array_header_t *instances)
{
    int i;

    bus_lines = apr_hash_make(pchild);
    gap_lines = apr_array_make(pchild, 4, sizeof(mws_instance *));
    for (i = 0; instances && i < instances->nelts; ++i) {
        mws_instance *inst = APR_ARRAY_IDX(instances, i, mws_instance *);

        if (!inst->ready) {
            continue;
        }
        if (MWS_H_HAS(inst->h, on_publish) || MWS_H_HAS(inst->h, on_gap)) {
            apr_hash_set(bus_lines, inst->scope, MWS_SCOPE_HEX, inst);
        }
        if (MWS_H_HAS(inst->h, on_gap)) {
            APR_ARRAY_PUSH(gap_lines, mws_instance *) = inst;
        }
    }
    mws_bus_child_init(pchild, s, bus_deliver, bus_gap);
    /* registered last so that it runs first when the child pool dies,
     * before the receive thread stops */
    apr_pool_cleanup_register(pchild, NULL, channels_stopping,
                              apr_pool_cleanup_null);
}
