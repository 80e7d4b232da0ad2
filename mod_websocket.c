/*
 * mod_websocket.c -- the httpd entry of mod_websocket: the module record,
 * the hooks, and the opening handshake (RFC 6455 section 4).
 *
 * The protocol itself lives in core/ (no httpd there); everything between
 * httpd and the core is in glue/ (docs/design.md has the layers).
 */
#include "apr_strings.h"
#include "apr_lib.h"

#include "httpd.h"
#include "http_config.h"
#include "http_core.h"
#include "http_log.h"
#include "http_protocol.h"
#include "http_request.h"
#include "ap_provider.h"
#include "ap_mpm.h"
#include "util_filter.h"
#include "mpm_common.h"

#define MWS_MODULE_FILE
#include "mws_private.h"

#define MWS_HANDLER_NAME "websocket"
#define MWS_VERSION "0.1.0"

static int pre_config(apr_pool_t *pconf, apr_pool_t *plog, apr_pool_t *ptemp)
{
    mws_instance_pre_config(pconf);
    mws_broker_pre_config();
    mws_reassembly_limit = MWS_DEFAULT_REASSEMBLY;
    mws_pmd_max_contexts = 0;
    return mws_limits_pre_config(pconf);
}

/* ---- the opening handshake -------------------------------------------- */

static int refuse(request_rec *r, int status, const char *why)
{
    ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, r, MWS_LOGNO(00001)
                  "refusing WebSocket upgrade with %d: %s", status, why);
    return status;
}

/* Collect the offered subprotocols (one or more header lines). */
static int collect_offers(void *data, const char *key, const char *value)
{
    apr_array_header_t *offers = data;
    const char *pos = value, *tok;
    size_t len;

    while (ws_token_next(&pos, &tok, &len)) {
        APR_ARRAY_PUSH(offers, const char *) =
            apr_pstrmemdup(offers->pool, tok, len);
    }
    return 1;
}

static int copy_header(void *data, const char *key, const char *value)
{
    apr_table_add((apr_table_t *)data, key, value);
    return 1;
}

/* RFC 6455 4.2.1: is r a valid opening handshake?  OK, or the status
 * to refuse it with. */
static int check_upgrade(request_rec *r)
{
    const char *upgrade, *connection, *version, *key, *clen;

    upgrade = apr_table_get(r->headers_in, "Upgrade");
    connection = apr_table_get(r->headers_in, "Connection");
    if (!upgrade && connection && ws_token_list_has(connection, "upgrade")) {
        return refuse(r, HTTP_BAD_REQUEST, "Connection: upgrade without "
                      "an Upgrade header");
    }
    if (!upgrade || !ws_token_list_has(upgrade, "websocket")) {
        apr_table_setn(r->err_headers_out, "Upgrade", "websocket");
        apr_table_mergen(r->err_headers_out, "Connection", "Upgrade");
        return refuse(r, HTTP_UPGRADE_REQUIRED, "no Upgrade: websocket");
    }
    if (r->method_number != M_GET || r->header_only) {
        return refuse(r, HTTP_BAD_REQUEST, "method is not GET");
    }
    if (r->proto_num < HTTP_VERSION(1, 1)) {
        return refuse(r, HTTP_BAD_REQUEST, "protocol older than HTTP/1.1");
    }
    if (!connection || !ws_token_list_has(connection, "upgrade")) {
        return refuse(r, HTTP_BAD_REQUEST, "Connection lacks upgrade");
    }
    version = apr_table_get(r->headers_in, "Sec-WebSocket-Version");
    if (!version || strcmp(version, "13")) {
        apr_table_setn(r->err_headers_out, "Sec-WebSocket-Version", "13");
        return refuse(r, HTTP_UPGRADE_REQUIRED,
                      "Sec-WebSocket-Version is not 13");
    }
    key = apr_table_get(r->headers_in, "Sec-WebSocket-Key");
    if (!key || !ws_handshake_key_valid(key)) {
        return refuse(r, HTTP_BAD_REQUEST, "bad Sec-WebSocket-Key");
    }
    /* Over HTTP/1.1 a body would be read as WebSocket frames.  Over
     * HTTP/2 (RFC 8441, mod_http2's H2WebSockets), the stream stays open
     * for the frames and mod_http2 presents it as a request body. */
    clen = apr_table_get(r->headers_in, "Content-Length");
    if (!r->connection->master && ((clen && strcmp(clen, "0"))
        || apr_table_get(r->headers_in, "Transfer-Encoding"))) {
        return refuse(r, HTTP_BAD_REQUEST, "upgrade request with a body");
    }
    return OK;
}

