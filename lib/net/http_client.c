/* http_client.c — libcurl multi on the libevent loop (see http_client.h).
 *
 * The glue follows curl's documented event-driven pattern
 * (curl_multi_socket_action(3), CURLMOPT_SOCKETFUNCTION(3),
 * CURLMOPT_TIMERFUNCTION(3)): curl tells us which sockets to watch and when
 * its next timeout is; libevent tells curl when a socket is ready or the
 * timer fired; completed transfers are collected with curl_multi_info_read.
 * Rule kept throughout: never remove a handle from inside a curl callback
 * (curl forbids it) — cancellation inside callbacks is deferred to reap(). */
#include "confide/http_client.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>
#include <event2/event.h>

#include "confide/log.h"

#define DEFAULT_CONNECT_TIMEOUT_MS 5000u
#define DEFAULT_MAX_RESPONSE ((size_t)64 * 1024 * 1024)
#define DEFAULT_MAX_HOST_CONNECTIONS 16u
#define MAX_HEADER_LINE 8192

typedef struct sockinfo {
    struct sockinfo *prev;
    struct sockinfo *next;
    struct event *ev;
    curl_socket_t fd;
} sockinfo;

struct cf_http_client {
    struct event_base *base;
    CURLM *multi;
    struct event *timer;
    char *ca_file;
    bool allow_plain_http;
    unsigned connect_timeout_ms;
    cf_http_call *calls;
    size_t active;
    sockinfo *socks;
    int in_curl; /* depth of curl_multi_socket_action on the stack */
};

struct cf_http_call {
    cf_http_client *client;
    cf_http_call *prev;
    cf_http_call *next;
    CURL *easy;
    struct curl_slist *headers;
    cf_buf body; /* request body, wiped on free */
    cf_http_call_opts opts;
    struct event *idle_timer;
    struct timeval idle_tv;
    size_t received;
    size_t max_response;
    long status;
    bool response_delivered;
    bool paused;
    bool cancelled;
    bool too_large;
    bool aborted;
    bool idle_expired;
    bool in_user_cb;
};

static void check_multi_info(cf_http_client *c);
static void reap_cancelled(cf_http_client *c);

const char *cf_http_error_name(cf_http_error e)
{
    switch (e) {
    case CF_HTTP_OK: return "ok";
    case CF_HTTP_ERR_CONNECT: return "connect_failed";
    case CF_HTTP_ERR_TLS: return "tls_failed";
    case CF_HTTP_ERR_TIMEOUT: return "timeout";
    case CF_HTTP_ERR_TOO_LARGE: return "too_large";
    case CF_HTTP_ERR_PROTOCOL: return "protocol_error";
    case CF_HTTP_ERR_ABORTED: return "aborted";
    case CF_HTTP_ERR_INTERNAL: return "internal_error";
    }
    return "internal_error";
}

static struct timeval ms_to_tv(long ms)
{
    return (struct timeval){.tv_sec = ms / 1000, .tv_usec = (suseconds_t)(ms % 1000) * 1000};
}

/* ---- curl <-> libevent glue ------------------------------------------------ */

static void socket_action(cf_http_client *c, curl_socket_t fd, int action)
{
    int running = 0;
    c->in_curl++;
    CURLMcode rc = curl_multi_socket_action(c->multi, fd, action, &running);
    c->in_curl--;
    if (rc != CURLM_OK) {
        CF_LOG_ERROR("http_client_multi", cf_kv_str("curl", curl_multi_strerror(rc)));
    }
    if (c->in_curl == 0) {
        check_multi_info(c);
        reap_cancelled(c);
    }
}

static void event_cb(evutil_socket_t fd, short kind, void *arg)
{
    cf_http_client *c = arg;
    int action = ((kind & EV_READ) ? CURL_CSELECT_IN : 0) | ((kind & EV_WRITE) ? CURL_CSELECT_OUT : 0);
    socket_action(c, fd, action);
}

static void timer_cb(evutil_socket_t fd, short kind, void *arg)
{
    cf_http_client *c = arg;
    (void)fd;
    (void)kind;
    socket_action(c, CURL_SOCKET_TIMEOUT, 0);
}

