/*
 * badabi.c -- test-only handlers that mod_websocket must refuse at
 * configuration time (apache2 -t names the file and line):
 *
 *   mws_handler_entry  abi_major MWS_ABI_MAJOR + 1 (an incompatible API)
 *   mws_newer_minor    abi_minor MWS_ABI_MINOR + 1 (newer than the module)
 *   mws_no_callbacks   neither on_message nor on_fragment
 *   mws_null_handler   returns NULL
 *   mws_small_struct   struct_size smaller than API 1.0's mws_handler
 *
 * and one it must accept:
 *   mws_older_ok       a valid 1.0 handler (proves the file itself loads)
 */
#include <stddef.h>

#include "mod_websocket.h"

static int bad_message(mws_conn *c, mws_msg_type type, const void *data,
                       size_t len)
{
    return 0;
}

static const mws_handler major_handler = {
    .abi_major   = MWS_ABI_MAJOR + 1,
    .abi_minor   = 0,
    .struct_size = sizeof(mws_handler),
    .name        = "badabi-major",
    .on_message  = bad_message,
};

static const mws_handler minor_handler = {
    .abi_major   = MWS_ABI_MAJOR,
    .abi_minor   = MWS_ABI_MINOR + 1,
    .struct_size = sizeof(mws_handler),
    .name        = "badabi-minor",
    .on_message  = bad_message,
};

static const mws_handler nocb_handler = {
    .abi_major   = MWS_ABI_MAJOR,
    .abi_minor   = MWS_ABI_MINOR,
    .struct_size = sizeof(mws_handler),
    .name        = "badabi-nocallbacks",
};

static const mws_handler small_handler = {
    .abi_major   = MWS_ABI_MAJOR,
    .abi_minor   = MWS_ABI_MINOR,
    .struct_size = offsetof(mws_handler, on_message),
    .name        = "badabi-small",
    .on_message  = bad_message,
};

static const mws_handler ok_handler = {
    .abi_major   = MWS_ABI_MAJOR,
    .abi_minor   = 0,
    .struct_size = sizeof(mws_handler),
    .name        = "badabi-ok",
    .on_message  = bad_message,
};

MWS_EXPORT const mws_handler *mws_handler_entry(void)
{
    return &major_handler;
}

MWS_EXPORT const mws_handler *mws_newer_minor(void);
MWS_EXPORT const mws_handler *mws_newer_minor(void)
{
    return &minor_handler;
}

MWS_EXPORT const mws_handler *mws_no_callbacks(void);
MWS_EXPORT const mws_handler *mws_no_callbacks(void)
{
    return &nocb_handler;
}

MWS_EXPORT const mws_handler *mws_null_handler(void);
MWS_EXPORT const mws_handler *mws_null_handler(void)
{
    return NULL;
}

MWS_EXPORT const mws_handler *mws_small_struct(void);
MWS_EXPORT const mws_handler *mws_small_struct(void)
{
    return &small_handler;
}

MWS_EXPORT const mws_handler *mws_older_ok(void);
MWS_EXPORT const mws_handler *mws_older_ok(void)
{
    return &ok_handler;
}
