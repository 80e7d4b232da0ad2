/*
 * mws_private.h -- internal declarations shared by mod_websocket.c and the
 * glue files in glue/.  Not installed; handlers use
 * include/mod_websocket.h only.
 */
#ifndef MWS_PRIVATE_H
#define MWS_PRIVATE_H

#include <pthread.h>

#include "httpd.h"
#include "http_config.h"
#include "http_log.h"
#include "apr_poll.h"
#include "apr_dso.h"
#include "ap_mpm.h"

#include "mod_websocket.h"
#include "ws_core.h"
#include "ws_deflate.h"

/* mod_websocket.c gets this from AP_DECLARE_MODULE */
#if defined(APLOG_USE_MODULE) && !defined(MWS_MODULE_FILE)
APLOG_USE_MODULE(websocket);
#endif

/* Our own log tags: "MWSnnnnn: ".  httpd's AH numbers are httpd's.  Take
 * the next number from the file next-logno and bump it in the same commit. */
#define MWS_LOGNO(n) "MWS" #n ": "

/* The module record is the one symbol httpd looks up: everything else of
 * the module is built hidden (-fvisibility=hidden), so that a handler's
 * symbols never meet ours and calls between the glue's files can be
 * inlined at link time. */
extern module AP_MODULE_DECLARE_DATA websocket_module
#if defined(__GNUC__)
    __attribute__((visibility("default")))
#endif
    ;

#define MWS_UNSET (-1)
#define MWS_DEFAULT_MAX_MESSAGE   (16 * 1024 * 1024)
#define MWS_DEFAULT_CLOSE_TIMEOUT apr_time_from_sec(5)
#define MWS_DEFAULT_MAX_QUEUED    (16 * 1024 * 1024)
#define MWS_READ_CHUNK            (16 * 1024)
/* at most this much input per pass: the replies to it get written before
 * more is read */
#define MWS_READ_PER_PASS         (4 * MWS_READ_CHUNK)
#define MWS_DEFAULT_REASSEMBLY    ((apr_size_t)64 * 1024 * 1024)
/* a parked WebSocket silent this long gives its read buffers back */
#define MWS_TRIM_AFTER            apr_time_from_sec(1)

/* hex digits of a channel scope (mws_channels.c) */
#define MWS_SCOPE_HEX 32

/* One WebSocketHandler line: a handler plus the options of its section. */
typedef struct mws_instance {
    const mws_handler *h;
    const char *name;            /* handler->name or the path            */
    const char *where;           /* "file:line" of the directive          */
    char scope[MWS_SCOPE_HEX + 1];  /* its channels' scope: the same in
                                     * every child of a generation        */
    struct mws_dir_conf *dconf;  /* the section the directive was in      */
    void *data;                  /* what init() returned, per child        */
    int ready;                   /* init() succeeded in this child         */
    void *shared;                /* mws_linemem.c: its segment, or NULL      */
    uint32_t *crashes;           /* shared: crashes in its callbacks       */
    uint32_t *init_crashes;      /* shared: init() crashes in a row        */
} mws_instance;

/* WebSocketDriver */
#define MWS_DRIVER_AUTO     1    /* parked where the MPM can, else blocking */
#define MWS_DRIVER_BLOCKING 2    /* one thread per connection, always       */

/* WebSocketOrigin */
#define MWS_ORIGIN_UNSET 0
#define MWS_ORIGIN_SAME  1       /* no Origin, or the server's own origin  */
#define MWS_ORIGIN_ANY   2
#define MWS_ORIGIN_LIST  3       /* SAME plus the listed origins           */

/* One origin of a WebSocketOrigin list, parsed. */
typedef struct mws_origin_pat {
    int https;
    int wildcard;                /* host is a domain: any subdomain matches */
    int ipv6;                    /* host is an IPv6 literal: addr6 is it     */
    unsigned char addr6[16];
    const char *host;            /* lower case; without "*." or brackets    */
    unsigned port;               /* as given, or the scheme's default       */
    const char *text;            /* as configured, for messages             */
} mws_origin_pat;

typedef struct mws_dir_conf {
    mws_instance *instance;      /* NULL: unset                            */
    apr_off_t max_message;       /* MWS_UNSET: unset                       */
    apr_off_t max_frame;         /* MWS_UNSET: unset                       */
    apr_off_t max_queued;        /* MWS_UNSET: unset                       */
    apr_interval_time_t idle_timeout;   /* MWS_UNSET: unset; 0 off         */
    apr_interval_time_t ping_interval;  /* MWS_UNSET: unset; 0 off         */
    apr_interval_time_t close_timeout;  /* MWS_UNSET: unset                */
    int origin_mode;             /* MWS_ORIGIN_*                           */
    int driver;                  /* MWS_DRIVER_*, 0: unset                 */
    int max_conns;               /* MWS_UNSET: unset (auto); 0: no cap;
                                  * MWS_MAXCONN_AUTO: auto                 */
    int max_conns_index;         /* its counter in mws_limits.c            */
    int max_conns_addr;          /* MWS_UNSET: unset; 0: no cap            */
    apr_array_header_t *origins; /* of mws_origin_pat                      */
    apr_array_header_t *options; /* of mws_option, in config order         */
    apr_array_header_t *option_where; /* "file:line" of each option        */
    int compression;             /* MWS_COMPRESS_*, MWS_UNSET: unset       */
    int window_bits;             /* 9..15, MWS_UNSET: unset                */
    int mem_level;               /* 1..9, MWS_UNSET: unset                 */
    apr_off_t compress_min;      /* MWS_UNSET: unset                       */
} mws_dir_conf;

