/*
 * mws_limits.c -- connection caps that hold across all child processes:
 * WebSocketMaxConnections (per configuration section that sets it) and
 * WebSocketMaxConnectionsPerAddress (per client address, server-wide).
 *
 * The counters live in one anonymous shared memory segment made by the
 * parent in post_config, so every child of a generation sees the same
 * numbers.  A graceful restart makes a new segment: the new generation
 * counts from zero while the old one drains (documented).
 *
 * Per-address counts are kept in an open-addressing table of exact keys
 * (core/ws_addrtab.c):
 * the client address as 16 bytes (IPv4 as IPv4-mapped IPv6, IPv6 cut to
 * WebSocketIPv6Prefix bits) plus the prefix length, so two addresses never
 * share a count.  Slots are chosen with SipHash-2-4 under a key drawn at
 * each post_config, so that nobody can pick addresses that pile up in one
 * probe run.  The table changes under one global mutex (a process-shared
 * pthread mutex by default; the `Mutex mws-addr` directive can choose
 * another); it is taken once when a capped WebSocket opens and once when
 * it closes.  A full table refuses new addresses (503) rather than let any
 * address past its cap.
 *
 * WebSocketMaxConnections auto (the default): the server's capacity, what
 * the MPM accepts less a margin for plain HTTP (mws_capacity below), is one
 * more counter in the segment.  Every WebSocket counts in it, also those of
 * sections with an explicit number, so that the sections left on auto see
 * what is really in use.
 */
#include <signal.h>
#include <arpa/inet.h>

#include "apr_shm.h"
#include "apr_atomic.h"
#include "apr_strings.h"
#include "apr_global_mutex.h"

#include "httpd.h"
#include "http_config.h"
#include "http_log.h"
#include "http_main.h"
#include "http_core.h"
#include "ap_mpm.h"
#include "util_mutex.h"
#include "mod_so.h"

#include "mws_private.h"

#define MWS_ADDR_SLOTS    65536u     /* a power of two                     */
#define MWS_ADDR_MAX      (MWS_ADDR_SLOTS / 4 * 3)  /* addresses at a time */
#define MWS_ADDR_MUTEX    "mws-addr"
#define MWS_FULL_LOG_GAP  apr_time_from_sec(60)

/* The shared segment: [addr_shm][the table][the section counters, then
 * the server's count for WebSocketMaxConnections auto] */
typedef struct {
    apr_time_t full_logged;          /* when MWS00060 was last logged      */
    apr_uint64_t align;
} addr_shm;

static int nsections;            /* sections with a cap, this generation  */
static int addr_caps;            /* WebSocketMaxConnectionsPerAddress seen */
static apr_uint32_t *sections;   /* NULL: no shared memory, no caps       */
static addr_shm *addr_head;      /* NULL: no per-address caps             */
static ws_addr_table *addrs;
static apr_global_mutex_t *addr_mutex;
static int block_stop_signals;   /* prefork: see addr_lock()              */
static apr_uint32_t *server_count; /* units of capacity in use (auto)       */
static mws_capacity capacity;    /* this generation's, from post_config    */
static void mws_capacity_log(server_rec *s, const mws_capacity *cap);

int mws_limits_section_index(void)
{
    return nsections++;
}

void mws_limits_addr_cap_used(void)
{
    addr_caps = 1;
}

int mws_limits_pre_config(apr_pool_t *pconf)
{
    nsections = 0;
    addr_caps = 0;
    sections = NULL;
    addrs = NULL;
    addr_head = NULL;
    addr_mutex = NULL;
    server_count = NULL;
    /* registered always, so that `Mutex mws-addr ...` is accepted */
    return ap_mutex_register(pconf, MWS_ADDR_MUTEX, NULL, APR_LOCK_DEFAULT,
                             0) == APR_SUCCESS ? OK : HTTP_INTERNAL_SERVER_ERROR;
}

