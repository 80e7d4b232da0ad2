/*
 * mws_host.c -- the services mod_websocket offers handlers (the mws_host
 * table of include/mod_websocket.h), and the child's registry of open
 * connections.
 */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "apr_strings.h"

#include "httpd.h"
#include "http_core.h"
#include "http_log.h"
#include "http_main.h"
#include "http_protocol.h"

#include "mws_private.h"

/* ---- registry of this child's connections ----------------------------- */

static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static mws_conn *reg_head;
static apr_size_t reg_count;

void mws_registry_init(apr_pool_t *p)
{
    pthread_mutex_lock(&reg_lock);
    reg_head = NULL;
    reg_count = 0;
    pthread_mutex_unlock(&reg_lock);
}

void mws_registry_add(mws_conn *mc)
{
    pthread_mutex_lock(&reg_lock);
    mc->reg_prev = NULL;
    mc->reg_next = reg_head;
    if (reg_head) {
        reg_head->reg_prev = mc;
    }
    reg_head = mc;
    ++reg_count;
    pthread_mutex_unlock(&reg_lock);
}

void mws_registry_remove(mws_conn *mc)
{
    pthread_mutex_lock(&reg_lock);
    if (mc->reg_prev || reg_head == mc) {
        if (mc->reg_prev) {
            mc->reg_prev->reg_next = mc->reg_next;
        }
        else {
            reg_head = mc->reg_next;
        }
        if (mc->reg_next) {
            mc->reg_next->reg_prev = mc->reg_prev;
        }
        mc->reg_next = mc->reg_prev = NULL;
        --reg_count;
    }
    pthread_mutex_unlock(&reg_lock);
}

/* Collect this child's connections, retained; *n is set.  Free with
 * put_all(). */
static mws_conn **get_all(apr_size_t *n)
{
    mws_conn *mc, **all;

    *n = 0;
    pthread_mutex_lock(&reg_lock);
    all = malloc(sizeof(*all) * (reg_count + 1));
    for (mc = reg_head; all && mc; mc = mc->reg_next) {
        all[(*n)++] = mws_conn_retain(mc);
    }
    pthread_mutex_unlock(&reg_lock);
    return all;
}

static void put_all(mws_conn **all, apr_size_t n)
{
    apr_size_t i;

    for (i = 0; i < n; ++i) {
        mws_conn_release(all[i]);
    }
    free(all);
}

/* Close every open connection of this child with 1001 (stop or restart):
 * each driver writes what was queued, then the close.  On a hard stop the
 * drivers may not run again: write the close now where that is safe. */
void mws_registry_going_away(int graceful)
{
    apr_size_t n, i;
    mws_conn **all = get_all(&n);

    for (i = 0; i < n; ++i) {
        mws_conn_going_away(all[i]);
        if (!graceful) {
            mws_conn_last_words(all[i]);
        }
    }
    put_all(all, n);
}

/* The child is exiting while connections are still registered (prefork
 * runs its exit from a signal handler on the connection's own thread):
 * give every handler its on_close now. */
void mws_registry_report_all(void)
{
    apr_size_t n, i;
    mws_conn **all = get_all(&n);

    for (i = 0; i < n; ++i) {
        /* 1001 only if the client was told so; else no handshake: 1006 */
        if (__atomic_load_n(&all[i]->close_sent, __ATOMIC_ACQUIRE)) {
            mws_conn_report_close(all[i], (int)all[i]->close_code,
                                  "server shutting down", 20);
        }
        else {
            mws_conn_report_close(all[i], WS_CLOSE_ABNORMAL, "", 0);
        }
    }
    put_all(all, n);
}

static mws_conn *h_find(uint64_t id)
{
    mws_conn *mc;

    pthread_mutex_lock(&reg_lock);
    for (mc = reg_head; mc; mc = mc->reg_next) {
        if (mc->id == id) {
            mws_conn_retain(mc);
            break;
        }
    }
    pthread_mutex_unlock(&reg_lock);
    return mc;
}

