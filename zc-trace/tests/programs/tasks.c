/* Programs that enter and leave the kernel in every way a task can, for `zc-trace trace`:
 *   tasks signals N   handles N signals (kill, the handler, rt_sigreturn each)
 *   tasks fork N      forks N children that exit at once, and reaps them
 *   tasks threads N   starts N threads that each make one call, and joins them
 *   tasks hold N      starts N threads that are all alive at once, then joins them
 *   tasks threxec N   a thread other than the main one execs this program as `writes N`
 *   tasks writes N    N writes of 1000 bytes to /dev/null, then exit 0
 *   tasks all         signals 100, fork 5, threads 5 in turn
 *   tasks leader-exit N  the main thread exits (pthread_exit) and leaves a thread that
 *                     prints "ready", waits for a byte on stdin, then writes N x 1000 bytes
 *                     to /dev/null
 *   tasks sigints S   prints "ready", counts the SIGINTs it gets for S seconds, prints
 *                     "sigints N" and exits 0
 * Built static by the tests (named zct-tasks, which their ftrace filter matches). */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t handled;
static void on_signal(int sig) { (void)sig; handled++; }

static int signals(int n) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    if (sigaction(SIGUSR1, &sa, NULL) != 0) return 1;
    for (int i = 0; i < n; i++) kill(getpid(), SIGUSR1);
    return handled == n ? 0 : 1;
}

static int forks(int n) {
    for (int i = 0; i < n; i++) {
        pid_t p = fork();
        if (p < 0) return 1;
        if (p == 0) _exit(0);
        if (waitpid(p, NULL, 0) != p) return 1;
    }
    return 0;
}

static pthread_barrier_t all_alive;
static void *one_call(void *arg) { (void)arg; getppid(); return NULL; }
static void *wait_for_all(void *arg) { (void)arg; pthread_barrier_wait(&all_alive); return NULL; }

static int threads(int n, void *(*body)(void *)) {
    pthread_t t[4096];
    if (n > 4096) return 2;
    if (body == wait_for_all) pthread_barrier_init(&all_alive, NULL, (unsigned)n + 1);
    for (int i = 0; i < n; i++)
        if (pthread_create(&t[i], NULL, body, NULL) != 0) return 1;
    if (body == wait_for_all) pthread_barrier_wait(&all_alive);
    for (int i = 0; i < n; i++) pthread_join(t[i], NULL);
    return 0;
}

static const char *writes_arg;
static void *exec_writes(void *arg) {
    (void)arg;
    char *argv[] = {"zct-tasks", "writes", (char *)writes_arg, NULL};
    execv("/proc/self/exe", argv);
    perror("execv");
    _exit(3);
}

static int writes(int n);
static void *wait_then_write(void *arg) {
    char c;
    printf("ready\n");
    fflush(stdout);
    if (read(0, &c, 1) != 1) exit(4);
    exit(writes((int)(long)arg));
}

static int writes(int n) {
    char buf[1000];
    memset(buf, 'w', sizeof buf);
    int fd = open("/dev/null", O_WRONLY);
    if (fd < 0) return 1;
    for (int i = 0; i < n; i++)
        if (write(fd, buf, sizeof buf) != (ssize_t)sizeof buf) return 1;
    return 0;
}

static volatile sig_atomic_t sigints;
static void on_sigint(int sig) { (void)sig; sigints++; }

static int count_sigints(int secs) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    if (sigaction(SIGINT, &sa, NULL) != 0) return 1;
    printf("ready\n");
    fflush(stdout);
    struct timespec end, now;
    clock_gettime(CLOCK_MONOTONIC, &end);
    end.tv_sec += secs;
    do {
        struct timespec tick = {0, 10 * 1000 * 1000};
        nanosleep(&tick, NULL);
        clock_gettime(CLOCK_MONOTONIC, &now);
    } while (now.tv_sec < end.tv_sec || (now.tv_sec == end.tv_sec && now.tv_nsec < end.tv_nsec));
    printf("sigints %d\n", (int)sigints);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: tasks signals|fork|threads|hold|threxec|writes N | all\n");
        return 2;
    }
    const char *how = argv[1];
    int n = argc > 2 ? atoi(argv[2]) : 0;
    if (strcmp(how, "signals") == 0) return signals(n);
    if (strcmp(how, "fork") == 0) return forks(n);
    if (strcmp(how, "threads") == 0) return threads(n, one_call);
    if (strcmp(how, "hold") == 0) return threads(n, wait_for_all);
    if (strcmp(how, "writes") == 0) return writes(n);
    if (strcmp(how, "sigints") == 0) return count_sigints(n);
    if (strcmp(how, "leader-exit") == 0) {
        pthread_t t;
        if (pthread_create(&t, NULL, wait_then_write, (void *)(long)n) != 0) return 1;
        pthread_exit(NULL);
    }
    if (strcmp(how, "threxec") == 0) {
        pthread_t t;
        writes_arg = argc > 2 ? argv[2] : "1";
        if (pthread_create(&t, NULL, exec_writes, NULL) != 0) return 1;
        /* The main thread waits; the exec ends it. */
        for (;;) pause();
    }
    if (strcmp(how, "all") == 0) return signals(100) | forks(5) | threads(5, one_call);
    fprintf(stderr, "tasks: unknown mode %s\n", how);
    return 2;
}
