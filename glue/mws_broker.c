/*
 * mws_broker.c -- channels across servers through Redis (WebSocketBroker):
 * one bridge process per server, forked by the parent, with two Redis
 * connections (one publishes, one is subscribed).  Children publish into
 * the channel log as always (mws_bus.c) but mark their messages as going
 * out; the bridge reads those and PUBLISHes them; what the subscription
 * receives (from every server, this one included) the bridge puts back
 * into the log, where the children deliver it.  So every server sees each
 * channel in Redis's order, and no worker thread ever talks to Redis.
 *
 * On Redis: channel "<namespace>:<key>" (key as in the log: "<scope>/
 * <name>" or "server:<name>"), message "T" or "B" followed by the payload.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "apr_lib.h"
#include "apr_strings.h"
#include "apr_uri.h"
#include "apr_thread_proc.h"
#include "httpd.h"
#include "http_config.h"
#include "http_core.h"
#include "http_log.h"
#include "mod_unixd.h"

#include "mws_private.h"

#ifdef MWS_HAVE_HIREDIS
#include <hiredis/hiredis.h>
#endif

#define MWS_BROKER_NS_DEFAULT "mws"
#define MWS_NAME_MAX 64              /* namespace, channel scope names   */

/* The server's WebSocketBroker, read anew with every configuration. */
static struct {
    const char *url;             /* as configured, without the password   */
    const char *where;           /* "file:line"                           */
    const char *host;
    int port;
    const char *unix_path;
    const char *user, *password;
    int db;
    const char *ns;              /* WebSocketBrokerNamespace              */
} broker;

void mws_broker_pre_config(void)
{
    memset(&broker, 0, sizeof(broker));
}

/* 1..64 bytes of letters, digits, '.', '_', '-' */
static int good_name(const char *s)
{
    size_t n = strlen(s);

    return n && n <= MWS_NAME_MAX
           && strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                        "0123456789._-") == n;
}

const char *mws_broker_cmd_url(cmd_parms *cmd, void *dconf, const char *arg)
{
    const char *err = ap_check_cmd_context(cmd, GLOBAL_ONLY);
    apr_uri_t u;
    char *end;

    if (err) {
        return err;
    }
#ifndef MWS_HAVE_HIREDIS
    return "WebSocketBroker: this mod_websocket was built without hiredis "
           "(install libhiredis-dev and build again)";
#endif
    if (broker.url) {
        return apr_psprintf(cmd->pool, "WebSocketBroker: set already (%s)",
                            broker.where);
    }
    if (!strncmp(arg, "unix:", 5)) {
        if (arg[5] != '/') {
            return apr_psprintf(cmd->pool, "WebSocketBroker: '%s': unix: "
                                "takes an absolute path to Redis's socket",
                                arg);
        }
        broker.unix_path = apr_pstrdup(cmd->pool, arg + 5);
        broker.url = apr_pstrdup(cmd->pool, arg);
    }
    else if (apr_uri_parse(cmd->pool, arg, &u) != APR_SUCCESS
             || !u.scheme || strcmp(u.scheme, "redis") || !u.hostname
             || !*u.hostname || (u.path && *u.path && strcmp(u.path, "/")
                                 && !apr_isdigit(u.path[1]))
             || u.query || u.fragment) {
        return apr_psprintf(cmd->pool, "WebSocketBroker: '%s' is not "
                            "redis://[user:password@]host[:port][/db] or "
                            "unix:/path/to/redis.sock", arg);
    }
    else {
        broker.host = u.hostname;
        long port = u.port_str ? strtol(u.port_str, &end, 10) : 6379;

        if (u.port_str && (*end || !*u.port_str)) {
            port = 0;
        }
        broker.port = (port > 0 && port <= 65535) ? (int)port : 0;
        if (!broker.port) {
            return apr_psprintf(cmd->pool, "WebSocketBroker: '%s': bad port",
                                arg);
        }
        /* redis://user:password@, redis://:password@ or
         * redis://password@ (Redis before 6 has no users) */
        broker.user = (u.password && u.user && *u.user) ? u.user : NULL;
        broker.password = u.password ? u.password : u.user;
        if (broker.password && !*broker.password) {
            broker.password = NULL;
        }
        if (u.path && u.path[0] == '/' && u.path[1]) {
            long db = strtol(u.path + 1, &end, 10);

            if (*end || db < 0 || db > 1000000) {
                return apr_psprintf(cmd->pool, "WebSocketBroker: '%s': the "
                                    "database must be a number", arg);
            }
            broker.db = (int)db;
        }
        broker.url = apr_psprintf(cmd->pool, "redis://%s%s%s:%d/%d",
                                  broker.password ? "***" : "",
                                  broker.password ? "@" : "", broker.host,
                                  broker.port, broker.db);
    }
    broker.where = apr_psprintf(cmd->pool, "%s:%d",
                                cmd->directive->filename,
                                cmd->directive->line_num);
    return NULL;
}