/* WebSocketCompression */
#define MWS_COMPRESS_OFF     0
#define MWS_COMPRESS_ON      1   /* no context takeover either way        */
#define MWS_COMPRESS_CONTEXT 2   /* context takeover where the client lets */
#define MWS_DEFAULT_COMPRESS_MIN 64
/* windows and memLevel unless configured: the full window when zlib state
 * lives only while a message is in flight, a smaller one when it is kept.
 * memLevel 4 either way: deflateReset clears a hash table of 2^(level+8)
 * bytes per message (64 KiB at 8, 4 KiB at 4: a third of the instructions
 * of a 1 KiB echo), for 2 % less ratio on megabytes of JSON */
#define MWS_DEFAULT_WBITS        15
#define MWS_DEFAULT_MEMLEVEL     4
#define MWS_DEFAULT_CTX_WBITS    11
#define MWS_DEFAULT_CTX_MEMLEVEL 4

/* The limits of one connection, resolved from its location when it opens
 * (the request's configuration does not outlive the request). */
typedef struct mws_limits {
    apr_off_t max_message;
    apr_off_t max_frame;         /* 0: no limit of its own                 */
    apr_off_t max_queued;
    apr_interval_time_t idle_timeout;
    apr_interval_time_t ping_interval;
    apr_interval_time_t close_timeout;
    apr_interval_time_t read_timeout;   /* blocking driver: httpd's Timeout */
    int compression;             /* MWS_COMPRESS_*                         */
    unsigned window_bits;        /* 9..15                                  */
    unsigned mem_level;          /* 1..9                                   */
    apr_size_t compress_min;     /* smaller messages go uncompressed       */
} mws_limits;

void mws_limits_resolve(const mws_dir_conf *d, mws_limits *l);
/* WebSocketIPv6Prefix of server s (the default applied) */
int mws_v6prefix(const server_rec *s);

/* mws_limits.c: connection caps across child processes */
/* WebSocketMaxConnections auto (also the default when unset) */
#define MWS_MAXCONN_AUTO (-2)
typedef struct mws_limit_hold {
    int section;                 /* counter taken, or -1                   */
    int weight;                  /* units of the server's capacity, 0: none */
    int addr;                    /* address count taken (>= 0), or -1      */
    unsigned char addr_key[WS_ADDR_KEY];
} mws_limit_hold;
/* What the MPM accepts (mws_limits.c, post_config): the default
 * WebSocketMaxConnections auto counts WebSockets server-wide in units of
 * it.  Parked (event MPM): a unit is a connection the listener accepts,
 * ThreadsPerChild + idle threads x AsyncRequestWorkerFactor per child; a
 * WebSocket that holds a thread (blocking driver, HTTP/2) takes 1 + factor
 * units.  Otherwise a unit is a thread (a process under prefork).  A
 * margin of threads per child (reserve) stays for plain HTTP. */
typedef struct mws_capacity {
    const char *mpm;             /* ap_show_mpm()                          */
    int async;                   /* parked driver available                */
    int threads;                 /* ThreadsPerChild (1: prefork)           */
    int daemons;                 /* children at most                       */
    int factor;                  /* event: AsyncRequestWorkerFactor as the
                                  * MPM applies it (whole numbers, >= 1)   */
    const char *factor_from;     /* where it was read ("default" if unset) */
    int reserve;                 /* threads (processes) kept for HTTP      */
    int per_child;               /* units                                  */
    int per_server;              /* units; 0: unknown MPM, no auto cap     */
} mws_capacity;
void mws_capacity_compute(server_rec *s, mws_capacity *cap);
const mws_capacity *mws_capacity_get(void);
/* capacity units in use now, this generation, all children */
apr_uint32_t mws_capacity_used(void);
int mws_limits_section_index(void);
void mws_limits_addr_cap_used(void);
int mws_limits_pre_config(apr_pool_t *pconf);
int mws_limits_post_config(apr_pool_t *pconf, server_rec *s);
void mws_limits_child_init(apr_pool_t *pchild, server_rec *s);
#define MWS_DEFAULT_V6PREFIX 64
/* v6prefix: mws_v6prefix() of the request's server */
int mws_limits_admit(request_rec *r, const mws_dir_conf *d, int v6prefix,
                     mws_limit_hold *held);
void mws_limits_release(mws_limit_hold *held);
/* l as a set shared by the connections that have the same (read-only,
 * lives as long as the child), or a copy in pool */
const mws_limits *mws_limits_shared(const mws_limits *l, apr_pool_t *pool);
/* An address as 16 bytes, IPv4 as IPv4-mapped IPv6 (::ffff:a.b.c.d).
 * mws_addr16_parse takes the text form (a "%zone" suffix is ignored);
 * both return 4 or 6 (the family; 4 for an IPv4-mapped IPv6 address too),
 * or 0 when there is no IP address. */
