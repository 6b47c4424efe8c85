/*
 * ssh.c - one non-blocking libssh2 session per host on the caller's libuv
 * loop (see ssh.h).
 *
 * The session is an explicit state machine in the manner of curl's
 * lib/vssh/libssh2.c: every libssh2 call that returns LIBSSH2_ERROR_EAGAIN
 * leaves the state unchanged and we wait on the socket for whatever
 * libssh2_session_block_directions() says; set_state() is the only place
 * the state changes, so -vv shows every transition.  One uv_poll_t watches
 * the socket, one uv_timer_t enforces the connect/exec timeouts and one
 * uv_timer_t ("kick") re-drives the machine from the loop rather than from
 * inside a caller's function, and after every read, because libssh2 may
 * hold buffered data while the socket has nothing pending.
 */
#include "cf.h"
#include "ssh.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libssh2.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#define CF_SSH_OUTPUT_MAX         (16u << 20)
#define CF_SSH_DEFAULT_TIMEOUT_MS 30000u
#define CF_SSH_MAX_KEYS           4

/* Terrapin (CVE-2023-48795) needs chacha20-poly1305 or an EtM MAC; libssh2
 * 1.10 knows neither fix, so offer only what is not affected.  Names a
 * given libssh2 build does not know are dropped by method_pref itself. */
static const char KEX_PREF[] = "curve25519-sha256,curve25519-sha256@libssh.org,ecdh-sha2-nistp256,"
                               "ecdh-sha2-nistp384,ecdh-sha2-nistp521,"
                               "diffie-hellman-group-exchange-sha256,"
                               "diffie-hellman-group16-sha512,diffie-hellman-group14-sha256";
static const char CIPHER_PREF[] = "aes256-gcm@openssh.com,aes128-gcm@openssh.com,aes256-ctr,"
                                  "aes192-ctr,aes128-ctr";
static const char MAC_PREF[] = "hmac-sha2-256,hmac-sha2-512";

enum ssh_state {
    S_NEW,
    S_RESOLVE,
    S_TCP,
    S_HANDSHAKE,
    S_HOSTKEY,
    S_AUTH_LIST,
    S_AUTH_AGENT,
    S_AUTH_KEY,
    S_IDLE,
    S_CH_OPEN,
    S_CH_EXEC,
    S_CH_IO,
    S_CH_CLOSE,
    S_CH_FREE,
    S_FAILED,
    S_CLOSED,
};

/* Each name reads after "while", as in "timed out after 30 s while
 * performing the ssh handshake". */
static const char *const state_names[] = {
    [S_NEW] = "starting",
    [S_RESOLVE] = "resolving the address",
    [S_TCP] = "opening the tcp connection",
    [S_HANDSHAKE] = "performing the ssh handshake",
    [S_HOSTKEY] = "checking the host key",
    [S_AUTH_LIST] = "authenticating",
    [S_AUTH_AGENT] = "authenticating with ssh-agent",
    [S_AUTH_KEY] = "authenticating with a key file",
    [S_IDLE] = "idle",
    [S_CH_OPEN] = "opening a channel",
    [S_CH_EXEC] = "starting the command",
    [S_CH_IO] = "running the command",
    [S_CH_CLOSE] = "closing the channel",
    [S_CH_FREE] = "freeing the channel",
    [S_FAILED] = "failed",
    [S_CLOSED] = "closed",
};

/* What a state handler tells drive(). */
enum step { STEP_WAIT, STEP_NEXT, STEP_STOP };

struct cf_ssh {
    uv_loop_t *loop;
    char *name, *address, *user, *key_file, *known_hosts;
    int port;
    enum cf_hostkey_mode hostkey_mode;
    unsigned timeout_ms;
    char endpoint[300];  /* "addr:port" for messages */
    char tried_addr[64]; /* numeric address of the last connect, when resolved by name */

    enum ssh_state state;
    int fail_code;
    char errmsg[CF_ERRLEN];
    char libtext[256]; /* ssh_errtext()'s copy of libssh2's message */

    /* socket and handles (embedded; freed after their close callbacks) */
    int fd;
    uv_poll_t poll;
    int poll_open;   /* uv_poll_init_socket done, close not finished */
    int poll_events; /* events currently watched */
    uv_timer_t timer;
    uv_timer_t kick;
    uv_getaddrinfo_t gai;
    int resolving;
    struct addrinfo *ai;      /* resolved list, owned */
    int ai_from_uv;           /* free with uv_freeaddrinfo */
    struct addrinfo *ai_next; /* next address to try */
    int last_connect_errno;

    LIBSSH2_SESSION *session;
    LIBSSH2_AGENT *agent;
    struct libssh2_agent_publickey *agent_id, *agent_prev;
    int agent_keys;
    char *keys[CF_SSH_MAX_KEYS];
    int nkeys, key_idx;
    struct cf_buf tried; /* "ssh-agent (2 keys), /root/.ssh/id_ed25519" */
    char *rsa_key;       /* an RSA key that was refused, for the hint */

    /* connect */
    cf_ssh_cb connect_cb;
    void *connect_arg;

    /* exec */
    LIBSSH2_CHANNEL *channel;
    char *command;
    char *in;
    size_t in_len, in_off;
    int eof_sent; /* SSH_MSG_CHANNEL_EOF went out, or the channel takes no more input */
    struct cf_buf out, err;
    int truncated;
    int exit_status;
    cf_ssh_exec_cb exec_cb;
    void *exec_arg;

    /* close */
    int closing;
    int pending_closes;
    void (*close_cb)(void *arg);
    void *close_arg;
};

static void drive(cf_ssh *s);
static void update_poll(cf_ssh *s);
static void on_poll(uv_poll_t *h, int status, int events);

/* The only way the state changes, so -vv tells the whole story. */
static void set_state(cf_ssh *s, enum ssh_state st)
{
    if (s->state == st)
        return;
    cf_debug("ssh %s: %s -> %s", s->name, state_names[s->state], state_names[st]);
    s->state = st;
}

static const char *home_dir(void)
{
    const char *h = getenv("HOME");
    return h && *h ? h : "/root";
}

static const char *known_hosts_path(const cf_ssh *s)
{
    return s->known_hosts;
}

/* A message from the C library or libssh2 ("Connection refused", "Failed
 * getting banner") copied into buf with its first letter lowered, so that it
 * reads inside our lowercase messages.  An acronym ("SSH...") keeps its case. */
static const char *lower_first(char *buf, size_t n, const char *text)
{
    snprintf(buf, n, "%s", text);
    if (buf[0] >= 'A' && buf[0] <= 'Z' && !(buf[1] >= 'A' && buf[1] <= 'Z'))
        buf[0] = (char)(buf[0] - 'A' + 'a');
    return buf;
}

/* libssh2's last error text, for messages; valid until the next call. */
static const char *ssh_errtext(cf_ssh *s)
{
    char *msg = NULL;
    if (!s->session)
        return "no session";
    libssh2_session_last_error(s->session, &msg, NULL, 0);
    return lower_first(s->libtext, sizeof s->libtext, msg && *msg ? msg : "unknown libssh2 error");
}

/* strerror(e) in our case; valid until the next call. */
static const char *errno_text(cf_ssh *s, int e)
{
    return lower_first(s->libtext, sizeof s->libtext, strerror(e));
}

/* The socket's pending error.  libuv reports any POLLERR as UV_EBADF, so
 * the reason a connect failed or a connection broke (ECONNREFUSED,
 * ECONNRESET, ETIMEDOUT) is only in SO_ERROR; 0 when none is pending. */