int mws_limits_post_config(apr_pool_t *pconf, server_rec *s)
{
    apr_shm_t *shm;
    apr_size_t size, addr_size = 0;
    apr_status_t rv;
    unsigned char hash_key[16];
    char *base;

    if (addr_caps) {
        addr_size = APR_ALIGN_DEFAULT(sizeof(addr_shm)
                                      + ws_addrtab_size(MWS_ADDR_SLOTS));
    }
    size = addr_size + sizeof(apr_uint32_t) * (apr_size_t)(nsections + 1);
    rv = apr_shm_create(&shm, size, NULL, pconf);
    if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_EMERG, rv, s, MWS_LOGNO(00023)
                     "cannot create shared memory for the WebSocket "
                     "connection counts");
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    base = apr_shm_baseaddr_get(shm);
    memset(base, 0, size);
    if (addr_caps) {
        rv = apr_generate_random_bytes(hash_key, sizeof(hash_key));
        if (rv != APR_SUCCESS) {
            ap_log_error(APLOG_MARK, APLOG_EMERG, rv, s, MWS_LOGNO(00064)
                         "cannot draw the key of the per-address table");
            return HTTP_INTERNAL_SERVER_ERROR;
        }
        rv = ap_global_mutex_create(&addr_mutex, NULL, MWS_ADDR_MUTEX, NULL,
                                    s, pconf, 0);
        if (rv != APR_SUCCESS) {
            ap_log_error(APLOG_MARK, APLOG_EMERG, rv, s, MWS_LOGNO(00062)
                         "cannot create the mutex of the per-address table "
                         "(WebSocketMaxConnectionsPerAddress)");
            return HTTP_INTERNAL_SERVER_ERROR;
        }
        addr_head = (addr_shm *)base;
        addrs = (ws_addr_table *)(base + sizeof(addr_shm));
        if (ws_addrtab_init(addrs, MWS_ADDR_SLOTS, MWS_ADDR_MAX,
                            hash_key) != 0) {
            return HTTP_INTERNAL_SERVER_ERROR;  /* the constants are wrong */
        }
    }
    sections = (apr_uint32_t *)(base + addr_size);
    server_count = &sections[nsections];
    mws_capacity_compute(s, &capacity);
    mws_capacity_log(s, &capacity);
    return OK;
}

void mws_limits_child_init(apr_pool_t *pchild, server_rec *s)
{
    int threaded = 0;
    apr_status_t rv;

    if (ap_mpm_query(AP_MPMQ_IS_THREADED, &threaded) == APR_SUCCESS) {
        block_stop_signals = (threaded == AP_MPMQ_NOT_SUPPORTED);
    }
    if (!addr_mutex) {
        return;
    }
    rv = apr_global_mutex_child_init(&addr_mutex,
                                     apr_global_mutex_lockfile(addr_mutex),
                                     pchild);
    if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_CRIT, rv, s, MWS_LOGNO(00063)
                     "cannot attach to the mutex of the per-address table: "
                     "WebSockets under WebSocketMaxConnectionsPerAddress "
                     "are refused in this process");
        addrs = NULL;
        addr_head = NULL;
        addr_mutex = NULL;
    }
}

/* ---- capacity: what the MPM accepts -------------------------------------- */

/* Is the condition of an <IfModule> or <IfDefine> section true?  Other
 * sections count as true (AsyncRequestWorkerFactor is a server-wide
 * directive: it can only be at the top or in such conditions). */
static int section_true(server_rec *s, const ap_directive_t *d)
{
    APR_OPTIONAL_FN_TYPE(ap_find_loaded_module_symbol) *find_symbol;
    const char *arg = d->args;
    char name[128];
    apr_size_t n;
    int neg = 0, found;

    if (!arg) {
        return 1;
    }
    if (*arg == '!') {
        neg = 1;
        ++arg;
    }
    n = strcspn(arg, "> \t");
    if (n == 0 || n >= sizeof(name)) {
        return 1;
    }
    memcpy(name, arg, n);
    name[n] = '\0';
    if (!strcasecmp(d->directive, "<IfDefine")) {
        found = ap_exists_config_define(name);
    }
    else if (!strcasecmp(d->directive, "<IfModule")) {
        if (ap_strstr_c(name, ".c")) {
            found = ap_find_linked_module(name) != NULL;
        }
        else if ((find_symbol = APR_RETRIEVE_OPTIONAL_FN(
                      ap_find_loaded_module_symbol)) != NULL) {
            found = find_symbol(s, name) != NULL;
        }
        else {
            return 1;
        }
    }
    else {
        return 1;
    }
    return neg ? !found : found;
}

/* The last AsyncRequestWorkerFactor the configuration applies (the event
 * MPM keeps the last one), as the MPM reads it. */
