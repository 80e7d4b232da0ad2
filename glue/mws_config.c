/*
 * mws_config.c -- the configuration: per-directory and per-server records,
 * their merge, the directives, and the limits a connection gets.
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


/* ---- configuration ---------------------------------------------------- */

void *mws_config_create_dir(apr_pool_t *p, char *dir)
{
    mws_dir_conf *d = apr_pcalloc(p, sizeof(*d));

    d->instance = NULL;
    d->max_message = d->max_frame = d->max_queued = MWS_UNSET;
    d->idle_timeout = d->ping_interval = d->close_timeout = MWS_UNSET;
    d->origin_mode = MWS_ORIGIN_UNSET;
    d->origins = NULL;
    d->max_conns = d->max_conns_addr = MWS_UNSET;
    d->max_conns_index = -1;
    d->options = apr_array_make(p, 2, sizeof(mws_option));
    d->option_where = apr_array_make(p, 2, sizeof(const char *));
    d->compression = d->window_bits = d->mem_level = MWS_UNSET;
    d->compress_min = MWS_UNSET;
    return d;
}

#define MERGE_VAL(f) d->f = (add->f != MWS_UNSET) ? add->f : base->f

/* Server-level settings (WebSocketIPv6Prefix). */
typedef struct {
    int v6prefix;                /* MWS_UNSET: unset                       */
} mws_srv_conf;

void *mws_config_create_srv(apr_pool_t *p, server_rec *s)
{
    mws_srv_conf *sc = apr_pcalloc(p, sizeof(*sc));

    sc->v6prefix = MWS_UNSET;
    return sc;
}

void *mws_config_merge_srv(apr_pool_t *p, void *basev, void *addv)
{
    mws_srv_conf *base = basev, *add = addv;
    mws_srv_conf *d = apr_pcalloc(p, sizeof(*d));

    MERGE_VAL(v6prefix);
    return d;
}

int mws_v6prefix(const server_rec *s)
{
    const mws_srv_conf *sc = ap_get_module_config(s->module_config,
                                                  &websocket_module);

    return (sc && sc->v6prefix != MWS_UNSET) ? sc->v6prefix
                                             : MWS_DEFAULT_V6PREFIX;
}

void *mws_config_merge_dir(apr_pool_t *p, void *basev, void *addv)
{
    mws_dir_conf *base = basev, *add = addv;
    mws_dir_conf *d = apr_pcalloc(p, sizeof(*d));

    d->instance = add->instance ? add->instance : base->instance;
    MERGE_VAL(max_message);
    MERGE_VAL(max_frame);
    MERGE_VAL(max_queued);
    MERGE_VAL(idle_timeout);
    MERGE_VAL(ping_interval);
    MERGE_VAL(close_timeout);
    d->driver = add->driver ? add->driver : base->driver;
    if (add->max_conns != MWS_UNSET) {
        d->max_conns = add->max_conns;
        d->max_conns_index = add->max_conns_index;
    }
    else {
        d->max_conns = base->max_conns;
        d->max_conns_index = base->max_conns_index;
    }
    MERGE_VAL(max_conns_addr);
    MERGE_VAL(compression);
    MERGE_VAL(window_bits);
    MERGE_VAL(mem_level);
    MERGE_VAL(compress_min);
    if (add->origin_mode != MWS_ORIGIN_UNSET) {
        d->origin_mode = add->origin_mode;
        d->origins = add->origins;
    }
    else {
        d->origin_mode = base->origin_mode;
        d->origins = base->origins;
    }
    /* inner options come last, so a lookup from the end sees them first */
    d->options = apr_array_append(p, base->options, add->options);
    d->option_where = apr_array_append(p, base->option_where,
                                       add->option_where);
    return d;
}

