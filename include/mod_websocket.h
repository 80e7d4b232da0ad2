/*
 * mod_websocket.h -- the public handler API of mod_websocket.
 *
 * A handler is a shared object written in C against this header alone.  It
 * needs no httpd or APR header.  It exports one function (by default named
 * mws_handler_entry, see MWS_HANDLER_ENTRY_SYMBOL) that returns a pointer to
 * a constant mws_handler; httpd.conf loads it with
 *
 *     LoadModule websocket_module /usr/lib/apache2/modules/mod_websocket.so
 *     <Location /echo>
 *         SetHandler websocket
 *         WebSocketHandler /usr/lib/apache2/modules/mod_ws_echo.so
 *     </Location>
 *
 * ABI rules.  This header is an ABI.  MWS_ABI_MAJOR changes only when a
 * released struct or function changes incompatibly; MWS_ABI_MINOR grows when
 * something is appended.  Structs below that carry struct_size are
 * append-only: new fields go at the end, never in between, and the reader
 * checks struct_size before it touches a field added after version 1.0.
 * The module refuses (a configuration error naming the line) a handler whose
 * abi_major differs from its own or whose abi_minor is newer than its own.
 *
 * Threads.  For one connection, the callbacks on_open, on_message,
 * on_fragment, on_close and that connection's timers never run at the same
 * time: they run one after the other on the thread that serves the
 * connection.  Different connections' callbacks do run concurrently (worker
 * and event MPMs), so state shared between connections needs a lock.  Every
 * mws_host function that takes an mws_conn may be called from any thread at
 * any time, including after the connection has ended; it then returns
 * MWS_ERR_CLOSED.  A connection pointer stays valid (memory-wise) until
 * on_close has returned and every reference taken with retain() has been
 * released.
 *
 * Version 1.1 (1.0 plus the members marked "1.1", appended at the ends of
 * mws_host and mws_handler; a handler built against 1.0 sees nothing new).
 */
#ifndef MOD_WEBSOCKET_H
#define MOD_WEBSOCKET_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MWS_ABI_MAJOR 1
#define MWS_ABI_MINOR 1

/** Default name of the symbol a handler shared object exports. */
#define MWS_HANDLER_ENTRY_SYMBOL "mws_handler_entry"

/** Provider group under which LoadModule'd modules may register handlers
 *  with httpd's ap_register_provider(); the provider is a
 *  `const mws_handler *`, the version string MWS_PROVIDER_VERSION. */
#define MWS_PROVIDER_GROUP   "mws_handler"
#define MWS_PROVIDER_VERSION "1"

/** Results of host functions.  0 is success, errors are negative. */
typedef enum {
    MWS_OK          = 0,
    MWS_ERR_CLOSED  = -1, /**< the connection is closing or gone         */
    MWS_ERR_INVALID = -2, /**< bad argument (type, code, NULL data, ...) */
    MWS_ERR_NOMEM   = -3, /**< out of memory                             */
    MWS_ERR_TOO_BIG = -4, /**< over a limit (configured, or MWS_PUBLISH_MAX) */
    MWS_ERR_STATE   = -5, /**< not allowed now: subscribe() before the
                           *   child is ready or while it stops;
                           *   publish() outside a callback to a
                           *   channel without "server:"; 1.1:
                           *   shared_create() outside init_server(),
                           *   shared_lock() without shared memory */
    MWS_ERR_NOTFOUND= -6, /**< no such header, option, timer, ...        */
    MWS_ERR_UNAVAILABLE = -7  /**< 1.1: publish() with a WebSocketBroker
                           *   that cannot be reached now: the message
                           *   reaches nobody; try again later */
} mws_status;

/** The largest message publish() carries across child processes. */
#define MWS_PUBLISH_MAX (64 * 1024)

/** Message types, as the RFC 6455 opcodes. */
typedef enum {
    MWS_TEXT   = 1,
    MWS_BINARY = 2
} mws_msg_type;

/** Close codes of RFC 6455 section 7.4.1 (and the IANA registry). */
enum {
    MWS_CLOSE_NORMAL          = 1000,
    MWS_CLOSE_GOING_AWAY      = 1001,
    MWS_CLOSE_PROTOCOL_ERROR  = 1002,
    MWS_CLOSE_UNSUPPORTED     = 1003,
    MWS_CLOSE_NO_STATUS       = 1005, /**< on_close only: peer sent no code  */
    MWS_CLOSE_ABNORMAL        = 1006, /**< on_close only: no close handshake */
    MWS_CLOSE_INVALID_DATA    = 1007,
    MWS_CLOSE_POLICY          = 1008,
    MWS_CLOSE_TOO_BIG         = 1009,
    MWS_CLOSE_EXTENSION       = 1010,
    MWS_CLOSE_INTERNAL_ERROR  = 1011,
    MWS_CLOSE_TRY_AGAIN_LATER = 1013
};

