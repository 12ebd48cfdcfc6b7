/* BEP 15 announce load for bench/tracker.py: the same generator for every tracker measured.
 *
 * usage: udp_load HOST PORT PACKETS SECONDS WINDOW
 *
 * PACKETS holds 98-byte announce requests (connection and transaction ids left zero). One
 * connect, then WINDOW announces kept in flight over one socket, cycling over PACKETS: each
 * answer frees its slot, which sends the next. A slot silent for 200 ms (a lost datagram)
 * sends again under a new transaction id. Prints one line:
 *   BENCH_RESULT ok=N bad=N duration_us=N lost=N
 * ok counts announce answers (action 1) to a transaction still in flight, bad error answers.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define ANNOUNCE 98
#define MAX_WINDOW 4096

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void put32(unsigned char *p, uint32_t v) {
    p[0] = v >> 24; p[1] = v >> 16; p[2] = v >> 8; p[3] = v;
}

static uint32_t get32(const unsigned char *p) {
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

int main(int argc, char **argv) {
    if (argc != 6) {
        fprintf(stderr, "usage: %s HOST PORT PACKETS SECONDS WINDOW\n", argv[0]);
        return 2;
    }
    double seconds = atof(argv[4]);
    int window = atoi(argv[5]);
    if (window < 1 || window > MAX_WINDOW || seconds <= 0) {
        fprintf(stderr, "bad SECONDS or WINDOW\n");
        return 2;
    }
    FILE *f = fopen(argv[3], "rb");
    if (!f) { perror("packets"); return 2; }
    struct stat st;
    fstat(fileno(f), &st);
    size_t count = st.st_size / ANNOUNCE;
    if (count == 0) { fprintf(stderr, "no packets\n"); return 2; }
    unsigned char *packets = malloc(count * ANNOUNCE);
    if (!packets || fread(packets, ANNOUNCE, count, f) != count) { perror("read"); return 2; }
    fclose(f);

    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in to = {0};
    to.sin_family = AF_INET;
    to.sin_port = htons(atoi(argv[2]));
    if (inet_pton(AF_INET, argv[1], &to.sin_addr) != 1 || fd < 0 ||
        connect(fd, (struct sockaddr *)&to, sizeof to) != 0) {
        perror("socket");
        return 2;
    }
    int size = 4 << 20;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof size);

    /* connect: protocol id, action 0, transaction id */
    unsigned char buf[2048], connection_id[8];
    int connected = 0;
    for (int attempt = 0; attempt < 20 && !connected; attempt++) {
        unsigned char req[16] = {0x00, 0x00, 0x04, 0x17, 0x27, 0x10, 0x19, 0x80, 0, 0, 0, 0};
        put32(req + 12, 0x5eed0000u + attempt);
        send(fd, req, sizeof req, 0);
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, 250) == 1) {
            ssize_t n = recv(fd, buf, sizeof buf, 0);
            if (n >= 16 && get32(buf) == 0 && get32(buf + 4) == 0x5eed0000u + attempt) {
                memcpy(connection_id, buf + 8, 8);
                connected = 1;
            }
        }
    }
    if (!connected) { fprintf(stderr, "no connect answer\n"); return 1; }

    uint32_t expected[MAX_WINDOW];
    double sent_at[MAX_WINDOW];
    size_t next = 0;
    long ok = 0, bad = 0, lost = 0;
    unsigned char out[ANNOUNCE];
    double start = now_s(), end = start + seconds, last_scan = start;

#define SEND(slot, tid)                                             \
    do {                                                            \
        memcpy(out, packets + (next++ % count) * ANNOUNCE, ANNOUNCE); \
        memcpy(out, connection_id, 8);                              \
        put32(out + 12, (tid));                                     \
        expected[slot] = (tid);                                     \
        sent_at[slot] = now_s();                                    \
        send(fd, out, ANNOUNCE, 0);                                 \
    } while (0)

    for (int slot = 0; slot < window; slot++) SEND(slot, (uint32_t)slot);
    while (1) {
        struct pollfd p = {fd, POLLIN, 0};
        int ready = poll(&p, 1, 20);
        double t = now_s();
        if (t >= end) break;
        if (ready == 1) {
            for (int i = 0; i < 64; i++) {
                ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
                if (n < 0) break;
                if (n < 8) continue;
                uint32_t action = get32(buf), tid = get32(buf + 4);
                int slot = tid % (uint32_t)window;
                if (expected[slot] != tid) continue; /* a late answer to a resent slot */
                if (action == 1) ok++; else bad++;
                SEND(slot, tid + (uint32_t)window);
            }
        }
        if (t - last_scan > 0.05) {
            last_scan = t;
            for (int slot = 0; slot < window; slot++) {
                if (t - sent_at[slot] > 0.2) {
                    lost++;
                    SEND(slot, expected[slot] + (uint32_t)window);
                }
            }
        }
    }
    double duration = now_s() - start;
    printf("BENCH_RESULT ok=%ld bad=%ld duration_us=%ld lost=%ld\n", ok, bad,
           (long)(duration * 1e6), lost);
    return 0;
}