const char *mws_broker_cmd_ns(cmd_parms *cmd, void *dconf, const char *arg)
{
    const char *err = ap_check_cmd_context(cmd, GLOBAL_ONLY);

    if (err) {
        return err;
    }
    if (!good_name(arg)) {
        return apr_psprintf(cmd->pool, "WebSocketBrokerNamespace: '%s' must "
                            "be 1 to 64 letters, digits, '.', '_' or '-'",
                            arg);
    }
    broker.ns = apr_pstrdup(cmd->pool, arg);
    return NULL;
}

/* WebSocketChannelScope name: the channels of this section's
 * WebSocketHandler line are those of every line with the same name, in
 * this server and, with a broker, in every server of the namespace. */
const char *mws_broker_cmd_scope(cmd_parms *cmd, void *dconf,
                                 const char *arg)
{
    mws_dir_conf *d = dconf;
    const char *err = ap_check_cmd_context(cmd, NOT_IN_HTACCESS);

    if (err) {
        return err;
    }
    if (!d->instance) {
        return "WebSocketChannelScope must follow a WebSocketHandler in the "
               "same section";
    }
    if (!good_name(arg)) {
        return apr_psprintf(cmd->pool, "WebSocketChannelScope: '%s' must be "
                            "1 to 64 letters, digits, '.', '_' or '-'", arg);
    }
    mws_channels_scope(d->instance,
                       apr_pstrcat(cmd->temp_pool, "WebSocketChannelScope\n",
                                   arg, NULL));
    return NULL;
}

#ifdef MWS_HAVE_HIREDIS

/* ---- the bridge process ---------------------------------------------------- */

static server_rec *br_server;
static const char *br_prefix;       /* "<namespace>:"                    */
static size_t br_prefix_len;
static volatile int pub_ok, sub_ok;
static redisContext *pub_ctx;
static apr_time_t pub_retry_at;
static apr_interval_time_t pub_backoff;
static uint64_t br_dropped;          /* not sent: Redis was unreachable   */
static apr_time_t br_drop_logged;

#define BACKOFF_MIN apr_time_from_msec(100)
#define BACKOFF_MAX apr_time_from_sec(2)

static void br_state(void)
{
    mws_bus_broker_state(pub_ok && sub_ok);
}

/* A connection to Redis, authenticated; NULL and why (cap bytes) when
 * not. */
static redisContext *br_connect(char *why, size_t cap, int db)
{
    struct timeval tv = { 2, 0 };
    redisContext *c;
    redisReply *r;

    c = broker.unix_path ? redisConnectUnixWithTimeout(broker.unix_path, tv)
                         : redisConnectWithTimeout(broker.host, broker.port,
                                                   tv);
    if (!c || c->err) {
        apr_cpystrn(why, c ? c->errstr : "out of memory", cap);
        if (c) {
            redisFree(c);
        }
        return NULL;
    }
    redisSetTimeout(c, tv);
    redisEnableKeepAlive(c);
    if (broker.password) {
        r = broker.user ? redisCommand(c, "AUTH %s %s", broker.user,
                                       broker.password)
                        : redisCommand(c, "AUTH %s", broker.password);
        if (!r || r->type == REDIS_REPLY_ERROR) {
            apr_cpystrn(why, "AUTH refused", cap);
            if (r) {
                freeReplyObject(r);
            }
            redisFree(c);
            return NULL;
        }
        freeReplyObject(r);
    }
    if (db && broker.db) {
        r = redisCommand(c, "SELECT %d", broker.db);
        if (!r || r->type == REDIS_REPLY_ERROR) {
            apr_cpystrn(why, "SELECT refused", cap);
            if (r) {
                freeReplyObject(r);
            }
            redisFree(c);
            return NULL;
        }
        freeReplyObject(r);
    }
    return c;
}