int mws_addr16_parse(const char *text, unsigned char out[16]);
int mws_addr16_sockaddr(const apr_sockaddr_t *sa, unsigned char out[16]);
/* 1 if a (from mws_addr16_*) is 127.0.0.0/8 or ::1 */
int mws_addr16_loopback(const unsigned char a[16]);

/* ---- outgoing frames -------------------------------------------------- */

/* One frame built once for many receivers (a broadcast): each receiver's
 * queue holds a small mws_out that points into it. */
typedef struct mws_shared {
    unsigned refs;               /* atomic; the last one frees it           */
    size_t len;                  /* header + payload                        */
    /* bytes follow */
} mws_shared;

#define MWS_SHARED_BYTES(sh) ((uint8_t *)((sh) + 1))

typedef struct mws_out {
    struct mws_out *next;
    size_t len;                  /* header + payload                        */
    size_t off;                  /* bytes of it already written             */
    int is_close;
    const uint8_t *bytes;        /* right after this struct, or in shared  */
    mws_shared *shared;          /* NULL: the bytes are our own             */
} mws_out;

#define MWS_OUT_BYTES(o) ((uint8_t *)((o) + 1))

mws_shared *mws_shared_frame(mws_msg_type type, const void *data,
                             size_t len);
/* the same, compressed once for every receiver without context takeover
 * that agreed on this window (permessage-deflate); NULL: no memory */
mws_shared *mws_shared_frame_pmd(mws_msg_type type, const void *data,
                                 size_t len, unsigned window_bits,
                                 unsigned mem_level);
void mws_shared_release(mws_shared *sh);

typedef struct mws_outq {
    mws_out *head, *tail;
} mws_outq;

/* ---- the connection ------------------------------------------------- */

typedef enum {
    MWS_ST_HANDSHAKE = 0,        /* on_open not yet accepted                */
    MWS_ST_OPEN,                 /* messages flow                           */
    MWS_ST_CLOSING,              /* we queued our close                     */
    MWS_ST_DEAD                  /* gone: calls fail, nothing is written    */
} mws_state;

struct mws_timer {
    struct mws_timer *next;
    uint64_t id;                 /* the handle handlers hold (never reused) */
    apr_time_t due;
    apr_interval_time_t period;  /* 0: one-shot                             */
    mws_timer_fn fn;
    void *arg;
};

typedef enum {
    MWS_IO_OWNED = 0,            /* a worker thread runs the connection      */
    MWS_IO_PARKED,               /* waiting in the MPM's pollset             */
    MWS_IO_CALLBACK              /* a timed callback of ours runs a pass     */
} mws_io;

struct mws_drive;

/* What a driver does for the layers below it, installed on a connection
 * when the driver starts (NULL during the handshake: nothing to wake). */
typedef struct mws_driver_ops {
    /* another thread queued something or added a timer (mc->lock held);
     * with claim, a parked connection may be claimed for a batch kick */
    void (*wake_locked)(struct mws_conn *mc, int *claim);
    /* the connection ends: drop what the driver holds for it */
    void (*forget)(struct mws_conn *mc);
    /* a hard stop: write the queued close now where that is safe */
    void (*last_words)(struct mws_conn *mc);
} mws_driver_ops;

/*
 * A connection is two pieces (the memory of an idle WebSocket, see
 * docs/design.md "Memory per idle connection"):
 *
 * struct mws_conn, the handle: malloc'd and reference counted, what
 * handlers hold and what pending callbacks carry.  It may outlive the
 * connection, so it keeps only what must answer after the end: the lock,
 * the count, the state ("dead"), who may touch the socket, and what the
 * host functions read without looking at the state.  Kept small: every
 * idle WebSocket pays for it on top of its connection's pages.
 *
 * struct mws_conn_body, the rest, in c->pool (which an idle WebSocket has
 * touched anyway): the queue, timers, limits, figures, driver links.  It
 * lives exactly as long as the connection.  Rules: the connection's own
 * thread (whoever owns mc->io) may use it until mws_drive_finish()
 * returns; any other thread only under mc->lock after seeing that the
 * state is not MWS_ST_DEAD (mws_conn_kill() sets it, under the lock,
 * before the pool can go).  When c->pool goes, mc->b becomes NULL, so a
 * late use fails at once instead of reading freed memory.
 */
struct mws_conn_body;

struct mws_conn {
    pthread_mutex_t lock;        /* guards the state, the count, the body  */
    const mws_driver_ops *ops;   /* the driver's (set when it starts)        */
    struct mws_conn_body *b;     /* in c->pool; NULL once the pool is gone   */
    uint64_t id;
    mws_instance *inst;
    void *user_data;
    size_t queued;               /* bytes in out + held (atomic)             */
    unsigned refs;
    /* bytes, to keep the handle at 104 bytes (a 112-byte malloc chunk) */
    unsigned char state;         /* mws_state                                */
    unsigned char io;            /* mws_io: who may touch the socket (parked
                                  * driver)                                  */
    unsigned char cb_pending;    /* an immediate callback is registered      */
    unsigned char work_pending;  /* queued while owned: look before parking
                                  * (atomic)                                 */
    unsigned char async;         /* parked driver (event MPM)                */
    unsigned char closed_by;     /* MWS_BY_* (atomic)                        */
    unsigned char pmd;           /* permessage-deflate negotiated            */
};

