/*
 * mod_websocket.c -- httpd glue of mod_websocket: directives, handler
 * loading, the opening handshake (RFC 6455 section 4) and the hooks.
 *
 * The protocol itself lives in core/ (no httpd there); the connection driver
 * in mws_conn.c and mws_park.c; the mws_host services in mws_host.c; channels across child
 * processes in mws_pubsub.c.
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

/* Loaded handler shared objects, by resolved path, per configuration
 * generation (the table lives in pconf, recreated on every restart). */
static apr_hash_t *mws_dsos;
/* Every WebSocketHandler line of this generation. */
static apr_array_header_t *mws_instances;

/* ---- configuration ---------------------------------------------------- */

static void *create_dir_conf(apr_pool_t *p, char *dir)
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
    return d;
}

#define MERGE_VAL(f) d->f = (add->f != MWS_UNSET) ? add->f : base->f

/* Server-level settings (WebSocketIPv6Prefix). */
typedef struct {
    int v6prefix;                /* MWS_UNSET: unset                       */
} mws_srv_conf;

static void *create_srv_conf(apr_pool_t *p, server_rec *s)
{
    mws_srv_conf *sc = apr_pcalloc(p, sizeof(*sc));

    sc->v6prefix = MWS_UNSET;
    return sc;
}

static void *merge_srv_conf(apr_pool_t *p, void *basev, void *addv)
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

static void *merge_dir_conf(apr_pool_t *p, void *basev, void *addv)
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
}

static int pre_config(apr_pool_t *pconf, apr_pool_t *plog, apr_pool_t *ptemp)
{
    mws_dsos = apr_hash_make(pconf);
    mws_instances = apr_array_make(pconf, 4, sizeof(mws_instance *));
    mws_reassembly_limit = MWS_DEFAULT_REASSEMBLY;
    return mws_limits_pre_config(pconf);
}

/* Check what a handler says about itself before we accept it. */
static const char *check_handler(cmd_parms *cmd, const mws_handler *h,
                                 const char *what)
{
    if (h == NULL) {
        return apr_psprintf(cmd->pool, "WebSocketHandler: %s returned no "
                            "handler", what);
    }
    if (h->abi_major != MWS_ABI_MAJOR || h->abi_minor > MWS_ABI_MINOR) {
        return apr_psprintf(cmd->pool, "WebSocketHandler: %s was built for "
                            "handler API %u.%u, this mod_websocket serves "
                            "%d.0 to %d.%d", what, (unsigned)h->abi_major,
                            (unsigned)h->abi_minor, MWS_ABI_MAJOR,
                            MWS_ABI_MAJOR, MWS_ABI_MINOR);
    }
    if (h->struct_size < offsetof(mws_handler, on_close)
                         + sizeof(h->on_close)) {
        return apr_psprintf(cmd->pool, "WebSocketHandler: %s has a handler "
                            "struct of %u bytes, too small for API %d.0",
                            what, (unsigned)h->struct_size, MWS_ABI_MAJOR);
    }
    if (!h->on_message && !h->on_fragment) {
        return apr_psprintf(cmd->pool, "WebSocketHandler: %s has neither "
                            "on_message nor on_fragment", what);
    }
    return NULL;
}