static int socket_error(const cf_ssh *s)
{
    int soerr = 0;
    socklen_t sl = sizeof soerr;
    if (s->fd < 0 || getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0)
        return 0;
    return soerr;
}

static int is_socket_error(int rc)
{
    return rc == LIBSSH2_ERROR_SOCKET_SEND || rc == LIBSSH2_ERROR_SOCKET_RECV ||
           rc == LIBSSH2_ERROR_SOCKET_DISCONNECT || rc == LIBSSH2_ERROR_SOCKET_NONE ||
           rc == LIBSSH2_ERROR_SOCKET_TIMEOUT;
}

/* Why the connection is gone, after libssh2 returned a socket-level rc:
 * its own text then is "transport read" and the like, so say what the
 * socket says, or that the host hung up. */
static const char *lost_text(cf_ssh *s)
{
    int e = socket_error(s);
    return e ? errno_text(s, e) : "the host closed the connection";
}

/* Set a method preference, keeping only the names this libssh2 knows:
 * libssh2 1.10 strips unknown names itself but with an overlapping memcpy
 * (undefined behaviour, and an abort under ASan). */
static void set_pref(cf_ssh *s, int type, const char *pref)
{
    const char **algs = NULL;
    int n = libssh2_session_supported_algs(s->session, type, &algs);
    struct cf_buf keep = CF_BUF_INIT;
    char *copy = cf_strdup(pref), *save = NULL;
    for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save))
        for (int i = 0; i < n; i++)
            if (strcmp(algs[i], tok) == 0) {
                cf_buf_printf(&keep, "%s%s", keep.len ? "," : "", tok);
                break;
            }
    if (algs)
        libssh2_free(s->session, (void *)algs);
    if (keep.len && libssh2_session_method_pref(s->session, type, keep.data) != 0)
        cf_debug("ssh %s: method preference %s not accepted: %s", s->name, keep.data,
                 ssh_errtext(s));
    static const char *const what[] = {"kex",         "host key", "cipher c->s",
                                       "cipher s->c", "mac c->s", "mac s->c"};
    cf_debug("ssh %s: %s preference: %s", s->name, type >= 0 && type < 6 ? what[type] : "method",
             keep.len ? keep.data : "(default)");
    cf_buf_release(&keep);
    free(copy);
}

static void stop_io(cf_ssh *s)
{
    if (s->poll_open && !uv_is_closing((uv_handle_t *)&s->poll) && s->poll_events) {
        uv_poll_stop(&s->poll);
        s->poll_events = 0;
    }
    uv_timer_stop(&s->timer);
    uv_timer_stop(&s->kick);
}

static void finish_connect(cf_ssh *s, int status)
{
    cf_ssh_cb cb = s->connect_cb;
    void *arg = s->connect_arg;
    s->connect_cb = NULL;
    if (cb)
        cb(s, status, arg);
}

/* Hand the captured output to the exec callback.  The buffers are taken off
 * the session first, so the callback may start the next command at once. */
static void finish_exec(cf_ssh *s, int status)
{
    cf_ssh_exec_cb cb = s->exec_cb;
    void *arg = s->exec_arg;
    struct cf_buf out = s->out, err = s->err;
    struct cf_ssh_result res;

    s->exec_cb = NULL;
    s->out = (struct cf_buf)CF_BUF_INIT;
    s->err = (struct cf_buf)CF_BUF_INIT;
    if (s->in)
        cf_secure_free(s->in, s->in_len);
    s->in = NULL;
    s->in_len = s->in_off = 0;
    free(s->command);
    s->command = NULL;

    res.exit_status = s->exit_status;
    res.out = out.data ? out.data : "";
    res.out_len = out.len;
    res.err = err.data ? err.data : "";
    res.err_len = err.len;
    if (cb)
        cb(s, status, &res, arg);
    cf_buf_release(&out);
    cf_buf_release(&err);
}

/* A failure ends the session: it keeps the message and the code, stops all
 * I/O and reports to whichever callback is pending. */
static enum step fail(cf_ssh *s, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static enum step fail(cf_ssh *s, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->errmsg, sizeof s->errmsg, fmt, ap);
    va_end(ap);
    cf_debug("ssh %s: %s", s->name, s->errmsg);
    s->fail_code = code;
    set_state(s, S_FAILED);
    stop_io(s);
    if (s->connect_cb)
        finish_connect(s, code);
    else if (s->exec_cb)
        finish_exec(s, code);
    return STEP_STOP;
}

/* The connection broke under libssh2 (a socket-level rc). */
static enum step fail_lost(cf_ssh *s)
{
    return fail(s, CF_ECONNECT, "connection to %s (%s) lost while %s: %s", s->name, s->endpoint,
                state_names[s->state], lost_text(s));
}

static void on_timeout(uv_timer_t *t)
{
    cf_ssh *s = t->data;
    double secs = s->timeout_ms / 1000.0;
    char sent[96] = "";
    if (!s->exec_cb) {
        fail(s, CF_ETIMEDOUT, "connect to %s (%s) timed out after %g s while %s", s->name,
             s->endpoint, secs, state_names[s->state]);
        return;
    }
    /* a stalled stdin is told apart from a command that never ends */
    if (s->state == S_CH_IO && s->in_len && !s->eof_sent)
        snprintf(sent, sizeof sent, " (%zu of %zu bytes of stdin sent)", s->in_off, s->in_len);
    fail(s, CF_ETIMEDOUT, "command on %s (%s) timed out after %g s while %s%s", s->name,
         s->endpoint, secs, state_names[s->state], sent);
}

static void on_kick(uv_timer_t *t)
{
    drive(t->data);
}

static void schedule_kick(cf_ssh *s)
{
    uv_timer_start(&s->kick, on_kick, 0, 0);
}

/* ---- TCP connect ------------------------------------------------------ */

static enum step tcp_try_next(cf_ssh *s);

/* The end of a closing session: once no handle close and no resolution is
 * outstanding, free it and tell the owner.  Returns 1 when s is gone. */
static int release_if_done(cf_ssh *s)
{
    if (!s->closing || s->pending_closes > 0 || s->resolving)
        return 0;
    void (*cb)(void *) = s->close_cb;
    void *arg = s->close_arg;
    free(s);
    if (cb)
        cb(arg);
    return 1;
}

static void on_poll_closed_retry(uv_handle_t *h)
{
    cf_ssh *s = h->data;
    s->poll_open = 0;
    s->pending_closes--;
    if (s->fd >= 0)
        close(s->fd);
    s->fd = -1;
    if (s->closing) {
        release_if_done(s); /* cf_ssh_close() is waiting for this handle too */
        return;
    }
    if (s->state == S_TCP)
        tcp_try_next(s);
}

/* Give up on the current socket (asynchronously: the poll handle must close
 * before the fd does) and try the next address. */
static void tcp_abandon(cf_ssh *s)
{
    if (s->poll_open) {
        s->poll_events = 0;
        s->pending_closes++;
        uv_close((uv_handle_t *)&s->poll, on_poll_closed_retry);
    } else {
        if (s->fd >= 0)
            close(s->fd);
        s->fd = -1;
        tcp_try_next(s);
    }
}

/* Which address a name resolved to, for the message: only when the
 * endpoint does not show it already. */
