/* udp_blast: the load generator of the capture benchmark (capture.py).
 *
 *     udp_blast HOST PORT SIZE COUNT RATE
 *
 * Sends COUNT UDP datagrams of SIZE bytes (at least 8) to the IPv4 address
 * HOST, port PORT, at RATE datagrams per second (0: as fast as it can), in
 * batches of sendmmsg. Each datagram starts with its sequence number (64
 * bits, big-endian), so a capture can be checked for loss; no datagram is
 * coalesced with another (no UDP_SEGMENT), so every capture sees each one
 * as a frame of its own. Prints one line of JSON: datagrams sent, seconds,
 * datagrams per second.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BATCH 32

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double) ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Wait until ``when`` (monotonic seconds): sleep for the bulk, then spin,
 * since a sleep of a few microseconds overshoots. */
static void wait_until(double when)
{
    for (;;) {
        double left = when - now();
        if (left <= 0)
            return;
        if (left > 200e-6) {
            struct timespec ts = {0, (long) ((left - 100e-6) * 1e9)};
            nanosleep(&ts, NULL);
        }
    }
}

int main(int argc, char **argv)
{
    if (argc != 6) {
        fprintf(stderr, "usage: %s HOST PORT SIZE COUNT RATE\n", argv[0]);
        return 2;
    }
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[2]))};
    size_t size = strtoul(argv[3], NULL, 10);
    uint64_t count = strtoull(argv[4], NULL, 10);
    double rate = atof(argv[5]);
    if (inet_pton(AF_INET, argv[1], &to.sin_addr) != 1 || size < 8 || size > 65507) {
        fprintf(stderr, "%s: bad address or size\n", argv[0]);
        return 2;
    }
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    int sndbuf = 4 << 20;
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
    if (fd < 0 || connect(fd, (struct sockaddr *) &to, sizeof(to)) != 0) {
        perror("udp_blast: socket");
        return 1;
    }
    uint8_t *buf = calloc(BATCH, size);
    struct mmsghdr msgs[BATCH];
    struct iovec iov[BATCH];
    memset(msgs, 0, sizeof(msgs));
    for (int i = 0; i < BATCH; i++) {
        memset(buf + i * size + 8, 0x5a, size - 8);
        iov[i].iov_base = buf + i * size;
        iov[i].iov_len = size;
        msgs[i].msg_hdr.msg_iov = &iov[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
    }
    double start = now();
    uint64_t seq = 0;
    while (seq < count) {
        int n = count - seq < BATCH ? (int) (count - seq) : BATCH;
        if (rate > 0)
            wait_until(start + seq / rate);
        for (int i = 0; i < n; i++) {
            uint64_t s = seq + i;
            for (int b = 0; b < 8; b++)
                buf[i * size + b] = (uint8_t) (s >> (56 - 8 * b));
        }
        int sent = sendmmsg(fd, msgs, n, 0);
        if (sent < 0) {
            if (errno == EINTR || errno == ENOBUFS || errno == EAGAIN || errno == ECONNREFUSED)
                continue;   /* try the same datagrams again */
            perror("udp_blast: sendmmsg");
            return 1;
        }
        seq += sent;
    }
    double seconds = now() - start;
    printf("{\"sent\": %llu, \"seconds\": %.6f, \"rate\": %.1f}\n", (unsigned long long) seq,
           seconds, seconds > 0 ? seq / seconds : 0.0);
    return 0;
}