struct mws_conn_body {
    struct mws_conn *mc;         /* its handle (a reference), NULL: spare   */
    mws_outq out;                /* frames ready to write                    */
    mws_outq held;               /* whole messages queued behind a send_part */
    int part_open;               /* a send_part message is in progress      */
    mws_msg_type part_type;
    int close_queued;            /* our close frame is in out (or written)   */
    int running_cancelled;
    struct mws_timer *timers;    /* sorted by due                            */
    struct mws_timer *running;   /* the timer whose callback runs now        */
    uint64_t timer_seq;          /* the last timer id given out              */
    mws_out *pong;               /* the last pong not yet taken by the
                                  * writer: past MWS_MAX_PENDING_PONGS, a
                                  * newer ping's reply replaces it           */
    unsigned pongs;              /* pongs waiting for the writer             */
    unsigned close_code;         /* the code of the close we queued          */
    char *close_reason;          /* and its reason (malloc'd), if any        */
    size_t close_reason_len;
    apr_pollset_t *pollset;      /* woken by other threads; NULL when dead   */
    pthread_t driver_thread;     /* the blocking driver's thread             */
    pthread_cond_t *io_cond;     /* signalled when a callback pass ends
                                  * (malloc'd by its first waiter)          */
    int io_waiters;
    int queue_overflow;          /* a send went over max_queued (lock)       */
    /* its pending wake-up (mws_wakeq.c, wq_lock; wake_when also read
     * atomically without it) */
    apr_time_t wake_when;        /* when it is due, 0: none                 */
    apr_uint64_t wake_seq;       /* ties: the order of scheduling           */
    size_t wake_idx;             /* its place in the heap + 1, 0: none      */

    /* owned by the connection's thread, no lock needed */
    struct mws_drive *dv;
    conn_rec *c;
    request_rec *r;
    const mws_limits *limits;    /* shared (mws_limits_shared), read-only   */
    mws_limit_hold hold;         /* connection caps taken (mws_limits.c)     */
    const char *subprotocol;
    const mws_option *options;   /* merged WebSocketHandlerOption lines, in
                                  * config order (their strings: pconf)     */
    int noptions;
    int max_free_lowered;        /* the connection's allocator keeps nothing */
    int opened;                  /* on_open accepted: on_close is owed       */
    int close_reported;          /* on_close ran (atomic exchange)           */
    int close_sent;              /* our close frame was written (atomic)     */
    struct mws_conn *reg_next, *reg_prev;   /* child registry (global lock)   */
    /* figures (mws_stats.c) and the access-log line at the end
     * (mws_accesslog.c); *_out are atomic (any thread sends) */
    int stat_line;               /* its line's figures, or -1               */
    int stat_driver;             /* 1 parked, 2 blocking, 0: not counted    */
    apr_uint64_t bytes_in, msgs_in, bytes_out, msgs_out;
    struct mws_logrec *logrec;   /* what the line at the end needs (c->pool) */
    struct mws_sub *subs;                   /* channels (mws_channels.c lock) */
    /* permessage-deflate (mws_pmd.c), fixed once the handshake is done */
    ws_pmd_params pmd_params;
    int part_compressed;         /* the open send_part message is (lock)     */
    int pmd_kept;                /* counted in mws_pmd_context_take()        */
    ws_deflater *pmd_def;        /* the connection's own deflater (lock):
                                  * context takeover, or a send_part message */
};

/* The driver's state of one connection, in c->pool; c->conn_config of
 * our module points to it while the connection is a WebSocket.  Touched
 * only by whoever owns the connection (see mws_io). */
typedef struct mws_drive {
    mws_conn *mc;               /* NULL once finished                     */
    conn_rec *c;
    const mws_handler *h;
    ws_parser parser;
    apr_bucket_brigade *bb_in, *bb_out;
    uint8_t *msg;               /* reassembly of a fragmented message     */
    size_t msg_len, msg_cap;
    int msg_open;               /* a message is being reassembled in msg  */
    apr_time_t msg_progress;    /* when its last piece arrived            */
    int read_more;              /* a pass stopped reading at its budget   */
    int read_paused;            /* the queue is over its cap: not read    */
    int done;                   /* finish after the next flush            */
    int closing;                /* parked: finished, waiting for the MPM  */
    int finished;
    int upgrade_eos_seen;       /* HTTP/2: the request body's EOS passed  */
    int input_drains;           /* a short read means nothing is left     */
    /* The plain-socket path (mws_plain_eligible): the connection's filters
     * are httpd's core ones only, so we read and write its socket
     * ourselves and count bytes for mod_logio as the core would. */
    int plain_fd;               /* -1: every byte through the filters     */
    int plain_in;               /* the core input filter is drained: recv */
    int plain_out;              /* the core output filter is flushed: send */
    const char *path_why;       /* the path taken, and why (for the log)  */
    apr_interval_time_t plain_wait;  /* a write's wait (0: Timeout)       */
    int write_blocked;          /* the client's socket took not all of it */
    apr_size_t write_credit;    /* surely free in it (careful_room)       */
    apr_interval_time_t write_backoff;  /* until we try again            */
    apr_time_t drain_deadline;  /* done, but the last frames wait        */
    int alloc_busy;             /* the allocator may keep read buffers    */
    apr_time_t last_filter_write;   /* last write through the filters     */
    int close_written;          /* our close frame is on the wire         */
    apr_time_t close_deadline;
    int code;                   /* for on_close                           */
    const char *reason;         /* "" until close_info (c->pool)          */
    size_t reason_len;
    int have_code;
    apr_time_t last_read;       /* last bytes from the peer               */
    apr_time_t next_ping;       /* keep-alive ping due (0: off)           */
    apr_time_t pong_deadline;   /* idle ping unanswered by then: close    */
    apr_time_t next_wake;       /* when the driver must look again        */
    apr_time_t now;             /* the clock at the start of this pass    */
    ws_inflater *inf;           /* permessage-deflate: NULL when off      */
    int zfirst;                 /* the inflated message's first piece is
                                 * still to be handed on                  */
    int write_careful;          /* served with others (mws_stay.c): its
                                 * writes never wait for its client       */
    apr_time_t stay_not_before; /* a slow pass: it may not stay until then */
} mws_drive;

