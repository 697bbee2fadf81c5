// Netlink sockets (rtnetlink, ctnetlink) and per-netns sysctls.
//
// Only the syscalls live here: TS (netlink.ts) encodes every request and decodes every reply.
// A socket is bound to the network namespace it was created in, for its whole life. To work
// inside a pod's netns we therefore open the socket there with a short setns-and-back on the
// calling thread (one open() + setns() + socket() + setns(), microseconds), and from then on
// talk to that namespace from any thread without moving one. The same dance opens a
// /proc/sys/net file, which the kernel resolves against the opener's netns.
//
// Transactions (send a request, read replies up to the ACK or NLMSG_DONE) run on a libuv pool
// thread: a veth create or a big dump can take milliseconds of kernel time, which must not
// block the event loop. TS serialises transactions per socket, so a socket is never read by
// two threads at once.
#include <fcntl.h>
#include <linux/if_packet.h>
#include <linux/netlink.h>
#include <linux/nsfs.h>
#include <sched.h>
#include <linux/rtnetlink.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "addon.h"

#ifndef NETLINK_EXT_ACK
#define NETLINK_EXT_ACK 11
#endif
#ifndef NETLINK_CAP_ACK
#define NETLINK_CAP_ACK 10
#endif
#ifndef NLM_F_ACK_TLVS
#define NLM_F_ACK_TLVS 0x200
#endif
#ifndef NLM_F_CAPPED
#define NLM_F_CAPPED 0x100
#endif

