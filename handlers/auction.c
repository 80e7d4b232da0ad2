/*
 * auction -- a live auction over every child process: the worked example of
 * handler API 1.1 (docs/handlers.md walks through it).
 *
 *     <Location /auction>
 *         SetHandler websocket
 *         WebSocketHandler modules/mod_ws_auction.so
 *         # optional: the opening price and the smallest raise (whole
 *         # numbers, 0-1000000000 and 1-1000000000; defaults 0 and 1)
 *         WebSocketHandlerOption StartPrice 100
 *         WebSocketHandlerOption MinIncrement 5
 *     </Location>
 *
 * A client connects to /auction?bidder=NAME (1-32 of A-Z a-z 0-9 _ -; else
 * 400 with a JSON body saying why) and receives the current price at once:
 *     {"type":"price","price":105,"leader":"ann","seq":3}
 * It bids with the text "bid 110".  A bid of at least price + MinIncrement
 * becomes the price and is broadcast to every bidder in every child; a
 * lower one is refused to the bidder only:
 *     {"type":"refused","price":110,"min":115}
 * "local" answers what this child's replica holds (kept by on_publish):
 *     {"type":"local","price":110,"seq":4,"pid":1234}
 *
 * The state every child shares (price, leader, sequence) lives in shared
 * memory that init_server() creates in the parent; a bid changes it under
 * the line's cross-process lock and publishes the new price while still
 * holding it, so the channel's order is the order of the prices.  Each child
 * keeps a replica from on_publish (a cache: the shared memory stays the
 * truth), rebuilt from shared memory after a gap.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mod_websocket.h"

#define AU_CHANNEL   "price"
#define AU_NAME_MAX  32
#define AU_PRICE_MAX 1000000000ULL

static const mws_host *host;

/* In shared memory: one per WebSocketHandler line, for all children. */
typedef struct {
    uint64_t price;
    uint64_t seq;                /* accepted bids */
    uint64_t min_increment;
    char leader[AU_NAME_MAX + 1];
} au_shared;

/* Per line and child process. */
typedef struct {
    mws_line *line;
    uint64_t replica_price;      /* from on_publish */
    uint64_t replica_seq;
} au_instance;

/* A whole number in [lo, hi], or -1. */
static long long au_number(const char *s, unsigned long long lo,
                           unsigned long long hi)
{
    char *end;
    unsigned long long v;

    if (!s || *s < '0' || *s > '9') {
        return -1;
    }
    v = strtoull(s, &end, 10);
    return (*end || v < lo || v > hi) ? -1 : (long long)v;
}

/* Configuration time (`apache2 -t` too): a bad option names its line. */
static const char *au_check_options(const mws_host *h, const mws_option *opts,
                                    size_t nopts, size_t *bad)
{
    size_t i;

    (void)h;
    for (i = 0; i < nopts; ++i) {
        if (!strcmp(opts[i].key, "StartPrice")
            && au_number(opts[i].value, 0, AU_PRICE_MAX) < 0) {
            *bad = i;
            return "StartPrice must be a whole number from 0 to 1000000000";
        }
        if (!strcmp(opts[i].key, "MinIncrement")
            && au_number(opts[i].value, 1, AU_PRICE_MAX) < 0) {
            *bad = i;
            return "MinIncrement must be a whole number from 1 to 1000000000";
        }
    }
    return NULL;
}

static const char *au_option(const mws_option *opts, size_t n,
                             const char *key)
{
    const char *v = NULL;
    size_t i;

    for (i = 0; i < n; ++i) {
        if (!strcmp(opts[i].key, key)) {
            v = opts[i].value;          /* the last one wins */
        }
    }
    return v;
}

/* The parent, before the children start: the shared state. */
static int au_init_server(const mws_host *h, mws_line *line,
                          const mws_option *opts, size_t nopts)
{
    const char *start = au_option(opts, nopts, "StartPrice");
    const char *inc = au_option(opts, nopts, "MinIncrement");
    au_shared *st;

    if (h->shared_create(line, sizeof(au_shared)) != MWS_OK) {
        return -1;
    }
    st = h->shared_mem(line, NULL);
    st->price = start ? (uint64_t)au_number(start, 0, AU_PRICE_MAX) : 0;
    st->min_increment = inc ? (uint64_t)au_number(inc, 1, AU_PRICE_MAX) : 1;
    return 0;
}