/* The publishing connection, (re)made when it is time. */
static void br_pub_connect(void)
{
    char why[128];
    apr_time_t now = apr_time_now();

    if (pub_ctx || now < pub_retry_at) {
        return;
    }
    if ((pub_ctx = br_connect(why, sizeof(why), 1)) != NULL) {
        pub_ok = 1;
        pub_backoff = 0;
    }
    else {
        pub_backoff = pub_backoff ? pub_backoff * 2 : BACKOFF_MIN;
        if (pub_backoff > BACKOFF_MAX) {
            pub_backoff = BACKOFF_MAX;
        }
        pub_retry_at = now + pub_backoff;
    }
    br_state();
}

/* The publishing connection failed (Redis restarted: it is stale).  The
 * state is not announced here: the caller connects again at once, and
 * only a failure of that says "down" (publishers would otherwise see a
 * moment of MWS_ERR_UNAVAILABLE after every Redis restart). */
static void br_pub_lost(void)
{
    if (pub_ctx) {
        redisFree(pub_ctx);
        pub_ctx = NULL;
    }
    pub_ok = 0;
    pub_retry_at = 0;
}

static void br_drop(const char *key)
{
    apr_time_t now = apr_time_now();

    ++br_dropped;
    if (now - br_drop_logged > apr_time_from_sec(10)) {
        br_drop_logged = now;
        ap_log_error(APLOG_MARK, APLOG_WARNING, 0, br_server,
                     MWS_LOGNO(00162) "broker: a message of %s was not sent: "
                     "%s cannot be reached (%" APR_UINT64_T_FMT " dropped so "
                     "far; at most one line every 10 s)", key, broker.url,
                     (apr_uint64_t)br_dropped);
    }
}

/* A message a child published: to Redis. */
static void br_out(const char *key, mws_msg_type type, const void *data,
                   size_t len, uint64_t seq)
{
    char chan[MWS_KEY_MAX + MWS_NAME_MAX + 2];
    char *msg;
    size_t clen = (size_t)apr_snprintf(chan, sizeof(chan), "%s%s", br_prefix,
                                       key);
    redisReply *r;
    int attempt;

    if (!(msg = malloc(len + 1))) {
        br_drop(key);
        return;
    }
    msg[0] = type == MWS_TEXT ? 'T' : 'B';
    memcpy(msg + 1, data, len);
    for (attempt = 0; attempt < 2; ++attempt) {
        br_pub_connect();
        if (!pub_ctx) {
            break;
        }
        r = redisCommand(pub_ctx, "PUBLISH %b %b", chan, clen, msg, len + 1);
        if (r && r->type != REDIS_REPLY_ERROR) {
            static apr_time_t beat;
            apr_time_t now = apr_time_now();

            freeReplyObject(r);
            free(msg);
            if (now - beat > apr_time_from_msec(500)) {
                beat = now;
                br_state();     /* alive, also while it never idles */
            }
            return;
        }
        if (r) {
            freeReplyObject(r);
        }
        br_pub_lost();          /* Redis went away: once more, at once */
    }
    free(msg);
    br_state();                 /* down, if that did not help */
    br_drop(key);
}

static void br_gap(const char *key, uint64_t lost)
{
    br_dropped += lost;
}

static void br_idle(void)
{
    if (getppid() == 1) {
        _exit(0);               /* the server is gone */
    }
    br_pub_connect();
    br_state();                 /* also: still alive */
}