static int multi_timer_fn(CURLM *multi, long timeout_ms, void *userp)
{
    cf_http_client *c = userp;
    (void)multi;
    if (timeout_ms < 0) {
        evtimer_del(c->timer);
    } else {
        struct timeval tv = ms_to_tv(timeout_ms);
        evtimer_add(c->timer, &tv);
    }
    return 0;
}

static void sockinfo_free(cf_http_client *c, sockinfo *si)
{
    if (si->prev != NULL) {
        si->prev->next = si->next;
    } else {
        c->socks = si->next;
    }
    if (si->next != NULL) {
        si->next->prev = si->prev;
    }
    if (si->ev != NULL) {
        event_free(si->ev);
    }
    free(si);
}

static int multi_socket_fn(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
    cf_http_client *c = userp;
    sockinfo *si = socketp;
    (void)easy;
    if (what == CURL_POLL_REMOVE) {
        if (si != NULL) {
            curl_multi_assign(c->multi, fd, NULL);
            sockinfo_free(c, si);
        }
        return 0;
    }
    if (si == NULL) {
        si = calloc(1, sizeof *si);
        if (si == NULL) {
            return -1;
        }
        si->fd = fd;
        si->next = c->socks;
        if (c->socks != NULL) {
            c->socks->prev = si;
        }
        c->socks = si;
        curl_multi_assign(c->multi, fd, si);
    }
    if (si->ev != NULL) {
        event_free(si->ev);
        si->ev = NULL;
    }
    short kind = (short)(((what & CURL_POLL_IN) ? EV_READ : 0) | ((what & CURL_POLL_OUT) ? EV_WRITE : 0));
    if (kind != 0) {
        si->ev = event_new(c->base, fd, kind | EV_PERSIST, event_cb, c);
        if (si->ev == NULL || event_add(si->ev, NULL) != 0) {
            return -1;
        }
    }
    return 0;
}

/* ---- calls ------------------------------------------------------------------ */

static void call_free(cf_http_call *call)
{
    cf_http_client *c = call->client;
    if (call->easy != NULL) {
        curl_multi_remove_handle(c->multi, call->easy);
        curl_easy_cleanup(call->easy);
    }
    if (call->prev != NULL) {
        call->prev->next = call->next;
    } else if (c->calls == call) {
        c->calls = call->next;
    }
    if (call->next != NULL) {
        call->next->prev = call->prev;
    }
    c->active--;
    curl_slist_free_all(call->headers);
    cf_buf_free(&call->body);
    if (call->idle_timer != NULL) {
        event_free(call->idle_timer);
    }
    free(call);
}

static void idle_arm(cf_http_call *call)
{
    if (call->idle_timer != NULL && !call->paused) {
        evtimer_add(call->idle_timer, &call->idle_tv);
    }
}

static void deliver_response(cf_http_call *call)
{
    if (call->response_delivered) {
        return;
    }
    call->response_delivered = true;
    curl_easy_getinfo(call->easy, CURLINFO_RESPONSE_CODE, &call->status);
    if (call->opts.on_response != NULL && !call->cancelled) {
        call->in_user_cb = true;
        call->opts.on_response(call, call->status, call->opts.arg);
        call->in_user_cb = false;
    }
}

static size_t write_fn(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    cf_http_call *call = userdata;
    size_t n = size * nmemb;
    if (call->cancelled) {
        return 0;
    }
    deliver_response(call);
    if (call->cancelled) {
        return 0;
    }
    if (call->paused) {
        /* Paused by cf_http_call_pause(): curl keeps this chunk and stops
         * reading until resumed. */
        return CURL_WRITEFUNC_PAUSE;
    }
    if (n > call->max_response || call->received > call->max_response - n) {
        call->too_large = true;
        return 0;
    }
    cf_http_body_action act = CF_HTTP_BODY_CONTINUE;
    if (call->opts.on_body != NULL && n > 0) {
        call->in_user_cb = true;
        act = call->opts.on_body(call, cf_slice_make(ptr, n), call->opts.arg);
        call->in_user_cb = false;
    }
    if (call->cancelled) {
        return 0;
    }
    switch (act) {
    case CF_HTTP_BODY_PAUSE:
        call->paused = true;
        if (call->idle_timer != NULL) {
            evtimer_del(call->idle_timer);
        }
        return CURL_WRITEFUNC_PAUSE;
    case CF_HTTP_BODY_ABORT:
        call->aborted = true;
        return 0;
    case CF_HTTP_BODY_CONTINUE:
    default:
        call->received += n;
        idle_arm(call);
        return n;
    }
}