static const char *load_handler(cmd_parms *cmd, const char *arg,
                                const char *symbol, const mws_handler **ph)
{
    const char *path, *what, *key;
    apr_dso_handle_t *dso;
    apr_dso_handle_sym_t sym;
    mws_handler_entry_fn entry;
    apr_status_t rv;
    char err[256];

    /* A registered provider name (no slash, no ".so") */
    if (!ap_strchr_c(arg, '/') && !ap_strstr_c(arg, ".so")) {
        *ph = ap_lookup_provider(MWS_PROVIDER_GROUP, arg,
                                 MWS_PROVIDER_VERSION);
        if (*ph == NULL) {
            return apr_psprintf(cmd->pool, "WebSocketHandler: no handler "
                                "named '%s' is registered (is its module "
                                "loaded before this line?)", arg);
        }
        return check_handler(cmd, *ph, apr_psprintf(cmd->pool, "handler "
                                                    "'%s'", arg));
    }

    path = ap_server_root_relative(cmd->pool, arg);
    if (path == NULL) {
        return apr_psprintf(cmd->pool, "WebSocketHandler: invalid path %s",
                            arg);
    }
    what = apr_psprintf(cmd->pool, "%s (symbol %s)", path, symbol);
    key = apr_pstrcat(cmd->temp_pool, path, "#", symbol, NULL);
    if ((*ph = apr_hash_get(mws_dsos, key, APR_HASH_KEY_STRING)) != NULL) {
        return NULL;
    }
    rv = apr_dso_load(&dso, path, cmd->pool);
    if (rv != APR_SUCCESS) {
        return apr_psprintf(cmd->pool, "WebSocketHandler: cannot load %s: "
                            "%s", path, apr_dso_error(dso, err, sizeof(err)));
    }
    rv = apr_dso_sym(&sym, dso, symbol);
    if (rv != APR_SUCCESS) {
        return apr_psprintf(cmd->pool, "WebSocketHandler: %s has no symbol "
                            "%s: %s", path, symbol,
                            apr_dso_error(dso, err, sizeof(err)));
    }
    entry = (mws_handler_entry_fn)sym;
    *ph = entry();
    if ((what = check_handler(cmd, *ph, what)) != NULL) {
        return what;
    }
    apr_hash_set(mws_dsos, apr_pstrdup(cmd->pool, key), APR_HASH_KEY_STRING,
                 *ph);
    return NULL;
}

/* The scope of the line's channels: what tells it from every other line,
 * also in the next generation if the configuration did not change (the
 * line, its section, its virtual host: one file Included in two virtual
 * hosts makes two lines), and unique in this generation. */