static void note_tried_addr(cf_ssh *s, const struct addrinfo *a)
{
    if (!s->ai_from_uv || getnameinfo(a->ai_addr, a->ai_addrlen, s->tried_addr,
                                      sizeof s->tried_addr, NULL, 0, NI_NUMERICHOST) != 0)
        s->tried_addr[0] = '\0';
}

static enum step tcp_try_next(cf_ssh *s)
{
    while (s->ai_next) {
        struct addrinfo *a = s->ai_next;
        s->ai_next = a->ai_next;
        note_tried_addr(s, a);
        int fd = socket(a->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            s->last_connect_errno = errno;
            continue;
        }
        if (connect(fd, a->ai_addr, a->ai_addrlen) != 0 && errno != EINPROGRESS) {
            s->last_connect_errno = errno;
            close(fd);
            continue;
        }
        s->fd = fd;
        int uvrc = uv_poll_init_socket(s->loop, &s->poll, fd);
        if (uvrc != 0) {
            close(fd);
            s->fd = -1;
            return fail(s, CF_ECONNECT, "connect to %s (%s): cannot watch the socket: %s", s->name,
                        s->endpoint, uv_strerror(uvrc));
        }
        s->poll.data = s;
        s->poll_open = 1;
        s->poll_events = UV_WRITABLE;
        uv_poll_start(&s->poll, UV_WRITABLE, on_poll);
        set_state(s, S_TCP);
        return STEP_WAIT;
    }
    int e = s->last_connect_errno ? s->last_connect_errno : EHOSTUNREACH;
    char via[96] = "";
    if (s->tried_addr[0])
        snprintf(via, sizeof via, " at %s", s->tried_addr);
    return fail(s, CF_ECONNECT, "connect to %s (%s)%s: %s%s", s->name, s->endpoint, via,
                errno_text(s, e), e == ECONNREFUSED ? "; is sshd listening there?" : "");
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    cf_ssh *s = req->data;
    s->resolving = 0;
    if (s->closing) {
        if (res)
            uv_freeaddrinfo(res);
        release_if_done(s);
        return;
    }
    if (s->state != S_RESOLVE) { /* timed out meanwhile */
        if (res)
            uv_freeaddrinfo(res);
        return;
    }
    if (status != 0 || !res) {
        fail(s, CF_ECONNECT, "resolve %s (%s): %s; check ansible_host", s->name, s->endpoint,
             status ? uv_strerror(status) : "no address");
        return;
    }
    s->ai = res;
    s->ai_from_uv = 1;
    s->ai_next = res;
    tcp_try_next(s);
}

static enum step st_resolve(cf_ssh *s)
{
    struct addrinfo hints = {0}, *res = NULL;
    char port[16];
    snprintf(port, sizeof port, "%d", s->port);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
    /* a numeric address resolves without the network, so do it inline */
    if (getaddrinfo(s->address, port, &hints, &res) == 0) {
        s->ai = res;
        s->ai_next = res;
        return tcp_try_next(s);
    }
    hints.ai_flags = AI_NUMERICSERV;
    s->gai.data = s;
    int rc = uv_getaddrinfo(s->loop, &s->gai, on_resolved, s->address, port, &hints);
    if (rc != 0)
        return fail(s, CF_ECONNECT, "resolve %s (%s): %s", s->name, s->endpoint, uv_strerror(rc));
    s->resolving = 1;
    return STEP_STOP; /* on_resolved continues */
}

/* The socket became writable or reported an error: SO_ERROR says whether
 * the connect succeeded.  poll_status is only a fallback, as libuv turns
 * every POLLERR into UV_EBADF. */
static void tcp_check(cf_ssh *s, int poll_status)
{
    int soerr = socket_error(s);
    if (soerr == 0 && poll_status < 0)
        soerr = -poll_status;
    if (soerr != 0) {
        s->last_connect_errno = soerr;
        tcp_abandon(s);
        return;
    }
    set_state(s, S_HANDSHAKE);
    drive(s);
}

/* ---- host key --------------------------------------------------------- */

static int knownhost_keybit(int hostkey_type)
{
    switch (hostkey_type) {
    case LIBSSH2_HOSTKEY_TYPE_RSA:
        return LIBSSH2_KNOWNHOST_KEY_SSHRSA;
    case LIBSSH2_HOSTKEY_TYPE_DSS:
        return LIBSSH2_KNOWNHOST_KEY_SSHDSS;
    case LIBSSH2_HOSTKEY_TYPE_ECDSA_256:
        return LIBSSH2_KNOWNHOST_KEY_ECDSA_256;
    case LIBSSH2_HOSTKEY_TYPE_ECDSA_384:
        return LIBSSH2_KNOWNHOST_KEY_ECDSA_384;
    case LIBSSH2_HOSTKEY_TYPE_ECDSA_521:
        return LIBSSH2_KNOWNHOST_KEY_ECDSA_521;
    case LIBSSH2_HOSTKEY_TYPE_ED25519:
        return LIBSSH2_KNOWNHOST_KEY_ED25519;
    default:
        return LIBSSH2_KNOWNHOST_KEY_UNKNOWN;
    }
}

static const char *hostkey_type_name(int hostkey_type)
{
    switch (hostkey_type) {
    case LIBSSH2_HOSTKEY_TYPE_RSA:
        return "ssh-rsa";
    case LIBSSH2_HOSTKEY_TYPE_DSS:
        return "ssh-dss";
    case LIBSSH2_HOSTKEY_TYPE_ECDSA_256:
        return "ecdsa-sha2-nistp256";
    case LIBSSH2_HOSTKEY_TYPE_ECDSA_384:
        return "ecdsa-sha2-nistp384";
    case LIBSSH2_HOSTKEY_TYPE_ECDSA_521:
        return "ecdsa-sha2-nistp521";
    case LIBSSH2_HOSTKEY_TYPE_ED25519:
        return "ssh-ed25519";
    default:
        return NULL;
    }
}

/* The name OpenSSH files a host under: "addr" on port 22, else "[addr]:port". */
static void known_name(const cf_ssh *s, char *out, size_t n)
{
    if (s->port == 22)
        snprintf(out, n, "%s", s->address);
    else
        snprintf(out, n, "[%s]:%d", s->address, s->port);
}

/* Load known_hosts line by line, so one line libssh2 cannot parse (a newer
 * key type, @cert-authority) does not hide all the others.  @revoked lines
 * go to *revoked.  A missing file is an empty list. */
static int load_known_hosts(cf_ssh *s, LIBSSH2_KNOWNHOSTS *kh, LIBSSH2_KNOWNHOSTS *revoked)
{
    char *text = NULL;
    size_t len = 0;
    int rc = cf_read_file(known_hosts_path(s), 64u << 20, &text, &len);
    if (rc == CF_ENOENT)
        return 0;
    if (rc != 0)
        return rc;
    char *line = text;
    while (line && *line) {
        char *nl = strchr(line, '\n');
        if (nl)
            *nl = '\0';
        char *p = line;
        while (*p == ' ' || *p == '\t')
            p++;
        LIBSSH2_KNOWNHOSTS *into = kh;
        if (strncmp(p, "@revoked", 8) == 0 && (p[8] == ' ' || p[8] == '\t')) {
            into = revoked;
            p += 9;
            while (*p == ' ' || *p == '\t')
                p++;
        }
        if (*p && *p != '#' && *p != '@' && into &&
            libssh2_knownhost_readline(into, p, strlen(p), LIBSSH2_KNOWNHOST_FILE_OPENSSH) != 0)
            cf_debug("ssh %s: skipping a known_hosts line libssh2 cannot parse", s->name);
        line = nl ? nl + 1 : NULL;
    }
    free(text);
    return 0;
}

