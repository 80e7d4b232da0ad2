/*
 * mws_registry.c -- the child's registry of open connections: find by id,
 * close all with 1001 when the child stops, on_close for all at its exit.
 */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

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


/* ---- registry of this child's connections ----------------------------- */

static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static mws_conn *reg_head;
static apr_size_t reg_count;

void mws_registry_add(mws_conn *mc)
{
    pthread_mutex_lock(&reg_lock);
    mc->b->reg_prev = NULL;
    mc->b->reg_next = reg_head;
    if (reg_head) {
        reg_head->b->reg_prev = mc;
    }
    reg_head = mc;
    ++reg_count;
    pthread_mutex_unlock(&reg_lock);
}

static void registry_remove(mws_conn *mc)
{
    pthread_mutex_lock(&reg_lock);
    if (mc->b->reg_prev || reg_head == mc) {
        if (mc->b->reg_prev) {
            mc->b->reg_prev->b->reg_next = mc->b->reg_next;
        }
        else {
            reg_head = mc->b->reg_next;
        }
        if (mc->b->reg_next) {
            mc->b->reg_next->b->reg_prev = mc->b->reg_prev;
        }
        mc->b->reg_next = mc->b->reg_prev = NULL;
        --reg_count;
    }
    pthread_mutex_unlock(&reg_lock);
}

void mws_registry_init(apr_pool_t *p)
{
    mws_conn_on_end(registry_remove);
    pthread_mutex_lock(&reg_lock);
    reg_head = NULL;
    reg_count = 0;
    pthread_mutex_unlock(&reg_lock);
}

/* Collect this child's connections, retained; *n is set.  Free with
 * put_all(). */
static mws_conn **get_all(apr_size_t *n)
{
    mws_conn *mc, **all;

    *n = 0;
    pthread_mutex_lock(&reg_lock);
    all = malloc(sizeof(*all) * (reg_count + 1));
    for (mc = reg_head; all && mc; mc = mc->b->reg_next) {
        all[(*n)++] = mws_conn_retain(mc);
    }
    pthread_mutex_unlock(&reg_lock);
    return all;
}

static void put_all(mws_conn **all, apr_size_t n)
{
    apr_size_t i;

    for (i = 0; i < n; ++i) {
        mws_conn_release(all[i]);
    }
    free(all);
}

/* Close every open connection of this child with 1001 (stop or restart):
 * each driver writes what was queued, then the close.  On a hard stop the
 * drivers may not run again: write the close now where that is safe. */
void mws_registry_going_away(int graceful)
{
    apr_size_t n, i;
    mws_conn **all = get_all(&n);

    for (i = 0; i < n; ++i) {
        mws_conn_going_away(all[i]);
        if (!graceful) {
            mws_conn_last_words(all[i]);
        }
    }
    put_all(all, n);
}

/* The child is exiting while connections are still registered (prefork
 * runs its exit from a signal handler on the connection's own thread):
 * give every handler its on_close now. */
void mws_registry_report_all(void)
{
    apr_size_t n, i;
    mws_conn **all = get_all(&n);

    for (i = 0; i < n; ++i) {
        /* 1001 only if the client was told so; else no handshake: 1006 */
        if (__atomic_load_n(&all[i]->b->close_sent, __ATOMIC_ACQUIRE)) {
            mws_handler_close(all[i], (int)all[i]->b->close_code,
                                  "server shutting down", 20);
        }
        else {
            mws_handler_close(all[i], WS_CLOSE_ABNORMAL, "", 0);
        }
    }
    put_all(all, n);
}

mws_conn *mws_registry_find(uint64_t id)
{
    mws_conn *mc;

    pthread_mutex_lock(&reg_lock);
    for (mc = reg_head; mc; mc = mc->b->reg_next) {
        if (mc->id == id) {
            mws_conn_retain(mc);
            break;
        }
    }
    pthread_mutex_unlock(&reg_lock);
    return mc;
}