void mws_limits_resolve(const mws_dir_conf *d, mws_limits *l)
{
    l->max_message = d->max_message == MWS_UNSET ? MWS_DEFAULT_MAX_MESSAGE
                                                 : d->max_message;
    l->max_frame = d->max_frame == MWS_UNSET ? 0 : d->max_frame;
    l->max_queued = d->max_queued == MWS_UNSET ? MWS_DEFAULT_MAX_QUEUED
                                               : d->max_queued;
    l->idle_timeout = d->idle_timeout == MWS_UNSET ? 0 : d->idle_timeout;
    l->ping_interval = d->ping_interval == MWS_UNSET ? 0 : d->ping_interval;
    l->close_timeout = d->close_timeout == MWS_UNSET
                       ? MWS_DEFAULT_CLOSE_TIMEOUT : d->close_timeout;
    l->read_timeout = 0;        /* the blocking driver sets httpd's Timeout */
    l->compression = d->compression == MWS_UNSET ? MWS_COMPRESS_OFF
                                                 : d->compression;
    l->window_bits = d->window_bits != MWS_UNSET ? (unsigned)d->window_bits
                     : l->compression == MWS_COMPRESS_CONTEXT
                       ? MWS_DEFAULT_CTX_WBITS : MWS_DEFAULT_WBITS;
    l->mem_level = d->mem_level != MWS_UNSET ? (unsigned)d->mem_level
                   : l->compression == MWS_COMPRESS_CONTEXT
                     ? MWS_DEFAULT_CTX_MEMLEVEL : MWS_DEFAULT_MEMLEVEL;
    l->compress_min = d->compress_min == MWS_UNSET ? MWS_DEFAULT_COMPRESS_MIN
                                                   : (apr_size_t)d->compress_min;
}

static const char *cmd_handler(cmd_parms *cmd, void *dconf, const char *arg,
                               const char *symbol)
{
    mws_dir_conf *d = dconf;
    const mws_handler *h = NULL;
    const char *err;
    mws_instance *inst;

    if ((err = ap_check_cmd_context(cmd, NOT_IN_HTACCESS)) != NULL) {
        return err;
    }
    err = mws_instance_load(cmd, arg, symbol ? symbol : MWS_HANDLER_ENTRY_SYMBOL,
                       &h);
    if (err) {
        return err;
    }
    inst = apr_pcalloc(cmd->pool, sizeof(*inst));
    inst->h = h;
    inst->name = (h->name && *h->name) ? h->name : arg;
    inst->where = apr_psprintf(cmd->pool, "%s:%d",
                               cmd->directive->filename,
                               cmd->directive->line_num);
    inst->dconf = d;
    mws_instance_scope(cmd, inst);
    d->instance = inst;
    APR_ARRAY_PUSH(mws_instances, mws_instance *) = inst;
    return NULL;
}

/* A size in bytes, with an optional K, M or G suffix (powers of 1024). */
static const char *parse_size(cmd_parms *cmd, const char *arg,
                              apr_off_t *out)
{
    char *end;
    apr_int64_t v = apr_strtoi64(arg, &end, 10);

    if (end != arg && *end && !end[1]) {
        switch (apr_toupper(*end)) {
        case 'K': v *= 1024; ++end; break;
        case 'M': v *= 1024 * 1024; ++end; break;
        case 'G': v *= 1024 * 1024 * 1024; ++end; break;
        }
    }
    if (end == arg || *end || v < 1 || v > APR_INT64_C(1) << 50) {
        return apr_psprintf(cmd->pool, "%s: '%s' is not a positive size in "
                            "bytes (an optional K, M or G suffix is allowed)",
                            cmd->cmd->name, arg);
    }
    *out = (apr_off_t)v;
    return NULL;
}

/* A duration in seconds ("0" turns the feature off where allowed), or
 * milliseconds with an "ms" suffix. */
static const char *parse_time(cmd_parms *cmd, const char *arg, int zero_ok,
                              apr_interval_time_t *out)
{
    char *end;
    apr_int64_t v = apr_strtoi64(arg, &end, 10);
    int ms = (end != arg && !strcasecmp(end, "ms"));

    if (end == arg || (*end && !ms) || v < 0 || (!zero_ok && v == 0)
        || v > (ms ? APR_INT64_C(86400000) : APR_INT64_C(86400))) {
        return apr_psprintf(cmd->pool, "%s: '%s' is not a number of seconds "
                            "(or milliseconds with 'ms') from %d to 86400",
                            cmd->cmd->name, arg, zero_ok ? 0 : 1);
    }
    *out = ms ? apr_time_from_msec(v) : apr_time_from_sec(v);
    return NULL;
}