/* Header bytes count as activity for the idle timeout. */
static size_t header_fn(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    cf_http_call *call = userdata;
    (void)ptr;
    if (call->cancelled) {
        return 0;
    }
    idle_arm(call);
    return size * nmemb;
}

static cf_http_error map_curl_error(const cf_http_call *call, CURLcode rc)
{
    if (call->idle_expired) {
        return CF_HTTP_ERR_TIMEOUT;
    }
    switch (rc) {
    case CURLE_OK: return CF_HTTP_OK;
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_CONNECT:
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_URL_MALFORMAT: return CF_HTTP_ERR_CONNECT;
    case CURLE_OPERATION_TIMEDOUT: return CF_HTTP_ERR_TIMEOUT;
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_INVALIDCERTSTATUS: return CF_HTTP_ERR_TLS;
    case CURLE_FILESIZE_EXCEEDED: return CF_HTTP_ERR_TOO_LARGE;
    case CURLE_WRITE_ERROR:
        return call->too_large ? CF_HTTP_ERR_TOO_LARGE : call->aborted ? CF_HTTP_ERR_ABORTED : CF_HTTP_ERR_INTERNAL;
    case CURLE_OUT_OF_MEMORY: return CF_HTTP_ERR_INTERNAL;
    default: return CF_HTTP_ERR_PROTOCOL;
    }
}

/* The call is over (curl says done, or our idle timer fired): deliver the
 * remaining callbacks and free it. Never runs inside a curl callback. */
static void finish(cf_http_call *call, cf_http_error err)
{
    if (call->idle_timer != NULL) {
        evtimer_del(call->idle_timer);
    }
    if (call->easy != NULL) {
        curl_multi_remove_handle(call->client->multi, call->easy);
    }
    if (err == CF_HTTP_OK) {
        deliver_response(call); /* a response without body */
    }
    if (!call->cancelled && call->opts.on_done != NULL) {
        call->in_user_cb = true;
        call->opts.on_done(call, err, call->opts.arg);
    }
    call_free(call);
}

static void check_multi_info(cf_http_client *c)
{
    CURLMsg *msg;
    int left = 0;
    while ((msg = curl_multi_info_read(c->multi, &left)) != NULL) {
        if (msg->msg != CURLMSG_DONE) {
            continue;
        }
        cf_http_call *call = NULL;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&call);
        if (call == NULL) {
            continue;
        }
        finish(call, map_curl_error(call, msg->data.result));
    }
}

static void reap_cancelled(cf_http_client *c)
{
    cf_http_call *call = c->calls;
    while (call != NULL) {
        cf_http_call *next = call->next;
        if (call->cancelled && !call->in_user_cb) {
            call_free(call);
        }
        call = next;
    }
}

static void idle_timeout_cb(evutil_socket_t fd, short kind, void *arg)
{
    cf_http_call *call = arg;
    cf_http_client *c = call->client;
    (void)fd;
    (void)kind;
    call->idle_expired = true;
    CF_LOG_WARN("http_client_idle_timeout", cf_kv_uint("ms", (uint64_t)call->idle_tv.tv_sec * 1000 +
                                                                   (uint64_t)call->idle_tv.tv_usec / 1000));
    finish(call, CF_HTTP_ERR_TIMEOUT);
    reap_cancelled(c);
}

/* ---- public API -------------------------------------------------------------- */

static bool header_safe(const char *s) { return s != NULL && strpbrk(s, "\r\n") == NULL; }

static CF_RESULT set_method_and_body(cf_http_call *call, const cf_http_call_opts *o)
{
    CURL *e = call->easy;
    const char *method = o->method != NULL ? o->method : (o->body.len > 0 ? "POST" : "GET");
    CF_ENSURE_MSG(header_safe(method) && strlen(method) < 16 && strchr(method, ' ') == NULL,
                  CF_E_INVALID_ARGUMENT, "bad HTTP method");
    if (o->body.len > 0) {
        CF_GUARD(cf_buf_append_slice(&call->body, o->body));
    }
    if (strcmp(method, "GET") == 0) {
        CF_ENSURE_MSG(o->body.len == 0, CF_E_INVALID_ARGUMENT, "GET with a body");
        curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
    } else if (strcmp(method, "HEAD") == 0) {
        curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
    } else {
        /* POSTFIELDS points into our wiped buffer (not COPYPOSTFIELDS: curl's
         * copy would not be wiped). */
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)call->body.len);
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, call->body.len > 0 ? (const char *)call->body.data : "");
        if (strcmp(method, "POST") != 0) {
            curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
        }
    }
    return CF_OK;
}

