/* HTTP/1.1 keep-alive load for the small-request benchmarks: GET or HEAD, the same
 * generator for every server measured (wrk cannot measure HEAD: its parser is not told the
 * request was a HEAD, so it waits for the body a Content-Length announces).
 *
 * usage: http_load HOST PORT METHOD PATHS SECONDS CONNECTIONS THREADS
 *
 * PATHS holds one request target per line (path and query, already encoded). THREADS
 * threads share CONNECTIONS keep-alive connections, one request in flight on each (as wrk
 * sends them), cycling over PATHS. A response ends after its headers for HEAD and after
 * Content-Length body bytes otherwise (a chunked or unframed answer counts as an error and
 * the connection is made again, as is one the server closed). Prints one line:
 *   BENCH_RESULT ok=N bad=N errors=N duration_us=N
 * ok counts 2xx answers, bad other statuses, errors broken connections.
 */
#define _GNU_SOURCE /* memmem, strcasestr */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONNECTIONS 4096
#define MAX_THREADS 64
#define BUFFER 65536
#define MAX_REQUEST 16384

struct conn {
    int fd;
    char request[MAX_REQUEST];
    size_t request_len, request_sent;
    char buf[BUFFER];
    size_t have;
    long long body_left; /* -1: still reading headers */
    int status;
    int closing; /* the answer said Connection: close */
};

struct worker {
    pthread_t thread;
    int connections;
    long long ok, bad, errors;
    unsigned long next_path;
};

static struct sockaddr_in server;
static char host_header[300];
static const char *method;
static int is_head;
static char **paths;
static size_t path_count;
static double deadline;
static atomic_ulong path_cursor;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int open_conn(struct conn *c, int ep) {
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (c->fd < 0) return -1;
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(c->fd, (struct sockaddr *)&server, sizeof server) < 0 && errno != EINPROGRESS) {
        close(c->fd);
        return -1;
    }
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
    return epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
}

static void next_request(struct conn *c, int ep) {
    unsigned long i = atomic_fetch_add_explicit(&path_cursor, 1, memory_order_relaxed);
    int n = snprintf(c->request, MAX_REQUEST, "%s %s HTTP/1.1\r\nHost: %s\r\n\r\n", method,
                     paths[i % path_count], host_header);
    c->request_len = n < MAX_REQUEST ? (size_t)n : MAX_REQUEST - 1;
    c->request_sent = 0;
    c->have = 0;
    c->body_left = -1;
    c->closing = 0;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
}

static void reconnect(struct conn *c, int ep) {
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    if (open_conn(c, ep) == 0) next_request(c, ep);
}

/* Headers complete in c->buf[0:end]: the status and how many body bytes follow. */
static int parse_head(struct conn *c, size_t end) {
    if (end < 12 || strncmp(c->buf, "HTTP/1.", 7) != 0) return -1;
    c->status = atoi(c->buf + 9);
    long long length = -1;
    char *line = memchr(c->buf, '\n', end);
    while (line && (size_t)(line - c->buf) < end) {
        line++;
        if (strncasecmp(line, "content-length:", 15) == 0) length = atoll(line + 15);
        if (strncasecmp(line, "transfer-encoding:", 18) == 0) return -1;
        if (strncasecmp(line, "connection:", 11) == 0 && strcasestr(line, "close") &&
            strcasestr(line, "close") < (char *)memchr(line, '\n', end - (line - c->buf)))
            c->closing = 1;
        line = memchr(line, '\n', end - (line - c->buf));
    }
    if (is_head || c->status == 204 || c->status == 304) return 0;
    if (length < 0) return -1;
    c->body_left = length;
    return 1;
}

/* Consume what arrived; 1 when the response is complete, 0 for more, -1 on an error. */
static int on_bytes(struct conn *c) {
    if (c->body_left < 0) {
        char *end = memmem(c->buf, c->have, "\r\n\r\n", 4);
        if (!end) return c->have == BUFFER ? -1 : 0;
        size_t head = (end - c->buf) + 4;
        int framed = parse_head(c, head);
        if (framed < 0) return -1;
        size_t extra = c->have - head;
        if (framed == 0) {
            c->body_left = 0;
            return extra ? -1 : 1; /* nothing may follow a bodiless answer */
        }
        if ((long long)extra > c->body_left) return -1;
        c->body_left -= extra;
        c->have = 0;
        return c->body_left == 0;
    }
    if ((long long)c->have > c->body_left) return -1;
    c->body_left -= c->have;
    c->have = 0;
    return c->body_left == 0;
}