/*
 * The glue's files, top to bottom (docs/design.md).  A file calls only the
 * files below it; where a lower one must reach up, the upper one installs a
 * callback (mws_driver_ops, mws_conn_on_end, mws_bus_child_init's deliver).
 */

/* ---- mws_status.c: the WebSocket section of mod_status ---------------- */
/* also registers the handler "websocket-status" (the live view) */
void mws_status_register_hooks(apr_pool_t *p);

/* ---- mws_config.c: directives, per-directory/server records ----------- */
extern const command_rec mws_cmds[];
void *mws_config_create_dir(apr_pool_t *p, char *dir);
void *mws_config_merge_dir(apr_pool_t *p, void *basev, void *addv);
void *mws_config_create_srv(apr_pool_t *p, server_rec *s);
void *mws_config_merge_srv(apr_pool_t *p, void *basev, void *addv);
void mws_limits_resolve(const mws_dir_conf *d, mws_limits *l);
/* WebSocketIPv6Prefix of server s (the default applied) */
int mws_v6prefix(const server_rec *s);

/* ---- mws_instance.c: handlers and their instances ---------------------- */
extern apr_array_header_t *mws_instances;   /* of mws_instance *           */
void mws_instance_pre_config(apr_pool_t *pconf);
const char *mws_instance_load(cmd_parms *cmd, const char *arg,
                              const char *symbol, const mws_handler **ph);
void mws_instance_scope(cmd_parms *cmd, mws_instance *inst);
void mws_instance_child_init(apr_pool_t *pchild, server_rec *s);
int mws_instance_check_config(server_rec *s);
int mws_instance_post_config(apr_pool_t *pconf, server_rec *s);

/* ---- mws_origin.c: WebSocketOrigin -------------------------------------- */
/* NULL when the request's Origin may open the WebSocket, else why not */
const char *mws_origin_refusal(request_rec *r, const mws_dir_conf *d);
int mws_origin_ipv6(const char *host, size_t len, unsigned char out[16]);

/* ---- mws_host.c: the mws_host table handed to handlers ----------------- */
struct mws_request {
    request_rec *r;
    mws_conn *mc;
    apr_array_header_t *offered;  /* of const char *                         */
    const char *chosen;
    /* a refusal the handler described (1.1): reason phrase, body */
    const char *refuse_reason;
    const char *refuse_ctype;
    const void *refuse_body;    /* NULL: httpd's error page              */
    size_t refuse_len;
};
#define MWS_REFUSE_BODY_MAX 8192
extern const mws_host mws_host_table;

/* ---- mws_broker.c: channels across servers (WebSocketBroker, Redis) ---- */
void mws_broker_pre_config(void);
int mws_broker_post_config(apr_pool_t *pconf, server_rec *s);
const char *mws_broker_cmd_url(cmd_parms *cmd, void *dconf, const char *arg);
const char *mws_broker_cmd_ns(cmd_parms *cmd, void *dconf, const char *arg);
const char *mws_broker_cmd_scope(cmd_parms *cmd, void *dconf,
                                 const char *arg);

/* ---- mws_channels.c: subscriptions, scopes, publish --------------------- */
void mws_channels_scope(mws_instance *inst, const char *ident);
void mws_channels_child_init(apr_pool_t *pchild, server_rec *s);
void mws_channels_start(apr_pool_t *pchild, server_rec *s,
                        apr_array_header_t *instances);
int mws_channels_subscribe(mws_conn *mc, const char *channel);
int mws_channels_unsubscribe(mws_conn *mc, const char *channel);
int mws_channels_publish_line(mws_instance *inst, const char *channel,
                              mws_msg_type type, const void *data,
                              size_t len);
int mws_channels_publish(const char *channel, mws_msg_type type,
                         const void *data, size_t len);

/* ---- mws_linemem.c: a line's shared memory and mutex (1.1) ------------ */
void mws_linemem_allow(mws_instance *inst, apr_pool_t *pconf);
uint32_t *mws_linemem_counters(apr_pool_t *pconf, server_rec *s, int n);
int mws_linemem_create(mws_line *line, size_t size);
void *mws_linemem_mem(mws_line *line, size_t *size);
int mws_linemem_lock(mws_line *line);
int mws_linemem_unlock(mws_line *line);