/* Before the handshake: prefer host key algorithms already recorded for
 * this host (as OpenSSH does), so a known_hosts entry made by ssh(1) is used
 * instead of negotiating a type we have no entry for. */
static void set_hostkey_pref(cf_ssh *s)
{
    static const struct {
        int bit;
        const char *algs;
    } types[] = {
        {LIBSSH2_KNOWNHOST_KEY_ED25519, "ssh-ed25519"},
        {LIBSSH2_KNOWNHOST_KEY_ECDSA_256, "ecdsa-sha2-nistp256"},
        {LIBSSH2_KNOWNHOST_KEY_ECDSA_384, "ecdsa-sha2-nistp384"},
        {LIBSSH2_KNOWNHOST_KEY_ECDSA_521, "ecdsa-sha2-nistp521"},
        {LIBSSH2_KNOWNHOST_KEY_SSHRSA, "rsa-sha2-512,rsa-sha2-256,ssh-rsa"},
    };
    char pref[512] = "", name[300];
    int known[5] = {0};
    if (s->hostkey_mode == CF_HOSTKEY_OFF)
        return;
    LIBSSH2_KNOWNHOSTS *kh = libssh2_knownhost_init(s->session);
    if (!kh)
        return;
    known_name(s, name, sizeof name);
    if (load_known_hosts(s, kh, NULL) == 0) {
        /* a dummy key of each type: MISMATCH means an entry of that type exists */
        for (size_t i = 0; i < 5; i++)
            known[i] = libssh2_knownhost_checkp(kh, name, -1, "x", 1,
                                                LIBSSH2_KNOWNHOST_TYPE_PLAIN |
                                                    LIBSSH2_KNOWNHOST_KEYENC_RAW | types[i].bit,
                                                NULL) == LIBSSH2_KNOWNHOST_CHECK_MISMATCH;
    }
    libssh2_knownhost_free(kh);
    for (int pass = 0; pass < 2; pass++)
        for (size_t i = 0; i < 5; i++)
            if (known[i] == !pass) {
                if (*pref)
                    strcat(pref, ",");
                strcat(pref, types[i].algs);
            }
    set_pref(s, LIBSSH2_METHOD_HOSTKEY, pref);
}

/* Append "name type base64" to known_hosts so that concurrent sessions and
 * runs never tear a line: an exclusive flock, a re-read under the lock (a
 * racing session may have added the host meanwhile), one O_APPEND write.
 * Returns the libssh2 check result of the re-read or MATCH after adding. */
static int known_hosts_append(cf_ssh *s, const char *name, const char *key, size_t key_len,
                              int key_type, char *why, size_t why_len)
{
    const char *path = known_hosts_path(s);
    const char *tname = hostkey_type_name(key_type);
    char *b64 = NULL, *line = NULL;
    int fd = -1, result = LIBSSH2_KNOWNHOST_CHECK_FAILURE;
    LIBSSH2_KNOWNHOSTS *kh = NULL;

    if (!tname) {
        snprintf(why, why_len, "unsupported host key type");
        goto out;
    }
    /* create ~/.ssh like ssh(1) does; other directories must exist */
    char *dir = cf_strdup(path), *slash = strrchr(dir, '/');
    if (slash && slash != dir) {
        *slash = '\0';
        if (mkdir(dir, 0700) != 0 && errno != EEXIST)
            cf_debug("ssh %s: mkdir %s: %s", s->name, dir, strerror(errno));
    }
    free(dir);
    fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        snprintf(why, why_len, "cannot open \"%s\": %s", path, strerror(errno));
        goto out;
    }
    if (flock(fd, LOCK_EX) != 0) {
        snprintf(why, why_len, "cannot lock \"%s\": %s", path, strerror(errno));
        goto out;
    }
    kh = libssh2_knownhost_init(s->session);
    if (!kh || load_known_hosts(s, kh, NULL) != 0) {
        snprintf(why, why_len, "cannot read \"%s\"", path);
        goto out;
    }
    result = libssh2_knownhost_checkp(kh, name, -1, key, key_len,
                                      LIBSSH2_KNOWNHOST_TYPE_PLAIN | LIBSSH2_KNOWNHOST_KEYENC_RAW |
                                          knownhost_keybit(key_type),
                                      NULL);
    if (result != LIBSSH2_KNOWNHOST_CHECK_NOTFOUND)
        goto out;
    b64 = cf_b64(key, key_len);
    /* a previous writer may have left the file without a final newline */
    struct stat st;
    int need_nl = 0;
    if (fstat(fd, &st) == 0 && st.st_size > 0) {
        char last = '\n';
        int rfd = open(path, O_RDONLY | O_CLOEXEC);
        if (rfd >= 0) {
            if (pread(rfd, &last, 1, st.st_size - 1) == 1 && last != '\n')
                need_nl = 1;
            close(rfd);
        }
    }
    line = cf_asprintf("%s%s %s %s\n", need_nl ? "\n" : "", name, tname, b64);
    size_t n = strlen(line);
    if (write(fd, line, n) != (ssize_t)n || fsync(fd) != 0) {
        snprintf(why, why_len, "cannot write \"%s\": %s", path, strerror(errno));
        result = LIBSSH2_KNOWNHOST_CHECK_FAILURE;
        goto out;
    }
    cf_info("ssh %s: added %s key for %s to %s", s->name, tname, name, path);
    result = LIBSSH2_KNOWNHOST_CHECK_MATCH;
out:
    if (kh)
        libssh2_knownhost_free(kh);
    if (fd >= 0)
        close(fd); /* releases the lock */
    free(b64);
    free(line);
    return result;
}

static enum step st_hostkey(cf_ssh *s)
{
    size_t key_len = 0;
    int key_type = 0;
    const char *key = libssh2_session_hostkey(s->session, &key_len, &key_type);
    const unsigned char *hash =
        (const unsigned char *)libssh2_hostkey_hash(s->session, LIBSSH2_HOSTKEY_HASH_SHA256);
    char fp[80] = "SHA256:", name[300], why[512] = "";
    const char *tname = hostkey_type_name(key_type);
    const char *path = known_hosts_path(s);

    if (!key || !hash)
        return fail(s, CF_EPROTO, "%s (%s) sent no usable host key", s->name, s->endpoint);
    /* OpenSSH prints the SHA-256 fingerprint as unpadded base64 */
    char *b = cf_b64(hash, 32);
    char *eq = strchr(b, '=');
    if (eq)
        *eq = '\0';
    snprintf(fp + 7, sizeof fp - 7, "%s", b);
    free(b);
    known_name(s, name, sizeof name);
    if (!tname)
        tname = "unknown";

    if (s->hostkey_mode == CF_HOSTKEY_OFF) {
        cf_debug("ssh %s: host key %s %s not checked (--host-key-checking off)", s->name, tname,
                 fp);
        set_state(s, S_AUTH_LIST);
        return STEP_NEXT;
    }