/* The section's admission: the Origin, the connection caps, a ready
 * handler.  OK with *hold taken, or the status to refuse with. */
static int admit(request_rec *r, const mws_dir_conf *d, mws_limit_hold *hold)
{
    const char *why;
    int status;

    if ((why = mws_origin_refusal(r, d)) != NULL) {
        ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r, MWS_LOGNO(00018)
                      "WebSocket from origin %s refused by WebSocketOrigin: "
                      "%s", apr_table_get(r->headers_in, "Origin"), why);
        mws_stats_refused(HTTP_FORBIDDEN);
        return HTTP_FORBIDDEN;
    }
    memset(hold, 0, sizeof(*hold));
    if ((status = mws_limits_admit(r, d, mws_v6prefix(r->server), hold)) != OK) {
        apr_table_setn(r->err_headers_out, "Retry-After", "5");
        mws_stats_refused(status);
        return status;
    }
    if (!d->instance->ready) {
        mws_limits_release(hold);
        ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r, MWS_LOGNO(00003)
                      "handler %s (%s) failed to initialise in this process",
                      d->instance->name, d->instance->where);
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    return OK;
}

/* A refusal as the handler described it (API 1.1): its reason phrase and
 * its body instead of httpd's error page; headers it set go with it. */
static void send_refusal(request_rec *r, int status, const mws_request *req)
{
    const char *phrase = req->refuse_reason;

    if (!phrase) {
        phrase = ap_get_status_line(status);
        phrase = (strlen(phrase) > 4) ? phrase + 4 : "Refused";
    }
    r->status = status;
    r->status_line = apr_psprintf(r->pool, "%d %s", status, phrase);
    apr_table_do(copy_header, r->headers_out, r->err_headers_out, NULL);
    apr_table_clear(r->err_headers_out);
    if (req->refuse_body) {
        ap_set_content_type(r, req->refuse_ctype);
        ap_set_content_length(r, (apr_off_t)req->refuse_len);
        if (req->refuse_len) {
            ap_rwrite(req->refuse_body, (int)req->refuse_len, r);
        }
    }
    else {
        ap_set_content_type(r, "text/plain; charset=utf-8");
        ap_rprintf(r, "%s\n", phrase);
    }
}

/* The handler's on_open: 0 to accept, else the status to refuse with (the
 * connection is then gone). */
static int open_handler(request_rec *r, const mws_dir_conf *d, mws_conn *mc,
                        mws_request *req)
{
    mws_call prev;
    int status;

    memset(req, 0, sizeof(*req));
    req->r = r;
    req->mc = mc;
    req->offered = apr_array_make(r->pool, 2, sizeof(const char *));
    apr_table_do(collect_offers, req->offered, r->headers_in,
                 "Sec-WebSocket-Protocol", NULL);
    if (!d->instance->h->on_open) {
        return 0;
    }
    prev = mws_instance_enter(d->instance, "on_open");
    status = d->instance->h->on_open(mc, req, d->instance->data);
    mws_instance_leave(prev);
    if (status == 0) {
        return 0;
    }
    if (status < 400 || status > 599) {
        ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r, MWS_LOGNO(00004)
                      "handler %s: on_open returned %d, not 0 or an "
                      "HTTP status 400-599", d->instance->name, status);
        status = HTTP_INTERNAL_SERVER_ERROR;
    }
    mws_conn_abort(mc);
    if (req->refuse_reason || req->refuse_body) {
        send_refusal(r, status, req);
        refuse(r, status, "refused by the handler");
        return DONE;
    }
    return refuse(r, status, "refused by the handler");
}

/* permessage-deflate (RFC 7692), where the section compresses: the first
 * acceptable offer of the client's, in its order.  Returns the response's
 * Sec-WebSocket-Extensions value, or NULL (declined: no compression). */
