/* A file server's send loop, one strategy at a time, for `zc-trace trace` tests and labs:
 *   xfer STRATEGY FILE PORT [wait]
 * connects to 127.0.0.1:PORT and moves FILE there with STRATEGY (read-write, mmap-write,
 * sendfile, splice), 64 KiB per call. With "wait" it first reads one byte from stdin, so
 * that a tracer can attach to it by pid. Built static by the tests: no dynamic loader reads
 * libraries, so every file byte it moves is FILE's. Exits 0 when all of FILE was sent. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define CHUNK (64 * 1024)

static int send_all(int out, const char *p, size_t n) {
    while (n > 0) {
        ssize_t w = write(out, p, n < CHUNK ? n : CHUNK);
        if (w <= 0) return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: xfer read-write|mmap-write|sendfile|splice FILE PORT [wait]\n");
        return 2;
    }
    const char *how = argv[1];
    int in = open(argv[2], O_RDONLY);
    struct stat st;
    if (in < 0 || fstat(in, &st) != 0) { perror(argv[2]); return 2; }
    if (argc > 4 && strcmp(argv[4], "wait") == 0) {
        char c;
        if (read(0, &c, 1) != 1) return 2;
    }
    int out = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((unsigned short)atoi(argv[3])) };
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (out < 0 || connect(out, (struct sockaddr *)&a, sizeof a) != 0) { perror("connect"); return 2; }
    off_t left = st.st_size;
    if (strcmp(how, "read-write") == 0) {
        static char buf[CHUNK];
        ssize_t r;
        while ((r = read(in, buf, sizeof buf)) > 0)
            if (send_all(out, buf, (size_t)r) != 0) return 1;
        if (r < 0) return 1;
    } else if (strcmp(how, "mmap-write") == 0) {
        char *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, in, 0);
        if (p == MAP_FAILED) return 1;
        if (send_all(out, p, (size_t)st.st_size) != 0) return 1;
        munmap(p, (size_t)st.st_size);
    } else if (strcmp(how, "sendfile") == 0) {
        while (left > 0) {
            ssize_t s = sendfile(out, in, NULL, left < CHUNK ? (size_t)left : CHUNK);
            if (s <= 0) return 1;
            left -= s;
        }
    } else if (strcmp(how, "splice") == 0) {
        int p[2];
        if (pipe(p) != 0) return 1;
        while (left > 0) {
            ssize_t s = splice(in, NULL, p[1], NULL, left < CHUNK ? (size_t)left : CHUNK, SPLICE_F_MOVE);
            if (s <= 0) return 1;
            left -= s;
            while (s > 0) {
                ssize_t t = splice(p[0], NULL, out, NULL, (size_t)s, SPLICE_F_MOVE);
                if (t <= 0) return 1;
                s -= t;
            }
        }
    } else {
        fprintf(stderr, "unknown strategy %s\n", how);
        return 2;
    }
    close(out);
    return 0;
}
