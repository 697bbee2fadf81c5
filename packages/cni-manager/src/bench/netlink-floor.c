// The kernel floor under a bridge-mode SetUpPod: the system calls Berth's PodNetwork makes for
// one pod (packages/cni-manager/src/network.ts attach(), through native/src/netlink.cc), in
// the same order and with the same messages, from C with raw rtnetlink and nothing else. What
// this costs is what the kernel needs; what Berth takes beyond it is Node, the libuv pool hop,
// gRPC and its own bookkeeping (IPAM and journal appends, which are file writes and left out).
//
// Started once per bench run, in the bench's node namespace:
//   netlink-floor <bridge> <pod-network e.g. 10.94.0.0/16>
// The bridge must exist and carry the gateway (the network's first address); pod i gets the
// network's address 2 + i. Then reads commands on stdin, one per line, and answers one line each:
//   add <i> <netns-path>  ->  "<total_us> <create_us> <host_batch_us> <pod_batch_us> <arp_us>"
//   del <i> <netns-path>  ->  "<total_us>"
//   or "err <what>: <reason>" (the bench fails on it).
// Each duration is CLOCK_MONOTONIC around the kernel work only (no parsing, no answer).
//
// add, as Berth's SetUp (bridge mode, IPv4, no bandwidth or port mappings):
//   open the netns (checked with NS_GET_NSTYPE) and stat it (the node's-own-netns check); read
//   net.netfilter.nf_conntrack_count (whether a reused address has entries to flush); open an
//   rtnetlink socket in the pod netns (setns there and back, the socket options, bind);
//   RTM_NEWLINK veth <host> with its peer eth0 (mtu, MAC 0a:58:<ip>) created in the pod netns,
//   the host end enslaved to the bridge in the same message, echoed;
//   node batch: IPv6 addr_gen_mode none, hairpin on (IFLA_PROTINFO), link up;
//   pod batch: lo up, addr_gen_mode none on eth0, the address (with broadcast), eth0 up, the
//   default route via the gateway (protocol 0xbe);
//   close the pod's netlink socket; a gratuitous ARP for the pod's address sent from eth0 to the
//   bridge's MAC through an AF_PACKET socket opened in the pod netns (closed on another thread,
//   as Berth does: its close waits for an RCU grace period); close the netns.
// del, as Berth's teardown once answered: RTM_DELLINK of the host end (the peer, its address
// and routes go with it) and the conntrack count read. Berth answers TearDownPod before this
// work and does it in the background; here it is timed, since it is the kernel's cost.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if_link.h>
#include <linux/if_packet.h>
#include <linux/netlink.h>
#include <linux/nsfs.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define VETH_INFO_PEER 1
#define IFLA_BRPORT_MODE_ATTR 4
#define INET6_ADDR_GEN_MODE_ATTR 8
#define RTPROT_BERTH 0xbe
#define MTU 1500

static char err_msg[8192];
static int fail(const char* what, int e, const char* extack) {
  snprintf(err_msg, sizeof err_msg, "%s: %s%s%s", what, strerror(e), extack && *extack ? " - " : "", extack ? extack : "");
  return -1;
}

static double now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

// ---- message building: one buffer of consecutive nlmsghdr-framed requests (a batch) ----

struct msgbuf {
  uint8_t b[4096];
  size_t len;
  size_t cur;  // offset of the message being built
  int count;
};
static uint32_t seq_next = 1;

static void *put(struct msgbuf* m, const void* data, size_t n) {
  uint8_t* p = m->b + m->len;
  if (data) memcpy(p, data, n);
  else memset(p, 0, n);
  size_t pad = NLMSG_ALIGN(n) - n;
  memset(p + n, 0, pad);
  m->len += n + pad;
  return p;
}

static void msg_begin(struct msgbuf* m, uint16_t type, uint16_t flags, const void* hdr, size_t hdrlen) {
  m->cur = m->len;
  struct nlmsghdr h = {.nlmsg_type = type, .nlmsg_flags = (uint16_t)(flags | NLM_F_REQUEST | NLM_F_ACK), .nlmsg_seq = seq_next++};
  put(m, &h, sizeof h);
  put(m, hdr, hdrlen);
  m->count++;
}
static void msg_end(struct msgbuf* m) { ((struct nlmsghdr*)(m->b + m->cur))->nlmsg_len = (uint32_t)(m->len - m->cur); }