static const char *cmd_size(cmd_parms *cmd, void *dconf, const char *arg)
{
    mws_dir_conf *d = dconf;
    apr_off_t *field = (apr_off_t *)((char *)d + (apr_size_t)cmd->info);
    const char *err = ap_check_cmd_context(cmd, NOT_IN_HTACCESS);

    if (err) {
        return err;
    }
    return parse_size(cmd, arg, field);
}

static const char *cmd_time(cmd_parms *cmd, void *dconf, const char *arg)
{
    mws_dir_conf *d = dconf;
    apr_size_t off = (apr_size_t)cmd->info;
    apr_interval_time_t *field = (apr_interval_time_t *)((char *)d + off);
    const char *err = ap_check_cmd_context(cmd, NOT_IN_HTACCESS);

    if (err) {
        return err;
    }
    return parse_time(cmd, arg, off != APR_OFFSETOF(mws_dir_conf,
                                                    close_timeout), field);
}

/* WebSocketMaxReassemblyMemory: one value for the whole server. */
static const char *cmd_reassembly(cmd_parms *cmd, void *dconf,
                                  const char *arg)
{
    const char *err = ap_check_cmd_context(cmd, NOT_IN_HTACCESS);
    apr_off_t v;

    if (err || (err = ap_check_cmd_context(cmd, GLOBAL_ONLY)) != NULL
        || (err = parse_size(cmd, arg, &v)) != NULL) {
        return err;
    }
    mws_reassembly_limit = (apr_size_t)v;
    return NULL;
}

static const char *cmd_max_conns(cmd_parms *cmd, void *dconf,
                                 const char *arg)
{
    mws_dir_conf *d = dconf;
    char *end;
    apr_int64_t v = apr_strtoi64(arg, &end, 10);
    const char *err = ap_check_cmd_context(cmd, NOT_IN_HTACCESS);

    if (err) {
        return err;
    }
    if (!cmd->info && !strcasecmp(arg, "auto")) {
        d->max_conns = MWS_MAXCONN_AUTO;   /* the server's capacity */
        d->max_conns_index = -1;
        return NULL;
    }
    if (end == arg || *end || v < 0 || v > 10000000) {
        return apr_psprintf(cmd->pool, "%s: '%s' is not a number of "
                            "connections (0 for no limit%s)", cmd->cmd->name,
                            arg, cmd->info ? "" : ", auto for what the MPM "
                            "can hold");
    }
    if (cmd->info) {            /* per client address */
        d->max_conns_addr = (int)v;
        if (v > 0) {
            mws_limits_addr_cap_used();
        }
    }
    else {
        d->max_conns = (int)v;
        /* every section that sets it counts its own connections */
        d->max_conns_index = mws_limits_section_index();
    }
    return NULL;
}

/* WebSocketIPv6Prefix bits: IPv6 clients are counted per this prefix */
static const char *cmd_v6prefix(cmd_parms *cmd, void *dconf, const char *arg)
{
    mws_srv_conf *sc = ap_get_module_config(cmd->server->module_config,
                                            &websocket_module);
    const char *err = ap_check_cmd_context(cmd, NOT_IN_HTACCESS);
    char *end;
    apr_int64_t v;

    if (err) {
        return err;
    }
    v = apr_strtoi64(arg, &end, 10);
    if (end == arg || *end || v < 1 || v > 128) {
        return apr_psprintf(cmd->pool, "WebSocketIPv6Prefix: '%s' is not a "
                            "prefix length from 1 to 128", arg);
    }
    sc->v6prefix = (int)v;
    return NULL;
}

