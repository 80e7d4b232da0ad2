/*
 * echo -- the smallest mod_websocket handler: every text or binary message
 * goes back to its sender as the same type.
 *
 *     <Location /echo>
 *         SetHandler websocket
 *         WebSocketHandler modules/mod_ws_echo.so
 *     </Location>
 */
#include "mod_websocket.h"

static const mws_host *host;

static int echo_init(const mws_host *h, const mws_option *opts, size_t n,
                     void **instance)
{
    host = h;
    return 0;
}

static int echo_message(mws_conn *c, mws_msg_type type, const void *data,
                        size_t len)
{
    int rv = host->send(c, type, data, len);

    /* a connection that is closing is not an error of ours */
    return (rv == MWS_OK || rv == MWS_ERR_CLOSED) ? 0 : -1;
}

static const mws_handler echo_handler = {
    .abi_major   = MWS_ABI_MAJOR,
    .abi_minor   = MWS_ABI_MINOR,
    .struct_size = sizeof(mws_handler),
    .name        = "echo",
    .init        = echo_init,
    .on_message  = echo_message,
};

MWS_EXPORT const mws_handler *mws_handler_entry(void)
{
    return &echo_handler;
}