static void find_factor(server_rec *s, const ap_directive_t *d,
                        mws_capacity *cap)
{
    for (; d; d = d->next) {
        if (d->first_child) {
            if (section_true(s, d)) {
                find_factor(s, d->first_child, cap);
            }
        }
        else if (!strcasecmp(d->directive, "AsyncRequestWorkerFactor")
                 && d->args) {
            char *end;
            double v = strtod(d->args, &end);
            unsigned scaled;

            if (*end || !(v > 0)) {
                continue;               /* the MPM refuses it at start-up */
            }
            /* event.c: worker_factor = val * 16 (at least 16), used as
             * worker_factor / 16 */
            scaled = v >= 1e6 ? 16000000u : (unsigned)(v * 16);
            cap->factor = (int)((scaled < 16 ? 16 : scaled) / 16);
            cap->factor_from = apr_psprintf(s->process->pconf, "%s:%d",
                                            d->filename, d->line_num);
        }
    }
}

void mws_capacity_compute(server_rec *s, mws_capacity *cap)
{
    int async = 0, waitio = 0, threads = 0, daemons = 0;

    memset(cap, 0, sizeof(*cap));
    cap->mpm = ap_show_mpm();
    cap->factor = 1;
    cap->factor_from = "default";
    ap_mpm_query(AP_MPMQ_IS_ASYNC, &async);
#ifdef AP_MPMQ_CAN_WAITIO
    ap_mpm_query(AP_MPMQ_CAN_WAITIO, &waitio);
#endif
    if (ap_mpm_query(AP_MPMQ_MAX_THREADS, &threads) != APR_SUCCESS
        || ap_mpm_query(AP_MPMQ_MAX_DAEMONS, &daemons) != APR_SUCCESS
        || threads < 1 || daemons < 1) {
        return;                         /* per_server 0: no auto cap */
    }
    cap->threads = threads;
    cap->daemons = daemons;
    if (threads == 1) {
        /* prefork: a process per WebSocket, a fifth kept for HTTP */
        cap->reserve = daemons / 5 > 0 ? daemons / 5 : 1;
        cap->per_child = 1;
        cap->per_server = daemons - cap->reserve;
        return;
    }
    cap->reserve = threads / 5 > 0 ? threads / 5 : 1;
    cap->per_child = threads - cap->reserve;
    cap->async = async && waitio && !strcmp(cap->mpm, "event");
    if (cap->async) {
        cap->factor = 2;                /* event.c's DEFAULT_WORKER_FACTOR */
        find_factor(s, ap_conftree, cap);
        /* the listener stops at ThreadsPerChild + idle x factor
         * connections (event.c, connections_above_limit): with
         * `reserve` threads busy with HTTP and the rest idle, that
         * leaves (threads - reserve) x (1 + factor) for WebSockets */
        cap->per_child *= 1 + cap->factor;
    }
    cap->per_server = cap->per_child * daemons;
}

static void mws_capacity_log(server_rec *s, const mws_capacity *cap)
{
    if (cap->per_server <= 0) {
        ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, s, MWS_LOGNO(00120)
                     "WebSocket capacity unknown (MPM %s does not say its "
                     "threads and children): WebSocketMaxConnections auto "
                     "sets no limit", cap->mpm);
    }
    else if (cap->async) {
        ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, s, MWS_LOGNO(00120)
                     "WebSocket capacity: %d per child, %d per server "
                     "(MPM event, idle WebSockets parked: (ThreadsPerChild "
                     "%d - %d kept for HTTP) x (1 + AsyncRequestWorkerFactor "
                     "%d [%s]) x %d children [MaxRequestWorkers / "
                     "ThreadsPerChild]); raise AsyncRequestWorkerFactor "
                     "(and MaxRequestWorkers) for more; "
                     "WebSocketMaxConnections auto refuses beyond it with 503",
                     cap->per_child, cap->per_server, cap->threads,
                     cap->reserve, cap->factor, cap->factor_from,
                     cap->daemons);
    }
    else if (cap->threads == 1) {
        ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, s, MWS_LOGNO(00120)
                     "WebSocket capacity: 1 per child, %d per server (MPM "
                     "%s, a process per WebSocket: MaxRequestWorkers %d - %d "
                     "kept for HTTP); raise MaxRequestWorkers, or use the "
                     "event MPM, for more; WebSocketMaxConnections auto "
                     "refuses beyond it with 503", cap->per_server, cap->mpm,
                     cap->daemons, cap->reserve);
    }
    else {
        ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, s, MWS_LOGNO(00120)
                     "WebSocket capacity: %d per child, %d per server (MPM "
                     "%s, a thread per WebSocket: (ThreadsPerChild %d - %d "
                     "kept for HTTP) x %d children [MaxRequestWorkers / "
                     "ThreadsPerChild]); raise MaxRequestWorkers (or "
                     "ThreadsPerChild), or use the event MPM, for more; "
                     "WebSocketMaxConnections auto refuses beyond it with 503",
                     cap->per_child, cap->per_server, cap->mpm, cap->threads,
                     cap->reserve, cap->daemons);
    }
}