/* A handler struct has member m (API 1.1 and later members): the handler
 * was built against a minor version that has it and its struct covers it. */
#define MWS_H_HAS(h, m) \
    ((h)->abi_minor >= 1 \
     && (h)->struct_size >= offsetof(mws_handler, m) + sizeof((h)->m) \
     && (h)->m != NULL)

/* ---- mws_bus.c: channels across child processes ------------------------- */
#define MWS_CHANNEL_MAX   200          /* bytes of a channel name         */
/* the key of a channel in the table and in the log: the name itself for
 * "server:" names, else "<scope>/<name>" */
#define MWS_KEY_MAX       (MWS_SCOPE_HEX + 1 + MWS_CHANNEL_MAX)
/* The channel log in shared memory (docs/design.md): a child that falls
 * more than MWS_BUS_SLOTS messages, or MWS_BUS_DATA bytes of payload,
 * behind the newest message loses the oldest ones (a gap). */
#define MWS_BUS_SLOTS     16384
#define MWS_BUS_DATA      (16 * 1024 * 1024)
/* a message of the log, in log order, on the child's receive thread;
 * seq: its place in the log */
typedef void mws_bus_deliver_fn(const char *key, mws_msg_type type,
                                const void *data, size_t len, uint64_t seq);
/* lost messages of key, or of channels no longer known (key "") */
typedef void mws_bus_gap_fn(const char *key, uint64_t lost);
int mws_bus_post_config(apr_pool_t *pconf, server_rec *s);
void mws_bus_child_init(apr_pool_t *pchild, server_rec *s,
                        mws_bus_deliver_fn *deliver, mws_bus_gap_fn *gap);
int mws_bus_available(void);
/* the sequence number the next message will get (0 without a log) */
uint64_t mws_bus_head(void);
/* MWS_OK once the message has its place in the log; never waits.  With a
 * broker: MWS_ERR_UNAVAILABLE while it cannot be reached. */
int mws_bus_publish(const char *key, mws_msg_type type, const void *data,
                    size_t len);
/* with a broker (mws_broker.c): this generation sends its messages out
 * through the bridge process, which puts what the broker delivers back
 * into the log (publish_in), in the broker's order */
void mws_bus_set_broker(int on);
int mws_bus_broker_up(void);
void mws_bus_broker_state(int up);    /* the bridge: up or not, and alive */
int mws_bus_publish_in(const char *key, mws_msg_type type, const void *data,
                       size_t len);
/* the bridge: its subscription was lost; children report a gap of an
 * unknown number of messages (on_gap with lost 0) */
int mws_bus_gap_in(void);
/* the bridge's main loop: deliver gets every message published for the
 * broker, in log order; idle runs at least once a second */
void mws_bus_bridge_run(server_rec *s, mws_bus_deliver_fn *deliver,
                        mws_bus_gap_fn *gap, void (*idle)(void));

/* ---- mws_registry.c: this child's open connections --------------------- */
void mws_registry_init(apr_pool_t *p);
void mws_registry_add(mws_conn *mc);
mws_conn *mws_registry_find(uint64_t id);
void mws_registry_going_away(int graceful);
void mws_registry_report_all(void);

/* ---- mws_driver.c: which driver, and the start after the 101 ------------ */
void mws_driver_child_init(apr_pool_t *pchild, server_rec *s);
void mws_driver_register_hooks(void);
void mws_conn_accept(mws_conn *mc, int allow_park);
void mws_conn_start(mws_conn *mc, int allow_park);

/* ---- mws_park.c: the parked driver (event MPM) -------------------------- */
extern const mws_driver_ops mws_park_ops;
apr_status_t mws_park_child_init(apr_pool_t *pchild);
void mws_park_register_hooks(void);
/* hand n claimed connections (mws_queue_shared_claim) their callbacks */
void mws_park_kick_batch(mws_conn **mcs, size_t n);

/* ---- mws_stay.c: hot connections stay on their workers, served together */
/* Keep a hot plain-socket connection on this worker while input keeps
 * coming (passes: how many it had; < 0: may not stay).  0 if it may not
 * stay; else 1, with *finished from its last pass, once it left. */
int mws_stay(mws_drive *dv, int passes, int *finished);
apr_status_t mws_stay_child_init(apr_pool_t *pchild);

/* ---- mws_wakeq.c: later wake-ups of parked connections ------------------ */
apr_status_t mws_wakeq_start(apr_pool_t *pchild, ap_mpm_callback_fn_t *fire);
/* a callback (fire) comes at `when` (mc->lock held; takes a reference) */
void mws_wakeq_schedule_locked(mws_conn *mc, apr_time_t when);
void mws_wakeq_forget(mws_conn *mc);
/* the callback (fire) now (mc->lock held; takes a reference) */
void mws_wakeq_fire_now_locked(mws_conn *mc);

/* ---- mws_blocking.c: the blocking driver -------------------------------- */
extern const mws_driver_ops mws_blocking_ops;
void mws_blocking_child_init(void);
void mws_blocking_run(mws_drive *dv);