    LIBSSH2_KNOWNHOSTS *kh = libssh2_knownhost_init(s->session);
    LIBSSH2_KNOWNHOSTS *revoked = libssh2_knownhost_init(s->session);
    int typemask =
        LIBSSH2_KNOWNHOST_TYPE_PLAIN | LIBSSH2_KNOWNHOST_KEYENC_RAW | knownhost_keybit(key_type);
    int check = LIBSSH2_KNOWNHOST_CHECK_FAILURE, is_revoked = 0;
    if (kh && revoked && load_known_hosts(s, kh, revoked) == 0) {
        check = libssh2_knownhost_checkp(kh, name, -1, key, key_len, typemask, NULL);
        /* a revoked key is refused whatever host it is listed for */
        is_revoked = libssh2_knownhost_checkp(revoked, name, -1, key, key_len, typemask, NULL) ==
                     LIBSSH2_KNOWNHOST_CHECK_MATCH;
    }
    if (kh)
        libssh2_knownhost_free(kh);
    if (revoked)
        libssh2_knownhost_free(revoked);

    if (is_revoked)
        return fail(s, CF_EHOSTKEY,
                    "host key for %s (%s) is marked @revoked in \"%s\": %s %s; refusing to connect",
                    s->name, s->endpoint, path, tname, fp);
    if (check == LIBSSH2_KNOWNHOST_CHECK_NOTFOUND && s->hostkey_mode == CF_HOSTKEY_ACCEPT_NEW)
        check = known_hosts_append(s, name, key, key_len, key_type, why, sizeof why);

    switch (check) {
    case LIBSSH2_KNOWNHOST_CHECK_MATCH:
        cf_debug("ssh %s: host key %s %s matches \"%s\"", s->name, tname, fp, path);
        set_state(s, S_AUTH_LIST);
        return STEP_NEXT;
    case LIBSSH2_KNOWNHOST_CHECK_NOTFOUND:
        return fail(s, CF_EHOSTKEY,
                    "host key for %s (%s) is not known: %s %s; verify the fingerprint, then add "
                    "it to \"%s\" (ssh-keyscan -p %d %s) or run with --host-key-checking "
                    "accept-new",
                    s->name, s->endpoint, tname, fp, path, s->port, s->address);
    case LIBSSH2_KNOWNHOST_CHECK_MISMATCH:
        return fail(s, CF_EHOSTKEY,
                    "host key for %s (%s) changed: the host now shows %s %s, which differs from "
                    "\"%s\"; this may be an attack. If the host was reinstalled, remove the old "
                    "entry with ssh-keygen -R '%s' -f '%s'",
                    s->name, s->endpoint, tname, fp, path, name, path);
    default:
        return fail(s, CF_EHOSTKEY, "cannot check the host key of %s (%s) (%s %s): %s", s->name,
                    s->endpoint, tname, fp, *why ? why : "known_hosts unreadable");
    }
}

/* ---- authentication --------------------------------------------------- */

static void tried_add(cf_ssh *s, const char *what)
{
    if (s->tried.len)
        cf_buf_puts(&s->tried, ", ");
    cf_buf_puts(&s->tried, what);
}

/* Is this private key file an RSA key?  (.pub next to it, PEM header, or
 * the key type inside an OpenSSH-format key.) */
static int key_is_rsa(const char *path)
{
    char *pubpath = cf_asprintf("%s.pub", path), *text = NULL;
    size_t len = 0;
    int rsa = 0;
    if (cf_read_file(pubpath, 1 << 16, &text, &len) == 0) {
        rsa = strncmp(text, "ssh-rsa ", 8) == 0;
        free(text);
        free(pubpath);
        return rsa;
    }
    free(pubpath);
    if (cf_read_file(path, 1 << 20, &text, &len) != 0)
        return 0;
    if (strstr(text, "BEGIN RSA PRIVATE KEY")) {
        rsa = 1;
    } else if (strstr(text, "BEGIN OPENSSH PRIVATE KEY")) {
        /* the unencrypted public part names the type: string "ssh-rsa" */
        char *p = strchr(text, '\n'), *end = strstr(text, "-----END");
        if (p && end && end > p) {
            struct cf_buf b64 = CF_BUF_INIT;
            for (char *q = p; q < end; q++)
                if (*q != '\n' && *q != '\r')
                    cf_buf_append(&b64, q, 1);
            size_t cap = b64.len / 4 * 3 + 3;
            unsigned char *bin = cf_xmalloc(cap);
            int n = b64.len ? EVP_DecodeBlock(bin, (unsigned char *)b64.data, (int)b64.len) : -1;
            if (n > 0 && memmem(bin, (size_t)n, "\0\0\0\7ssh-rsa", 11))
                rsa = 1;
            OPENSSL_cleanse(bin, cap);
            free(bin);
            cf_buf_release_secure(&b64);
        }
    } else if (strstr(text, "BEGIN PRIVATE KEY")) {
        BIO *bio = BIO_new_mem_buf(text, (int)len);
        EVP_PKEY *pk = bio ? PEM_read_bio_PrivateKey(bio, NULL, NULL, (void *)"") : NULL;
        rsa = pk && EVP_PKEY_get_base_id(pk) == EVP_PKEY_RSA;
        EVP_PKEY_free(pk);
        BIO_free(bio);
    }
    cf_secure_free(text, len);
    return rsa;
}

static enum step auth_done(cf_ssh *s)
{
    cf_debug("ssh %s: authenticated as %s", s->name, s->user);
    if (s->agent) {
        libssh2_agent_disconnect(s->agent);
        libssh2_agent_free(s->agent);
        s->agent = NULL;
    }
    set_state(s, S_IDLE);
    stop_io(s);
    finish_connect(s, 0);
    return STEP_STOP;
}

static enum step auth_failed(cf_ssh *s)
{
    if (s->rsa_key)
        return fail(s, CF_EAUTH,
                    "ssh authentication as \"%s\" to %s (%s) failed (tried: %s). The RSA key "
                    "\"%s\" was refused: libssh2 1.10 signs RSA keys only with ssh-rsa (SHA-1), "
                    "which OpenSSH 8.8 and later refuse; use an ed25519 or ecdsa key "
                    "(ssh-keygen -t ed25519) in ansible_ssh_private_key_file",
                    s->user, s->name, s->endpoint, s->tried.len ? s->tried.data : "nothing",
                    s->rsa_key);
    return fail(s, CF_EAUTH,
                "ssh authentication as \"%s\" to %s (%s) failed (tried: %s); check ansible_user "
                "and ansible_ssh_private_key_file, and that the public key is in the user's "
                "authorized_keys",
                s->user, s->name, s->endpoint, s->tried.len ? s->tried.data : "no key found");
}

static enum step st_auth_list(cf_ssh *s)
{
    const char *list = libssh2_userauth_list(s->session, s->user, (unsigned)strlen(s->user));
    if (!list) {
        if (libssh2_userauth_authenticated(s->session))
            return auth_done(s);
        int rc = libssh2_session_last_errno(s->session);
        if (rc == LIBSSH2_ERROR_EAGAIN)
            return STEP_WAIT;
        if (is_socket_error(rc))
            return fail_lost(s);
        return fail(s, CF_EAUTH, "ssh authentication to %s (%s) failed: %s", s->name, s->endpoint,
                    ssh_errtext(s));
    }
    if (!strstr(list, "publickey"))
        return fail(s, CF_EAUTH,
                    "%s (%s) does not accept public key authentication for \"%s\" (offers: %s); "
                    "enable PubkeyAuthentication in its sshd_config",
                    s->name, s->endpoint, s->user, list);
    const char *sock = getenv("SSH_AUTH_SOCK");
    set_state(s, sock && *sock ? S_AUTH_AGENT : S_AUTH_KEY);
    return STEP_NEXT;
}

/* The agent is a local socket: connect and list are short blocking calls;
 * the userauth exchange with the server is driven non-blocking. */