/* ---- the upgrade request -------------------------------------------- */

static const char *h_req_header(mws_request *req, const char *name)
{
    return (req && name) ? apr_table_get(req->r->headers_in, name) : NULL;
}

static const char *h_req_path(mws_request *req)
{
    return req ? req->r->uri : NULL;
}

static const char *h_req_query(mws_request *req)
{
    return req ? req->r->args : NULL;
}

static const char *h_req_remote_ip(mws_request *req)
{
    return req ? req->r->useragent_ip : NULL;
}

static const char *h_req_user(mws_request *req)
{
    return req ? req->r->user : NULL;
}

static size_t h_req_subprotocol_count(mws_request *req)
{
    return req ? (size_t)req->offered->nelts : 0;
}

static const char *h_req_subprotocol(mws_request *req, size_t i)
{
    if (!req || i >= (size_t)req->offered->nelts) {
        return NULL;
    }
    return APR_ARRAY_IDX(req->offered, i, const char *);
}

static int h_req_select_subprotocol(mws_request *req, const char *proto)
{
    int i;

    if (!req || !proto) {
        return MWS_ERR_INVALID;
    }
    for (i = 0; i < req->offered->nelts; ++i) {
        const char *o = APR_ARRAY_IDX(req->offered, i, const char *);
        if (!strcmp(o, proto)) {
            req->chosen = o;
            /* visible through subprotocol() from now on; the request pool
             * dies before the connection, so keep a copy */
            req->mc->subprotocol = apr_pstrdup(req->r->connection->pool, o);
            return MWS_OK;
        }
    }
    return MWS_ERR_INVALID;
}

static int h_req_set_header(mws_request *req, const char *name,
                            const char *value)
{
    if (!req || !name || !value || !*name) {
        return MWS_ERR_INVALID;
    }
    /* err_headers_out go out with the 101 and with a refusal alike */
    apr_table_set(req->r->err_headers_out, name, value);
    return MWS_OK;
}

static void *h_req_httpd_request(mws_request *req)
{
    return req ? req->r : NULL;
}

/* ---- a connection ---------------------------------------------------- */

static int h_send(mws_conn *mc, mws_msg_type type, const void *data,
                  size_t len)
{
    if (!mc || (type != MWS_TEXT && type != MWS_BINARY)
        || (len && !data)) {
        return MWS_ERR_INVALID;
    }
    return mws_queue_frame(mc, 1, (ws_opcode)type, data, len, MWS_Q_WHOLE);
}

static int h_send_part(mws_conn *mc, mws_msg_type type, const void *data,
                       size_t len, int last)
{
    int first;

    if (!mc || (type != MWS_TEXT && type != MWS_BINARY)
        || (len && !data)) {
        return MWS_ERR_INVALID;
    }
    pthread_mutex_lock(&mc->lock);
    first = !mc->part_open;
    if (first) {
        mc->part_open = 1;
        mc->part_type = type;
    }
    else if (mc->part_type != type) {
        pthread_mutex_unlock(&mc->lock);
        return MWS_ERR_INVALID;
    }
    pthread_mutex_unlock(&mc->lock);
    return mws_queue_frame(mc, last ? 1 : 0,
                           first ? (ws_opcode)type : WS_OP_CONT, data, len,
                           MWS_Q_PART);
}

static int h_ping(mws_conn *mc, const void *data, size_t len)
{
    if (!mc || len > WS_MAX_CONTROL_PAYLOAD || (len && !data)) {
        return MWS_ERR_INVALID;
    }
    return mws_queue_frame(mc, 1, WS_OP_PING, data, len, MWS_Q_CONTROL);
}