static void attr(struct msgbuf* m, uint16_t type, const void* data, size_t n) {
  struct nlattr a = {.nla_len = (uint16_t)(NLA_HDRLEN + n), .nla_type = type};
  put(m, &a, sizeof a);  // NLA_HDRLEN: already 4-aligned
  if (n) put(m, data, n);
}
static void attr_u8(struct msgbuf* m, uint16_t type, uint8_t v) { attr(m, type, &v, 1); }
static void attr_u32(struct msgbuf* m, uint16_t type, uint32_t v) { attr(m, type, &v, 4); }
static void attr_str(struct msgbuf* m, uint16_t type, const char* s) { attr(m, type, s, strlen(s) + 1); }
// Nested attributes carry NLA_F_NESTED, as Berth's encoder sets (the bridge's IFLA_PROTINFO
// parser depends on it). VETH_INFO_PEER is a raw ifinfomsg + attributes and gets no flag.
static size_t nest_begin(struct msgbuf* m, uint16_t type, int nested_flag) {
  size_t at = m->len;
  struct nlattr a = {.nla_len = 0, .nla_type = (uint16_t)(type | (nested_flag ? NLA_F_NESTED : 0))};
  put(m, &a, sizeof a);
  return at;
}
static void nest_end(struct msgbuf* m, size_t at) { ((struct nlattr*)(m->b + at))->nla_len = (uint16_t)(m->len - at); }

// ---- transactions, as native/src/netlink.cc Transact(): send the batch, read every answer ----

static uint8_t rbuf[64 * 1024];

// Sends the batch and reads up to its last ACK. The first RTM_NEWLINK reply (a create's echo)
// fills *index and *peer (its IFLA_LINK: a veth peer's index in the peer's namespace).
static int transact(int fd, struct msgbuf* m, const char* what, int* index, int* peer) {
  const struct nlmsghdr* first = (const struct nlmsghdr*)m->b;
  uint32_t seq = first->nlmsg_seq, count = (uint32_t)m->count, remaining = count;
  struct sockaddr_nl kernel = {.nl_family = AF_NETLINK};
  ssize_t n;
  do n = sendto(fd, m->b, m->len, 0, (struct sockaddr*)&kernel, sizeof kernel);
  while (n < 0 && errno == EINTR);
  if (n < 0) return fail(what, errno, "sendto");
  int err = 0;
  char extack[256] = "";
  for (;;) {
    do n = recv(fd, rbuf, sizeof rbuf, 0);
    while (n < 0 && errno == EINTR);
    if (n < 0) return fail(what, errno == EAGAIN ? ETIMEDOUT : errno, "recv");
    size_t left = (size_t)n;
    for (struct nlmsghdr* h = (struct nlmsghdr*)rbuf; NLMSG_OK(h, left); h = NLMSG_NEXT(h, left)) {
      if (h->nlmsg_seq - seq >= count) continue;
      if (h->nlmsg_type == NLMSG_ERROR) {
        const struct nlmsgerr* e = NLMSG_DATA(h);
        if (e->error < 0 && !err) {
          err = -e->error;
          if (h->nlmsg_flags & NLM_F_ACK_TLVS) {
            size_t off = NLMSG_LENGTH(sizeof(struct nlmsgerr));
            if (!(h->nlmsg_flags & NLM_F_CAPPED)) off += NLMSG_ALIGN(e->msg.nlmsg_len) - NLMSG_ALIGN(sizeof(struct nlmsghdr));
            while (off + NLA_HDRLEN <= h->nlmsg_len) {
              const struct nlattr* a = (const struct nlattr*)((uint8_t*)h + off);
              if (a->nla_len < NLA_HDRLEN || off + a->nla_len > h->nlmsg_len) break;
              if ((a->nla_type & NLA_TYPE_MASK) == 1) {
                snprintf(extack, sizeof extack, "%.*s", (int)(a->nla_len - NLA_HDRLEN), (const char*)a + NLA_HDRLEN);
                break;
              }
              off += NLA_ALIGN(a->nla_len);
            }
          }
        }
        if (--remaining == 0) return err ? fail(what, err, extack) : 0;
        continue;
      }
      if (h->nlmsg_type == RTM_NEWLINK && index && *index == 0) {
        const struct ifinfomsg* ifi = NLMSG_DATA(h);
        *index = ifi->ifi_index;
        size_t off = NLMSG_LENGTH(NLMSG_ALIGN(sizeof *ifi));
        while (off + NLA_HDRLEN <= h->nlmsg_len) {
          const struct nlattr* a = (const struct nlattr*)((uint8_t*)h + off);
          if (a->nla_len < NLA_HDRLEN || off + a->nla_len > h->nlmsg_len) break;
          if ((a->nla_type & NLA_TYPE_MASK) == IFLA_LINK && a->nla_len >= NLA_HDRLEN + 4) memcpy(peer, (uint8_t*)a + NLA_HDRLEN, 4);
          off += NLA_ALIGN(a->nla_len);
        }
      }
    }
  }
}