const mws_capacity *mws_capacity_get(void)
{
    return &capacity;
}

apr_uint32_t mws_capacity_used(void)
{
    return server_count ? apr_atomic_read32(server_count) : 0;
}

/* Take n units of counter c unless that goes over cap; 1 if taken. */
static int take_n(apr_uint32_t *c, apr_uint32_t n, apr_uint32_t cap)
{
    apr_uint32_t v;

    for (;;) {
        v = apr_atomic_read32(c);
        if (v + n > cap) {
            return 0;
        }
        if (apr_atomic_cas32(c, v + n, v) == v) {
            return 1;
        }
    }
}

/* The server-wide count: under auto, refuse past the capacity. */
static int admit_capacity(request_rec *r, const mws_dir_conf *d,
                          mws_limit_hold *held)
{
    static apr_time_t logged;           /* this child's last MWS00121 */
    int blocking = d->driver == MWS_DRIVER_BLOCKING
                   || r->connection->master != NULL;
    apr_uint32_t w = 1;
    apr_time_t now, last;

    if (capacity.async && blocking) {
        w = (apr_uint32_t)(1 + capacity.factor);
    }
    if ((d->max_conns != MWS_UNSET && d->max_conns != MWS_MAXCONN_AUTO)
        || capacity.per_server <= 0) {
        apr_atomic_add32(server_count, w);      /* counted, not capped */
    }
    else if (!take_n(server_count, w, (apr_uint32_t)capacity.per_server)) {
        now = apr_time_now();
        last = __atomic_load_n(&logged, __ATOMIC_RELAXED);
        if (now - last >= MWS_FULL_LOG_GAP
            && __atomic_compare_exchange_n(&logged, &last, now, 0,
                                           __ATOMIC_RELAXED,
                                           __ATOMIC_RELAXED)) {
            ap_log_rerror(APLOG_MARK, APLOG_WARNING, 0, r, MWS_LOGNO(00121)
                          "the server's WebSocket capacity (%d, "
                          "WebSocketMaxConnections auto; MWS00120 at "
                          "start-up says what raises it) is reached: "
                          "upgrades get 503 (logged at most once a minute "
                          "per child)", capacity.per_server);
        }
        ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, r, MWS_LOGNO(00122)
                      "WebSocket capacity %d reached: refusing %s with 503",
                      capacity.per_server, r->uri);
        return HTTP_SERVICE_UNAVAILABLE;
    }
    held->weight = (int)w;
    return OK;
}

/* ---- addresses ----------------------------------------------------------- */

static const unsigned char v4mapped[12] = {
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff
};

int mws_addr16_parse(const char *text, unsigned char out[16])
{
    char buf[64];
    const char *zone;
    apr_size_t n;

    if (!text) {
        return 0;
    }
    zone = ap_strchr_c(text, '%');
    n = zone ? (apr_size_t)(zone - text) : strlen(text);
    if (n == 0 || n >= sizeof(buf)) {
        return 0;
    }
    memcpy(buf, text, n);
    buf[n] = '\0';
    if (ap_strchr_c(buf, ':')) {
        if (inet_pton(AF_INET6, buf, out) != 1) {
            return 0;
        }
        return memcmp(out, v4mapped, 12) ? 6 : 4;
    }
    if (inet_pton(AF_INET, buf, out + 12) != 1) {
        return 0;
    }
    memcpy(out, v4mapped, 12);
    return 4;
}

int mws_addr16_sockaddr(const apr_sockaddr_t *sa, unsigned char out[16])
{
    if (sa->family == AF_INET) {
        memcpy(out, v4mapped, 12);
        memcpy(out + 12, &sa->sa.sin.sin_addr, 4);
        return 4;
    }
#if APR_HAVE_IPV6
    if (sa->family == AF_INET6) {
        memcpy(out, &sa->sa.sin6.sin6_addr, 16);
        return memcmp(out, v4mapped, 12) ? 6 : 4;
    }
#endif
    return 0;
}

int mws_addr16_loopback(const unsigned char a[16])
{
    static const unsigned char one[16] = {
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1
    };

    return !memcmp(a, one, 16) || (!memcmp(a, v4mapped, 12) && a[12] == 127);
}

