/*
 * mws_stats.c -- the WebSocket figures of every child process, for
 * mod_status (mws_status.c shows them).
 *
 * One shared memory segment, made by the parent at the first start and
 * kept across restarts (retained data): a graceful restart's old children
 * keep writing into the same segment the new generation reads, so their
 * WebSockets stay visible while they drain, and totals go on counting.
 * The segment holds a record per child (twice ServerLimit of them, so that
 * old and new generations fit) and, in record 0, what exited children
 * counted.  A child claims a free record in child_init (compare-and-swap
 * of its pid), adds its totals to record 0 and frees it when it exits; a
 * record whose child died without that is folded by whoever reads the
 * figures next.  Counters are updated with relaxed atomic adds, by the
 * thread that does the counted work; nothing takes a lock.
 */
#include <errno.h>
#include <signal.h>
#include <unistd.h>

#include "apr_shm.h"
#include "apr_atomic.h"
#include "apr_strings.h"

#include "httpd.h"
#include "http_config.h"
#include "http_log.h"
#include "ap_mpm.h"

#include "mws_private.h"

#define MWS_STATS_KEY "mod_websocket-stats"
#define FOLDING ((apr_uint32_t)0xffffffffu)   /* a record being folded */

typedef struct {
    apr_shm_t *shm;
    mws_stats_area *area;
} stats_retained;

static mws_stats_area *area;     /* NULL: no figures (no segment)          */
static mws_stats_child *mine;    /* this child's record, or NULL           */

const int mws_stats_codes[MWS_STAT_NCODES] = {
    1000, 1001, 1002, 1003, 1006, 1007, 1008, 1009, 1010, 1011, 0
};

int mws_stats_post_config(apr_pool_t *pconf, server_rec *s)
{
    stats_retained *ret;
    int limit = 0;
    apr_size_t size;
    apr_status_t rv;

    ret = ap_retained_data_get(MWS_STATS_KEY);
    if (ret && ret->area) {
        area = ret->area;
        return OK;
    }
    if (!ret) {
        ret = ap_retained_data_create(MWS_STATS_KEY, sizeof(*ret));
    }
    /* ServerLimit cannot change at a restart (httpd keeps the first) */
    if (ap_mpm_query(AP_MPMQ_HARD_LIMIT_DAEMONS, &limit) != APR_SUCCESS
        || limit < 1) {
        limit = 16;
    }
    size = sizeof(mws_stats_area)
           + sizeof(mws_stats_child) * (apr_size_t)(2 * limit + 1);
    /* the process pool: it lives across restarts, as the retained data */
    rv = apr_shm_create(&ret->shm, size, NULL, s->process->pool);
    if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_ERR, rv, s, MWS_LOGNO(00123)
                     "cannot create shared memory for the WebSocket "
                     "figures: mod_status shows none");
        area = NULL;
        return OK;
    }
    area = ret->area = apr_shm_baseaddr_get(ret->shm);
    memset(area, 0, size);
    area->nchildren = (apr_uint32_t)(2 * limit + 1);
    return OK;
}

mws_stats_area *mws_stats_area_get(void)
{
    return area;
}

/* Add what record c counted in total to record 0 (not its gauges). */
static void fold(mws_stats_child *c)
{
    mws_stats_child *r = &area->child[0];
    int i;

#define FOLD(f) __atomic_add_fetch(&r->f, \
        __atomic_load_n(&c->f, __ATOMIC_RELAXED), __ATOMIC_RELAXED)
    FOLD(opened);
    FOLD(closed);
    FOLD(msgs_in);
    FOLD(msgs_out);
    FOLD(bytes_in);
    FOLD(bytes_out);
    FOLD(refused_403);
    FOLD(refused_503);
    for (i = 0; i < MWS_STAT_NCODES; ++i) {
        FOLD(closes[i]);
    }
#undef FOLD
}

static apr_status_t child_exit(void *data)
{
    mws_stats_child *c = data;
    apr_uint32_t pid = (apr_uint32_t)getpid();

    if (area && c && __atomic_compare_exchange_n(&c->pid, &pid, FOLDING, 0,
                                                 __ATOMIC_ACQ_REL,
                                                 __ATOMIC_RELAXED)) {
        fold(c);
        memset((char *)c + sizeof(c->pid), 0, sizeof(*c) - sizeof(c->pid));
        __atomic_store_n(&c->pid, 0, __ATOMIC_RELEASE);
    }
    mine = NULL;
    return APR_SUCCESS;
}