static const char *cmd_driver(cmd_parms *cmd, void *dconf, const char *arg)
{
    mws_dir_conf *d = dconf;
    const char *err = ap_check_cmd_context(cmd, NOT_IN_HTACCESS);

    if (err) {
        return err;
    }
    if (!strcasecmp(arg, "auto")) {
        d->driver = MWS_DRIVER_AUTO;
    }
    else if (!strcasecmp(arg, "blocking")) {
        d->driver = MWS_DRIVER_BLOCKING;
    }
    else {
        return apr_psprintf(cmd->pool, "WebSocketDriver: '%s' is neither "
                            "'auto' nor 'blocking'", arg);
    }
    return NULL;
}

/* WebSocketCompression off | on | context-takeover */
static const char *cmd_compression(cmd_parms *cmd, void *dconf,
                                   const char *arg)
{
    mws_dir_conf *d = dconf;
    const char *err = ap_check_cmd_context(cmd, NOT_IN_HTACCESS);

    if (err) {
        return err;
    }
    if (!strcasecmp(arg, "off")) {
        d->compression = MWS_COMPRESS_OFF;
    }
    else if (!strcasecmp(arg, "on")) {
        d->compression = MWS_COMPRESS_ON;
    }
    else if (!strcasecmp(arg, "context-takeover")) {
        d->compression = MWS_COMPRESS_CONTEXT;
    }
    else {
        return apr_psprintf(cmd->pool, "WebSocketCompression: '%s' is not "
                            "'off', 'on' or 'context-takeover'", arg);
    }
    return NULL;
}

/* WebSocketCompressionWindowBits 9..15, WebSocketCompressionMemLevel 1..9 */
static const char *cmd_zparam(cmd_parms *cmd, void *dconf, const char *arg)
{
    mws_dir_conf *d = dconf;
    int wbits = cmd->info != NULL;
    int lo = wbits ? 9 : 1, hi = wbits ? 15 : 9;
    const char *err = ap_check_cmd_context(cmd, NOT_IN_HTACCESS);
    char *end;
    apr_int64_t v;

    if (err) {
        return err;
    }
    v = apr_strtoi64(arg, &end, 10);
    if (end == arg || *end || v < lo || v > hi) {
        return apr_psprintf(cmd->pool, "%s: '%s' is not a number from %d "
                            "to %d", cmd->cmd->name, arg, lo, hi);
    }
    if (wbits) {
        d->window_bits = (int)v;
    }
    else {
        d->mem_level = (int)v;
    }
    return NULL;
}

/* WebSocketCompressionMaxContexts n: one value for the whole server */
static const char *cmd_max_contexts(cmd_parms *cmd, void *dconf,
                                    const char *arg)
{
    const char *err = ap_check_cmd_context(cmd, NOT_IN_HTACCESS);
    char *end;
    apr_int64_t v;

    if (err || (err = ap_check_cmd_context(cmd, GLOBAL_ONLY)) != NULL) {
        return err;
    }
    v = apr_strtoi64(arg, &end, 10);
    if (end == arg || *end || v < 0 || v > 10000000) {
        return apr_psprintf(cmd->pool, "WebSocketCompressionMaxContexts: "
                            "'%s' is not a number of connections (0 for no "
                            "limit)", arg);
    }
    mws_pmd_max_contexts = (int)v;
    return NULL;
}

/* WebSocketCompressionMinSize bytes (0: compress everything) */
static const char *cmd_compress_min(cmd_parms *cmd, void *dconf,
                                    const char *arg)
{
    mws_dir_conf *d = dconf;
    const char *err = ap_check_cmd_context(cmd, NOT_IN_HTACCESS);

    if (err) {
        return err;
    }
    if (!strcmp(arg, "0")) {
        d->compress_min = 0;
        return NULL;
    }
    return parse_size(cmd, arg, &d->compress_min);
}

