/*
 * mws_accesslog.c -- one access-log line when a WebSocket ends.
 *
 * httpd logs a request when its pool goes (the EOR bucket): for a parked
 * WebSocket that is right after the 101, long before anything worth
 * logging happened.  Keeping the request alive until the end would keep its
 * pool (several KiB) on every idle connection, so the handshake saves what
 * a log line needs in one small block (the request line, user, client,
 * virtual host, a few request headers), and when the WebSocket ends a
 * request record is rebuilt from it in a short-lived pool and handed to
 * httpd's log_transaction hook: mod_log_config writes it with the server's
 * CustomLog/LogFormat (piped logs, rotatelogs and all).  Its notes carry
 * the WebSocket's figures (%{websocket-...}n, docs/operations.md); the
 * environment variable websocket-close is set on it and websocket-upgrade
 * on the 101's own line, so `CustomLog ... env=...` can pick either.
 */
#include <stdlib.h>
#include <string.h>

#include "apr_strings.h"
#include "httpd.h"
#include "http_config.h"
#include "http_core.h"
#include "http_log.h"
#include "http_protocol.h"
#include "http_request.h"

#include "mws_private.h"

/* request headers kept for the line at the end (the combined format's,
 * and what identifies a WebSocket client) */
static const char *const kept_headers[] = {
    "Host", "User-Agent", "Referer", "Origin", "X-Forwarded-For", NULL
};
#define NKEPT (sizeof(kept_headers) / sizeof(kept_headers[0]) - 1)

/* the strings of a request record, in this order in the block, each
 * NUL-terminated ("" for none); method, URI and protocol come from the
 * request line when the line is written */
enum {
    S_THE_REQUEST, S_USER, S_AUTH_TYPE, S_HOSTNAME, S_UA_IP, S_LOG_ID,
    S_HEADERS, NSTR = S_HEADERS + NKEPT
};

struct mws_logrec {
    server_rec *server;
    apr_time_t request_time;
    int method_number, proto_num;
    /* NSTR strings follow */
};

/* Save what the line at the end needs, in c->pool (a few hundred bytes
 * that live as long as the connection, from the page its pool already
 * touches where there is room). */
void mws_accesslog_save(mws_conn *mc, request_rec *r)
{
    const char *v[NSTR];
    size_t len[NSTR], total = sizeof(struct mws_logrec);
    struct mws_logrec *rec;
    char *p;
    int i;

    v[S_THE_REQUEST] = r->the_request;
    v[S_USER] = r->user;
    v[S_AUTH_TYPE] = r->ap_auth_type;
    v[S_HOSTNAME] = r->hostname;
    v[S_UA_IP] = r->useragent_ip;
    v[S_LOG_ID] = r->log_id;
    for (i = 0; i < (int)NKEPT; ++i) {
        v[S_HEADERS + i] = apr_table_get(r->headers_in, kept_headers[i]);
    }
    for (i = 0; i < NSTR; ++i) {
        len[i] = (v[i] ? strlen(v[i]) : 0) + 1;
        total += len[i];
    }
    rec = apr_palloc(r->connection->pool, total);
    rec->server = r->server;
    rec->request_time = r->request_time;
    rec->method_number = r->method_number;
    rec->proto_num = r->proto_num;
    p = (char *)(rec + 1);
    for (i = 0; i < NSTR; ++i) {
        if (v[i]) {
            memcpy(p, v[i], len[i]);
        }
        else {
            *p = '\0';
        }
        p += len[i];
    }
    mc->b->logrec = rec;
    apr_table_setn(r->subprocess_env, "websocket-upgrade", "1");
}

void mws_accesslog_free(mws_conn *mc)
{
    mc->b->logrec = NULL;          /* in c->pool: goes with the connection */
}

static const char *const by_name[] = {
    "-", "client", "server", "timeout", "abort"
};

static char *num(apr_pool_t *p, apr_uint64_t v)
{
    return apr_psprintf(p, "%" APR_UINT64_T_FMT, v);
}