CF_RESULT cf_http_call_start(cf_http_client *c, const cf_http_call_opts *o, cf_http_call **out)
{
    cf_result result = CF_OK;
    cf_http_call *call = NULL;
    CF_ENSURE_REF(c);
    CF_ENSURE_REF(o);
    CF_ENSURE_MSG(o->url != NULL, CF_E_INVALID_ARGUMENT, "no URL");
    bool https = strncmp(o->url, "https://", 8) == 0;
    bool http = strncmp(o->url, "http://", 7) == 0;
    CF_ENSURE_MSG(https || http, CF_E_INVALID_ARGUMENT, "URL must be http:// or https://");
    CF_ENSURE_MSG(https || o->unix_socket != NULL || c->allow_plain_http, CF_E_POLICY,
                  "plain http:// over TCP is not allowed by this client");

    call = calloc(1, sizeof *call);
    CF_ENSURE(call != NULL, CF_E_NO_MEMORY);
    call->client = c;
    call->opts = *o;
    call->max_response = o->max_response_size ? o->max_response_size : DEFAULT_MAX_RESPONSE;
    cf_buf_init(&call->body, o->body.len + 1);
    call->next = c->calls;
    if (c->calls != NULL) {
        c->calls->prev = call;
    }
    c->calls = call;
    c->active++;

    call->easy = curl_easy_init();
    CF_ENSURE_OUT(call->easy != NULL, CF_E_NO_MEMORY);
    CURL *e = call->easy;
    CF_ENSURE_MSG_OUT(curl_easy_setopt(e, CURLOPT_URL, o->url) == CURLE_OK, CF_E_INVALID_ARGUMENT, "bad URL");
    curl_easy_setopt(e, CURLOPT_PRIVATE, call);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, c->allow_plain_http || o->unix_socket ? "http,https" : "https");
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)c->connect_timeout_ms);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)o->total_timeout_ms);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
    curl_easy_setopt(e, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
    if (c->ca_file != NULL) {
        curl_easy_setopt(e, CURLOPT_CAINFO, c->ca_file);
    }
    if (o->unix_socket != NULL) {
        CF_ENSURE_MSG_OUT(curl_easy_setopt(e, CURLOPT_UNIX_SOCKET_PATH, o->unix_socket) == CURLE_OK,
                          CF_E_INVALID_ARGUMENT, "bad UNIX socket path");
    }
    if (o->accept_encoding) {
        curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, ""); /* everything curl can decode */
    }
    if (o->max_response_size != 0) {
        curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)call->max_response);
    }
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, write_fn);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, call);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, header_fn);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, call);

    bool has_content_type = false;
    for (size_t i = 0; o->headers != NULL && o->headers[i].name != NULL; i++) {
        const cf_http_header *h = &o->headers[i];
        has_content_type = has_content_type || strcasecmp(h->name, "Content-Type") == 0;
        CF_ENSURE_MSG_OUT(header_safe(h->name) && header_safe(h->value) && h->name[0] != '\0' &&
                              strchr(h->name, ':') == NULL,
                          CF_E_INVALID_ARGUMENT, "header name/value missing or contains CR/LF");
        char line[MAX_HEADER_LINE];
        int n = snprintf(line, sizeof line, "%s: %s", h->name, h->value);
        CF_ENSURE_MSG_OUT(n > 0 && (size_t)n < sizeof line, CF_E_LIMIT, "request header too long");
        struct curl_slist *l = curl_slist_append(call->headers, line);
        cf_wipe(line, sizeof line); /* may be an Authorization header */
        CF_ENSURE_OUT(l != NULL, CF_E_NO_MEMORY);
        call->headers = l;
    }
    /* No "Expect: 100-continue" round trip for large bodies, and no default
     * form-urlencoded type for bodies whose caller named no type. */
    struct curl_slist *l = curl_slist_append(call->headers, "Expect:");
    CF_ENSURE_OUT(l != NULL, CF_E_NO_MEMORY);
    call->headers = l;
    if (!has_content_type) {
        l = curl_slist_append(call->headers, "Content-Type:");
        CF_ENSURE_OUT(l != NULL, CF_E_NO_MEMORY);
        call->headers = l;
    }
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, call->headers);
    CF_GUARD_OUT(set_method_and_body(call, o));

    if (o->idle_timeout_ms != 0) {
        call->idle_tv = ms_to_tv(o->idle_timeout_ms);
        call->idle_timer = evtimer_new(c->base, idle_timeout_cb, call);
        CF_ENSURE_OUT(call->idle_timer != NULL, CF_E_NO_MEMORY);
        idle_arm(call);
    }
    CF_ENSURE_MSG_OUT(curl_multi_add_handle(c->multi, e) == CURLM_OK, CF_E_INTERNAL, "curl_multi_add_handle");
    if (out != NULL) {
        *out = call;
    }
    call = NULL;
