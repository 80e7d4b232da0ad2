/*
 * mws_linemem.c -- state a handler line shares across child processes (API
 * 1.1): shared memory and a cross-process mutex that init_server() creates
 * in the parent; and the crash counters of every line.
 *
 * The segment is anonymous shared memory (apr_shm_create without a file
 * name), so no process outside this server's tree can map it.  The mutex
 * lives at the start of the segment: a robust, process-shared pthread
 * mutex.  Not apr_global_mutex/ap_global_mutex_create, for a measured
 * reason: those are destroyed with the configuration pool at a restart
 * (sysvsem ids removed, pthread mutexes marked destroyed) while the old
 * generation's children still serve WebSockets and lock them, which then
 * fails.  A mutex inside the segment lives exactly as long as the last
 * mapping of the segment, and a robust mutex is given back when a child
 * dies holding it (EOWNERDEAD), which a handler that crashes needs.
 */
#include <errno.h>
#include <pthread.h>
#include <string.h>

#include "apr_strings.h"
#include "apr_shm.h"
#include "httpd.h"
#include "http_log.h"
#include "http_main.h"

#include "mws_private.h"

/* The head of a line's segment; the handler's memory follows it. */
typedef struct {
    pthread_mutex_t mutex;
    size_t size;                 /* the handler's bytes after the head    */
} mws_linemem_head;
#define MWS_LINEMEM_HEAD APR_ALIGN(sizeof(mws_linemem_head), 64)

/* The line whose init_server() runs (parent, single-threaded): the only
 * one that may create its memory now. */
static mws_instance *creating;
static apr_pool_t *creating_pool;

void mws_linemem_allow(mws_instance *inst, apr_pool_t *pconf)
{
    creating = inst;
    creating_pool = pconf;
}

int mws_linemem_create(mws_line *line, size_t size)
{
    mws_instance *inst = (mws_instance *)line;
    pthread_mutexattr_t attr;
    mws_linemem_head *head;
    apr_shm_t *shm;
    apr_status_t rv;

    if (!inst || inst != creating || inst->shared) {
        return MWS_ERR_STATE;
    }
    if (size == 0 || size > MWS_SHARED_MAX) {
        return size ? MWS_ERR_TOO_BIG : MWS_ERR_INVALID;
    }
    rv = apr_shm_create(&shm, MWS_LINEMEM_HEAD + size, NULL, creating_pool);
    if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_ERR, rv, ap_server_conf,
                     MWS_LOGNO(00082) "handler %s (%s): cannot create %"
                     APR_SIZE_T_FMT " bytes of shared memory", inst->name,
                     inst->where, size);
        return MWS_ERR_NOMEM;
    }
    head = apr_shm_baseaddr_get(shm);
    memset(head, 0, MWS_LINEMEM_HEAD + size);
    head->size = size;
    if (pthread_mutexattr_init(&attr)
        || pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED)
        || pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST)
        || pthread_mutex_init(&head->mutex, &attr)) {
        ap_log_error(APLOG_MARK, APLOG_ERR, 0, ap_server_conf,
                     MWS_LOGNO(00083) "handler %s (%s): cannot make the "
                     "shared memory's mutex", inst->name, inst->where);
        apr_shm_destroy(shm);
        return MWS_ERR_NOMEM;
    }
    pthread_mutexattr_destroy(&attr);
    /* The parent's mapping goes with pconf at the next restart (the
     * mutex is never destroyed: old children may still hold it); the
     * children keep theirs until they exit. */
    inst->shared = head;
    return MWS_OK;
}

void *mws_linemem_mem(mws_line *line, size_t *size)
{
    mws_linemem_head *head = line ? ((mws_instance *)line)->shared : NULL;

    if (size) {
        *size = head ? head->size : 0;
    }
    return head ? (char *)head + MWS_LINEMEM_HEAD : NULL;
}

int mws_linemem_lock(mws_line *line)
{
    mws_instance *inst = (mws_instance *)line;
    mws_linemem_head *head = inst ? inst->shared : NULL;
    int rc;

    if (!head) {
        return MWS_ERR_STATE;
    }
    rc = pthread_mutex_lock(&head->mutex);
    if (rc == EOWNERDEAD) {
        /* its holder died (a crash inside the handler, a kill -9): the
         * lock is ours, the memory may be half-updated */
        pthread_mutex_consistent(&head->mutex);
        ap_log_error(APLOG_MARK, APLOG_WARNING, 0, ap_server_conf,
                     MWS_LOGNO(00084) "handler %s (%s): a process died "
                     "holding the shared memory's lock; the memory may be "
                     "inconsistent", inst->name, inst->where);
        return MWS_OK;
    }
    return rc ? MWS_ERR_STATE : MWS_OK;
}

int mws_linemem_unlock(mws_line *line)
{
    mws_linemem_head *head = line ? ((mws_instance *)line)->shared : NULL;

    if (!head) {
        return MWS_ERR_STATE;
    }
    return pthread_mutex_unlock(&head->mutex) ? MWS_ERR_STATE : MWS_OK;
}

/* ---- crash counters --------------------------------------------------- */

/* Two counters per line in one anonymous segment of this generation:
 * crashes in any callback, and init crashes in a row (a child that dies in
 * init() is replaced by one that will die there too). */
uint32_t *mws_linemem_counters(apr_pool_t *pconf, server_rec *s, int n)
{
    apr_shm_t *shm;
    apr_status_t rv;
    uint32_t *c;

    rv = apr_shm_create(&shm, sizeof(uint32_t) * 2 * (apr_size_t)n, NULL,
                        pconf);
    if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_EMERG, rv, s, MWS_LOGNO(00085)
                     "cannot create the handlers' crash counters");
        return NULL;
    }
    c = apr_shm_baseaddr_get(shm);
    memset(c, 0, sizeof(uint32_t) * 2 * (apr_size_t)n);
    return c;
}