namespace berth {
namespace {

// Runs fn() with the calling thread in the network namespace `nsfd` (-1: where it is), then
// moves it back. On failure returns errno and sets *failed to the syscall's name.
template <typename F>
int InNetns(int nsfd, const char** failed, F fn) {
  if (nsfd < 0) return fn();
  int self = ::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
  if (self < 0) {
    *failed = "open";
    return errno;
  }
  if (::setns(nsfd, CLONE_NEWNET) != 0) {
    int err = errno;
    ::close(self);
    *failed = "setns";
    return err;
  }
  int rc = fn();
  // A JS thread left in a pod's namespace would silently misroute every later call: crash
  // instead. setns() back into our own namespace fails only if the kernel is out of memory.
  if (::setns(self, CLONE_NEWNET) != 0) std::abort();
  ::close(self);
  return rc;
}

// nlOpen(protocol: number, netnsFd: number /* -1 = this thread's netns */): number (fd)
Napi::Value NlOpen(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int protocol = info[0].As<Napi::Number>().Int32Value();
  int nsfd = info[1].As<Napi::Number>().Int32Value();
  int fd = -1;
  const char* failed = "socket";
  int err = InNetns(nsfd, &failed, [&]() -> int {
    fd = ::socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, protocol);
    return fd < 0 ? errno : 0;
  });
  if (err != 0) return ThrowSyscallError(env, err, failed);
  int one = 1;
  // Extended ACKs carry the kernel's reason ("Unknown device type"); capped ACKs do not echo
  // the request back in every error.
  ::setsockopt(fd, SOL_NETLINK, NETLINK_EXT_ACK, &one, sizeof one);
  ::setsockopt(fd, SOL_NETLINK, NETLINK_CAP_ACK, &one, sizeof one);
  int rcvbuf = 1 << 20;
  if (::setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof rcvbuf) != 0)
    ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
  // A pool thread must never wait forever on a reply that does not come.
  struct timeval tv = {10, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  struct sockaddr_nl local = {};
  local.nl_family = AF_NETLINK;
  if (::bind(fd, reinterpret_cast<struct sockaddr*>(&local), sizeof local) != 0) {
    err = errno;
    ::close(fd);
    return ThrowSyscallError(env, err, "bind");
  }
  return Napi::Number::New(env, fd);
}

// nlClose(fd: number)
Napi::Value NlClose(const Napi::CallbackInfo& info) {
  ::close(info[0].As<Napi::Number>().Int32Value());
  return info.Env().Undefined();
}

// The outcome of one transaction: replies (every message but ACKs and DONE) and the first failure.
struct Transaction {
  std::vector<uint8_t> out;
  int err = 0;
  int32_t failed = -1;
  const char* syscall = "";
  std::string extack;
};

// With NETLINK_EXT_ACK the error carries TLVs after the (capped) request header; type 1
// (NLMSGERR_ATTR_MSG) is the kernel's human-readable reason.
void ReadExtAck(const struct nlmsghdr* h, std::string* extack) {
  if (!(h->nlmsg_flags & NLM_F_ACK_TLVS)) return;
  size_t off = NLMSG_LENGTH(sizeof(struct nlmsgerr));
  if (!(h->nlmsg_flags & NLM_F_CAPPED)) {
    const struct nlmsgerr* e = static_cast<const struct nlmsgerr*>(NLMSG_DATA(h));
    off += NLMSG_ALIGN(e->msg.nlmsg_len) - NLMSG_ALIGN(sizeof(struct nlmsghdr));
  }
  const uint8_t* base = reinterpret_cast<const uint8_t*>(h);
  while (off + sizeof(struct nlattr) <= h->nlmsg_len) {
    const struct nlattr* a = reinterpret_cast<const struct nlattr*>(base + off);
    if (a->nla_len < sizeof(struct nlattr) || off + a->nla_len > h->nlmsg_len) return;
    if ((a->nla_type & NLA_TYPE_MASK) == 1) {
      const char* s = reinterpret_cast<const char*>(a) + NLA_HDRLEN;
      extack->assign(s, strnlen(s, a->nla_len - NLA_HDRLEN));
      return;
    }
    off += NLA_ALIGN(a->nla_len);
  }
}

// Sends `req` (one or more nlmsghdr-framed messages with consecutive sequence numbers: a
// batch) and reads until every message has been answered. The kernel answers each in order,
// an error on one not stopping the next; the first failure is reported with its index.
void Transact(int fd, const std::vector<uint8_t>& req, Transaction* t) {
  const struct nlmsghdr* sent = reinterpret_cast<const struct nlmsghdr*>(req.data());
  uint32_t seq = sent->nlmsg_seq;
  uint32_t count = 0;
  {
    size_t left = req.size();
    for (const struct nlmsghdr* h = sent; NLMSG_OK(h, left); h = NLMSG_NEXT(h, left)) count++;
  }
  uint32_t remaining = count;
  struct sockaddr_nl kernel = {};
  kernel.nl_family = AF_NETLINK;
  ssize_t n;
  do {
    n = ::sendto(fd, req.data(), req.size(), 0, reinterpret_cast<struct sockaddr*>(&kernel), sizeof kernel);
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    t->err = errno;
    t->syscall = "sendto";
    return;
  }
  std::vector<uint8_t> buf(64 * 1024);
  for (;;) {
    do {
      n = ::recv(fd, buf.data(), buf.size(), 0);
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
      t->err = (errno == EAGAIN || errno == EWOULDBLOCK) ? ETIMEDOUT : errno;
      t->syscall = "recv";
      return;
    }
    size_t left = static_cast<size_t>(n);
    for (struct nlmsghdr* h = reinterpret_cast<struct nlmsghdr*>(buf.data()); NLMSG_OK(h, left); h = NLMSG_NEXT(h, left)) {
      // Not ours: a late reply to an earlier, timed-out request.
      if (h->nlmsg_seq - seq >= count) continue;
      if (h->nlmsg_type == NLMSG_ERROR || h->nlmsg_type == NLMSG_DONE) {
        int32_t code = 0;
        if (h->nlmsg_len >= NLMSG_LENGTH(sizeof code)) std::memcpy(&code, NLMSG_DATA(h), sizeof code);
        if (code < 0 && t->err == 0) {
          t->err = -code;
          t->syscall = "netlink";
          t->failed = static_cast<int32_t>(h->nlmsg_seq - seq);
          if (h->nlmsg_type == NLMSG_ERROR) ReadExtAck(h, &t->extack);
        }
        if (--remaining == 0) return;
        continue;
      }
      const uint8_t* p = reinterpret_cast<const uint8_t*>(h);
      t->out.insert(t->out.end(), p, p + NLMSG_ALIGN(h->nlmsg_len));
      // A single reply that is neither part of a dump nor followed by an ACK ends here.
      if (count == 1 && !(h->nlmsg_flags & NLM_F_MULTI) && !(sent->nlmsg_flags & NLM_F_ACK)) return;
    }
  }
}

class TransactWorker : public Napi::AsyncWorker {
 public:
  TransactWorker(Napi::Function cb, int fd, const uint8_t* req, size_t len)
      : Napi::AsyncWorker(cb, "berth.netlink"), fd_(fd), req_(req, req + len) {}

  void Execute() override { Transact(fd_, req_, &t_); }

  void OnOK() override {
    Napi::Env env = Env();
    Napi::Value extack = t_.extack.empty() ? env.Null() : Napi::String::New(env, t_.extack);
    Napi::Value data = Napi::Buffer<uint8_t>::Copy(env, t_.out.data(), t_.out.size());
    Callback().Call({Napi::Number::New(env, t_.err), Napi::String::New(env, t_.syscall), extack, data, Napi::Number::New(env, t_.failed)});
  }