/* WebSocketOrigin same | any | origin... */
static const char *cmd_origin(cmd_parms *cmd, void *dconf, int argc,
                              char *const argv[])
{
    mws_dir_conf *d = dconf;
    int i;
    const char *err = ap_check_cmd_context(cmd, NOT_IN_HTACCESS);

    if (err) {
        return err;
    }
    if (argc < 1) {
        return "WebSocketOrigin: give 'same', 'any' or a list of origins";
    }
    if (argc == 1 && !strcasecmp(argv[0], "any")) {
        d->origin_mode = MWS_ORIGIN_ANY;
        return NULL;
    }
    if (argc == 1 && !strcasecmp(argv[0], "same")) {
        d->origin_mode = MWS_ORIGIN_SAME;
        return NULL;
    }
    d->origin_mode = MWS_ORIGIN_LIST;
    d->origins = apr_array_make(cmd->pool, argc, sizeof(mws_origin_pat));
    for (i = 0; i < argc; ++i) {
        const char *o = argv[i];
        mws_origin_pat *pat;
        ws_origin w;
        char *host;

        if (!strcasecmp(o, "any") || !strcasecmp(o, "same")) {
            return apr_psprintf(cmd->pool, "WebSocketOrigin: '%s' must be "
                                "the only argument", o);
        }
        pat = apr_array_push(d->origins);
        memset(pat, 0, sizeof(*pat));
        if (ws_origin_parse(o, strlen(o), 1, &w) != 0
            || (w.ipv6 && !mws_origin_ipv6(w.host, w.host_len, pat->addr6))) {
            return apr_psprintf(cmd->pool, "WebSocketOrigin: '%s' is not an "
                                "origin: http:// or https://, a host name, "
                                "IPv4 address or [IPv6] address (a name may "
                                "start with '*.'), an optional :port, and "
                                "nothing else (no path, no user)", o);
        }
        host = apr_pstrmemdup(cmd->pool, w.host, w.host_len);
        ap_str_tolower(host);
        pat->https = w.https;
        pat->wildcard = w.wildcard;
        pat->ipv6 = w.ipv6;
        pat->host = host;
        pat->port = w.port;
        pat->text = apr_pstrdup(cmd->pool, o);
    }
    return NULL;
}

static const char *cmd_option(cmd_parms *cmd, void *dconf, const char *key,
                              const char *value)
{
    mws_dir_conf *d = dconf;
    mws_option *o;
    const char *err = ap_check_cmd_context(cmd, NOT_IN_HTACCESS);

    if (err) {
        return err;
    }
    o = apr_array_push(d->options);
    o->key = key;
    o->value = value;
    /* for check_options(): an error names the line */
    APR_ARRAY_PUSH(d->option_where, const char *) =
        apr_psprintf(cmd->pool, "%s:%d", cmd->directive->filename,
                     cmd->directive->line_num);
    return NULL;
}

#define DCONF_OFF(f) (void *)APR_OFFSETOF(mws_dir_conf, f)
/* Never in .htaccess: each directive function also refuses it with
 * ap_check_cmd_context(), since AllowOverrideList lets any directive named
 * there through whatever its req_override says (and a handler loaded while
 * reading an .htaccess would live in the request's pool). */
#define DCONF RSRC_CONF | ACCESS_CONF

