/* A UDP echo server for examples/udp-echo.yaml: busybox's nc has no UDP mode in Debian's
 * busybox-static, so `berth up` compiles this (statically) into the example image as
 * /bin/udp-echo.
 *   udp-echo [PORT]              serve: answer every datagram with itself (default port 5353)
 *   udp-echo -c HOST PORT TEXT   ask: send TEXT, print the answer, exit 1 after 3 s without one */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>

static int port_of(const char *s) {
  int p = atoi(s);
  if (p <= 0 || p > 65535) { fprintf(stderr, "udp-echo: bad port %s\n", s); exit(2); }
  return p;
}

static int ask(const char *host, int port, const char *text) {
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  struct sockaddr_in to;
  memset(&to, 0, sizeof to);
  to.sin_family = AF_INET;
  to.sin_port = htons((unsigned short)port);
  if (inet_pton(AF_INET, host, &to.sin_addr) != 1) { fprintf(stderr, "udp-echo: bad IPv4 address %s\n", host); return 2; }
  struct timeval tv = { 3, 0 };
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  if (sendto(fd, text, strlen(text), 0, (struct sockaddr *)&to, sizeof to) < 0) { perror("udp-echo: sendto"); return 1; }
  char buf[65536];
  ssize_t n = recv(fd, buf, sizeof buf - 1, 0);
  if (n < 0) { perror("udp-echo: no answer"); return 1; }
  buf[n] = 0;
  printf("%s\n", buf);
  return 0;
}

int main(int argc, char **argv) {
  if (argc == 5 && strcmp(argv[1], "-c") == 0) return ask(argv[2], port_of(argv[3]), argv[4]);
  int port = argc > 1 ? port_of(argv[1]) : 5353;
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  if (fd < 0) { perror("udp-echo: socket"); return 1; }
  struct sockaddr_in addr;
  memset(&addr, 0, sizeof addr);
  addr.sin_family = AF_INET;
  addr.sin_port = htons((unsigned short)port);
  addr.sin_addr.s_addr = htonl(INADDR_ANY);
  if (bind(fd, (struct sockaddr *)&addr, sizeof addr) < 0) { perror("udp-echo: bind"); return 1; }
  printf("udp-echo: listening on udp port %d\n", port);
  fflush(stdout);
  for (;;) {
    char buf[65536];
    struct sockaddr_in peer;
    socklen_t len = sizeof peer;
    ssize_t n = recvfrom(fd, buf, sizeof buf, 0, (struct sockaddr *)&peer, &len);
    if (n >= 0) sendto(fd, buf, (size_t)n, 0, (struct sockaddr *)&peer, len);
  }
}