static enum step st_auth_agent(cf_ssh *s)
{
    if (!s->agent) {
        s->agent = libssh2_agent_init(s->session);
        if (!s->agent || libssh2_agent_connect(s->agent) != 0 ||
            libssh2_agent_list_identities(s->agent) != 0) {
            tried_add(s, "ssh-agent (unreachable)");
            goto next;
        }
        s->agent_prev = NULL;
        s->agent_id = NULL;
    }
    for (;;) {
        if (!s->agent_id) {
            int rc = libssh2_agent_get_identity(s->agent, &s->agent_id, s->agent_prev);
            if (rc != 0) {
                char what[64];
                snprintf(what, sizeof what, "ssh-agent (%d key%s)", s->agent_keys,
                         s->agent_keys == 1 ? "" : "s");
                tried_add(s, what);
                goto next;
            }
            s->agent_keys++;
        }
        int rc = libssh2_agent_userauth(s->agent, s->user, s->agent_id);
        if (rc == LIBSSH2_ERROR_EAGAIN)
            return STEP_WAIT;
        if (rc == 0)
            return auth_done(s);
        if (s->agent_id->blob_len > 11 && memcmp(s->agent_id->blob, "\0\0\0\7ssh-rsa", 11) == 0 &&
            !s->rsa_key)
            s->rsa_key = cf_asprintf("%s (from ssh-agent)",
                                     s->agent_id->comment ? s->agent_id->comment : "?");
        s->agent_prev = s->agent_id;
        s->agent_id = NULL;
    }
next:
    if (s->agent) {
        libssh2_agent_disconnect(s->agent);
        libssh2_agent_free(s->agent);
        s->agent = NULL;
    }
    set_state(s, S_AUTH_KEY);
    return STEP_NEXT;
}

static enum step st_auth_key(cf_ssh *s)
{
    while (s->key_idx < s->nkeys) {
        const char *path = s->keys[s->key_idx];
        if (access(path, R_OK) != 0) {
            if (s->key_file) {
                char *what = cf_asprintf("%s (cannot read: %s)", path, strerror(errno));
                tried_add(s, what);
                free(what);
            }
            s->key_idx++;
            continue;
        }
        int rc = libssh2_userauth_publickey_fromfile_ex(
            s->session, s->user, (unsigned)strlen(s->user), NULL, path, NULL);
        if (rc == LIBSSH2_ERROR_EAGAIN)
            return STEP_WAIT;
        if (rc == 0)
            return auth_done(s);
        if (is_socket_error(rc))
            return fail_lost(s);
        char *what;
        if (rc == LIBSSH2_ERROR_FILE)
            what = cf_asprintf("%s (cannot load it: %s; a passphrase-protected key needs "
                               "ssh-agent)",
                               path, ssh_errtext(s));
        else
            what = cf_asprintf("%s (refused)", path);
        tried_add(s, what);
        free(what);
        if (rc != LIBSSH2_ERROR_FILE && !s->rsa_key && key_is_rsa(path))
            s->rsa_key = cf_strdup(path);
        s->key_idx++;
    }
    return auth_failed(s);
}

/* ---- exec ------------------------------------------------------------- */

static enum step st_ch_open(cf_ssh *s)
{
    s->channel = libssh2_channel_open_session(s->session);
    if (!s->channel) {
        int rc = libssh2_session_last_errno(s->session);
        if (rc == LIBSSH2_ERROR_EAGAIN)
            return STEP_WAIT;
        if (is_socket_error(rc))
            return fail_lost(s);
        return fail(s, CF_EPROTO, "cannot open an ssh channel to %s (%s): %s", s->name, s->endpoint,
                    ssh_errtext(s));
    }
    set_state(s, S_CH_EXEC);
    return STEP_NEXT;
}

static enum step st_ch_exec(cf_ssh *s)
{
    int rc = libssh2_channel_exec(s->channel, s->command);
    if (rc == LIBSSH2_ERROR_EAGAIN)
        return STEP_WAIT;
    if (is_socket_error(rc))
        return fail_lost(s);
    if (rc != 0)
        return fail(s, CF_EPROTO, "%s (%s) refused to run a command: %s", s->name, s->endpoint,
                    ssh_errtext(s));
    set_state(s, S_CH_IO);
    return STEP_NEXT;
}

static int capture(cf_ssh *s, struct cf_buf *b, const char *data, size_t n)
{
    if (b->len + n > CF_SSH_OUTPUT_MAX) {
        s->truncated = 1;
        return 0;
    }
    return cf_buf_append(b, data, n);
}

/* Write stdin and read both streams in one pass until nothing moves.
 * Reading while writing matters: a command that answers as it reads would
 * otherwise fill its window and deadlock with us. */
static enum step st_ch_io(cf_ssh *s)
{
    char buf[32768];
    int progress, got_data = 0;
    do {
        progress = 0;
        while (s->in_off < s->in_len) {
            size_t n = s->in_len - s->in_off;
            ssize_t w = libssh2_channel_write(s->channel, s->in + s->in_off,
                                              n > sizeof buf ? sizeof buf : n);
            if (w == LIBSSH2_ERROR_EAGAIN || w == 0) /* 0: the window is shut */
                break;
            if (w < 0 && is_socket_error((int)w))
                return fail_lost(s);
            if (w < 0) {
                /* the command closed its side: the rest of stdin, and the
                 * EOF, have nowhere to go */
                cf_debug("ssh %s: stdin write failed: %s", s->name, ssh_errtext(s));
                s->in_off = s->in_len;
                s->eof_sent = 1;
                break;
            }
            s->in_off += (size_t)w;
            progress = 1;
        }
        if (s->in_off == s->in_len && !s->eof_sent) {
            int rc = libssh2_channel_send_eof(s->channel);
            if (rc == 0) {
                s->eof_sent = 1;
                progress = 1;
            } else if (rc != LIBSSH2_ERROR_EAGAIN) {
                /* libssh2 fails it only when the socket did: without the
                 * EOF the command would wait for more stdin until the timeout */
                return fail_lost(s);
            }
        }
        for (int stream = 0; stream < 2; stream++) {
            for (;;) {
                ssize_t r = libssh2_channel_read_ex(s->channel, stream, buf, sizeof buf);
                if (r == LIBSSH2_ERROR_EAGAIN || r == 0)
                    break;
                if (r < 0 && is_socket_error((int)r))
                    return fail_lost(s);
                if (r < 0)
                    return fail(s, CF_EPROTO, "reading the output of a command on %s (%s): %s",
                                s->name, s->endpoint, ssh_errtext(s));
                if (capture(s, stream ? &s->err : &s->out, buf, (size_t)r) != 0)
                    return fail(s, CF_ENOMEM, "out of memory reading from %s (%s)", s->name,
                                s->endpoint);
                progress = got_data = 1;
            }
        }
        if (libssh2_channel_eof(s->channel)) {
            set_state(s, S_CH_CLOSE);
            return STEP_NEXT;
        }
    } while (progress);
    /* libssh2 may have pulled more packets into its buffer than the socket
     * now signals: look again on the next loop iteration.  Likewise when a
     * read consumed the WINDOW_ADJUST a blocked write was waiting for: the
     * peer then sends nothing more, so waiting for input would stall stdin
     * until the timeout.  (Not while the socket itself is full: the poll
     * waits for it to drain.) */
    if (got_data ||
        (s->in_off < s->in_len && libssh2_channel_window_write(s->channel) > 0 &&
         !(libssh2_session_block_directions(s->session) & LIBSSH2_SESSION_BLOCK_OUTBOUND)))
        schedule_kick(s);
    return STEP_WAIT;
}

