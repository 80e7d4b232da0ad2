/*
 * mws_status.c -- the WebSocket section of mod_status (/server-status):
 * the figures of every child process (mws_stats.c) added up, in HTML and,
 * for ?auto, as `WebSocket...: value` lines that scrapers read.
 */
#include "httpd.h"
#include "apr_strings.h"
#include "apr_optional_hooks.h"
#include "http_config.h"
#include "http_protocol.h"
#include "http_log.h"
#include "ap_provider.h"
#include "mod_status.h"

#include "mws_private.h"

#define FOLDING ((apr_uint32_t)0xffffffffu)

typedef struct {
    const char *scope;           /* MWS_SCOPE_HEX chars, not terminated    */
    apr_int64_t open;
} line_sum;

typedef struct {
    int children;
    apr_int64_t open_parked_driver, open_blocking_driver, parked, queued;
    apr_uint64_t opened, closed, msgs_in, msgs_out, bytes_in, bytes_out;
    apr_uint64_t refused_403, refused_503;
    apr_uint64_t closes[MWS_STAT_NCODES];
    apr_array_header_t *lines;   /* of line_sum                             */
} totals;

#define LOAD(f) __atomic_load_n(&(f), __ATOMIC_RELAXED)

static void add_totals(totals *t, const mws_stats_child *c)
{
    int i;

    t->opened += LOAD(c->opened);
    t->closed += LOAD(c->closed);
    t->msgs_in += LOAD(c->msgs_in);
    t->msgs_out += LOAD(c->msgs_out);
    t->bytes_in += LOAD(c->bytes_in);
    t->bytes_out += LOAD(c->bytes_out);
    t->refused_403 += LOAD(c->refused_403);
    t->refused_503 += LOAD(c->refused_503);
    for (i = 0; i < MWS_STAT_NCODES; ++i) {
        t->closes[i] += LOAD(c->closes[i]);
    }
}

static void add_line(totals *t, const char *scope, apr_int64_t open)
{
    line_sum *l;
    int i;

    for (i = 0; i < t->lines->nelts; ++i) {
        l = &APR_ARRAY_IDX(t->lines, i, line_sum);
        if (!memcmp(l->scope, scope, MWS_SCOPE_HEX)) {
            l->open += open;
            return;
        }
    }
    l = apr_array_push(t->lines);
    l->scope = scope;
    l->open = open;
}

static void sum(apr_pool_t *p, const mws_stats_area *a, totals *t)
{
    apr_uint32_t i, n, pid;

    memset(t, 0, sizeof(*t));
    t->lines = apr_array_make(p, 8, sizeof(line_sum));
    /* the lines of this generation first, in configuration order */
    for (i = 0; i < (apr_uint32_t)mws_instances->nelts; ++i) {
        add_line(t, APR_ARRAY_IDX(mws_instances, i, mws_instance *)->scope,
                 0);
    }
    add_totals(t, &a->child[0]);
    for (i = 1; i < a->nchildren; ++i) {
        const mws_stats_child *c = &a->child[i];
        pid = LOAD(c->pid);
        if (pid == 0 || pid == FOLDING) {
            continue;
        }
        ++t->children;
        add_totals(t, c);
        /* gauges: 32-bit counters moved by +1/-1, read as signed */
        t->open_parked_driver += (apr_int32_t)LOAD(c->open_parked_driver);
        t->open_blocking_driver += (apr_int32_t)LOAD(c->open_blocking_driver);
        t->parked += (apr_int32_t)LOAD(c->parked);
        t->queued += (apr_int64_t)LOAD(c->queued_bytes);
        for (n = 0; n < c->nlines && n < MWS_STAT_LINES; ++n) {
            add_line(t, c->lines[n].scope,
                     (apr_int32_t)LOAD(c->lines[n].open));
        }
    }
}

/* The WebSocketHandler line of a scope in this generation, or NULL. */
static const mws_instance *line_of(const char *scope)
{
    int i;

    for (i = 0; i < mws_instances->nelts; ++i) {
        const mws_instance *inst = APR_ARRAY_IDX(mws_instances, i,
                                                 mws_instance *);
        if (!memcmp(inst->scope, scope, MWS_SCOPE_HEX)) {
            return inst;
        }
    }
    return NULL;
}

static apr_int64_t nonneg(apr_int64_t v)
{
    return v < 0 ? 0 : v;       /* a reader can see an add before its sub */
}