 private:
  int fd_;
  std::vector<uint8_t> req_;
  Transaction t_;
};

// A plan: batches on several sockets (one per network namespace), run in order on one pool
// thread, so a pod attachment costs one thread hop instead of one per round trip. A later
// batch may need the index of a link an earlier one created (the echo of the create): the
// first RTM_NEWLINK reply of the plan fills slot 0 with its ifindex and slot 1 with its
// IFLA_LINK (a veth's peer, in the peer's namespace), and each batch lists the byte offsets
// (4-aligned u32s) to patch with a slot before it is sent. The plan stops at the first failure.
struct PlanStep {
  int fd;
  std::vector<uint8_t> req;
  std::vector<uint32_t> fixups;  // offset, slot, offset, slot...
};

class PlanWorker : public Napi::AsyncWorker {
 public:
  PlanWorker(Napi::Function cb, std::vector<PlanStep> steps) : Napi::AsyncWorker(cb, "berth.netlink.plan"), steps_(std::move(steps)) {}

  void Execute() override {
    uint32_t slots[2] = {0, 0};
    bool captured = false;
    for (size_t i = 0; i < steps_.size(); i++) {
      PlanStep& s = steps_[i];
      for (size_t f = 0; f + 1 < s.fixups.size(); f += 2) {
        uint32_t off = s.fixups[f], slot = s.fixups[f + 1];
        if (!captured || slot > 1 || off + 4 > s.req.size()) {
          t_.err = EINVAL;
          t_.syscall = "netlink";
          t_.extack = "plan: a link index is needed before a link was created";
          step_ = static_cast<int32_t>(i);
          return;
        }
        std::memcpy(s.req.data() + off, &slots[slot], 4);
      }
      size_t before = t_.out.size();
      Transact(s.fd, s.req, &t_);
      if (t_.err != 0) {
        step_ = static_cast<int32_t>(i);
        return;
      }
      if (!captured) captured = Capture(t_.out.data() + before, t_.out.size() - before, slots);
    }
  }

  void OnOK() override {
    Napi::Env env = Env();
    Napi::Value extack = t_.extack.empty() ? env.Null() : Napi::String::New(env, t_.extack);
    Napi::Value data = Napi::Buffer<uint8_t>::Copy(env, t_.out.data(), t_.out.size());
    Callback().Call({Napi::Number::New(env, t_.err), Napi::String::New(env, t_.syscall), extack, data, Napi::Number::New(env, step_),
                     Napi::Number::New(env, t_.failed)});
  }

 private:
  static bool Capture(const uint8_t* p, size_t len, uint32_t* slots) {
    for (const struct nlmsghdr* h = reinterpret_cast<const struct nlmsghdr*>(p); NLMSG_OK(h, len); h = NLMSG_NEXT(h, len)) {
      if (h->nlmsg_type != RTM_NEWLINK || h->nlmsg_len < NLMSG_LENGTH(sizeof(struct ifinfomsg))) continue;
      const struct ifinfomsg* ifi = static_cast<const struct ifinfomsg*>(NLMSG_DATA(h));
      slots[0] = static_cast<uint32_t>(ifi->ifi_index);
      size_t off = NLMSG_LENGTH(NLMSG_ALIGN(sizeof(struct ifinfomsg)));
      const uint8_t* base = reinterpret_cast<const uint8_t*>(h);
      while (off + sizeof(struct nlattr) <= h->nlmsg_len) {
        const struct nlattr* a = reinterpret_cast<const struct nlattr*>(base + off);
        if (a->nla_len < sizeof(struct nlattr) || off + a->nla_len > h->nlmsg_len) break;
        if ((a->nla_type & NLA_TYPE_MASK) == IFLA_LINK && a->nla_len >= NLA_HDRLEN + 4) std::memcpy(&slots[1], base + off + NLA_HDRLEN, 4);
        off += NLA_ALIGN(a->nla_len);
      }
      return true;
    }
    return false;
  }

