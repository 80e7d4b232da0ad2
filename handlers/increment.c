/*
 * increment -- libwebsockets' "dumb-increment-protocol": every 50 ms the
 * server sends a counter as text ("0", "1", "2", ...); the message "reset\n"
 * (or "reset") sets it back to 0.  Each connection has its own counter.
 *
 *     <Location /increment>
 *         SetHandler websocket
 *         WebSocketHandler modules/mod_ws_increment.so
 *         # optional, in milliseconds (1-60000, default 50)
 *         WebSocketHandlerOption interval 50
 *     </Location>
 *
 * Subprotocol: when the client offers "dumb-increment-protocol" it is
 * chosen.  A client that offers no subprotocol at all is served without
 * one.  A client that offers only other subprotocols is refused with 400:
 * answering without a subprotocol would make a browser fail the
 * connection anyway, and choosing one it did not offer is forbidden.
 *
 * A tick is skipped (the counter does not advance) while more than 64 KiB
 * wait to be written to a slow client, so a stalled reader does not make
 * the queue grow without bound.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mod_websocket.h"

#define INC_PROTOCOL     "dumb-increment-protocol"
#define INC_INTERVAL_MS  50
#define INC_QUEUE_MAX    (64 * 1024)

static const mws_host *host;

/* One per connection, freed in on_close. */
typedef struct {
    unsigned long counter;
} inc_conn;

static int inc_init(const mws_host *h, const mws_option *opts, size_t n,
                    void **instance)
{
    host = h;
    return 0;
}

/* The interval option of the connection's location, or the default. */
static unsigned inc_interval(mws_conn *c)
{
    const char *v = host->option(c, "interval");
    char *end;
    unsigned long ms;

    if (!v) {
        return INC_INTERVAL_MS;
    }
    ms = strtoul(v, &end, 10);
    if (end == v || *end || ms < 1 || ms > 60000) {
        host->log(c, MWS_LOG_WARNING, "option interval '%s' is not 1-60000 "
                  "ms, using %d", v, INC_INTERVAL_MS);
        return INC_INTERVAL_MS;
    }
    return (unsigned)ms;
}

static void inc_tick(mws_conn *c, void *arg)
{
    inc_conn *ic = arg;
    char buf[24];
    int n;

    if (host->queued(c) > INC_QUEUE_MAX) {
        return;
    }
    n = snprintf(buf, sizeof(buf), "%lu", ic->counter);
    if (host->send(c, MWS_TEXT, buf, (size_t)n) == MWS_OK) {
        ++ic->counter;
    }
}

static int inc_open(mws_conn *c, mws_request *r, void *instance)
{
    inc_conn *ic;

    if (host->req_subprotocol_count(r) > 0
        && host->req_select_subprotocol(r, INC_PROTOCOL) != MWS_OK) {
        host->log(c, MWS_LOG_INFO, "refused: the client offered "
                  "subprotocols, but not " INC_PROTOCOL);
        return 400;
    }
    ic = calloc(1, sizeof(*ic));
    if (!ic) {
        return 500;
    }
    /* the timer callbacks run on the connection's thread, never beside
     * on_message: the counter needs no lock */
    if (!host->timer_add(c, inc_interval(c), 1, inc_tick, ic)) {
        free(ic);
        return 500;
    }
    host->set_data(c, ic);
    return 0;
}

static int inc_message(mws_conn *c, mws_msg_type type, const void *data,
                       size_t len)
{
    inc_conn *ic = host->get_data(c);

    if (ic && type == MWS_TEXT
        && ((len == 6 && !memcmp(data, "reset\n", 6))
            || (len == 5 && !memcmp(data, "reset", 5)))) {
        ic->counter = 0;
    }
    /* anything else is ignored, as libwebsockets' test server does */
    return 0;
}

static void inc_close(mws_conn *c, int code, const char *reason,
                      size_t reason_len)
{
    /* the timer ended before on_close: nothing uses ic any more */
    free(host->get_data(c));
    host->set_data(c, NULL);
}

static const mws_handler inc_handler = {
    .abi_major   = MWS_ABI_MAJOR,
    .abi_minor   = MWS_ABI_MINOR,
    .struct_size = sizeof(mws_handler),
    .name        = "increment",
    .init        = inc_init,
    .on_open     = inc_open,
    .on_message  = inc_message,
    .on_close    = inc_close,
};

MWS_EXPORT const mws_handler *mws_handler_entry(void)
{
    return &inc_handler;
}
