/*
 * mws_origin.c -- WebSocketOrigin: may a page of the request's Origin open
 * this WebSocket?
 */
#include <stdlib.h>
#include <string.h>

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
#include "http_connection.h"

#include "mws_private.h"

/* An IPv6 literal of an origin (without the brackets) as 16 bytes. */
int mws_origin_ipv6(const char *host, size_t len, unsigned char out[16])
{
    char buf[WS_ORIGIN_MAX_IPV6 + 1];

    if (len > WS_ORIGIN_MAX_IPV6) {
        return 0;
    }
    memcpy(buf, host, len);
    buf[len] = '\0';
    return mws_addr16_parse(buf, out) == 6;
}


/* Does the listed origin pat match the request's origin o (a6: its IPv6
 * address when o->ipv6)?  Scheme and port must be equal (a default port
 * given or not is the same); a host written "*.example.com" matches any
 * subdomain, not example.com itself. */
static int origin_matches(const mws_origin_pat *pat, const ws_origin *o,
                          const unsigned char *a6)
{
    size_t n;

    if (pat->https != o->https || pat->port != o->port
        || pat->ipv6 != o->ipv6) {
        return 0;
    }
    if (pat->ipv6) {
        return !memcmp(pat->addr6, a6, 16);
    }
    n = strlen(pat->host);
    if (!pat->wildcard) {
        return o->host_len == n && !strncasecmp(o->host, pat->host, n);
    }
    /* the parser allows no empty label: something precedes the dot */
    return o->host_len > n + 1 && o->host[o->host_len - n - 1] == '.'
           && !strncasecmp(o->host + o->host_len - n, pat->host, n);
}

/* Is name (a ServerName or ServerAlias) the origin's host? */
static int host_is_name(const char *name, const char *host,
                        const unsigned char *a6)
{
    unsigned char n6[16];

    if (!name || !*name) {
        return 0;
    }
    if (a6) {                   /* an IPv6 literal: compare the addresses */
        size_t len = strlen(name);
        if (name[0] == '[' && name[len - 1] == ']') {
            return mws_origin_ipv6(name + 1, len - 2, n6)
                   && !memcmp(n6, a6, 16);
        }
        return mws_addr16_parse(name, n6) == 6 && !memcmp(n6, a6, 16);
    }
    return !strcasecmp(name, host);
}

/*
 * Is o the origin of this server, as the browser would write it?  Why not,
 * for the log; NULL when it is.  Nothing here comes from the client but the
 * Origin: the scheme is the connection's (or ServerName's), the host must be
 * a name of the virtual host that answered, the port the one the
 * connection arrived on or ServerName's.  The Host header is the client's
 * word, and a page reached through DNS rebinding controls it.
 */
static const char *same_origin_refusal(request_rec *r, const ws_origin *o,
                                       const unsigned char *a6)
{
    server_rec *s = r->server;
    conn_rec *c = r->connection;
    const char *scheme = ap_http_scheme(r);
    unsigned char local[16], lit[16];
    int have_local, i;
    unsigned name_port;
    char *host;

    if (!scheme || o->https != !strcasecmp(scheme, "https")) {
        return "the scheme is not the server's";
    }
    /* ServerName's port; ServerName https://name means 443 */
    name_port = s->port;
    if (!name_port && s->server_scheme) {
        name_port = strcasecmp(s->server_scheme, "https") ? 80 : 443;
    }
    if (o->port != name_port
        && !(c->local_addr && o->port == c->local_addr->port)) {
        return "the port is not the server's";
    }
    have_local = c->local_addr && mws_addr16_sockaddr(c->local_addr, local);
    host = apr_pstrmemdup(r->pool, o->host, o->host_len);
    /* the address the connection arrived on, written as a literal: a
     * rebinding page always has a name */
    if (have_local && (a6 ? memcmp(a6, local, 16) == 0
                          : (mws_addr16_parse(host, lit) == 4
                             && !memcmp(lit, local, 16)))) {
        return NULL;
    }
    if (!a6 && have_local && mws_addr16_loopback(local)
        && !strcasecmp(host, "localhost")) {
        return NULL;
    }
    if (host_is_name(s->server_hostname, host, a6)) {
        return NULL;
    }
    for (i = 0; s->names && i < s->names->nelts; ++i) {
        if (host_is_name(APR_ARRAY_IDX(s->names, i, const char *), host,
                         a6)) {
            return NULL;
        }
    }
    for (i = 0; !a6 && s->wild_names && i < s->wild_names->nelts; ++i) {
        if (!ap_strcasecmp_match(host, APR_ARRAY_IDX(s->wild_names, i,
                                                     const char *))) {
            return NULL;
        }
    }
    return "the host is not a name of this server";
}

/* May a page from the request's Origin open this WebSocket?  NULL if so,
 * else why not. */
const char *mws_origin_refusal(request_rec *r, const mws_dir_conf *d)
{
    const char *origin = apr_table_get(r->headers_in, "Origin");
    unsigned char a6[16];
    ws_origin o;
    int i;

    if (!origin || d->origin_mode == MWS_ORIGIN_ANY) {
        return NULL;    /* not a browser, or the admin allows every site */
    }
    if (ws_origin_parse(origin, strlen(origin), 0, &o) != 0
        || (o.ipv6 && !mws_origin_ipv6(o.host, o.host_len, a6))) {
        return "not an origin (scheme://host[:port])";
    }
    if (d->origin_mode == MWS_ORIGIN_LIST) {
        for (i = 0; i < d->origins->nelts; ++i) {
            if (origin_matches(&APR_ARRAY_IDX(d->origins, i, mws_origin_pat),
                               &o, a6)) {
                return NULL;
            }
        }
    }
    return same_origin_refusal(r, &o, o.ipv6 ? a6 : NULL);
}