out:
    if (call != NULL) {
        call_free(call);
    }
    return result;
}

void cf_http_call_cancel(cf_http_call *call)
{
    if (call == NULL || call->cancelled) {
        return;
    }
    call->cancelled = true;
    if (call->idle_timer != NULL) {
        evtimer_del(call->idle_timer);
    }
    if (!call->in_user_cb && call->client->in_curl == 0) {
        call_free(call);
    }
    /* else: freed by reap_cancelled() once back outside curl / the callback;
     * its write callback refuses further data meanwhile. */
}

void cf_http_call_pause(cf_http_call *call)
{
    if (call == NULL || call->paused || call->cancelled) {
        return;
    }
    /* Lazy pause: the next chunk curl reads is refused with
     * CURL_WRITEFUNC_PAUSE (kept by curl, delivered after resume) and curl
     * stops reading. This works the same inside a body callback (consume
     * this chunk, pause before the next) and outside, and never calls into
     * curl from within its own callbacks. */
    call->paused = true;
    if (call->idle_timer != NULL) {
        evtimer_del(call->idle_timer);
    }
}

void cf_http_call_resume(cf_http_call *call)
{
    if (call == NULL || !call->paused || call->cancelled) {
        return;
    }
    call->paused = false;
    idle_arm(call);
    cf_http_client *c = call->client;
    /* Unpausing may deliver the held chunk right here (curl_easy_pause(3)). */
    c->in_curl++;
    curl_easy_pause(call->easy, CURLPAUSE_CONT);
    c->in_curl--;
    if (c->in_curl == 0) {
        reap_cancelled(c);
    }
}

bool cf_http_call_paused(const cf_http_call *call) { return call != NULL && call->paused; }

long cf_http_call_status(const cf_http_call *call) { return call != NULL ? call->status : 0; }

const char *cf_http_call_header(cf_http_call *call, const char *name)
{
    struct curl_header *h = NULL;
    if (call == NULL || name == NULL || !call->response_delivered) {
        return NULL;
    }
    if (curl_easy_header(call->easy, name, 0, CURLH_HEADER, -1, &h) != CURLHE_OK) {
        return NULL;
    }
    if (h->amount > 1 && curl_easy_header(call->easy, name, h->amount - 1, CURLH_HEADER, -1, &h) != CURLHE_OK) {
        return NULL;
    }
    return h->value;
}

size_t cf_http_client_active(const cf_http_client *c) { return c != NULL ? c->active : 0; }

static CF_RESULT curl_global(void)
{
    static bool done = false;
    if (!done) {
        CF_ENSURE_MSG(curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK, CF_E_INTERNAL, "curl_global_init");
        done = true;
    }
    return CF_OK;
}