/* The WebSocket of mc ended with code on connection c: its line. */
void mws_accesslog_write(mws_conn *mc, conn_rec *c, int code)
{
    struct mws_logrec *rec = mc->b->logrec;
    apr_pool_t *p;
    request_rec *r;
    apr_time_t now = apr_time_now();
    const char *str[NSTR], *sp;
    char *line, *q;
    int i, by = mc->closed_by;

    if (!rec) {
        return;
    }
    if (apr_pool_create(&p, c->pool) != APR_SUCCESS) {
        mws_accesslog_free(mc);
        return;
    }
    apr_pool_tag(p, "mws_accesslog");
    for (i = 0, sp = (const char *)(rec + 1); i < NSTR; ++i) {
        str[i] = *sp ? sp : NULL;
        sp += strlen(sp) + 1;
    }
    r = apr_pcalloc(p, sizeof(*r));
    r->pool = p;
    r->connection = c;
    r->server = rec->server;
    r->log = c->log ? c->log : &rec->server->log;
    r->request_time = rec->request_time;
    r->method_number = rec->method_number;
    r->proto_num = rec->proto_num;
    /* "GET /path?args HTTP/1.1" */
    r->the_request = apr_pstrdup(p, str[S_THE_REQUEST] ? str[S_THE_REQUEST]
                                                        : "");
    line = apr_pstrdup(p, r->the_request);
    r->method = ap_getword_white(p, (const char **)&line);
    r->unparsed_uri = ap_getword_white(p, (const char **)&line);
    r->protocol = ap_getword_white(p, (const char **)&line);
    r->uri = apr_pstrdup(p, r->unparsed_uri);
    if ((q = strchr(r->uri, '?')) != NULL) {
        *q = '\0';
        r->args = q + 1;
    }
    r->user = (char *)str[S_USER];
    r->ap_auth_type = (char *)str[S_AUTH_TYPE];
    r->hostname = str[S_HOSTNAME];
    r->useragent_ip = (char *)(str[S_UA_IP] ? str[S_UA_IP] : c->client_ip);
    r->useragent_addr = c->client_addr;
    r->log_id = str[S_LOG_ID];
    r->handler = "websocket";
    r->status = HTTP_SWITCHING_PROTOCOLS;
    r->status_line = ap_get_status_line(HTTP_SWITCHING_PROTOCOLS);
    r->per_dir_config = rec->server->lookup_defaults;
    r->request_config = ap_create_request_config(p);
    r->headers_in = apr_table_make(p, NKEPT);
    r->headers_out = apr_table_make(p, 1);
    r->err_headers_out = apr_table_make(p, 1);
    r->trailers_in = apr_table_make(p, 1);
    r->trailers_out = apr_table_make(p, 1);
    r->subprocess_env = apr_table_make(p, 2);
    r->notes = apr_table_make(p, 12);
    r->allowed_methods = ap_make_method_list(p, 1);
    for (i = 0; i < (int)NKEPT; ++i) {
        if (str[S_HEADERS + i]) {
            apr_table_setn(r->headers_in, kept_headers[i],
                           str[S_HEADERS + i]);
        }
    }
    apr_table_setn(r->subprocess_env, "websocket-close", "1");
    apr_table_setn(r->notes, "websocket-handler", mc->inst->name);
    apr_table_setn(r->notes, "websocket-subprotocol",
                   mc->b->subprotocol ? mc->b->subprotocol : "-");
    apr_table_setn(r->notes, "websocket-duration-ms",
                   num(p, (apr_uint64_t)apr_time_as_msec(
                       now > rec->request_time ? now - rec->request_time : 0)));
    apr_table_setn(r->notes, "websocket-bytes-in", num(p, mc->b->bytes_in));
    apr_table_setn(r->notes, "websocket-bytes-out",
                   num(p, __atomic_load_n(&mc->b->bytes_out, __ATOMIC_RELAXED)));
    apr_table_setn(r->notes, "websocket-msgs-in", num(p, mc->b->msgs_in));
    apr_table_setn(r->notes, "websocket-msgs-out",
                   num(p, __atomic_load_n(&mc->b->msgs_out, __ATOMIC_RELAXED)));
    apr_table_setn(r->notes, "websocket-close", apr_itoa(p, code));
    apr_table_setn(r->notes, "websocket-closed-by",
                   by_name[by >= 0 && by <= MWS_BY_ABORT ? by : 0]);
    ap_run_log_transaction(r);
    apr_pool_destroy(p);
    mws_accesslog_free(mc);
}