static enum step st_ch_close(cf_ssh *s)
{
    int rc = libssh2_channel_close(s->channel);
    if (rc == LIBSSH2_ERROR_EAGAIN)
        return STEP_WAIT;
    if (is_socket_error(rc))
        return fail_lost(s);
    if (rc != 0)
        return fail(s, CF_EPROTO, "closing the channel to %s (%s) failed: %s", s->name, s->endpoint,
                    ssh_errtext(s));
    char *sig = NULL;
    s->exit_status = libssh2_channel_get_exit_status(s->channel);
    if (libssh2_channel_get_exit_signal(s->channel, &sig, NULL, NULL, NULL, NULL, NULL) == 0 &&
        sig) {
        s->exit_status = -1;
        libssh2_free(s->session, sig);
    }
    set_state(s, S_CH_FREE);
    return STEP_NEXT;
}

static enum step st_ch_free(cf_ssh *s)
{
    int rc = libssh2_channel_free(s->channel);
    if (rc == LIBSSH2_ERROR_EAGAIN)
        return STEP_WAIT;
    s->channel = NULL;
    set_state(s, S_IDLE);
    stop_io(s);
    if (s->truncated) {
        snprintf(s->errmsg, sizeof s->errmsg,
                 "output of a command on %s (%s) exceeded %u MiB and was cut", s->name, s->endpoint,
                 CF_SSH_OUTPUT_MAX >> 20);
        finish_exec(s, CF_EPROTO);
    } else {
        finish_exec(s, 0);
    }
    return STEP_STOP;
}

/* ---- the machine ------------------------------------------------------ */

static enum step step_once(cf_ssh *s)
{
    switch (s->state) {
    case S_RESOLVE:
        return st_resolve(s);
    case S_TCP:
        return STEP_WAIT; /* on_poll checks the socket */
    case S_HANDSHAKE: {
        int rc = libssh2_session_handshake(s->session, s->fd);
        if (rc == LIBSSH2_ERROR_EAGAIN)
            return STEP_WAIT;
        if (is_socket_error(rc))
            return fail_lost(s);
        if (rc != 0)
            return fail(s, CF_EPROTO, "ssh handshake with %s (%s) failed: %s", s->name, s->endpoint,
                        ssh_errtext(s));
        cf_debug("ssh %s: kex %s, host key %s, cipher %s, mac %s", s->name,
                 libssh2_session_methods(s->session, LIBSSH2_METHOD_KEX),
                 libssh2_session_methods(s->session, LIBSSH2_METHOD_HOSTKEY),
                 libssh2_session_methods(s->session, LIBSSH2_METHOD_CRYPT_CS),
                 libssh2_session_methods(s->session, LIBSSH2_METHOD_MAC_CS));
        set_state(s, S_HOSTKEY);
        return STEP_NEXT;
    }
    case S_HOSTKEY:
        return st_hostkey(s);
    case S_AUTH_LIST:
        return st_auth_list(s);
    case S_AUTH_AGENT:
        return st_auth_agent(s);
    case S_AUTH_KEY:
        return st_auth_key(s);
    case S_CH_OPEN:
        return st_ch_open(s);
    case S_CH_EXEC:
        return st_ch_exec(s);
    case S_CH_IO:
        return st_ch_io(s);
    case S_CH_CLOSE:
        return st_ch_close(s);
    case S_CH_FREE:
        return st_ch_free(s);
    default:
        return STEP_STOP;
    }
}

static void drive(cf_ssh *s)
{
    if (s->closing)
        return;
    for (;;) {
        enum step r = step_once(s);
        if (r == STEP_STOP)
            return; /* a callback may have run: do not touch s */
        if (r == STEP_WAIT)
            break;
    }
    update_poll(s);
}

/* Watch the socket for what libssh2 is blocked on; while a command runs,
 * always for input too, as the peer may send at any time.  When libssh2
 * names no direction, watch both (as curl does): waiting for input alone
 * could wait for a peer that is itself waiting for us. */
static void update_poll(cf_ssh *s)
{
    int ev = 0;
    if (!s->poll_open || uv_is_closing((uv_handle_t *)&s->poll))
        return;
    if (s->state == S_TCP) {
        ev = UV_WRITABLE;
    } else if (s->session && s->state > S_TCP && s->state < S_FAILED && s->state != S_IDLE) {
        int dir = libssh2_session_block_directions(s->session);
        if (dir & LIBSSH2_SESSION_BLOCK_INBOUND)
            ev |= UV_READABLE;
        if (dir & LIBSSH2_SESSION_BLOCK_OUTBOUND)
            ev |= UV_WRITABLE;
        if (dir == 0)
            ev = UV_READABLE | UV_WRITABLE;
        if (s->state >= S_CH_OPEN)
            ev |= UV_READABLE;
    }
    if (ev == s->poll_events)
        return;
    s->poll_events = ev;
    if (ev)
        uv_poll_start(&s->poll, ev, on_poll);
    else
        uv_poll_stop(&s->poll);
}

static void on_poll(uv_poll_t *h, int status, int events)
{
    cf_ssh *s = h->data;
    if (s->closing)
        return;
    if (s->state == S_TCP) {
        tcp_check(s, status);
        return;
    }
    if (status < 0) {
        int e = socket_error(s);
        fail(s, CF_ECONNECT, "connection to %s (%s) lost while %s: %s", s->name, s->endpoint,
             state_names[s->state], e ? errno_text(s, e) : uv_strerror(status));
        return;
    }
    drive(s);
}

/* ---- public ----------------------------------------------------------- */

static void add_key(cf_ssh *s, char *path)
{
    if (s->nkeys < CF_SSH_MAX_KEYS)
        s->keys[s->nkeys++] = path;
    else
        free(path);
}

/* Starts the whole connect sequence from the loop (never calls cb before
 * returning), under one timer for connect+handshake+auth. */