// ---- sockets, as netlink.cc: made in a namespace by a setns there and back ----

// Runs socket(domain, type, proto) with this thread in netns `nsfd`, as InNetns() does
// (it opens the thread's own namespace each time, so the same here).
static int socket_in(int nsfd, int domain, int type, int proto) {
  int self = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
  if (self < 0) return fail("open /proc/thread-self/ns/net", errno, NULL);
  if (setns(nsfd, CLONE_NEWNET) != 0) {
    int e = errno;
    close(self);
    return fail("setns", e, NULL);
  }
  int fd = socket(domain, type | SOCK_CLOEXEC, proto);
  int e = errno;
  if (setns(self, CLONE_NEWNET) != 0) abort();
  close(self);
  if (fd < 0) return fail("socket", e, NULL);
  return fd;
}

// nlOpen(): the socket options Berth sets, then bind.
static int rtnl_setup(int fd) {
  int one = 1;
  setsockopt(fd, SOL_NETLINK, NETLINK_EXT_ACK, &one, sizeof one);
  setsockopt(fd, SOL_NETLINK, NETLINK_CAP_ACK, &one, sizeof one);
  int rcvbuf = 1 << 20;
  if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof rcvbuf) != 0) setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
  struct timeval tv = {10, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  struct sockaddr_nl local = {.nl_family = AF_NETLINK};
  if (bind(fd, (struct sockaddr*)&local, sizeof local) != 0) {
    int e = errno;
    close(fd);
    return fail("bind", e, NULL);
  }
  return fd;
}

// Packet sockets are closed by one closer thread: packet_release() waits for an RCU grace
// period, which Berth keeps off its path the same way (netlink.cc PacketCloser).
static int closer_pipe[2];
static void* closer(void* arg) {
  (void)arg;
  int fd;
  while (read(closer_pipe[0], &fd, sizeof fd) == (ssize_t)sizeof fd) close(fd);
  return NULL;
}

// ---- the node ----

static int host_fd;
static struct stat host_ns;
static int bridge_index;
static uint8_t bridge_mac[6];
static uint32_t net_base, gateway;  // host order
static int prefix;
static int conntrack_fd = -1;

