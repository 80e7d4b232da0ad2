/*
 * mws_instance.c -- handlers and their instances: loading a handler (a shared
 * object or a registered name), one instance per WebSocketHandler line, its
 * init and shutdown in every child.
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


/* Loaded handler shared objects, by resolved path, per configuration
 * generation (the table lives in pconf, recreated on every restart). */
static apr_hash_t *mws_dsos;
/* Every WebSocketHandler line of this generation. */
apr_array_header_t *mws_instances;

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

const char *mws_instance_load(cmd_parms *cmd, const char *arg,
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
void mws_instance_scope(cmd_parms *cmd, mws_instance *inst)
{
    const server_rec *s = cmd->server;
    const char *ident = apr_psprintf(cmd->temp_pool, "%s\n%s\n%s\n%s:%u",
                                     inst->where, inst->name,
                                     cmd->path ? cmd->path : "",
                                     s->defn_name ? s->defn_name : "",
                                     s->defn_line_number);
    int i, again, n = 0;

    mws_channels_scope(inst, ident);
    do {
        again = 0;
        for (i = 0; i < mws_instances->nelts; ++i) {
            if (!strcmp(APR_ARRAY_IDX(mws_instances, i, mws_instance *)->scope,
                        inst->scope)) {
                mws_channels_scope(inst, apr_psprintf(cmd->temp_pool, "%s#%d",
                                                    ident, ++n));
                again = 1;
                break;
            }
        }
    } while (again);
}

/* ---- per child -------------------------------------------------------- */

static apr_status_t instances_shutdown(void *unused)
{
    int i;

    mws_registry_report_all();      /* on_close before shutdown */
    for (i = 0; i < mws_instances->nelts; ++i) {
        mws_instance *inst = APR_ARRAY_IDX(mws_instances, i, mws_instance *);
        if (inst->ready && inst->h->shutdown) {
            mws_call prev = mws_instance_enter(inst, "shutdown");
            inst->h->shutdown(inst->data);
            mws_instance_leave(prev);
        }
        inst->ready = 0;
    }
    return APR_SUCCESS;
}

void mws_instance_pre_config(apr_pool_t *pconf)
{
    mws_dsos = apr_hash_make(pconf);
    mws_instances = apr_array_make(pconf, 4, sizeof(mws_instance *));
}

/* ---- configuration time (parent) --------------------------------------- */

/* check_options() of every line (also for httpd -t): a complaint names the
 * WebSocketHandlerOption's file and line, else the WebSocketHandler's. */
int mws_instance_check_config(server_rec *s)
{
    int i;

    for (i = 0; i < mws_instances->nelts; ++i) {
        mws_instance *inst = APR_ARRAY_IDX(mws_instances, i, mws_instance *);
        const apr_array_header_t *opts = inst->dconf->options;
        const apr_array_header_t *where = inst->dconf->option_where;
        size_t bad = (size_t)-1;
        const char *why, *line;
        mws_call prev;

        if (!MWS_H_HAS(inst->h, check_options)) {
            continue;
        }
        prev = mws_instance_enter(inst, "check_options");
        why = inst->h->check_options(&mws_host_table,
                                     (const mws_option *)opts->elts,
                                     (size_t)opts->nelts, &bad);
        mws_instance_leave(prev);
        if (why == NULL) {
            continue;
        }
        if (bad < (size_t)opts->nelts && bad < (size_t)where->nelts) {
            line = apr_psprintf(s->process->pconf, "%s: WebSocketHandlerOption"
                                " %s", APR_ARRAY_IDX(where, bad, const char *),
                                APR_ARRAY_IDX(opts, bad, mws_option).key);
        }
        else {
            line = apr_psprintf(s->process->pconf, "%s: WebSocketHandler",
                                inst->where);
        }
        ap_log_error(APLOG_MARK, APLOG_STARTUP | APLOG_EMERG, 0, NULL,
                     MWS_LOGNO(00086) "%s: handler %s refuses its options: "
                     "%.400s", line, inst->name, why);
        return !OK;
    }
    return OK;
}

/* init_server() of every line, in the parent before the children start
 * (and after every restart). */
int mws_instance_post_config(apr_pool_t *pconf, server_rec *s)
{
    uint32_t *counters = NULL;
    int i, rc;

    if (mws_instances->nelts
        && !(counters = mws_linemem_counters(pconf, s, mws_instances->nelts))) {
        return !OK;
    }
    for (i = 0; i < mws_instances->nelts; ++i) {
        mws_instance *inst = APR_ARRAY_IDX(mws_instances, i, mws_instance *);
        const apr_array_header_t *opts = inst->dconf->options;
        mws_call prev;

        inst->crashes = &counters[2 * i];
        inst->init_crashes = &counters[2 * i + 1];
        inst->shared = NULL;
        if (!MWS_H_HAS(inst->h, init_server)) {
            continue;
        }
        mws_linemem_allow(inst, pconf);
        prev = mws_instance_enter(inst, "init_server");
        rc = inst->h->init_server(&mws_host_table, (mws_line *)inst,
                                  (const mws_option *)opts->elts,
                                  (size_t)opts->nelts);
        mws_instance_leave(prev);
        mws_linemem_allow(NULL, NULL);
        if (rc != 0) {
            ap_log_error(APLOG_MARK, APLOG_STARTUP | APLOG_EMERG, 0, NULL,
                         MWS_LOGNO(00087) "%s: handler %s: init_server "
                         "failed (returned %d)", inst->where, inst->name, rc);
            return !OK;
        }
    }
    return OK;
}

/* ---- per child (continued) ----------------------------------------------- */

/* init() crashes in a row after which children stop calling it: each one
 * died there, and a child that dies at start takes every request it was
 * about to serve (static pages too) with it. */
#define MWS_INIT_CRASH_LIMIT 3

/* Every instance's init() in this child; their shutdown() when it exits. */
void mws_instance_child_init(apr_pool_t *pchild, server_rec *s)
{
    int i;

    mws_handler_crash_names();
    for (i = 0; i < mws_instances->nelts; ++i) {
        mws_instance *inst = APR_ARRAY_IDX(mws_instances, i, mws_instance *);
        const apr_array_header_t *opts = inst->dconf->options;
        mws_call prev;
        int rc = 0;

        inst->data = NULL;
        inst->ready = 1;
        if (inst->init_crashes && __atomic_load_n(inst->init_crashes,
                                                  __ATOMIC_RELAXED)
                                  >= MWS_INIT_CRASH_LIMIT) {
            inst->ready = 0;
            ap_log_error(APLOG_MARK, APLOG_ERR, 0, s, MWS_LOGNO(00088)
                         "handler %s (%s): init crashed %d times in a row; "
                         "not called again until httpd restarts, its "
                         "WebSockets answer 500", inst->name, inst->where,
                         MWS_INIT_CRASH_LIMIT);
            continue;
        }
        if (inst->h->init) {
            prev = mws_instance_enter(inst, "init");
            rc = inst->h->init(&mws_host_table,
                               (const mws_option *)opts->elts,
                               (size_t)opts->nelts, &inst->data);
            mws_instance_leave(prev);
        }
        if (inst->init_crashes) {
            __atomic_store_n(inst->init_crashes, 0, __ATOMIC_RELAXED);
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
}