static const char *negotiate_deflate(request_rec *r, mws_conn *mc)
{
    const mws_limits *l = mc->b->limits;
    const char *offers;
    ws_pmd_policy pol;
    char resp[WS_PMD_RESPONSE_MAX];

    if (l->compression == MWS_COMPRESS_OFF
        || !(offers = apr_table_get(r->headers_in,
                                    "Sec-WebSocket-Extensions"))) {
        return NULL;
    }
    pol.context_takeover = l->compression == MWS_COMPRESS_CONTEXT;
    pol.max_window_bits = l->window_bits;
    if (pol.context_takeover) {
        if (mws_pmd_context_take()) {
            mc->b->pmd_kept = 1;       /* given back when mc goes */
        }
        else {
            pol.context_takeover = 0;
            ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, r, MWS_LOGNO(00102)
                          "ws(%" APR_UINT64_T_FMT "): "
                          "WebSocketCompressionMaxContexts (%d) reached in "
                          "this process: compressed without context takeover",
                          (apr_uint64_t)mc->id, mws_pmd_max_contexts);
        }
    }
    if (!ws_pmd_negotiate(offers, &pol, &mc->b->pmd_params, resp)) {
        if (mc->b->pmd_kept) {
            mc->b->pmd_kept = 0;
            mws_pmd_context_give();
        }
        ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, r, MWS_LOGNO(00100)
                      "ws(%" APR_UINT64_T_FMT "): no acceptable "
                      "permessage-deflate offer in '%s': uncompressed",
                      (apr_uint64_t)mc->id, offers);
        return NULL;
    }
    mc->pmd = 1;
    if (mc->b->pmd_kept && mc->b->pmd_params.server_no_context_takeover
        && mc->b->pmd_params.client_no_context_takeover) {
        /* the client asked for no context either way: nothing is kept */
        mc->b->pmd_kept = 0;
        mws_pmd_context_give();
    }
    ap_log_rerror(APLOG_MARK, APLOG_TRACE1, 0, r,
                  "ws(%" APR_UINT64_T_FMT "): %s", (apr_uint64_t)mc->id,
                  resp);
    return apr_pstrdup(r->pool, resp);
}

/* The 101, then the connection's bytes are WebSocket frames. */
static void switch_protocols(request_rec *r, const mws_dir_conf *d,
                             mws_conn *mc, const mws_request *req,
                             const char *extensions)
{
    char accept[WS_ACCEPT_LEN + 1];

    ws_handshake_accept(apr_table_get(r->headers_in, "Sec-WebSocket-Key"),
                        accept);
    r->status = HTTP_SWITCHING_PROTOCOLS;
    r->status_line = ap_get_status_line(HTTP_SWITCHING_PROTOCOLS);
    apr_table_setn(r->headers_out, "Upgrade", "websocket");
    apr_table_setn(r->headers_out, "Connection", "Upgrade");
    apr_table_setn(r->headers_out, "Sec-WebSocket-Accept",
                   apr_pstrdup(r->pool, accept));
    if (req->chosen) {
        apr_table_setn(r->headers_out, "Sec-WebSocket-Protocol",
                       req->chosen);
    }
    if (extensions) {
        apr_table_setn(r->headers_out, "Sec-WebSocket-Extensions",
                       extensions);
    }
    /* headers the handler set go out with the 101 */
    apr_table_do(copy_header, r->headers_out, r->err_headers_out, NULL);
    apr_table_clear(r->err_headers_out);
    mws_conn_accept(mc, d->driver != MWS_DRIVER_BLOCKING);
    ap_send_interim_response(r, 1);

    /* From here the bytes on the connection are WebSocket frames: the
     * request's filters must not read a body or write a response. */
    r->output_filters = r->proto_output_filters = r->connection->output_filters;
    r->input_filters = r->proto_input_filters = r->connection->input_filters;
    r->connection->keepalive = AP_CONN_CLOSE;
    ap_remove_input_filter_byhandle(r->connection->input_filters,
                                    "reqtimeout");
}