const command_rec mws_cmds[] = {
    AP_INIT_TAKE12("WebSocketHandler", cmd_handler, NULL, DCONF,
                   "the handler of this location: a shared object "
                   "[and its entry symbol], or a registered handler name"),
    AP_INIT_TAKE2("WebSocketHandlerOption", cmd_option, NULL, DCONF,
                  "an option (key value) handed to the handler"),
    AP_INIT_TAKE1("WebSocketMaxMessageSize", cmd_size,
                  DCONF_OFF(max_message), DCONF, "largest message accepted, "
                  "in bytes (default 16M); larger ones are closed with 1009"),
    AP_INIT_TAKE1("WebSocketMaxFrameSize", cmd_size, DCONF_OFF(max_frame),
                  DCONF, "largest frame accepted, in bytes (default: the "
                  "message limit); larger ones are closed with 1009"),
    AP_INIT_TAKE1("WebSocketMaxQueuedBytes", cmd_size,
                  DCONF_OFF(max_queued), DCONF, "bytes that may wait to be "
                  "written to one client (default 16M); a client that lets "
                  "more pile up is closed with 1008"),
    AP_INIT_TAKE1("WebSocketIdleTimeout", cmd_time, DCONF_OFF(idle_timeout),
                  DCONF, "seconds without traffic after which the server "
                  "pings, then closes with 1001 if no pong comes (0: off)"),
    AP_INIT_TAKE1("WebSocketPingInterval", cmd_time,
                  DCONF_OFF(ping_interval), DCONF, "seconds between the "
                  "server's keep-alive pings (0: off, the default)"),
    AP_INIT_TAKE1("WebSocketCloseTimeout", cmd_time,
                  DCONF_OFF(close_timeout), DCONF, "seconds to wait for the "
                  "peer's close frame after ours (default 5)"),
    AP_INIT_TAKE1("WebSocketMaxReassemblyMemory", cmd_reassembly, NULL,
                  RSRC_CONF, "memory that unfinished fragmented messages may "
                  "hold in one child process, all connections together "
                  "(default 64M); a message that would go beyond is closed "
                  "with 1008"),
    AP_INIT_TAKE1("WebSocketMaxConnections", cmd_max_conns, NULL, DCONF,
                  "open WebSockets allowed in this section, all child "
                  "processes together; more are refused with 503 ('auto', "
                  "the default: what the MPM can hold, less a margin for "
                  "plain HTTP; 0: no limit)"),
    AP_INIT_TAKE1("WebSocketMaxConnectionsPerAddress", cmd_max_conns,
                  (void *)1, DCONF, "open WebSockets allowed from one "
                  "client address, server-wide; more are refused with 503 "
                  "(0: no limit, the default)"),
    AP_INIT_TAKE1("WebSocketIPv6Prefix", cmd_v6prefix, NULL, RSRC_CONF,
                  "IPv6 clients are counted per this many leading bits of "
                  "their address by WebSocketMaxConnectionsPerAddress "
                  "(1-128, default 64)"),
    AP_INIT_TAKE1("WebSocketDriver", cmd_driver, NULL, DCONF,
                  "'auto' (the default: idle connections wait without a "
                  "thread where the MPM allows it) or 'blocking' (a thread "
                  "per connection)"),
    AP_INIT_TAKE1("WebSocketBroker", mws_broker_cmd_url, NULL, RSRC_CONF,
                  "redis://[user:password@]host[:port][/db] or "
                  "unix:/path/redis.sock: channels across servers"),
    AP_INIT_TAKE1("WebSocketBrokerNamespace", mws_broker_cmd_ns, NULL,
                  RSRC_CONF, "the prefix of this server's channels on the "
                  "broker (default mws)"),
    AP_INIT_TAKE1("WebSocketChannelScope", mws_broker_cmd_scope, NULL, DCONF,
                  "a name: the channels of the WebSocketHandler line before "
                  "it are those of every line with this name"),
    AP_INIT_TAKE1("WebSocketCompression", cmd_compression, NULL, DCONF,
                  "permessage-deflate (RFC 7692): 'off' (the default), 'on' "
                  "(no context takeover: zlib state only while a message is "
                  "in flight) or 'context-takeover' (better ratio, zlib "
                  "state kept per connection)"),
    AP_INIT_TAKE1("WebSocketCompressionWindowBits", cmd_zparam, (void *)1,
                  DCONF, "the largest LZ77 window, 9-15 (default 15 for "
                  "'on', 11 for 'context-takeover')"),
    AP_INIT_TAKE1("WebSocketCompressionMemLevel", cmd_zparam, NULL, DCONF,
                  "zlib's memLevel for compressing, 1-9 (default 4)"),
    AP_INIT_TAKE1("WebSocketCompressionMinSize", cmd_compress_min, NULL,
                  DCONF, "messages shorter than this many bytes are sent "
                  "uncompressed (default 64; 0: compress all)"),
    AP_INIT_TAKE1("WebSocketCompressionMaxContexts", cmd_max_contexts, NULL,
                  RSRC_CONF, "connections of one child process that may "
                  "keep compression state between messages (context "
                  "takeover); newcomers past it are compressed without "
                  "(0: no limit, the default)"),
    AP_INIT_TAKE_ARGV("WebSocketOrigin", cmd_origin, NULL, DCONF,
                      "which Origin headers may open a WebSocket: 'same' "
                      "(the default), 'any', or a list of origins"),
    {NULL}
};