static int au_init(const mws_host *h, const mws_option *opts, size_t n,
                   void **instance)
{
    au_instance *ai = calloc(1, sizeof(*ai));

    (void)opts;
    (void)n;
    if (!ai) {
        return -1;
    }
    host = h;
    /* 1.1 members: this handler needs a module that has them */
    if (h->abi_minor < 1) {
        free(ai);
        return -1;
    }
    ai->line = h->line(NULL);   /* the line whose init() runs */
    *instance = ai;
    return 0;
}

static void au_shutdown(void *instance)
{
    free(instance);
}

static int au_send_price(mws_conn *c, const au_shared *st)
{
    char msg[160];
    int n = snprintf(msg, sizeof(msg), "{\"type\":\"price\",\"price\":%"
                     PRIu64 ",\"leader\":\"%s\",\"seq\":%" PRIu64 "}",
                     st->price, st->leader, st->seq);

    return host->send(c, MWS_TEXT, msg, (size_t)n);
}

/* "bidder=NAME" from the query, copied to name; 0, or -1 if missing or bad. */
static int au_bidder(const char *query, char *name)
{
    const char *p = query;
    size_t n = 0;

    while (p && *p) {
        if (!strncmp(p, "bidder=", 7)) {
            for (p += 7; *p && *p != '&'; ++p) {
                int ok = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')
                         || (*p >= '0' && *p <= '9') || *p == '_'
                         || *p == '-';
                if (!ok || n == AU_NAME_MAX) {
                    return -1;
                }
                name[n++] = *p;
            }
            name[n] = '\0';
            return n ? 0 : -1;
        }
        p = strchr(p, '&');
        p = p ? p + 1 : NULL;
    }
    return -1;
}

static int au_open(mws_conn *c, mws_request *r, void *instance)
{
    au_instance *ai = instance;
    static const char why[] =
        "{\"error\":\"give your name: ?bidder=NAME (1-32 of A-Z a-z 0-9 _ -)\"}";
    char name[AU_NAME_MAX + 1], *copy;
    au_shared *st = host->shared_mem(ai->line, NULL);

    if (au_bidder(host->req_query(r), name) != 0) {
        host->req_refuse_reason(r, "Bidder Name Required");
        host->req_refuse_body(r, "application/json", why, sizeof(why) - 1);
        return 400;
    }
    if (!st || !(copy = strdup(name))) {
        host->req_set_header(r, "Retry-After", "10");
        return 503;
    }
    host->set_data(c, copy);
    if (host->subscribe(c, AU_CHANNEL) != MWS_OK) {
        free(copy);
        host->set_data(c, NULL);
        return 503;
    }
    /* a late bidder gets the current price (the lock makes it a price
     * that was broadcast, never a half-written one) */
    host->shared_lock(ai->line);
    au_send_price(c, st);
    host->shared_unlock(ai->line);
    return 0;
}

static void au_bid(mws_conn *c, au_instance *ai, const char *who,
                   const char *arg)
{
    au_shared *st = host->shared_mem(ai->line, NULL);
    long long bid = au_number(arg, 0, AU_PRICE_MAX);
    char msg[160];
    int n;

    host->shared_lock(ai->line);
    if (bid < 0 || (uint64_t)bid < st->price + st->min_increment) {
        n = snprintf(msg, sizeof(msg), "{\"type\":\"refused\",\"price\":%"
                     PRIu64 ",\"min\":%" PRIu64 "}", st->price,
                     st->price + st->min_increment);
        host->shared_unlock(ai->line);
        host->send(c, MWS_TEXT, msg, (size_t)n);
        return;
    }
    st->price = (uint64_t)bid;
    st->seq++;
    snprintf(st->leader, sizeof(st->leader), "%s", who);
    n = snprintf(msg, sizeof(msg), "{\"type\":\"price\",\"price\":%" PRIu64
                 ",\"leader\":\"%s\",\"seq\":%" PRIu64 "}", st->price,
                 st->leader, st->seq);
    /* published under the lock: the channel carries the prices in the
     * order they were accepted */
    if (host->publish(AU_CHANNEL, MWS_TEXT, msg, (size_t)n) < 0) {
        host->log(c, MWS_LOG_WARNING, "publishing price %" PRIu64 " failed",
                  st->price);
    }
    host->shared_unlock(ai->line);
}