static int status_hook(request_rec *r, int flags)
{
    const mws_stats_area *a = mws_stats_area_get();
    const mws_capacity *cap = mws_capacity_get();
    apr_int64_t open;
    totals t;
    int i;

    if (!a) {
        return OK;
    }
    mws_stats_reap();
    sum(r->pool, a, &t);
    open = nonneg(t.open_parked_driver + t.open_blocking_driver);
    if (flags & AP_STATUS_SHORT) {
        ap_rprintf(r, "WebSocketOpen: %" APR_INT64_T_FMT "\n", open);
        ap_rprintf(r, "WebSocketOpenParkedDriver: %" APR_INT64_T_FMT "\n",
                   nonneg(t.open_parked_driver));
        ap_rprintf(r, "WebSocketOpenBlockingDriver: %" APR_INT64_T_FMT "\n",
                   nonneg(t.open_blocking_driver));
        ap_rprintf(r, "WebSocketParked: %" APR_INT64_T_FMT "\n",
                   nonneg(t.parked));
        ap_rprintf(r, "WebSocketRunning: %" APR_INT64_T_FMT "\n",
                   nonneg(open - nonneg(t.parked)));
        ap_rprintf(r, "WebSocketOpened: %" APR_UINT64_T_FMT "\n", t.opened);
        ap_rprintf(r, "WebSocketClosed: %" APR_UINT64_T_FMT "\n", t.closed);
        for (i = 0; i < MWS_STAT_NCODES; ++i) {
            if (mws_stats_codes[i]) {
                ap_rprintf(r, "WebSocketClose%d: %" APR_UINT64_T_FMT "\n",
                           mws_stats_codes[i], t.closes[i]);
            }
            else {
                ap_rprintf(r, "WebSocketCloseOther: %" APR_UINT64_T_FMT "\n",
                           t.closes[i]);
            }
        }
        ap_rprintf(r, "WebSocketMessagesIn: %" APR_UINT64_T_FMT "\n"
                   "WebSocketMessagesOut: %" APR_UINT64_T_FMT "\n"
                   "WebSocketBytesIn: %" APR_UINT64_T_FMT "\n"
                   "WebSocketBytesOut: %" APR_UINT64_T_FMT "\n",
                   t.msgs_in, t.msgs_out, t.bytes_in, t.bytes_out);
        ap_rprintf(r, "WebSocketQueuedBytes: %" APR_INT64_T_FMT "\n",
                   nonneg(t.queued));
        ap_rprintf(r, "WebSocketRefused403: %" APR_UINT64_T_FMT "\n"
                   "WebSocketRefused503: %" APR_UINT64_T_FMT "\n",
                   t.refused_403, t.refused_503);
        ap_rprintf(r, "WebSocketCapacity: %d\n"
                   "WebSocketCapacityUsed: %u\n"
                   "WebSocketChildren: %d\n", cap->per_server,
                   (unsigned)mws_capacity_used(), t.children);
        for (i = 0; i < t.lines->nelts; ++i) {
            line_sum *l = &APR_ARRAY_IDX(t.lines, i, line_sum);
            const mws_instance *inst = line_of(l->scope);
            ap_rprintf(r, "WebSocketOpen(%s %s): %" APR_INT64_T_FMT "\n",
                       inst ? inst->where : "earlier-configuration",
                       inst ? inst->name
                            : apr_pstrmemdup(r->pool, l->scope, 8),
                       nonneg(l->open));
        }
        return OK;
    }
    ap_rputs("<hr />\n<h2><a name=\"websocket\">WebSockets</a></h2>\n", r);
    ap_rprintf(r, "<p>%" APR_INT64_T_FMT " open (%" APR_INT64_T_FMT
               " parked driver, %" APR_INT64_T_FMT " blocking driver; %"
               APR_INT64_T_FMT " parked, %" APR_INT64_T_FMT " running) in %d "
               "child processes; capacity %d (%u in use, "
               "WebSocketMaxConnections auto)</p>\n",
               open, nonneg(t.open_parked_driver),
               nonneg(t.open_blocking_driver), nonneg(t.parked),
               nonneg(open - nonneg(t.parked)), t.children, cap->per_server,
               (unsigned)mws_capacity_used());
    ap_rprintf(r, "<p>%" APR_UINT64_T_FMT " opened, %" APR_UINT64_T_FMT
               " closed; messages in %" APR_UINT64_T_FMT ", out %"
               APR_UINT64_T_FMT "; bytes in %" APR_UINT64_T_FMT ", out %"
               APR_UINT64_T_FMT "; %" APR_INT64_T_FMT " bytes queued; "
               "refused: %" APR_UINT64_T_FMT " with 403, %" APR_UINT64_T_FMT
               " with 503</p>\n", t.opened, t.closed, t.msgs_in, t.msgs_out,
               t.bytes_in, t.bytes_out, nonneg(t.queued), t.refused_403,
               t.refused_503);
    ap_rputs("<table border=\"0\"><tr><th>close code</th><th>closes</th>"
             "</tr>\n", r);
    for (i = 0; i < MWS_STAT_NCODES; ++i) {
        if (mws_stats_codes[i]) {
            ap_rprintf(r, "<tr><td>%d</td><td>%" APR_UINT64_T_FMT
                       "</td></tr>\n", mws_stats_codes[i], t.closes[i]);
        }
        else {
            ap_rprintf(r, "<tr><td>other</td><td>%" APR_UINT64_T_FMT
                       "</td></tr>\n", t.closes[i]);
        }
    }
    ap_rputs("</table>\n<table border=\"0\"><tr><th>WebSocketHandler line"
             "</th><th>handler</th><th>open</th></tr>\n", r);
    for (i = 0; i < t.lines->nelts; ++i) {
        line_sum *l = &APR_ARRAY_IDX(t.lines, i, line_sum);
        const mws_instance *inst = line_of(l->scope);
        ap_rprintf(r, "<tr><td>%s</td><td>%s</td><td>%" APR_INT64_T_FMT
                   "</td></tr>\n",
                   inst ? ap_escape_html(r->pool, inst->where)
                        : "an earlier configuration",
                   inst ? ap_escape_html(r->pool, inst->name) : "",
                   nonneg(l->open));
    }
    ap_rputs("</table>\n", r);
    return OK;
}


