/*
 * mws_shared.c -- state a handler line shares across child processes (API
 * 1.1): shared memory and a cross-process mutex created in the parent by
 * init_server(); and the refusal a handler describes in on_open.
 */
#include "apr_strings.h"
#include "httpd.h"
#include "http_log.h"

#include "mws_private.h"

int mws_shared_create(mws_line *line, size_t size)
{
    (void)line; (void)size;
    return MWS_ERR_STATE;
}

void *mws_shared_mem(mws_line *line, size_t *size)
{
    (void)line;
    if (size) {
        *size = 0;
    }
    return NULL;
}

int mws_shared_lock(mws_line *line)
{
    (void)line;
    return MWS_ERR_STATE;
}

int mws_shared_unlock(mws_line *line)
{
    (void)line;
    return MWS_ERR_STATE;
}

int mws_refuse_reason(mws_request *r, const char *reason)
{
    (void)r; (void)reason;
    return MWS_ERR_STATE;
}

int mws_refuse_body(mws_request *r, const char *content_type,
                    const void *body, size_t len)
{
    (void)r; (void)content_type; (void)body; (void)len;
    return MWS_ERR_STATE;
}