// flushConntrack(): the namespace's conntrack count (open once, pread each time; until
// conntrack is loaded the file does not exist and is looked for again each time).
static int conntrack_count_is_zero(void) {
  if (conntrack_fd < 0) conntrack_fd = open("/proc/sys/net/netfilter/nf_conntrack_count", O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (conntrack_fd < 0) return 1;
  char b[32];
  ssize_t n = pread(conntrack_fd, b, sizeof b - 1, 0);
  return n > 0 && b[0] == '0' && (b[1] == '\n' || n == 1);
}

static void host_name(char* out, int i) { snprintf(out, IFNAMSIZ, "bk%08x", (unsigned)i); }

static int do_add(int i, const char* netns, double* t) {
  double t0 = now_us();
  uint32_t ip = net_base + 2 + (uint32_t)i;
  uint32_t ip_be = htonl(ip), gw_be = htonl(gateway);
  uint32_t mask = prefix == 0 ? 0 : ~0u << (32 - prefix);
  uint32_t bcast_be = htonl((ip & mask) | ~mask);
  uint8_t mac[6] = {0x0a, 0x58, (uint8_t)(ip >> 24), (uint8_t)(ip >> 16), (uint8_t)(ip >> 8), (uint8_t)ip};
  char host[IFNAMSIZ];
  host_name(host, i);

  int nsfd = open(netns, O_RDONLY | O_CLOEXEC | O_NOCTTY);
  if (nsfd < 0) return fail(netns, errno, "open");
  if (ioctl(nsfd, NS_GET_NSTYPE) != CLONE_NEWNET) {
    close(nsfd);
    return fail(netns, EINVAL, "not a network namespace");
  }
  struct stat st;
  if (stat(netns, &st) != 0 || (st.st_ino == host_ns.st_ino && st.st_dev == host_ns.st_dev)) {
    close(nsfd);
    return fail(netns, EINVAL, "the node's own namespace");
  }
  // Berth dumps conntrack for the address only when the count is not zero; the bench's node
  // namespace carries no traffic, so it is zero there and for Berth alike.
  (void)conntrack_count_is_zero();
  int pod_fd = socket_in(nsfd, AF_NETLINK, SOCK_RAW, NETLINK_ROUTE);
  if (pod_fd < 0 || rtnl_setup(pod_fd) < 0) {
    close(nsfd);
    return -1;
  }
  double t1 = now_us();

  // The veth pair, its peer made in the pod netns, the host end on the bridge.
  struct msgbuf m = {0};
  struct ifinfomsg ifi = {0};
  msg_begin(&m, RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL | NLM_F_ECHO, &ifi, sizeof ifi);
  attr_str(&m, IFLA_IFNAME, host);
  size_t li = nest_begin(&m, IFLA_LINKINFO, 1);
  attr_str(&m, IFLA_INFO_KIND, "veth");
  size_t data = nest_begin(&m, IFLA_INFO_DATA, 1);
  size_t peer = nest_begin(&m, VETH_INFO_PEER, 0);
  put(&m, &ifi, sizeof ifi);
  attr_str(&m, IFLA_IFNAME, "eth0");
  attr_u32(&m, IFLA_MTU, MTU);
  attr(&m, IFLA_ADDRESS, mac, 6);
  attr_u32(&m, IFLA_NET_NS_FD, (uint32_t)nsfd);
  nest_end(&m, peer);
  nest_end(&m, data);
  nest_end(&m, li);
  attr_u32(&m, IFLA_MTU, MTU);
  attr_u32(&m, IFLA_MASTER, (uint32_t)bridge_index);
  msg_end(&m);
  int host_index = 0, pod_index = 0;
  int rc = transact(host_fd, &m, "create veth", &host_index, &pod_index);
  double t2 = now_us();
  if (rc == 0 && (!host_index || !pod_index)) rc = fail("create veth", ENODEV, "no echo with both indexes");

  if (rc == 0) {
    // Node batch: no IPv6 link-local, hairpin, up.
    memset(&m, 0, sizeof m);
    struct ifinfomsg h = {.ifi_index = host_index};
    msg_begin(&m, RTM_SETLINK, 0, &h, sizeof h);
    size_t sp = nest_begin(&m, IFLA_AF_SPEC, 1), a6 = nest_begin(&m, AF_INET6, 1);
    attr_u8(&m, INET6_ADDR_GEN_MODE_ATTR, 1 /* none */);
    nest_end(&m, a6);
    nest_end(&m, sp);
    msg_end(&m);
    struct ifinfomsg hb = {.ifi_family = AF_BRIDGE, .ifi_index = host_index};
    msg_begin(&m, RTM_SETLINK, 0, &hb, sizeof hb);
    size_t pi = nest_begin(&m, IFLA_PROTINFO, 1);
    attr_u8(&m, IFLA_BRPORT_MODE_ATTR, 1);
    nest_end(&m, pi);
    msg_end(&m);
    struct ifinfomsg up = {.ifi_index = host_index, .ifi_flags = IFF_UP, .ifi_change = IFF_UP};
    msg_begin(&m, RTM_SETLINK, 0, &up, sizeof up);
    msg_end(&m);
    rc = transact(host_fd, &m, "node batch", NULL, NULL);
  }
  double t3 = now_us();

  if (rc == 0) {
    // Pod batch: lo up, no IPv6 link-local on eth0, the address, eth0 up, the default route.
    memset(&m, 0, sizeof m);
    struct ifinfomsg lo = {.ifi_index = 1, .ifi_flags = IFF_UP, .ifi_change = IFF_UP};
    msg_begin(&m, RTM_SETLINK, 0, &lo, sizeof lo);
    msg_end(&m);
    struct ifinfomsg g = {.ifi_index = pod_index};
    msg_begin(&m, RTM_SETLINK, 0, &g, sizeof g);
    size_t sp = nest_begin(&m, IFLA_AF_SPEC, 1), a6 = nest_begin(&m, AF_INET6, 1);
    attr_u8(&m, INET6_ADDR_GEN_MODE_ATTR, 1);
    nest_end(&m, a6);
    nest_end(&m, sp);
    msg_end(&m);
    struct ifaddrmsg ifa = {.ifa_family = AF_INET, .ifa_prefixlen = (uint8_t)prefix, .ifa_index = (uint32_t)pod_index};
    msg_begin(&m, RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, &ifa, sizeof ifa);
    attr(&m, IFA_LOCAL, &ip_be, 4);
    attr(&m, IFA_ADDRESS, &ip_be, 4);
    if (prefix < 31) attr(&m, IFA_BROADCAST, &bcast_be, 4);
    msg_end(&m);
    struct ifinfomsg up = {.ifi_index = pod_index, .ifi_flags = IFF_UP, .ifi_change = IFF_UP};
    msg_begin(&m, RTM_SETLINK, 0, &up, sizeof up);
    msg_end(&m);
    struct rtmsg rt = {.rtm_family = AF_INET, .rtm_table = RT_TABLE_MAIN, .rtm_protocol = RTPROT_BERTH, .rtm_scope = RT_SCOPE_UNIVERSE, .rtm_type = RTN_UNICAST};
    msg_begin(&m, RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL, &rt, sizeof rt);
    attr(&m, RTA_GATEWAY, &gw_be, 4);
    attr_u32(&m, RTA_OIF, (uint32_t)pod_index);
    msg_end(&m);
    rc = transact(pod_fd, &m, "pod batch", NULL, NULL);
  }
  close(pod_fd);
  double t4 = now_us();

  if (rc == 0) {
    // The gratuitous ARP, to the node alone (the bridge's MAC), from eth0.
    int pk = socket_in(nsfd, AF_PACKET, SOCK_RAW, 0);
    if (pk < 0) rc = -1;
    else {
      uint8_t f[42] = {0};
      memcpy(f, bridge_mac, 6);
      memcpy(f + 6, mac, 6);
      f[12] = 0x08, f[13] = 0x06;              // ETH_P_ARP
      f[14] = 0, f[15] = 1;                    // Ethernet
      f[16] = 0x08, f[17] = 0x00;              // IPv4
      f[18] = 6, f[19] = 4, f[20] = 0, f[21] = 1;  // request
      memcpy(f + 22, mac, 6);
      memcpy(f + 28, &ip_be, 4);
      memcpy(f + 38, &ip_be, 4);
      struct sockaddr_ll to = {.sll_family = AF_PACKET, .sll_ifindex = pod_index};
      ssize_t n;
      do n = sendto(pk, f, sizeof f, 0, (struct sockaddr*)&to, sizeof to);
      while (n < 0 && errno == EINTR);
      if (n < 0) rc = fail("gratuitous ARP", errno, "sendto");
      if (write(closer_pipe[1], &pk, sizeof pk) != (ssize_t)sizeof pk) close(pk);
    }
  }
  close(nsfd);
  double t5 = now_us();
  t[0] = t5 - t0, t[1] = t2 - t1, t[2] = t3 - t2, t[3] = t4 - t3, t[4] = t5 - t4;
  return rc;
}

static int do_del(int i, double* t) {
  double t0 = now_us();
  char host[IFNAMSIZ];
  host_name(host, i);
  struct msgbuf m = {0};
  struct ifinfomsg ifi = {0};
  msg_begin(&m, RTM_DELLINK, 0, &ifi, sizeof ifi);
  attr_str(&m, IFLA_IFNAME, host);
  msg_end(&m);
  int rc = transact(host_fd, &m, "delete veth", NULL, NULL);
  (void)conntrack_count_is_zero();
  t[0] = now_us() - t0;
  return rc;
}

static int parse_net(const char* s) {
  char a[32];
  const char* slash = strchr(s, '/');
  if (!slash || slash - s >= (long)sizeof a) return -1;
  memcpy(a, s, (size_t)(slash - s));
  a[slash - s] = 0;
  struct in_addr in;
  if (inet_pton(AF_INET, a, &in) != 1) return -1;
  prefix = atoi(slash + 1);
  if (prefix < 8 || prefix > 28) return -1;
  net_base = ntohl(in.s_addr) & (~0u << (32 - prefix));
  gateway = net_base + 1;
  return 0;
}

int main(int argc, char** argv) {
  if (argc != 3 || parse_net(argv[2]) != 0) {
    fprintf(stderr, "usage: netlink-floor <bridge> <pod network a.b.c.d/8..28>\n");
    return 2;
  }
  setvbuf(stdout, NULL, _IOLBF, 0);
  bridge_index = (int)if_nametoindex(argv[1]);
  if (!bridge_index) {
    printf("err bridge %s: %s\n", argv[1], strerror(errno));
    return 1;
  }
  struct ifreq ifr = {0};
  snprintf(ifr.ifr_name, IFNAMSIZ, "%s", argv[1]);
  int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0 || ioctl(s, SIOCGIFHWADDR, &ifr) != 0) {
    printf("err bridge %s MAC: %s\n", argv[1], strerror(errno));
    return 1;
  }
  close(s);
  memcpy(bridge_mac, ifr.ifr_hwaddr.sa_data, 6);
  if (stat("/proc/self/ns/net", &host_ns) != 0) {
    printf("err /proc/self/ns/net: %s\n", strerror(errno));
    return 1;
  }
  host_fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
  if (host_fd < 0 || rtnl_setup(host_fd) < 0) {
    printf("err node rtnetlink socket: %s\n", host_fd < 0 ? strerror(errno) : err_msg);
    return 1;
  }
  pthread_t th;
  if (pipe2(closer_pipe, O_CLOEXEC) != 0 || pthread_create(&th, NULL, closer, NULL) != 0) {
    printf("err closer thread: %s\n", strerror(errno));
    return 1;
  }
  printf("ready\n");
  char line[4200];
  while (fgets(line, sizeof line, stdin)) {
    char cmd[8], path[4096];
    int i;
    double t[5] = {0};
    if (sscanf(line, "%7s %d %4095s", cmd, &i, path) != 3 || i < 0 || (uint64_t)i + 3 >= (1ull << (32 - prefix))) {
      printf("err bad command: %.100s", line);
      if (!strchr(line, '\n')) putchar('\n');
      continue;
    }
    if (strcmp(cmd, "add") == 0) {
      if (do_add(i, path, t) != 0) printf("err %s\n", err_msg);
      else printf("%.1f %.1f %.1f %.1f %.1f\n", t[0], t[1], t[2], t[3], t[4]);
    } else if (strcmp(cmd, "del") == 0) {
      if (do_del(i, t) != 0) printf("err %s\n", err_msg);
      else printf("%.1f\n", t[0]);
    } else {
      printf("err unknown command '%s' (add or del)\n", cmd);
    }
  }
  return 0;
}