CF_RESULT cf_http_client_new(struct event_base *base, const cf_http_client_config *cfg, cf_http_client **out)
{
    cf_result result = CF_OK;
    cf_http_client *c = NULL;
    CF_ENSURE_REF(base);
    CF_ENSURE_REF(out);
    CF_GUARD(curl_global());
    c = calloc(1, sizeof *c);
    CF_ENSURE(c != NULL, CF_E_NO_MEMORY);
    c->base = base;
    c->allow_plain_http = cfg != NULL && cfg->allow_plain_http;
    c->connect_timeout_ms =
        cfg != NULL && cfg->connect_timeout_ms ? cfg->connect_timeout_ms : DEFAULT_CONNECT_TIMEOUT_MS;
    if (cfg != NULL && cfg->ca_file != NULL) {
        c->ca_file = strdup(cfg->ca_file);
        CF_ENSURE_OUT(c->ca_file != NULL, CF_E_NO_MEMORY);
    }
    c->multi = curl_multi_init();
    c->timer = evtimer_new(base, timer_cb, c);
    CF_ENSURE_OUT(c->multi != NULL && c->timer != NULL, CF_E_NO_MEMORY);
    curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, multi_socket_fn);
    curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, c);
    curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, multi_timer_fn);
    curl_multi_setopt(c->multi, CURLMOPT_TIMERDATA, c);
    long per_host = cfg != NULL && cfg->max_host_connections ? (long)cfg->max_host_connections
                                                             : (long)DEFAULT_MAX_HOST_CONNECTIONS;
    curl_multi_setopt(c->multi, CURLMOPT_MAX_HOST_CONNECTIONS, per_host);
    *out = c;
    c = NULL;
out:
    cf_http_client_free(c);
    return result;
}

void cf_http_client_free(cf_http_client *c)
{
    if (c == NULL) {
        return;
    }
    while (c->calls != NULL) {
        c->calls->cancelled = true;
        call_free(c->calls);
    }
    if (c->multi != NULL) {
        curl_multi_cleanup(c->multi);
    }
    while (c->socks != NULL) {
        sockinfo_free(c, c->socks);
    }
    if (c->timer != NULL) {
        event_free(c->timer);
    }
    free(c->ca_file);
    free(c);
}

/* ---- blocking wrapper ----------------------------------------------------------- */

typedef struct fetch_state {
    struct event_base *base;
    cf_buf *body;
    bool done;
    bool overflow;
    cf_http_error error;
    long status;
} fetch_state;

static cf_http_body_action fetch_body(cf_http_call *call, cf_slice data, void *arg)
{
    fetch_state *st = arg;
    (void)call;
    if (cf_is_error(cf_buf_append_slice(st->body, data))) {
        st->overflow = true;
        return CF_HTTP_BODY_ABORT;
    }
    return CF_HTTP_BODY_CONTINUE;
}

static void fetch_done(cf_http_call *call, cf_http_error error, void *arg)
{
    fetch_state *st = arg;
    st->done = true;
    st->error = error;
    st->status = cf_http_call_status(call);
    event_base_loopbreak(st->base);
}

CF_RESULT cf_http_fetch(const cf_http_client_config *cfg, const cf_http_call_opts *opts, long *status,
                        cf_buf *body)
{
    cf_result result = CF_OK;
    cf_http_client *c = NULL;
    fetch_state st = {.body = body};
    CF_ENSURE_REF(opts);
    CF_ENSURE_REF(status);
    CF_ENSURE_REF(body);
    st.base = event_base_new();
    CF_ENSURE(st.base != NULL, CF_E_NO_MEMORY);
    CF_GUARD_OUT(cf_http_client_new(st.base, cfg, &c));
    cf_http_call_opts o = *opts;
    o.on_response = NULL;
    o.on_body = fetch_body;
    o.on_done = fetch_done;
    o.arg = &st;
    CF_GUARD_OUT(cf_http_call_start(c, &o, NULL));
    while (!st.done) {
        CF_ENSURE_MSG_OUT(event_base_dispatch(st.base) >= 0, CF_E_INTERNAL, "event loop failed");
    }
    if (st.overflow || st.error == CF_HTTP_ERR_TOO_LARGE) {
        CF_BAIL_OUT(CF_E_TOO_LARGE, "response body larger than allowed");
    }
    if (st.error == CF_HTTP_ERR_TIMEOUT) {
        CF_BAIL_OUT(CF_E_TIMEOUT, "HTTP request timed out");
    }
    if (st.error != CF_HTTP_OK) {
        result = CF_ERROR;
        cf_error_setf(CF_E_IO, __FILE__, __LINE__, "HTTP request failed: %s", cf_http_error_name(st.error));
        goto out;
    }
    *status = st.status;
out:
    cf_http_client_free(c);
    event_base_free(st.base);
    return result;
}