static int au_message(mws_conn *c, mws_msg_type type, const void *data,
                      size_t len)
{
    au_instance *ai = host->instance(c);
    const char *who = host->get_data(c);
    char text[64], msg[160];
    int n;

    if (type != MWS_TEXT || len >= sizeof(text) || !ai || !who) {
        host->close(c, MWS_CLOSE_POLICY, "bid N or local");
        return 0;
    }
    memcpy(text, data, len);
    text[len] = '\0';
    if (!strncmp(text, "bid ", 4)) {
        au_bid(c, ai, who, text + 4);
    }
    else if (!strcmp(text, "local")) {
        n = snprintf(msg, sizeof(msg), "{\"type\":\"local\",\"price\":%"
                     PRIu64 ",\"seq\":%" PRIu64 ",\"pid\":%d}",
                     __atomic_load_n(&ai->replica_price, __ATOMIC_ACQUIRE),
                     __atomic_load_n(&ai->replica_seq, __ATOMIC_ACQUIRE),
                     (int)getpid());
        host->send(c, MWS_TEXT, msg, (size_t)n);
    }
    else {
        host->close(c, MWS_CLOSE_POLICY, "bid N or local");
    }
    return 0;
}

static void au_close(mws_conn *c, int code, const char *reason,
                     size_t reason_len)
{
    (void)code;
    (void)reason;
    (void)reason_len;
    free(host->get_data(c));
}

/* Every price published on this line, in every child, in channel order:
 * this child's replica. */
static void au_on_publish(void *instance, const char *channel,
                          mws_msg_type type, const void *data, size_t len)
{
    au_instance *ai = instance;
    char text[160];
    unsigned long long price, seq;

    if (!ai || type != MWS_TEXT || strcmp(channel, AU_CHANNEL)
        || len >= sizeof(text)) {
        return;
    }
    memcpy(text, data, len);
    text[len] = '\0';
    if (sscanf(text, "{\"type\":\"price\",\"price\":%llu,", &price) == 1) {
        const char *s = strstr(text, "\"seq\":");
        seq = s ? strtoull(s + 6, NULL, 10) : 0;
        __atomic_store_n(&ai->replica_price, (uint64_t)price,
                         __ATOMIC_RELEASE);
        __atomic_store_n(&ai->replica_seq, (uint64_t)seq, __ATOMIC_RELEASE);
    }
}

/* Missed prices: the shared memory has the truth. */
static void au_on_gap(void *instance, const char *channel, uint64_t lost)
{
    au_instance *ai = instance;
    au_shared *st = ai ? host->shared_mem(ai->line, NULL) : NULL;

    if (!st) {
        return;
    }
    host->log(NULL, MWS_LOG_NOTICE, "missed %" PRIu64 " messages of %s: "
              "replica rebuilt from shared memory", lost, channel);
    host->shared_lock(ai->line);
    __atomic_store_n(&ai->replica_price, st->price, __ATOMIC_RELEASE);
    __atomic_store_n(&ai->replica_seq, st->seq, __ATOMIC_RELEASE);
    host->shared_unlock(ai->line);
}

static const mws_handler auction_handler = {
    .abi_major     = MWS_ABI_MAJOR,
    .abi_minor     = MWS_ABI_MINOR,
    .struct_size   = sizeof(mws_handler),
    .name          = "auction",
    .flags         = MWS_HANDLER_FLAG_NONE,
    .init          = au_init,
    .shutdown      = au_shutdown,
    .on_open       = au_open,
    .on_message    = au_message,
    .on_close      = au_close,
    .check_options = au_check_options,
    .init_server   = au_init_server,
    .on_publish    = au_on_publish,
    .on_gap        = au_on_gap,
};

MWS_EXPORT const mws_handler *mws_handler_entry(void)
{
    return &auction_handler;
}