static int ws_handler(request_rec *r)
{
    mws_dir_conf *d;
    mws_request req;
    mws_limit_hold hold;
    mws_limits limits;
    mws_conn *mc;
    const char *extensions;
    int status;

    if (!r->handler || strcmp(r->handler, MWS_HANDLER_NAME)) {
        return DECLINED;
    }
    d = ap_get_module_config(r->per_dir_config, &websocket_module);
    if (!d->instance) {
        ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r, MWS_LOGNO(00002)
                      "SetHandler websocket without a WebSocketHandler "
                      "for %s", r->uri);
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    if ((status = check_upgrade(r)) != OK
        || (status = admit(r, d, &hold)) != OK) {
        return status;
    }
    mws_limits_resolve(d, &limits);
    mc = mws_conn_create(r, d->instance, d, &limits);
    if (!mc) {
        mws_limits_release(&hold);
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    mc->b->hold = hold;            /* given back when the connection ends */
    mws_registry_add(mc);
    /* before on_open, so that compressed() tells the handler */
    extensions = negotiate_deflate(r, mc);
    if ((status = open_handler(r, d, mc, &req)) != 0) {
        return status;          /* DONE: the handler's refusal is sent */
    }
    mc->b->opened = 1;
    mws_accesslog_save(mc, r);
    switch_protocols(r, d, mc, &req, extensions);
    mws_conn_start(mc, d->driver != MWS_DRIVER_BLOCKING);
    return OK;
}

static void child_init(apr_pool_t *pchild, server_rec *s)
{
    mws_registry_init(pchild);
    mws_pmd_child_init(pchild);
    mws_driver_child_init(pchild, s);
    mws_limits_child_init(pchild, s);
    mws_stats_child_init(pchild, s, mws_instances);
    mws_channels_child_init(pchild, s);
    mws_instance_child_init(pchild, s);
    mws_channels_start(pchild, s, mws_instances);
}

/* Graceful stop or restart of this child (worker, event; prefork runs it
 * from its exit path): every WebSocket gets close 1001, so the child can
 * exit instead of waiting for clients that may stay for hours. */
static void child_stopping(apr_pool_t *pchild, int graceful)
{
    mws_registry_going_away(graceful);
}

static int post_config(apr_pool_t *pconf, apr_pool_t *plog,
                       apr_pool_t *ptemp, server_rec *s)
{
    int async = 0, waitio = 0, rv;

    if (ap_state_query(AP_SQ_MAIN_STATE) == AP_SQ_MS_CREATE_PRE_CONFIG) {
        return OK;
    }
    ap_mpm_query(AP_MPMQ_IS_ASYNC, &async);
#ifdef AP_MPMQ_CAN_WAITIO
    ap_mpm_query(AP_MPMQ_CAN_WAITIO, &waitio);
#endif
    ap_log_error(APLOG_MARK, APLOG_INFO, 0, s, MWS_LOGNO(00021)
                 "mod_websocket %s: %s driver (MPM %s)", MWS_VERSION,
                 (async && waitio) ? "parked (idle connections hold no "
                                     "thread)"
                                   : "blocking (a thread per connection)",
                 ap_show_mpm());
    if ((rv = mws_limits_post_config(pconf, s)) != OK
        || (rv = mws_instance_post_config(pconf, s)) != OK
        || (rv = mws_stats_post_config(pconf, s)) != OK) {
        return rv;
    }
    if (!mws_instances->nelts) {
        return OK;              /* no handler: nobody publishes */
    }
    if ((rv = mws_bus_post_config(pconf, s)) != OK) {
        return rv;
    }
    return mws_broker_post_config(pconf, s);
}

/* Also for httpd -t: what would make the start fail, without changing
 * anything (a handler's check_options). */
static int check_config(apr_pool_t *pconf, apr_pool_t *plog,
                        apr_pool_t *ptemp, server_rec *s)
{
    return mws_instance_check_config(s) != OK ? !OK : OK;
}

static void register_hooks(apr_pool_t *p)
{
    ap_hook_pre_config(pre_config, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_check_config(check_config, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_post_config(post_config, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_child_init(child_init, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_child_stopping(child_stopping, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_handler(ws_handler, NULL, NULL, APR_HOOK_MIDDLE);
    mws_driver_register_hooks();
    mws_status_register_hooks(p);
}

AP_DECLARE_MODULE(websocket) = {
    STANDARD20_MODULE_STUFF,
    mws_config_create_dir,
    mws_config_merge_dir,
    mws_config_create_srv,
    mws_config_merge_srv,
    mws_cmds,
    register_hooks
#if defined(AP_MODULE_HAS_FLAGS)
    , AP_MODULE_FLAG_ALWAYS_MERGE
#endif
};