int cf_ssh_connect(uv_loop_t *loop, const struct cf_ssh_config *cfg, cf_ssh **out, cf_ssh_cb cb,
                   void *arg)
{
    static int lib_ready;
    cf_ssh *s;

    *out = NULL;
    if (!lib_ready) {
        if (libssh2_init(0) != 0)
            return CF_ENOMEM;
        lib_ready = 1;
    }
    s = cf_xcalloc(1, sizeof *s);
    *out = s;
    s->loop = loop;
    s->fd = -1;
    s->state = S_NEW;
    s->name = cf_strdup(cfg->name ? cfg->name : cfg->address ? cfg->address : "?");
    s->address = cf_strdup(cfg->address ? cfg->address : s->name);
    s->port = cfg->port > 0 ? cfg->port : 22;
    if (cfg->user && *cfg->user) {
        s->user = cf_strdup(cfg->user);
    } else {
        const char *u = getenv("USER");
        s->user = cf_strdup(u && *u ? u : "root");
    }
    s->key_file = cfg->key_file && *cfg->key_file ? cf_strdup(cfg->key_file) : NULL;
    s->known_hosts = cfg->known_hosts && *cfg->known_hosts
                         ? cf_strdup(cfg->known_hosts)
                         : cf_asprintf("%s/.ssh/known_hosts", home_dir());
    s->hostkey_mode = cfg->hostkey_mode;
    s->timeout_ms = cfg->timeout_ms ? cfg->timeout_ms : CF_SSH_DEFAULT_TIMEOUT_MS;
    if (strchr(s->address, ':'))
        snprintf(s->endpoint, sizeof s->endpoint, "[%s]:%d", s->address, s->port);
    else
        snprintf(s->endpoint, sizeof s->endpoint, "%s:%d", s->address, s->port);
    if (s->key_file) {
        add_key(s, cf_strdup(s->key_file));
    } else {
        add_key(s, cf_asprintf("%s/.ssh/id_ed25519", home_dir()));
        add_key(s, cf_asprintf("%s/.ssh/id_ecdsa", home_dir()));
        add_key(s, cf_asprintf("%s/.ssh/id_rsa", home_dir()));
    }
    uv_timer_init(loop, &s->timer);
    uv_timer_init(loop, &s->kick);
    s->timer.data = s->kick.data = s;

    s->session = libssh2_session_init_ex(NULL, NULL, NULL, s);
    if (!s->session) {
        snprintf(s->errmsg, sizeof s->errmsg, "cannot create an ssh session for %s", s->name);
        s->state = S_FAILED;
        s->fail_code = CF_ENOMEM;
        return CF_ENOMEM;
    }
    libssh2_session_set_blocking(s->session, 0);
    set_pref(s, LIBSSH2_METHOD_KEX, KEX_PREF);
    set_pref(s, LIBSSH2_METHOD_CRYPT_CS, CIPHER_PREF);
    set_pref(s, LIBSSH2_METHOD_CRYPT_SC, CIPHER_PREF);
    set_pref(s, LIBSSH2_METHOD_MAC_CS, MAC_PREF);
    set_pref(s, LIBSSH2_METHOD_MAC_SC, MAC_PREF);
    set_hostkey_pref(s);

    s->connect_cb = cb;
    s->connect_arg = arg;
    set_state(s, S_RESOLVE);
    uv_timer_start(&s->timer, on_timeout, s->timeout_ms, 0);
    schedule_kick(s);
    return 0;
}

/* Queues the command; the machine starts it from the loop, so cb never runs
 * before this returns, and cb may itself start the next command. */
int cf_ssh_exec(cf_ssh *s, const char *command, const void *in, size_t in_len, cf_ssh_exec_cb cb,
                void *arg)
{
    if (!s || s->closing)
        return CF_EINVAL;
    if (s->state == S_FAILED)
        return s->fail_code ? s->fail_code : CF_EPROTO;
    if (s->state != S_IDLE || s->exec_cb) {
        snprintf(s->errmsg, sizeof s->errmsg,
                 "session to %s (%s) is busy: wait for the previous command's callback", s->name,
                 s->endpoint);
        return CF_EINVAL;
    }
    s->errmsg[0] = '\0'; /* the message is about this command from now on */
    s->command = cf_strdup(command);
    s->in_len = in_len;
    s->in_off = 0;
    s->in = cf_xmalloc(in_len ? in_len : 1);
    if (in_len)
        memcpy(s->in, in, in_len);
    s->eof_sent = 0;
    s->truncated = 0;
    s->exit_status = -1;
    cf_buf_release(&s->out);
    cf_buf_release(&s->err);
    s->exec_cb = cb;
    s->exec_arg = arg;
    set_state(s, S_CH_OPEN);
    uv_timer_start(&s->timer, on_timeout, s->timeout_ms, 0);
    schedule_kick(s);
    return 0;
}

const char *cf_ssh_error(const cf_ssh *s)
{
    return s ? s->errmsg : "";
}

int cf_ssh_failed(const cf_ssh *s)
{
    if (!s)
        return CF_EINVAL;
    if (s->state != S_FAILED)
        return 0;
    return s->fail_code ? s->fail_code : CF_EPROTO;
}

const char *cf_ssh_name(const cf_ssh *s)
{
    return s ? s->name : "";
}

const char *cf_ssh_endpoint(const cf_ssh *s)
{
    return s ? s->endpoint : "";
}

static void free_session(cf_ssh *s)
{
    free(s->name);
    free(s->address);
    free(s->user);
    free(s->key_file);
    free(s->known_hosts);
    for (int i = 0; i < s->nkeys; i++)
        free(s->keys[i]);
    free(s->rsa_key);
    free(s->command);
    if (s->in)
        cf_secure_free(s->in, s->in_len);
    cf_buf_release(&s->out);
    cf_buf_release(&s->err);
    cf_buf_release(&s->tried);
    if (s->ai) {
        if (s->ai_from_uv)
            uv_freeaddrinfo(s->ai);
        else
            freeaddrinfo(s->ai);
    }
}

static void on_handle_closed(uv_handle_t *h)
{
    cf_ssh *s = h->data;
    if (h == (uv_handle_t *)&s->poll) {
        s->poll_open = 0;
        if (s->fd >= 0)
            close(s->fd);
        s->fd = -1;
    }
    s->pending_closes--;
    release_if_done(s);
}

/* Ends the session: a pending callback runs with CF_ECANCELED, an idle
 * session says goodbye (SSH_MSG_DISCONNECT, best effort, never waiting), a
 * busy or broken one has its socket shut down first so that libssh2's
 * cleanup cannot block, and the memory goes when the last handle closed. */
void cf_ssh_close(cf_ssh *s, void (*close_cb)(void *arg), void *arg)
{
    if (!s || s->closing)
        return;
    if (s->connect_cb || s->exec_cb) {
        snprintf(s->errmsg, sizeof s->errmsg, "session to %s (%s) was closed while %s", s->name,
                 s->endpoint, state_names[s->state]);
        s->fail_code = CF_ECANCELED;
        set_state(s, S_FAILED);
        stop_io(s);
        if (s->connect_cb)
            finish_connect(s, CF_ECANCELED);
        else
            finish_exec(s, CF_ECANCELED);
        if (s->closing)
            return; /* the callback closed it already */
    }
    s->closing = 1;
    s->close_cb = close_cb;
    s->close_arg = arg;
    if (s->session) {
        if (s->state == S_IDLE) {
            libssh2_session_disconnect(s->session, "certfleet done");
        } else if (s->fd >= 0) {
            shutdown(s->fd, SHUT_RDWR);
        }
        if (s->agent) {
            libssh2_agent_disconnect(s->agent);
            libssh2_agent_free(s->agent);
            s->agent = NULL;
        }
        if (s->channel && s->state != S_IDLE && s->fd >= 0)
            shutdown(s->fd, SHUT_RDWR);
        /* with the socket shut down (or idle), nothing here can wait on the
         * network, so blocking mode only makes libssh2 finish its cleanup */
        if (s->state != S_IDLE)
            libssh2_session_set_blocking(s->session, 1);
        libssh2_session_free(s->session);
        s->session = NULL;
        s->channel = NULL;
    }
    set_state(s, S_CLOSED);
    free_session(s);
    s->ai = NULL;
    if (s->resolving)
        uv_cancel((uv_req_t *)&s->gai);
    uv_timer_stop(&s->timer);
    uv_timer_stop(&s->kick);
    s->pending_closes += 2;
    uv_close((uv_handle_t *)&s->timer, on_handle_closed);
    uv_close((uv_handle_t *)&s->kick, on_handle_closed);
    if (s->poll_open && !uv_is_closing((uv_handle_t *)&s->poll)) {
        s->pending_closes++;
        uv_close((uv_handle_t *)&s->poll, on_handle_closed);
    } else if (!s->poll_open && s->fd >= 0) {
        close(s->fd);
        s->fd = -1;
    }
}