/** Log levels, the same numbers as httpd's APLOG_* levels. */
enum {
    MWS_LOG_ERR     = 3,
    MWS_LOG_WARNING = 4,
    MWS_LOG_NOTICE  = 5,
    MWS_LOG_INFO    = 6,
    MWS_LOG_DEBUG   = 7
};

/** One open WebSocket (opaque). */
typedef struct mws_conn mws_conn;
/** The upgrade request, valid only during on_open (opaque). */
typedef struct mws_request mws_request;
/** A timer (opaque). */
typedef struct mws_timer mws_timer;
/** 1.1.  One WebSocketHandler line of the configuration (opaque): the
 *  handler's instance in each child, its channels and its shared memory
 *  belong to it.  Valid from init_server() (parent) or init() (child) until
 *  the configuration is unloaded. */
typedef struct mws_line mws_line;

/** 1.1.  send_flags() flags. */
#define MWS_SEND_NO_COMPRESS 0x1u /**< send this message uncompressed even
                                   *   when the connection compresses (data
                                   *   already compressed: images, zip) */

/** One `WebSocketHandlerOption key value` line. */
typedef struct {
    const char *key;
    const char *value;
} mws_option;

/** A timer callback: runs on the connection's thread, never concurrently
 *  with the connection's other callbacks. */
typedef void (*mws_timer_fn)(mws_conn *c, void *arg);

/**
 * What the module offers a handler.  Handed to init(); keep the pointer, it
 * stays valid until shutdown() returns.  Append-only (see ABI rules): check
 * struct_size before using a member added after 1.0.
 */