  std::vector<PlanStep> steps_;
  Transaction t_;
  int32_t step_ = -1;
};

// nlPlan(steps: Array<{ fd: number, req: Buffer, fixups: Uint32Array }>,
//        cb(errno, syscall, extack, replies: Buffer, failedStep, failedIndex))
Napi::Value NlPlan(const Napi::CallbackInfo& info) {
  Napi::Array arr = info[0].As<Napi::Array>();
  std::vector<PlanStep> steps;
  steps.reserve(arr.Length());
  for (uint32_t i = 0; i < arr.Length(); i++) {
    Napi::Object o = arr.Get(i).As<Napi::Object>();
    Napi::Buffer<uint8_t> req = o.Get("req").As<Napi::Buffer<uint8_t>>();
    Napi::Uint32Array fx = o.Get("fixups").As<Napi::Uint32Array>();
    steps.push_back(PlanStep{o.Get("fd").As<Napi::Number>().Int32Value(), std::vector<uint8_t>(req.Data(), req.Data() + req.Length()),
                             std::vector<uint32_t>(fx.Data(), fx.Data() + fx.ElementLength())});
  }
  auto* worker = new PlanWorker(info[1].As<Napi::Function>(), std::move(steps));
  worker->Queue();
  return info.Env().Undefined();
}

// fileLock(fd, exclusive: boolean, wait: boolean): boolean. flock(2): false when `wait` is
// off and another open file description holds a conflicting lock. The kernel drops the lock
// when the holder dies, which no lock file made with O_EXCL can do. (Here because the network
// state directories are its only user so far.)
Napi::Value FileLock(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = info[0].As<Napi::Number>().Int32Value();
  int op = (info[1].As<Napi::Boolean>().Value() ? LOCK_EX : LOCK_SH) | (info[2].As<Napi::Boolean>().Value() ? 0 : LOCK_NB);
  int rc;
  do {
    rc = ::flock(fd, op);
  } while (rc != 0 && errno == EINTR);
  if (rc != 0) {
    if (errno == EWOULDBLOCK) return Napi::Boolean::New(env, false);
    return ThrowSyscallError(env, errno, "flock");
  }
  return Napi::Boolean::New(env, true);
}

// nlTransact(fd, request: Buffer /* nlmsghdr-framed messages, consecutive seqs */, cb(errno, syscall, extack, replies: Buffer, failedIndex))
Napi::Value NlTransact(const Napi::CallbackInfo& info) {
  int fd = info[0].As<Napi::Number>().Int32Value();
  Napi::Buffer<uint8_t> req = info[1].As<Napi::Buffer<uint8_t>>();
  auto* worker = new TransactWorker(info[2].As<Napi::Function>(), fd, req.Data(), req.Length());
  worker->Queue();
  return info.Env().Undefined();
}

// netnsOpen(path): number. Opens a namespace file and checks that it is a network namespace.
Napi::Value NetnsOpen(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path = info[0].As<Napi::String>().Utf8Value();
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) return ThrowSyscallError(env, errno, "open", {nullptr, path.c_str()});
  int type = ::ioctl(fd, NS_GET_NSTYPE);
  int err = errno;
  if (type != CLONE_NEWNET) {
    ::close(fd);
    // ENOTTY: not a namespace file at all; EINVAL: a namespace of another kind.
    return ThrowSyscallError(env, type < 0 ? err : EINVAL, "ioctl(NS_GET_NSTYPE)", {nullptr, path.c_str()});
  }
  return Napi::Number::New(env, fd);
}

// closeFd(fd)
Napi::Value CloseFd(const Napi::CallbackInfo& info) {
  ::close(info[0].As<Napi::Number>().Int32Value());
  return info.Env().Undefined();
}