/* ---- mws_pass.c: one pass, the driver state ----------------------------- */
mws_drive *mws_drive_create(mws_conn *mc);
int mws_drive_pass(mws_drive *dv, int need_read);
int mws_drive_input(mws_drive *dv);
void mws_drive_finish(mws_drive *dv);
void mws_drive_last_words(mws_drive *dv);
int mws_server_stopping(void);

/* ---- mws_dispatch.c: the core's events, reassembly, close info ---------- */
/* WebSocketMaxReassemblyMemory: what unfinished messages may hold in one
 * child, all connections together */
extern apr_size_t mws_reassembly_limit;
void mws_dispatch(mws_drive *dv, uint8_t *buf, size_t len);
void mws_drive_close_info(mws_drive *dv, int code, const void *reason,
                          size_t len);
void mws_drive_fail(mws_drive *dv, unsigned code, const char *why);
void mws_msg_free(mws_drive *dv);
/* a message unfinished for Timeout while its client talks: 0 or when to
 * look again; fails the connection when it is due */
apr_time_t mws_msg_check_stale(mws_drive *dv, apr_time_t now);

/* ---- mws_write.c: the queue through the output filters ------------------ */
apr_status_t mws_write_queue(mws_drive *dv, int careful);
apr_time_t mws_write_retry_at(mws_drive *dv);
void mws_alloc_busy(mws_drive *dv);

/* ---- mws_timer.c: handler timers ----------------------------------------- */
mws_timer *mws_timer_add(mws_conn *mc, unsigned ms, int periodic,
                         mws_timer_fn fn, void *arg);
int mws_timer_cancel(mws_conn *mc, mws_timer *t);
apr_time_t mws_timer_run(mws_conn *mc, apr_time_t now);
void mws_timer_free_all(mws_conn *mc);      /* lock held */

/* ---- mws_conn.c: the connection object ---------------------------------- */
mws_conn *mws_conn_create(request_rec *r, mws_instance *inst,
                          const mws_dir_conf *dconf,
                          const mws_limits *limits);
mws_conn *mws_conn_retain(mws_conn *mc);
void mws_conn_release(mws_conn *mc);
/* what leaves a connection when it ends (the registry, channels): called
 * once per connection, outside its lock, in the order installed */
void mws_conn_on_end(void (*fn)(mws_conn *mc));
void mws_conn_kill(mws_conn *mc);
void mws_conn_abort(mws_conn *mc);
void mws_conn_going_away(mws_conn *mc);
void mws_conn_last_words(mws_conn *mc);
/* wait until a callback pass ends (lock held), and wake those waiting */
void mws_conn_io_wait_locked(mws_conn *mc);
void mws_conn_io_signal_locked(mws_conn *mc);

/* ---- mws_queue.c: the send queue ---------------------------------------- */
#define MWS_Q_WHOLE   0   /* a whole data message                        */
#define MWS_Q_PART    1   /* a part of a send_part message               */
#define MWS_Q_CONTROL 2   /* ping, pong, close                           */
int mws_queue_frame(mws_conn *mc, int fin, ws_opcode op, const void *data,
                    size_t len, int kind);
int mws_queue_close(mws_conn *mc, unsigned code, const char *reason);
/* a handler's data message, compressed where the connection does; and a
 * part of a message sent in parts */
int mws_queue_message(mws_conn *mc, mws_msg_type type, const void *data,
                      size_t len, int no_compress);
int mws_queue_part(mws_conn *mc, mws_msg_type type, const void *data,
                   size_t len, int last, int no_compress);
/* the connection's deflater goes (its last reference) */
void mws_queue_pmd_free(struct mws_conn_body *b);
int mws_queue_shared_claim(mws_conn *mc, mws_msg_type type,
                           mws_shared *sh, int *claim);
/* the writer takes every queued frame (lock taken here) ... */
mws_out *mws_queue_take(mws_conn *mc);
/* ... gives back what it did not write, and counts what it wrote */
void mws_queue_unflush(mws_conn *mc, mws_out *head);
void mws_queue_written(mws_conn *mc, size_t bytes);
/* a send went over WebSocketMaxQueuedBytes: drop what waits (not a close
 * already queued); 1 if it had */
int mws_queue_drop_overflow(mws_conn *mc);
void mws_queue_free_all(mws_conn *mc);       /* lock held */
/* wake the connection's driver after something was queued (lock held);
 * see mws_driver_ops.wake_locked for claim */
void mws_wake_locked(mws_conn *mc, int *claim);
void mws_out_free(mws_out *o);
void mws_out_free_list(mws_out *o);

/* ---- mws_handler.c: calls into handlers ---------------------------------- */
/* The line whose handler callback runs on this thread (publish() scopes
 * channel names by it); leave() restores the previous one. */
typedef struct mws_call {
    mws_instance *inst;
    const char *what;            /* "init", "on_message", ...              */
} mws_call;
mws_call mws_instance_enter(mws_instance *inst, const char *what);
void mws_instance_leave(mws_call prev);
/* a child that dies of a fatal signal inside a handler's callback logs
 * which handler and callback first (MWS00081) */
void mws_handler_crash_names(void);
mws_instance *mws_instance_current(void);
int mws_handler_message(mws_conn *mc, mws_msg_type type, const void *data,
                        size_t len);
int mws_handler_fragment(mws_conn *mc, mws_msg_type type, const void *data,
                         size_t len, int first, int last);
