/*
 * What vigil's syscall hooks cost one process, without a server around them: listens on a port (so
 * that a vigil selecting that port captures this process), then for each line on stdin runs a loop and
 * prints the nanoseconds one iteration took:
 *
 *   transfer   write(2) 100 bytes into a socketpair and read(2) them back: two hooked syscalls
 *   other      getppid(2): a syscall vigil does not hook
 *
 * Usage: loop PORT ITERATIONS   (scripts/bench-http.py builds and runs it)
 */
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define TRANSFER_BYTES 100

static double now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e9 + t.tv_nsec;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s PORT ITERATIONS\n", argv[0]);
        return 2;
    }
    int port = atoi(argv[1]);
    long iterations = atol(argv[2]);
    int listener = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in address = {
        .sin_family = AF_INET,
        .sin_port = htons(port),
        .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
    };
    if (bind(listener, (struct sockaddr *)&address, sizeof address) || listen(listener, 1)) {
        perror("listen");
        return 1;
    }
    int pair[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, pair)) {
        perror("socketpair");
        return 1;
    }
    char sent[TRANSFER_BYTES], received[4096];
    memset(sent, 'x', sizeof sent);
    printf("listening %d\n", port);
    fflush(stdout);

    char line[64];
    while (fgets(line, sizeof line, stdin)) {
        double start = now_ns();
        if (strncmp(line, "transfer", 8) == 0) {
            for (long i = 0; i < iterations; i++) {
                if (write(pair[0], sent, sizeof sent) != sizeof sent ||
                    read(pair[1], received, sizeof received) <= 0) {
                    perror("transfer");
                    return 1;
                }
            }
        } else {
            for (long i = 0; i < iterations; i++) {
                getppid();
            }
        }
        printf("%.1f\n", (now_ns() - start) / iterations);
        fflush(stdout);
    }
    return 0;
}