// netnsSysctl(netnsFd: number /* -1 = here */, path: string /* absolute, under /proc/sys */, value: string | null): string
// Writes `value` when given; returns the value read (before any write) otherwise ''.
Napi::Value NetnsSysctl(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int nsfd = info[0].As<Napi::Number>().Int32Value();
  std::string path = info[1].As<Napi::String>().Utf8Value();
  bool write = info[2].IsString();
  std::string value = write ? info[2].As<Napi::String>().Utf8Value() : std::string();
  int fd = -1;
  const char* failed = "open";
  int err = InNetns(nsfd, &failed, [&]() -> int {
    fd = ::open(path.c_str(), (write ? O_WRONLY : O_RDONLY) | O_CLOEXEC | O_NOFOLLOW);
    return fd < 0 ? errno : 0;
  });
  if (err != 0) return ThrowSyscallError(env, err, failed, {nullptr, path.c_str()});
  std::string out;
  if (write) {
    ssize_t n = ::write(fd, value.data(), value.size());
    err = n < 0 ? errno : 0;
  } else {
    char buf[4096];
    ssize_t n = ::read(fd, buf, sizeof buf);
    err = n < 0 ? errno : 0;
    if (n > 0) out.assign(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  if (err != 0) return ThrowSyscallError(env, err, write ? "write" : "read", {nullptr, path.c_str()});
  return Napi::String::New(env, out);
}

// packetOpen(netnsFd: number /* -1 = here */): number (fd). A raw AF_PACKET socket made in that
// namespace (an ifindex given to sendto resolves there). Protocol 0: it only sends, so the
// kernel hooks no receive path for it.
Napi::Value PacketOpen(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int nsfd = info[0].As<Napi::Number>().Int32Value();
  int fd = -1;
  const char* failed = "socket";
  int err = InNetns(nsfd, &failed, [&]() -> int {
    fd = ::socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0);
    return fd < 0 ? errno : 0;
  });
  if (err != 0) return ThrowSyscallError(env, err, failed);
  return Napi::Number::New(env, fd);
}

// packetSend(fd, ifindex, frame: Buffer /* from the Ethernet header on */). One sendto, which
// returns once the frame is handed to the device (veth delivers it to its peer at once).
Napi::Value PacketSend(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = info[0].As<Napi::Number>().Int32Value();
  Napi::Buffer<uint8_t> frame = info[2].As<Napi::Buffer<uint8_t>>();
  struct sockaddr_ll to = {};
  to.sll_family = AF_PACKET;
  to.sll_ifindex = info[1].As<Napi::Number>().Int32Value();
  ssize_t n;
  do {
    n = ::sendto(fd, frame.Data(), frame.Length(), 0, reinterpret_cast<struct sockaddr*>(&to), sizeof to);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return ThrowSyscallError(env, errno, "sendto");
  return env.Undefined();
}

// packetClose(fd). Closing a packet socket waits for an RCU grace period (packet_release()
// calls synchronize_net()): milliseconds, tens on a loaded machine, that must not block the
// event loop or hold a pool thread. The fd goes to one closer thread of the process instead,
// which does nothing else; it costs no CPU while it waits.
class PacketCloser {
 public:
  static void Close(int fd) {
    static PacketCloser* closer = new PacketCloser();  // never destroyed: its thread outlives exit
    closer->Push(fd);
  }

 private:
  PacketCloser() : thread_([this] { Run(); }) { thread_.detach(); }

  void Push(int fd) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      fds_.push_back(fd);
    }
    cv_.notify_one();
  }

  void Run() {
    for (;;) {
      int fd;
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [this] { return !fds_.empty(); });
        fd = fds_.front();
        fds_.pop_front();
      }
      ::close(fd);
    }
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<int> fds_;  // guarded by mu_
  std::thread thread_;
};

Napi::Value PacketClose(const Napi::CallbackInfo& info) {
  PacketCloser::Close(info[0].As<Napi::Number>().Int32Value());
  return info.Env().Undefined();
}

// sysctlOpen(netnsFd: number /* -1 = here */, path: string /* absolute, under /proc/sys */): number (fd).
// A sysctl file opened in that namespace for reading again and again (pread at 0), where one
// is read on a hot path: no setns and no open per read.
Napi::Value SysctlOpen(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int nsfd = info[0].As<Napi::Number>().Int32Value();
  std::string path = info[1].As<Napi::String>().Utf8Value();
  int fd = -1;
  const char* failed = "open";
  int err = InNetns(nsfd, &failed, [&]() -> int {
    fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    return fd < 0 ? errno : 0;
  });
  if (err != 0) return ThrowSyscallError(env, err, failed, {nullptr, path.c_str()});
  return Napi::Number::New(env, fd);
}

void InitNetlink(Napi::Env env, Napi::Object exports) {
  exports.Set("sysctlOpen", Napi::Function::New(env, SysctlOpen, "sysctlOpen"));
  exports.Set("packetClose", Napi::Function::New(env, PacketClose, "packetClose"));
  exports.Set("packetOpen", Napi::Function::New(env, PacketOpen, "packetOpen"));
  exports.Set("packetSend", Napi::Function::New(env, PacketSend, "packetSend"));
  exports.Set("nlOpen", Napi::Function::New(env, NlOpen, "nlOpen"));
  exports.Set("nlClose", Napi::Function::New(env, NlClose, "nlClose"));
  exports.Set("nlTransact", Napi::Function::New(env, NlTransact, "nlTransact"));
  exports.Set("nlPlan", Napi::Function::New(env, NlPlan, "nlPlan"));
  exports.Set("fileLock", Napi::Function::New(env, FileLock, "fileLock"));
  exports.Set("netnsOpen", Napi::Function::New(env, NetnsOpen, "netnsOpen"));
  exports.Set("netnsCloseFd", Napi::Function::New(env, CloseFd, "netnsCloseFd"));
  exports.Set("netnsSysctl", Napi::Function::New(env, NetnsSysctl, "netnsSysctl"));
}

ModuleRegistrar registrar(InitNetlink);

}  // namespace
}  // namespace berth