/* The table key of a client address: 16 bytes, then the prefix length.
 * IPv4 always counts per address; IPv6 per v6prefix bits.  Returns the
 * family (4, 6), or 0 when ip is not an IP address. */
static int addr_key(const char *ip, int v6prefix, unsigned char *key)
{
    int family = mws_addr16_parse(ip, key), i;

    if (family == 0) {
        return 0;
    }
    if (family == 4) {
        key[16] = 128;
        return 4;
    }
    for (i = 0; i < 16; ++i) {
        int bits = v6prefix - 8 * i;
        if (bits <= 0) {
            key[i] = 0;
        }
        else if (bits < 8) {
            key[i] &= (unsigned char)(0xff00u >> bits);
        }
    }
    key[16] = (unsigned char)v6prefix;
    return 6;
}

/* prefork ends a child from its SIGTERM/SIGHUP handler, which gives back
 * the connection's counts: it must not come while this process holds the
 * mutex. */
static apr_status_t addr_lock(sigset_t *old)
{
    sigset_t stop;
    apr_status_t rv;

    if (block_stop_signals) {
        sigemptyset(&stop);
        sigaddset(&stop, SIGTERM);
        sigaddset(&stop, SIGHUP);
        pthread_sigmask(SIG_BLOCK, &stop, old);
    }
    rv = apr_global_mutex_lock(addr_mutex);
    if (rv != APR_SUCCESS && block_stop_signals) {
        pthread_sigmask(SIG_SETMASK, old, NULL);
    }
    return rv;
}

static void addr_unlock(sigset_t *old)
{
    apr_global_mutex_unlock(addr_mutex);
    if (block_stop_signals) {
        pthread_sigmask(SIG_SETMASK, old, NULL);
    }
}

/* Take one unit of counter c unless it is at cap; 1 if taken. */
static int take(apr_uint32_t *c, apr_uint32_t cap)
{
    apr_uint32_t v;

    for (;;) {
        v = apr_atomic_read32(c);
        if (v >= cap) {
            return 0;
        }
        if (apr_atomic_cas32(c, v + 1, v) == v) {
            return 1;
        }
    }
}

static int admit_addr(request_rec *r, const mws_dir_conf *d, int v6prefix,
                      mws_limit_hold *held)
{
    unsigned char key[WS_ADDR_KEY];
    ws_addr_result res;
    apr_status_t rv;
    apr_time_t now;
    sigset_t old;
    int log_full = 0, family;

    if (!addrs) {
        return HTTP_SERVICE_UNAVAILABLE;    /* MWS00063 said why */
    }
    if (!(family = addr_key(r->useragent_ip, v6prefix, key))) {
        ap_log_rerror(APLOG_MARK, APLOG_WARNING, 0, r, MWS_LOGNO(00061)
                      "client address '%s' is not an IP address: refusing "
                      "the WebSocket (WebSocketMaxConnectionsPerAddress)",
                      r->useragent_ip ? r->useragent_ip : "");
        return HTTP_SERVICE_UNAVAILABLE;
    }
    if ((rv = addr_lock(&old)) != APR_SUCCESS) {
        ap_log_rerror(APLOG_MARK, APLOG_ERR, rv, r, MWS_LOGNO(00065)
                      "cannot lock the per-address table: refusing the "
                      "WebSocket");
        return HTTP_SERVICE_UNAVAILABLE;
    }
    res = ws_addrtab_take(addrs, key, (apr_uint32_t)d->max_conns_addr);
    if (res == WS_ADDR_FULL) {
        now = apr_time_now();
        if (now - addr_head->full_logged >= MWS_FULL_LOG_GAP) {
            addr_head->full_logged = now;
            log_full = 1;
        }
    }
    addr_unlock(&old);

    switch (res) {
    case WS_ADDR_TAKEN:
        memcpy(held->addr_key, key, WS_ADDR_KEY);
        held->addr = 1;
        return OK;
    case WS_ADDR_AT_CAP:
        ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r, MWS_LOGNO(00025)
                      "WebSocketMaxConnectionsPerAddress %d reached for "
                      "%s%s: refusing with 503", d->max_conns_addr,
                      r->useragent_ip, family == 6
                      ? apr_psprintf(r->pool, " (counted per /%d)", v6prefix)
                      : "");
        return HTTP_SERVICE_UNAVAILABLE;
    default:
        if (log_full) {
            ap_log_rerror(APLOG_MARK, APLOG_WARNING, 0, r, MWS_LOGNO(00060)
                          "the per-address table is full (%u client "
                          "addresses with open WebSockets): new addresses "
                          "get 503 until some close (logged at most once a "
                          "minute)", (unsigned)MWS_ADDR_MAX);
        }
        return HTTP_SERVICE_UNAVAILABLE;
    }
}