/* What the subscription delivers: into the log, for the children. */
static void br_in(redisReply *r)
{
    static apr_time_t logged;
    const redisReply *ch, *msg;
    const char *key, *why = NULL;
    size_t klen;
    mws_msg_type type = MWS_TEXT;

    if (r->type != REDIS_REPLY_ARRAY || r->elements != 4
        || r->element[0]->type != REDIS_REPLY_STRING
        || strcmp(r->element[0]->str, "pmessage")) {
        return;                 /* subscription confirmations */
    }
    ch = r->element[2];
    msg = r->element[3];
    key = ch->str + br_prefix_len;
    klen = ch->len - br_prefix_len;
    if (ch->type != REDIS_REPLY_STRING || msg->type != REDIS_REPLY_STRING
        || ch->len <= br_prefix_len || klen > MWS_KEY_MAX
        || memchr(key, '\0', klen) || msg->len < 1
        || msg->len - 1 > MWS_PUBLISH_MAX
        || (msg->str[0] != 'T' && msg->str[0] != 'B')) {
        why = "not a message of mod_websocket";
    }
    else if ((type = msg->str[0] == 'T' ? MWS_TEXT : MWS_BINARY) == MWS_TEXT
             && !ws_utf8_is_valid((const uint8_t *)msg->str + 1,
                                  msg->len - 1)) {
        why = "text that is not UTF-8";
    }
    if (why) {
        if (apr_time_now() - logged > apr_time_from_sec(10)) {
            logged = apr_time_now();
            ap_log_error(APLOG_MARK, APLOG_WARNING, 0, br_server,
                         MWS_LOGNO(00163) "broker: dropped a message on "
                         "Redis channel %.*s: %s (at most one line every "
                         "10 s)", (int)(ch->len > 300 ? 300 : ch->len),
                         ch->str, why);
        }
        return;
    }
    mws_bus_publish_in(key, type, msg->str + 1, msg->len - 1);
}

/* The subscribed connection: (re)connects with backoff, subscribes to the
 * namespace and puts what comes into the log. */
static void *br_sub_main(void *unused)
{
    apr_interval_time_t backoff = 0;
    int said_down = 0;

    for (;;) {
        char why[128] = "";
        redisContext *c = br_connect(why, sizeof(why), 0);
        redisReply *r = NULL;
        struct pollfd pfd;
        void *reply;

        if (c) {
            r = redisCommand(c, "PSUBSCRIBE %s*", br_prefix);
        }
        if (!c || !r || r->type == REDIS_REPLY_ERROR) {
            if (!said_down) {
                ap_log_error(APLOG_MARK, APLOG_WARNING, 0, br_server,
                             MWS_LOGNO(00159) "broker: cannot reach %s "
                             "(%s): publish() fails with "
                             "MWS_ERR_UNAVAILABLE until it can; trying "
                             "again with backoff", broker.url,
                             *why ? why : c && c->err ? c->errstr
                                                      : "PSUBSCRIBE refused");
                said_down = 1;
            }
            if (r) {
                freeReplyObject(r);
            }
            if (c) {
                redisFree(c);
            }
            backoff = backoff ? backoff * 2 : BACKOFF_MIN;
            if (backoff > BACKOFF_MAX) {
                backoff = BACKOFF_MAX;
            }
            apr_sleep(backoff);
            continue;
        }
        freeReplyObject(r);
        backoff = 0;
        if (said_down) {
            /* what other servers published meanwhile is gone */
            mws_bus_gap_in();
        }
        sub_ok = 1;
        br_state();
        ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, br_server, MWS_LOGNO(00160)
                     "broker: subscribed to %s* on %s", br_prefix,
                     broker.url);
        said_down = 0;
        for (;;) {
            if (redisGetReplyFromReader(c, &reply) != REDIS_OK) {
                break;
            }
            if (reply) {
                br_in(reply);
                freeReplyObject(reply);
                continue;
            }
            pfd.fd = c->fd;
            pfd.events = POLLIN;
            if (poll(&pfd, 1, 1000) < 0 && errno != EINTR) {
                break;
            }
            if ((pfd.revents & (POLLIN | POLLHUP | POLLERR))
                && redisBufferRead(c) != REDIS_OK) {
                break;
            }
        }
        sub_ok = 0;
        br_state();
        ap_log_error(APLOG_MARK, APLOG_WARNING, 0, br_server, MWS_LOGNO(00161)
                     "broker: lost the connection to %s (%s): messages of "
                     "other servers published meanwhile do not arrive here; "
                     "connecting again", broker.url,
                     c->err ? c->errstr : "closed");
        said_down = 1;
        redisFree(c);
    }
    return NULL;
}