/* ---- the live view: the same figures over a WebSocket ------------------- */

/*
 * A handler of the module itself, registered under the name
 * "websocket-status" (`WebSocketHandler websocket-status`): every second,
 * and whenever the client sends a message, it sends the figures as one
 * JSON text message.  The demo's status.html draws them.  It shows what
 * mod_status shows: protect its location as you protect /server-status.
 */
static const mws_host *live_host;

static int live_init(const mws_host *host, const mws_option *opts,
                     size_t nopts, void **instance)
{
    live_host = host;
    *instance = NULL;
    return 0;
}

static void live_send(mws_conn *c, void *arg)
{
    const mws_stats_area *a = mws_stats_area_get();
    const mws_capacity *cap = mws_capacity_get();
    apr_pool_t *p;
    apr_int64_t open;
    totals t;
    char *json;

    if (!a || apr_pool_create(&p, NULL) != APR_SUCCESS) {
        return;
    }
    mws_stats_reap();
    sum(p, a, &t);
    open = nonneg(t.open_parked_driver + t.open_blocking_driver);
    json = apr_psprintf(p, "{\"time\":%" APR_INT64_T_FMT ",\"open\":%"
                        APR_INT64_T_FMT ",\"parked\":%" APR_INT64_T_FMT
                        ",\"running\":%" APR_INT64_T_FMT ",\"opened\":%"
                        APR_UINT64_T_FMT ",\"closed\":%" APR_UINT64_T_FMT
                        ",\"messagesIn\":%" APR_UINT64_T_FMT
                        ",\"messagesOut\":%" APR_UINT64_T_FMT
                        ",\"bytesIn\":%" APR_UINT64_T_FMT ",\"bytesOut\":%"
                        APR_UINT64_T_FMT ",\"queuedBytes\":%" APR_INT64_T_FMT
                        ",\"refused403\":%" APR_UINT64_T_FMT
                        ",\"refused503\":%" APR_UINT64_T_FMT
                        ",\"capacity\":%d,\"children\":%d}",
                        (apr_int64_t)apr_time_as_msec(apr_time_now()), open,
                        nonneg(t.parked), nonneg(open - nonneg(t.parked)),
                        t.opened, t.closed, t.msgs_in, t.msgs_out, t.bytes_in,
                        t.bytes_out, nonneg(t.queued), t.refused_403,
                        t.refused_503, cap->per_server, t.children);
    live_host->send(c, MWS_TEXT, json, strlen(json));
    apr_pool_destroy(p);
}

static int live_open(mws_conn *c, mws_request *r, void *instance)
{
    return live_host->timer_add(c, 1000, 1, live_send, NULL) ? 0
                                                              : 500;
}

static int live_message(mws_conn *c, mws_msg_type type, const void *data,
                        size_t len)
{
    live_send(c, NULL);
    return 0;
}

static const mws_handler live_handler = {
    .abi_major = MWS_ABI_MAJOR,
    .abi_minor = MWS_ABI_MINOR,
    .struct_size = sizeof(mws_handler),
    .name = "websocket-status",
    .flags = MWS_HANDLER_FLAG_NONE,
    .init = live_init,
    .on_open = live_open,
    .on_message = live_message,
};

void mws_status_register_hooks(apr_pool_t *p)
{
    APR_OPTIONAL_HOOK(ap, status_hook, status_hook, NULL, NULL,
                      APR_HOOK_MIDDLE);
    ap_register_provider(p, MWS_PROVIDER_GROUP, "websocket-status",
                         MWS_PROVIDER_VERSION, &live_handler);
}