void mws_handler_timer(mws_conn *mc, mws_timer_fn fn, void *arg);
/* on_close, exactly once per opened connection */
void mws_handler_close(mws_conn *mc, int code, const char *reason,
                       size_t reason_len);

/* ---- mws_accesslog.c: one access-log line when a WebSocket ends ------- */
#define MWS_BY_NONE    0
#define MWS_BY_CLIENT  1         /* the client's close frame came first     */
#define MWS_BY_SERVER  2         /* ours did (handler, limit, error, stop)  */
#define MWS_BY_TIMEOUT 3         /* a time limit (Timeout, idle timeout)    */
#define MWS_BY_ABORT   4         /* no close handshake: the TCP link ended  */
/* who ended it, unless already known */
#define mws_closed_by(mc, by) do { \
        unsigned char none_ = MWS_BY_NONE; \
        __atomic_compare_exchange_n(&(mc)->closed_by, &none_, (by), 0, \
                                    __ATOMIC_RELAXED, __ATOMIC_RELAXED); \
    } while (0)
void mws_accesslog_save(mws_conn *mc, request_rec *r);
void mws_accesslog_write(mws_conn *mc, conn_rec *c, int code);
void mws_accesslog_free(mws_conn *mc);

/* ---- mws_stats.c: figures of every child, for mod_status --------------- */
#define MWS_STAT_NCODES 11       /* mws_stats_codes[], the last: others     */
#define MWS_STAT_LINES  32       /* WebSocketHandler lines counted apart    */
extern const int mws_stats_codes[MWS_STAT_NCODES];
typedef struct mws_stats_child {
    apr_uint32_t pid;            /* 0: free (claimed by compare-and-swap)   */
    apr_uint32_t generation;
    apr_uint32_t open_parked_driver, open_blocking_driver;  /* gauges     */
    apr_uint32_t parked;         /* in the MPM's pollset now (gauge)        */
    apr_uint32_t nlines;
    apr_uint64_t queued_bytes;   /* in send queues now (gauge)              */
    apr_uint64_t opened, closed, msgs_in, msgs_out, bytes_in, bytes_out;
    apr_uint64_t refused_403, refused_503;
    apr_uint64_t closes[MWS_STAT_NCODES];
    struct {
        char scope[MWS_SCOPE_HEX];
        apr_uint32_t open;
    } lines[MWS_STAT_LINES];
} mws_stats_child;
typedef struct mws_stats_area {
    apr_uint32_t nchildren;      /* records, record 0 included              */
    apr_uint32_t pad;
    mws_stats_child child[1];    /* [0]: what exited children counted       */
} mws_stats_area;
int mws_stats_post_config(apr_pool_t *pconf, server_rec *s);
/* insts: mws_instances (the lines counted apart) */
void mws_stats_child_init(apr_pool_t *pchild, server_rec *s,
                          const apr_array_header_t *insts);
mws_stats_area *mws_stats_area_get(void);
void mws_stats_reap(void);
int mws_stats_line(const mws_instance *inst);
void mws_stats_open(mws_conn *mc, int parked_driver);
void mws_stats_close(mws_conn *mc, int code);
void mws_stats_in(mws_conn *mc, apr_size_t bytes, int messages);
void mws_stats_msg_out(mws_conn *mc);
void mws_stats_bytes_out(mws_conn *mc, apr_size_t bytes);
void mws_stats_queued(apr_int64_t delta);
void mws_stats_parked(int delta);
void mws_stats_refused(int status);
/* who may touch a parked connection (lock held), counted for mod_status */
#define mws_set_io(mc, to) do { \
        mws_io to_ = (to); \
        if (((mc)->io == MWS_IO_PARKED) != (to_ == MWS_IO_PARKED)) { \
            mws_stats_parked(to_ == MWS_IO_PARKED ? 1 : -1); \
        } \
        (mc)->io = to_; \
    } while (0)
/* ---- mws_pmd.c: permessage-deflate frames ------------------------------- */
/* Compress a data frame's payload with d into one malloc'd block: head
 * bytes for the caller's struct, then the frame (RSV1 set with rsv1),
 * *flen its length.  last: the message's last piece.  NULL: no memory or
 * a zlib error. */
void *mws_pmd_frame(ws_deflater *d, size_t head, int fin, int rsv1,
                    ws_opcode op, const void *data, size_t len, int last,
                    size_t *flen);
/* This thread's deflater for messages without context takeover (reset
 * after each message), for these parameters; NULL: no memory. */
ws_deflater *mws_pmd_thread_deflater(unsigned window_bits,
                                     unsigned mem_level);
void mws_pmd_child_init(apr_pool_t *pchild);
/* WebSocketCompressionMaxContexts: connections of this child that may keep
 * zlib state between messages (0: no limit) */
extern int mws_pmd_max_contexts;
/* 1 and counted if one more connection may keep zlib state, else 0 */
int mws_pmd_context_take(void);
void mws_pmd_context_give(void);
/* This thread's inflate output buffer (MWS_INFLATE_CHUNK bytes). */
#define MWS_INFLATE_CHUNK (16 * 1024)
uint8_t *mws_pmd_inflate_buf(void);

#endif /* MWS_PRIVATE_H */