static void bridge_main(server_rec *s)
{
    static const int sigs[] = { SIGTERM, SIGHUP, SIGUSR1, SIGWINCH, SIGINT };
    pthread_t sub;
    sigset_t none;
    size_t i;

    for (i = 0; i < sizeof(sigs) / sizeof(sigs[0]); ++i) {
        signal(sigs[i], SIG_DFL);
    }
    signal(SIGPIPE, SIG_IGN);
    sigemptyset(&none);
    pthread_sigmask(SIG_SETMASK, &none, NULL);
    br_server = s;
    if (geteuid() == 0 && ap_unixd_setup_child() != 0) {
        ap_log_error(APLOG_MARK, APLOG_ERR, 0, s, MWS_LOGNO(00164)
                     "broker: the bridge process cannot switch to User");
        _exit(1);
    }
    /* ends with the server's parent */
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    br_prefix = apr_pstrcat(s->process->pool,
                            broker.ns ? broker.ns : MWS_BROKER_NS_DEFAULT,
                            ":", NULL);
    br_prefix_len = strlen(br_prefix);
    mws_bus_broker_state(0);
    if (pthread_create(&sub, NULL, br_sub_main, NULL) != 0) {
        ap_log_error(APLOG_MARK, APLOG_ERR, 0, s, MWS_LOGNO(00165)
                     "broker: cannot start the bridge's thread");
        _exit(1);
    }
    br_pub_connect();
    mws_bus_bridge_run(s, br_out, br_gap, br_idle);
    _exit(0);
}

/* ---- the parent: starts the bridge, and again when it died ----------- */

static apr_pool_t *br_pool;
static server_rec *br_main_server;
static apr_proc_t *br_proc;

static apr_status_t bridge_start(void);

static void bridge_maint(int reason, void *data, apr_wait_t status)
{
    apr_proc_t *proc = data;

    switch (reason) {
    case APR_OC_REASON_DEATH:
    case APR_OC_REASON_LOST:
        apr_proc_other_child_unregister(data);
        if (ap_state_query(AP_SQ_MAIN_STATE) == AP_SQ_MS_RUN_MPM
            && proc == br_proc) {
            ap_log_error(APLOG_MARK, APLOG_WARNING, 0, br_main_server,
                         MWS_LOGNO(00166) "broker: the bridge process %ld "
                         "ended; starting another", (long)proc->pid);
            br_proc = NULL;
            bridge_start();
        }
        break;
    case APR_OC_REASON_RESTART:
        /* the configuration pool's cleanup kills it */
        apr_proc_other_child_unregister(data);
        break;
    case APR_OC_REASON_UNREGISTER:
        /* called from the unregistration itself: nothing more to do (the
         * configuration pool's cleanup kills the process) */
        break;
    default:
        break;
    }
}

static apr_status_t bridge_start(void)
{
    apr_proc_t *proc = apr_pcalloc(br_pool, sizeof(*proc));
    apr_status_t rv = apr_proc_fork(proc, br_pool);

    if (rv == APR_INCHILD) {
        bridge_main(br_main_server);
        _exit(0);
    }
    if (rv != APR_INPARENT) {
        ap_log_error(APLOG_MARK, APLOG_ERR, rv, br_main_server,
                     MWS_LOGNO(00158) "broker: cannot start the bridge "
                     "process: channels reach this server only while it "
                     "is down");
        return rv;
    }
    br_proc = proc;
    apr_pool_note_subprocess(br_pool, proc, APR_KILL_AFTER_TIMEOUT);
    apr_proc_other_child_register(proc, bridge_maint, proc, NULL, br_pool);
    ap_log_error(APLOG_MARK, APLOG_INFO, 0, br_main_server, MWS_LOGNO(00157)
                 "broker: bridge process %ld for %s, namespace %s",
                 (long)proc->pid, broker.url,
                 broker.ns ? broker.ns : MWS_BROKER_NS_DEFAULT);
    return APR_SUCCESS;
}

#endif /* MWS_HAVE_HIREDIS */

int mws_broker_post_config(apr_pool_t *pconf, server_rec *s)
{
    mws_bus_set_broker(0);
    if (!broker.url) {
        return OK;
    }
#ifdef MWS_HAVE_HIREDIS
    br_pool = pconf;
    br_main_server = s;
    br_proc = NULL;
    if (bridge_start() != APR_SUCCESS) {
        return OK;
    }
    mws_bus_set_broker(1);
#endif
    return OK;
}
