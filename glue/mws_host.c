/*
 * mws_host.c -- the services mod_websocket offers handlers: the mws_host
 * table of include/mod_websocket.h.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "apr_strings.h"
#include "httpd.h"
#include "http_core.h"
#include "http_log.h"
#include "http_main.h"
#include "http_protocol.h"
#include "http_connection.h"
#include "util_filter.h"
#include "ap_mpm.h"
#include "mpm_common.h"

#include "mws_private.h"


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
            req->mc->b->subprotocol = apr_pstrdup(req->r->connection->pool, o);
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

/* ---- 1.1: the refusal a handler describes in on_open --------------------------------------------------------- */

static int printable(const char *s, size_t max)
{
    size_t n = 0;

    for (; *s; ++s, ++n) {
        if (n >= max || *s < 0x20 || *s > 0x7e) {
            return 0;
        }
    }
    return 1;
}

static int h_req_refuse_reason(mws_request *req, const char *reason)
{
    if (!req || !reason || !*reason || !printable(reason, 64)) {
        return MWS_ERR_INVALID;
    }
    req->refuse_reason = apr_pstrdup(req->r->pool, reason);
    return MWS_OK;
}

static int h_req_refuse_body(mws_request *req, const char *content_type,
                    const void *body, size_t len)
{
    if (!req || (len && !body) || len > MWS_REFUSE_BODY_MAX
        || (content_type && (!*content_type
                             || !printable(content_type, 128)))) {
        return MWS_ERR_INVALID;
    }
    req->refuse_ctype = content_type
                        ? apr_pstrdup(req->r->pool, content_type)
                        : "text/plain; charset=utf-8";
    req->refuse_body = apr_pmemdup(req->r->pool, body ? body : "", len);
    req->refuse_len = len;
    return MWS_OK;
}

/* ---- a connection ---------------------------------------------------- */

static int h_send(mws_conn *mc, mws_msg_type type, const void *data,
                  size_t len)
{
    if (!mc || (type != MWS_TEXT && type != MWS_BINARY)
        || (len && !data)) {
        return MWS_ERR_INVALID;
    }
    return mws_queue_message(mc, type, data, len, 0);
}

static int h_send_part(mws_conn *mc, mws_msg_type type, const void *data,
                       size_t len, int last)
{
    if (!mc || (type != MWS_TEXT && type != MWS_BINARY)
        || (len && !data)) {
        return MWS_ERR_INVALID;
    }
    return mws_queue_part(mc, type, data, len, last, 0);
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
        /* as a table of them would: the last line of a key wins, and
         * keys are not case-sensitive */
        int i = mc->b->noptions;

        while (i-- > 0) {
            if (!strcasecmp(mc->b->options[i].key, key)) {
                v = mc->b->options[i].value;
                break;
            }
        }
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
        p = mc->b->subprotocol;    /* in c->pool, which lives while not dead */
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

/* The header declares log() printf-like and gcc checks its arguments as
 * printf's: C99's vsnprintf formats them (APR's apr_vsnprintf knows no
 * %zu, %llu or %jd, and a conversion it skips shifts every later
 * argument).  Without a connection, the line names the instance whose
 * callback runs (init, shutdown, a timer) and its configuration line. */
static void h_log(mws_conn *mc, int level, const char *fmt, ...)
{
    va_list ap;
    char msg[1024];
    const mws_instance *inst = mc ? mc->inst : mws_instance_current();

    if (level < MWS_LOG_ERR || level > MWS_LOG_DEBUG) {
        level = MWS_LOG_ERR;
    }
    msg[0] = '\0';
    if (fmt) {
        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
    }
    if (mc) {
        ap_log_error(APLOG_MARK, level, 0, ap_server_conf, MWS_LOGNO(00011)
                     "ws(%" APR_UINT64_T_FMT "): %s: %s",
                     (apr_uint64_t)mc->id, inst ? inst->name : "handler",
                     msg);
    }
    else if (inst) {
        ap_log_error(APLOG_MARK, level, 0, ap_server_conf, MWS_LOGNO(00012)
                     "%s (%s): %s", inst->name, inst->where, msg);
    }
    else {
        ap_log_error(APLOG_MARK, level, 0, ap_server_conf, MWS_LOGNO(00080)
                     "a handler's thread: %s", msg);
    }
}

/* ---- 1.1: the line, its instance ------------------------------------ */

/* An mws_line is the module's mws_instance (one WebSocketHandler line). */
static mws_line *h_line(mws_conn *mc)
{
    return (mws_line *)(mc ? mc->inst : mws_instance_current());
}

static void *h_line_instance(mws_line *line)
{
    const mws_instance *inst = (const mws_instance *)line;

    return (inst && inst->ready) ? inst->data : NULL;
}

static void *h_instance(mws_conn *mc)
{
    return mc ? h_line_instance((mws_line *)mc->inst) : NULL;
}

static int h_line_publish(mws_line *line, const char *channel,
                          mws_msg_type type, const void *data, size_t len)
{
    if (!line) {
        return MWS_ERR_INVALID;
    }
    return mws_channels_publish_line((mws_instance *)line, channel, type,
                                     data, len);
}

static int h_send_flags(mws_conn *mc, mws_msg_type type, const void *data,
                        size_t len, unsigned flags)
{
    if (!mc || (flags & ~MWS_SEND_NO_COMPRESS)
        || (type != MWS_TEXT && type != MWS_BINARY) || (len && !data)) {
        return MWS_ERR_INVALID;
    }
    return mws_queue_message(mc, type, data, len,
                             (flags & MWS_SEND_NO_COMPRESS) != 0);
}

static int h_compressed(mws_conn *mc)
{
    int dead;

    if (!mc) {
        return MWS_ERR_INVALID;
    }
    pthread_mutex_lock(&mc->lock);
    dead = mc->state == MWS_ST_DEAD;
    pthread_mutex_unlock(&mc->lock);
    return dead ? MWS_ERR_CLOSED : mc->pmd;
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
    mws_registry_find,
    h_option,
    h_subprotocol,
    h_timer_add,
    h_timer_cancel,
    h_log,
    mws_channels_subscribe,
    mws_channels_unsubscribe,
    mws_channels_publish,
    /* 1.1 */
    h_instance,
    h_line,
    h_line_instance,
    mws_linemem_create,
    mws_linemem_mem,
    mws_linemem_lock,
    mws_linemem_unlock,
    h_line_publish,
    h_req_refuse_reason,
    h_req_refuse_body,
    h_send_flags,
    h_compressed
};