/*
 * Admit a new WebSocket of request r under the caps of d.  Returns OK and
 * fills held (to give back with mws_limits_release), or HTTP 503.
 */
int mws_limits_admit(request_rec *r, const mws_dir_conf *d, int v6prefix,
                     mws_limit_hold *held)
{
    int status;

    held->section = -1;
    held->addr = -1;
    held->weight = 0;
    if (!sections) {
        return OK;
    }
    if ((status = admit_capacity(r, d, held)) != OK) {
        return status;
    }
    if (d->max_conns > 0 && d->max_conns_index >= 0
        && d->max_conns_index < nsections) {
        if (!take(&sections[d->max_conns_index],
                  (apr_uint32_t)d->max_conns)) {
            ap_log_rerror(APLOG_MARK, APLOG_WARNING, 0, r, MWS_LOGNO(00024)
                          "WebSocketMaxConnections %d reached for %s: "
                          "refusing with 503", d->max_conns, r->uri);
            mws_limits_release(held);
            return HTTP_SERVICE_UNAVAILABLE;
        }
        held->section = d->max_conns_index;
    }
    if (d->max_conns_addr > 0
        && (status = admit_addr(r, d, v6prefix, held)) != OK) {
        mws_limits_release(held);
        return status;
    }
    return OK;
}

void mws_limits_release(mws_limit_hold *held)
{
    sigset_t old;

    if (!sections) {
        return;
    }
    if (held->weight > 0) {
        apr_atomic_sub32(server_count, (apr_uint32_t)held->weight);
        held->weight = 0;
    }
    if (held->section >= 0) {
        apr_atomic_dec32(&sections[held->section]);
        held->section = -1;
    }
    if (held->addr >= 0 && addrs) {
        apr_status_t rv = addr_lock(&old);
        if (rv == APR_SUCCESS) {
            ws_addrtab_give(addrs, held->addr_key);
            addr_unlock(&old);
        }
        else {
            ap_log_error(APLOG_MARK, APLOG_ERR, rv, ap_server_conf,
                         MWS_LOGNO(00066) "cannot lock the per-address "
                         "table: a WebSocket's count is not given back");
        }
    }
    held->addr = -1;
}

/*
 * A connection's limits, shared: most connections of a server have one of a
 * few sets (one per location, per Timeout), and a set is 80 bytes that every
 * idle WebSocket would otherwise carry in its pool's first page.  This
 * child keeps each distinct set once, for the rest of its life, in static
 * storage (nothing to free at exit, while a thread may still read one);
 * past MWS_LIMITS_SHARED sets, a connection gets its own copy in pool.
 */
#define MWS_LIMITS_SHARED 64
static pthread_mutex_t shared_lock = PTHREAD_MUTEX_INITIALIZER;
static mws_limits shared_sets[MWS_LIMITS_SHARED];
static int n_shared_sets;

static int limits_same(const mws_limits *a, const mws_limits *b)
{
    /* field by field: the padding of a caller's copy is not set */
    return a->max_message == b->max_message && a->max_frame == b->max_frame
           && a->max_queued == b->max_queued
           && a->idle_timeout == b->idle_timeout
           && a->ping_interval == b->ping_interval
           && a->close_timeout == b->close_timeout
           && a->read_timeout == b->read_timeout
           && a->compression == b->compression
           && a->window_bits == b->window_bits
           && a->mem_level == b->mem_level
           && a->compress_min == b->compress_min;
}

const mws_limits *mws_limits_shared(const mws_limits *l, apr_pool_t *pool)
{
    const mws_limits *found = NULL;
    int i;

    pthread_mutex_lock(&shared_lock);
    for (i = 0; i < n_shared_sets && !found; ++i) {
        if (limits_same(&shared_sets[i], l)) {
            found = &shared_sets[i];
        }
    }
    if (!found && n_shared_sets < MWS_LIMITS_SHARED) {
        shared_sets[n_shared_sets] = *l;
        found = &shared_sets[n_shared_sets++];
    }
    pthread_mutex_unlock(&shared_lock);
    return found ? found : apr_pmemdup(pool, l, sizeof(*l));
}