static void set_scope(cmd_parms *cmd, mws_instance *inst)
{
    const server_rec *s = cmd->server;
    const char *ident = apr_psprintf(cmd->temp_pool, "%s\n%s\n%s\n%s:%u",
                                     inst->where, inst->name,
                                     cmd->path ? cmd->path : "",
                                     s->defn_name ? s->defn_name : "",
                                     s->defn_line_number);
    int i, again, n = 0;

    mws_pubsub_scope(inst, ident);
    do {
        again = 0;
        for (i = 0; i < mws_instances->nelts; ++i) {
            if (!strcmp(APR_ARRAY_IDX(mws_instances, i, mws_instance *)->scope,
                        inst->scope)) {
                mws_pubsub_scope(inst, apr_psprintf(cmd->temp_pool, "%s#%d",
                                                    ident, ++n));
                again = 1;
                break;
            }
        }
    } while (again);
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
    err = load_handler(cmd, arg, symbol ? symbol : MWS_HANDLER_ENTRY_SYMBOL,
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
    set_scope(cmd, inst);
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
    if (end == arg || *end || v < 0 || v > 10000000) {
        return apr_psprintf(cmd->pool, "%s: '%s' is not a number of "
                            "connections (0 for no limit)", cmd->cmd->name,
                            arg);
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

/* An IPv6 literal of an origin (without the brackets) as 16 bytes. */
static int origin_ipv6(const char *host, size_t len, unsigned char out[16])
{
    char buf[WS_ORIGIN_MAX_IPV6 + 1];

    if (len > WS_ORIGIN_MAX_IPV6) {
        return 0;
    }
    memcpy(buf, host, len);
    buf[len] = '\0';
    return mws_addr16_parse(buf, out) == 6;
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
            || (w.ipv6 && !origin_ipv6(w.host, w.host_len, pat->addr6))) {
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
    return NULL;
}

#define DCONF_OFF(f) (void *)APR_OFFSETOF(mws_dir_conf, f)
/* Never in .htaccess: each directive function also refuses it with
 * ap_check_cmd_context(), since AllowOverrideList lets any directive named
 * there through whatever its req_override says (and a handler loaded while
 * reading an .htaccess would live in the request's pool). */
#define DCONF RSRC_CONF | ACCESS_CONF

static const command_rec mws_cmds[] = {
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
                  "processes together; more are refused with 503 (0: no "
                  "limit, the default)"),
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
    AP_INIT_TAKE_ARGV("WebSocketOrigin", cmd_origin, NULL, DCONF,
                      "which Origin headers may open a WebSocket: 'same' "
                      "(the default), 'any', or a list of origins"),
    {NULL}
};

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
            return origin_ipv6(name + 1, len - 2, n6)
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
static const char *origin_refusal(request_rec *r, const mws_dir_conf *d)
{
    const char *origin = apr_table_get(r->headers_in, "Origin");
    unsigned char a6[16];
    ws_origin o;
    int i;

    if (!origin || d->origin_mode == MWS_ORIGIN_ANY) {
        return NULL;    /* not a browser, or the admin allows every site */
    }
    if (ws_origin_parse(origin, strlen(origin), 0, &o) != 0
        || (o.ipv6 && !origin_ipv6(o.host, o.host_len, a6))) {
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

static int copy_header(void *data, const char *key, const char *value)
{
    apr_table_add((apr_table_t *)data, key, value);
    return 1;
}

static int ws_handler(request_rec *r)
{
    mws_dir_conf *d;
    const char *upgrade, *connection, *version, *key, *clen, *why;
    char accept[WS_ACCEPT_LEN + 1];
    mws_request req;
    mws_limit_hold hold;
    mws_conn *mc;
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
    if ((why = origin_refusal(r, d)) != NULL) {
        ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r, MWS_LOGNO(00018)
                      "WebSocket from origin %s refused by WebSocketOrigin: "
                      "%s", apr_table_get(r->headers_in, "Origin"), why);
        return HTTP_FORBIDDEN;
    }
    /* Over HTTP/1.1 a body would be read as WebSocket frames.  Over
     * HTTP/2 (RFC 8441, mod_http2's H2WebSockets), the stream stays open
     * for the frames and mod_http2 presents it as a request body. */
    clen = apr_table_get(r->headers_in, "Content-Length");
    if (!r->connection->master && ((clen && strcmp(clen, "0"))
        || apr_table_get(r->headers_in, "Transfer-Encoding"))) {
        return refuse(r, HTTP_BAD_REQUEST, "upgrade request with a body");
    }
    memset(&hold, 0, sizeof(hold));
    if ((status = mws_limits_admit(r, d, &hold)) != OK) {
        apr_table_setn(r->err_headers_out, "Retry-After", "5");
        return status;
    }
    if (!d->instance->ready) {
        mws_limits_release(&hold);
        ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r, MWS_LOGNO(00003)
                      "handler %s (%s) failed to initialise in this process",
                      d->instance->name, d->instance->where);
        return HTTP_INTERNAL_SERVER_ERROR;
    }

    mc = mws_conn_create(r, d->instance, d);
    if (!mc) {
        mws_limits_release(&hold);
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    mc->hold = hold;            /* given back when the connection ends */

    memset(&req, 0, sizeof(req));
    req.r = r;
    req.mc = mc;
    req.offered = apr_array_make(r->pool, 2, sizeof(const char *));
    apr_table_do(collect_offers, req.offered, r->headers_in,
                 "Sec-WebSocket-Protocol", NULL);

    if (d->instance->h->on_open) {
        mws_instance *prev = mws_instance_enter(d->instance);
        status = d->instance->h->on_open(mc, &req, d->instance->data);
        mws_instance_leave(prev);
        if (status != 0) {
            if (status < 400 || status > 599) {
                ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r, MWS_LOGNO(00004)
                              "handler %s: on_open returned %d, not 0 or an "
                              "HTTP status 400-599", d->instance->name,
                              status);
                status = HTTP_INTERNAL_SERVER_ERROR;
            }
            mws_conn_abort(mc);
            return refuse(r, status, "refused by the handler");
        }
    }
    mc->opened = 1;

    ws_handshake_accept(key, accept);
    r->status = HTTP_SWITCHING_PROTOCOLS;
    r->status_line = ap_get_status_line(HTTP_SWITCHING_PROTOCOLS);
    apr_table_setn(r->headers_out, "Upgrade", "websocket");
    apr_table_setn(r->headers_out, "Connection", "Upgrade");
    apr_table_setn(r->headers_out, "Sec-WebSocket-Accept",
                   apr_pstrdup(r->pool, accept));
    if (req.chosen) {
        apr_table_setn(r->headers_out, "Sec-WebSocket-Protocol", req.chosen);
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

    mws_conn_start(mc, d->driver != MWS_DRIVER_BLOCKING);
    return OK;
}

/* ---- per child -------------------------------------------------------- */

static apr_status_t instances_shutdown(void *unused)
{
    int i;

    mws_registry_report_all();      /* on_close before shutdown */
    for (i = 0; i < mws_instances->nelts; ++i) {
        mws_instance *inst = APR_ARRAY_IDX(mws_instances, i, mws_instance *);
        if (inst->ready && inst->h->shutdown) {
            mws_instance *prev = mws_instance_enter(inst);
            inst->h->shutdown(inst->data);
            mws_instance_leave(prev);
        }
        inst->ready = 0;
    }
    return APR_SUCCESS;
}

static void child_init(apr_pool_t *pchild, server_rec *s)
{
    int i;

    mws_registry_init(pchild);
    mws_conn_child_init(pchild, s);
    mws_limits_child_init(pchild, s);
    mws_pubsub_child_open(pchild, s);
    for (i = 0; i < mws_instances->nelts; ++i) {
        mws_instance *inst = APR_ARRAY_IDX(mws_instances, i, mws_instance *);
        const apr_array_header_t *opts = inst->dconf->options;
        mws_instance *prev;
        int rc = 0;

        inst->data = NULL;
        inst->ready = 1;
        if (inst->h->init) {
            prev = mws_instance_enter(inst);
            rc = inst->h->init(&mws_host_table,
                               (const mws_option *)opts->elts,
                               (size_t)opts->nelts, &inst->data);
            mws_instance_leave(prev);
        }
        if (rc != 0) {
            inst->ready = 0;
            ap_log_error(APLOG_MARK, APLOG_ERR, 0, s, MWS_LOGNO(00005)
                         "handler %s (%s): init failed", inst->name,
                         inst->where);
        }
    }
    apr_pool_cleanup_register(pchild, NULL, instances_shutdown,
                              apr_pool_cleanup_null);
    mws_pubsub_child_init(pchild, s);
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
    if ((rv = mws_limits_post_config(pconf, s)) != OK) {
        return rv;
    }
    return mws_pubsub_post_config(pconf, ptemp, s, mws_instances->nelts);
}

/* Also for httpd -t: what would make the start fail, without changing
 * anything. */
static int check_config(apr_pool_t *pconf, apr_pool_t *plog,
                        apr_pool_t *ptemp, server_rec *s)
{
    return mws_pubsub_check_config(ptemp, s, mws_instances->nelts);
}

static void register_hooks(apr_pool_t *p)
{
    ap_hook_pre_config(pre_config, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_check_config(check_config, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_post_config(post_config, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_child_init(child_init, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_child_stopping(child_stopping, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_handler(ws_handler, NULL, NULL, APR_HOOK_MIDDLE);
    mws_conn_register_hooks();
    mws_pubsub_register_hooks();
}

AP_DECLARE_MODULE(websocket) = {
    STANDARD20_MODULE_STUFF,
    create_dir_conf,
    merge_dir_conf,
    create_srv_conf,
    merge_srv_conf,
    mws_cmds,
    register_hooks
#if defined(AP_MODULE_HAS_FLAGS)
    , AP_MODULE_FLAG_ALWAYS_MERGE
#endif
};