static int h_close(mws_conn *mc, int code, const char *reason)
{
    if (!mc || !(ws_close_code_valid((unsigned)code)
                 || code == WS_CLOSE_TRY_AGAIN_LATER)) {
        return MWS_ERR_INVALID;
    }
    if (reason && (strlen(reason) > WS_MAX_CLOSE_REASON
                   || !ws_utf8_is_valid((const uint8_t *)reason,
                                        strlen(reason)))) {
        return MWS_ERR_INVALID;
    }
    return mws_queue_close(mc, (unsigned)code, reason);
}

static void *h_get_data(mws_conn *mc)
{
    return mc ? mc->user_data : NULL;
}

static void h_set_data(mws_conn *mc, void *data)
{
    if (mc) {
        mc->user_data = data;
    }
}

static uint64_t h_id(mws_conn *mc)
{
    return mc ? mc->id : 0;
}

static size_t h_queued(mws_conn *mc)
{
    return mc ? __atomic_load_n(&mc->queued, __ATOMIC_RELAXED) : 0;
}

static mws_conn *h_retain(mws_conn *mc)
{
    return mc ? mws_conn_retain(mc) : NULL;
}

static void h_release(mws_conn *mc)
{
    if (mc) {
        mws_conn_release(mc);
    }
}

static const char *h_option(mws_conn *mc, const char *key)
{
    const char *v = NULL;

    if (!mc || !key) {
        return NULL;
    }
    pthread_mutex_lock(&mc->lock);
    if (mc->state != MWS_ST_DEAD) {
        v = apr_table_get(mc->options, key);
    }
    pthread_mutex_unlock(&mc->lock);
    return v;
}

static const char *h_subprotocol(mws_conn *mc)
{
    const char *p = NULL;

    if (!mc) {
        return NULL;
    }
    pthread_mutex_lock(&mc->lock);
    if (mc->state != MWS_ST_DEAD) {
        p = mc->subprotocol;    /* in c->pool, which lives while not dead */
    }
    pthread_mutex_unlock(&mc->lock);
    return p;
}

static mws_timer *h_timer_add(mws_conn *mc, unsigned ms, int periodic,
                              mws_timer_fn fn, void *arg)
{
    return mc ? mws_timer_add(mc, ms, periodic, fn, arg) : NULL;
}

static int h_timer_cancel(mws_conn *mc, mws_timer *t)
{
    return mc ? mws_timer_cancel(mc, t) : MWS_ERR_INVALID;
}

static void h_log(mws_conn *mc, int level, const char *fmt, ...)
{
    va_list ap;
    char msg[1024];
    const char *name = "handler";

    if (level < MWS_LOG_ERR || level > MWS_LOG_DEBUG) {
        level = MWS_LOG_ERR;
    }
    va_start(ap, fmt);
    apr_vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (mc && mc->inst) {
        name = mc->inst->name;
    }
    if (mc) {
        ap_log_error(APLOG_MARK, level, 0, ap_server_conf, MWS_LOGNO(00011)
                     "ws(%" APR_UINT64_T_FMT "): %s: %s",
                     (apr_uint64_t)mc->id, name, msg);
    }
    else {
        ap_log_error(APLOG_MARK, level, 0, ap_server_conf, MWS_LOGNO(00012)
                     "%s: %s", name, msg);
    }
}

const mws_host mws_host_table = {
    MWS_ABI_MAJOR,
    MWS_ABI_MINOR,
    sizeof(mws_host),
    h_req_header,
    h_req_path,
    h_req_query,
    h_req_remote_ip,
    h_req_user,
    h_req_subprotocol_count,
    h_req_subprotocol,
    h_req_select_subprotocol,
    h_req_set_header,
    h_req_httpd_request,
    h_send,
    h_send_part,
    h_ping,
    h_close,
    h_get_data,
    h_set_data,
    h_id,
    h_queued,
    h_retain,
    h_release,
    h_find,
    h_option,
    h_subprotocol,
    h_timer_add,
    h_timer_cancel,
    h_log,
    mws_pubsub_subscribe,
    mws_pubsub_unsubscribe,
    mws_pubsub_publish
};