void mws_stats_child_init(apr_pool_t *pchild, server_rec *s,
                          const apr_array_header_t *insts)
{
    apr_uint32_t i, zero, pid = (apr_uint32_t)getpid();
    int gen = 0, n;

    mine = NULL;
    if (!area) {
        return;
    }
    ap_mpm_query(AP_MPMQ_GENERATION, &gen);
    for (i = 1; i < area->nchildren; ++i) {
        mws_stats_child *c = &area->child[i];
        zero = 0;
        if (__atomic_compare_exchange_n(&c->pid, &zero, pid, 0,
                                        __ATOMIC_ACQ_REL, __ATOMIC_RELAXED)) {
            memset((char *)c + sizeof(c->pid), 0,
                   sizeof(*c) - sizeof(c->pid));
            c->generation = (apr_uint32_t)gen;
            for (n = 0; n < insts->nelts && n < MWS_STAT_LINES; ++n) {
                mws_instance *inst = APR_ARRAY_IDX(insts, n, mws_instance *);
                memcpy(c->lines[n].scope, inst->scope, MWS_SCOPE_HEX);
            }
            c->nlines = (apr_uint32_t)n;
            mine = c;
            apr_pool_cleanup_register(pchild, c, child_exit,
                                      apr_pool_cleanup_null);
            return;
        }
    }
    ap_log_error(APLOG_MARK, APLOG_WARNING, 0, s, MWS_LOGNO(00124)
                 "no free record for this child's WebSocket figures: "
                 "mod_status does not count its WebSockets");
}

/* Records of children that died without giving theirs back (a crash, a
 * kill): their totals go to record 0, their gauges away.  Any process. */
void mws_stats_reap(void)
{
    apr_uint32_t i, pid;

    if (!area) {
        return;
    }
    for (i = 1; i < area->nchildren; ++i) {
        mws_stats_child *c = &area->child[i];
        pid = __atomic_load_n(&c->pid, __ATOMIC_ACQUIRE);
        if (pid == 0 || pid == FOLDING
            || kill((pid_t)pid, 0) == 0 || errno != ESRCH) {
            continue;
        }
        if (__atomic_compare_exchange_n(&c->pid, &pid, FOLDING, 0,
                                        __ATOMIC_ACQ_REL, __ATOMIC_RELAXED)) {
            fold(c);
            memset((char *)c + sizeof(c->pid), 0,
                   sizeof(*c) - sizeof(c->pid));
            __atomic_store_n(&c->pid, 0, __ATOMIC_RELEASE);
        }
    }
}

/* ---- counting (this child's record) ------------------------------------ */

#define ADD(f, n) do { \
        if (mine) { \
            __atomic_add_fetch(&mine->f, (n), __ATOMIC_RELAXED); \
        } \
    } while (0)

int mws_stats_line(const mws_instance *inst)
{
    apr_uint32_t n;

    if (!mine) {
        return -1;
    }
    for (n = 0; n < mine->nlines; ++n) {
        if (!memcmp(mine->lines[n].scope, inst->scope, MWS_SCOPE_HEX)) {
            return (int)n;
        }
    }
    return -1;
}

void mws_stats_open(mws_conn *mc, int parked_driver)
{
    mc->b->stat_line = mws_stats_line(mc->inst);
    mc->b->stat_driver = parked_driver ? 1 : 2;
    ADD(opened, 1);
    if (parked_driver) {
        ADD(open_parked_driver, 1);
    }
    else {
        ADD(open_blocking_driver, 1);
    }
    if (mc->b->stat_line >= 0) {
        ADD(lines[mc->b->stat_line].open, 1);
    }
}

void mws_stats_close(mws_conn *mc, int code)
{
    int i;

    if (!mc->b->stat_driver) {
        return;                 /* never opened, or counted already */
    }
    ADD(closed, 1);
    if (mc->b->stat_driver == 1) {
        ADD(open_parked_driver, (apr_uint32_t)-1);
    }
    else {
        ADD(open_blocking_driver, (apr_uint32_t)-1);
    }
    if (mc->b->stat_line >= 0) {
        ADD(lines[mc->b->stat_line].open, (apr_uint32_t)-1);
    }
    mc->b->stat_driver = 0;
    for (i = 0; i < MWS_STAT_NCODES - 1; ++i) {
        if (mws_stats_codes[i] == code) {
            break;
        }
    }
    ADD(closes[i], 1);
}

void mws_stats_in(mws_conn *mc, apr_size_t bytes, int messages)
{
    mc->b->bytes_in += bytes;
    mc->b->msgs_in += (apr_uint64_t)messages;
    ADD(bytes_in, bytes);
    ADD(msgs_in, (apr_uint64_t)messages);
}

void mws_stats_msg_out(mws_conn *mc)
{
    __atomic_add_fetch(&mc->b->msgs_out, 1, __ATOMIC_RELAXED);
    ADD(msgs_out, 1);
}

void mws_stats_bytes_out(mws_conn *mc, apr_size_t bytes)
{
    __atomic_add_fetch(&mc->b->bytes_out, bytes, __ATOMIC_RELAXED);
    ADD(bytes_out, bytes);
}

void mws_stats_queued(apr_int64_t delta)
{
    ADD(queued_bytes, (apr_uint64_t)delta);
}

void mws_stats_parked(int delta)
{
    ADD(parked, (apr_uint32_t)delta);
}

void mws_stats_refused(int status)
{
    if (status == HTTP_FORBIDDEN) {
        ADD(refused_403, 1);
    }
    else if (status == HTTP_SERVICE_UNAVAILABLE) {
        ADD(refused_503, 1);
    }
}