static void *run(void *arg) {
    struct worker *w = arg;
    int ep = epoll_create1(0);
    struct conn *conns = calloc(w->connections, sizeof *conns);
    if (ep < 0 || !conns) { w->errors++; return NULL; }
    for (int i = 0; i < w->connections; i++) {
        if (open_conn(&conns[i], ep) != 0) { w->errors++; continue; }
        next_request(&conns[i], ep);
    }
    struct epoll_event events[256];
    while (now_s() < deadline) {
        int n = epoll_wait(ep, events, 256, 100);
        for (int k = 0; k < n; k++) {
            struct conn *c = events[k].data.ptr;
            if (events[k].events & (EPOLLERR | EPOLLHUP) && !(events[k].events & EPOLLIN)) {
                w->errors++;
                reconnect(c, ep);
                continue;
            }
            if ((events[k].events & EPOLLOUT) && c->request_sent < c->request_len) {
                ssize_t s = send(c->fd, c->request + c->request_sent,
                                 c->request_len - c->request_sent, MSG_NOSIGNAL);
                if (s < 0 && errno != EAGAIN) { w->errors++; reconnect(c, ep); continue; }
                if (s > 0) c->request_sent += s;
                if (c->request_sent == c->request_len) {
                    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
                    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
                }
            }
            if (!(events[k].events & EPOLLIN)) continue;
            for (;;) {
                ssize_t r = recv(c->fd, c->buf + c->have, BUFFER - c->have, 0);
                if (r < 0 && errno == EAGAIN) break;
                if (r <= 0) { w->errors++; reconnect(c, ep); break; }
                c->have += r;
                int done = on_bytes(c);
                if (done < 0) { w->errors++; reconnect(c, ep); break; }
                if (done) {
                    if (c->status >= 200 && c->status < 300) w->ok++; else w->bad++;
                    if (c->closing) reconnect(c, ep); else next_request(c, ep);
                    break;
                }
            }
        }
    }
    for (int i = 0; i < w->connections; i++) close(conns[i].fd);
    free(conns);
    close(ep);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 8) {
        fprintf(stderr, "usage: %s HOST PORT METHOD PATHS SECONDS CONNECTIONS THREADS\n", argv[0]);
        return 2;
    }
    int port = atoi(argv[2]);
    method = argv[3];
    is_head = strcmp(method, "HEAD") == 0;
    double seconds = atof(argv[5]);
    int connections = atoi(argv[6]), threads = atoi(argv[7]);
    if (strcmp(method, "GET") != 0 && !is_head) { fprintf(stderr, "GET or HEAD\n"); return 2; }
    if (seconds <= 0 || connections < 1 || connections > MAX_CONNECTIONS || threads < 1 ||
        threads > MAX_THREADS || threads > connections) {
        fprintf(stderr, "bad SECONDS, CONNECTIONS or THREADS\n");
        return 2;
    }
    memset(&server, 0, sizeof server);
    server.sin_family = AF_INET;
    server.sin_port = htons(port);
    if (inet_pton(AF_INET, argv[1], &server.sin_addr) != 1) { fprintf(stderr, "bad HOST\n"); return 2; }
    snprintf(host_header, sizeof host_header, "%s:%d", argv[1], port);

    FILE *f = fopen(argv[4], "r");
    if (!f) { perror("paths"); return 2; }
    size_t cap = 1024;
    paths = malloc(cap * sizeof *paths);
    char line[MAX_REQUEST / 2];
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = 0;
        if (!line[0]) continue;
        if (path_count == cap) paths = realloc(paths, (cap *= 2) * sizeof *paths);
        paths[path_count++] = strdup(line);
    }
    fclose(f);
    if (path_count == 0) { fprintf(stderr, "no paths\n"); return 2; }

    struct worker workers[MAX_THREADS];
    memset(workers, 0, sizeof workers);
    double start = now_s();
    deadline = start + seconds;
    for (int t = 0; t < threads; t++) {
        workers[t].connections = connections / threads + (t < connections % threads);
        pthread_create(&workers[t].thread, NULL, run, &workers[t]);
    }
    long long ok = 0, bad = 0, errors = 0;
    for (int t = 0; t < threads; t++) {
        pthread_join(workers[t].thread, NULL);
        ok += workers[t].ok;
        bad += workers[t].bad;
        errors += workers[t].errors;
    }
    double elapsed = now_s() - start;
    printf("BENCH_RESULT ok=%lld bad=%lld errors=%lld duration_us=%lld\n", ok, bad, errors,
           (long long)(elapsed * 1e6));
    return 0;
}