typedef struct mws_host {
    uint32_t abi_major;   /**< MWS_ABI_MAJOR of the module */
    uint32_t abi_minor;   /**< MWS_ABI_MINOR of the module */
    uint32_t struct_size; /**< sizeof(mws_host) in the module */

    /* --- the upgrade request; only inside on_open, else NULL/error --- */

    /** The value of request header name (case-insensitive), or NULL. */
    const char *(*req_header)(mws_request *r, const char *name);
    /** The URI path of the request (decoded, as httpd's r->uri). */
    const char *(*req_path)(mws_request *r);
    /** The query string without '?', or NULL when there is none. */
    const char *(*req_query)(mws_request *r);
    /** The client's IP address as text. */
    const char *(*req_remote_ip)(mws_request *r);
    /** The user that httpd's authentication set, or NULL. */
    const char *(*req_user)(mws_request *r);
    /** Number of subprotocols the client offered (Sec-WebSocket-Protocol). */
    size_t (*req_subprotocol_count)(mws_request *r);
    /** The i-th offered subprotocol, or NULL past the end. */
    const char *(*req_subprotocol)(mws_request *r, size_t i);
    /** Choose the subprotocol to answer with.  MWS_ERR_INVALID when the
     *  client did not offer it (nothing is chosen then). */
    int (*req_select_subprotocol)(mws_request *r, const char *proto);
    /** Add a header to the 101 response (or to the refusal). */
    int (*req_set_header)(mws_request *r, const char *name,
                          const char *value);
    /** httpd's request_rec, as void *, for handlers that include httpd's
     *  headers themselves.  Valid only inside on_open. */
    void *(*req_httpd_request)(mws_request *r);

    /* --- a connection; any thread, any time ------------------------------ */

    /** Send a whole text (must be UTF-8) or binary message.  The message is
     *  copied and queued; the call never waits for the network. */
    int (*send)(mws_conn *c, mws_msg_type type, const void *data,
                size_t len);
    /** Send a message in parts: the first call gives the type, later calls
     *  must give the same type; last = 1 ends the message.  Whole messages
     *  sent meanwhile from other threads are queued behind its last part.
     *  For a text message each part need not end on a character boundary. */
    int (*send_part)(mws_conn *c, mws_msg_type type, const void *data,
                     size_t len, int last);
    /** Send a ping with up to 125 bytes of payload. */
    int (*ping)(mws_conn *c, const void *data, size_t len);
    /** Start the close handshake with code (1000-1003, 1007-1011, 1013,
     *  3000-4999) and a UTF-8 reason of up to 123 bytes (may be NULL).
     *  Everything queued before it is sent first. */
    int (*close)(mws_conn *c, int code, const char *reason);
    /** The handler's per-connection data (NULL until set). */
    void *(*get_data)(mws_conn *c);
    /** Attach per-connection data; free it in on_close. */
    void (*set_data)(mws_conn *c, void *data);
    /** A number unique to this connection within its child process's
     *  lifetime (never reused there, never 0).  Other child processes
     *  number their connections independently: combine it with the process
     *  id for a server-wide identity. */
    uint64_t (*id)(mws_conn *c);
    /** Bytes queued for this connection and not yet written (0 once it is
     *  gone). */
    size_t (*queued)(mws_conn *c);
    /** Take a reference: the pointer stays valid until release(). */
    mws_conn *(*retain)(mws_conn *c);
    /** Drop a reference taken with retain() or find(). */
    void (*release)(mws_conn *c);
    /** The open connection with this id in this child, retained, or NULL. */
    mws_conn *(*find)(uint64_t id);
    /** The merged value of `WebSocketHandlerOption key` for the
     *  connection's location, or NULL. */
    const char *(*option)(mws_conn *c, const char *key);
    /** The subprotocol chosen in on_open (from the moment
     *  req_select_subprotocol succeeded), or NULL. */
    const char *(*subprotocol)(mws_conn *c);

    /* --- timers ---------------------------------------------------------- */

    /** Run fn(c, arg) after ms milliseconds, and then every ms milliseconds
     *  if periodic.  Returns NULL if the connection is gone.  Timers end
     *  with the connection (before on_close). */
    mws_timer *(*timer_add)(mws_conn *c, unsigned ms, int periodic,
                            mws_timer_fn fn, void *arg);
    /** Cancel a timer of this connection (may be called from its own
     *  callback).  MWS_ERR_NOTFOUND when it already ran or was cancelled. */
    int (*timer_cancel)(mws_conn *c, mws_timer *t);

    /* --- log -------------------------------------------------------------- */

    /** Log to httpd's error log, tagged with the handler's name and, if c is
     *  not NULL, the connection (else the WebSocketHandler line).  level is
     *  MWS_LOG_*.  fmt is formatted as C99's printf does. */
    void (*log)(mws_conn *c, int level, const char *fmt, ...)
#if defined(__GNUC__)
        __attribute__((format(printf, 3, 4)))
#endif
        ;

    /* --- publish/subscribe across all child processes -------------------- */

    /** Receive every message published on channel (any child process) until
     *  unsubscribed or closed.  A connection may join several channels.
     *  Channel names (1 to 200 bytes) belong to the WebSocketHandler line
     *  of c: the same name under another WebSocketHandler line (another
     *  location or virtual host, even of the same handler) is another
     *  channel.  Names that begin with "server:" are the exception: one
     *  channel for the whole server, shared by every handler line.  A
     *  connection is unsubscribed from everything before its on_close
     *  runs. */
    int (*subscribe)(mws_conn *c, const char *channel);
    /** Leave channel (scoped as in subscribe). */
    int (*unsubscribe)(mws_conn *c, const char *channel);
    /** Send a message to every connection subscribed to channel in every
     *  child process of this server.  The channel is that of the
     *  WebSocketHandler line whose callback is running on this thread
     *  (init, on_open, on_message, on_fragment, on_close, a timer,
     *  shutdown); outside a callback (a thread of the handler's own) only
     *  "server:" channels can be published to, others fail with
     *  MWS_ERR_STATE.  Text must be UTF-8.  At most 64 KiB
     *  (MWS_PUBLISH_MAX): larger ones fail with MWS_ERR_TOO_BIG and reach
     *  nobody.  Never waits for another process or client: the message goes
     *  into the server's channel log, and every subscriber in every child
     *  receives a channel's messages in the order publishes were accepted
     *  (docs/handlers.md).  With a WebSocketBroker that cannot be reached,
     *  MWS_ERR_UNAVAILABLE (1.1).  Returns the number of subscribers in
     *  this child process, or a negative mws_status. */
    int (*publish)(const char *channel, mws_msg_type type, const void *data,
                   size_t len);

    /* --- 1.1: check abi_minor >= 1 (or struct_size) before use --------- */

    /** 1.1.  The instance init() stored for c's WebSocketHandler line in
     *  this child process (NULL if init stored none, or c is gone). */
    void *(*instance)(mws_conn *c);
    /** 1.1.  The WebSocketHandler line of c.  With c NULL: the line whose
     *  callback is running on this thread (check_options, init_server,
     *  init, on_publish, on_gap, shutdown, or any connection callback), or
     *  NULL on a thread of the handler's own outside any callback. */
    mws_line *(*line)(mws_conn *c);
    /** 1.1.  The instance init() stored for line in this child process. */
    void *(*line_instance)(mws_line *line);

    /** 1.1.  Only inside init_server() (parent process, before the
     *  children start; again at every restart): create line's shared
     *  memory, size bytes (at most MWS_SHARED_MAX), zeroed, mapped at the
     *  same address in every child process, and its cross-process mutex.
     *  At most once per line and configuration generation.  MWS_ERR_STATE
     *  elsewhere, MWS_ERR_TOO_BIG over the bound, MWS_ERR_NOMEM. */
    int (*shared_create)(mws_line *line, size_t size);
    /** 1.1.  The shared memory of line (any process of this generation),
     *  its size in *size if size is not NULL; NULL when none was created. */
    void *(*shared_mem)(mws_line *line, size_t *size);
    /** 1.1.  Take line's cross-process mutex (all threads of all child
     *  processes); blocks.  Keep it briefly, never across a send that
     *  might wait: no host function waits for the network.  MWS_ERR_STATE
     *  when no shared memory was created. */
    int (*shared_lock)(mws_line *line);
    /** 1.1.  Release what shared_lock() took. */
    int (*shared_unlock)(mws_line *line);

    /** 1.1.  publish() to a channel of line, from any thread (a thread of
     *  the handler's own included): the same as publish() called inside a
     *  callback of that line. */
    int (*line_publish)(mws_line *line, const char *channel,
                        mws_msg_type type, const void *data, size_t len);

    /** 1.1.  Only in on_open, before refusing: the reason phrase of the
     *  refusal's status line (printable ASCII, at most 64 bytes; default:
     *  httpd's phrase for the status). */
    int (*req_refuse_reason)(mws_request *r, const char *reason);
    /** 1.1.  Only in on_open, before refusing: the refusal's body (at most
     *  8 KiB, copied) and its Content-Type (default "text/plain;
     *  charset=utf-8"), instead of httpd's HTML error page.  Headers such
     *  as Retry-After are added with req_set_header(). */
    int (*req_refuse_body)(mws_request *r, const char *content_type,
                           const void *body, size_t len);

    /** 1.1.  send() with MWS_SEND_* flags. */
    int (*send_flags)(mws_conn *c, mws_msg_type type, const void *data,
                      size_t len, unsigned flags);
    /** 1.1.  1 if c negotiated permessage-deflate, 0 if not, or
     *  MWS_ERR_CLOSED. */
    int (*compressed)(mws_conn *c);

    /* New members go here, at the end only. */
} mws_host;

