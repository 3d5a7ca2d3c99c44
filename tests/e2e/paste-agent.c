/* A terminal agent as Claude Code or Codex is one, for the send tests (send.rs): its terminal
   in raw mode, bracketed paste asked for (ESC[?2004h), each key read as it comes. A paste
   (ESC[200~ ... ESC[201~) is text, its CRs newlines (a terminal pastes a newline as CR); a CR
   outside a paste submits the message typed so far. Each submission is written whole to
   DIR/sub-N (N from 1), then DIR/ready-N+1 says it is ready for the next; DIR/ready-1 once
   raw mode holds. Built with the system's cc by the test. Usage: paste-agent DIR */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

static char *msg;
static size_t len, cap;

static void add(char c) {
    if (len == cap) {
        cap = cap ? cap * 2 : 4096;
        msg = realloc(msg, cap);
        if (!msg) exit(3);
    }
    msg[len++] = c;
}

static void mark(const char *dir, const char *what, int n, const char *data, size_t size) {
    char path[4096], tmp[4200];
    snprintf(path, sizeof path, "%s/%s-%d", dir, what, n);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    if (!f || fwrite(data, 1, size, f) != size || fclose(f) != 0) exit(4);
    /* Whole or not at all: the test may be reading already. */
    if (rename(tmp, path) != 0) exit(4);
}

int main(int argc, char **argv) {
    if (argc != 2) return 2;
    struct termios t;
    if (tcgetattr(0, &t) != 0) return 5;
    cfmakeraw(&t);
    if (tcsetattr(0, TCSANOW, &t) != 0) return 5;
    if (write(1, "\033[?2004h", 8) != 8) return 6;
    int n = 1, in_paste = 0;
    mark(argv[1], "ready", n, "", 0);
    /* The bytes of a bracket seen so far, while they may still be one. */
    const char *start = "\033[200~", *end = "\033[201~";
    char seen[8];
    size_t k = 0;
    unsigned char c;
    while (read(0, &c, 1) == 1) {
        const char *want = in_paste ? end : start;
        if (c == (unsigned char)want[k]) {
            seen[k++] = c;
            if (k == 6) {
                in_paste = !in_paste;
                k = 0;
            }
            continue;
        }
        for (size_t i = 0; i < k; i++) add(seen[i]);
        k = 0;
        if (c == (unsigned char)want[0]) {
            seen[k++] = c;
            continue;
        }
        if (c == '\r' && !in_paste) {
            mark(argv[1], "sub", n, msg ? msg : "", len);
            len = 0;
            n++;
            mark(argv[1], "ready", n, "", 0);
        } else {
            add(c == '\r' ? '\n' : (char)c);
        }
    }
    return 0;
}