/** 1.1.  The largest shared memory shared_create() makes for one line. */
#define MWS_SHARED_MAX (64u * 1024 * 1024)

/** mws_handler.flags */
#define MWS_HANDLER_FLAG_NONE 0u

/**
 * What a handler offers the module.  Return a pointer to a constant one from
 * the entry function.  Append-only (see ABI rules).
 */
typedef struct mws_handler {
    uint32_t abi_major;   /**< set to MWS_ABI_MAJOR */
    uint32_t abi_minor;   /**< set to MWS_ABI_MINOR */
    uint32_t struct_size; /**< set to sizeof(mws_handler) */
    const char *name;     /**< short name for logs, e.g. "echo" */
    uint32_t flags;       /**< MWS_HANDLER_FLAG_* */

    /**
     * Optional.  Once per child process, before any connection, for each
     * WebSocketHandler line that names this handler (never in the parent
     * process).  opts are the WebSocketHandlerOption lines of the same
     * configuration section as that WebSocketHandler line; a connection
     * sees the options merged across sections through host->option().
     * Store what you need in *instance; it is handed to on_open.  Return 0,
     * or -1 to log an error (the location then answers 500).
     */
    int (*init)(const mws_host *host, const mws_option *opts, size_t nopts,
                void **instance);
    /** Optional.  When the child process ends, after every on_close. */
    void (*shutdown)(void *instance);

    /**
     * Optional.  During the handshake, on the request's thread, before the
     * 101 is sent.  May read the request through host->req_*, choose a
     * subprotocol, add response headers, attach data, add timers and queue
     * messages (they are sent right after the 101).  Return 0 to accept,
     * or an HTTP status from 400 to 599 to refuse (on_close is then not
     * called).
     */
    int (*on_open)(mws_conn *c, mws_request *r, void *instance);

    /**
     * A whole message (reassembled from its fragments, at most
     * WebSocketMaxMessageSize bytes).  Text is valid UTF-8.  data is valid
     * only during the call.  Return 0, or -1 to close with 1011.
     * Required unless on_fragment is set.
     */
    int (*on_message)(mws_conn *c, mws_msg_type type, const void *data,
                      size_t len);

    /**
     * Optional streaming mode: when set, messages are not buffered; each
     * piece of a message is handed over as it arrives.  first marks the
     * first piece, last the final one (a piece may be empty).  Text pieces
     * may split a character; the whole message is still checked to be
     * UTF-8 and the connection is closed with 1007 if it is not.  Return 0,
     * or -1 to close with 1011.
     */
    int (*on_fragment)(mws_conn *c, mws_msg_type type, const void *data,
                       size_t len, int first, int last);

    /**
     * Exactly once for every connection whose on_open accepted it, however
     * it ends: code and reason are those the peer sent (1005 if none),
     * the code we closed with, or 1006 when the connection ended without a
     * close handshake.  No further callbacks follow; sends fail.
     */
    void (*on_close)(mws_conn *c, int code, const char *reason,
                     size_t reason_len);

    /* --- 1.1: read only when abi_minor >= 1 and struct_size covers them */

    /**
     * 1.1, optional.  At configuration time (also `apache2 -t`), in the
     * parent, for each WebSocketHandler line naming this handler, after the
     * whole configuration has been read: check opts.  Return NULL if they
     * are acceptable, or a message (a string constant, or one that lives
     * until the process ends) and set *bad to the index in opts of the
     * offending option (leave it at its initial (size_t)-1 when the fault
     * is no single option).  httpd then refuses to start, naming the file
     * and line of that WebSocketHandlerOption (else of WebSocketHandler).
     */
    const char *(*check_options)(const mws_host *host, const mws_option *opts,
                                 size_t nopts, size_t *bad);

    /**
     * 1.1, optional.  In the parent process, as root, before the children
     * are started, for each WebSocketHandler line naming this handler; and
     * again after every restart (a new generation: new shared memory).
     * Create state shared by all children here: host->shared_create(line,
     * size) and initialise the memory.  No connection exists yet; host
     * functions that take a connection or request fail.  Return 0, or -1
     * to stop httpd from starting (logged naming the line).
     */
    int (*init_server)(const mws_host *host, mws_line *line,
                       const mws_option *opts, size_t nopts);

    /**
     * 1.1, optional.  In every child process, for each message published on
     * a channel of this line (from any child, or any server with a broker),
     * once per child and message, in the channel's delivery order, whether
     * or not a connection of this child subscribes to it; channel is the
     * name as the handler gave it (without the line's scope).  Runs on the
     * child's channel-delivery thread: keep it short, never wait.  data is
     * valid only during the call.  Lets each child keep a replicated copy
     * of state such as a current price.
     */
    void (*on_publish)(void *instance, const char *channel, mws_msg_type type,
                       const void *data, size_t len);

    /**
     * 1.1, optional.  This child process missed `lost` messages of channel
     * (it fell behind past the delivery bound): subscribers did not receive
     * them and on_publish did not see them.  Rebuild replicated state here
     * (e.g. from shared memory).  channel "" means the channels are not
     * known (the child was lapped: lost counts every channel's messages);
     * lost 0 means an unknown number (a broker outage).
     */
    void (*on_gap)(void *instance, const char *channel, uint64_t lost);

    /* New members go here, at the end only. */
} mws_handler;

/** The type of the entry function a handler shared object exports. */
typedef const mws_handler *(*mws_handler_entry_fn)(void);

#if defined(__GNUC__)
#define MWS_EXPORT __attribute__((visibility("default")))
#else
#define MWS_EXPORT
#endif

/**
 * The entry function a handler shared object defines under the default
 * symbol name: return a pointer to your constant mws_handler.  Called once,
 * at configuration time, in the parent process.  (A handler exporting
 * another name gives it as WebSocketHandler's second argument.)
 */
MWS_EXPORT const mws_handler *mws_handler_entry(void);

#ifdef __cplusplus
}
#endif
#endif /* MOD_WEBSOCKET_H */
